"""A raw-string sentiment model (its own TextVectorization inside) and its generated reviews.

The class is the one planted sentiment word; the filler words carry punctuation and HTML,
so the model's tokens ("movie," → "movie", "<b>plot</b>" → "bplotb") differ from the
words as written.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

POSITIVE, NEGATIVE = ["great", "good", "fine"], ["awful", "bad", "poor"]
FILLER = ["the", "movie", "was", "<b>plot</b>", "and", "actors,", "really!", "quite", "(film)"]


def reviews(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` texts (str array) and labels: 1 when the planted word is positive."""
    rng = np.random.default_rng(seed)
    texts, labels = [], rng.integers(0, 2, n)
    for label in labels:
        words = list(rng.choice(FILLER, rng.integers(3, 7)))
        words.insert(rng.integers(len(words) + 1), str(rng.choice(POSITIVE if label else NEGATIVE)) + str(rng.choice(["", "!", ","])))
        texts.append(" ".join(words))
    return np.array(texts), labels


def string_model(texts: np.ndarray) -> keras.Model:
    """TextVectorization (adapted on ``texts``, length 10), Embedding, average pooling, softmax; compiled."""
    vectorize = keras.layers.TextVectorization(max_tokens=40, output_sequence_length=10, name="vectorize")
    vectorize.adapt(texts)
    strings = keras.Input((1,), dtype="string")
    h = keras.layers.Embedding(40, 8, embeddings_initializer=keras.initializers.RandomUniform(seed=1), name="embedding")(vectorize(strings))
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(strings, keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=0))(h))
    model.compile(keras.optimizers.Adam(3e-2), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def as_tensor(texts: np.ndarray) -> tf.Tensor:
    """Texts as ``model.fit`` takes them for a ``(None, 1)`` string input."""
    return tf.constant(np.asarray(texts)[:, None])
