"""SmoothGrad and VarGrad: seeded Gaussian noise around any gradient explainer."""

from __future__ import annotations

import numbers
from typing import Any

import keras
import numpy as np

from ..checks import count
from ..model import Inputs, concat_batches, map_inputs, num_samples
from .base import Explainer, require_float_inputs
from .registry import NUMERIC, register
from .gradients import Saliency


@register(kinds=NUMERIC, float_inputs=True)
class SmoothGrad(Explainer):
    """Mean of ``base`` attributions over ``samples`` noisy copies of each input.

    The noise is Gaussian with standard deviation ``noise × (max − min)`` of each sample,
    drawn from a generator seeded with ``seed`` at every call (the user's global random
    state is never used). ``base`` is any explainer of the same model (default
    ``Saliency``), for example ``IntegratedGradients`` for SmoothGrad-IG.
    """

    method = "smoothgrad"

    def __init__(self, model: keras.Model, samples: int = 25, noise: float = 0.15, seed: int = 0, base: Explainer | None = None, **options: Any):
        super().__init__(model, **options)
        count(samples, "samples")
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
            raise TypeError(f"noise: expected a number, the noise's standard deviation as a fraction of each sample's value range (for example 0.15), got {noise!r}.")
        if not noise >= 0:
            raise ValueError(f"noise: expected a non-negative fraction of each sample's value range (for example 0.15), got {noise!r}.")
        if base is not None and not isinstance(base, Explainer):
            raise TypeError(f"base: expected an explainer instance such as tek.Saliency(model), got {type(base).__name__}.")
        if base is not None and base.model is not model:
            raise ValueError("base: the base explainer was built for a different model; build it for the same model.")
        self.samples, self.noise, self.seed = int(samples), float(noise), seed
        self.base = base or Saliency(model, **options)

    def _noisy_attributions(self, x: Inputs, weights: np.ndarray) -> np.ndarray:
        """Base attributions of every noisy copy, shape ``(samples, N, ...)`` per input."""
        require_float_inputs(x, self.adapter, type(self).__name__)
        rng = np.random.default_rng(self.seed)
        n = num_samples(x)
        sigma = map_inputs(lambda a: self.noise * (a.reshape(n, -1).max(1) - a.reshape(n, -1).min(1)).reshape((n,) + (1,) * (a.ndim - 1)), x)
        draws_per_call = max(1, self.adapter.default_batch_size(x) // n)
        parts = []
        for start in range(0, self.samples, draws_per_call):
            k = min(draws_per_call, self.samples - start)
            noisy = map_inputs(lambda a, s: (np.repeat(a[None], k, 0) + rng.standard_normal((k,) + a.shape, np.float32) * s).reshape((k * n,) + a.shape[1:]).astype(a.dtype), x, sigma)
            attributions, _ = self.base.attribute(noisy, np.tile(weights, (k, 1)))
            parts.append(attributions)
        return map_inputs(lambda a: a.reshape((self.samples, n) + a.shape[1:]), concat_batches(parts))

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict]:
        return map_inputs(lambda a: a.mean(axis=0), self._noisy_attributions(x, weights)), {}


@register(kinds=NUMERIC, float_inputs=True)
class VarGrad(SmoothGrad):
    """Variance of ``base`` attributions over noisy copies (see :class:`SmoothGrad`)."""

    method = "vargrad"

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict]:
        return map_inputs(lambda a: a.var(axis=0), self._noisy_attributions(x, weights)), {}
