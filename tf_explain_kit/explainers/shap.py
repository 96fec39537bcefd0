"""SHAP explainers: expected gradients, DeepSHAP, Kernel SHAP and Partition SHAP.

``shap`` stays the algorithmic reference. ``GradientShap`` and ``KernelShap`` are native
re-implementations on the compiled, batched forward/gradient functions, and ``DeepShap`` on
the native DeepLIFT (tests show they give shap's numbers); ``PartitionShap`` calls shap itself. Nothing is cached
across calls except data-only work (the background summary), so explanations follow the
current weights inside a training loop, and no call touches the user's global random state.
"""

from __future__ import annotations

import itertools
from math import comb
from typing import Any, Callable, Mapping, NamedTuple

import keras
import numpy as np
import shap

from .. import text
from ..checks import count
from ..model import GradientPass, Inputs, ModelAdapter, concat_batches, flat_inputs, map_inputs, num_samples, take
from ..rng import preserved_global_state
from ..targets import resolve
from .base import Explainer, OnePassExplainer, per_token_at, require_float_inputs, require_positions
from .registry import NUMERIC, TEXT, at_embedding, background_rows, register
from .deeplift import DeepLiftPasses, summation_gap
from .groups import input_groups, spread

SUMMARIES = ("kmeans", "sample")


# -- shared checks ---------------------------------------------------------------------------
def _require_class_scores(model: keras.Model, output: int | str | None) -> None:
    """The explained output must be ``(N, classes)`` (or ``(N,)``): one score per class."""
    try:
        outputs = keras.tree.flatten(model.outputs)
    except (AttributeError, ValueError):
        return  # subclassed model: shapes unknown until called; the adapter flattens outputs
    if isinstance(output, str):
        return
    shape = tuple(outputs[output or 0].shape)
    if len(shape) > 2:
        raise ValueError(
            f"model: SHAP explains one score per class, so the explained output must have shape (N, classes); "
            f"got {shape}. Add a head that pools to class scores (for example GlobalAveragePooling + Dense), "
            "or wrap the model so it returns the score you want explained."
        )


def _background(adapter: ModelAdapter, background: Any) -> Inputs:
    if background is None:
        raise ValueError("background: expected reference samples shaped like the model's inputs (B, ...), got None. Pass a few training samples, e.g. x_train[:100].")
    return adapter.prepare(background, name="background")


