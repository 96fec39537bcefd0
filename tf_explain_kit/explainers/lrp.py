"""Layer-wise Relevance Propagation (Bach et al., 2015; Montavon et al., 2019).

Implemented as *modified gradient × input*: every linear layer keeps its forward pass and
gets a custom backward pass. With ``z`` the layer's (BatchNorm-folded) pre-activation and
``zρ(a) = ρ(W)·a + ρ(b)`` the same layer with the rule's weights, the input gradient is

    ρ(W)ᵀ (g · z / stab(zρ))

so ``a · ∂score/∂a`` is exactly the rule's relevance at the layer input. Layers that are
not linear pass relevance with their plain gradient, which *is* the LRP rule for them:
max pooling routes all relevance to the winner (winner-take-all), average pooling, Add
and Concatenate split it in proportion to the contributions, Flatten/Reshape/Dropout/
ZeroPadding keep it. Elementwise activations pass relevance through unchanged.

Rules with their own weights (γ, z⁺, z^B) run backward in *relevance form*: the last
elementwise step after the layer (its activation, or its folded BatchNormalization) hands
back ``y · g``, the relevance of its output ``y``, and the layer applies
``ρ(W)ᵀ (R / stab(zρ))``; ``z`` itself is never recomputed. The bounded rule z^B at the
pixels returns the relevance itself (``(a − l)·W⁺ᵀs + (a − h)·W⁻ᵀs``), not a gradient to
be multiplied by the input, so pixels equal to 0 keep theirs; its denominators are read
off the layer's own output (see :func:`_box_relevance`).

One compiled gradient function per model and rule set; the forward pass is the model's
own, so LRP-ε and z^B cost about one forward and one backward pass (γ and z⁺ add one
pass of the modified layer per linear layer).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Mapping, NamedTuple

import keras
import numpy as np
from keras import layers as L
from keras import ops

from ..model import GradientPass, Inputs, embedding_layers, flat_inputs, map_inputs
from ..tf_backend import custom_backward, elementwise_backward, scale_gradient
from .base import OnePassExplainer

RULES = ("zero", "epsilon", "gamma", "zplus")
BOUNDED = "zbox"  # z^B, the bounded rule for the layers reading the input pixels
COMPOSITE = "composite"
_WEIGHTED = ("gamma", "zplus", BOUNDED)  # rules with their own weights: backward in relevance form

_CONV = (L.Conv1D, L.Conv2D, L.Conv3D)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_LINEAR = (L.Dense, *_CONV, *_DEPTHWISE)
_ACTIVATIONS = (L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Activation)
_REARRANGING = (L.Flatten, L.Reshape, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D)  # pixels keep their values
_KEEPS_SIGN = _REARRANGING + (
    L.ZeroPadding1D, L.ZeroPadding2D, L.MaxPooling1D, L.MaxPooling2D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D,
    L.AveragePooling1D, L.AveragePooling2D, L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.Add, L.Concatenate,
)  # fmt: skip
_PLAIN_GRADIENT = _KEEPS_SIGN + (L.InputLayer, L.BatchNormalization, L.Embedding, L.Softmax)
SUPPORTED = _LINEAR + _ACTIVATIONS + _PLAIN_GRADIENT
# Activations whose plain gradient already passes relevance through unchanged, and those
# (as a layer's own activation) whose output is 0 wherever their input is <= 0.
_GRADIENT_PASSES = ("relu", "linear")
_CLIPPING = ("relu", "relu6")


def composite_rule(layer: keras.layers.Layer) -> str:
    """The composite preset: LRP-ε for dense layers, LRP-γ for (depthwise) convolutions.
    Once the model has run, z^B goes to the layers reading the pixels, and ε to the
    convolutions where γ is not well posed: an input that can be negative, or no ReLU
    after (a linear bottleneck). There γ's denominators mix signs and can come near zero:
    γ on every convolution of MobileNetV2 gave relevance 1e30 for scores near 1."""
    return "epsilon" if isinstance(layer, L.Dense) else "gamma"


class _Chain(NamedTuple):
    """A linear layer with what follows it up to its activation, as the rules see it."""

    rule: str
    bn: keras.layers.Layer | None  # BatchNormalization folded into the layer
    end: keras.layers.Layer | None  # activation layer that alone reads the (folded) output
    clips: bool  # the chain's output is 0 wherever its pre-activation is <= 0
    nonnegative_input: bool  # the layer's input is >= 0 by construction (after a ReLU)
    bounds: Callable[[Any], tuple[Any, Any]] | None  # z^B: the input's (low, high) given the input


class LRP(OnePassExplainer):
    """Layer-wise Relevance Propagation: pixel-level relevance that sums to the explained score.

    Args:
        model: a Keras 3 model built from the supported layers (nested models included).
        rule: ``"zero"`` (LRP-0), ``"epsilon"`` (LRP-ε), ``"gamma"`` (LRP-γ: weights
            ``w + γ·w⁺``; meant for inputs >= 0 with a ReLU after), ``"zplus"`` (z⁺ / α1β0: only positive contributions ``(a·w)⁺``),
            applied to every Dense/Conv/DepthwiseConv layer; or ``"composite"``, the
            recommended preset for image models: z^B for the layers reading the pixels,
            ε for dense layers, γ for the other convolutions whose input is >= 0 and whose
            output goes through a ReLU, ε for the rest.
        epsilon: stabiliser added to every denominator (with the denominator's sign).
        gamma: the γ of LRP-γ.
        layer_rules: ``{layer name: rule}`` overriding ``rule`` for single layers; one of
            ``rule``'s choices, or ``"zbox"`` (z^B) for a layer reading the pixels.
        input_bounds: ``(low, high)``, the box ``low <= x <= high`` of z^B: numbers, or arrays
            broadcasting to one sample (per channel, say). ``None`` (default): each sample's
            own minimum and maximum, a valid box for any input scaling that needs no
            configuration and does not depend on which samples share a batch. Pass the
            data's range (``(0, 1)``; ``(-1, 1)`` after MobileNet preprocessing) to measure
            every sample against the same box.

    z^B (Montavon et al., 2019) gives pixel ``i`` the relevance
    ``Σ_j (x_i w_ij − l_i w⁺_ij − h_i w⁻_ij) / Σ_i (…) · R_j``. It applies to the linear
    layers that read the model's single float input (directly or through Flatten/Reshape/
    Dropout) when nothing else reads it; ``"composite"`` skips it otherwise.
    BatchNormalization directly after a linear layer without activation is folded into it;
    elsewhere it is treated as an affine layer (LRP-0). Max pooling is winner-take-all.
    Models with integer inputs (token ids) are explained at their Embedding layer:
    attributions are then ``(N, T)``, one relevance per token. ``extras["relevance"]`` is
    the relevance conserved at the input and ``extras["conservation"]`` its ratio to the
    explained score (1 when nothing is absorbed by biases and stabilisers).
    """

    method = "lrp"

    def __init__(
        self,
        model: keras.Model,
        rule: str = "epsilon",
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        layer_rules: Mapping[str, str] | None = None,
        input_bounds: tuple[Any, Any] | None = None,
        **options: Any,
    ):
        super().__init__(model, **options)
        if rule not in RULES + (COMPOSITE,):
            raise ValueError(f"rule: expected one of {RULES + (COMPOSITE,)}, got {rule!r}.")
        for name, value in (("epsilon", epsilon), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}.")
        leaves = [l for l in self.adapter.layers if not getattr(l, "layers", None)]
        for layer in leaves:
            if not isinstance(layer, SUPPORTED):
                supported = ", ".join(sorted({cls.__name__ for cls in SUPPORTED} - {"InputLayer"}))
                raise ValueError(
                    f"model: LRP does not support layer '{layer.name}' ({type(layer).__name__}). Supported layers: {supported}, "
                    "and nested models of these. Replace that layer, or use a gradient method such as IntegratedGradients."
                )
        self.rules = {id(l): composite_rule(l) if rule == COMPOSITE else rule for l in leaves if isinstance(l, _LINEAR)}
        self._named: set[int] = set()  # layers whose rule layer_rules chose
        for name, layer_rule in (layer_rules or {}).items():
            layer = self.adapter.find_layer(name, argument="layer_rules")
            if not isinstance(layer, _LINEAR):
                raise ValueError(f"layer_rules: '{name}' is a {type(layer).__name__}; rules apply to Dense, Conv and DepthwiseConv layers only.")
            if layer_rule not in RULES + (BOUNDED,):
                raise ValueError(f"layer_rules: expected one of {RULES + (BOUNDED,)} for layer '{name}', got {layer_rule!r}.")
            self.rules[id(layer)] = layer_rule
            self._named.add(id(layer))
        self.input_bounds = _checked_bounds(input_bounds)
        self.rule, self.epsilon, self.gamma = rule, float(epsilon), float(gamma)
        self._hooks: tuple | None = None
        self._key: tuple = ()  # names the compiled function of these rules
        self._relevance_at_input = False  # z^B hands the input its relevance, not a gradient

    def __repr__(self) -> str:
        return f"LRP(model={self.model.name!r}, rule={self.rule!r})"

    # -- hooks (built once the adapter has probed the model's layer calls) --------------------
    def _layer_hooks(self) -> tuple:
        if self._hooks is None:
            calls = self.adapter.layer_calls
            readers = collections.defaultdict(list)
            for call in calls:
                for tensor in call.inputs:
                    readers[id(tensor)].append(call)
            bounds = self._bounded_layers(*_pixel_layers(calls, readers))
            chains = _chains(self.adapter.layers, calls, readers, self.rules, bounds)
            if self.rule == COMPOSITE:  # γ only where it is well posed: input >= 0, a ReLU after
                for key, chain in chains.items():
                    if chain.rule == "gamma" and key not in self._named and not (chain.nonnegative_input and chain.clips):
                        self.rules[key], chains[key] = "epsilon", chain._replace(rule="epsilon")
            by_bn = {id(c.bn): c for c in chains.values() if c.bn is not None}
            by_end = {id(c.end): c for c in chains.values() if c.end is not None}
            hooks = []
            for layer in self.adapter.layers:
                if isinstance(layer, _LINEAR):
                    hook = _linear_hook(layer, chains[id(layer)], self.epsilon, self.gamma)
                elif id(layer) in by_bn:
                    hook = _folded_norm_hook(by_bn[id(layer)], self.epsilon)
                elif id(layer) in by_end:
                    hook = _chain_end_hook(layer, by_end[id(layer)], self.epsilon)
                else:
                    hook = None if not isinstance(layer, _ACTIVATIONS) or _gradient_passes(layer) else elementwise_backward(_passthrough)
                if hook is not None:
                    hooks.append((layer, hook))
            self._hooks = tuple(hooks)
            self._key = ("lrp", self.epsilon, self.gamma, self._bounds_key()) + tuple(sorted(self.rules.items()))
        return self._hooks

    def _bounded_layers(self, input_shape: tuple | None, pixel_layers: list) -> dict[int, Callable]:
        """Give z^B to the layers reading the pixels (composite preset), check the layers
        layer_rules gave it to, and return their bounds: ``{layer id: a -> (low, high)}``."""
        readers = {id(call.layer): path for call, path in pixel_layers}
        if self.rule == COMPOSITE:
            self.rules.update((key, BOUNDED) for key in readers if key not in self._named)
        names = {id(l): l.name for l in self.adapter.layers}
        bounded = {key for key, rule in self.rules.items() if rule == BOUNDED}
        pixels = ", ".join(repr(names[key]) for key in readers) or "none"
        for key in bounded - set(readers):
            raise ValueError(
                f"layer_rules: '{names[key]}' does not read the input pixels, so it cannot take 'zbox'. z^B applies to the linear "
                f"layers reading the model's single float input (directly or through Flatten/Reshape/Dropout) when nothing else reads it; here: {pixels}."
            )
        if bounded and bounded != set(readers):
            raise ValueError(f"layer_rules: give 'zbox' to every layer reading the input pixels ({pixels}) or to none of them.")
        self._relevance_at_input = bool(bounded)
        return {key: self._bounds(readers[key], input_shape) for key in bounded}

    def _bounds(self, path: tuple, input_shape: tuple) -> Callable[[Any], tuple[Any, Any]]:
        """The z^B box at a layer's input ``a``, which is the model input after the ``path`` layers."""
        if self.input_bounds is None:
            return lambda a: tuple(f(a, axis=tuple(range(1, len(a.shape))), keepdims=True) for f in (ops.min, ops.max))
        box = []
        for bound in self.input_bounds:
            try:
                bound = np.broadcast_to(bound, input_shape)[None]
            except ValueError:
                raise ValueError(
                    f"input_bounds: a bound of shape {bound.shape} does not broadcast to one input sample of shape {input_shape}. "
                    "Pass numbers, or arrays such as one value per channel."
                ) from None
            for layer in path:
                bound = layer(bound, training=False)
            box.append(ops.convert_to_numpy(bound))
        return lambda a: tuple(box)

    def _check_within_bounds(self, x: np.ndarray) -> None:
        low, high = self.input_bounds
        outside = np.flatnonzero(((x < low) | (x > high)).reshape(len(x), -1).any(axis=1))
        if len(outside):
            raise ValueError(
                f"inputs: samples {outside[:10].tolist()} have values outside input_bounds (z^B needs low <= x <= high; "
                f"their range is [{x[outside].min():.4g}, {x[outside].max():.4g}]). Pass input_bounds containing the data, or None for each sample's own range."
            )

    def _bounds_key(self) -> tuple:
        return () if self.input_bounds is None else tuple((b.shape, b.tobytes()) for b in self.input_bounds)

    def attribute_pass(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict, GradientPass]:
        hooks = self._layer_hooks()
        if all(a.dtype.kind == "f" for a in flat_inputs(x)):
            if self._relevance_at_input and self.input_bounds is not None:
                self._check_within_bounds(flat_inputs(x)[0])
            result = self.adapter.gradients(x, weights, hooks, self._key)
            attributions = result.grads if self._relevance_at_input else map_inputs(np.multiply, result.grads, x)
        else:
            result = self.adapter.layer_gradients(x, weights, self._embedding_layer(), hooks, self._key)
            attributions = (result.activations * result.grads).sum(axis=-1)
        score = result.score
        arrays = flat_inputs(attributions)
        relevance = sum(a.reshape(len(a), -1).sum(axis=1) for a in arrays)
        conservation = relevance / np.where(score != 0, score, np.nan)
        return attributions, {"relevance": relevance, "conservation": conservation}, result

    def _embedding_layer(self) -> keras.layers.Layer:
        embeddings = embedding_layers(self.model)
        if len(embeddings) != 1:
            raise TypeError(
                f"inputs: LRP got integer inputs, which it explains at the model's single Embedding layer, but model "
                f"'{self.model.name}' has {len(embeddings)} Embedding layers. Pass float inputs, or explain a model with one embedding."
            )
        return embeddings[0]


