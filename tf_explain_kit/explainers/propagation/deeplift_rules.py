"""DeepLIFT's multipliers (Shrikumar et al., 2017) as modified backward passes.

One compiled call runs the model twice (:meth:`tf_backend.CompiledModel.paired_gradients`):
first on the references, where every rule remembers what its layer saw, then on the
(input, reference) pairs under a tape, where each rule recalls its reference values and
returns the multiplier ``Δy/Δx`` instead of the gradient. Layers that are linear keep
their plain gradient (the linear rule), so ``Σ (x − r) · m = f(x) − f(r)`` holds exactly
wherever the rules below are exact:

- elementwise non-linearities: the rescale rule ``Δy/Δx``, with the gradient where
  ``|Δx| < 1e-6`` (as shap's DeepExplainer);
- max pooling: shap's rule (each input's difference routed through its own maxima);
- products of two varying tensors (squeeze-and-excitation gates, LSTM/GRU gates,
  attention scores and weights · values): the Shapley split of the product,
  ``Δ(ab) = ā·Δb + b̄·Δa`` with ``ā = (a_x + a_r)/2`` — exact, symmetric, and what shap's
  DeepExplainer does for ``Mul``. A gate is not held constant: a gate that closes changes
  the output, and summation stays exact;
- softmax: written as ``exp(a − c) · (1/Σ exp(a − c))`` with one shift ``c`` shared by the
  input and its reference, each step rescaled and the product split as above: exact;
- layer normalisation: centring (linear), square (rescale: ``c_x + c_r``), mean (linear),
  ``1/sqrt`` (rescale) and the product, each exact.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import keras
from keras import ops

from ...tf_backend import with_backward
from .attention import attention_step
from .kinds import Kind, has_activation, sorted_ops, unsupported
from .recurrent import rnn_call
from .steps import on_call, split_activation

_TINY = 1e-6  # |Δx| below this: the gradient instead of the secant (shap's threshold)
_TINY_MAXPOOL = 1e-7


class Pairing:
    """What the rules of one compiled call share across its two passes."""

    def __init__(self) -> None:
        self.recording, self.aligned = True, True
        self._records: list[tuple] = []
        self._cursor = 0

    # the phases, called by the backend
    def reference(self) -> None:
        self.recording, self._records = True, []

    def pairs(self, aligned: bool) -> None:
        self.recording, self.aligned, self._cursor = False, aligned, 0

    # what rules remember and recall
    def remember(self, *values: Any) -> None:
        self._records.append(tuple(ops.stop_gradient(v) for v in values))

    def recall(self) -> tuple:
        record = self._records[self._cursor]
        self._cursor += 1
        return record

    def spread(self, reference: Any, like: Any) -> Any:
        """Reference values laid out like the pair rows of ``like``: row for row when
        aligned, else every sample with every reference (sample-major)."""
        if self.aligned:
            return reference
        n = ops.shape(like)[0] // ops.shape(reference)[0]
        return ops.tile(reference, (n,) + (1,) * (len(reference.shape) - 1))

    def delta(self, x: Any, reference: Any) -> Any:
        return x - reference if self.aligned else _by_blocks(x, reference, lambda blocks: blocks - reference[None])

    def mean(self, x: Any, reference: Any) -> Any:
        return (x + reference) / 2 if self.aligned else _by_blocks(x, reference, lambda blocks: (blocks + reference[None]) / 2)


def _by_blocks(x: Any, reference: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` of the pair rows seen as ``(samples, references, ...)`` blocks (no copies of
    the references), back in pair rows."""
    shape = ops.shape(x)
    blocks = ops.reshape(x, (-1, ops.shape(reference)[0], *shape[1:]))
    return ops.reshape(fn(blocks), shape)


def _safe(denominator: Any, tiny: float) -> tuple[Any, Any]:
    small = ops.abs(denominator) < tiny
    return small, ops.where(small, ops.ones_like(denominator), denominator)


def rescale(pairing: Pairing, a: Any, f: Callable[[Any], Any]) -> Any:
    """``f(a)`` for an elementwise ``f``, with the rescale rule's multiplier ``Δf/Δa``."""
    if pairing.recording:
        y = f(a)
        pairing.remember(a, y)
        return y
    a_ref, y_ref = pairing.recall()

    def backward(a, y, upstream, pull):
        small, da = _safe(pairing.delta(a, a_ref), _TINY)
        _, vjp = pull()
        return ops.where(small, vjp(upstream), upstream * pairing.delta(y, y_ref) / da)

    return with_backward(f, a, backward)


