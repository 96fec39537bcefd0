"""LRP rules: how one linear layer hands its output's relevance to its input.

LRP runs as *modified gradient × input*: a linear layer keeps its forward pass and gets a
custom backward pass. With ``z`` the layer's (BatchNorm-folded) pre-activation and
``zρ(a) = ρ(W)·a + ρ(b)`` the same layer with the rule's weights, the input gradient is
``ρ(W)ᵀ (g · z / stab(zρ))``, so ``a · ∂score/∂a`` is exactly the rule's relevance.

A rule is an object (:class:`Rule`). It builds the backward hooks of the three places a
linear layer's relevance passes: the layer itself, a BatchNormalization folded into it and
the activation layer ending it (a :class:`Site`, found by the canonizers). Two families:

- gradient-form rules (:class:`Zero`, :class:`Epsilon`) scale the gradient at the
  pre-activation and keep the layer's plain transpose;
- rules with their own weights (:class:`Gamma`, :class:`ZPlus`, :class:`AlphaBeta`,
  :class:`ZBox`) run in *relevance form*: the chain's last elementwise step hands back
  ``y · g``, the relevance of its output, and the layer applies
  ``ρ(W)ᵀ (R / stab(zρ))``; ``z`` itself is never recomputed. A new rule of this family
  only says how to redistribute (:meth:`WeightedRule.redistribute`).

:class:`Pass` is for a layer without weights that LRP does not know: its relevance passes
unchanged, position by position.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import keras
from keras import layers as L
from keras import ops

from ...tf_backend import custom_backward, elementwise_backward, scale_gradient, with_backward

_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
KERNEL_LAYERS = (L.Dense, L.EinsumDense, *_CONV, *_DEPTHWISE)  # one kernel: every rule applies
SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)  # two kernels: the gradient-form rules apply
# Activations whose plain gradient already passes relevance unchanged, and those (as a layer's
# own activation) whose output is 0 wherever their input is <= 0.
GRADIENT_PASSES = ("relu", "linear")
CLIPPING = ("relu", "relu6")


@dataclass
class Site:
    """A linear layer as the rules see it: what the canonizers folded into it and what
    ends it, what is known of its input, and its rule."""

    layer: keras.layers.Layer
    rule: "Rule | None" = None
    bn: keras.layers.Layer | None = None  # BatchNormalization folded into the layer
    end: keras.layers.Layer | None = None  # activation layer that alone reads the (folded) output
    clips: bool = False  # the chain's output is 0 wherever its pre-activation is <= 0
    nonnegative_input: bool = False  # the layer's input is >= 0 by construction (after a ReLU)
    reads_pixels: bool = False  # it reads the model's input (through the pixel path only)
    bounds: Callable[[Any], tuple[Any, Any]] | None = field(default=None, repr=False)  # z^B: the input's box given the input


class Rule(abc.ABC):
    """How a linear layer redistributes relevance; subclasses name themselves and their
    parameters (:meth:`key` names the compiled function of a rule set)."""

    name: ClassVar[str]

    def key(self) -> tuple:
        return (self.name, *sorted(vars(self).items()))

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({params})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(self.key())

    @abc.abstractmethod
    def linear_hook(self, site: Site) -> Callable | None:
        """The hook of the site's layer (None: its plain gradient is the rule)."""

    def norm_hook(self, site: Site) -> Callable | None:
        """The hook of the BatchNormalization folded into the site."""
        return None

    def end_hook(self, site: Site) -> Callable | None:
        """The hook of the activation layer ending the site."""
        return None if gradient_passes(site.end) else elementwise_backward(passthrough)


# -- gradient-form rules ------------------------------------------------------------------------
class Zero(Rule):
    """LRP-0: ``R_i = Σ_j a_i w_ij / z_j · R_j`` (Gradient × Input on bias-free ReLU nets)."""

    name = "zero"

    def linear_hook(self, site: Site) -> Callable | None:
        return split_hook(site.layer, None, passthrough)