def _explained(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (scores * weights).sum(axis=-1)


# -- GradientShap ------------------------------------------------------------------------------
@register(kinds=NUMERIC + TEXT, defaults=lambda s: {**background_rows(s), **at_embedding(s)}, serves={"shap": ("image",)})
class GradientShap(Explainer):
    """Expected gradients (``shap.GradientExplainer``), native and batched.

    For each input and each of ``samples`` draws, a background row ``b`` and ``t ~ U(0, 1)``
    are drawn from a generator seeded with ``seed``; the attribution is the mean of
    ``(x − b) · ∇score(b + t (x − b))``. Its sum equals ``score(x) − E[score(background)]``
    in expectation; ``extras["convergence_delta"]`` reports the Monte Carlo gap and
    ``extras["base_values"]`` the background's mean score.

    ``layer``: attribute at this layer's output (name, path or layer; ``x`` and ``b`` are then
    the layer's outputs for the input and the background row), as ``shap.GradientExplainer``
    does with a ``(model, layer)`` pair. At an ``Embedding`` the result is one value per
    token (for a model that takes strings, per shown token, :mod:`tf_explain_kit.text`);
    token ids and strings need it.
    """

    method = "gradient_shap"

    def __init__(self, model: keras.Model, background: Inputs, samples: int = 200, seed: int = 0, layer: str | keras.layers.Layer | None = None, **options: Any):
        super().__init__(model, **options)
        self.samples = count(samples, "samples", hint="draws per input; 200 is shap's default")
        self.background = _background(self.adapter, background)
        self.seed = seed
        self.layer = None if layer is None else self.adapter.find_layer(layer)
        require_positions(self.adapter, self.layer)

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict]:
        if self.layer is None:
            require_float_inputs(x, self.adapter, "GradientShap without layer=")
            ends, starts = x, self.background
            gradients = lambda rows, ws, points: self.adapter.gradients(points, ws).grads  # noqa: E731
        else:
            ends, starts = self.adapter.layer_output(x, self.layer), self.adapter.layer_output(self.background, self.layer)
            gradients = lambda rows, ws, points: self.adapter.gradients_at_layer(take(x, rows), ws, self.layer, points)[0]  # noqa: E731
        n, s, rows = num_samples(x), self.samples, num_samples(self.background)
        rng = np.random.default_rng(self.seed)
        picks, ts = rng.integers(0, rows, (n, s)), rng.random((n, s), np.float32)
        pairs = np.arange(n * s)
        totals = map_inputs(lambda a: np.zeros(a.shape, np.float64), ends)
        per_call = self.adapter.default_batch_size(ends)
        for i in range(0, n * s, per_call):
            idx = pairs[i : i + per_call]
            sample = idx // s
            t = ts.reshape(-1)[idx]
            start, end = take(starts, picks.reshape(-1)[idx]), take(ends, sample)
            delta = map_inputs(lambda lo, hi: hi - lo, start, end)
            points = map_inputs(lambda lo, d: lo + t.reshape((-1,) + (1,) * (d.ndim - 1)) * d, start, delta)
            grads = gradients(sample, weights[sample], points)
            owners, first = np.unique(sample, return_index=True)  # pairs come in sample order
            for total, g, d in zip(flat_inputs(totals), flat_inputs(grads), flat_inputs(delta)):
                total[owners] += np.add.reduceat(g * d, first, axis=0)
        attributions = map_inputs(lambda total: (total / s).astype(np.float32), totals)
        attributions, tokens = per_token_at(self.adapter, self.layer, x, attributions)
        _, both = self.adapter.forward(concat_batches([x, self.background]))  # one call for both
        scores, background_scores = both[:n], both[n:]
        base = weights @ background_scores.mean(axis=0)
        total = sum(a.reshape(n, -1).sum(axis=1) for a in flat_inputs(attributions))
        return attributions, {"base_values": base, "convergence_delta": total - (_explained(scores, weights) - base), **tokens}


# -- DeepShap ----------------------------------------------------------------------------------
@register(kinds=NUMERIC, defaults=background_rows, float_inputs=True)
class DeepShap(OnePassExplainer):
    """DeepSHAP: DeepLIFT (:class:`~tf_explain_kit.explainers.deeplift.DeepLift`) averaged
    over a background, as ``shap.DeepExplainer`` defines it, native and batched.

    Every input meets every background row in one compiled call per block of pairs (the
    background's own pass runs once per block), so its cost is about one gradient pass over
    the (input, background) pairs. Attributions have the input's shape and sum to
    ``score(x) − mean score(background)`` (``extras["base_values"]``): exactly wherever
    DeepLIFT's rules are exact (every layer it accepts, including LSTM/GRU gates, attention
    and softmax, where shap refuses); ``extras["convergence_delta"]`` reports the gap.
    Equal to ``shap.DeepExplainer`` on the models shap handles (tests).
    """

    method = "deep_shap"

    def __init__(self, model: keras.Model, background: Inputs, **options: Any):
        super().__init__(model, **options)
        _require_class_scores(model, options.get("output"))
        self.background = _background(self.adapter, background)
        self._passes = DeepLiftPasses(self.adapter, "DeepShap")

    def attribute_pass(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict, GradientPass]:
        require_float_inputs(x, self.adapter, "DeepShap")
        rows = num_samples(self.background)
        attributions, score, outputs, background_scores = self._passes(x, weights, self.background, np.full(rows, 1 / rows, np.float32), aligned=False)
        _, resolved = resolve(weights, outputs)
        base = resolved @ background_scores.astype(np.float64).mean(axis=0)
        return attributions, {"base_values": base, "convergence_delta": summation_gap(attributions, score - base)}, GradientPass(attributions, score, outputs)


# -- KernelShap --------------------------------------------------------------------------------
def _subsets(m: int, size: int) -> np.ndarray:
    """Every subset of ``size`` of ``m`` players as 0/1 rows, in itertools order."""
    index = np.array(list(itertools.combinations(range(m), size)), np.int64).reshape(-1, size)
    masks = np.zeros((len(index), m))
    np.put_along_axis(masks, index, 1.0, axis=1)
    return masks