def maxpool(pairing: Pairing, a: Any, f: Callable[[Any], Any]) -> Any:
    """Max pooling ``f(a)``: each side's share of ``Δy`` goes back through its own maxima."""
    if pairing.recording:
        y = f(a)
        pairing.remember(a, y)
        return y
    a_ref, y_ref = pairing.recall()

    def backward(a, y, upstream, pull):
        r_in, r_out = pairing.spread(a_ref, a), pairing.spread(y_ref, y)
        cross = ops.maximum(y, r_out)
        _, through_x = pull()
        _, through_r = pull(f, at=r_in)
        small, da = _safe(a - r_in, _TINY_MAXPOOL)
        routed = through_x(upstream * (cross - r_out)) + through_r(upstream * (y - cross))
        return ops.where(small, ops.zeros_like(a), routed / da)

    return with_backward(f, a, backward)


def product(pairing: Pairing, a: Any, b: Any, fn: Callable[[Any, Any], Any] = ops.multiply) -> Any:
    """A bilinear ``fn(a, b)`` (a product, a matrix product, an einsum) with the Shapley
    split ``Δfn = fn(Δa, b̄) + fn(ā, Δb)``: each factor's multiplier is the vector-Jacobian
    product at the other factor's mean (broadcasting included)."""
    if pairing.recording:
        pairing.remember(a, b)
        return fn(a, b)
    a_ref, b_ref = pairing.recall()

    def backward(inputs, y, upstream, pull):
        a, b = inputs
        a_mean, b_mean = pairing.mean(a, a_ref), pairing.mean(b, b_ref)
        _, vjp_a = pull(lambda t: fn(t, b_mean), at=a)
        _, vjp_b = pull(lambda t: fn(a_mean, t), at=b)
        return [vjp_a(upstream), vjp_b(upstream)]

    return with_backward(lambda ab: fn(*ab), [a, b], backward, record=False)


def softmax(pairing: Pairing, a: Any, f: Callable[[Any], Any], axis: int | tuple = -1) -> Any:
    """``f(a)``, a softmax over ``axis``, with exact multipliers (see the module docstring)."""
    if pairing.recording:
        pairing.remember(a)
        return f(a)
    (a_ref,) = pairing.recall()

    def backward(a, y, upstream, pull):
        r = pairing.spread(a_ref, a)
        shift = ops.maximum(ops.max(a, axis=axis, keepdims=True), ops.max(r, axis=axis, keepdims=True))
        e_x, e_r = ops.exp(a - shift), ops.exp(r - shift)
        s_x, s_r = ops.sum(e_x, axis=axis, keepdims=True), ops.sum(e_r, axis=axis, keepdims=True)
        u_x, u_r = 1 / s_x, 1 / s_r
        g_u = ops.sum(upstream * (e_x + e_r) / 2, axis=axis, keepdims=True)
        small, ds = _safe(s_x - s_r, _TINY)
        g_s = g_u * ops.where(small, -u_x * u_x, (u_x - u_r) / ds)
        g_e = upstream * (u_x + u_r) / 2 + g_s
        small, da = _safe(a - r, _TINY)
        return g_e * ops.where(small, e_x, (e_x - e_r) / da)

    return with_backward(f, a, backward, record=False)


