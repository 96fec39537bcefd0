"""The explainer protocol: construct once per model, call ``explain`` as often as needed."""

from __future__ import annotations

import abc
import warnings
from typing import Any, ClassVar

import keras
import numpy as np

from ..explanation import Explanation
from ..model import GradientPass, Inputs, ModelAdapter, embedding_layers, flat_inputs, num_samples, path_of
from ..targets import request, resolve
from ..text import as_texts, is_text, per_token, shown_tokens, takes_strings

_CAUSES = (
    "Usual causes: inputs not normalised the way the model was trained (saturated ReLUs or softmax), "
    "a baseline equal to the input, saturated outputs (explain logits with score='logits'), or dead ReLUs."
)


class Explainer(abc.ABC):
    """Base class of every explainer.

    Keyword options shared by all explainers: ``output`` (index or name of the explained
    output of a multi-output model), ``score`` (``"logits"``, the default, explains the
    pre-softmax/sigmoid score; ``"probabilities"`` explains the output as is) and
    ``batch_size`` (samples per compiled call).
    """

    method: ClassVar[str]

    def __init__(self, model: keras.Model, *, output: int | str | None = None, score: str = "logits", batch_size: int | None = None):
        self.adapter = ModelAdapter.shared(model, output=output, score=score, batch_size=batch_size)

    @property
    def model(self) -> keras.Model:
        return self.adapter.model

    def explain(self, inputs: Inputs, targets: Any = None, contrast: Any = None) -> Explanation:
        """Explain ``inputs`` (first axis = samples) for ``targets`` (default: predicted class).

        ``targets``: None, an int for every sample, or one int per sample. ``contrast``:
        a class (or one per sample) whose score is subtracted from the target's.
        """
        x = self.adapter.prepare(inputs)
        wanted = request(targets, contrast, num_samples(x), self.adapter.num_outputs)
        if isinstance(self, OnePassExplainer):
            attributions, extras, gradient_pass = self.attribute_pass(x, wanted)
            outputs, score = gradient_pass.outputs, gradient_pass.score
            targets, _ = resolve(wanted, outputs)
        else:
            outputs, scores = self.adapter.forward(x)
            targets, weights = resolve(wanted, outputs)
            attributions, extras = self.attribute(x, weights)
            score = (scores * weights).sum(axis=1)
        _warn_if_degenerate(self.method, attributions)
        return Explanation(self.method, attributions, targets, outputs, {"score": score, **extras})

    @abc.abstractmethod
    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict[str, Any]]:
        """Attributions of the scores ``sum(scores * weights, 1)`` for prepared inputs ``x``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model.name!r})"


class OnePassExplainer(Explainer):
    """An explainer built on one gradient pass over the inputs themselves.

    Its pass resolves the predicted class on the fly (``weights`` may carry a
    predicted-class column, see :mod:`tf_explain_kit.targets`), so ``explain`` needs no
    separate forward pass to find the targets.
    """

    @abc.abstractmethod
    def attribute_pass(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict[str, Any], GradientPass]:
        """Attributions, extras and the gradient pass they came from."""

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict[str, Any]]:
        attributions, extras, _ = self.attribute_pass(x, weights)
        return attributions, extras


def _warn_if_degenerate(method: str, attributions: Any) -> None:
    arrays = flat_inputs(attributions)
    n = len(arrays[0])
    flat = arrays[0].reshape(n, -1) if len(arrays) == 1 else np.concatenate([a.reshape(n, -1) for a in arrays], axis=1)
    finite = np.isfinite(flat).all(axis=1)
    if not finite.all():
        warnings.warn(f"{method}: attributions are NaN or infinite for samples {np.flatnonzero(~finite)[:10].tolist()}. {_CAUSES}", RuntimeWarning, stacklevel=3)
    nonzero = flat.any(axis=1)
    if not nonzero.all():
        warnings.warn(f"{method}: attributions are all zero for samples {np.flatnonzero(~nonzero)[:10].tolist()}. {_CAUSES}", RuntimeWarning, stacklevel=3)


def require_float_inputs(x: Inputs, adapter: ModelAdapter, method: str) -> None:
    """Gradients with respect to token ids or strings do not exist: point to ``layer=``."""
    if all(a.dtype.kind == "f" for a in flat_inputs(x)):
        return
    embeddings = [path_of(adapter.model, l) for l in embedding_layers(adapter.model)]
    hint = f" (this model's embedding layers: {', '.join(map(repr, embeddings))})" if embeddings else ""
    received = "strings" if any(is_text(a) for a in flat_inputs(x)) else "integer inputs (token ids?)"
    raise TypeError(
        f"inputs: {method} needs float inputs, got {received}. Explain at the embedding layer instead: "
        f"IntegratedGradients(model, layer=<embedding layer name>){hint}."
    )


def require_positions(adapter: ModelAdapter, layer: keras.layers.Layer | None) -> None:
    """Attributions at a layer of a model that takes strings need a fixed number of token
    positions (and a tokenisation that maps them to the texts' tokens): checked at construction."""
    if layer is None or not takes_strings(adapter.model):
        return
    tokenizer = adapter.tokenizer
    if tokenizer.positions:
        raise ValueError(
            f"layer: attributions at '{layer.name}' are per token position, and model '{adapter.model.name}' has none: {tokenizer.positions} "
            "(one id per token needs output_mode='int' without ngrams). Explain the texts with LimeText, KernelShap or PartitionShap."
        )
    if tokenizer.layer is not None and not tokenizer.length:
        raise ValueError(
            f"layer: attributions at '{layer.name}' are per token position, and the TextVectorization '{tokenizer.layer.name}' of model "
            f"'{adapter.model.name}' pads each batch to its longest text (output_sequence_length=None). Set output_sequence_length, "
            "or explain the texts with LimeText, KernelShap or PartitionShap."
        )


def per_token_at(adapter: ModelAdapter, layer: keras.layers.Layer | None, x: Inputs, attributions: Any) -> tuple[Any, dict]:
    """Attributions at an ``Embedding`` summed over its width: one value per token. For a
    model that takes strings, its positions become the texts' shown tokens ``(N, T)``
    (padding dropped; ``extras["tokens"]``, see :mod:`tf_explain_kit.text`)."""
    if not isinstance(layer, keras.layers.Embedding):
        return attributions, {}
    attributions = attributions.sum(axis=-1)
    first = flat_inputs(x)[0]
    if not is_text(first):
        return attributions, {}
    adapter.tokenizer.check(as_texts(first))
    tokens = shown_tokens(x, adapter.tokenizer)
    return per_token(attributions, tokens), {"tokens": tokens}
