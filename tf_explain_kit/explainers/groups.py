"""Players for the perturbation methods: time × feature windows of a series, and named
groups over the inputs of a multi-input model.

A group spec for a model with several inputs maps a group name to a whole input (its
name, dict key or position) or to ``(input, indices)``: indices into that input's
flattened sample (``np.ravel`` order). ``None`` makes each input one group. Elements in no
group are never hidden.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import keras
import numpy as np

from ..model import Inputs, ModelAdapter, flat_inputs, map_inputs

GroupSpec = Mapping[str, Any]


def window_groups(steps: int, features: int, window: int, per_feature: bool = True) -> np.ndarray:
    """``(steps, features)`` int labels: consecutive windows of ``window`` time steps, one
    group per window and feature (``per_feature=False``: one per window, all features).

    Pass them as ``groups=`` to KernelShap, LimeTabular or Occlusion for (N, T, F) series.
    """
    for value, name in ((steps, "steps"), (features, "features"), (window, "window")):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}.")
    windows = np.arange(steps)[:, None] // window
    if not per_feature:
        return np.broadcast_to(windows, (steps, features)).copy()
    return np.arange(features)[None, :] * -(-steps // window) + windows


def input_names(adapter: ModelAdapter, x: Inputs) -> list[str]:
    """Names of the inputs in ``flat_inputs`` order: dict keys, else the model's input names."""
    if isinstance(x, dict):
        return sorted(x)
    specs = adapter._input_specs() or []
    return [getattr(s, "name", str(i)).split(":")[0] for i, s in enumerate(specs)] if len(specs) == len(flat_inputs(x)) else [str(i) for i in range(len(flat_inputs(x)))]


def input_groups(adapter: ModelAdapter, x: Inputs, spec: GroupSpec | None, argument: str = "groups") -> tuple[list[str], Inputs]:
    """Group names and, per input, ``sample shape`` int labels (−1: never hidden)."""
    arrays, names = flat_inputs(x), input_names(adapter, x)
    if spec is None:
        spec = {name: name for name in names}
    if not isinstance(spec, Mapping) or not spec:
        raise TypeError(f"{argument}: for a model with several inputs expected a dict {{group name: input or (input, indices)}}, got {type(spec).__name__}. Inputs: {names}.")
    labels = [np.full(a.shape[1:], -1, np.int64) for a in arrays]
    for group, (name, target) in enumerate(spec.items()):
        key, indices = (target if isinstance(target, tuple) else (target, None))
        position = key if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 0 <= key < len(arrays) else names.index(key) if key in names else None
        if position is None:
            raise ValueError(f"{argument}: group {name!r} names input {key!r}; the model's inputs are {names} (or positions 0..{len(arrays) - 1}).")
        flat = labels[position].reshape(-1)
        chosen = np.arange(flat.size) if indices is None else np.asarray(indices).reshape(-1)
        if chosen.dtype.kind not in "iu" or (chosen.size and (chosen.min() < 0 or chosen.max() >= flat.size)):
            raise ValueError(f"{argument}: group {name!r}: expected indices into the {flat.size} flattened elements of input {names[position]!r}, got {indices!r}.")
        if (flat[chosen] >= 0).any():
            raise ValueError(f"{argument}: group {name!r} overlaps an earlier group in input {names[position]!r}; each element belongs to at most one group.")
        flat[chosen] = group
    return [str(n) for n in spec], keras.tree.pack_sequence_as(x, labels)


def spread(values: np.ndarray, labels: Inputs) -> Inputs:
    """``(N, G)`` group values → per input ``(N,) + sample shape``: each element gets its
    group's value, elements in no group 0."""
    def one(label: np.ndarray) -> np.ndarray:
        padded = np.concatenate([values, np.zeros((len(values), 1), values.dtype)], axis=1)
        return padded[:, np.where(label < 0, values.shape[1], label)].astype(np.float32)

    return map_inputs(one, labels)