def coalitions(m: int, nsamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Kernel SHAP's coalitions and kernel weights, as ``shap.KernelExplainer`` chooses them.

    Subset sizes (paired with their complements) are enumerated completely, smallest
    first, while the budget covers them at their Shapley-kernel weight; the remaining
    budget is sampled (vectorised; repeated draws add weight). With ``nsamples >= 2**m − 2``
    every coalition is enumerated and the solution is the exact Shapley values.
    """
    sizes, paired = int(np.ceil((m - 1) / 2)), int(np.floor((m - 1) / 2))
    kernel = np.array([(m - 1) / (s * (m - s)) for s in range(1, sizes + 1)])
    kernel[:paired] *= 2
    kernel /= kernel.sum()
    remaining, left, full = kernel.copy(), nsamples, 0
    masks, weights = [], []
    for size in range(1, sizes + 1):
        pairs = 2 if size <= paired else 1
        coalitions_of_size = comb(m, size) * pairs
        if left * remaining[size - 1] / coalitions_of_size < 1 - 1e-8:
            break
        full, left = full + 1, left - coalitions_of_size
        if remaining[size - 1] < 1:
            remaining /= 1 - remaining[size - 1]
        block = _subsets(m, size)
        block = np.stack([block, 1 - block], axis=1).reshape(-1, m) if pairs == 2 else block
        masks.append(block)
        weights.append(np.full(len(block), kernel[size - 1] / coalitions_of_size))
    if full < sizes and left > 0:
        sampled, counts = _sample_coalitions(m, left, full, paired, kernel, rng)
        masks.append(sampled)
        weights.append(counts * kernel[full:].sum() / counts.sum())
    return np.concatenate(masks), np.concatenate(weights)


def _sample_coalitions(m: int, wanted: int, full: int, paired: int, kernel: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``wanted`` distinct coalitions of the sizes not enumerated, with their draw counts."""
    p = kernel.copy()
    p[:paired] /= 2  # a paired size yields two coalitions per draw
    p = p[full:] / p[full:].sum()
    draws = 4 * wanted
    size = rng.choice(len(p), draws, p=p) + full + 1
    keys = rng.random((draws, m))
    chosen = keys <= np.sort(keys, axis=1)[np.arange(draws), size - 1][:, None]  # `size` random players
    candidates = np.stack([chosen, ~chosen], axis=1).reshape(-1, m)[np.stack([np.ones(draws, bool), size <= paired], axis=1).reshape(-1)]
    packed = np.ascontiguousarray(np.packbits(candidates, axis=1))
    _, first, inverse = np.unique(packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1), return_index=True, return_inverse=True)
    new = first[inverse] == np.arange(len(candidates))
    cut = min(int(np.searchsorted(np.cumsum(new), wanted)) + 1, len(candidates))
    counts = np.bincount(inverse[:cut], minlength=len(first))
    return candidates[:cut][new[:cut]].astype(np.float64), counts[inverse[:cut][new[:cut]]].astype(np.float64)


class Design(NamedTuple):
    """Kernel SHAP's coalitions for ``m`` players and the weighted least squares that reads them."""

    masks: np.ndarray  # (K, m) bool: the players shown in each coalition
    projection: np.ndarray  # (m − 1, K): maps the centred values y to the first m − 1 Shapley values


def design(masks: np.ndarray, weights: np.ndarray) -> Design:
    """Shap's constrained weighted least squares (``l1_reg=False``) for these coalitions.

    With the efficiency constraint substituted (the last player takes the rest), the
    values are ``φ = argmin Σ w_k (y_k − D_k φ)²`` with ``D = masks[:, :-1] − masks[:, -1:]``:
    a fixed linear map of ``y``, computed once (pseudo-inverse: the least-norm solution
    when too few coalitions were drawn to determine every player).
    """
    root = np.sqrt(weights)[:, None]
    projection = np.linalg.pinv(root * (masks[:, :-1] - masks[:, -1:])) * root.T
    return Design(masks.astype(bool), projection)


def shapley_values(d: Design, values: np.ndarray, fx: float, fnull: float) -> np.ndarray:
    """Shapley values of ``m`` players whose coalitions ``d.masks`` have mean scores ``values``."""
    total = fx - fnull
    if d.masks.shape[1] == 1:
        return np.array([total])
    phi = d.projection @ (values - fnull - d.masks[:, -1] * total)
    return np.append(phi, total - phi.sum())


