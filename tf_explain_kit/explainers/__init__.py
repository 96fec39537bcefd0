"""Explainers: each turns (model, inputs, targets) into an :class:`~tf_explain_kit.Explanation`.

Every module of this package is imported here, so each method declares itself (see
:mod:`.registry`) and is exported under its class name without being listed anywhere else.
"""

import importlib
import pkgutil

from .base import Explainer
from .registry import METHODS

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f".{_module.name}", __name__)

globals().update({method.cls.__name__: method.cls for method in METHODS.values()})
__all__ = ["Explainer"] + sorted(method.cls.__name__ for method in METHODS.values())
