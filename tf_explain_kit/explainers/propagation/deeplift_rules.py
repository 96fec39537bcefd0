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
- layer and RMS normalisation: centring (linear), square (rescale: ``c_x + c_r``), mean
  (linear), ``1/sqrt`` (rescale) and the product, each exact.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import keras
from keras import ops

from ...tf_backend import fused, vjp, with_backward
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

    def blocks(self, reference: Any, *pair_values: Any) -> tuple:
        """``pair_values`` and ``reference`` shaped to broadcast against each other:
        ``(samples, references, ...)`` blocks and ``(1, references, ...)`` (no copies of the
        references), or as they are when aligned. :meth:`rows` undoes it."""
        if self.aligned:
            return (*pair_values, reference)
        b = ops.shape(reference)[0]
        return (*(ops.reshape(v, (-1, b, *ops.shape(v)[1:])) for v in pair_values), reference[None])

    def rows(self, value: Any, like: Any) -> Any:
        return value if self.aligned else ops.reshape(value, ops.shape(like))

    def mean(self, x: Any, reference: Any) -> Any:
        x_blocks, r = self.blocks(reference, x)
        return self.rows((x_blocks + r) / 2, x)


@fused
def _secant(f: Callable[[Any], Any], upstream: Any, x: Any, x_ref: Any) -> Any:
    """``upstream · Δf/Δx``, and the gradient ``upstream · f'(x)`` where ``|Δx| < 1e-6``
    (``f`` is recomputed here: cheaper than reading its output back from memory)."""
    dx = x - x_ref
    small = ops.abs(dx) < _TINY
    return ops.where(small, vjp(f, x, upstream), upstream * (f(x) - f(x_ref)) / ops.where(small, 1.0, dx))


@fused
def _split_by_maximum(upstream: Any, y: Any, y_ref: Any) -> tuple[Any, Any]:
    """The shares of ``upstream · Δy`` routed through the input's and the reference's maxima."""
    cross = ops.maximum(y, y_ref)
    return upstream * (cross - y_ref), upstream * (y - cross)


@fused
def _per_input(routed: Any, x: Any, x_ref: Any) -> Any:
    dx = x - x_ref
    small = ops.abs(dx) < _TINY_MAXPOOL
    return ops.where(small, 0.0, routed / ops.where(small, 1.0, dx))


def rescale(pairing: Pairing, a: Any, f: Callable[[Any], Any]) -> Any:
    """``f(a)`` for an elementwise ``f``, with the rescale rule's multiplier ``Δf/Δa``."""
    if pairing.recording:
        pairing.remember(a)
        return f(a)
    (a_ref,) = pairing.recall()

    def backward(a, y, upstream, pull):
        g, x, r = pairing.blocks(a_ref, upstream, a)
        return pairing.rows(_secant(f, g, x, r), a)

    return with_backward(f, a, backward, record=False)


def maxpool(pairing: Pairing, a: Any, f: Callable[[Any], Any], layer: Any = None) -> Any:
    """Max pooling ``f(a)``: each side's share of ``Δy`` goes back through its own maxima."""
    if pairing.recording:
        y = f(a)
        pairing.remember(a, y)
        return y
    a_ref, y_ref = pairing.recall()

    pool = window_pool(layer, tuple(a.shape)) if layer is not None else None

    def backward(a, y, upstream, pull):
        if pool == "global":
            return _global_multipliers(upstream, a, a_ref, pairing.aligned)
        if pool is not None:
            return _window_multipliers(upstream, a, a_ref, pool, pairing.aligned)
        g, y_blocks, r_out = pairing.blocks(y_ref, upstream, y)
        through_x, through_r = (pairing.rows(v, y) for v in _split_by_maximum(g, y_blocks, r_out))
        r_in = pairing.spread(a_ref, a)
        _, vjp_x = pull()
        _, vjp_r = pull(f, at=r_in)
        return _per_input(vjp_x(through_x) + vjp_r(through_r), a, r_in)

    return with_backward(f, a, backward)