def layer_norm(pairing: Pairing, a: Any, f: Callable[[Any], Any], layer: Any) -> Any:
    """``f(a)``, Keras' LayerNormalization ``layer``, with exact multipliers: centring,
    square, mean, ``1/sqrt`` and the normalising product, each by its own rule."""
    if pairing.recording:
        pairing.remember(a)
        return f(a)
    (a_ref,) = pairing.recall()
    axes = tuple(sorted(layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]))

    def backward(a, y, upstream, pull):
        r = pairing.spread(a_ref, a)
        ndim = len(a.shape)
        shape = [1] * ndim
        for axis in axes:
            shape[axis] = a.shape[axis]
        gamma = ops.reshape(layer.gamma, shape) if layer.scale else 1.0
        size = float(math.prod(a.shape[axis] for axis in axes))
        c_x, c_r = a - ops.mean(a, axis=axes, keepdims=True), r - ops.mean(r, axis=axes, keepdims=True)
        v_x, v_r = ops.mean(c_x * c_x, axis=axes, keepdims=True) + layer.epsilon, ops.mean(c_r * c_r, axis=axes, keepdims=True) + layer.epsilon
        q_x, q_r = ops.rsqrt(v_x), ops.rsqrt(v_r)
        p_x, p_r = (a, r) if layer.rms_scaling else (c_x, c_r)  # what the normaliser multiplies
        g_p = upstream * gamma
        g_q = ops.sum(g_p * (p_x + p_r) / 2, axis=axes, keepdims=True)
        small, dv = _safe(v_x - v_r, _TINY)
        g_v = g_q * ops.where(small, -0.5 * q_x * q_x * q_x, (q_x - q_r) / dv)
        g_c = g_v / size * (c_x + c_r)  # Δ(c²)/Δc = c_x + c_r exactly
        g_c = g_c - ops.mean(g_c, axis=axes, keepdims=True)  # back through the centring
        g_direct = g_p * (q_x + q_r) / 2
        if not layer.rms_scaling:
            g_direct = g_direct - ops.mean(g_direct, axis=axes, keepdims=True)
        return g_c + g_direct

    return with_backward(f, a, backward, record=False)


# -- steps and hooks --------------------------------------------------------------------------
class DeepLiftSteps:
    """:class:`.steps.Steps` for DeepLIFT (linear maps keep their gradient)."""

    def __init__(self, pairing: Pairing):
        self.pairing = pairing

    def linear(self, z: Any) -> Any:
        return z

    def elementwise(self, a: Any, f: Callable[[Any], Any]) -> Any:
        return rescale(self.pairing, a, f)

    def product(self, a: Any, b: Any, fn: Callable[[Any, Any], Any] = ops.multiply, gate: int | None = None) -> Any:
        return product(self.pairing, a, b, fn)

    def softmax(self, a: Any, axis: int = -1) -> Any:
        return softmax(self.pairing, a, lambda t: ops.softmax(t, axis=axis), axis)

    def activation(self, z: Any, activation: Callable[[Any], Any]) -> Any:
        """A weight layer's own activation (split off it)."""
        name = getattr(activation, "__name__", "")
        if name == "softmax":
            return self.softmax(z)
        return self.elementwise(z, activation)


def hooks(model: Any, graph: Any, pairing: Pairing, method: str) -> tuple:
    """The hooks that turn the model's backward pass into DeepLIFT's multipliers."""
    steps = DeepLiftSteps(pairing)
    found = []
    for op, kind in sorted_ops(model, graph):
        k = kind.kind
        if k is Kind.UNSUPPORTED:
            raise unsupported(op, kind.reason, method)
        if k in (Kind.LINEAR, Kind.PLAIN) and has_activation(op):
            found.append((op, split_activation(op, steps.activation)))
        elif k is Kind.ELEMENTWISE:
            found.append((op, on_call(steps.elementwise)))
        elif k is Kind.SOFTMAX:
            axis = getattr(op, "axis", -1)
            found.append((op, on_call(lambda a, f, axis=axis: softmax(pairing, a, f, tuple(axis) if isinstance(axis, list) else axis))))
        elif k is Kind.MAXPOOL:
            found.append((op, on_call(lambda a, f: maxpool(pairing, a, f))))
        elif k is Kind.NORMALIZATION:
            found.append((op, on_call(lambda a, f, layer=op: layer_norm(pairing, a, f, layer))))
        elif k is Kind.PRODUCT:
            found.append((op, _product_hook(op, steps)))
        elif k is Kind.ATTENTION:
            found.append((op, lambda original, op=op: attention_step(op, steps), "_compute_attention"))
        elif k is Kind.RECURRENT:
            found.append((op, lambda original, op=op: rnn_call(op, steps)))
    return tuple(found)


def _product_hook(op: Any, steps: DeepLiftSteps) -> Callable[[Callable], Callable]:
    """A ``Multiply`` layer (a list of factors, multiplied in order) or a raw operation ``a * b``."""

    def make(original):
        if isinstance(op, keras.layers.Layer):

            def call(inputs, *args, **kwargs):
                out = inputs[0]
                for factor in inputs[1:]:
                    out = steps.product(out, factor)
                return out

        else:

            def call(a, b, *args, **kwargs):
                return steps.product(a, b, lambda u, v: original(u, v, *args, **kwargs))

        return call

    return make
