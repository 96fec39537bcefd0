"""Method names → explainers built with sensible defaults for a model and its data.

Used by the callback's shorthand (``explainers=["integrated_gradients", "gradcam"]``)
and the command line. ``"lime"`` and ``"shap"`` pick the variant that suits the data.
"""

from __future__ import annotations

from typing import Any, Callable

import keras

from ..model import Inputs, embedding_layers, path_of, take
from .base import Explainer
from .cam import GradCAM, GradCAMPlusPlus
from .deeplift import DeepLift
from .gradients import GradientInput, Saliency
from .integrated_gradients import IntegratedGradients
from .lime import LimeImage, LimeTabular, LimeText
from .lrp import LRP
from .noise import SmoothGrad, VarGrad
from .occlusion import Occlusion
from .shap import DeepShap, GradientShap, KernelShap, PartitionShap

BACKGROUND = 50  # reference samples taken from the data for SHAP


def _embedding(model: keras.Model, kind: str) -> dict:
    """Token-id models are explained at their (first) embedding layer."""
    if kind != "text":
        return {}
    embeddings = embedding_layers(model)
    return {"layer": path_of(model, embeddings[0])} if embeddings else {}


def _background(data: Inputs) -> Inputs:
    return take(data, slice(0, BACKGROUND))


_NONE: Callable[[keras.Model, Inputs, str], dict] = lambda model, data, kind: {}  # noqa: E731
# method name → (class, default constructor options derived from the model, data and kind)
_METHODS: dict[str, tuple[type[Explainer], Callable[[keras.Model, Inputs, str], dict]]] = {
    "saliency": (Saliency, _NONE),
    "gradient_input": (GradientInput, _NONE),
    "smoothgrad": (SmoothGrad, _NONE),
    "vargrad": (VarGrad, _NONE),
    "integrated_gradients": (IntegratedGradients, lambda m, d, k: _embedding(m, k)),
    "gradcam": (GradCAM, _NONE),
    "gradcam_plus_plus": (GradCAMPlusPlus, _NONE),
    "occlusion": (Occlusion, _NONE),
    "lrp": (LRP, lambda m, d, k: {"rule": "composite" if k == "image" else "epsilon"}),
    "deeplift": (DeepLift, _NONE),
    "lime_image": (LimeImage, _NONE),
    "lime_tabular": (LimeTabular, lambda m, d, k: {"training_data": d}),
    "lime_text": (LimeText, _NONE),
    "gradient_shap": (GradientShap, lambda m, d, k: {"background": _background(d)}),
    "deep_shap": (DeepShap, lambda m, d, k: {"background": _background(d)}),
    "kernel_shap": (KernelShap, lambda m, d, k: {"background": _background(d)}),
    "partition_shap": (PartitionShap, _NONE),
}
_BY_KIND = {
    "lime": {"image": "lime_image", "tabular": "lime_tabular", "text": "lime_text"},
    "shap": {"image": "gradient_shap", "tabular": "kernel_shap", "text": "partition_shap"},
}
METHODS = tuple(_METHODS) + tuple(_BY_KIND)


def build(name: str, model: keras.Model, data: Inputs, kind: str, **options: Any) -> Explainer:
    """The explainer called ``name`` for ``model``; ``data`` supplies backgrounds (SHAP) and
    training statistics (LIME tabular); ``kind`` is ``"image"``, ``"tabular"`` or ``"text"``;
    ``options`` go to the explainer's constructor."""
    name = _BY_KIND.get(name, {}).get(kind, name)
    if name not in _METHODS:
        raise ValueError(f"explainers: unknown method {name!r}; choose from {', '.join(METHODS)}, or pass an explainer instance.")
    cls, defaults = _METHODS[name]
    return cls(model, **{**defaults(model, data, kind), **options})


def resolve(item: str | Explainer, model: keras.Model, data: Inputs, kind: str, **options: Any) -> Explainer:
    """An explainer instance as given (checked to belong to ``model``), or built by name."""
    if isinstance(item, Explainer):
        if item.model is not model:
            raise ValueError(f"explainers: {item!r} was built for model '{item.model.name}', not for '{model.name}'; build it for this model.")
        return item
    if not isinstance(item, str):
        raise TypeError(f"explainers: expected explainer instances or method names, got {type(item).__name__}.")
    return build(item, model, data, kind, **options)
