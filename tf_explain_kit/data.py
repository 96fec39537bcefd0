"""Validation data for the callback: harmonised once at train begin, then fixed samples."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .model import Inputs, embedding_layers, flat_inputs, iter_layers, num_samples

SELECTIONS = ("stratified", "first", "misclassified")
_POOL = 2048  # samples read from a tf.data.Dataset to choose from


def split_validation(validation_data: Any, batched_rank: int | None = None) -> tuple[Inputs, np.ndarray | None]:
    """``(x, y)`` arrays from a tuple/list ``(x, y)``, an ``x`` alone, or a ``tf.data.Dataset``.

    A dataset is read once, up to a pool of samples; ``batched_rank`` (the rank of the
    model's first input, batch axis included) tells batched from unbatched elements.
    ``y`` of a multi-output model may be a list or dict of arrays, one per output.
    """
    if hasattr(validation_data, "as_numpy_iterator"):
        return _from_dataset(validation_data, batched_rank)
    if isinstance(validation_data, tuple) and len(validation_data) in (2, 3):
        x, y = validation_data[0], validation_data[1]
        return x, None if y is None else _labels_for(x, _targets(y))
    if isinstance(validation_data, (np.ndarray, list, dict)):
        return validation_data, None
    raise TypeError(
        f"validation_data: expected (x, y) arrays, x alone, or a tf.data.Dataset of (x, y), got {type(validation_data).__name__}. "
        "For multi-input models pass ({'input_a': xa, 'input_b': xb}, y) or ([xa, xb], y)."
    )


def _labels_for(x: Inputs, y: Any) -> Any:
    """``y`` (an array, or one per output) checked to hold one target per sample of ``x``."""
    arrays = flat_inputs(x)
    if isinstance(x, (list, tuple)) and not all(isinstance(a, np.ndarray) for a in arrays):
        n = len(x)  # texts, or a nested list as one array
    else:
        n = len(np.asarray(arrays[0]))
    for part in flat_inputs(y):
        if np.ndim(part) == 0 or len(part) != n:
            raise ValueError(f"validation_data: expected one label per sample in (x, y), {n} for x, got y of shape {np.shape(part)}. Pass labels for every sample of x, or x alone.")
    return y


def dataset_inputs(dataset: Any, batched_rank: int | None, name: str = "inputs") -> Inputs:
    """Every ``x`` of a ``tf.data.Dataset`` of ``x`` or ``(x, y)`` elements, batched or not."""
    return _from_dataset(dataset, batched_rank, limit=None, name=name)[0]


def _from_dataset(dataset: Any, batched_rank: int | None, limit: int | None = _POOL, name: str = "validation_data") -> tuple[Inputs, np.ndarray | None]:
    xs, ys, count = [], [], 0
    for element in dataset.as_numpy_iterator():
        x, y = (element[0], element[1]) if isinstance(element, tuple) and len(element) >= 2 else (element, None)
        first = np.asarray(flat_inputs(x)[0])
        # An unbatched element: add the batch axis. Texts (N,) and (N, 1) are both batches (a
        # batch of one text and one unbatched (1,) text are the same thing).
        unbatched = first.ndim == 0 if first.dtype.kind in "OSU" else batched_rank is None or first.ndim != batched_rank
        if unbatched:
            x, y = _map(lambda a: np.asarray(a)[None], x), None if y is None else _map(lambda a: np.asarray(a)[None], _targets(y))
        xs.append(x)
        ys.append(y)
        count += num_samples(x)
        if limit is not None and count >= limit:
            break
    if not xs:
        raise ValueError(f"{name}: the dataset is empty; pass a dataset with at least one (x, y) element.")
    x = _map(lambda *parts: np.concatenate(parts), *xs) if len(xs) > 1 else xs[0]
    y = None if ys[0] is None else _map(lambda *parts: np.concatenate(parts), *map(_targets, ys))
    return x, y


def _targets(y: Any) -> Any:
    """An array of targets, or a list/dict of them (one per output of a multi-output model)."""
    if isinstance(y, dict) or isinstance(y, (list, tuple)) and y and all(isinstance(part, np.ndarray) and part.ndim >= 1 for part in y):
        return _map(np.asarray, y)
    return np.asarray(y)


def _map(fn, *xs):
    first = xs[0]
    if isinstance(first, dict):
        return {k: fn(*(x[k] for x in xs)) for k in first}
    if isinstance(first, (list, tuple)):
        return [fn(*parts) for parts in zip(*xs)]
    return fn(*xs)


def class_labels(y: np.ndarray | None) -> np.ndarray | None:
    """Integer class labels from integer labels or one-hot rows (None for regression targets)."""
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        return y.argmax(axis=1)
    y = y.reshape(len(y))
    return y.astype(np.int64) if y.dtype.kind in "iub" or np.all(y == np.round(y)) else None


def select(labels: np.ndarray | None, n: int, max_samples: int, how: Any = "stratified", predicted: np.ndarray | None = None) -> np.ndarray:
    """Indices of the samples to explain: ``"stratified"`` (round-robin over classes),
    ``"first"``, ``"misclassified"`` (by ``predicted``), or explicit indices."""
    if not isinstance(how, str):
        indices = np.asarray(how)
        if indices.ndim != 1 or indices.dtype.kind not in "iu" or (indices.size and (indices.min() < 0 or indices.max() >= n)):
            raise ValueError(f"select: expected one of {SELECTIONS} or a 1-D array of indices below {n}, got {how!r}.")
        return indices.astype(np.int64)
    if how not in SELECTIONS:
        raise ValueError(f"select: expected one of {SELECTIONS} or an array of indices, got {how!r}.")
    if how == "misclassified":
        if labels is None or predicted is None:
            raise ValueError("select: 'misclassified' needs class labels in validation_data, (x, y).")
        wrong = np.flatnonzero(predicted != labels)
        if len(wrong):
            return wrong[:max_samples]
        warnings.warn("select='misclassified': the model gets every validation sample right; explaining a stratified selection instead.", stacklevel=3)
        how = "stratified"
    if how == "first" or labels is None:
        return np.arange(min(n, max_samples))
    per_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    rounds = max(len(p) for p in per_class)
    order = [p[r] for r in range(rounds) for p in per_class if r < len(p)]
    return np.asarray(order[:max_samples], np.int64)


KINDS = ("image", "sequence", "tabular", "tokens", "strings")
KIND_DESCRIPTIONS = {
    "image": "images (N, H, W[, C])",
    "sequence": "sequences (N, T, F)",
    "tabular": "tables (N, F)",
    "tokens": "token ids (integer (N, T))",
    "strings": "raw strings ((N,) or (N, 1) text)",
}
TEXT_KINDS = ("tokens", "strings")


def kind_of(x: Inputs, model: Any = None) -> str:
    """The data kind of ``x`` (one of :data:`KINDS`), from its arrays and, if given, the model.

    A float input of rank 4 anywhere makes ``"image"``; otherwise the first input decides:
    strings/bytes → ``"strings"``; integers → ``"tokens"`` (unless ``model`` has no
    Embedding layer: then they are numbers); rank 2 → ``"tabular"``; rank 3 →
    ``"sequence"``, or ``"image"`` (grayscale ``(N, H, W)``) when ``model`` has 2-D layers.
    """
    arrays = flat_inputs(x)
    if any(a.dtype.kind == "f" and a.ndim >= 4 for a in arrays):
        return "image"
    first = arrays[0]
    if first.dtype.kind in "OSU":
        return "strings"
    if first.dtype.kind in "iu" and (model is None or embedding_layers(model)):
        return "tokens"
    if first.ndim <= 2:
        return "tabular"
    if first.ndim == 3 and not (model is not None and has_2d_layers(model)):
        return "sequence"
    return "image"


def has_2d_layers(model: Any) -> bool:
    """Conv2D, pooling, padding ... layers: Keras names its 2-D spatial layers ``*2D``."""
    return any(type(layer).__name__.endswith("2D") for layer in iter_layers(model))


def logged_kind(kind: str) -> str:
    """The kind the log format records (:data:`logformat.KINDS`): text for both text kinds."""
    return "text" if kind in TEXT_KINDS else kind