class Epsilon(Rule):
    """LRP-ε: ``z_j + ε·sign(z_j)`` in every denominator (absorbs weak, noisy relevance)."""

    name = "epsilon"

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = float(epsilon)

    def linear_hook(self, site: Site) -> Callable | None:
        layer, epsilon = site.layer, self.epsilon
        activation = activation_name(layer)
        if activation == "relu" and not isinstance(layer, SEPARABLE):  # y = z wherever y ≠ 0: ε's factor is y / (y + ε)
            return custom_backward(_epsilon_through_relu(layer, epsilon))
        if site.clips:  # a capped ReLU: the ε factor rides on its pass-through
            return split_hook(layer, None, _epsilon_passthrough(epsilon))
        if site.bn is None:
            return split_hook(layer, _epsilon_at_output(_epsilon_factor(epsilon)), passthrough)
        return split_hook(layer, None, passthrough)  # ε is carried by the folded BatchNormalization

    def norm_hook(self, site: Site) -> Callable | None:
        return None if site.clips else _epsilon_at_output(_epsilon_factor(self.epsilon))

    def end_hook(self, site: Site) -> Callable | None:
        return elementwise_backward(_epsilon_passthrough(self.epsilon)) if site.clips else super().end_hook(site)

    def factor(self, z: Any) -> Any:
        """ε's factor ``z / stab(z)`` at a linear output (as in recurrent cells)."""
        return scale_gradient(z, _epsilon_factor(self.epsilon))


# -- rules with their own weights (relevance form) -----------------------------------------------
class WeightedRule(Rule):
    """A rule with its own weights ``ρ(W)``: runs backward in relevance form."""

    epsilon: float

    @abc.abstractmethod
    def redistribute(self, site: Site, a: Any, relevance: Any, kernel: Any, bias: Any, pull: Any) -> Any:
        """The gradient at the input ``a`` (or, for :class:`ZBox`, the input's relevance)
        given the relevance at the site's output and its BatchNorm-folded kernel and bias."""

    def linear_hook(self, site: Site) -> Callable | None:
        layer = site.layer
        # z^B reads W·a off the layer's output, so an activation other than ReLU is split off.
        split = isinstance(self, ZBox) and activation_name(layer) not in GRADIENT_PASSES
        relevance_given = split or site.bn is not None or site.end is not None

        def backward(a: Any, z: Any, upstream: Any, pull: Any) -> Any:
            kernel, bias = folded(layer, site.bn)
            return self.redistribute(site, a, upstream if relevance_given else upstream * z, kernel, bias, pull)

        rule = custom_backward(backward)
        return split_hook(layer, rule, _to_relevance) if split else rule

    def norm_hook(self, site: Site) -> Callable | None:
        return elementwise_backward(_to_relevance if site.end is None else _identity)

    def end_hook(self, site: Site) -> Callable | None:
        return elementwise_backward(_to_relevance)

    def _through(self, site: Site, a: Any, relevance: Any, parts: list, bias: Any, positive: bool, pull: Any) -> Any:
        """``Σ_k ρ_k(W)ᵀ (R / stab(Σ_k ρ_k(W)·t_k(a) + ρ(b)))`` as a gradient at ``a``: ``parts``
        are ``(input transform or None, weights)`` pairs; ``positive``: the denominator is
        known to be >= 0 wherever relevance flows."""
        layer, epsilon = site.layer, self.epsilon
        # The pass runs with weights/ε: its transpose divides by ε as well, and the stabiliser
        # zρ + ε·sign(zρ) becomes v + sign(v) on v = zρ/ε (two passes over v, not three), or
        # the bias's + 1 where zρ's sign is known.
        unit = 1.0 / epsilon if epsilon else 1.0
        ndim = len(layer_output_shape(layer, a))
        shift = along_output(layer, bias * unit + (1.0 if positive and epsilon else 0.0), ndim)

        def modified(a: Any) -> Any:
            out = shift
            for part, weights in parts:
                out = linear_map(layer, a if part is None else part(a), weights * unit) + out
            return out

        v, vjp = pull(modified)
        return vjp(ops.divide_no_nan(relevance, v if positive or not epsilon else v + ops.sign(v)))


class Gamma(WeightedRule):
    """LRP-γ: weights ``w + γ·w⁺`` (favours positive contributions); meant for inputs >= 0
    with a ReLU after (the composite presets check this)."""

    name = "gamma"

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6):
        self.gamma, self.epsilon = float(gamma), float(epsilon)

    def redistribute(self, site: Site, a: Any, relevance: Any, kernel: Any, bias: Any, pull: Any) -> Any:
        # After a ReLU, zρ >= z > 0 wherever a clipped output carries relevance.
        positive = site.nonnegative_input and site.clips
        return self._through(site, a, relevance, [(None, kernel + self.gamma * ops.relu(kernel))], bias + self.gamma * ops.relu(bias), positive, pull)


