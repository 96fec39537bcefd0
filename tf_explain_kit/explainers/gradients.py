"""Plain gradient methods: Saliency and Gradient × Input."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from ..model import Inputs, map_inputs
from ..model import GradientPass
from .base import OnePassExplainer, require_float_inputs
from .registry import NUMERIC, register


@register(kinds=NUMERIC, float_inputs=True)
class Saliency(OnePassExplainer):
    """Gradient sensitivity: |∂score/∂x| (or the signed gradient with ``signed=True``)."""

    method = "saliency"

    def __init__(self, model: keras.Model, signed: bool = False, **options: Any):
        super().__init__(model, **options)
        self.signed = signed

    def attribute_pass(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict, GradientPass]:
        require_float_inputs(x, self.adapter, type(self).__name__)
        result = self.adapter.gradients(x, weights)
        return (result.grads if self.signed else map_inputs(np.abs, result.grads)), {}, result


@register(kinds=NUMERIC, float_inputs=True)
class GradientInput(OnePassExplainer):
    """Gradient × Input: x · ∂score/∂x (exact for linear models with a zero baseline)."""

    method = "gradient_input"

    def attribute_pass(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict, GradientPass]:
        require_float_inputs(x, self.adapter, type(self).__name__)
        result = self.adapter.gradients(x, weights)
        return map_inputs(np.multiply, result.grads, x), {}, result
