"""SHAP: ours vs shap as users call it, and vs the compute limit (the same forward passes bare).

* KernelShap on breast_cancer (an MLP, 5 rows, background summarised to 10 k-means rows,
  ``nsamples="auto"``): reference ``shap.KernelExplainer(model.predict, ...)``.
* GradientShap on the digits CNN (4 images, 50 background images, 200 draws): reference
  ``shap.GradientExplainer(model, ...)`` explaining the top class.
* DeepShap on the digits CNN (4 images, 50 background images): reference
  ``shap.DeepExplainer(model, ...)`` explaining the top class; and on MobileNetV2 at 224
  (4 images, 8 background images; shap refuses it). The limit is one bare forward +
  backward pass over the (input, background) pairs DeepLIFT evaluates.
* PartitionShap on one image of the digits CNN and of MobileNetV2 (500 evaluations):
  reference ``shap.PartitionExplainer(model.predict, masker)`` with the same constant fill;
  the limit is 500 forward rows in one bare batched call.
Models are untrained: only the cost matters here.
"""

from __future__ import annotations

import keras
import numpy as np
import shap

from tf_explain_kit import examples
from tf_explain_kit.explainers.shap import DeepShap, GradientShap, KernelShap, PartitionShap, coalitions
from tf_explain_kit.model import ModelAdapter
from tf_explain_kit.rng import preserved_global_state

from . import models
from .harness import compare


def _cancer_mlp() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data.astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    init = keras.initializers.GlorotUniform(seed=0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(64, activation="relu", kernel_initializer=init), keras.layers.Dense(64, activation="relu", kernel_initializer=init), keras.layers.Dense(2, activation="softmax", kernel_initializer=init)])
    return model, x[:400], x[400:405]


def kernel_shap(repeats: int) -> dict:
    model, train, rows = _cancer_mlp()
    ours = KernelShap(model, train, summarize=10)
    with preserved_global_state():
        summary = shap.kmeans(train, 10)
    coalitions_per_row = len(coalitions(30, 2 * 30 + 2048, np.random.default_rng(0))[0])
    same_passes = np.repeat(rows, coalitions_per_row * 10 + 2, axis=0)  # coalitions × background, plus f(x) and f(background)
    adapter = ModelAdapter.shared(model)

    def reference():
        with preserved_global_state():
            shap.KernelExplainer(model.predict, summary).shap_values(rows, silent=True)

    return compare(
        "kernel_shap breast_cancer (5 rows, 10 bg, nsamples=auto)",
        lambda: ours.explain(rows),
        limit=lambda: adapter.forward(same_passes),
        reference=reference,
        repeats=repeats,
        note=f"{len(same_passes)} forward rows; reference: shap.KernelExplainer(model.predict, shap.kmeans(x, 10)) with its defaults",
    )


def _digits_case() -> tuple[keras.Model, np.ndarray, np.ndarray]:
    """The digits CNN, 50 training images as background and 4 test images to explain."""
    x_train, _, x_test, _ = examples.digits()
    return examples.digits_cnn(), x_train[:50], x_test[:4]


def _gradient_pass(adapter: ModelAdapter, rows: np.ndarray):
    """The compute limit: one batched gradient pass of class 0 over ``rows``."""
    weights = np.zeros((len(rows), 10), np.float32)
    weights[:, 0] = 1
    return lambda: adapter.gradients(rows, weights)


def gradient_shap(repeats: int) -> dict:
    model, background, images = _digits_case()
    draws = 200
    ours = GradientShap(model, background, samples=draws)
    points = np.repeat(images, draws, axis=0)

    def reference():
        with preserved_global_state():
            shap.GradientExplainer(model, background).shap_values(images, nsamples=draws, ranked_outputs=1)

    return compare(
        "gradient_shap digits CNN (4 images, 50 bg, 200 draws)",
        lambda: ours.explain(images),
        limit=_gradient_pass(ModelAdapter.shared(model), points),
        reference=reference,
        repeats=repeats,
        note=f"{len(points)} gradient rows; reference: shap.GradientExplainer(model, background), top class",
    )


def deep_shap(repeats: int) -> dict:
    model, background, images = _digits_case()
    ours = DeepShap(model, background, score="probabilities")
    pairs = np.repeat(images, len(background), axis=0)

    def reference():
        with preserved_global_state():
            shap.DeepExplainer(model, background).shap_values(images, ranked_outputs=1, check_additivity=False)

    return compare(
        "deep_shap digits CNN (4 images, 50 bg)",
        lambda: ours.explain(images),
        limit=_bare_pass(model, pairs),
        reference=reference,
        repeats=repeats,
        note=f"limit: one bare forward + backward over the {len(pairs)} (input, background) rows; reference: shap.DeepExplainer(model, background), top class",
    )


def deep_shap_mobilenet(repeats: int) -> dict:
    model, photos = models.mobilenet(12, classes=1000)
    background, images = photos[:8], photos[8:12]
    ours = DeepShap(model, background)
    pairs = np.repeat(images, len(background), axis=0)
    return compare(
        "deep_shap MobileNetV2 224x224 (4 images, 8 bg)",
        lambda: ours.explain(images),
        limit=_bare_pass(model, pairs),
        repeats=repeats,
        note=f"limit: one bare forward + backward over the {len(pairs)} (input, background) rows; shap.DeepExplainer refuses this model (no rule for Relu6)",
    )


def _bare_pass(model: keras.Model, rows: np.ndarray):
    """The compute limit: bare compiled forward + backward passes over ``rows`` in the batches
    the explainer's adapter would use, built before the clock starts."""
    bare, batches = models.bare_gradient(model), models.prebuilt(rows, ModelAdapter.shared(model).default_batch_size(rows))
    return lambda: bare(batches)


def partition_shap(name: str, model: keras.Model, image: np.ndarray, repeats: int, evals: int = 500) -> dict:
    ours = PartitionShap(model, max_evals=evals, score="probabilities")
    adapter = ModelAdapter.shared(model, score="probabilities")
    rows = np.repeat(image[None], evals, axis=0)
    fill = image.mean(axis=(0, 1), keepdims=True) * np.ones_like(image)

    def reference():
        with preserved_global_state():
            masker = shap.maskers.Image(fill, image.shape)
            shap.PartitionExplainer(lambda batch: model.predict(batch, verbose=0)[:, :1], masker)(image[None], max_evals=evals, silent=True)

    return compare(
        f"partition_shap {name} (1 image, {evals} evals)",
        lambda: ours.explain(image[None], targets=0),
        limit=lambda: adapter.forward(rows),
        reference=reference,
        repeats=repeats,
        note=f"limit: {evals} forward rows in one bare batched call; reference: shap.PartitionExplainer(model.predict, Image masker with the same fill)",
    )


def run(quick: bool) -> list[dict]:
    repeats = 2 if quick else 5
    digit = examples.digits()[2][0]
    mobilenet, photos = models.mobilenet(1, classes=1000)
    photo = photos[0]
    return [
        kernel_shap(repeats * 4),  # calls of tens of milliseconds: more repeats for a stable median
        gradient_shap(repeats * 4),
        deep_shap(repeats * 4),
        deep_shap_mobilenet(repeats),
        partition_shap("digits CNN", examples.digits_cnn(), digit, repeats),
        partition_shap("MobileNetV2 224x224", mobilenet, photo, 1),
    ]