class ZPlus(WeightedRule):
    """z⁺ (α1β0): only positive contributions ``(a·w)⁺ = a⁺·w⁺ + a⁻·w⁻``."""

    name = "zplus"

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = float(epsilon)

    def redistribute(self, site: Site, a: Any, relevance: Any, kernel: Any, bias: Any, pull: Any) -> Any:
        return self._through(site, a, relevance, _signed_parts(kernel, site.nonnegative_input, positive=True), ops.relu(bias), True, pull)


class AlphaBeta(WeightedRule):
    """LRP-αβ: ``α·(a·w)⁺/z⁺ − β·(a·w)⁻/z⁻``, positive and negative contributions each
    normalised on their own (``α − β = 1`` conserves relevance; α=2, β=1 is common)."""

    name = "alpha_beta"

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, epsilon: float = 1e-6):
        self.alpha, self.beta, self.epsilon = float(alpha), float(beta), float(epsilon)

    def redistribute(self, site: Site, a: Any, relevance: Any, kernel: Any, bias: Any, pull: Any) -> Any:
        nonnegative = site.nonnegative_input
        positive = self._through(site, a, relevance, _signed_parts(kernel, nonnegative, positive=True), ops.relu(bias), True, pull)
        if not self.beta:
            return self.alpha * positive
        negative = self._through(site, a, relevance, _signed_parts(kernel, nonnegative, positive=False), ops.minimum(bias, 0.0), False, pull)
        return self.alpha * positive - self.beta * negative


def _signed_parts(kernel: Any, nonnegative_input: bool, positive: bool) -> list:
    """The ``(input transform, weights)`` parts of ``(a·w)⁺`` (``positive``) or ``(a·w)⁻``."""
    same, other = (ops.relu(kernel), ops.minimum(kernel, 0.0)) if positive else (ops.minimum(kernel, 0.0), ops.relu(kernel))
    if nonnegative_input:
        return [(None, same)]
    return [(ops.relu, same), (lambda a: ops.minimum(a, 0.0), other)]


class ZBox(WeightedRule):
    """z^B (Montavon et al., 2019) for the layers reading the pixels, within a box
    ``l <= x <= h``: ``R_i = Σ_j (x_i w_ij − l_i w⁺_ij − h_i w⁻_ij) / Σ_i (…) · R_j``. It
    returns the pixels' relevance itself, so pixels equal to 0 keep theirs. The box is the
    explainer's ``input_bounds`` (default: each sample's own range)."""

    name = "zbox"

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = float(epsilon)

    def redistribute(self, site: Site, a: Any, relevance: Any, kernel: Any, bias: Any, pull: Any) -> Any:
        return _box_relevance(site, a, relevance, kernel, bias, self.epsilon, pull)


class Pass(Rule):
    """For a layer without weights: its relevance passes unchanged, position by position
    (an elementwise layer LRP has no rule for, say a custom activation)."""

    name = "pass"

    def linear_hook(self, site: Site) -> Callable | None:
        return elementwise_backward(passthrough)


# -- the math (keras.ops; the backward hooks come from the backend) ------------------------------
def activation_name(layer: Any) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "")


def gradient_passes(layer: Any) -> bool:
    """An activation layer whose plain gradient already passes relevance unchanged."""
    if isinstance(layer, L.ReLU):
        return layer.max_value is None and not layer.negative_slope and not layer.threshold
    return isinstance(layer, L.Activation) and activation_name(layer) in GRADIENT_PASSES


def clips_at_zero(layer: Any) -> bool:
    """A ReLU (maybe capped) layer whose output is 0 wherever its input is <= 0."""
    if isinstance(layer, L.ReLU):
        return not layer.negative_slope and layer.threshold >= 0
    return isinstance(layer, L.Activation) and activation_name(layer) in CLIPPING


