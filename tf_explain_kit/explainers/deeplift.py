"""DeepLIFT with the rescale rule (Shrikumar et al., 2017), native on the compiled model.

The forward pass is the model's own; chosen layers get DeepLIFT's multipliers in the
backward pass (:mod:`.propagation.deeplift_rules`): the linear rule through every linear
layer, the rescale rule through elementwise non-linearities, shap's rule for max pooling,
the Shapley split for products (gates, attention) and exact rules for softmax and layer
normalisation. Attributions ``(x − r) · m`` then sum to ``f(x) − f(r)``.
"""

from __future__ import annotations

from typing import Any, Callable

import keras
import numpy as np

from ..model import GradientPass, Inputs, ModelAdapter, flat_inputs, map_inputs, num_samples
from ..targets import resolve
from .base import OnePassExplainer, require_float_inputs
from .registry import NUMERIC, register
from .propagation import deeplift_rules
from .propagation.graph import probe

_KEY = ("deeplift",)  # one compiled function per adapter: the rules have no options


class DeepLiftPasses:
    """DeepLIFT's compiled passes for one model; the rules are chosen from one probe of the
    model, at construction when its input shapes are known (so a layer without a rule is
    refused up front), else at the first call."""

    def __init__(self, adapter: ModelAdapter, method: str):
        self.adapter, self.method = adapter, method
        self.pairing = deeplift_rules.Pairing()
        self._hooks: tuple | None = None
        example = example_input(adapter.model)
        if example is not None:
            self.hooks(adapter.prepare(example, name="model"))

    def hooks(self, x: Inputs) -> tuple:
        if self._hooks is None:
            self._hooks = deeplift_rules.hooks(self.adapter.model, probe(self.adapter, x), self.pairing, self.method)
        return self._hooks

    def __call__(self, x: Inputs, weights: np.ndarray, references: Inputs, reference_weights: np.ndarray, aligned: bool) -> tuple:
        """``(attributions, score, outputs, reference scores)`` (see :meth:`ModelAdapter.paired_gradients`)."""
        return self.adapter.paired_gradients(x, weights, references, reference_weights, self.hooks(x), _KEY, self.pairing, aligned)


def example_input(model: keras.Model) -> Any:
    """One all-zeros sample per model input (``None`` when the input shapes are not known,
    or not fixed)."""
    try:
        specs = keras.tree.flatten(model.inputs)
    except (AttributeError, ValueError):
        return None
    arrays = []
    for spec in specs:
        shape = tuple(spec.shape[1:])
        if any(d is None for d in shape):
            return None
        dtype = str(spec.dtype)
        arrays.append(np.full((1, *shape), "", object) if dtype == "string" else np.zeros((1, *shape), dtype))
    return arrays[0] if len(arrays) == 1 else keras.tree.pack_sequence_as(model.inputs, arrays) if isinstance(model.inputs, dict) else arrays


def summation_gap(attributions: Any, difference: np.ndarray) -> np.ndarray:
    """``Σ attributions − difference`` per sample: 0 where the rules are exact."""
    arrays = flat_inputs(attributions)
    return sum(a.reshape(len(a), -1).astype(np.float64).sum(axis=1) for a in arrays) - difference


@register(kinds=NUMERIC, float_inputs=True)
class DeepLift(OnePassExplainer):
    """DeepLIFT (rescale rule): ``(x − baseline) · m``, with ``m`` DeepLIFT's multipliers.

    Args:
        baseline: ``"zeros"``, an array (one sample, shared; or one per sample), or a
            callable ``inputs -> baselines``.

    Attributions have the input's shape and sum to ``score(x) − score(baseline)``: exactly
    (to float precision) for the layers with exact rules, which are all the layers it
    accepts; ``extras["convergence_delta"]`` reports the gap and ``extras["baseline_score"]``
    the baseline's score. A layer without a rule (a custom layer whose own computation is
    neither linear, elementwise nor a product) is refused when the explainer is built.
    """

    method = "deeplift"

    def __init__(self, model: keras.Model, baseline: str | np.ndarray | Callable = "zeros", **options: Any):
        super().__init__(model, **options)
        if isinstance(baseline, str) and baseline != "zeros":
            raise ValueError(f"baseline: expected 'zeros', an array or a callable inputs -> baselines, got {baseline!r}.")
        self.baseline = baseline
        self._passes = DeepLiftPasses(self.adapter, "DeepLift")

    def _references(self, x: Inputs) -> tuple[Inputs, bool]:
        """The baselines, and whether each sample has its own (else one is shared)."""
        if isinstance(self.baseline, str):
            return map_inputs(lambda a: np.zeros((1, *a.shape[1:]), a.dtype), x), False

        def shaped(a: np.ndarray, b: Any) -> np.ndarray:
            b = np.asarray(b, a.dtype)
            if b.shape in (a.shape, (1, *a.shape[1:])):
                return b
            if b.shape == a.shape[1:]:
                return b[None]
            raise ValueError(f"baseline: expected one sample of shape {a.shape[1:]} (shared) or one per sample {a.shape}, got shape {b.shape}.")

        base = map_inputs(shaped, x, self.baseline(x) if callable(self.baseline) else self.baseline)
        return base, num_samples(base) == num_samples(x)

    def attribute_pass(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict, GradientPass]:
        require_float_inputs(x, self.adapter, "DeepLift")
        references, aligned = self._references(x)
        reference_weights = np.ones(num_samples(references), np.float32)
        attributions, score, outputs, reference_scores = self._passes(x, weights, references, reference_weights, aligned)
        _, resolved = resolve(weights, outputs)
        baseline_score = (resolved * (reference_scores if aligned else reference_scores[:1])).sum(axis=1)
        extras = {"convergence_delta": summation_gap(attributions, score - baseline_score), "baseline_score": baseline_score}
        return attributions, extras, GradientPass(attributions, score, outputs)