@fused
def _window_multipliers(upstream: Any, x: Any, x_ref: Any, pool: tuple[int, ...], aligned: bool) -> Any:
    """shap's max-pooling rule for non-overlapping windows (1-D or 2-D), in one kernel: each
    side's share of ``Δy`` goes to its window's first maximum, divided by ``Δx`` there. Each
    window offset is a strided slice; unless ``aligned``, the references ``(b, ...)`` meet
    the samples' pair rows by broadcasting (no copies)."""
    b = ops.shape(x_ref)[0]
    blocks = (lambda t: t) if aligned else (lambda t: ops.reshape(t, (-1, b, *t.shape[1:])))
    lift = (lambda t: t) if aligned else (lambda t: t[None])
    offsets = [(i,) for i in range(pool[0])] if len(pool) == 1 else [(i, j) for i in range(pool[0]) for j in range(pool[1])]

    def window(t, offset):  # the elements at ``offset`` in every window
        index = (slice(None),) * (len(t.shape) - len(pool) - 1) + tuple(slice(o, None, p) for o, p in zip(offset, pool))
        return t[index]

    def maximum(t):  # the pooled output, recomputed (cheaper than reading it)
        out = window(t, offsets[0])
        for offset in offsets[1:]:
            out = ops.maximum(out, window(t, offset))
        return out

    g, yx, yr = blocks(upstream), blocks(maximum(x)), lift(maximum(x_ref))
    cross = ops.maximum(yx, yr)
    share_x, share_r = g * (cross - yr), g * (yx - cross)

    taken_x = taken_r = None
    parts = {}
    for offset in offsets:
        wx, wr = blocks(window(x, offset)), lift(window(x_ref, offset))
        first_x, first_r = ops.equal(wx, yx), ops.equal(wr, yr)
        if taken_x is not None:
            first_x, first_r = ops.logical_and(first_x, ops.logical_not(taken_x)), ops.logical_and(first_r, ops.logical_not(taken_r))
            taken_x, taken_r = ops.logical_or(taken_x, first_x), ops.logical_or(taken_r, first_r)
        else:
            taken_x, taken_r = first_x, first_r
        routed = ops.where(first_x, share_x, 0.0) + ops.where(first_r, share_r, 0.0)
        dx = wx - wr
        small = ops.abs(dx) < _TINY_MAXPOOL
        parts[offset] = ops.reshape(ops.where(small, 0.0, routed / ops.where(small, 1.0, dx)), (-1, *window(x, offset).shape[1:]))
    if len(pool) == 1:
        out = ops.stack([parts[(i,)] for i in range(pool[0])], axis=2)
        return ops.reshape(out, (-1, *x.shape[1:]))
    rows = [ops.reshape(ops.stack([parts[(i, j)] for j in range(pool[1])], axis=3), (-1, x.shape[1] // pool[0], x.shape[2], x.shape[3])) for i in range(pool[0])]
    return ops.reshape(ops.stack(rows, axis=2), (-1, *x.shape[1:]))


@fused
def _global_multipliers(upstream: Any, x: Any, x_ref: Any, aligned: bool) -> Any:
    """shap's rule for global max pooling, in one kernel (first maximum over all positions)."""
    b = ops.shape(x_ref)[0]
    flat = lambda t: ops.reshape(t, (-1, math.prod(t.shape[1:-1]), t.shape[-1]))  # noqa: E731
    blocks = (lambda t: t) if aligned else (lambda t: ops.reshape(t, (-1, b, *t.shape[1:])))
    lift = (lambda t: t) if aligned else (lambda t: t[None])
    wx, wr = blocks(flat(x)), lift(flat(x_ref))
    g = blocks(ops.reshape(upstream, (-1, 1, upstream.shape[-1])))
    yx, yr = ops.max(wx, axis=-2, keepdims=True), ops.max(wr, axis=-2, keepdims=True)

    def first(w, top):
        hit = ops.cast(ops.equal(w, top), "int32")
        return ops.logical_and(ops.equal(hit, 1), ops.equal(ops.cumsum(hit, axis=-2), 1))

    cross = ops.maximum(yx, yr)
    routed = ops.where(first(wx, yx), g * (cross - yr), 0.0) + ops.where(first(wr, yr), g * (yx - cross), 0.0)
    dx = wx - wr
    small = ops.abs(dx) < _TINY_MAXPOOL
    return ops.reshape(ops.where(small, 0.0, routed / ops.where(small, 1.0, dx)), (-1, *x.shape[1:]))


def window_pool(layer: Any, a_shape: tuple) -> tuple[int, ...] | str | None:
    """``"global"`` for global max pooling, the window of a 1-D/2-D max pooling whose windows
    tile its input exactly (``pool_size == strides``, divisible sizes), else None
    (channels last only)."""
    spatial = a_shape[1:-1]
    if getattr(layer, "data_format", "channels_last") != "channels_last" or None in spatial:
        return None
    if type(layer).__name__.startswith("GlobalMaxPooling"):
        return "global"
    pool, strides = tuple(layer.pool_size), tuple(layer.strides)
    return pool if len(pool) <= 2 and pool == strides and all(d % p == 0 for d, p in zip(spatial, pool)) else None


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


def _tail_axes(axis: int | tuple | list, ndim: int) -> tuple[int, ...]:
    """``axis`` counted from the end (so the same axes after adding leading block axes)."""
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    return tuple(sorted(a % ndim - ndim for a in axes))


def _safe_ratio(num: Any, den: Any, fallback: Any, tiny: float = _TINY) -> Any:
    small = ops.abs(den) < tiny
    return ops.where(small, fallback, num / ops.where(small, 1.0, den))


@fused
def _softmax_multipliers(upstream: Any, x: Any, r: Any, axes: tuple) -> Any:
    shift = ops.maximum(ops.max(x, axis=axes, keepdims=True), ops.max(r, axis=axes, keepdims=True))  # shared: Δ(a − c) = Δa
    e_x, e_r = ops.exp(x - shift), ops.exp(r - shift)
    u_x, u_r = 1 / ops.sum(e_x, axis=axes, keepdims=True), 1 / ops.sum(e_r, axis=axes, keepdims=True)
    g_u = ops.sum(upstream * (e_x + e_r) / 2, axis=axes, keepdims=True)
    g_s = g_u * _safe_ratio(u_x - u_r, 1 / u_x - 1 / u_r, -u_x * u_x)
    g_e = upstream * (u_x + u_r) / 2 + g_s
    return g_e * _safe_ratio(e_x - e_r, x - r, e_x)


def softmax(pairing: Pairing, a: Any, f: Callable[[Any], Any], axis: int | tuple = -1) -> Any:
    """``f(a)``, a softmax over ``axis``, with exact multipliers (see the module docstring)."""
    if pairing.recording:
        pairing.remember(a)
        return f(a)
    (a_ref,) = pairing.recall()
    axes = _tail_axes(axis, len(a.shape))

    def backward(a, y, upstream, pull):
        g, x, r = pairing.blocks(a_ref, upstream, a)
        return pairing.rows(_softmax_multipliers(g, x, r, axes), a)

    return with_backward(f, a, backward, record=False)


@fused
def _normalization_multipliers(upstream: Any, x: Any, r: Any, gamma: Any, axes: tuple, epsilon: float, centred_statistics: bool, centred_output: bool) -> Any:
    """Exact multipliers of ``gamma · p · (mean(c²) + ε)^(-1/2)`` where ``c`` is the input
    centred (``centred_statistics``, LayerNormalization) or not (RMSNormalization), and ``p``
    the centred input (``centred_output``) or the input itself."""
    size = 1.0
    for axis in axes:
        size *= x.shape[axis]
    centre = lambda t: t - ops.mean(t, axis=axes, keepdims=True)  # noqa: E731
    c_x, c_r = (centre(x), centre(r)) if centred_statistics else (x, r)
    v_x, v_r = ops.mean(c_x * c_x, axis=axes, keepdims=True) + epsilon, ops.mean(c_r * c_r, axis=axes, keepdims=True) + epsilon
    q_x, q_r = ops.rsqrt(v_x), ops.rsqrt(v_r)
    p_x, p_r = (centre(x), centre(r)) if centred_output else (x, r)  # what the normaliser multiplies
    g_p = upstream * gamma
    g_q = ops.sum(g_p * (p_x + p_r) / 2, axis=axes, keepdims=True)
    g_v = g_q * _safe_ratio(q_x - q_r, v_x - v_r, -0.5 * q_x * q_x * q_x)
    g_c = g_v / size * (c_x + c_r)  # Δ(c²)/Δc = c_x + c_r exactly
    if centred_statistics:
        g_c = centre(g_c)  # back through the centring
    g_direct = g_p * (q_x + q_r) / 2
    if centred_output:
        g_direct = centre(g_direct)
    return g_c + g_direct


def normalization(pairing: Pairing, a: Any, f: Callable[[Any], Any], layer: Any) -> Any:
    """``f(a)``, a LayerNormalization (``rms_scaling`` too) or RMSNormalization ``layer``,
    with exact multipliers: centring, square, mean, ``1/sqrt`` and the normalising
    product, each by its own rule."""
    if pairing.recording:
        pairing.remember(a)
        return f(a)
    (a_ref,) = pairing.recall()
    ndim = len(a.shape)
    axes = _tail_axes(layer.axis, ndim)
    shape = [1] * ndim
    for axis in axes:
        shape[axis] = a.shape[axis]
    if isinstance(layer, keras.layers.LayerNormalization):
        gamma = ops.reshape(layer.gamma, shape) if layer.scale else ops.ones(shape)
        centred = (True, not layer.rms_scaling)
    else:  # RMSNormalization
        gamma, centred = ops.reshape(layer.scale, shape), (False, False)

    def backward(a, y, upstream, pull):
        g, x, r = pairing.blocks(a_ref, upstream, a)
        return pairing.rows(_normalization_multipliers(g, x, r, gamma, axes, float(layer.epsilon), *centred), a)

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
            found.append((op, on_call(lambda a, f, layer=op: maxpool(pairing, a, f, layer))))
        elif k is Kind.NORMALIZATION:
            found.append((op, on_call(lambda a, f, layer=op: normalization(pairing, a, f, layer))))
        elif k is Kind.PRODUCT:
            found.append((op, _product_hook(op, steps)))
        elif k is Kind.ATTENTION:
            found.append((op, lambda original, op=op: attention_step(op, steps), "_compute_attention"))
        elif k is Kind.RECURRENT:
            found.append((op, _recurrent_hook(op, pairing)))
    return tuple(found)


class DoubledSteps:
    """DeepLIFT's steps on doubled batches, for loops (where nothing can be remembered from
    the references' pass): the first half of each tensor holds the pair rows, the second
    half their references, which get no gradient."""

    def linear(self, z: Any) -> Any:
        return z

    def elementwise(self, a: Any, f: Callable[[Any], Any]) -> Any:
        def backward(a, y, upstream, pull):
            (x, r), (g, _) = _halves(a), _halves(upstream)
            multiplied = _secant(f, g, x, r)
            return ops.concatenate([multiplied, ops.zeros_like(multiplied)], axis=0)

        return with_backward(f, a, backward, record=False)

    def product(self, a: Any, b: Any, fn: Callable[[Any, Any], Any] = ops.multiply, gate: int | None = None) -> Any:
        def backward(inputs, y, upstream, pull):
            (a_x, a_r), (b_x, b_r), (g, _) = _halves(inputs[0]), _halves(inputs[1]), _halves(upstream)
            g_a, g_b = vjp(lambda t: fn(t, (b_x + b_r) / 2), a_x, g), vjp(lambda t: fn((a_x + a_r) / 2, t), b_x, g)
            return [ops.concatenate([g_a, ops.zeros_like(g_a)], axis=0), ops.concatenate([g_b, ops.zeros_like(g_b)], axis=0)]

        return with_backward(lambda ab: fn(*ab), [a, b], backward, record=False)

    def softmax(self, a: Any, axis: int = -1) -> Any:
        raise NotImplementedError("softmax inside a recurrent cell")


def _halves(t: Any) -> tuple[Any, Any]:
    half = ops.shape(t)[0] // 2
    return t[:half], t[half:]


def _recurrent_hook(layer: Any, pairing: Pairing) -> Callable[[Callable], Callable]:
    """An LSTM, GRU or SimpleRNN: the references' pass is the layer's own; the pairs' pass
    runs the cell on the pair rows and their references together (:class:`DoubledSteps`)."""
    doubled = rnn_call(layer, DoubledSteps())

    def make(original):
        def call(sequences, initial_state=None, mask=None, training=False):
            if initial_state is not None:
                raise ValueError(f"model: DeepLIFT needs layer '{layer.name}' to start from zero states; it was given initial_state. Use GradientShap or IntegratedGradients.")
            if pairing.recording:
                pairing.remember(*[t for t in (sequences, mask) if t is not None])
                return original(sequences, mask=mask, training=training)
            references = pairing.recall()
            both = lambda x, r: ops.concatenate([x, pairing.spread(r, x)], axis=0)  # noqa: E731
            out = doubled(both(sequences, references[0]), mask=None if mask is None else both(mask, references[1]), training=training)
            return keras.tree.map_structure(lambda t: _halves(t)[0], out)

        return call

    return make


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