def channel_axis(layer: Any) -> int:
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def linear_map(layer: keras.layers.Layer, a: Any, kernel: Any) -> Any:
    """The layer's linear part (no bias) with another kernel."""
    if isinstance(layer, L.Dense):
        return ops.matmul(a, kernel)
    if isinstance(layer, L.EinsumDense):
        return ops.einsum(layer.equation, a, kernel)
    padding = layer.padding
    if padding == "causal":
        left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
        a = ops.pad(a, [[0, 0], [left, 0], [0, 0]] if channel_axis(layer) == -1 else [[0, 0], [0, 0], [left, 0]])
        padding = "valid"
    conv = ops.depthwise_conv if isinstance(layer, _DEPTHWISE) else ops.conv
    return conv(a, kernel, strides=layer.strides, padding=padding, dilation_rate=layer.dilation_rate, data_format=layer.data_format)


def layer_output_shape(layer: keras.layers.Layer, a: Any) -> tuple:
    return tuple(layer.compute_output_shape(tuple(a.shape)))


def along_output(layer: keras.layers.Layer, v: Any, ndim: int) -> Any:
    """A bias-like value shaped to broadcast against the layer's output: per output channel,
    or, for EinsumDense, as its bias is stored."""
    if isinstance(layer, L.EinsumDense):
        return v
    shape = [1] * ndim
    shape[channel_axis(layer)] = -1
    return ops.reshape(v, shape)


def norm_affine(bn: keras.layers.Layer) -> tuple[Any, Any]:
    """A BatchNormalization at inference as ``scale * x + shift`` (per channel)."""
    scale = (bn.gamma if bn.scale else 1.0) / ops.sqrt(bn.moving_variance + bn.epsilon)
    return scale, (bn.beta if bn.center else 0.0) - bn.moving_mean * scale


def folded(layer: keras.layers.Layer, bn: keras.layers.Layer | None) -> tuple[Any, Any]:
    """Kernel and bias of ``layer`` with ``bn`` (or None) folded in."""
    kernel = layer.kernel
    if getattr(layer, "bias", None) is not None:
        bias = layer.bias
    else:
        bias = ops.zeros((kernel.shape[-1] * (kernel.shape[-2] if isinstance(layer, _DEPTHWISE) else 1),))
    if bn is None:
        return kernel, bias
    scale, shift = norm_affine(bn)
    kernel_scale = ops.reshape(scale, kernel.shape[-2:]) if isinstance(layer, _DEPTHWISE) else scale
    return kernel * kernel_scale, bias * scale + shift


def passthrough(a: Any, y: Any, upstream: Any) -> Any:
    """An elementwise step passes relevance unchanged: ``a·g_in = y·g_out``."""
    return upstream * ops.divide_no_nan(y, a)


def passthrough_of(a: Any, f: Callable[[Any], Any]) -> Any:
    """``f(a)`` for an elementwise ``f`` whose relevance passes unchanged."""
    return with_backward(f, a, lambda a, y, upstream, pull: passthrough(a, y, upstream), record=False)


def _identity(a: Any, y: Any, upstream: Any) -> Any:
    """A BatchNormalization folded into the layer before it, inside a relevance-form chain."""
    return upstream


def _to_relevance(a: Any, y: Any, upstream: Any) -> Any:
    """The end of a relevance-form chain: its output's relevance ``y·g``."""
    return upstream * y


def _epsilon_passthrough(epsilon: float):
    """LRP-ε of the layer before, fused with a clipped ReLU's pass-through: ``g · y / (|z| + ε)``,
    written ``g · y / (z + ε)`` as ``y ≠ 0`` only where ``z > 0``."""
    return lambda z, y, upstream: upstream * ops.divide_no_nan(y, z + epsilon)


def _epsilon_factor(epsilon: float):
    """``z / (z + ε·sign z)``, written as ``|z| / (|z| + ε)`` (fewer passes over ``z``)."""

    def factor(z: Any) -> Any:
        magnitude = ops.abs(z)
        return ops.divide_no_nan(magnitude, magnitude + epsilon)

    return factor


def _epsilon_through_relu(layer: keras.layers.Layer, epsilon: float):
    """LRP-ε for a layer with its own ReLU, kept fused: as ``y = z`` wherever ``y ≠ 0``, the
    gradient at ``z`` is ``g · y / (y + ε)``, then ``Wᵀ`` (no ReLU mask needed: it is in the factor)."""

    def backward(a: Any, y: Any, upstream: Any, pull: Any) -> Any:
        _, vjp = pull(lambda a: linear_map(layer, a, layer.kernel))  # its forward is never run
        return vjp(upstream * ops.divide_no_nan(y, y + epsilon))

    return backward


