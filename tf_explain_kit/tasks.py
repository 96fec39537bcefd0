"""What an explained output predicts: classes, a binary decision, or values (no TensorFlow)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

_CLASS_LOSSES = ("crossentropy", "hinge", "focal")


class Task(NamedTuple):
    """``"classes"`` (argmax over the output's columns), ``"binary"`` (one unit: class 1
    above ``threshold``, 0.5 for a sigmoid, 0 for a logit) or ``"regression"`` (values)."""

    name: str = "classes"
    threshold: float = 0.5

    def predicted(self, outputs: np.ndarray) -> np.ndarray:
        """Predicted classes ``(N,)`` (ints), or for a regression the predicted values."""
        outputs = np.asarray(outputs).reshape(len(outputs), -1)
        if self.name == "regression":
            return outputs[:, 0]
        if self.name == "binary":
            return (outputs[:, 0] > self.threshold).astype(np.int64)
        return outputs.argmax(axis=1)


CLASSES = Task()


def task_of(width: int, activation: str | None, loss: Any) -> Task:
    """The task of an output ``width`` units wide that ends in ``activation`` (``"softmax"``,
    ``"sigmoid"`` or None when unknown) and is trained with ``loss`` (as compiled for that output).

    Several units are classes. One unit is binary when it ends in a sigmoid or is trained
    with a classification loss (cross-entropy, hinge, focal: threshold 0 when the loss takes
    logits), and a regression otherwise.
    """
    if width > 1:
        return CLASSES
    if activation == "sigmoid":
        return Task("binary", 0.5)
    name = str(getattr(loss, "name", None) or getattr(loss, "__name__", None) or loss).lower()
    if not any(part in name for part in _CLASS_LOSSES):
        return Task("regression")
    logits = bool(getattr(loss, "from_logits", False)) or "hinge" in name
    return Task("binary", 0.0 if logits else 0.5)
