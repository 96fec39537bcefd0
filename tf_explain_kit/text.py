"""One tokenisation of texts, shared by every text method, the renderers and the log.

A text model's tokens are the model's own: for a model with a ``TextVectorization`` layer
inside, its standardisation (``"lower_and_strip_punctuation"`` by default), split
(``"whitespace"`` by default), vocabulary and output length; for a token-id model, the
``vocabulary=`` the user passes. Each token is shown as it is written in the text (an
out-of-vocabulary word as the word itself, ``"<b>great</b>,"`` as that, not ``"bgreatb"``)
and sits at the model's position for it: token ``j`` of a text is the ``j``-th id the model
looks up, so attributions per position, LIME's per-word weights, the tables and the plugin
line up. Pieces that standardise to nothing (a lone ``","``) are not tokens: the model
never sees them. The tokens are checked against the model's own vectorisation.
"""

from __future__ import annotations

import re
import string
from typing import Any, Callable, NamedTuple, Sequence

import keras
import numpy as np

from . import tf_backend
from .structure import all_layers

# Keras' TextVectorization: the characters "strip_punctuation" removes, ASCII-only lowercasing
# (tf.strings.lower), and the separators of tf.strings.split (ASCII whitespace).
_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_PIECES = {"whitespace": re.compile(r"[^ \t\n\r\f\v]+"), "character": re.compile(r".", re.S), None: re.compile(r".+", re.S)}
STANDARDIZE = (None, "lower", "strip_punctuation", "lower_and_strip_punctuation")


class Token(NamedTuple):
    """One token of a text: as written (``shown``, at ``start:end``) and as looked up (``key``)."""

    shown: str
    start: int
    end: int
    key: str


def is_text(array: np.ndarray) -> bool:
    return array.dtype.kind in "OSU"


def are_texts(inputs: Any) -> bool:
    """Whether ``inputs`` are texts (a str, bytes, a list of them or a string array)."""
    if isinstance(inputs, (str, bytes)):
        return True
    if isinstance(inputs, (list, tuple)):
        return bool(inputs) and isinstance(inputs[0], (str, bytes))
    return isinstance(inputs, np.ndarray) and is_text(inputs)


def as_texts(inputs: Any, argument: str = "inputs") -> list[str]:
    """Texts given as a str, a list of str or bytes, or an array ``(N,)``/``(N, 1)`` of them."""
    if isinstance(inputs, (str, bytes)):
        inputs = [inputs]
    values = np.asarray(inputs, dtype=object)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or not len(values) or not all(isinstance(v, (str, bytes)) for v in values):
        kinds = sorted({type(v).__name__ for v in values.ravel()}) if values.size else []
        raise TypeError(
            f"{argument}: expected texts: a list of str (or bytes) or an array of strings of shape (N,) or (N, 1); "
            f"got shape {values.shape} of {kinds or 'nothing'}. Pass the raw texts (token ids go to a token-id model with vocabulary=)."
        )
    return [v.decode("utf-8") if isinstance(v, bytes) else v for v in values]


def string_array(array: np.ndarray, shape: tuple) -> np.ndarray:
    """Strings (unicode, bytes or object) as an object array of ``str`` of the model input's
    shape ``(N,)`` or ``(N, 1)``."""
    texts = as_texts(array)
    return np.array(texts, dtype=object).reshape((len(texts),) + (1,) * (len(shape) - 1))


def vectorizer(model: keras.Model) -> keras.layers.TextVectorization | None:
    """The ``TextVectorization`` layer of a model that takes strings (None if it has none)."""
    return next((layer for layer in all_layers(model) if isinstance(layer, keras.layers.TextVectorization)), None)


