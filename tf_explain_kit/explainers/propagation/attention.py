"""MultiHeadAttention's attention step written as :mod:`.steps`.

Keras' ``MultiHeadAttention`` projects query, key and value with its ``EinsumDense``
sublayers (linear layers the rules apply to), then calls ``_compute_attention`` (the step
Keras documents for subclasses to override) on the projections: scores ``q·k/√d``, a
masked softmax, and the weights applied to the values. That step is replaced here, for
the default attention axis, by the same computation made of steps: LRP holds the
attention weights constant (the conservative propagation of Ali et al., 2022: relevance
flows through the values only), DeepLIFT splits both products exactly.
"""

from __future__ import annotations

import math
from typing import Any

from keras import ops

from .steps import Steps

_SCORES = "aecd,abcd->acbe"  # key (B, S, N, H), query (B, T, N, H) -> scores (B, N, T, S)
_COMBINE = "acbe,aecd->abcd"  # weights (B, N, T, S), value (B, S, N, H) -> (B, T, N, H)
_MASKED = -1e9  # what Keras' masked softmax adds to masked scores (float32)


def attention_step(layer: Any, steps: Steps):
    """A replacement for ``layer._compute_attention`` built from ``steps``."""
    scale = 1.0 / math.sqrt(float(layer.key_dim))

    def compute(query, key, value, attention_mask=None, training=None, return_attention_scores=False, use_causal_mask=False):
        if use_causal_mask:
            t, s = ops.shape(query)[1], ops.shape(value)[1]
            causal = ops.greater_equal(ops.cumsum(ops.ones((1, t, s), "int32"), axis=-2), ops.cumsum(ops.ones((1, t, s), "int32"), axis=-1))
            attention_mask = causal if attention_mask is None else ops.logical_and(ops.cast(attention_mask, "bool"), causal)
        scores = steps.product(key, query * scale, lambda k, q: ops.einsum(_SCORES, k, q))
        if attention_mask is not None:
            mask = ops.cast(attention_mask, "bool")
            while len(mask.shape) < len(scores.shape):
                mask = ops.expand_dims(mask, axis=-3)  # (B, T, S) -> (B, 1, T, S): every head
            scores = ops.where(mask, scores, _MASKED)
        weights = steps.softmax(scores, axis=-1)
        output = steps.product(weights, value, lambda w, v: ops.einsum(_COMBINE, w, v), gate=0)
        return output, (weights if return_attention_scores else None)

    return compute