def _checked_bounds(bounds: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if bounds is None:
        return None
    hint = "Pass the range the pixels can take, such as (0, 1), or None for each sample's own range."
    if not isinstance(bounds, (tuple, list)) or len(bounds) != 2:
        raise ValueError(f"input_bounds: expected (low, high), got {bounds!r}. {hint}")
    try:
        low, high = (np.asarray(b, np.float32) for b in bounds)
        ordered = bool(np.all(low <= high))
    except (TypeError, ValueError):
        raise ValueError(f"input_bounds: expected two numbers or arrays that broadcast together, got {bounds!r}. {hint}") from None
    if not (ordered and np.isfinite(low).all() and np.isfinite(high).all()):
        raise ValueError(f"input_bounds: expected finite bounds with low <= high everywhere, got {bounds!r}. {hint}")
    return low, high


# -- the model's structure as the rules see it (from one probe pass) ----------------------------
def _pixel_layers(calls: list, readers: Mapping[int, list]) -> tuple[tuple | None, list]:
    """The model input's sample shape and the linear layer calls reading it, each with the
    layers that only rearrange it on the way; no calls when anything else reads it."""
    produced = {id(c.output) for c in calls if not any(c.output is t for t in c.inputs)}  # (inference Dropout returns its input)
    roots = {id(t): t for c in calls for t in c.inputs if id(t) not in produced}
    if len(roots) != 1:
        return None, []
    (root,) = roots.values()
    found, frontier = [], [(root, ())]
    while frontier:
        tensor, path = frontier.pop()
        for call in readers[id(tensor)]:
            if getattr(call.layer, "layers", None) or call.output is tensor:  # a nested model (its layers' calls are listed too), or an identity
                continue
            if isinstance(call.layer, _REARRANGING):
                frontier.append((call.output, path + (call.layer,)))
            elif isinstance(call.layer, _LINEAR) and call.inputs[0] is tensor:
                found.append((call, path))
            else:
                return None, []
    return tuple(root.shape[1:]), found


def _chains(layers: list, calls: list, readers: Mapping[int, list], rules: Mapping[int, str], bounds: Mapping[int, Callable]) -> dict[int, _Chain]:
    """Every linear layer's chain: the BatchNormalization folded into it and the activation
    layer after them, each the only reader of what it reads and called once."""
    times_called = collections.Counter(id(c.layer) for c in calls)

    def sole_reader(tensor: Any, kinds: tuple) -> Any:
        found = readers[id(tensor)]
        return found[0] if len(found) == 1 and isinstance(found[0].layer, kinds) and times_called[id(found[0].layer)] == 1 else None

    nonnegative = _nonnegative_tensors(calls)
    chains = {}
    for layer in layers:
        if not isinstance(layer, _LINEAR):
            continue
        own = [c for c in calls if c.layer is layer]
        bn = end = None
        if len(own) == 1 and _name(layer.activation) == "linear":
            output = own[0].output
            norm = sole_reader(output, (L.BatchNormalization,))
            if norm is not None and norm.layer.axis % len(norm.output_shape) == _channel_axis(layer) % len(norm.output_shape):
                bn, output = norm.layer, norm.output
            activation = sole_reader(output, _ACTIVATIONS)
            end = activation.layer if activation is not None else None
        clips = _name(layer.activation) in _CLIPPING or (end is not None and _clips_at_zero(end))
        nonnegative_input = bool(own) and all(id(c.inputs[0]) in nonnegative for c in own)
        chains[id(layer)] = _Chain(rules[id(layer)], bn, end, clips, nonnegative_input, bounds.get(id(layer)))
    return chains


def _nonnegative_tensors(calls: list) -> set[int]:
    """Ids of the tensors that are >= 0 by construction: ReLU outputs, and what pooling,
    padding, reshaping, Add and Concatenate make of them."""
    found: set[int] = set()
    for call in calls:
        layer = call.layer
        kept = isinstance(layer, _KEEPS_SIGN) and call.inputs and all(id(t) in found for t in call.inputs)
        if kept or _clips_at_zero(layer) or (isinstance(layer, _LINEAR) and _name(layer.activation) in _CLIPPING):
            found.add(id(call.output))
    return found


# -- rules as modified backward passes (keras.ops math; the backward hook comes from the backend) --
def _name(activation: Any) -> str:
    return getattr(activation, "__name__", "")


def _gradient_passes(layer: keras.layers.Layer) -> bool:
    if isinstance(layer, L.ReLU):
        return layer.max_value is None and not layer.negative_slope and not layer.threshold
    return isinstance(layer, L.Activation) and _name(layer.activation) in _GRADIENT_PASSES


def _clips_at_zero(layer: keras.layers.Layer) -> bool:
    """A ReLU (maybe capped) layer whose output is 0 wherever its input is <= 0."""
    if isinstance(layer, L.ReLU):
        return not layer.negative_slope and layer.threshold >= 0
    return isinstance(layer, L.Activation) and _name(layer.activation) in _CLIPPING


def _channel_axis(layer: keras.layers.Layer) -> int:
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else -1


def _linear_map(layer: keras.layers.Layer, a: Any, kernel: Any) -> Any:
    """The layer's linear part (no bias) with another kernel."""
    if isinstance(layer, L.Dense):
        return ops.matmul(a, kernel)
    padding = layer.padding
    if padding == "causal":
        left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
        a = ops.pad(a, [[0, 0], [left, 0], [0, 0]] if _channel_axis(layer) == -1 else [[0, 0], [0, 0], [left, 0]])
        padding = "valid"
    conv = ops.depthwise_conv if isinstance(layer, _DEPTHWISE) else ops.conv
    return conv(a, kernel, strides=layer.strides, padding=padding, dilation_rate=layer.dilation_rate, data_format=layer.data_format)


def _along_channels(v: Any, layer: keras.layers.Layer, ndim: int) -> Any:
    """A per-output-channel vector shaped to broadcast against the layer's output."""
    shape = [1] * ndim
    shape[_channel_axis(layer)] = -1
    return ops.reshape(v, shape)


def _norm_affine(bn: keras.layers.Layer) -> tuple[Any, Any]:
    """A BatchNormalization at inference as ``scale * x + shift`` (per channel)."""
    scale = (bn.gamma if bn.scale else 1.0) / ops.sqrt(bn.moving_variance + bn.epsilon)
    return scale, (bn.beta if bn.center else 0.0) - bn.moving_mean * scale


def _folded(layer: keras.layers.Layer, bn: keras.layers.Layer | None) -> tuple[Any, Any]:
    """Kernel and bias of ``layer`` with ``bn`` (or None) folded in."""
    kernel = layer.kernel
    bias = layer.bias if layer.use_bias else ops.zeros((kernel.shape[-1] * (kernel.shape[-2] if isinstance(layer, _DEPTHWISE) else 1),))
    if bn is None:
        return kernel, bias
    scale, shift = _norm_affine(bn)
    kernel_scale = ops.reshape(scale, kernel.shape[-2:]) if isinstance(layer, _DEPTHWISE) else scale
    return kernel * kernel_scale, bias * scale + shift


def _ratio(num: Any, den: Any) -> Any:
    """``num / den``, and 0 where ``den`` is 0."""
    return ops.divide_no_nan(num, den)


def _passthrough(a: Any, y: Any, upstream: Any) -> Any:
    """An elementwise activation passes relevance unchanged: ``a·g_in = y·g_out``."""
    return upstream * _ratio(y, a)


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
        _, vjp = pull(lambda a: _linear_map(layer, a, layer.kernel))  # its forward is never run
        return vjp(upstream * ops.divide_no_nan(y, y + epsilon))

    return backward


def _epsilon_at_output(factor: Callable[[Any], Any]):
    """A layer whose gradient is scaled by ``factor(output)`` on the way back, before its own
    backward pass: LRP-ε's ``z / stab(z)`` at a linear output (or a folded BatchNormalization's)."""

    def make(original):
        return lambda *args, **kwargs: scale_gradient(original(*args, **kwargs), factor)

    return make


def _box_relevance(layer: keras.layers.Layer, chain: _Chain, a: Any, z: Any, relevance: Any, kernel: Any, bias: Any, epsilon: float, pull: Any) -> Any:
    """z^B at the pixels: ``R_i = Σ_j (a_i w_ij − l_i w⁺_ij − h_i w⁻_ij) s_j`` with
    ``s = R / (Σ_i (…) + ε)``, every term >= 0 for ``l <= a <= h``.

    With the box's centre ``m`` and half-width ``r`` the terms are ``(a − m)·w + r·|w|``, so
    the denominator is ``W·a − W·m + |W|·r``. ``W·a`` is read off the layer's own output
    (``z − b``; where a ReLU clipped it, ``R`` is 0 anyway), and ``W·m``, ``|W|·r`` come from
    batch-1 passes: over the bounds themselves, or over a constant image, mixed per sample
    by one matrix product, when each sample has its own box. The input relevance is
    ``(a − m)·Wᵀs + r·|W|ᵀs``: one transposed pass with both kernels stacked.
    """
    axis, ndim = _channel_axis(layer) % len(a.shape), len(z.shape)
    if chain.bn is not None:
        scale, shift = _norm_affine(chain.bn)
        z = z * _along_channels(scale, layer, ndim) + _along_channels(shift, layer, ndim)
    low, high = chain.bounds(a)
    mid, half = (low + high) / 2, (high - low) / 2
    base = _along_channels(bias - epsilon, layer, ndim)  # z_box = z − base: base = b − ε + W·m − |W|·r
    if all(d == 1 for d in mid.shape[1:]):  # one box per sample
        unit = ops.ones((1, *a.shape[1:]))
        responses = [_linear_map(layer, unit, kernel), _linear_map(layer, unit, ops.abs(kernel)), base + ops.zeros_like(z[:1])]
        coefficients = ops.concatenate([ops.reshape(v, (-1, 1)) for v in (mid, -half, ops.ones_like(mid))], axis=1)
        base = ops.reshape(ops.matmul(coefficients, ops.reshape(ops.concatenate(responses, axis=0), (3, -1))), (-1, *z.shape[1:]))
    else:
        base = base + _linear_map(layer, mid, kernel) - _linear_map(layer, half, ops.abs(kernel))
    s = _ratio(relevance, z - base)
    stacked = ops.concatenate([kernel, ops.abs(kernel)], axis=-2)  # the kernels' input axis
    shape = list(ops.shape(a))
    shape[axis] *= 2
    _, vjp = pull(lambda u: _linear_map(layer, u, stacked), at=ops.zeros(shape))  # linear: any point gives its transpose
    if isinstance(layer, _DEPTHWISE):  # channels stay apart: each half of the outputs reads one kernel
        s = ops.concatenate([s, s], axis=axis)
    signed, magnitude = ops.split(vjp(s), 2, axis=axis)
    return (a - mid) * signed + half * magnitude


def _weighted_backward(layer: keras.layers.Layer, chain: _Chain, epsilon: float, gamma: float, relevance_given: bool):
    """LRP-γ, z⁺ and z^B in relevance form: ``R`` at the output (``relevance_given``, else
    ``z·g``) is divided by the rule's stabilised pre-activation ``zρ`` and carried back
    with the rule's weights. z^B returns the input's relevance; γ and z⁺ a gradient."""

    def backward(a: Any, z: Any, upstream: Any, pull: Any) -> Any:
        relevance = upstream if relevance_given else upstream * z
        kernel, bias = _folded(layer, chain.bn)
        if chain.rule == BOUNDED:
            return _box_relevance(layer, chain, a, z, relevance, kernel, bias, epsilon, pull)
        if chain.rule == "gamma":
            parts = [(None, kernel + gamma * ops.relu(kernel))]
            bias = bias + gamma * ops.relu(bias)
            # After a ReLU, zρ >= z > 0 wherever a clipped output carries relevance.
            positive = chain.nonnegative_input and chain.clips
        else:  # zplus: (a·w)⁺ = a⁺·w⁺ + a⁻·w⁻, so zρ >= 0
            parts = [(None if chain.nonnegative_input else ops.relu, ops.relu(kernel))]
            if not chain.nonnegative_input:
                parts.append((lambda a: ops.minimum(a, 0.0), ops.minimum(kernel, 0.0)))
            bias, positive = ops.relu(bias), True
        # The pass runs with weights/ε: its transpose divides by ε as well, and the stabiliser
        # zρ + ε·sign(zρ) becomes v + sign(v) on v = zρ/ε (two passes over v, not three), or
        # the bias's + 1 where zρ's sign is known.
        unit = 1.0 / epsilon if epsilon else 1.0
        shift = _along_channels(bias * unit + (1.0 if positive and epsilon else 0.0), layer, len(z.shape))

        def modified(a: Any) -> Any:
            out = shift
            for part, weights in parts:
                out = _linear_map(layer, a if part is None else part(a), weights * unit) + out
            return out

        v, vjp = pull(modified)
        return vjp(_ratio(relevance, v if positive or not epsilon else v + ops.sign(v)))

    return backward


def _linear_hook(layer: keras.layers.Layer, chain: _Chain, epsilon: float, gamma: float):
    """Hook for a linear layer (None: its plain gradient is the rule). Where the layer's own
    activation can stay fused with it (one kernel in the forward pass), the rule wraps the
    whole layer; otherwise the activation is split off and gets its own backward pass."""
    activation = _name(layer.activation)
    if chain.rule in _WEIGHTED:  # the activation passes relevance: y·g at the output is R at z
        # z^B reads W·a off the layer's output, so an activation other than ReLU is split off.
        split = chain.rule == BOUNDED and activation not in _GRADIENT_PASSES
        relevance_given = split or chain.bn is not None or chain.end is not None
        rule = custom_backward(_weighted_backward(layer, chain, epsilon, gamma, relevance_given))
        if not split:
            return rule
        pre, after = rule, _to_relevance
    elif chain.rule == "epsilon" and activation == "relu":  # y = z wherever y ≠ 0: ε's factor is y / (y + ε)
        return custom_backward(_epsilon_through_relu(layer, epsilon))
    elif chain.rule == "epsilon" and chain.clips:  # a capped ReLU: the ε factor rides on its pass-through
        pre, after = None, _epsilon_passthrough(epsilon)
    elif chain.rule == "epsilon" and chain.bn is None:
        pre, after = _epsilon_at_output(_epsilon_factor(epsilon)), _passthrough
    else:  # LRP-0, or ε carried by the folded BatchNormalization or the activation layer after it
        pre, after = None, _passthrough
    if activation in _GRADIENT_PASSES:  # nothing to split off
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
            if _name(activation) in _GRADIENT_PASSES and after is not _to_relevance:  # linear where a softmax is stripped for logits
                return z
            return activation_pass(activation)(z)

        return call

    return make


def _folded_norm_hook(chain: _Chain, epsilon: float):
    """Hook for a BatchNormalization folded into the linear layer before it (None: plain gradient)."""
    if chain.rule in _WEIGHTED:
        return elementwise_backward(_to_relevance if chain.end is None else _identity)
    if chain.rule == "epsilon" and not chain.clips:
        return _epsilon_at_output(_epsilon_factor(epsilon))
    return None


def _chain_end_hook(layer: keras.layers.Layer, chain: _Chain, epsilon: float):
    """Hook for the activation layer ending a linear layer's chain."""
    if chain.rule in _WEIGHTED:
        return elementwise_backward(_to_relevance)
    if chain.rule == "epsilon" and chain.clips:
        return elementwise_backward(_epsilon_passthrough(epsilon))
    return None if _gradient_passes(layer) else elementwise_backward(_passthrough)
