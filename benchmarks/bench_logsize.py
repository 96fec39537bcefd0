"""Bytes per logged cell (one sample × method × epoch) by method and image size (issue 17).

The callback, with its defaults, logs 8 inputs with one method at a time: the digits CNN
on scikit-learn's digits at 28×28, MobileNetV2 (random weights, batch-norm statistics from
the photos) on scikit-image's photographs at 96×96 and 224×224. A cell is the event
file's growth over the second epoch divided by the samples: the attributions, the
Images dashboard's pictures, the table and the health scalars. The samples summary,
written once at train begin, is given apart. Bytes do not depend on the machine's load;
run this module against an older checkout to compare formats.
"""

from __future__ import annotations

import glob
import os
import tempfile

import tf_explain_kit as tek
from tf_explain_kit import examples

SAMPLES = 8
METHODS = {"saliency": lambda m: tek.Saliency(m), "integrated_gradients": lambda m: tek.IntegratedGradients(m, steps=16), "gradcam": lambda m: tek.GradCAM(m)}


def _size(log_dir: str) -> int:
    return sum(os.path.getsize(f) for f in glob.glob(os.path.join(log_dir, "explanations", "events.out.tfevents.*")))


def _cell(model, x, method: str) -> tuple[float, float]:
    """Bytes per cell and bytes of the samples summary."""
    with tempfile.TemporaryDirectory() as log_dir:
        callback = tek.ExplainCallback(x, [METHODS[method](model)], log_dir, max_samples=len(x), select="first")
        callback.set_model(model)
        callback.set_params({"epochs": 10})
        callback.on_train_begin()
        samples = _size(log_dir)
        callback.on_epoch_end(0, {"loss": 1.0})
        first = _size(log_dir)
        callback.on_epoch_end(1, {"loss": 1.0})
        cell = (_size(log_dir) - first) / len(x)
        callback.on_train_end()
    return cell, samples


def run(quick: bool = False) -> list[dict]:
    rows = []
    for side in (28, 96, 224):
        if side == 28:
            x, model = examples.digits()[2][:SAMPLES], examples.digits_cnn()
        else:
            x = examples.photos(SAMPLES, side)
            model = examples.mobilenet_v2(x)
        for method in METHODS:
            cell, samples = _cell(model, x, method)
            rows.append({"benchmark": f"bytes per cell: {method} {side}x{side}", "cell_kb": cell / 1024, "samples_kb": samples / 1024, "note": f"{SAMPLES} samples"})
    return rows
