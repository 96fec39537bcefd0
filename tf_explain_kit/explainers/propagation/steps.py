"""The elementary steps layers are made of, as each propagation method backpropagates them.

LSTM/GRU cells and attention (:mod:`.recurrent`, :mod:`.attention`) are written once with
these steps; LRP and DeepLIFT each implement them:

- ``linear(z)``: ``z`` is the output of a linear map (LRP's ε-rule acts here);
- ``elementwise(a, f)``: an elementwise non-linearity;
- ``product(a, b, fn, gate)``: a bilinear map of two varying tensors; ``gate`` (0 or 1)
  names the factor LRP holds constant (signal-take-all), DeepLIFT splits it exactly;
- ``softmax(a, axis)``.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import keras
from keras import ops


class Steps(Protocol):
    def linear(self, z: Any) -> Any: ...

    def elementwise(self, a: Any, f: Callable[[Any], Any]) -> Any: ...

    def product(self, a: Any, b: Any, fn: Callable[[Any, Any], Any] = ops.multiply, gate: int | None = None) -> Any: ...

    def softmax(self, a: Any, axis: int = -1) -> Any: ...


def split_activation(layer: keras.layers.Layer, apply: Callable[[Any, Callable], Any]) -> Callable[[Callable], Callable]:
    """A hook factory for a weight layer with its own activation: the layer runs with a
    linear activation, then ``apply(z, activation)`` gives the output. An activation
    already swapped for linear (the output layer, when its logits are explained) stays so."""

    def make(original):
        def call(*args, **kwargs):
            activation = layer.activation
            object.__setattr__(layer, "activation", keras.activations.linear)
            try:
                z = original(*args, **kwargs)
            finally:
                object.__setattr__(layer, "activation", activation)
            return z if activation is keras.activations.linear else apply(z, activation)

        return call

    return make


def on_call(step: Callable[..., Any]) -> Callable[[Callable], Callable]:
    """A hook factory: ``call(inputs, ...)`` becomes ``step(inputs, f)`` with ``f`` the
    layer's own function of its first argument (the other arguments bound)."""

    def make(original):
        def call(inputs, *args, **kwargs):
            return step(inputs, lambda t: original(t, *args, **kwargs))

        return call

    return make