@register(kinds=("tabular", "sequence", "tokens", "strings"), defaults=lambda s: {"background": None} if s.kind == "strings" else background_rows(s), serves={"shap": ("tabular", "sequence", "tokens")})
class KernelShap(Explainer):
    """Kernel SHAP (``shap.KernelExplainer`` with ``l1_reg=False``) on the compiled forward.

    Players are single features (tabular ``(N, F)``, token ids ``(N, T)``, the cells of a
    series ``(N, T, F)``) or groups: ``groups`` is an int label array over the leading
    feature axes (``(H, W)`` superpixels, ``(T,)`` token spans, ``(T, F)`` time × feature
    windows such as :func:`~tf_explain_kit.explainers.groups.window_groups`), one per sample
    ``(N, H, W)``, or a callable ``inputs -> labels`` (for example a superpixel
    segmentation). A hidden player takes the background's values; each coalition's value is
    the background-weighted mean score. Attributions have the shape of the labels,
    ``(N,) + groups.shape``, and each element is *assigned* its group's whole value (not a
    share), so efficiency holds over the groups: ``extras["shap_values"]`` (per group) sum
    to ``f(x) − extras["base_values"]`` (the background's mean score).

    Models with several inputs: players are named groups (``groups={name: input or
    (input, indices)}``, see :mod:`~tf_explain_kit.explainers.groups`; default: each input
    one group). Attributions have the inputs' structure and shapes (elements in no group:
    0); ``extras["group_names"]`` names the columns of ``extras["shap_values"]``.

    For a model that takes strings the players are each text's tokens, the model's own
    (:mod:`tf_explain_kit.text`); a hidden token is removed from the text (``background``
    None, the base value is the empty text's score). Attributions are ``(N, T)`` per shown
    token, zero-padded; ``extras["tokens"]`` lists them.

    Args:
        background: reference rows ``(B, ...)``, e.g. training samples or a fill image
            (None for a model that takes strings).
        nsamples: coalitions per input; ``"auto"`` is shap's ``2 M + 2048``, capped at all
            ``2**M − 2`` coalitions, which gives exact Shapley values. Every player is kept
            (no L1 feature selection).
        summarize: summarise the background to this many rows once, at construction.
        summary: ``"kmeans"`` (``shap.kmeans``: weighted centroids) or ``"sample"`` (seeded rows).
    """

    method = "kernel_shap"

    def __init__(
        self,
        model: keras.Model,
        background: Inputs,
        nsamples: int | str = "auto",
        seed: int = 0,
        groups: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
        summarize: int | None = None,
        summary: str = "kmeans",
        **options: Any,
    ):
        super().__init__(model, **options)
        _require_class_scores(model, options.get("output"))
        if nsamples != "auto":
            count(nsamples, "nsamples", hint="coalitions per input, or 'auto'")
        if summary not in SUMMARIES:
            raise ValueError(f"summary: expected one of {SUMMARIES}, got {summary!r}.")
        if not (groups is None or callable(groups) or isinstance(groups, (np.ndarray, Mapping))):
            raise TypeError(f"groups: expected None, an int label array, a callable inputs -> labels or (several inputs) a dict {{name: input or (input, indices)}}, got {type(groups).__name__}.")
        self.nsamples, self.seed, self.groups = nsamples, seed, groups
        self._designs: dict[int, Design] = {}
        self.takes_strings = text.takes_strings(model)
        if self.takes_strings:  # players are tokens: a hidden token is removed from the text
            if background is not None or groups is not None:
                raise ValueError(
                    f"{'background' if background is not None else 'groups'}: model '{model.name}' takes strings; KernelShap plays its tokens "
                    "(the model's own, see tf_explain_kit.text) and hides a token by removing it from the text, so the base value is the "
                    "empty text's score. Pass background=None and groups=None."
                )
            self.background = None
            return
        background = _background(self.adapter, background)
        if isinstance(background, np.ndarray) and isinstance(groups, Mapping):
            raise TypeError("groups: a dict of named input groups is for models with several inputs; for one input pass an int label array.")
        if not isinstance(background, np.ndarray):
            input_groups(self.adapter, background, groups)  # a bad group spec fails here, not at explain time
        rows = num_samples(background)
        self.background, self.background_weights = background, np.full(rows, 1 / rows)
        if summarize is not None and count(summarize, "summarize", hint="rows kept from the background") < len(background):
            self._summarize(summarize, summary)

    def _summarize(self, rows: int, summary: str) -> None:
        if not isinstance(self.background, np.ndarray):
            raise ValueError("summarize: background summaries are for single-input models; pass fewer background rows instead.")
        flat = self.background.reshape(len(self.background), -1)
        if summary == "sample":
            keep = np.sort(np.random.default_rng(self.seed).choice(len(flat), rows, replace=False))
            self.background, self.background_weights = self.background[keep], np.full(rows, 1 / rows)
            return
        with preserved_global_state():
            dense = shap.kmeans(flat, rows)
        self.background = dense.data.reshape((rows,) + self.background.shape[1:]).astype(self.background.dtype)
        self.background_weights = np.asarray(dense.weights, np.float64) / np.sum(dense.weights)

    def labels(self, x: np.ndarray) -> np.ndarray:
        """Players of every sample: ``(N,) + leading feature shape`` int labels."""
        if self.groups is None:
            return np.broadcast_to(np.arange(int(np.prod(x.shape[1:]))).reshape(x.shape[1:]), x.shape)
        labels = np.asarray(self.groups(x) if callable(self.groups) else self.groups)
        if labels.shape == x.shape[1 : labels.ndim + 1]:
            labels = np.broadcast_to(labels, (len(x),) + labels.shape)
        if labels.ndim < 2 or labels.shape != x.shape[: labels.ndim] or labels.dtype.kind not in "iu":
            raise ValueError(f"groups: expected int labels over the leading feature axes of inputs {x.shape}, e.g. {x.shape[1:-1] or x.shape[1:]} or one per sample {x.shape[:-1] if x.ndim > 2 else x.shape}; got {labels.dtype} {labels.shape}.")
        return labels

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict]:
        if self.takes_strings:
            return self._attribute_tokens(x, weights)
        n = num_samples(x)
        if isinstance(x, np.ndarray):
            labels = self.labels(x)
            players = [np.unique(sample, return_inverse=True)[1].reshape(sample.shape) for sample in labels]
            elements = None if self.groups is None else np.stack(players)  # without groups each feature plays
            phis, fnull = self._shapley([int(p.max()) + 1 for p in players], lambda masks, owners: self.adapter.masked_scores(x, elements, masks, owners, self.background[None], self.background_weights), weights)
            attributions = np.stack([phi[p] for phi, p in zip(phis, players)])
            shap_values = np.stack(phis) if len({len(v) for v in phis}) == 1 else np.array(phis, dtype=object)
            return attributions, {"shap_values": shap_values, "base_values": fnull, "labels": labels}
        names, labels = input_groups(self.adapter, x, self.groups)
        players = map_inputs(lambda label: np.broadcast_to(label, (n,) + label.shape), labels)
        fills = map_inputs(lambda b: b[None], self.background)
        phis, fnull = self._shapley([len(names)] * n, lambda masks, owners: self.adapter.masked_input_scores(x, players, masks, owners, fills, self.background_weights), weights)
        return spread(np.stack(phis), labels), {"shap_values": np.stack(phis), "base_values": fnull, "group_names": names}

    def _shapley(self, players: list[int], scores: Callable[[np.ndarray, np.ndarray], np.ndarray], weights: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """Each sample's Shapley values over its ``players[i]`` players, and E f(background).

        ``scores(masks, owners)`` scores the coalition rows; each sample's rows are: every
        player shown (f(x)), none shown (E f(background)), then its design's coalitions.
        """
        designs = [self._design(m) for m in players]
        sizes = np.array([len(d.masks) + 2 for d in designs])
        owners, starts = np.repeat(np.arange(len(designs)), sizes), np.cumsum(sizes) - sizes
        masks = np.zeros((len(owners), max(d.masks.shape[1] for d in designs)), bool)
        masks[starts] = True
        for start, d in zip(starts, designs):
            masks[start + 2 : start + 2 + len(d.masks), : d.masks.shape[1]] = d.masks
        values = _explained(scores(masks, owners), weights[owners])
        fx, fnull = values[starts], values[starts + 1]
        phis = [shapley_values(d, values[start + 2 : start + size], f, f0).astype(np.float32) for d, start, size, f, f0 in zip(designs, starts, sizes, fx, fnull)]
        return phis, fnull

    def _attribute_tokens(self, x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, dict]:
        """Shapley values of each text's tokens, a hidden token removed from the text."""
        texts = text.as_texts(x)
        self.adapter.tokenizer.check(texts)
        tokens = [self.adapter.tokenizer.tokens(t) for t in texts]
        empty = [i for i, t in enumerate(tokens) if not t]
        if empty:
            raise ValueError(f"inputs: texts {empty[:10]} have no tokens the model looks up (for example {texts[empty[0]][:40]!r}). Explain texts with at least one token.")

        def scores(masks: np.ndarray, owners: np.ndarray) -> np.ndarray:
            strings = [s for i, (t, found) in enumerate(zip(texts, tokens)) for s in text.without(t, found, masks[owners == i, : len(found)])]
            return self.adapter.forward(self.adapter.prepare(strings))[1]

        phis, fnull = self._shapley([len(t) for t in tokens], scores, weights)
        attributions = np.zeros((len(texts), max(len(t) for t in tokens)), np.float32)
        for row, phi in zip(attributions, phis):
            row[: len(phi)] = phi
        return attributions, {"base_values": fnull, "tokens": [[t.shown for t in found] for found in tokens]}

    def _design(self, m: int) -> Design:
        """Coalitions for ``m`` players: drawn once per ``(seed, m)`` and reused by every
        sample and call with as many players."""
        if m not in self._designs:
            budget = 2 * m + 2048 if self.nsamples == "auto" else self.nsamples
            rng = np.random.default_rng([self.seed, m])
            self._designs[m] = design(*coalitions(m, min(budget, 2**m - 2) if m <= 30 else budget, rng)) if m > 1 else Design(np.ones((0, 1), bool), np.zeros((0, 0)))
        return self._designs[m]


# -- PartitionShap -----------------------------------------------------------------------------
@register(kinds=("image", "sequence", "strings"), serves={"shap": ("strings",)})
class PartitionShap(Explainer):
    """Partition SHAP (``shap.PartitionExplainer``) for images and for text models.

    Images ``(N, H, W, C)``: ``shap.maskers.Image`` with a constant fill (no OpenCV needed:
    its ``blur``/``inpaint`` fills are the only parts that import cv2). ``fill="mean"``
    hides pixels with each image's mean colour; a number or an array of the image's shape
    also works. Attributions have the input's shape.

    Series ``(N, T, F)``: the same masker's hierarchy over the ``(T, F)`` grid of cells (it
    halves the longer side first: time windows, then features); ``fill="mean"`` hides a
    cell with its feature's mean over time. Attributions are ``(N, T, F)``, one value per
    cell, summing to ``f(x) − f(all hidden)``.

    Text: for a model that takes strings (e.g. one with a ``TextVectorization`` inside),
    ``shap.maskers.Text`` over the model's own tokens (:mod:`tf_explain_kit.text`), a
    hidden token removed from the text (``mask_token`` None), or over a Hugging Face-style
    ``tokenizer``'s tokens with its ``mask_token``. Attributions are ``(N, T)`` per shown
    token, zero-padded to the longest text; ``extras["tokens"]`` lists each sample's tokens.

    Partition SHAP is deterministic; ``seed`` is kept for a uniform API.
    """

    method = "partition_shap"

    def __init__(self, model: keras.Model, max_evals: int = 500, seed: int = 0, fill: float | str | np.ndarray = "mean", tokenizer: Any = None, mask_token: str | None = None, **options: Any):
        super().__init__(model, **options)
        _require_class_scores(model, options.get("output"))
        self.max_evals = count(max_evals, "max_evals", hint="model evaluations per input; 500 is shap's default")
        if isinstance(fill, str) and fill != "mean":
            raise ValueError(f"fill: expected 'mean', a number or an array of the image's shape, got {fill!r} (OpenCV fills such as blur/inpaint are not used).")
        self.seed, self.fill, self.tokenizer, self.mask_token = seed, fill, tokenizer, mask_token
        specs = keras.tree.flatten(getattr(model, "inputs", None) or [])
        if len(specs) > 1:
            raise TypeError(f"model: PartitionShap explains single-input models (one image, series or text array); '{model.name}' takes {len(specs)} inputs. Use KernelShap or LimeTabular with named input groups.")
        if len(specs) == 1 and len(specs[0].shape) == 2 and "float" in str(specs[0].dtype):
            raise ValueError(f"model: PartitionShap masks images, series and texts; '{model.name}' takes a table (N, {specs[0].shape[1]}). Use KernelShap (exact Shapley values for up to ~12 features) or LimeTabular.")

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict]:
        if not isinstance(x, np.ndarray):
            raise TypeError("inputs: PartitionShap explains single-input models (one image or one text array).")
        strings = text.is_text(x)
        if not strings and (x.ndim not in (3, 4) or x.dtype.kind != "f"):
            raise ValueError(f"inputs: PartitionShap needs float images (N, H, W, C), series (N, T, F) or an array of strings (N,), got {x.dtype} {x.shape}. For tabular data use KernelShap.")
        series = not strings and x.ndim == 3
        samples = text.as_texts(x) if strings else [x[i, ..., None] if series else x[i] for i in range(len(x))]
        if strings and self.tokenizer is None:
            self.adapter.tokenizer.check(samples)
        results = [self._explain_one(sample, w, strings, (0,) if series else (0, 1), x.shape[1:]) for sample, w in zip(samples, weights)]
        base = np.array([r.base_values for r in results], np.float64).reshape(-1)
        if not strings:
            return np.stack([r.values for r in results]).reshape(x.shape).astype(np.float32), {"base_values": base}
        longest = max(len(r.values) for r in results)
        attributions = np.zeros((len(x), longest), np.float32)
        for row, r in zip(attributions, results):
            row[: len(r.values)] = r.values
        tokens = self.adapter.tokenizer.shown(samples) if self.tokenizer is None else [list(r.data) for r in results]
        return attributions, {"base_values": base, "tokens": tokens}

    def _explain_one(self, sample: Any, weights: np.ndarray, strings: bool, mean_axes: tuple[int, ...] = (0, 1), shape: tuple[int, ...] = ()) -> Any:
        """One sample through shap. A series is masked as a one-channel ``(T, F, 1)`` image:
        ``shape`` is the model's sample shape, ``mean_axes`` what ``fill="mean"`` averages."""

        def score(batch: Any) -> np.ndarray:
            batch = self.adapter.prepare([str(t) for t in batch]) if strings else np.asarray(batch, np.float32).reshape((-1,) + tuple(shape))
            return self.adapter.forward(batch)[1] @ weights

        if strings:
            tokenizer = _ShapTokenizer(self.adapter.tokenizer) if self.tokenizer is None else self.tokenizer
            mask_token = self.mask_token if self.mask_token is not None or self.tokenizer is not None else " "
            masker, data = shap.maskers.Text(tokenizer, mask_token=mask_token), [sample]
        else:
            value = sample.mean(axis=mean_axes, keepdims=True) * np.ones_like(sample) if isinstance(self.fill, str) else np.broadcast_to(np.asarray(self.fill, np.float32), shape).reshape(sample.shape)
            masker, data = shap.maskers.Image(np.asarray(value, np.float32), sample.shape), sample[None]
        with preserved_global_state():
            explainer = shap.PartitionExplainer(score, masker)
            return explainer(data, max_evals=self.max_evals, batch_size=self.adapter.default_batch_size(sample[None]) if not strings else 256, silent=True)[0]


class _ShapTokenizer:
    """The model's tokens (:mod:`tf_explain_kit.text`) in the form ``shap.maskers.Text`` asks
    a tokenizer for: the tokens as ``input_ids`` with their ``offset_mapping``. A text
    without tokens is one piece (shap asks for the id of its mask token, ``" "``)."""

    def __init__(self, tokenizer: text.Tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, s: str, return_offsets_mapping: bool = True) -> dict:
        tokens = self.tokenizer.tokens(s)
        if not tokens and s:
            return {"input_ids": [s], "offset_mapping": [(0, len(s))]}
        return {"input_ids": [t.shown for t in tokens], "offset_mapping": [(t.start, t.end) for t in tokens]}
