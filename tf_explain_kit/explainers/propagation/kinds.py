"""What each layer of a model is, as propagation rules see it.

Every layer or operation the model calls gets one :class:`Kind`. Known Keras layers are
sorted by class; anything else (custom layers, ``Lambda``, raw operations such as
``x + 3`` in a Functional model) by the TensorFlow ops its call creates
(:func:`tf_backend.classify_call`): linear ops only, one elementwise function, or one
product of two varying tensors. A custom layer holding other layers is entered (its
sublayers get their own kinds) when the ops it runs itself are linear.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import keras

from ... import structure
from ...tf_backend import classify_call
from .graph import Graph

L = keras.layers


class Kind(enum.Enum):
    PLAIN = "plain"  # linear without a rule of its own (reshaping, sums, pooling, batch norm...): its gradient is exact for both methods
    LINEAR = "linear"  # a weight layer the LRP rules apply to (Dense, convolutions, EinsumDense), maybe with an activation
    ELEMENTWISE = "elementwise"  # an elementwise non-linearity
    SOFTMAX = "softmax"
    MAXPOOL = "maxpool"
    PRODUCT = "product"  # a product of two (or more) varying tensors
    NORMALIZATION = "normalization"  # LayerNormalization, RMSNormalization
    ATTENTION = "attention"  # MultiHeadAttention
    RECURRENT = "recurrent"  # LSTM, GRU, SimpleRNN
    CONTAINER = "container"  # a model or a custom layer whose sublayers do the work
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class Sort:
    """A layer's kind, and for UNSUPPORTED the reason (what its call computes)."""

    kind: Kind
    reason: str = ""


RULE_LAYERS = (L.Dense, L.EinsumDense, L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv1D, L.DepthwiseConv2D, L.SeparableConv1D, L.SeparableConv2D)
_PLAIN = (
    L.InputLayer, L.BatchNormalization, L.Flatten, L.Reshape, L.Permute, L.RepeatVector, L.Dropout, L.SpatialDropout1D,
    L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout, L.ActivityRegularization,
    L.Add, L.Subtract, L.Average, L.Concatenate, L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, L.ZeroPadding1D, L.ZeroPadding2D,
    L.ZeroPadding3D, L.Cropping1D, L.Cropping2D, L.Cropping3D, L.UpSampling1D, L.UpSampling2D, L.UpSampling3D,
    L.Rescaling, L.Normalization, L.Identity, L.Embedding, L.Masking, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose,
)  # fmt: skip
_ELEMENTWISE = (L.ReLU, L.LeakyReLU, L.ELU, L.PReLU)
_MAXPOOL = (L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D)
_RECURRENT = {L.LSTM: L.LSTMCell, L.GRU: L.GRUCell, L.SimpleRNN: L.SimpleRNNCell}
# Keras activations that act elementwise (anything else is classified by its ops).
ELEMENTWISE_ACTIVATIONS = {
    "relu", "relu6", "leaky_relu", "elu", "selu", "gelu", "silu", "swish", "hard_silu", "hard_swish", "sigmoid", "hard_sigmoid",
    "tanh", "hard_tanh", "softplus", "softsign", "mish", "exponential", "log_sigmoid", "celu", "squareplus", "tanh_shrink",
    "soft_shrink", "hard_shrink", "sparse_plus", "linear",
}  # fmt: skip


def activation_name(layer: Any) -> str:
    return getattr(getattr(layer, "activation", None), "__name__", "")


def has_activation(layer: Any) -> bool:
    """A weight layer with an activation other than linear (split off by the hooks)."""
    return activation_name(layer) not in ("", "linear") and getattr(layer, "activation", None) is not None


def sort(op: Any, graph: Graph) -> Sort:
    """The kind of ``op`` (a layer or an operation) in the probed ``graph``."""
    calls = graph.calls_of(op)
    if isinstance(op, keras.Model):
        return _container(op, graph, check=not _is_graph_model(op))
    if isinstance(op, RULE_LAYERS) or (isinstance(op, _PLAIN) and has_activation(op)):
        return Sort(Kind.LINEAR)
    if isinstance(op, L.Multiply):  # its rules reduce to the plain gradient where a factor is constant
        return Sort(Kind.PRODUCT)
    if isinstance(op, _PLAIN):
        return Sort(Kind.PLAIN)
    if isinstance(op, _ELEMENTWISE):
        return Sort(Kind.ELEMENTWISE)
    if isinstance(op, L.Softmax):
        return Sort(Kind.SOFTMAX)
    if isinstance(op, L.Activation) and activation_name(op) in ELEMENTWISE_ACTIVATIONS:
        return Sort(Kind.ELEMENTWISE)
    if isinstance(op, L.Activation) and activation_name(op) == "softmax":
        return Sort(Kind.SOFTMAX)
    if isinstance(op, _MAXPOOL):
        return Sort(Kind.MAXPOOL)
    if isinstance(op, (L.LayerNormalization, L.RMSNormalization)):
        return Sort(Kind.NORMALIZATION)
    if isinstance(op, L.MultiHeadAttention):
        return _attention(op)
    if type(op) in _RECURRENT:
        return _recurrent(op)
    if isinstance(op, keras.layers.Layer) and structure.sublayers(op) and not isinstance(op, L.Activation):
        return _container(op, graph, check=True)
    return _by_ops(op, calls, graph)


