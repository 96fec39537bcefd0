"""Occlusion: the score drop when part of the input is hidden.

Images are hidden by square patches, time series ``(N, T, F)`` by windows of time steps,
token ids ``(N, T)`` by windows of tokens (replaced by a pad id) and tables ``(N, F)`` by
single features, windows of features or user-given feature groups.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np

from ..data import has_2d_layers
from ..model import Inputs, flat_inputs
from .base import Explainer
from .registry import register


def _sizes(value: Any, argument: str) -> tuple[int, ...]:
    sizes = (value,) if np.isscalar(value) else tuple(value)
    if not 1 <= len(sizes) <= 2 or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in sizes):
        raise ValueError(f"{argument}: expected a positive int or (rows, columns) for images, (steps, features) for series, got {value!r}.")
    return tuple(int(v) for v in sizes)


def _starts(size: int, patch: int, stride: int) -> list[int]:
    """Window offsets covering every element, the last one flush with the edge."""
    starts = list(range(0, max(size - patch, 0) + 1, stride))
    if starts[-1] != max(size - patch, 0):
        starts.append(max(size - patch, 0))
    return starts


def explained_input(arrays: list[np.ndarray], model: keras.Model) -> tuple[int, str]:
    """Position and kind of the input Occlusion hides: the first float image ``(N, H, W[, C])``,
    else the first time series ``(N, T, F)``, else token ids ``(N, T)``, else a table ``(N, F)``.
    A 3-D float input is a grey image when the model has 2-D layers, a series otherwise."""
    image_3d = has_2d_layers(model)
    kinds = [
        ("image" if a.ndim == 4 or image_3d else "sequence") if a.dtype.kind == "f" and a.ndim in (3, 4) else "tokens" if a.dtype.kind in "iu" and a.ndim == 2 else "tabular" if a.dtype.kind == "f" and a.ndim == 2 else None
        for a in arrays
    ]
    for kind in ("image", "sequence", "tokens", "tabular"):
        if kind in kinds:
            return kinds.index(kind), kind
    raise ValueError(f"inputs: Occlusion hides parts of images (N, H, W[, C]), series (N, T, F), token ids (N, T) or tables (N, F); got inputs {[(a.dtype.name, a.shape) for a in arrays]}.")


@register(kinds=("image", "sequence", "tabular", "tokens"))
class Occlusion(Explainer):
    """Score(x) − score(x with a window hidden), averaged over the windows covering each element.

    Args:
        patch_size: the hidden window. Images: side in pixels (int or (rows, columns));
            default about 1/8 of the image side. Series ``(N, T, F)``: time steps (int,
            every feature hidden together) or (steps, features); default about T/8 steps.
            Token ids and tables: tokens or features; default 1.
        stride: step between windows (same forms); default half the window.
        fill: the value of hidden elements: a number (for token ids: the pad id, default
            0), ``"mean"`` (each sample's mean; not for token ids) or an array shaped like
            one sample (a baseline, e.g. the training mean of each feature).
        groups: instead of windows, hide each group alone: an int label array over the
            hidden input's elements (``(F,)`` for tables, ``(T, F)`` for series, ``(T,)``
            for tokens, ``(H, W)`` for images), or for tables a list of feature-index
            lists. Every element gets the drop of its group (elements in no listed group: 0).

    Every window of every sample is scored in large batches. Attributions: images
    ``(N, H, W)``; series ``(N, T)`` when windows span every feature, else ``(N, T, F)``
    (per time step and feature; also with ``groups``); token ids ``(N, T)``; tables
    ``(N, F)``. In a multi-input model the first image (else series, token, table) input is
    hidden and the other inputs held.
    """

    method = "occlusion"

    def __init__(
        self,
        model: keras.Model,
        patch_size: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        fill: float | str | np.ndarray = 0.0,
        groups: np.ndarray | Sequence[Sequence[int]] | None = None,
        **options: Any,
    ):
        super().__init__(model, **options)
        if not (isinstance(fill, np.ndarray) or fill == "mean" or np.isscalar(fill) and not isinstance(fill, str)):
            raise ValueError(f"fill: expected a number, 'mean' or an array shaped like one sample, got {fill!r}.")
        self.patch_size = None if patch_size is None else _sizes(patch_size, "patch_size")
        self.stride = None if stride is None else _sizes(stride, "stride")
        self.fill = fill
        self.groups = None if groups is None else self._labels(groups)
        specs = getattr(model, "inputs", None) or []
        if specs and all("string" in str(s.dtype) for s in keras.tree.flatten(specs)):
            raise TypeError(f"model: '{model.name}' takes raw strings, which Occlusion cannot hide element by element. Use LimeText or PartitionShap (they remove words), or explain a token-id model.")
        if specs and isinstance(fill, str) and all(str(s.dtype).startswith(("int", "uint")) for s in keras.tree.flatten(specs)):
            raise ValueError("fill: 'mean' of token ids is not a token; pass the pad id (fill=0 for Keras TextVectorization) instead.")

    @staticmethod
    def _labels(groups: Any) -> np.ndarray:
        if isinstance(groups, np.ndarray):
            if groups.dtype.kind not in "iu":
                raise ValueError(f"groups: expected int labels, got {groups.dtype}.")
            return groups
        lists = [list(g) for g in groups]
        if not lists or not all(lists) or not all(isinstance(i, (int, np.integer)) and i >= 0 for g in lists for i in g):
            raise ValueError(f"groups: expected an int label array or non-empty lists of feature indices, got {groups!r}.")
        labels = np.full(max(max(g) for g in lists) + 1, -1)
        for label, group in enumerate(lists):
            if (labels[group] >= 0).any():
                raise ValueError(f"groups: feature(s) {[i for i in group if labels[i] >= 0]} are in more than one group; each feature belongs to at most one.")
            labels[group] = label
        return labels

    def masks(self, lead: tuple[int, ...], kind: str) -> np.ndarray:
        """``(P,) + lead`` boolean masks, one per hidden window or group."""
        if self.groups is not None:
            labels = self.groups
            if kind == "tabular" and labels.ndim == 1 and len(labels) < lead[0]:
                labels = np.concatenate([labels, np.full(lead[0] - len(labels), -1)])
            if labels.shape != lead:
                raise ValueError(f"groups: expected labels of shape {lead} (one per element of the hidden {kind} input), got {labels.shape}.")
            return np.stack([labels == g for g in np.unique(labels) if g >= 0])
        default = (1,) if kind in ("tokens", "tabular") else (max(1, round(lead[0] / 8)), lead[1] if kind == "sequence" else max(1, round(lead[1] / 8)))
        patch = self._full(self.patch_size or default, lead, kind)
        stride = self._full(self.stride or tuple(max(1, q // 2) for q in patch), lead, kind, patch)
        if len(patch) != len(lead) or len(stride) != len(lead):
            raise ValueError(f"patch_size/stride: expected {len(lead)} size(s) for {kind} inputs with elements {lead}, got patch_size={self.patch_size}, stride={self.stride}.")
        axes = [[slice(s, s + p) for s in _starts(size, p, st)] for size, p, st in zip(lead, patch, stride)]
        masks = []
        for window in np.ndindex(*(len(a) for a in axes)):
            mask = np.zeros(lead, bool)
            mask[tuple(a[i] for a, i in zip(axes, window))] = True
            masks.append(mask)
        return np.stack(masks)

    @staticmethod
    def _full(sizes: tuple[int, ...], lead: tuple[int, ...], kind: str, patch: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """One size per axis: an int is square for images; for series it covers time and
        every feature (a stride: the patch's feature width)."""
        if len(sizes) != 1 or len(lead) == 1:
            return sizes
        if kind == "sequence":
            return (sizes[0], lead[1] if patch is None else patch[1])
        return sizes * len(lead)

    def _fills(self, hidden: np.ndarray, kind: str) -> np.ndarray:
        """``(N,) + sample shape`` values of hidden elements."""
        if isinstance(self.fill, np.ndarray):
            if self.fill.shape != hidden.shape[1:]:
                raise ValueError(f"fill: expected an array shaped like one sample, {hidden.shape[1:]}, got {self.fill.shape}.")
            return np.broadcast_to(self.fill.astype(hidden.dtype), hidden.shape)
        if self.fill == "mean":
            if kind == "tokens":
                raise ValueError("fill: 'mean' of token ids is not a token; pass the pad id (fill=0 for Keras TextVectorization) instead.")
            means = hidden.reshape(len(hidden), -1).mean(axis=1)
            return np.broadcast_to(means.reshape((-1,) + (1,) * (hidden.ndim - 1)).astype(hidden.dtype), hidden.shape)
        if kind == "tokens" and float(self.fill) != int(self.fill):
            raise ValueError(f"fill: hidden tokens need an integer token id (the pad id), got {self.fill!r}.")
        return np.full(hidden.shape, self.fill, hidden.dtype)

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict]:
        arrays = flat_inputs(x)
        position, kind = explained_input(arrays, self.model)
        hidden = arrays[position]
        n = len(hidden)
        lead = hidden.shape[1:3] if kind == "image" else hidden.shape[1:]
        masks = self.masks(lead, kind)
        p = len(masks)
        fills = self._fills(hidden, kind)
        _, scores = self.adapter.forward(x)
        reference = (scores * weights).sum(axis=1)
        pairs = np.arange(n * p)
        drops = np.empty(n * p, np.float32)
        per_call = self.adapter.default_batch_size(x)
        trailing = (1,) * (hidden.ndim - 1 - len(lead))
        for i in range(0, n * p, per_call):
            idx = pairs[i : i + per_call]
            sample, window = idx // p, idx % p
            parts = [a[sample] for a in arrays]
            parts[position] = np.where(masks[window].reshape((len(idx),) + lead + trailing), fills[sample], hidden[sample])
            _, s = self.adapter.forward(keras.tree.pack_sequence_as(x, parts))
            drops[i : i + per_call] = reference[sample] - (s * weights[sample]).sum(axis=1)
        flat = masks.reshape(p, -1).astype(np.float32)
        coverage = flat.sum(axis=0)
        attributions = (drops.reshape(n, p) @ flat / np.maximum(coverage, 1)).reshape((n,) + lead)
        if kind == "sequence" and self.groups is None and (masks == masks[..., :1]).all():
            attributions = attributions[..., 0]  # every window spans all features: one value per time step
        return attributions.astype(np.float32), {"patches": p}
