"""Canonizers: the model's layers put in the form LRP's rules apply to, before any rule runs.

The model is not rewritten (its forward pass stays its own); a canonizer changes how LRP
groups its layers into :class:`~.lrp_rules.Site` s:

- :class:`MergeBatchNorm` folds a BatchNormalization that alone reads a linear layer's
  output into that layer (the rule then sees the folded kernel and bias, as zennit's
  ``MergeBatchNorm``);
- :class:`MergeInputPreprocessing` lets the layers reading the pixels be found through the
  model's own preprocessing: ``Rescaling`` and ``Normalization`` (folded into the next
  linear layer: z^B's box follows the pixels through them and the pixels' relevance comes
  back unchanged), zero padding, and layers that do nothing at inference (augmentation
  such as ``RandomFlip``, ``Dropout``), which are dropped.

Without them, a BatchNormalization is an affine layer of its own (LRP-0) and preprocessing
layers hide the pixels from z^B (the composite presets then give ε to the first layer).
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, Protocol

import keras
import numpy as np
from keras import layers as L

from .graph import Graph
from .lrp_rules import CLIPPING, KERNEL_LAYERS, SEPARABLE, Site, activation_name, channel_axis, clips_at_zero

_REARRANGING = (L.Flatten, L.Reshape, L.Permute, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D, L.SpatialDropout3D, L.GaussianNoise, L.GaussianDropout, L.AlphaDropout)
_PREPROCESSING = (L.Rescaling, L.Normalization, L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D)
_ELEMENTWISE_AFFINE = (L.Rescaling, L.Normalization)  # their relevance passes unchanged on the pixel path
_ACTIVATIONS = (L.ReLU, L.LeakyReLU, L.ELU, L.PReLU, L.Activation)
_KEEPS_SIGN = _REARRANGING + (
    L.ZeroPadding1D, L.ZeroPadding2D, L.ZeroPadding3D, L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.GlobalMaxPooling1D,
    L.GlobalMaxPooling2D, L.GlobalMaxPooling3D, L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D, L.GlobalAveragePooling1D,
    L.GlobalAveragePooling2D, L.GlobalAveragePooling3D, L.Add, L.Concatenate, L.Cropping1D, L.Cropping2D, L.UpSampling1D, L.UpSampling2D,
)  # fmt: skip


class Structure:
    """The probed model as the canonizers see it: a :class:`Site` per linear layer with
    weights, and the path from the model's input to the layers reading the pixels."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.sites: dict[Any, Site] = {}
        for call in graph.calls:
            if isinstance(call.layer, KERNEL_LAYERS + SEPARABLE) and call.layer not in self.sites:
                self.sites[call.layer] = Site(call.layer)
        self.times_called = collections.Counter(id(c.layer) for c in graph.calls)
        self.pixel_path: list = []  # layers between the input and the layers reading the pixels
        self.pixel_paths: dict[Any, tuple] = {}  # pixel layer -> the layers its input went through
        self.through: tuple = _REARRANGING  # the layer types the pixel path may go through
        self.drop_inactive = False  # ... and layers that return their input at inference
        self._nonnegative = _nonnegative_tensors(graph)
        for layer, site in self.sites.items():
            calls = graph.calls_of(layer)
            site.nonnegative_input = bool(calls) and all(id(c.inputs[0]) in self._nonnegative for c in calls)

    def sole_reader(self, tensor: Any, kinds: tuple) -> Any:
        """The call reading ``tensor`` if it is the only one, of a layer of ``kinds`` called once."""
        found = self.graph.readers[id(tensor)]
        ok = len(found) == 1 and isinstance(found[0].layer, kinds) and self.times_called[id(found[0].layer)] == 1
        return found[0] if ok else None

    def finish(self) -> None:
        """Each site's chain end (the activation layer after it and its batch norm) and
        whether its output is clipped at 0; the layers reading the pixels."""
        for layer, site in self.sites.items():
            calls = self.graph.calls_of(layer)
            site.end = None
            if len(calls) == 1 and activation_name(layer) == "linear":
                output = calls[0].output
                if site.bn is not None:
                    output = self.graph.calls_of(site.bn)[0].output
                activation = self.sole_reader(output, _ACTIVATIONS)
                site.end = activation.layer if activation is not None else None
            site.clips = activation_name(layer) in CLIPPING or (site.end is not None and clips_at_zero(site.end))
        self.pixel_paths = _pixel_layers(self)
        for layer, path in self.pixel_paths.items():
            self.sites[layer].reads_pixels = True
        self.pixel_path = list({id(l): l for path in self.pixel_paths.values() for l in path}.values())

    def input_shape(self) -> tuple | None:
        inputs = [t for t in self.graph.inputs if t.dtype.is_floating]
        return tuple(inputs[0].shape[1:]) if len(inputs) == 1 else None


