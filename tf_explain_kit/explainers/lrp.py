"""Layer-wise Relevance Propagation (Bach et al., 2015; Montavon et al., 2019).

Implemented as *modified gradient × input* on the model's own forward pass: the model is
probed once, its layers sorted into kinds (:mod:`.propagation.kinds`, shared with
DeepLIFT), the canonizers (:mod:`.propagation.canonizers`) fold batch norms and find the
layers reading the pixels, a composite (:mod:`.propagation.composites`) gives every
linear layer a rule (:mod:`.propagation.lrp_rules`), and the rules build the backward
hooks. The other layers pass relevance as LRP prescribes for them:

- max pooling: winner-take-all; average pooling, ``Add``, ``Concatenate`` and every other
  linear layer without weights: in proportion to the contributions (their plain gradient);
- elementwise activations, softmax inside the network, and LayerNormalization (an
  identity in the backward pass, as Ali et al., 2022): relevance passes unchanged;
- products of two varying tensors (squeeze-and-excitation): the gate (a sigmoid or
  softmax output, or the broadcast factor) is held constant and the signal takes all of
  the relevance; without a recognisable gate the two factors share it equally;
- MultiHeadAttention: attention weights held constant (relevance flows through the
  values); LSTM/GRU: gates held constant, the signal takes all (Arras et al., 2017);
- a custom layer is entered when what it computes itself is linear, and a layer LRP
  cannot propagate through is refused with its name (``layer_rules`` can give it one).

One compiled gradient function per model and rule set; LRP-ε and z^B cost about one
forward and one backward pass (γ, z⁺ and αβ add one pass of the modified layer per
linear layer).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import keras
import numpy as np
from keras import ops

from ..model import GradientPass, Inputs, flat_inputs, map_inputs
from ..structure import all_layers
from ..tf_backend import elementwise_backward, scale_gradient
from .base import OnePassExplainer
from .registry import NUMERIC, TEXT, register
from .deeplift import example_input
from .propagation.attention import attention_step
from .propagation.canonizers import DEFAULT_CANONIZERS, Canonizer, Structure, canonize, is_elementwise_affine
from .propagation.composites import Composite, presets, rule_named
from .propagation.graph import Graph, probe
from .propagation.kinds import Kind, has_activation, sorted_ops, unsupported
from .propagation.lrp_rules import KERNEL_LAYERS, SEPARABLE, Epsilon, Pass, Rule, Zero, ZBox, gradient_passes, passthrough, passthrough_of, split_hook
from .propagation.recurrent import rnn_call

RULES = tuple(presets(1e-6, 0.25))  # the preset names
_GATES = ("sigmoid", "hard_sigmoid", "softmax")
_PADDING = (keras.layers.ZeroPadding1D, keras.layers.ZeroPadding2D, keras.layers.ZeroPadding3D)


@register(kinds=NUMERIC + TEXT, defaults=lambda s: {"rule": "composite" if s.kind == "image" else "epsilon"})
class LRP(OnePassExplainer):
    """Layer-wise Relevance Propagation: pixel-level relevance that sums to the explained score.

    Args:
        model: a Keras 3 model (nested models, custom layers made of supported layers,
            preprocessing and augmentation layers, attention and recurrent layers included).
        rule: a preset name, a :class:`~.propagation.lrp_rules.Rule` for every linear layer,
            or a :class:`~.propagation.composites.Composite`. Presets: ``"zero"`` (LRP-0),
            ``"epsilon"`` (LRP-ε), ``"gamma"`` (LRP-γ: weights ``w + γ·w⁺``), ``"zplus"``
            (z⁺: positive contributions only), ``"alpha_beta"`` (α2β1), ``"composite"``
            (recommended for image models: z^B for the layers reading the pixels, ε for
            dense layers, γ for the other convolutions whose input is >= 0 and whose output
            goes through a ReLU, ε for the rest), ``"epsilon_gamma_box"`` (zennit's
            EpsilonGammaBox: z^B, γ on every convolution, ε on dense layers),
            ``"epsilon_plus"`` and ``"epsilon_alpha2_beta1"`` (ε on dense layers, z⁺ or
            α2β1 on convolutions).
        epsilon: stabiliser added to every denominator (with the denominator's sign).
        gamma: the γ of LRP-γ in the presets.
        layer_rules: ``{layer name or layer type: rule}`` overriding the composite, a rule
            name (``"zero"``, ``"epsilon"``, ``"gamma"``, ``"zplus"``, ``"alpha_beta"``,
            ``"zbox"`` for a layer reading the pixels, ``"pass"`` for a layer without weights
            whose relevance should pass unchanged) or a rule object.
        input_bounds: ``(low, high)``, the box ``low <= x <= high`` of z^B, in the model's
            input space (``(0, 255)`` for a model that rescales raw pixels itself): numbers,
            or arrays broadcasting to one sample (per channel, say). ``None`` (default): each
            sample's own minimum and maximum at the layer reading the pixels, a valid box
            for any input scaling that does not depend on which samples share a batch.
        canonizers: what prepares the model for the rules (default: fold batch norms into
            the layer before them, find the pixels through preprocessing layers); ``()``
            treats every batch norm as an affine layer of its own.

    Models with integer or string inputs (token ids, raw text) are explained at their
    token Embedding layer: attributions are then ``(N, T)``, one relevance per token.
    ``extras["relevance"]`` is the relevance conserved at the input and
    ``extras["conservation"]`` its ratio to the explained score (1 when nothing is absorbed
    by biases and stabilisers). A layer without a rule is refused when the explainer is
    built (when the model's input shapes are known; else at the first call).
    """

    method = "lrp"

    def __init__(
        self,
        model: keras.Model,
        rule: str | Rule | Composite = "epsilon",
        epsilon: float = 1e-6,
        gamma: float = 0.25,
        layer_rules: Mapping[Any, str | Rule] | None = None,
        input_bounds: tuple[Any, Any] | None = None,
        canonizers: Sequence[Canonizer] = DEFAULT_CANONIZERS,
        **options: Any,
    ):
        super().__init__(model, **options)
        for name, value in (("epsilon", epsilon), ("gamma", gamma)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name}: expected a number >= 0, got {value!r}.")
        self.rule, self.epsilon, self.gamma = rule, float(epsilon), float(gamma)
        self.composite = _composite(rule, self.epsilon, self.gamma)
        self.layer_rules = {key: value if isinstance(value, Rule) else rule_named(value, self.epsilon, self.gamma) for key, value in (layer_rules or {}).items()}
        for key in self.layer_rules:
            if isinstance(key, str):
                _layer_named(model, key)
            elif not isinstance(key, type):
                raise TypeError(f"layer_rules: expected layer names or layer types as keys, got {key!r}.")
        self.input_bounds = _checked_bounds(input_bounds)
        self.canonizers = tuple(canonizers)
        self.sites: dict = {}  # layer -> Site, once built
        self._hooks: tuple | None = None
        self._key: tuple = ()  # names the compiled function of these rules
        self._relevance_at_input = False  # z^B hands the input its relevance, not a gradient
        self._embedding: Any = None
        example = example_input(model)
        if example is not None:
            self._build(self.adapter.prepare(example, name="model"))

    def __repr__(self) -> str:
        return f"LRP(model={self.model.name!r}, rule={getattr(self.composite, 'name', self.rule)!r})"

    @property
    def rules(self) -> dict[str, Rule]:
        """``{layer name: rule}`` of the linear layers (once the model has been probed)."""
        return {layer.name: site.rule for layer, site in self.sites.items()}

    # -- hooks (built once, from a probe of the model) --------------------------------------------
    def _build(self, x: Inputs) -> tuple:
        if self._hooks is not None:
            return self._hooks
        graph = probe(self.adapter, x)
        structure = canonize(graph, self.canonizers)
        for layer, site in structure.sites.items():
            site.rule = self._given_rule(layer) or self.composite.rule(site) or Zero()
            if isinstance(layer, SEPARABLE) and not isinstance(site.rule, (Zero, Epsilon)):
                raise ValueError(
                    f"rule: '{layer.name}' is a {type(layer).__name__} (two kernels), which only the zero and epsilon rules apply to; it got {site.rule.name!r}. "
                    f"Give it one with layer_rules={{{layer.name!r}: 'epsilon'}}."
                )
        self._check_bounded(structure)
        steps = LRPSteps(Zero() if self.composite.name == "zero" else Epsilon(self.epsilon))
        by_bn = {id(s.bn): s for s in structure.sites.values() if s.bn is not None}
        by_end = {id(s.end): s for s in structure.sites.values() if s.end is not None}
        hooks = []
        for op, sort in sorted_ops(self.model, graph):
            hook = self._hook(op, sort.kind, sort.reason, structure, by_bn, by_end, steps)
            if hook is not None:
                hooks.append(hook if isinstance(hook, tuple) else (op, hook))
        self.sites = structure.sites
        self._embedding = _token_embedding(graph)
        self._hooks = tuple(hooks)
        self._key = ("lrp", self._bounds_key(), tuple(sorted((layer.name, site.rule.key()) for layer, site in structure.sites.items())), tuple(c.__class__.__name__ for c in self.canonizers))
        return self._hooks

    def _given_rule(self, layer: Any) -> Rule | None:
        if layer.name in self.layer_rules:
            return self.layer_rules[layer.name]
        return next((rule for key, rule in self.layer_rules.items() if isinstance(key, type) and isinstance(layer, key)), None)

    def _hook(self, op: Any, kind: Kind, reason: str, structure: Structure, by_bn: dict, by_end: dict, steps: "LRPSteps") -> Any:
        site = structure.sites.get(op)
        if site is not None:
            return site.rule.linear_hook(site)
        if id(op) in by_bn:
            return by_bn[id(op)].rule.norm_hook(by_bn[id(op)])
        if id(op) in by_end:
            return by_end[id(op)].rule.end_hook(by_end[id(op)])
        if kind is Kind.UNSUPPORTED:
            given = self._given_rule(op) if isinstance(op, keras.layers.Layer) else None
            if isinstance(given, Pass):
                return given.linear_hook(structure.sites.get(op))
            hint = f" Give it a rule: layer_rules={{{getattr(op, 'name', '')!r}: 'pass'}} if its relevance should pass unchanged (an elementwise layer)."
            raise unsupported(op, reason, "LRP", hint)
        if kind is Kind.LINEAR or (kind is Kind.PLAIN and has_activation(op)):  # SeparableConv, ConvTranspose: LRP-0, activation passes
            return split_hook(op, None, passthrough)
        if kind is Kind.PLAIN:
            on_pixel_path = self._relevance_at_input and any(op is layer for layer in structure.pixel_path)
            return elementwise_backward(_relevance_unchanged) if on_pixel_path and is_elementwise_affine(op) else None
        if kind is Kind.ELEMENTWISE:
            return None if gradient_passes(op) else elementwise_backward(passthrough)
        if kind in (Kind.SOFTMAX, Kind.NORMALIZATION):
            return elementwise_backward(passthrough)
        if kind is Kind.PRODUCT:
            return _product_hook(op, structure.graph)
        if kind is Kind.ATTENTION:
            return (op, lambda original, op=op: attention_step(op, steps), "_compute_attention")
        if kind is Kind.RECURRENT:
            return (op, lambda original, op=op: rnn_call(op, steps))
        return None  # max pooling (winner-take-all), containers

    def _check_bounded(self, structure: Structure) -> None:
        """z^B goes to the layers reading the pixels, all of them or none; give them their box."""
        readers = structure.pixel_paths
        bounded = {layer for layer, site in structure.sites.items() if isinstance(site.rule, ZBox)}
        pixels = ", ".join(repr(layer.name) for layer in readers) or "none"
        for layer in bounded - set(readers):
            raise ValueError(
                f"layer_rules: '{layer.name}' does not read the input pixels, so it cannot take 'zbox'. z^B applies to the linear layers reading the "
                f"model's single float input (directly or through reshaping, preprocessing and inactive layers) when nothing else reads it; here: {pixels}."
            )
        if bounded and bounded != set(readers):
            raise ValueError(f"layer_rules: give 'zbox' to every layer reading the input pixels ({pixels}) or to none of them.")
        self._relevance_at_input = bool(bounded)
        for layer in bounded:
            structure.sites[layer].bounds = self._bounds(readers[layer], structure.input_shape())

    def _bounds(self, path: tuple, input_shape: tuple) -> Callable[[Any], tuple[Any, Any]]:
        """The z^B box at a layer's input ``a``, which is the model input after the ``path`` layers."""
        if self.input_bounds is None:
            layout = [layer for layer in path if not is_elementwise_affine(layer)]
            if not any(isinstance(layer, _PADDING) for layer in layout):
                return lambda a: tuple(f(a, axis=tuple(range(1, len(a.shape))), keepdims=True) for f in (ops.min, ops.max))
            inside = np.ones((1, *input_shape), np.float32)  # 1 at the pixels, 0 where padding added zeros
            for layer in layout:
                inside = ops.convert_to_numpy(layer(inside, training=False))
            return lambda a: _box_inside(a, inside > 0.5)
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
        hooks = self._build(x)
        if all(a.dtype.kind == "f" for a in flat_inputs(x)):
            if self._relevance_at_input and self.input_bounds is not None:
                self._check_within_bounds(flat_inputs(x)[0])
            result = self.adapter.gradients(x, weights, hooks, self._key)
            attributions = result.grads if self._relevance_at_input else map_inputs(np.multiply, result.grads, x)
        else:
            if self._embedding is None:
                raise TypeError(
                    f"inputs: LRP got integer or string inputs, which it explains at the model's token Embedding layer, but model "
                    f"'{self.model.name}' has no Embedding reading them. Pass float inputs, or explain a model with one embedding."
                )
            result = self.adapter.layer_gradients(x, weights, self._embedding, hooks, self._key)
            attributions = (result.activations * result.grads).sum(axis=-1)
        score = result.score
        arrays = flat_inputs(attributions)
        relevance = sum(a.reshape(len(a), -1).sum(axis=1) for a in arrays)
        conservation = relevance / np.where(score != 0, score, np.nan)
        return attributions, {"relevance": relevance, "conservation": conservation}, result


class LRPSteps:
    """:class:`~.propagation.steps.Steps` for LRP inside recurrent cells and attention:
    ``rule`` (ε; LRP-0 for the ``"zero"`` preset) at linear sums, relevance passing
    unchanged through elementwise steps, gates held constant."""

    def __init__(self, rule: Rule):
        self.rule = rule

    def linear(self, z: Any) -> Any:
        return self.rule.factor(z) if isinstance(self.rule, Epsilon) else z

    def elementwise(self, a: Any, f: Callable[[Any], Any]) -> Any:
        return passthrough_of(a, f)

    def product(self, a: Any, b: Any, fn: Callable[[Any, Any], Any] = ops.multiply, gate: int | None = None) -> Any:
        if gate == 0:
            return fn(ops.stop_gradient(a), b)
        if gate == 1:
            return fn(a, ops.stop_gradient(b))
        return fn(_half(a), _half(b))

    def softmax(self, a: Any, axis: int = -1) -> Any:
        return passthrough_of(a, lambda t: ops.softmax(t, axis=axis))


def _half(t: Any) -> Any:
    """``t`` with half its gradient: the two factors of a product share its relevance."""
    return scale_gradient(t, lambda _: 0.5)


def _box_inside(a: Any, inside: np.ndarray) -> tuple[Any, Any]:
    """Each sample's own range over the pixels, and the box [0, 0] where padding added zeros
    (they are not pixels: they get no relevance)."""
    axes = tuple(range(1, len(a.shape)))
    low = ops.min(ops.where(inside, a, np.inf), axis=axes, keepdims=True)
    high = ops.max(ops.where(inside, a, -np.inf), axis=axes, keepdims=True)
    return ops.where(inside, low, 0.0), ops.where(inside, high, 0.0)


def _relevance_unchanged(a: Any, y: Any, upstream: Any) -> Any:
    """A preprocessing layer on the pixel path under z^B: the relevance itself flows back."""
    return upstream


def _product_hook(op: Any, graph: Graph) -> Callable[[Callable], Callable]:
    """``Multiply`` (or a raw ``a * b``): the gate is held constant and the signal takes all;
    without a gate, every factor takes an equal share."""
    calls = graph.calls_of(op)
    gate = _gate(calls[0], graph) if calls else None

    def combine(factors: list) -> Any:
        if gate is not None:
            factors = [ops.stop_gradient(f) if i == gate else f for i, f in enumerate(factors)]
        else:
            factors = [scale_gradient(f, lambda _, k=len(factors): 1.0 / k) for f in factors]
        out = factors[0]
        for factor in factors[1:]:
            out = out * factor
        return out

    def make(original):
        if isinstance(op, keras.layers.Layer):
            return lambda inputs, *args, **kwargs: combine(list(inputs))
        return lambda a, b, *args, **kwargs: combine([a, b])

    return make


def _gate(call: Any, graph: Graph) -> int | None:
    """Which factor of a product is the gate: the output of a sigmoid-like activation or a
    softmax (through reshaping and scaling), else the one broadcast over the other."""
    factors = list(call.args[0]) if isinstance(call.args[0], (list, tuple)) else list(call.args[:2])
    for i, factor in enumerate(factors):
        tensor = factor
        for _ in range(4):  # e.g. Conv2D(activation="sigmoid") -> Reshape, or relu6(x + 3) / 6
            producer = graph.producer.get(id(tensor))
            if producer is None:
                break
            layer = producer.layer
            name = getattr(getattr(layer, "activation", None), "__name__", "")
            if name in _GATES or isinstance(layer, keras.layers.Softmax) or (isinstance(layer, keras.layers.ReLU) and layer.max_value is not None):
                return i
            tensor = producer.inputs[0] if producer.inputs else None
            if tensor is None:
                break
    sizes = [int(np.prod(f.shape[1:])) for f in factors]
    if len(factors) == 2 and sizes[0] != sizes[1]:
        return int(np.argmin(sizes))
    return None


def _token_embedding(graph: Graph) -> Any:
    """The Embedding layer reading the model's token ids (directly or after lookup layers)."""
    found = [c.layer for c in graph.calls if isinstance(c.layer, keras.layers.Embedding) and c.inputs and id(c.inputs[0]) in graph.dependent]
    return found[0] if len(set(map(id, found))) == 1 else None


def _composite(rule: Any, epsilon: float, gamma: float) -> Composite:
    if isinstance(rule, Composite):
        return rule
    if isinstance(rule, Rule):
        return Composite([(KERNEL_LAYERS + SEPARABLE, rule)], name=rule.name)
    if isinstance(rule, str):
        found = presets(epsilon, gamma)
        if rule not in found:
            raise ValueError(f"rule: expected one of {tuple(found)}, a Rule or a Composite, got {rule!r}.")
        return found[rule]
    raise TypeError(f"rule: expected a preset name, a Rule or a Composite, got {type(rule).__name__}.")


def _layer_named(model: keras.Model, name: str) -> Any:
    for layer in all_layers(model):
        if layer.name == name:
            return layer
    candidates = ", ".join(repr(layer.name) for layer in list(all_layers(model))[-12:])
    raise ValueError(f"layer_rules: no layer {name!r} in model '{model.name}'. Candidates: {candidates}.")


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
