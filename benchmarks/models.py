"""Models and inputs shared by the benchmarks (random weights: only the cost matters)."""

from __future__ import annotations

import keras
import numpy as np

from tf_explain_kit import examples


def digits(n: int = 32) -> tuple[keras.Model, np.ndarray]:
    model = examples.digits_cnn()
    return model, examples.digits()[2][:n]


def mobilenet(n: int = 32, classes: int = 10) -> tuple[keras.Model, np.ndarray]:
    """MobileNetV2 at 224×224 with random weights, and ``n`` inputs uniform in [-1, 1].

    Freshly initialised, its activations shrink block after block (logits near 1e-12, so
    every explanation is zero); its batch-norm statistics are set from one batch, as a
    short training run would set them, so the explanations timed here are not trivial.
    """
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3), classes=classes)
    x = np.random.default_rng(0).uniform(-1, 1, (max(n, 16), 224, 224, 3)).astype(np.float32)
    examples.batch_norm_statistics(model, x[:16])
    return model, x[:n]


def mobilenet_v3(n: int = 32, classes: int = 1000) -> tuple[keras.Model, np.ndarray]:
    """MobileNetV3Small at 224×224 as Keras builds it (its Rescaling layer takes raw pixels),
    random weights with batch-norm statistics from one batch, and ``n`` inputs in [0, 255]."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(224, 224, 3), classes=classes)
    x = np.random.default_rng(0).uniform(0, 255, (max(n, 16), 224, 224, 3)).astype(np.float32)
    examples.batch_norm_statistics(model, x[:16])
    return model, x[:n]


def bare_gradient(model: keras.Model):
    """The compute limit: one compiled forward + backward pass, nothing else."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), tf.float32)])
    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(model(x, training=False)[:, 0])
        return tape.gradient(score, x)

    def run(batches):
        for batch in batches:
            gradient(batch).numpy()

    return run


def prebuilt(array: np.ndarray, batch_size: int) -> list:
    """``array`` as tensors of ``batch_size`` rows, built before the clock starts."""
    import tensorflow as tf

    return [tf.constant(array[i : i + batch_size]) for i in range(0, len(array), batch_size)]