def _epsilon_at_output(factor: Callable[[Any], Any]):
    """A layer whose gradient is scaled by ``factor(output)`` on the way back, before its own
    backward pass: LRP-ε's ``z / stab(z)`` at a linear output (or a folded BatchNormalization's)."""

    def make(original):
        return lambda *args, **kwargs: scale_gradient(original(*args, **kwargs), factor)

    return make


def split_hook(layer: keras.layers.Layer, pre: Callable | None, after: Callable) -> Callable | None:
    """The hook of a linear layer: ``pre`` (a hook or None) on its linear part and, where its
    own activation is not one whose gradient passes relevance, that activation split off with
    ``after(a, y, upstream)`` as its backward pass."""
    if activation_name(layer) in GRADIENT_PASSES:  # nothing to split off
        return pre
    activation_pass = elementwise_backward(after)

    def make(original):
        linear = original if pre is None else pre(original)

        def call(*args, **kwargs):
            activation = layer.activation
            object.__setattr__(layer, "activation", keras.activations.linear)
            try:
                z = linear(*args, **kwargs)
            finally:
                object.__setattr__(layer, "activation", activation)
            if activation_name_of(activation) in GRADIENT_PASSES and after is not _to_relevance:  # linear where a softmax is stripped for logits
                return z
            return activation_pass(activation)(z)

        return call

    return make


def activation_name_of(activation: Any) -> str:
    return getattr(activation, "__name__", "")


def _box_relevance(site: Site, a: Any, relevance: Any, kernel: Any, bias: Any, epsilon: float, pull: Any) -> Any:
    """z^B at the pixels: ``R_i = Σ_j (a_i w_ij − l_i w⁺_ij − h_i w⁻_ij) s_j`` with
    ``s = R / (Σ_i (…) + ε)``, every term >= 0 for ``l <= a <= h``.

    With the box's centre ``m`` and half-width ``r`` the terms are ``(a − m)·w + r·|w|``, so
    the denominator is ``W·a − W·m + |W|·r``. ``W·a`` comes from the layer's own output
    (recorded by the pass: ``z − b``; where a ReLU clipped it, ``R`` is 0 anyway), and ``W·m``,
    ``|W|·r`` from batch-1 passes: over the bounds themselves, or over a constant image,
    mixed per sample by one matrix product, when each sample has its own box. The input
    relevance is ``(a − m)·Wᵀs + r·|W|ᵀs``: one transposed pass with both kernels stacked.
    """
    layer = site.layer
    z, _ = pull()
    axis, ndim = channel_axis(layer) % len(a.shape), len(z.shape)
    if site.bn is not None:
        scale, shift = norm_affine(site.bn)
        z = z * along_output(layer, scale, ndim) + along_output(layer, shift, ndim)
    low, high = site.bounds(a)
    mid, half = (low + high) / 2, (high - low) / 2
    base = along_output(layer, bias - epsilon, ndim)  # z_box = z − base: base = b − ε + W·m − |W|·r
    if all(d == 1 for d in mid.shape[1:]):  # one box per sample
        unit = ops.ones((1, *a.shape[1:]))
        responses = [linear_map(layer, unit, kernel), linear_map(layer, unit, ops.abs(kernel)), base + ops.zeros_like(z[:1])]
        coefficients = ops.concatenate([ops.reshape(v, (-1, 1)) for v in (mid, -half, ops.ones_like(mid))], axis=1)
        base = ops.reshape(ops.matmul(coefficients, ops.reshape(ops.concatenate(responses, axis=0), (3, -1))), (-1, *z.shape[1:]))
    else:
        base = base + linear_map(layer, mid, kernel) - linear_map(layer, half, ops.abs(kernel))
    s = ops.divide_no_nan(relevance, z - base)
    stacked = ops.concatenate([kernel, ops.abs(kernel)], axis=-2)  # the kernels' input axis
    shape = list(ops.shape(a))
    shape[axis] *= 2
    _, vjp = pull(lambda u: linear_map(layer, u, stacked), at=ops.zeros(shape))  # linear: any point gives its transpose
    if isinstance(layer, _DEPTHWISE):  # channels stay apart: each half of the outputs reads one kernel
        s = ops.concatenate([s, s], axis=axis)
    signed, magnitude = ops.split(vjp(s), 2, axis=axis)
    return (a - mid) * signed + half * magnitude
