"""LRP on 32 samples vs the compute limit: one bare compiled forward + backward pass.

Models: the digits CNN (trained one epoch), MobileNetV2 at 224, and MobileNetV3Small at 224
with the preprocessing Keras builds into it (raw pixels in [0, 255]).
"""

from __future__ import annotations

import tf_explain_kit as tek
from tf_explain_kit import examples

from . import models
from .harness import compare

SAMPLES = 32


def run(quick: bool) -> list[dict]:
    x_train, y_train, x_test, _ = examples.digits()
    digits_cnn = examples.digits_cnn()
    digits_cnn.compile("adam", "sparse_categorical_crossentropy")
    digits_cnn.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)
    mobilenet, photos = models.mobilenet(SAMPLES, classes=1000)
    mobilenet_v3, raw_photos = models.mobilenet_v3(SAMPLES)
    cases = [  # a call of a few milliseconds needs many repeats for a stable median
        ("digits CNN", digits_cnn, x_test[:SAMPLES], 300),
        ("MobileNetV2 224", mobilenet, photos, 5),
        ("MobileNetV3Small 224 (its own Rescaling, hard-swish, squeeze-and-excitation)", mobilenet_v3, raw_photos, 5),
    ]
    rows = []
    for name, model, x, repeats in cases:
        bare, batch = models.bare_gradient(model), models.prebuilt(x, len(x))
        for rule in ("epsilon", "composite"):
            explainer = tek.LRP(model, rule=rule)
            rows.append(
                compare(
                    f"LRP {rule}, {name}, {SAMPLES} samples",
                    lambda: explainer.explain(x, targets=0),
                    limit=lambda: bare(batch),
                    repeats=2 if quick else repeats,
                    note="limit: one compiled forward + backward (input gradient) on the same batch",
                )
            )
    return rows
