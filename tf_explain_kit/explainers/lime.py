"""LIME for images, tables and texts: lime's algorithm, our batched compiled forward.

lime stays the reference. ``LimeImage`` draws the same random masks in the same order as
``lime_image.LimeImageExplainer``, builds the perturbed images inside the compiled forward
(they never exist in host memory) and fits with lime's own ``LimeBase``; ``LimeTabular``
and ``LimeText`` call lime's explainers with the compiled forward as the prediction
function. Every feature is kept (no silent truncation to ``num_features``), so lime's
feature selection is ``"none"``: with all features selected, lime's default
``"highest_weights"`` fits the same ridge model.

Score space: like every explainer here, LIME explains the pre-softmax logit by default
(``score="logits"``); pass ``score="probabilities"`` to explain what lime's tutorials
explain (``model.predict`` of a softmax model) and get lime's numbers.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import partial
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import keras
import numpy as np
from lime import lime_base, lime_tabular
from sklearn.metrics import pairwise_distances

from .. import text
from ..checks import count
from ..explanation import Explanation
from ..model import Inputs, flat_inputs, image_position, map_inputs, num_samples
from ..rng import preserved_global_state
from .base import Explainer
from .groups import input_groups, spread
from .registry import Setting, register

Segmentation = Callable[[np.ndarray], np.ndarray]

_SEGMENT_CACHE_SIZE = 256  # samples; a callback explains a fixed set of (by default 16) samples


def lime_kernel(distances: np.ndarray, kernel_width: float) -> np.ndarray:
    """lime's default similarity kernel, ``sqrt(exp(-d² / width²))``."""
    return np.sqrt(np.exp(-(distances**2) / kernel_width**2))


def _check_seed(seed: Any) -> int:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}. Pass for example seed=0.")
    return int(seed)


