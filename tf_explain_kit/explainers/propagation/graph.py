"""One probe of a model: every layer and operation call, how tensors flow, which vary."""

from __future__ import annotations

import collections
from typing import Any

import keras
import numpy as np

from ... import structure
from ...model import Inputs, ModelAdapter, map_inputs, take
from ...tf_backend import LayerCall


def _flat(value: Any) -> list:
    return [t for t in keras.tree.flatten(value) if hasattr(t, "dtype") and hasattr(t, "shape")]


class Graph:
    """The calls of one eager pass over one sample, in completion order (a layer that
    calls others comes after them), with each tensor's producer and readers.

    ``varying`` holds the ids of the float tensors that change when the input changes
    (found by a second pass over a perturbed copy of the sample): only those carry
    relevance, so a product with a constant is linear, and a layer reading only constants
    needs no rule.
    """

    def __init__(self, calls: list[LayerCall], inputs: list, varying: set[int], dependent: set[int] | None = None):
        self.calls, self.inputs, self.varying = calls, inputs, varying
        self.dependent = dependent if dependent is not None else varying  # every tensor computed from the input (any dtype)
        self.producer: dict[int, LayerCall] = {}
        self.readers: dict[int, list[LayerCall]] = collections.defaultdict(list)
        for call in calls:
            for tensor in _flat((call.args, call.kwargs)):
                self.readers[id(tensor)].append(call)
            for tensor in _flat(call.output):
                if not any(tensor is t for t in _flat((call.args, call.kwargs))):  # an identity layer returns its input
                    self.producer.setdefault(id(tensor), call)
        self._by_op: dict[int, list[LayerCall]] = collections.defaultdict(list)
        for call in calls:
            self._by_op[id(call.layer)].append(call)

    def calls_of(self, op: Any) -> list[LayerCall]:
        return self._by_op.get(id(op), [])

    def is_varying(self, tensor: Any) -> bool:
        return id(tensor) in self.varying

    def varying_inputs(self, call: LayerCall) -> list:
        """The float tensors among ``call``'s arguments that vary with the input."""
        return [t for t in _flat((call.args, call.kwargs)) if id(t) in self.varying]


def probe(adapter: ModelAdapter, x: Inputs) -> Graph:
    """Probe ``adapter``'s model on the first sample of ``x``.

    A tensor varies if it depends on the input through the calls (whatever the weights: a
    ReLU that is dead for this sample still carries relevance after more training), or if
    its value changes on a perturbed copy of the sample (which also finds tensors made by
    a custom layer's own operations between its sublayers' calls).
    """
    operations = list(structure.walk(adapter.model))
    first = take(x, slice(0, 1))
    calls, inputs = adapter.probe(first, operations)
    other_calls, other_inputs = adapter.probe(map_inputs(_perturbed, first), operations)
    dependent = {id(t) for t in inputs}
    for call in calls:
        if any(id(t) in dependent for t in _flat((call.args, call.kwargs))):
            dependent.update(id(t) for t in _flat(call.output))
    floats = [t for call in calls for t in _flat((call.args, call.kwargs, call.output)) if t.dtype.is_floating] + [t for t in inputs if t.dtype.is_floating]
    varying = {id(t) for t in floats if id(t) in dependent}
    if len(calls) == len(other_calls) and all(a.layer is b.layer for a, b in zip(calls, other_calls)):
        for call, other in zip(calls, other_calls):
            for tensor, seen in zip(_flat((call.args, call.kwargs, call.output)), _flat((other.args, other.kwargs, other.output))):
                if tensor.dtype.is_floating and not _equal(tensor, seen):
                    varying.add(id(tensor))
    else:  # the pass depends on the values (a data-dependent branch): every float tensor may vary
        varying |= {id(t) for t in floats}
    return Graph(calls, inputs, varying, dependent)


def _equal(a: Any, b: Any) -> bool:
    return tuple(a.shape) == tuple(b.shape) and bool(np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)))


def _perturbed(a: np.ndarray) -> np.ndarray:
    """Another input of the same kind: floats moved by seeded noise, token ids changed within
    their range, texts reversed."""
    rng = np.random.default_rng(0)
    if a.dtype.kind == "f":
        return (a + (0.1 * np.abs(a).mean() + 0.1) * rng.standard_normal(a.shape)).astype(a.dtype)
    if a.dtype.kind in "iu":
        low, high = a.min(), a.max()
        return np.where(a == high, low, a + 1).astype(a.dtype) if high > low else np.zeros_like(a) + (0 if low else 1)
    if a.dtype.kind in "OSU":
        return np.vectorize(lambda s: str(s)[::-1] + " zq")(a).astype(a.dtype if a.dtype.kind != "U" else object)
    return a
