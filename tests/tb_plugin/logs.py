"""Small log directories written by the real callback, for the plugin's tests.

``python -m tests.tb_plugin.logs DIR`` writes them for manual use.
"""

from __future__ import annotations

import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

import tf_explain_kit as tek
from tf_explain_kit import examples, logformat
from tf_explain_kit.logwriter import SummaryWriter

EPOCHS = 15  # the image run: every epoch must reach the browser
XSS = "<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(2)</script>"
REFUSAL = "planted refusal: this explainer never explains"


class Refusing(tek.Occlusion):
    """An explainer that always fails: the callback refuses it at its first run and logs why."""

    method = "refusing"

    def explain(self, inputs, targets=None, contrast=None):
        raise ValueError(REFUSAL)


def _fit(model: keras.Model, x, y, validation, callback, log_dir: str, epochs: int) -> None:
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=32, validation_data=validation, verbose=0, callbacks=[callback, keras.callbacks.TensorBoard(log_dir)])


def digits(log_dir: str, epochs: int = EPOCHS) -> None:
    """The digits CNN on a small training subset: cheap methods each epoch, LIME every 5."""
    x_train, y_train, x_test, y_test = examples.digits()
    keras.utils.set_random_seed(0)
    methods = ["saliency", "integrated_gradients", "gradcam", ("lime", 5)]
    callback = tek.ExplainCallback((x_test, y_test), methods, log_dir, max_samples=6, class_names=[f"digit {i}" for i in range(10)])
    _fit(examples.digits_cnn(), x_train[:400], y_train[:400], (x_test[:200], y_test[:200]), callback, log_dir, epochs)


def cancer(log_dir: str, epochs: int = 3) -> None:
    """A small MLP on breast_cancer (tabular, named features)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = ((data.data - data.data.mean(0)) / data.data.std(0)).astype(np.float32)
    y = data.target
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    callback = tek.ExplainCallback((x[400:], y[400:]), ["saliency", "integrated_gradients"], log_dir, max_samples=4, class_names=list(data.target_names), feature_names=list(data.feature_names))
    _fit(model, x[:400], y[:400], (x[400:], y[400:]), callback, log_dir, epochs)


def hostile_text(log_dir: str, epochs: int = 2) -> None:
    """A token-id model whose class names and vocabulary contain HTML and script; one of
    its methods always fails."""
    rng = np.random.default_rng(0)
    vocabulary = ["<pad>", XSS, SCRIPT, "good", "bad", "plot", "actor", "&amp;", "fine", "dull"]
    x = rng.integers(1, len(vocabulary), size=(300, 8))
    y = (np.isin(x, [3, 8]).sum(1) > np.isin(x, [4, 9]).sum(1)).astype(int)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(len(vocabulary), 8), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2, activation="softmax")])
    methods = ["integrated_gradients", Refusing(model), "saliency"]
    callback = tek.ExplainCallback((x[250:], y[250:]), methods, log_dir, max_samples=4, class_names=[XSS, SCRIPT], vocabulary=vocabulary)
    _fit(model, x[:250], y[:250], (x[250:], y[250:]), callback, log_dir, epochs)


def series(log_dir: str, epochs: int = 2) -> None:
    """Series (N, T, F) written with the log format directly, as the callback logs them
    (kind ``sequence``): attributions (N, T, F) for saliency and (N, T) for Grad-CAM, a
    planted peak at step 9 that grows with the epoch."""
    rng = np.random.default_rng(0)
    n, steps, features = 4, 24, 3
    x = rng.standard_normal((n, steps, features)).astype(np.float32)
    labels = np.array([0, 1, 0, 1])
    writer = SummaryWriter(log_dir)
    writer.blobs(logformat.SAMPLES_TAG, 0, logformat.samples_payload(x, labels, np.arange(n), "sequence", ["low", "high"], ["flow", "pressure", "temperature"]), "samples")
    for epoch in range(epochs):
        writer.blobs(logformat.TRAINING_TAG, epoch, logformat.training_payload({"loss": 1.0 / (epoch + 1), "val_loss": 1.2 / (epoch + 1)}), "training")
        peak = np.zeros((n, steps), np.float32)
        peak[:, 9] = epoch + 1.0
        maps = {"saliency": np.repeat(peak[..., None], features, -1) + 0.1 * np.abs(x), "gradcam": peak + 0.05}
        for method, attributions in maps.items():
            explanation = types.SimpleNamespace(method=method, attributions=attributions, targets=labels, predictions=np.eye(2)[labels] * 0.8 + 0.1, extras={})
            writer.blobs(logformat.explanation_tag(method), epoch, logformat.explanation_payload(explanation, epoch), "explanation")
    writer.close()


def write_all(root: str) -> None:
    """``root/digits``, ``root/cancer``, ``root/hostile`` and ``root/series``: one toolkit run each."""
    digits(os.path.join(root, "digits"))
    cancer(os.path.join(root, "cancer"))
    hostile_text(os.path.join(root, "hostile"))
    series(os.path.join(root, "series"))


if __name__ == "__main__":
    write_all(sys.argv[1])
