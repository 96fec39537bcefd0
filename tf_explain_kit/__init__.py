"""tf-explain-kit: explanations for Keras 3 models, logged to TensorBoard while they train.

Names are imported on first use, so ``import tf_explain_kit.logformat`` (as the
TensorBoard plugin does) loads neither TensorFlow nor Keras.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "explainers": ["Explainer"],  # and every registered method's class, see __getattr__
    "explanation": ["Explanation"],
    "callbacks": [
        "ExplainCallback", "GradCAMCallback", "IntegratedGradientsCallback", "LimeCallback", "OcclusionCallback", "SaliencyCallback", "ShapCallback",
    ],
    "analysis": ["Run", "load_run", "load_runs"],
    "distributed": ["DatasetResult", "explain_dataset"],
}  # fmt: skip
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

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
    from .explainers import Explainer
    from .distributed import DatasetResult, explain_dataset
    from .explanation import Explanation


def _explainer_classes() -> dict[str, type]:
    """The registered methods' classes by name (imports the explainers, so TensorFlow)."""
    registry = importlib.import_module(".explainers.registry", __name__)
    return {method.cls.__name__: method.cls for method in registry.METHODS.values()}


def __getattr__(name: str) -> Any:
    if name == "__all__":
        return sorted(set(_MODULE_OF) | set(_explainer_classes()))
    module = _MODULE_OF.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    elif name[:1].isupper() and name in _explainer_classes():  # not a submodule that `from . import x` looks up
        value = _explainer_classes()[name]
    else:
        raise AttributeError(f"module 'tf_explain_kit' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__getattr__("__all__")))
