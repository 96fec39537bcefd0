"""tf-explain-kit: explanations for Keras 3 models, logged to TensorBoard while they train.

Names are imported on first use, so ``import tf_explain_kit.logformat`` (as the
TensorBoard plugin does) loads neither TensorFlow nor Keras.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "explainers": [
        "DeepLift", "DeepShap", "Explainer", "GradCAM", "GradCAMPlusPlus", "GradientInput", "GradientShap", "IntegratedGradients",
        "KernelShap", "LimeImage", "LimeTabular", "LimeText", "LRP", "Occlusion", "PartitionShap", "Saliency", "SmoothGrad", "VarGrad",
    ],
    "explanation": ["Explanation"],
    "callbacks": [
        "ExplainCallback", "GradCAMCallback", "IntegratedGradientsCallback", "LimeCallback", "OcclusionCallback", "SaliencyCallback", "ShapCallback",
    ],
    "analysis": ["Run", "load_run", "load_runs"],
    "distributed": ["DatasetResult", "explain_dataset"],
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)

if TYPE_CHECKING:
    from .analysis import Run, load_run, load_runs
    from .callbacks import (
        ExplainCallback,
        GradCAMCallback,
        IntegratedGradientsCallback,
        LimeCallback,
        OcclusionCallback,
        SaliencyCallback,
        ShapCallback,
    )
    from .explainers import (
        LRP,
        DeepLift,
        DeepShap,
        Explainer,
        GradCAM,
        GradCAMPlusPlus,
        GradientInput,
        GradientShap,
        IntegratedGradients,
        KernelShap,
        LimeImage,
        LimeTabular,
        LimeText,
        Occlusion,
        PartitionShap,
        Saliency,
        SmoothGrad,
        VarGrad,
    )
    from .distributed import DatasetResult, explain_dataset
    from .explanation import Explanation


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'tf_explain_kit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
