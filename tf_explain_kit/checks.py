"""Argument checks shared by explainers, callbacks and tools (numpy only)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def count(value: Any, argument: str, minimum: int = 1, hint: str = "") -> int:
    """``value`` as an int of at least ``minimum``; a ValueError naming ``argument`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        wanted = "a positive int" if minimum == 1 else f"an int of at least {minimum}"
        raise ValueError(f"{argument}: expected {wanted}{f' ({hint})' if hint else ''}, got {value!r}.")
    return int(value)


def directory(value: Any, argument: str = "log_dir") -> str:
    """``value`` as a path string; a TypeError naming ``argument`` for None or a non-path."""
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise TypeError(f"{argument}: expected a directory path (str or os.PathLike), for example 'logs/run1', got {value!r}.")
    return os.fspath(value)


def names(value: Any, argument: str) -> list[str] | None:
    """A list of names, or None; a single string is refused (it would be split into letters)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple, np.ndarray)):
        raise TypeError(f"{argument}: expected a list of names, for example ['cat', 'dog'], got {value!r}.")
    return [str(n) for n in value]