class Canonizer(Protocol):
    def apply(self, structure: Structure) -> None: ...


class MergeBatchNorm:
    """Fold a BatchNormalization into the linear layer before it, when it alone reads the
    layer's (linear-activation) output along the layer's channel axis."""

    def apply(self, structure: Structure) -> None:
        for layer, site in structure.sites.items():
            calls = structure.graph.calls_of(layer)
            if len(calls) != 1 or activation_name(layer) != "linear":
                continue
            norm = structure.sole_reader(calls[0].output, (L.BatchNormalization,))
            if norm is not None:
                ndim = len(norm.output.shape)
                if norm.layer.axis % ndim == channel_axis(layer) % ndim:
                    site.bn = norm.layer


class MergeInputPreprocessing:
    """Find the layers reading the pixels through Rescaling, Normalization, zero padding and
    layers that do nothing at inference (see the module docstring)."""

    def apply(self, structure: Structure) -> None:
        structure.through = _REARRANGING + _PREPROCESSING
        structure.drop_inactive = True


DEFAULT_CANONIZERS: tuple = (MergeBatchNorm(), MergeInputPreprocessing())


def is_elementwise_affine(layer: Any) -> bool:
    return isinstance(layer, _ELEMENTWISE_AFFINE)


def canonize(graph: Graph, canonizers: Iterable[Canonizer]) -> Structure:
    structure = Structure(graph)
    for canonizer in canonizers:
        canonizer.apply(structure)
    structure.finish()
    return structure


def _returns_its_input(call: Any) -> bool:
    """A layer whose output is its input at inference (augmentation, noise, dropout)."""
    inputs = [t for t in keras.tree.flatten(call.args) if hasattr(t, "shape")]
    output = call.output
    if len(inputs) != 1 or not hasattr(output, "shape") or tuple(output.shape) != tuple(inputs[0].shape):
        return False
    return output is inputs[0] or bool(np.array_equal(keras.ops.convert_to_numpy(output), keras.ops.convert_to_numpy(inputs[0])))


def _pixel_layers(structure: Structure) -> dict[Any, tuple]:
    """The linear layers reading the model's single float input, each with the layers on its
    way there; none when anything else reads it."""
    graph = structure.graph
    roots = [t for t in graph.inputs if t.dtype.is_floating]
    if len(roots) != 1 or len(graph.inputs) != 1:
        return {}
    found, frontier = {}, [(roots[0], ())]
    while frontier:
        tensor, path = frontier.pop()
        for call in graph.readers[id(tensor)]:
            if getattr(call.layer, "layers", None) or call.output is tensor:  # a nested model (its layers' calls are listed too), or an identity
                continue
            if isinstance(call.layer, structure.through) or (structure.drop_inactive and _returns_its_input(call)):
                frontier.append((call.output, path + (call.layer,)))
            elif isinstance(call.layer, KERNEL_LAYERS) and not isinstance(call.layer, L.EinsumDense) and call.inputs[0] is tensor:
                found[call.layer] = path
            else:
                return {}
    return found


def _nonnegative_tensors(graph: Graph) -> set[int]:
    """Ids of the tensors that are >= 0 by construction: ReLU outputs, and what pooling,
    padding, reshaping, Add and Concatenate make of them."""
    found: set[int] = set()
    for call in graph.calls:
        layer = call.layer
        kept = isinstance(layer, _KEEPS_SIGN) and call.inputs and all(id(t) in found for t in call.inputs)
        if kept or clips_at_zero(layer) or (isinstance(layer, KERNEL_LAYERS + SEPARABLE) and activation_name(layer) in CLIPPING):
            found.add(id(call.output))
    return found