def _explained(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The explained score ``sum(scores * weights)`` of each row (weights broadcast)."""
    return (scores * weights).sum(axis=1)


def _fit(base: lime_base.LimeBase, data: np.ndarray, labels: np.ndarray, distances: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """lime's weighted ridge fit on every feature: (weights, intercept, R², local prediction)."""
    intercept, exp, r2, local_pred = base.explain_instance_with_data(data, labels[:, None], distances, 0, data.shape[1], feature_selection="none")
    coef = np.zeros(data.shape[1])
    for feature, weight in exp:
        coef[feature] = weight
    return coef, float(intercept), float(r2), float(np.ravel(local_pred)[0])


def _fit_masks(data: list[np.ndarray], labels: np.ndarray, kernel_width: float, seed: int) -> tuple[list[np.ndarray], dict]:
    """lime's ridge fit of each sample's scores (``labels``, ``num_samples`` rows per sample)
    on its 0/1 ``data`` (shown players), weighted by lime's kernel on the cosine distance."""
    p, kernel = len(data[0]), partial(lime_kernel, kernel_width=kernel_width)
    coefs, facts = [], {key: np.empty(len(data)) for key in ("intercept", "r2", "local_prediction")}
    for i, d in enumerate(data):
        distances = pairwise_distances(d, d[0].reshape(1, -1), metric="cosine").ravel()
        base = lime_base.LimeBase(kernel, random_state=np.random.RandomState(seed))
        coef, facts["intercept"][i], facts["r2"][i], facts["local_prediction"][i] = _fit(base, d, labels[i * p : (i + 1) * p], distances)
        coefs.append(coef)
    return coefs, facts


def _masks(seed: int, num_samples: int, players: int) -> np.ndarray:
    """``(num_samples, players)`` 0/1 masks, the same draws as lime_image's ``data_labels``."""
    random_state = np.random.RandomState(seed)
    random_state.randint(0, high=1000)  # lime first draws its segmentation seed
    masks = random_state.randint(0, 2, num_samples * players).reshape(num_samples, players)
    masks[0, :] = 1
    return masks


def _stacked(data: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every sample's masks as one boolean matrix (zero-padded players) and their owners."""
    p = len(data[0])
    masks = np.zeros((len(data) * p, max(d.shape[1] for d in data)), bool)
    for i, d in enumerate(data):
        masks[i * p : (i + 1) * p, : d.shape[1]] = d
    return masks, np.repeat(np.arange(len(data)), p)


# -- images -------------------------------------------------------------------------------------


def auto_segmentation(image: np.ndarray) -> np.ndarray:
    """SLIC superpixels sized for the image: ~H·W/30 segments, between 16 and 120.

    A 28×28 digit gets 24–37 superpixels, a 224×224 photo 80–105 (lime's default
    quickshift gives 1–2 on digits and is 10× slower). The image is rescaled to [0, 1]
    first, so the compactness suits any input range; RGB is segmented in Lab colour.

    SLIC collapses on textured or noisy images (neighbouring pixels differ more in colour
    than the spatial term weighs, the clusters fragment and connectivity enforcement merges
    them back: a 32×32 noise image gets 1–8 segments at compactness 10). It then retries
    with 6× and 10× the compactness and superpixels of about 64 pixels (8×8), so that the
    spatial term outweighs the texture while a small object's colour edge still bounds
    its superpixel (a planted 6×6 patch gets its own superpixel, IoU ≥ 0.9, in 200 of 200
    noise images). Only if every try collapses is a regular grid used.
    """
    from skimage.segmentation import slic

    low, high = float(image.min()), float(image.max())
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    height, width, channels = image.shape
    colour = channels == 3
    pixels = scaled if channels > 1 else scaled[..., 0]
    base = 10.0 if colour else 0.1
    n_segments = int(np.clip(height * width / 30, 16, 120))
    retry = int(np.clip(height * width / 64, 16, 120))
    for compactness, wanted in ((base, n_segments), (6 * base, retry), (10 * base, retry)):
        segments = slic(pixels, n_segments=wanted, compactness=compactness, start_label=0, channel_axis=-1 if channels > 1 else None, convert2lab=colour)
        if len(np.unique(segments)) >= wanted // 2:
            return segments
    side = max(1, round(np.sqrt(n_segments)))
    return (np.arange(height)[:, None] * side // height) * side + np.arange(width)[None, :] * side // width


def _require_image_input(model: keras.Model) -> None:
    """Refuse a model with no float input of rank 3 or 4 (an image (N, H, W[, C]); a 3-D
    series is taken as a grey image when asked for) when its inputs are known."""
    try:
        specs = keras.tree.flatten(model.inputs)
    except (AttributeError, ValueError):
        return  # subclassed: checked when explaining
    if not any("float" in str(s.dtype) and len(s.shape) in (3, 4) for s in specs):
        shapes = ", ".join("(N, " + ", ".join(str(d) for d in s.shape[1:]) + f") {s.dtype}" for s in specs)
        raise ValueError(f"model: LimeImage explains images (N, H, W[, C]); model '{model.name}' takes {shapes}. Use LimeTabular for tables, LimeText for texts, or KernelShap.")


@register(kinds=("image",), serves={"lime": ("image",)})
class LimeImage(Explainer):
    """LIME on superpixels: a weighted ridge fit of the score on which superpixels are shown.

    Args:
        num_samples: perturbed images per explained image (the first is the image itself).
        segmentation: ``"auto"`` (:func:`auto_segmentation`) or a callable
            ``image (H, W, C) -> (H, W)`` integer labels (for example a
            ``lime.wrappers.scikit_image.SegmentationAlgorithm``); labels are renumbered
            0..K-1 in sorted order.
        seed: the masks of every image are drawn from ``RandomState(seed)`` exactly as
            ``LimeImageExplainer(random_state=seed).explain_instance`` draws them.
        hide_color: value of hidden pixels; ``None`` (lime's default) uses each
            superpixel's mean colour, which makes a superpixel of uniform colour (a
            cleanly segmented flat object) look the same hidden or shown: pass a value
            such as ``0.0`` to explain such objects.
        kernel_width: width of lime's kernel on the cosine distance (lime's 0.25).

    In a model with several inputs the (first) image input is explained and the other
    inputs are held as given.

    Attributions are ``(N, H, W)``: each pixel carries its superpixel's weight. ``extras``
    hold ``segments`` (N, H, W), ``intercept``, ``r2`` (lime's ``score``, the fit's R²)
    and ``local_prediction``. Segmentations are cached per image content, so explaining
    the same samples every epoch segments them once.
    """

    method = "lime_image"

    def __init__(
        self,
        model: keras.Model,
        num_samples: int = 1000,
        segmentation: str | Segmentation = "auto",
        seed: int = 0,
        hide_color: float | None = None,
        kernel_width: float = 0.25,
        **options: Any,
    ):
        super().__init__(model, **options)
        _require_image_input(model)
        if not (segmentation == "auto" or callable(segmentation)):
            raise ValueError(f"segmentation: expected 'auto' or a callable image (H, W, C) -> (H, W) int labels, got {segmentation!r}.")
        if hide_color is not None and not (np.isscalar(hide_color) and not isinstance(hide_color, str)):
            raise ValueError(f"hide_color: expected None (each superpixel's mean colour) or a number, got {hide_color!r}.")
        self.num_samples = count(num_samples, "num_samples", minimum=2)
        self.segmentation = auto_segmentation if segmentation == "auto" else segmentation
        self.seed = _check_seed(seed)
        self.hide_color = hide_color
        self.kernel_width = float(kernel_width)
        self._segments: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def segments(self, image: np.ndarray) -> np.ndarray:
        """``(H, W)`` superpixel labels 0..K-1 of one ``(H, W, C)`` image, cached by content."""
        key = (hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16).digest(), image.shape, image.dtype.str)
        if key in self._segments:
            self._segments.move_to_end(key)
            return self._segments[key]
        labels = np.asarray(self.segmentation(image))
        if labels.shape != image.shape[:2] or labels.dtype.kind not in "iu":
            raise ValueError(
                f"segmentation: expected integer labels of shape {image.shape[:2]} for an image of shape {image.shape}, "
                f"got {labels.dtype} of shape {labels.shape}. Return one superpixel id per pixel."
            )
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
        self._segments[key] = labels
        if len(self._segments) > _SEGMENT_CACHE_SIZE:
            self._segments.popitem(last=False)
        return labels

    def _hidden(self, images: np.ndarray, segments: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """What hidden pixels show: ``hide_color`` or each superpixel's mean colour."""
        if self.hide_color is not None:
            return np.full_like(images, self.hide_color)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        flat = (segments + offsets[:, None, None]).ravel()
        total = int(sizes.sum())
        counts = np.bincount(flat, minlength=total)
        channels = images.reshape(-1, images.shape[-1])
        means = np.stack([np.bincount(flat, channels[:, c].astype(np.float64), total) / counts for c in range(images.shape[-1])], axis=1)
        return means[flat].reshape(images.shape).astype(images.dtype)

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[np.ndarray, dict]:
        arrays = flat_inputs(x)
        position = image_position(x)
        if arrays[position].dtype.kind != "f":
            raise ValueError(f"inputs: LimeImage needs a float image input (N, H, W) or (N, H, W, C), got {arrays[position].dtype} {arrays[position].shape}.")
        image_input = arrays[position]
        images = image_input if image_input.ndim == 4 else image_input[..., None]
        n = len(images)
        segments = np.stack([self.segments(image) for image in images])
        sizes = segments.reshape(n, -1).max(axis=1) + 1
        hidden = self._hidden(images, segments, sizes).reshape((n, 1) + image_input.shape[1:])
        data = [_masks(self.seed, self.num_samples, int(k)) for k in sizes]  # lime's 0/1 integer matrices
        masks, owners = _stacked(data)
        if isinstance(x, np.ndarray):
            scores = self.adapter.masked_scores(x, segments, masks, owners, hidden)
        else:  # the image input's superpixels play; the other inputs are held as they are
            players = [segments if i == position else np.full(a.shape, -1) for i, a in enumerate(arrays)]
            fills = [hidden if i == position else a[:, None] for i, a in enumerate(arrays)]
            scores = self.adapter.masked_input_scores(x, keras.tree.pack_sequence_as(x, players), masks, owners, keras.tree.pack_sequence_as(x, fills))
        coefs, facts = _fit_masks(data, _explained(scores, weights[owners]), self.kernel_width, self.seed)
        attributions = np.stack([coef[segment] for coef, segment in zip(coefs, segments)]).astype(np.float32)
        return attributions, {"segments": segments, "num_superpixels": sizes, **facts}


# -- tables -------------------------------------------------------------------------------------


@register(kinds=("tabular", "sequence"), defaults=lambda s: {"training_data": s.data}, serves={"lime": ("tabular", "sequence")})
class LimeTabular(Explainer):
    """lime's ``LimeTabularExplainer`` with the compiled forward as its prediction function.

    Args:
        training_data: ``(M, F)`` rows whose statistics drive the sampling (lime's
            quartile discretisation of continuous features, as lime's default); ``(M, T, F)``
            series (each cell a feature); or, for a model with several inputs, a list/dict
            of arrays like the model's inputs.
        feature_names: names of the features (``F``, or ``T·F`` cells of a series).
        num_samples: perturbed rows per explained row.
        seed: each row is explained as ``LimeTabularExplainer(random_state=seed)`` would.
        categorical_features: indices of categorical columns (values sampled from the
            training distribution, as lime does).
        groups: explain groups of features instead: an int label array over a sample's
            features (``(F,)``, or ``(T, F)`` time × feature windows of a series, see
            :func:`~tf_explain_kit.explainers.groups.window_groups`), or for several inputs
            ``{name: input or (input, indices)}`` (default there: each input one group).

    Features one by one: attributions are ``(N, F)`` in input feature order (``(N, T, F)``
    for series), lime's own numbers. Groups (and multi-input models): LIME as for image
    superpixels: ``num_samples`` random on/off patterns of the groups (the same draws as
    ``lime_image``), hidden groups set to the training data's mean (integer inputs: its
    most frequent value), and lime's weighted ridge fit on the patterns; every element is
    assigned its group's weight (elements in no group: 0) and ``extras["group_weights"]``
    ``(N, G)`` holds them, named by ``extras["group_names"]``. ``extras`` also hold
    ``intercept``, ``r2`` and ``local_prediction``.
    """

    method = "lime_tabular"
    kernel_width = 0.25  # groups: lime_image's kernel on the cosine distance of the on/off patterns

    def __init__(
        self,
        model: keras.Model,
        training_data: Inputs,
        feature_names: Sequence[str] | None = None,
        num_samples: int = 5000,
        seed: int = 0,
        categorical_features: Sequence[int] | None = None,
        groups: np.ndarray | Mapping[str, Any] | None = None,
        **options: Any,
    ):
        super().__init__(model, **options)
        self.num_samples = count(num_samples, "num_samples", minimum=2)
        self.seed = _check_seed(seed)
        self.groups = groups
        self._random_state = np.random.RandomState(self.seed)
        if isinstance(training_data, (list, tuple, dict)) or groups is not None:
            self._grouped_setup(training_data, groups, feature_names)
            return
        data = np.asarray(training_data)
        if data.ndim not in (2, 3) or data.dtype.kind not in "fiub" or len(data) < 2:
            raise ValueError(f"training_data: expected a numeric (M, F) table or (M, T, F) series with at least 2 rows, got {data.dtype} of shape {data.shape}. Pass the training data as an array.")
        self._sample_shape = data.shape[1:]
        data = data.reshape(len(data), -1)
        features = data.shape[1]
        if feature_names is not None and len(feature_names) != features:
            raise ValueError(f"feature_names: expected {features} names (one per column of training_data), got {len(feature_names)}.")
        categorical = [] if categorical_features is None else list(categorical_features)
        if not all(isinstance(c, (int, np.integer)) and 0 <= c < features for c in categorical):
            raise ValueError(f"categorical_features: expected column indices from 0 to {features - 1}, got {categorical_features!r}.")
        default_names = [str(f) for f in range(features)] if len(self._sample_shape) == 1 else [f"{f}@{t}" for t in range(self._sample_shape[0]) for f in range(self._sample_shape[1])]
        self.feature_names = [str(f) for f in feature_names] if feature_names is not None else default_names
        with preserved_global_state():
            self._lime = lime_tabular.LimeTabularExplainer(
                data.astype(np.float64),
                mode="regression",
                feature_names=self.feature_names,
                categorical_features=categorical,
                feature_selection="none",
                random_state=self._random_state,
            )

    def _grouped_setup(self, training_data: Inputs, groups: Any, feature_names: Sequence[str] | None) -> None:
        self._lime = None
        data = self.adapter.prepare(training_data, name="training_data")
        if num_samples(data) < 2:
            raise ValueError("training_data: expected at least 2 rows.")
        several = not isinstance(data, np.ndarray)
        if several and groups is not None and not isinstance(groups, Mapping):
            raise TypeError(f"groups: for a model with several inputs expected a dict {{name: input or (input, indices)}}, got {type(groups).__name__}.")
        if not several and not isinstance(groups, np.ndarray):
            raise TypeError(f"groups: for one input expected an int label array over a sample's features {data.shape[1:]}, got {type(groups).__name__}.")
        if several:
            self.group_names, self._labels = input_groups(self.adapter, data, groups)
        else:
            if groups.shape != data.shape[1:] or groups.dtype.kind not in "iu":
                raise ValueError(f"groups: expected int labels of shape {data.shape[1:]} (one per feature of a sample), got {groups.dtype} {groups.shape}.")
            ids, self._labels = np.unique(groups, return_inverse=True)
            self._labels = self._labels.reshape(groups.shape)
            self.group_names = [str(g) for g in ids]
        if feature_names is not None:
            if len(feature_names) != len(self.group_names):
                raise ValueError(f"feature_names: expected {len(self.group_names)} names (one per group), got {len(feature_names)}.")
            self.group_names = [str(f) for f in feature_names]
        self.feature_names = self.group_names
        self._fill = map_inputs(lambda a: (a.mean(axis=0) if a.dtype.kind == "f" else _mode(a)).astype(a.dtype)[None, None], data)

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict]:
        if self._lime is None:
            return self._attribute_groups(x, weights)
        if not isinstance(x, np.ndarray) or x.shape[1:] != self._sample_shape:
            raise ValueError(f"inputs: expected rows of shape (N, {', '.join(map(str, self._sample_shape))}) like training_data, got {getattr(x, 'shape', type(x).__name__)}.")
        rows = x.reshape(len(x), -1)
        n, features = rows.shape
        attributions = np.empty((n, features), np.float32)
        facts = {key: np.empty(n) for key in ("intercept", "r2", "local_prediction")}
        for i in range(n):
            predict = lambda r, w=weights[i]: _explained(self.adapter.forward(r.reshape((-1,) + x.shape[1:]).astype(x.dtype))[1], w)  # noqa: E731
            self._random_state.seed(self.seed)  # shared by lime's explainer, discretizer and LimeBase
            with preserved_global_state():
                exp = self._lime.explain_instance(rows[i].astype(np.float64), predict, num_features=features, num_samples=self.num_samples)
            for feature, weight in exp.local_exp[1]:  # regression mode: [1] is the fit, [0] its negation
                attributions[i, feature] = weight
            facts["intercept"][i], facts["r2"][i], facts["local_prediction"][i] = exp.intercept[1], exp.score, np.ravel(exp.local_pred)[0]
        return attributions.reshape(x.shape), {"feature_names": list(self.feature_names), **facts}

    def _attribute_groups(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict]:
        n, g = num_samples(x), len(self.group_names)
        data = [_masks(self.seed, self.num_samples, g)] * n
        masks, owners = _stacked(data)
        players = map_inputs(lambda label: np.broadcast_to(label, (n,) + label.shape), self._labels)
        if isinstance(x, np.ndarray):
            scores = self.adapter.masked_scores(x, players, masks, owners, self._fill)
        else:
            scores = self.adapter.masked_input_scores(x, players, masks, owners, self._fill)
        coefs, facts = _fit_masks(data, _explained(scores, weights[owners]), self.kernel_width, self.seed)
        group_weights = np.stack(coefs).astype(np.float32)
        return spread(group_weights, self._labels), {"group_weights": group_weights, "group_names": list(self.group_names), **facts}


def _mode(a: np.ndarray) -> np.ndarray:
    """The most frequent value of each element over the rows of an integer array."""
    flat = a.reshape(len(a), -1)
    return np.array([np.bincount(column - column.min()).argmax() + column.min() for column in flat.T]).reshape(a.shape[1:])


# -- texts --------------------------------------------------------------------------------------


def _vocabulary(setting: Setting) -> dict:
    """Token ids are read as words through the caller's vocabulary (token strings by id)."""
    return {"vocabulary": list(setting.vocabulary)} if setting.kind == "tokens" and setting.vocabulary is not None else {}


@register(kinds=("strings", "tokens"), defaults=_vocabulary, serves={"lime": ("strings", "tokens")})
class LimeText(Explainer):
    """lime's ``LimeTextExplainer`` (tokens removed, bag of words) on the compiled forward.

    The tokens are the model's own (:mod:`tf_explain_kit.text`): for a model that takes
    strings, its ``TextVectorization``'s standardisation, split and length; for a token-id
    model, the ids (with ``vocabulary``) or, with ``tokenizer``, whitespace words of texts.
    Each perturbed text drops the removed tokens from the text (as lime does; what follows
    the model's last token is cut, so nothing new moves into view), or drops their ids.
    The random draws, distances, kernel and ridge fit are lime's: with lime splitting on the
    same tokens and the same seed the weights are lime's.

    Args:
        num_samples: perturbed texts per explained text.
        seed: each text is explained as ``LimeTextExplainer(random_state=seed)`` would.
        vocabulary: for a token-id model: token strings by id (id 0 padding), for example
            ``TextVectorization.get_vocabulary()``; ``explain`` then takes the ids.
        tokenizer: for a token-id model explained on texts: a callable mapping a list of
            strings to an ``(n, T)`` int array of ids (for example an adapted
            ``TextVectorization``); ``explain`` then takes texts (and still takes ids,
            shown as ``vocabulary`` words, or as the ids without one).
        kernel_width: lime's kernel width on the cosine distance × 100 (lime's 25).

    ``explain`` takes texts (a list of str or bytes, an array ``(N,)`` or ``(N, 1)``, a
    ``tf.data`` dataset) or token ids ``(N, T)``. Attributions: per shown token ``(N, T)``
    for texts (``T`` the most tokens of a text, zero-padded), per position for ids (zero at
    padding); ``extras["tokens"]`` lists each sample's shown tokens. ``extras`` also hold
    ``intercept``, ``r2`` and ``local_prediction``.
    """

    method = "lime_text"

    def __init__(
        self,
        model: keras.Model,
        num_samples: int = 1000,
        seed: int = 0,
        vocabulary: Sequence[str] | None = None,
        tokenizer: Callable[[list[str]], Any] | None = None,
        kernel_width: float = 25.0,
        **options: Any,
    ):
        super().__init__(model, **options)
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(f"tokenizer: expected None or a callable list[str] -> (n, T) int token ids, got {type(tokenizer).__name__}.")
        if vocabulary is not None and (isinstance(vocabulary, str) or not all(isinstance(t, (str, bytes)) for t in vocabulary)):
            raise TypeError(f"vocabulary: expected the token strings by id (a list of str), got {type(vocabulary).__name__}.")
        self.takes_strings = text.takes_strings(model)
        if self.takes_strings and (tokenizer is not None or vocabulary is not None):
            given = "tokenizer" if tokenizer is not None else "vocabulary"
            raise ValueError(f"{given}: model '{model.name}' takes strings and tokenises them itself (its TextVectorization); leave {given}=None.")
        if not self.takes_strings and tokenizer is None and vocabulary is None:
            raise TypeError(
                f"vocabulary: model '{model.name}' takes token ids, not strings, so LimeText needs to know the tokens: pass "
                "vocabulary=<token strings by id> (for example TextVectorization.get_vocabulary()) to explain ids, or "
                "tokenizer=<callable list[str] -> (n, T) int ids> to explain texts."
            )
        self.num_samples = count(num_samples, "num_samples", minimum=2)
        self.seed = _check_seed(seed)
        self.tokenizer = tokenizer
        self.kernel_width = float(kernel_width)
        self.words = self.adapter.tokenizer if self.takes_strings else text.Tokenizer(vocabulary=vocabulary)
        self._documents: list[_Document] = []

    def explain(self, inputs: Any, targets: Any = None, contrast: Any = None) -> Explanation:
        """Explain texts or token ids (see the class docstring and :meth:`Explainer.explain`)."""
        if self.takes_strings:
            x = self.adapter.prepare(inputs)
            texts = text.as_texts(x)
            self.words.check(texts)
            documents = [_Document.of_text(t, self.words.tokens(t), i) for i, t in enumerate(texts)]
        elif self.tokenizer is not None and text.are_texts(inputs):
            texts = text.as_texts(inputs)
            x = self.adapter.prepare(np.asarray(self.tokenizer(texts)))
            documents = [_Document.of_text(t, self.words.tokens(t), i) for i, t in enumerate(texts)]
        else:
            x = self.adapter.prepare(inputs)
            if not isinstance(x, np.ndarray) or x.dtype.kind not in "iu" or x.ndim != 2:
                raise TypeError(f"inputs: LimeText on token-id model '{self.model.name}' explains token ids (N, T), got {getattr(x, 'dtype', type(x).__name__)} of shape {getattr(x, 'shape', '?')}.")
            documents = [_Document.of_ids(row, self.words, i) for i, row in enumerate(x)]
        self._documents = documents
        try:
            return super().explain(x, targets, contrast)
        finally:
            self._documents = []

    def _model_inputs(self, rows: list) -> np.ndarray:
        """Perturbed texts (or id rows) as the model takes them."""
        if isinstance(rows[0], np.ndarray):
            return np.concatenate(rows)
        texts = [t for part in rows for t in part]
        return self.adapter.prepare(np.asarray(self.tokenizer(texts))) if self.tokenizer is not None else self.adapter.prepare(texts)

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[np.ndarray, dict]:
        p, draws = self.num_samples, []
        for document in self._documents:
            if not len(document.features):
                raise ValueError(f"inputs: sample {document.index} ({document.source!r}) has no tokens the model looks up. Explain texts with at least one token.")
            draws.append(self._masks(int(document.features.max()) + 1))
        keeps = [data[:, d.features] for data, d in zip(draws, self._documents)]
        scores = self.adapter.forward(self._model_inputs([d.perturbed(keep.astype(bool)) for d, keep in zip(self._documents, keeps)]))[1]
        owners = np.repeat(np.arange(len(draws)), p)
        labels = _explained(scores, weights[owners])
        width = max(d.width for d in self._documents)
        attributions = np.zeros((len(draws), width), np.float32)
        facts = {key: np.empty(len(draws)) for key in ("intercept", "r2", "local_prediction")}
        kernel = partial(lime_kernel, kernel_width=self.kernel_width)
        for i, (data, document) in enumerate(zip(draws, self._documents)):
            distances = pairwise_distances(data, data[:1], metric="cosine").ravel() * 100
            base = lime_base.LimeBase(kernel, random_state=np.random.RandomState(self.seed))
            coef, facts["intercept"][i], facts["r2"][i], facts["local_prediction"][i] = _fit(base, data, labels[i * p : (i + 1) * p], distances)
            attributions[i, document.columns] = coef[document.features]
        return attributions, {"tokens": [d.shown for d in self._documents], **facts}

    def _masks(self, words: int) -> np.ndarray:
        """``(num_samples, words)`` 0/1 rows: lime's ``__data_labels_distances`` draws."""
        random_state = np.random.RandomState(self.seed)
        sizes = random_state.randint(1, words + 1, self.num_samples - 1)
        data = np.ones((self.num_samples, words))
        for i, size in enumerate(sizes, start=1):
            data[i, random_state.choice(range(words), size, replace=False)] = 0
        return data


class _Document(NamedTuple):
    """One explained sample as LIME sees it: its tokens, lime's words, how to perturb it."""

    index: int
    source: Any  # the text or the row of ids
    tokens: list  # text.Token per token (texts) or the token positions (ids)
    shown: list[str]  # the sample's tokens as shown (ids: one per position up to the last token)
    features: np.ndarray  # lime's word (distinct shown token, first-occurrence order) of each token
    columns: np.ndarray  # the attribution column of each token
    width: int  # attribution columns this sample needs

    @classmethod
    def of_text(cls, source: str, tokens: list, index: int) -> "_Document":
        shown = [t.shown for t in tokens]
        return cls(index, source, tokens, shown, _words(shown), np.arange(len(tokens)), len(tokens))

    @classmethod
    def of_ids(cls, row: np.ndarray, words: text.Tokenizer, index: int) -> "_Document":
        positions = np.flatnonzero(row)
        return cls(index, row, positions.tolist(), words.words(row), _words(row[positions].tolist()), positions, len(row))

    def perturbed(self, keep: np.ndarray) -> Any:
        """The sample with the tokens not kept (``keep``: ``(P, tokens)`` bool) removed."""
        if isinstance(self.source, str):
            return text.without(self.source, self.tokens, keep)
        row, positions = self.source, np.asarray(self.tokens)
        values = np.where(keep, row[positions], 0)
        right = row[0] == 0 and row[-1] != 0  # padded in front: keep the tokens at the end
        packed = np.take_along_axis(values, np.argsort(keep if right else ~keep, axis=1, kind="stable"), axis=1)
        out = np.zeros((len(keep), len(row)), row.dtype)
        if right:
            out[:, len(row) - len(positions) :] = packed
        else:
            out[:, : len(positions)] = packed
        return out


def _words(tokens: list) -> np.ndarray:
    """lime's bag of words: each token's word id, words numbered by first occurrence."""
    first: dict = {}
    return np.array([first.setdefault(t, len(first)) for t in tokens], np.int64)
