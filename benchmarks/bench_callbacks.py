"""What ExplainCallback adds to an epoch (issue 4).

Per epoch: saliency + Integrated Gradients (32 steps) + Grad-CAM on 16 samples. "ours" is
the callback's whole epoch work (explaining, rendering, encoding, writing, flushing);
"limit" is the same three ``explain`` calls alone, so ours/limit − 1 is what logging and
rendering add (on a 30 s epoch, within the run-to-run noise of the explain calls; the
logging thread's CPU time per epoch, beside it, bounds what logging can take from them). For the digits CNN the row also gives the callback's share of a training
epoch on the digits data.
"""

from __future__ import annotations

import tempfile
import time

import keras

import tf_explain_kit as tek
from tf_explain_kit import examples

from . import models
from .harness import compare


def _rows(name: str, model: keras.Model, x, repeats: int) -> list[dict]:
    explainers = [tek.Saliency(model), tek.IntegratedGradients(model, steps=32), tek.GradCAM(model)]
    with tempfile.TemporaryDirectory() as log_dir:
        callback = tek.ExplainCallback(x, explainers, log_dir, max_samples=16, select="first")
        callback.set_model(model)
        callback.set_params({"epochs": 10_000})
        callback.on_train_begin()
        epochs, logging_cpu = iter(range(1, 10_000)), []
        log = callback.log

        def timed_log(*args):  # the logging thread's CPU time: what it can take from explaining
            start = time.thread_time()
            log(*args)
            logging_cpu.append(time.thread_time() - start)

        callback.log = timed_log
        row = compare(
            f"callback epoch: saliency + IG(32) + Grad-CAM, 16 samples, {name}",
            lambda: callback.on_epoch_end(next(epochs), {"loss": 1.0}),
            lambda: [e.explain(callback.x) for e in explainers],
            repeats=repeats,
            note="limit = the three explain() calls alone",
        )
        callback.on_train_end()
    row["logging_overhead"] = row["ours_over_limit"] - 1
    row["logging_cpu_share"] = sum(logging_cpu) / len(logging_cpu) * len(explainers) / row["limit_s"]
    row["note"] += f"; logging: {sum(logging_cpu) / len(logging_cpu) * len(explainers):.3f} CPU s per epoch"
    return [row]


def run(quick: bool = False) -> list[dict]:
    model, x = models.digits(16)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    x_train, y_train, _, _ = examples.digits()
    model.fit(x_train, y_train, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(x_train, y_train, epochs=1, verbose=0)
    epoch_seconds = time.perf_counter() - start
    rows = _rows("digits CNN 28x28", model, x, repeats=5 if quick else 20)
    rows[0]["share_of_digits_epoch"] = rows[0]["ours_s"] / epoch_seconds
    rows[0]["note"] += f"; a digits training epoch takes {epoch_seconds:.3f} s"
    rows += _rows("MobileNetV2 224x224", *models.mobilenet(16), repeats=1 if quick else 5)
    return rows
