"""The model zoo: the kinds of model Keras users train, small and briefly trained.

Each :class:`Case` builds one model and the data it is explained on. The method × model
matrix (``tests/test_zoo_matrix.py``) runs every registered method on every case. Models are
tiny where the architecture allows; ``keras.applications`` models are built with
``weights=None`` at 32×32 and get their batch-norm statistics from the data (as a short
training run would set them). Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from typing import Any, Callable

import keras
import numpy as np
from keras import layers as L
from keras import ops

from tf_explain_kit import examples

APP_SIZE = 32  # the smallest input every keras.applications family takes
SEQ = (32, 3)  # time steps × features of the series models
TOKENS = 8


@dataclasses.dataclass(frozen=True)
class Case:
    """A model kind: how to build it, and explainer options every method gets for it."""

    name: str
    build: Callable[[], tuple[keras.Model, Any]]  # -> (model, data: inputs of 24 samples)
    options: dict = dataclasses.field(default_factory=dict)
    tokens: bool = False  # token ids: the callback's vocabulary= is known (the corpus')


@functools.cache
def built(name: str) -> tuple[keras.Model, Any]:
    """Each case's model and data, built once per test session."""
    keras.utils.set_random_seed(0)
    return CASES[name].build()


def _train(model: keras.Model, x: Any, y: np.ndarray, loss: str = "sparse_categorical_crossentropy", epochs: int = 3) -> keras.Model:
    keras.utils.set_random_seed(0)
    model.compile(keras.optimizers.Adam(3e-3), loss)
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)
    return model


# -- images ------------------------------------------------------------------------------------------
def _application(name: str, own_preprocessing: bool) -> Callable[[], tuple[keras.Model, np.ndarray]]:
    def build():
        model = getattr(keras.applications, name)(weights=None, input_shape=(APP_SIZE, APP_SIZE, 3), classes=3)
        x = examples.photos(24, APP_SIZE)  # in [-1, 1]
        x = (x + 1) * 127.5 if own_preprocessing else x  # models with their own preprocessing take [0, 255]
        examples.batch_norm_statistics(model, x[:16])
        return model, x

    return build


def _augmented_cnn() -> tuple[keras.Model, np.ndarray]:
    """Raw pixels in; Rescaling, an adapted Normalization and (inactive at inference)
    RandomFlip / RandomRotation inside the model."""
    images, labels = _patches()
    x = images * 255
    norm = L.Normalization(name="normalization")
    norm.adapt(x / 255)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            L.Rescaling(1 / 255, name="rescaling"),
            norm,
            L.RandomFlip("horizontal", name="flip"),
            L.RandomRotation(0.05, name="rotation"),
            L.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
            L.MaxPooling2D(2, name="pool"),
            L.Conv2D(8, 3, padding="same", activation="relu", name="conv2"),
            L.GlobalMaxPooling2D(name="gmp"),
            L.Dense(3, activation="softmax", name="classes"),
        ],
        name="augmented_cnn",
    )
    return _train(model, x, labels, epochs=4), x[:24]


def _image_cnn(name: str = "cnn") -> keras.Model:
    return keras.Sequential(
        [keras.Input((32, 32, 3)), L.Conv2D(8, 3, padding="same", activation="relu", name="conv1"), L.MaxPooling2D(2), L.Conv2D(8, 3, padding="same", activation="relu", name="conv2"), L.GlobalMaxPooling2D(), L.Dense(3, activation="softmax", name="classes")],
        name=name,
    )


def _patches() -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = examples.planted_patches(96, seed=1)
    return images, labels


def _mixed_precision(policy: str) -> Callable[[], tuple[keras.Model, np.ndarray]]:
    def build():
        before = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = _image_cnn(f"cnn_{policy}")
        finally:
            keras.mixed_precision.set_global_policy(before)
        x, y = _patches()
        return _train(model, x, y, epochs=4), x[:24]

    return build


def _loaded_from_keras_file() -> tuple[keras.Model, np.ndarray]:
    x, y = _patches()
    model = _train(_image_cnn("saved_cnn"), x, y, epochs=4)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        return keras.models.load_model(path), x[:24]


class _SubclassedCNN(keras.Model):
    def __init__(self):
        super().__init__(name="subclassed_cnn")
        self.conv1, self.conv2 = L.Conv2D(8, 3, padding="same", activation="relu"), L.Conv2D(8, 3, padding="same", activation="relu")
        self.pool, self.head = L.GlobalMaxPooling2D(), L.Dense(3, activation="softmax")

    def call(self, x):
        return self.head(self.pool(self.conv2(self.conv1(x))))


