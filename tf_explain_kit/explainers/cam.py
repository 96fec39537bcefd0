"""Class activation maps: Grad-CAM and Grad-CAM++ at a spatial (2-D) or temporal (1-D) layer."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ..imaging import resize_bilinear, resize_linear
from ..model import GradientPass, Inputs, flat_inputs, image_position, iter_layers
from .base import OnePassExplainer
from .registry import register

_RANKS = (4, 3)  # (N, h, w, channels) images, (N, steps, channels) sequences
_EXPECTED = "not (N, h, w, channels) or (N, steps, channels)"


def _static_rank(layer: keras.layers.Layer) -> int | None:
    """Rank of a layer's output in a built Functional/Sequential graph (None if unknown)."""
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, TypeError):
        return None


def _sequence_length(x: Inputs, calls: list, fallback: int) -> int:
    """The explained sequence's length: a float (N, T, F) series, (N, T) token ids, or the
    tokens an Embedding sees (string models); ``fallback`` if none is found."""
    for array in flat_inputs(x):
        if array.ndim == 3 or (array.ndim == 2 and array.dtype.kind in "iu"):
            return array.shape[1]
    embedded = [c.output_shape for c in calls if isinstance(c.layer, keras.layers.Embedding) and c.output_shape is not None]
    return embedded[0][1] if embedded else fallback


@register(kinds=("image", "sequence", "tokens", "strings"))
class GradCAM(OnePassExplainer):
    """Grad-CAM (Selvaraju et al., 2017): ReLU(Σ_k mean(∂score/∂A_k) · A_k), upsampled.

    ``layer=None`` picks the last layer with a 4-D ``(N, h, w, channels)`` output (nested
    models included) or, when there is none, the last 3-D ``(N, steps, channels)`` one (a
    Conv1D over a time series or over embedded tokens). Attributions are ``(N, H, W)`` at
    the resolution of the model's image input, or ``(N, T)`` over the input's time steps or
    tokens, upsampled linearly from the layer's length (``extras["resolution"]``: the
    layer's size, at which the log format stores the map). Models without such a layer (plain
    MLPs) are refused when the explainer is built.
    """

    method = "gradcam"

    def __init__(self, model: keras.Model, layer: str | keras.layers.Layer | None = None, **options: Any):
        super().__init__(model, **options)
        self.layer = layer
        self._check_static()

    def _check_static(self) -> None:
        """Refuse up front what the model's graph already shows: no 3-D/4-D layer at all, or
        a ``layer`` whose output has another rank (subclassed models are checked when explaining)."""
        leaves = [l for l in iter_layers(self.model) if not getattr(l, "layers", None) and not isinstance(l, keras.layers.InputLayer)]
        ranks = {id(l): _static_rank(l) for l in leaves}
        if any(r is None for r in ranks.values()):
            return
        if self.layer is not None:
            self._resolve_layer([l for l in leaves if ranks[id(l)] in _RANKS], lambda l: ranks.get(id(l)))
        elif not any(r in _RANKS for r in ranks.values()):
            raise self._no_layer_error()

    def _no_layer_error(self) -> ValueError:
        return ValueError(
            f"layer: model '{self.model.name}' has no layer with a 4-D (N, h, w, channels) or 3-D (N, steps, channels) output; "
            f"{type(self).__name__} needs a convolutional (2-D or 1-D) model. Use Saliency, IntegratedGradients or Occlusion instead."
        )

    def _resolve_layer(self, candidates: list, rank_of: Any) -> keras.layers.Layer:
        layer = self.adapter.find_layer(self.layer, candidates=candidates)
        if rank_of(layer) not in _RANKS:
            shape = self.adapter.output_shape(layer) or tuple(layer.output.shape)
            shown = "(N, " + ", ".join(str(d) for d in shape[1:]) + ")"
            raise ValueError(
                f"layer: '{layer.name}' has output shape {shown}, {_EXPECTED}. "
                f"Choose a convolutional layer: {', '.join(repr(s.name) for s in candidates[-8:]) or 'none in this model'}."
            )
        return layer

    def _cam_layer(self) -> keras.layers.Layer:
        calls = [c for c in self.adapter.layer_calls if not getattr(c.layer, "layers", None)]
        ranks = {id(c.layer): len(c.output_shape) for c in calls if c.output_shape is not None}
        if self.layer is not None:
            candidates = [c.layer for c in calls if ranks.get(id(c.layer)) in _RANKS]
            return self._resolve_layer(candidates, lambda l: ranks.get(id(l)))
        for rank in _RANKS:
            found = [c.layer for c in calls if ranks.get(id(c.layer)) == rank]
            if found:
                return found[-1]
        raise self._no_layer_error()

    @staticmethod
    def channel_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        return grads.mean(axis=tuple(range(1, grads.ndim - 1)))

    def attribute_pass(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict, GradientPass]:
        layer = self._cam_layer()
        result = self.adapter.layer_gradients(x, weights, layer)
        activations, grads = result.activations, result.grads
        if getattr(layer, "data_format", "channels_last") == "channels_first":
            activations, grads = np.moveaxis(activations, 1, -1), np.moveaxis(grads, 1, -1)
        alpha = self.channel_weights(activations, grads)
        cam = np.maximum(np.einsum("n...k,nk->n...", activations, alpha), 0)
        facts = {"layer": layer.name, "resolution": list(cam.shape[1:])}  # the log format stores the map at this size
        if cam.ndim == 2:
            length = _sequence_length(x, self.adapter.layer_calls, cam.shape[1])
            return resize_linear(cam, length), facts, result
        height, width = flat_inputs(x)[image_position(x)].shape[1:3]
        return resize_bilinear(cam, height, width), facts, result


@register(kinds=("image", "sequence", "tokens", "strings"))
class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ (Chattopadhay et al., 2018): pixel-weighted positive gradients."""

    method = "gradcam_plus_plus"

    @staticmethod
    def channel_weights(activations: np.ndarray, grads: np.ndarray) -> np.ndarray:
        axes = tuple(range(1, grads.ndim - 1))
        g2, g3 = grads**2, grads**3
        denominator = 2 * g2 + activations.sum(axis=axes, keepdims=True) * g3
        alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=np.abs(denominator) > 1e-12)
        return (alpha * np.maximum(grads, 0)).sum(axis=axes)