class Tokenizer:
    """How a model splits a text into the tokens it looks up.

    Args:
        standardize: one of :data:`STANDARDIZE` or a callable on a string tensor (as
            ``TextVectorization`` takes).
        split: ``"whitespace"``, ``"character"`` or None (the whole text is one token).
        vocabulary: token strings by id (id 0 padding, id 1 out-of-vocabulary for a
            ``TextVectorization``), or None.
        length: the model's sequence length: later tokens are cut, as the model cuts them.
        layer: the ``TextVectorization`` layer these settings come from, to check against.
    """

    def __init__(
        self,
        standardize: str | Callable | None = None,
        split: str | None = "whitespace",
        vocabulary: Sequence[str] | None = None,
        length: int | None = None,
        layer: keras.layers.Layer | None = None,
    ):
        if not (standardize in STANDARDIZE or callable(standardize)):
            raise ValueError(f"standardize: expected one of {STANDARDIZE} or a callable, got {standardize!r}.")
        if split not in _PIECES:
            raise ValueError(
                f"split: tokens can be aligned with the text for split='whitespace', 'character' or None, got {split!r}. "
                "Vectorize outside the model and explain the token ids with vocabulary=<the token strings by id>."
            )
        self.standardize, self.split, self.length, self.layer = standardize, split, length, layer
        self.positions: str | None = None  # why the model's positions are not one per token (None: they are)
        self.vocabulary = None if vocabulary is None else [str(t) for t in vocabulary]
        self._index = None if vocabulary is None else {t: i for i, t in enumerate(self.vocabulary)}

    @classmethod
    def of_model(cls, model: keras.Model, vocabulary: Sequence[str] | None = None) -> "Tokenizer":
        """The model's own tokenisation (its ``TextVectorization``), else whitespace words
        with ``vocabulary`` for token ids."""
        layer = vectorizer(model)
        if layer is None:
            return cls(vocabulary=vocabulary)
        config = layer.get_config()
        if config.get("ngrams") or config.get("output_mode") != "int":  # words to remove, but no position per token
            tokenizer = cls(config["standardize"], config["split"])
            tokenizer.positions = f"its TextVectorization '{layer.name}' has ngrams={config.get('ngrams')!r}, output_mode={config.get('output_mode')!r}"
            return tokenizer
        return cls(config["standardize"], config["split"], layer.get_vocabulary(), config.get("output_sequence_length"), layer)

    # -- texts ------------------------------------------------------------------------------
    def _standardized(self, pieces: list[str]) -> list[str]:
        if callable(self.standardize):
            return tf_backend.map_strings(self.standardize, pieces) if pieces else []
        if self.standardize in ("lower", "lower_and_strip_punctuation"):
            pieces = [p.translate(_ASCII_LOWER) for p in pieces]
        if self.standardize in ("strip_punctuation", "lower_and_strip_punctuation"):
            pieces = [_PUNCTUATION.sub("", p) for p in pieces]
        return pieces

    def tokens(self, text: str) -> list[Token]:
        """The tokens the model looks up in ``text``, in order, each with its span."""
        found = list(_PIECES[self.split].finditer(text))
        keys = self._standardized([m.group() for m in found])
        tokens = []
        for match, key in zip(found, keys):
            parts = key.split() if self.split == "whitespace" else [key] if key else []
            if len(parts) > 1:
                raise ValueError(f"model: its standardize function splits {match.group()!r} into {parts}; tokens cannot be placed on the text's words.")
            if parts:
                tokens.append(Token(match.group(), match.start(), match.end(), parts[0]))
        return tokens[: self.length] if self.length else tokens

    def shown(self, texts: Sequence[str]) -> list[list[str]]:
        """Each text's tokens as written (what tables and the plugin show)."""
        return [[t.shown for t in self.tokens(text)] for text in texts]

    def ids(self, keys: Sequence[str]) -> list[int]:
        """Vocabulary ids of token ``keys`` (unknown → 1, ``TextVectorization``'s OOV id)."""
        return [self._index.get(k, 1) for k in keys]

    def check(self, texts: Sequence[str]) -> None:
        """Raise if these tokens are not the ids the model's ``TextVectorization`` computes."""
        if self.layer is None:
            return
        computed = keras.ops.convert_to_numpy(self.layer(np.array(texts, dtype=object)))
        for text, row in zip(texts, computed):
            ours = self.ids([t.key for t in self.tokens(text)])
            theirs = [int(i) for i in row[: len(ours)]]
            if theirs != ours or np.any(row[len(ours) :]):
                raise ValueError(
                    f"model: the tokens of {text[:60]!r} could not be aligned with its TextVectorization '{self.layer.name}' "
                    f"(ids {theirs} vs {ours}); its custom standardize or split is not applied word by word."
                )

    # -- token ids -------------------------------------------------------------------------
    def words(self, row: np.ndarray) -> list[str]:
        """The token strings of one row of ids, trailing padding (id 0) dropped."""
        row = np.asarray(row).reshape(-1)
        used = np.flatnonzero(row)
        end = int(used[-1]) + 1 if len(used) else 0
        vocabulary = self.vocabulary
        return [vocabulary[t] if vocabulary and 0 <= t < len(vocabulary) else str(t) for t in row[:end].tolist()]


def without(text: str, tokens: list[Token], keep: np.ndarray) -> list[str]:
    """``text`` with the tokens not kept (``keep``: ``(P, tokens)`` bool) deleted, one text per
    row; the rest of the text stays as written, and what follows the last token (which the
    model never sees: cut or standardised away) is left out, so nothing moves into view."""
    gaps = [text[: tokens[0].start]] + [text[a.end : b.start] for a, b in zip(tokens, tokens[1:])]
    return ["".join(gap + (token.shown if kept else "") for gap, token, kept in zip(gaps, tokens, row)) for row in keep]


def shown_tokens(x: Any, tokenizer: Tokenizer) -> list[list[str]]:
    """Each sample's tokens as shown, for prepared inputs: strings or token ids."""
    first = keras.tree.flatten(x)[0]
    if is_text(first):
        return tokenizer.shown(as_texts(first))
    return [tokenizer.words(row) for row in first.reshape(len(first), -1)]


def per_token(attributions: np.ndarray, tokens: list[list[str]]) -> np.ndarray:
    """Attributions per vectorized position ``(N, L)`` → per shown token ``(N, T)``: ``T``
    the most tokens of a sample (positions after a sample's tokens are padding)."""
    longest = max((len(t) for t in tokens), default=0)
    return np.ascontiguousarray(attributions[:, : max(longest, 1)])


def takes_strings(model: keras.Model) -> bool:
    """Whether the model's (first) input is a string tensor."""
    try:
        return "string" in str(keras.tree.flatten(model.inputs)[0].dtype)
    except (AttributeError, ValueError, IndexError):
        return False