def _subclassed() -> tuple[keras.Model, np.ndarray]:
    x, y = _patches()
    return _train(_SubclassedCNN(), x, y, epochs=4), x[:24]


def _multi_input(as_dict: bool) -> Callable[[], tuple[keras.Model, Any]]:
    """An image and a side vector of 4 features, as a list or a dict of inputs."""

    def build():
        x, y = _patches()
        side = np.random.default_rng(2).normal(size=(len(x), 4)).astype(np.float32)
        side[:, 0] += y  # the side input carries some signal too
        image_in, side_in = keras.Input(x.shape[1:], name="image"), keras.Input((4,), name="side")
        h = L.GlobalMaxPooling2D()(L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(image_in))
        h = L.Concatenate()([h, L.Dense(8, activation="relu", name="side_dense")(side_in)])
        model = keras.Model({"image": image_in, "side": side_in} if as_dict else [image_in, side_in], L.Dense(3, activation="softmax", name="classes")(h), name="multi_input")
        inputs = {"image": x, "side": side} if as_dict else [x, side]
        _train(model, inputs, y, epochs=4)
        return model, {"image": x[:24], "side": side[:24]} if as_dict else [x[:24], side[:24]]

    return build


def _multi_output() -> tuple[keras.Model, np.ndarray]:
    x, y = _patches()
    image = keras.Input(x.shape[1:], name="image")
    h = L.GlobalMaxPooling2D()(L.Conv2D(8, 3, padding="same", activation="relu", name="conv")(image))
    model = keras.Model(image, {"classes": L.Dense(3, activation="softmax", name="classes")(h), "size": L.Dense(1, name="size")(h)}, name="multi_output")
    model.compile(keras.optimizers.Adam(3e-3), {"classes": "sparse_categorical_crossentropy", "size": "mse"})
    keras.utils.set_random_seed(0)
    model.fit(x, {"classes": y, "size": x.mean(axis=(1, 2, 3))}, epochs=4, batch_size=16, verbose=0)
    return model, x[:24]


