"""Integrated Gradients, at the input or at a layer (token embeddings for text)."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import keras
import numpy as np

from ..checks import count
from ..imaging import blur
from ..model import Inputs, concat_batches, flat_inputs, map_inputs, num_samples, take
from ..text import is_text
from .base import Explainer, per_token_at, require_float_inputs, require_positions
from .registry import NUMERIC, TEXT, at_embedding, register

BASELINES = ("zeros", "blur", "uniform")
INTEGRATIONS = ("gauss_legendre", "riemann_midpoint", "riemann_trapezoid")
_DELTA_WARNING = 0.05


def path_points(steps: int, integration: str) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation coefficients α in [0, 1] and quadrature weights summing to 1."""
    if integration == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if integration == "riemann_midpoint":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1 / steps)
    alphas = np.linspace(0, 1, steps)
    weights = np.full(steps, 1 / max(steps - 1, 1))
    weights[[0, -1]] /= 2
    return alphas, weights if steps > 1 else np.ones(1)


@register(kinds=NUMERIC + TEXT, defaults=at_embedding)
class IntegratedGradients(Explainer):
    """Integrated Gradients (Sundararajan et al., 2017).

    Args:
        steps: points on the straight path from the baseline to the input.
        baseline: ``"zeros"`` (for strings: the empty text), ``"blur"`` (Gaussian-blurred input), ``"uniform"`` (seeded
            noise in each sample's value range), an array (one sample or one per sample), or
            a callable ``inputs -> baselines``.
        layer: attribute at this layer's output instead of the input (name or layer). For
            an ``Embedding`` layer the result is summed over the embedding axis: one value
            per token (for a model that takes strings, per shown token, see
            :mod:`tf_explain_kit.text`). Integer inputs (token ids) and strings need it. A layer
            inside a custom layer is named by its path, ``"outer/inner"``.
        integration: ``"gauss_legendre"`` (default), ``"riemann_midpoint"`` or
            ``"riemann_trapezoid"``.

    ``extras["convergence_delta"]`` per sample is sum(attributions) − (score(x) − score(baseline)).
    """

    method = "integrated_gradients"

    def __init__(
        self,
        model: keras.Model,
        steps: int = 50,
        baseline: str | np.ndarray | Callable = "zeros",
        layer: str | keras.layers.Layer | None = None,
        integration: str = "gauss_legendre",
        seed: int = 0,
        **options: Any,
    ):
        super().__init__(model, **options)
        count(steps, "steps", hint="50 is a good start")
        if isinstance(baseline, str) and baseline not in BASELINES:
            raise ValueError(f"baseline: expected one of {BASELINES}, an array or a callable, got {baseline!r}.")
        if integration not in INTEGRATIONS:
            raise ValueError(f"integration: expected one of {INTEGRATIONS}, got {integration!r}.")
        self.steps, self.baseline, self.integration, self.seed = int(steps), baseline, integration, seed
        self.layer = None if layer is None else self.adapter.find_layer(layer)
        require_positions(self.adapter, self.layer)
        specs = self.adapter._input_specs()
        if isinstance(baseline, np.ndarray) and baseline.dtype.kind in "fiub" and specs is not None and len(specs) == 1:
            _check_baseline(baseline.shape, (None,) + tuple(specs[0].shape)[1:])

    def baselines(self, x: Inputs) -> Inputs:
        """The baseline of every sample, in the input's structure and shape."""
        if callable(self.baseline):
            b = self.baseline(x)
        elif isinstance(self.baseline, str):
            b = map_inputs(self._named_baseline, x)
        elif isinstance(x, np.ndarray) and is_text(x):  # texts: one for all samples or one each, in any form
            b = np.broadcast_to(self.adapter.prepare(self.baseline, name="baseline"), x.shape).copy()
        else:
            b = map_inputs(lambda a, base: _check_baseline(np.shape(base), a.shape) and np.broadcast_to(np.asarray(base, a.dtype), a.shape).copy(), x, self.baseline)
        for a, base in zip(flat_inputs(x), flat_inputs(b)):
            if np.shape(base) != a.shape:
                raise ValueError(f"baseline: expected shape {a.shape} (one baseline per sample), got {np.shape(base)}.")
        return map_inputs(lambda a, base: np.asarray(base, a.dtype), x, b)

    def _named_baseline(self, a: np.ndarray) -> np.ndarray:
        if self.baseline == "zeros" and is_text(a):
            return np.full(a.shape, "", object)  # the empty text: all padding
        if self.baseline == "zeros":
            return np.zeros_like(a)
        if a.dtype.kind != "f":
            raise ValueError(f"baseline: {self.baseline!r} needs float inputs; for token ids use baseline='zeros' (the padding id) or an array of ids, for texts 'zeros' (the empty text) or an array of texts.")
        if self.baseline == "blur":
            if a.ndim < 3:
                raise ValueError(f"baseline: 'blur' needs images (N, H, W[, C]), got shape {a.shape}; use 'zeros', 'uniform' or an array.")
            return blur(a, sigma=max(a.shape[1:3]) / 10)
        rng = np.random.default_rng(self.seed)
        flat = a.reshape(len(a), -1)
        low, high = flat.min(1), flat.max(1)
        return (low[:, None] + rng.random(flat.shape, np.float32) * (high - low)[:, None]).reshape(a.shape).astype(a.dtype)

    def attribute(self, x: Inputs, weights: np.ndarray) -> tuple[Any, dict]:
        b = self.baselines(x)
        if self.layer is None:
            require_float_inputs(x, self.adapter, "IntegratedGradients without layer=")
            start, end = b, x
            gradients = lambda xs, ws, points: self.adapter.gradients(points, ws).grads  # noqa: E731
        else:
            start, end = self.adapter.layer_output(b, self.layer), self.adapter.layer_output(x, self.layer)
            gradients = lambda xs, ws, points: self.adapter.gradients_at_layer(xs, ws, self.layer, points)[0]  # noqa: E731
        attributions, tokens = per_token_at(self.adapter, self.layer, x, self._integrate(x, weights, start, end, gradients))
        _, both = self.adapter.forward(concat_batches([b, x]))  # one call for both ends of the path
        base_scores, scores = np.split(both, 2)
        difference = ((scores - base_scores) * weights).sum(axis=1)
        total = sum(a.reshape(len(a), -1).sum(axis=1) for a in flat_inputs(attributions))
        delta = total - difference
        self._warn_on_delta(delta, difference)
        return attributions, {"convergence_delta": delta, "baseline_score": (base_scores * weights).sum(axis=1), **tokens}

    def _integrate(self, x: Inputs, weights: np.ndarray, start: Inputs, end: Inputs, gradients: Callable) -> Inputs:
        """(end − start) × the quadrature of the gradients along the straight path."""
        alphas, coefs = path_points(self.steps, self.integration)
        n, k = num_samples(x), self.steps
        per_call = max(1, self.adapter.default_batch_size(end) // k)
        parts = []
        for i in range(0, n, per_call):
            rows = slice(i, i + per_call)
            s, e = take(start, rows), take(end, rows)
            m = num_samples(s)
            points = map_inputs(lambda lo, hi: (lo[:, None] + _expand(alphas, lo) * (hi - lo)[:, None]).reshape((m * k,) + lo.shape[1:]), s, e)
            grads = gradients(take(x, np.repeat(np.arange(i, i + m), k)), np.repeat(weights[rows], k, axis=0), points)
            average = map_inputs(lambda g: np.tensordot(coefs, g.reshape((m, k) + g.shape[1:]), axes=([0], [1])), grads)
            parts.append(map_inputs(lambda lo, hi, g: ((hi - lo) * g).astype(np.float32), s, e, average))
        return concat_batches(parts)

    def _warn_on_delta(self, delta: np.ndarray, difference: np.ndarray) -> None:
        relative = np.abs(delta) / np.maximum(np.abs(difference), 1e-12)
        bad = relative > _DELTA_WARNING
        if bad.any():
            warnings.warn(
                f"integrated_gradients: the convergence delta is {relative.max():.1%} of score(x) - score(baseline) "
                f"for {int(bad.sum())} of {len(delta)} samples (more than {_DELTA_WARNING:.0%}); increase steps "
                f"(now {self.steps}) or check that the baseline differs from the input.",
                RuntimeWarning,
                stacklevel=4,
            )


def _expand(alphas: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``alphas`` shaped to broadcast against ``(m, 1, ...)`` arrays like ``like``."""
    return alphas.astype(np.float32).reshape((1, -1) + (1,) * (like.ndim - 1))


def _check_baseline(shape: tuple, expected: tuple) -> bool:
    """Whether a baseline of ``shape`` broadcasts to inputs of ``expected`` (None: any size);
    a ValueError naming the shapes otherwise."""
    fits = len(shape) <= len(expected) and all(b == 1 or e is None or b == e for b, e in zip(shape[::-1], expected[::-1]))
    if not fits:
        per_sample = "(" + ", ".join("?" if d is None else str(d) for d in expected[1:]) + ("," if len(expected) == 2 else "") + ")"
        raise ValueError(
            f"baseline: expected an array that broadcasts to the inputs' shape, one sample {per_sample} or one per sample "
            f"(N, {per_sample[1:]}, got shape {tuple(shape)}. Pass for example np.zeros({per_sample}) or baseline='zeros'."
        )
    return True