def _is_graph_model(model: keras.Model) -> bool:
    """Sequential and Functional models are graphs of their layers and operations: they run
    nothing of their own (a subclassed model's ``call`` may)."""
    return isinstance(model, keras.Sequential) or hasattr(model, "operations")


def _container(op: Any, graph: Graph, check: bool) -> Sort:
    """A layer whose sublayers do the work: fine when what it computes itself is linear."""
    if not check:
        return Sort(Kind.CONTAINER)
    inner = structure.sublayers(op)
    for call in graph.calls_of(op):
        report = classify_call(_unhooked(op), call.args, call.kwargs, graph.is_varying, inner)
        if report.kind != "linear":
            return Sort(Kind.UNSUPPORTED, f"its call computes {', '.join(report.ops)} on varying tensors outside its sublayers")
    return Sort(Kind.CONTAINER)


def _by_ops(op: Any, calls: list, graph: Graph) -> Sort:
    if not calls:
        return Sort(Kind.PLAIN)  # never called on this input (an unused branch)
    reports = {classify_call(_unhooked(op), c.args, c.kwargs, graph.is_varying, []) for c in calls}
    kinds = {r.kind for r in reports}
    if kinds == {"linear"}:
        return Sort(Kind.PLAIN)
    if kinds == {"elementwise"} and all(len(graph.varying_inputs(c)) == 1 for c in calls):
        return Sort(Kind.ELEMENTWISE)
    if kinds <= {"product", "linear"} and not isinstance(op, keras.layers.Layer) and all(len(c.args) == 2 and len(graph.varying_inputs(c)) == 2 for c in calls):
        return Sort(Kind.PRODUCT)  # a raw operation such as a * b
    ops = sorted({name for r in reports for name in r.ops})
    return Sort(Kind.UNSUPPORTED, f"its call computes {', '.join(ops)}, which is not linear, not one elementwise function and not a product of its two inputs")


def _unhooked(op: Any):
    """``op``'s own call (the probe's hooks are gone by now)."""
    return op.call


def _attention(op: L.MultiHeadAttention) -> Sort:
    if not hasattr(op, "_compute_attention"):
        return Sort(Kind.UNSUPPORTED, "this Keras version's MultiHeadAttention has no _compute_attention step to replace")
    axes = tuple(getattr(op, "_attention_axes", None) or ())
    if axes not in ((), (1,)):
        return Sort(Kind.UNSUPPORTED, f"attention over axes {axes} (only the default sequence axis is supported)")
    if getattr(op, "_use_gate", False):
        return Sort(Kind.UNSUPPORTED, "it is gated (use_gate=True): its output is a product computed outside its sublayers")
    return Sort(Kind.ATTENTION)


def _recurrent(op: Any) -> Sort:
    cell = getattr(op, "cell", None)
    if type(cell) is not _RECURRENT[type(op)]:
        return Sort(Kind.UNSUPPORTED, f"its cell is a {type(cell).__name__}, not the standard {_RECURRENT[type(op)].__name__}")
    if getattr(op, "stateful", False):
        return Sort(Kind.UNSUPPORTED, "it is stateful (its state carries over between calls)")
    return Sort(Kind.RECURRENT)


def unsupported(op: Any, reason: str, method: str, hint: str = "") -> ValueError:
    """The error for a layer ``method`` has no rule for."""
    name = getattr(op, "name", type(op).__name__)
    return ValueError(
        f"model: {method} has no rule for layer '{name}' ({type(op).__name__}): {reason}.{hint} "
        "Use a gradient method instead (IntegratedGradients, or GradientShap for SHAP values), which needs only gradients."
    )


def sorted_ops(model: keras.Model, graph: Graph):
    """Every layer and operation below ``model`` with its :class:`Sort`, depth first; the
    parts of a recurrent layer (its cell) are left out: the layer's rule covers them."""
    stack = list(reversed(structure.children(model)))
    seen: set[int] = {id(model)}
    while stack:
        op = stack.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        found = sort(op, graph)
        yield op, found
        if found.kind is not Kind.RECURRENT:
            stack.extend(reversed(structure.children(op)))