# -- sequences -----------------------------------------------------------------------------------------
@functools.cache
def series(n: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Noise series whose class is the sign of a bump planted in steps 8–15 of feature 0."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 0.3, (n,) + SEQ).astype(np.float32)
    y = rng.integers(0, 2, n)
    x[:, 8:16, 0] += np.where(y == 1, 1.0, -1.0)[:, None]
    return x, y.astype(np.int64)


def _series_model(body: Callable[[Any], Any], name: str) -> Callable[[], tuple[keras.Model, np.ndarray]]:
    def build():
        x, y = series()
        inputs = keras.Input(SEQ, name="series")
        model = keras.Model(inputs, L.Dense(2, activation="softmax", name="classes")(body(inputs)), name=name)
        return _train(model, x, y, epochs=4), x[:24]

    return build


def _conv1d(h):
    return L.GlobalAveragePooling1D()(L.Conv1D(8, 5, padding="same", activation="relu", name="conv1d")(h))


# -- text ----------------------------------------------------------------------------------------------
@functools.cache
def corpus() -> tuple[list[str], np.ndarray, list[str]]:
    texts, labels = examples.sentiment_corpus(160)
    return texts, labels, examples.text_vocabulary(texts)


def _token_model(body: Callable[[Any], Any], name: str) -> Callable[[], tuple[keras.Model, np.ndarray]]:
    def build():
        texts, y, vocabulary = corpus()
        ids = examples.encode_texts(texts, vocabulary, TOKENS)
        inputs = keras.Input((TOKENS,), dtype="int32", name="tokens")
        h = L.Embedding(len(vocabulary), 16, name="embedding")(inputs)
        model = keras.Model(inputs, L.Dense(2, activation="softmax", name="classes")(body(h)), name=name)
        return _train(model, ids, y, epochs=6), ids[:24]

    return build


class TokenAndPositionEmbedding(L.Layer):
    """The Keras Transformer tutorial's embedding: token and position embeddings added."""

    def __init__(self, length: int, vocabulary: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.token_emb, self.pos_emb = L.Embedding(vocabulary, width, name="token_emb"), L.Embedding(length, width, name="pos_emb")

    def call(self, x):
        return self.token_emb(x) + self.pos_emb(ops.arange(0, ops.shape(x)[-1], 1))


def _transformer() -> tuple[keras.Model, np.ndarray]:
    texts, y, vocabulary = corpus()
    ids = examples.encode_texts(texts, vocabulary, TOKENS)
    inputs = keras.Input((TOKENS,), dtype="int32", name="tokens")
    h = TokenAndPositionEmbedding(TOKENS, len(vocabulary), 16, name="token_and_position")(inputs)
    attended = L.MultiHeadAttention(2, 8, name="attention")(h, h)
    h = L.LayerNormalization(name="norm1")(h + attended)
    h = L.LayerNormalization(name="norm2")(h + L.Dense(16, name="ffn_out")(L.Dense(32, activation="relu", name="ffn_in")(h)))
    model = keras.Model(inputs, L.Dense(2, activation="softmax", name="classes")(L.GlobalAveragePooling1D()(h)), name="transformer")
    return _train(model, ids, y, epochs=6), ids[:24]


def _raw_strings() -> tuple[keras.Model, np.ndarray]:
    """Strings in: a TextVectorization layer inside the model, then embedding and pooling."""
    texts, y, _ = corpus()
    vectorize = L.TextVectorization(max_tokens=200, output_sequence_length=TOKENS, name="vectorize")
    vectorize.adapt(texts)
    inputs = keras.Input((1,), dtype="string", name="text")
    h = L.Embedding(vectorize.vocabulary_size(), 16, name="embedding")(vectorize(inputs))
    model = keras.Model(inputs, L.Dense(2, activation="softmax", name="classes")(L.GlobalAveragePooling1D()(h)), name="raw_strings")
    import tensorflow as tf  # Keras' fit takes strings as a tensor, not as a numpy array

    _train(model, tf.constant(texts)[:, None], y, epochs=8)
    return model, np.array(texts[:24], dtype=object)[:, None]  # as pandas' .values gives them


# -- tabular -------------------------------------------------------------------------------------------
@functools.cache
def cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    return (x - x.mean(0)) / x.std(0), data.target.astype(np.int64)


def _tabular(head: str) -> Callable[[], tuple[keras.Model, np.ndarray]]:
    def build():
        if head == "regression":
            from sklearn.datasets import load_diabetes

            data = load_diabetes()
            x, y = ((data.data - data.data.mean(0)) / data.data.std(0)).astype(np.float32), ((data.target - data.target.mean()) / data.target.std()).astype(np.float32)
        else:
            x, y = cancer()
        out = {"softmax": L.Dense(2, activation="softmax", name="out"), "sigmoid": L.Dense(1, activation="sigmoid", name="out"), "regression": L.Dense(1, name="out")}[head]
        model = keras.Sequential([keras.Input(x.shape[1:]), L.Dense(16, activation="relu", name="hidden"), out], name=f"tabular_{head}")
        loss = {"softmax": "sparse_categorical_crossentropy", "sigmoid": "binary_crossentropy", "regression": "mse"}[head]
        return _train(model, x, y, loss, epochs=5), x[:24]

    return build


CASES: dict[str, Case] = {
    case.name: case
    for case in [
        *(Case(name.lower(), _application(name, own)) for name, own in [("ResNet50V2", False), ("EfficientNetB0", True), ("MobileNetV2", False), ("MobileNetV3Small", True), ("ConvNeXtTiny", True), ("DenseNet121", False)]),
        Case("augmented_cnn", _augmented_cnn),
        Case("mixed_float16", _mixed_precision("mixed_float16")),
        Case("mixed_bfloat16", _mixed_precision("mixed_bfloat16")),
        Case("loaded_keras", _loaded_from_keras_file),
        Case("subclassed", _subclassed),
        Case("multi_input_list", _multi_input(as_dict=False)),
        Case("multi_input_dict", _multi_input(as_dict=True)),
        Case("multi_output", _multi_output, {"output": "classes"}),
        Case("conv1d_series", _series_model(_conv1d, "conv1d_series")),
        Case("lstm_series", _series_model(lambda h: L.LSTM(8, name="lstm")(h), "lstm_series")),
        Case("gru_series", _series_model(lambda h: L.GRU(8, name="gru")(h), "gru_series")),
        Case("bidirectional_series", _series_model(lambda h: L.Bidirectional(L.LSTM(4), name="bilstm")(h), "bidirectional_series")),
        Case("text_conv1d", _token_model(_conv1d, "text_conv1d"), tokens=True),
        Case("text_lstm", _token_model(lambda h: L.LSTM(8, name="lstm")(h), "text_lstm"), tokens=True),
        Case("transformer", _transformer, tokens=True),
        Case("raw_strings", _raw_strings),
        Case("tabular_softmax", _tabular("softmax")),
        Case("tabular_sigmoid", _tabular("sigmoid")),
        Case("regression", _tabular("regression")),
    ]
}
