"""Which score is explained: targets and contrasts as per-sample class weights.

The explained score of sample i is ``sum_c scores[i, c] * weights[i, c]``: +1 on the
target class and, with ``contrast``, -1 on the contrasted class. Before the model's
outputs are known, a request carries one more column: a weight on the predicted class,
which a gradient pass can resolve by itself (no separate forward pass).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _classes(value: Any, n: int, num_classes: int, argument: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iu" or array.ndim > 1:
        raise TypeError(f"{argument}: expected None, an int or an int array of shape ({n},), got {value!r}.")
    if array.ndim == 0:
        array = np.full(n, int(array))
    if array.shape != (n,):
        raise ValueError(f"{argument}: expected one class per sample, shape ({n},), got shape {array.shape}.")
    bad = (array < 0) | (array >= num_classes)
    if bad.any():
        raise ValueError(
            f"{argument}: class {int(array[bad][0])} is out of range for a model with {num_classes} output(s); "
            f"use a class index from 0 to {num_classes - 1}."
        )
    return array.astype(np.int64)


def request(targets: Any, contrast: Any, n: int, num_classes: int) -> np.ndarray:
    """``(N, C + 1)`` weights: ``targets=None`` puts +1 on the predicted-class column."""
    weights = np.zeros((n, num_classes + 1), np.float32)
    wanted = num_classes if targets is None else _classes(targets, n, num_classes, "targets")
    weights[np.arange(n), wanted] = 1.0
    if contrast is not None:
        contrasts = _classes(contrast, n, num_classes, "contrast")
        if targets is not None and (wanted == contrasts).any():
            _same_class(int(np.argmax(wanted == contrasts)), wanted)
        weights[np.arange(n), contrasts] -= 1.0
    return weights


def _same_class(sample: int, targets: np.ndarray) -> None:
    raise ValueError(
        f"contrast: sample {sample} has contrast equal to its target ({int(targets[sample])}); "
        "the difference would be zero. Choose a different class to compare against."
    )


def predicted_classes(outputs: np.ndarray) -> np.ndarray:
    """The predicted class: the argmax (class 0 for a single regression or sigmoid unit)."""
    return outputs.argmax(axis=1).astype(np.int64)


def resolve(weights: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A request resolved against the outputs: ``(targets (N,), weights (N, C))``."""
    n, num_classes = outputs.shape
    predicted = predicted_classes(outputs)
    resolved = weights[:, :num_classes].copy()
    resolved[np.arange(n), predicted] += weights[:, num_classes]
    explained = resolved.any(axis=1)
    if not explained.all():  # (request already refused a given target equal to its contrast)
        _same_class(int(np.argmin(explained)), predicted)
    return resolved.argmax(axis=1), resolved  # targets: the one +1 (a contrast is -1)
