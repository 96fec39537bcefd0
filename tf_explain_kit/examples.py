"""Example data and small models for the demo, the tests and the benchmarks.

Everything here ships with a package or is generated: nothing is downloaded.
"""

from __future__ import annotations

import keras
import numpy as np

from .imaging import resize_bilinear

PATCH_COLOURS = np.array([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]], np.float32)


def digits(size: int = 28, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits resized to ``size × size``, in [0, 1], shape (N, size, size, 1).

    Returns ``(x_train, y_train, x_test, y_test)`` from a seeded shuffle.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    images = data.images.astype(np.float32) / 16.0
    if size != 8:
        images = np.clip(resize_bilinear(images, size, size), 0, 1)
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order][..., None], data.target[order].astype(np.int64)
    cut = int(len(images) * (1 - test_fraction))
    return images[:cut], labels[:cut], images[cut:], labels[cut:]


PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "retina", "immunohistochemistry", "hubble_deep_field", "brick")


def photos(n: int, side: int) -> np.ndarray:
    """``n`` of scikit-image's sample photographs (mirrored after the first eight), resized
    to ``side × side`` RGB in [-1, 1] (MobileNetV2's input range), shape (n, side, side, 3)."""
    from skimage import data, transform

    images = []
    for i in range(n):
        image = np.atleast_3d(getattr(data, PHOTOS[i % len(PHOTOS)])())
        image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
        image = transform.resize(image.astype(np.float32) / 255, (side, side), anti_aliasing=True)
        images.append(image if (i // len(PHOTOS)) % 2 == 0 else image[:, ::-1])
    return (np.stack(images) * 2 - 1).astype(np.float32)


def mobilenet_v2(x: np.ndarray, classes: int = 10, seed: int = 0) -> keras.Model:
    """MobileNetV2 with random weights for inputs shaped like ``x``, its batch-norm moving
    statistics set to those of ``x`` (freshly initialised, its activations shrink block after
    block until every explanation is zero; a short training run would set them like this)."""
    keras.utils.set_random_seed(seed)
    model = keras.applications.MobileNetV2(weights=None, input_shape=x.shape[1:], classes=classes)
    batch_norm_statistics(model, x)
    return model


def batch_norm_statistics(model: keras.Model, x: np.ndarray) -> None:
    """Set every batch norm's moving statistics to those of ``x``."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0  # the moving statistics become this batch's
    model(x, training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum


def digits_cnn(size: int = 28, num_classes: int = 10, seed: int = 0, activation: str = "relu", pooling: str = "max") -> keras.Model:
    """A small CNN for :func:`digits`: three conv layers, global pooling, dropout, softmax.

    ``activation="swish"`` with ``pooling="average"`` makes the network smooth (no kinks
    along an integration path), which is how Integrated Gradients' quadrature is tested.
    """
    init = keras.initializers.GlorotUniform(seed=seed)
    pool = {"max": keras.layers.MaxPooling2D, "average": keras.layers.AveragePooling2D}[pooling]
    return keras.Sequential(
        [
            keras.Input((size, size, 1), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation=activation, kernel_initializer=init, name="conv1"),
            pool(2, name="pool1"),
            keras.layers.Conv2D(32, 3, padding="same", activation=activation, kernel_initializer=init, name="conv2"),
            pool(2, name="pool2"),
            keras.layers.Conv2D(64, 3, padding="same", activation=activation, kernel_initializer=init, name="conv3"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dropout(0.2, seed=seed, name="dropout"),
            keras.layers.Dense(num_classes, activation="softmax", kernel_initializer=init, name="classes"),
        ],
        name="digits_cnn",
    )


def planted_patches(n: int, size: int = 32, patch: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise images whose class is the colour of one small planted patch.

    Each ``size × size`` RGB image is textured grey noise with a ``patch × patch`` square
    of one of three colours at a random place; the class is the colour. Returns
    ``(images (n, size, size, 3), labels (n,), masks (n, size, size) of the patch)``.
    """
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.2, 0.6, (n, size, size, 1)).astype(np.float32).repeat(3, axis=-1)
    images += rng.normal(0, 0.05, images.shape).astype(np.float32)
    labels = rng.integers(0, len(PATCH_COLOURS), n)
    tops, lefts = rng.integers(0, size - patch + 1, (2, n))
    masks = np.zeros((n, size, size), bool)
    for i in range(n):  # data generation, not a hot path
        masks[i, tops[i] : tops[i] + patch, lefts[i] : lefts[i] + patch] = True
    images[masks] = np.repeat(PATCH_COLOURS[labels], patch * patch, axis=0)
    return np.clip(images, 0, 1), labels.astype(np.int64), masks


def patch_cnn(size: int = 32, seed: int = 0) -> keras.Model:
    """A small CNN for :func:`planted_patches` (softmax over the three colours)."""
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [
            keras.Input((size, size, 3), name="image"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", kernel_initializer=init, name="conv1"),
            keras.layers.Conv2D(16, 3, padding="same", activation="relu", kernel_initializer=init, name="conv2"),
            keras.layers.GlobalMaxPooling2D(name="gmp"),
            keras.layers.Dense(len(PATCH_COLOURS), activation="softmax", kernel_initializer=init, name="classes"),
        ],
        name="patch_cnn",
    )


# -- text: a generated sentiment corpus -------------------------------------------------------------
_SUBJECTS = ["the film", "this movie", "the plot", "the acting", "the story", "the ending", "the soundtrack", "the cast"]
_POSITIVE = ["wonderful", "great", "brilliant", "moving", "delightful", "superb", "charming", "excellent"]
_NEGATIVE = ["terrible", "boring", "awful", "dull", "weak", "painful", "bland", "dreadful"]
_TEMPLATES = ["{s} was {a}", "{s} is really {a}", "i thought {s} was {a}", "honestly {s} felt {a}", "{s} was {a} and {b}", "{s} was not {n}"]


def sentiment_corpus(n: int = 400, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """``n`` short English reviews from templates, labelled 1 (positive) or 0 (negative).

    A review's sentiment comes from its adjectives; "was not <adjective>" flips it, so a
    bag-of-words model has to weigh words, not only count them.
    """
    rng = np.random.default_rng(seed)
    texts, labels = [], rng.integers(0, 2, n)
    for label in labels:  # data generation, not a hot path
        same, other = (_POSITIVE, _NEGATIVE) if label else (_NEGATIVE, _POSITIVE)
        template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
        texts.append(template.format(s=rng.choice(_SUBJECTS), a=rng.choice(same), b=rng.choice(same), n=rng.choice(other)))
    return texts, labels.astype(np.int64)


def text_vocabulary(texts: list[str]) -> list[str]:
    """Sorted words of ``texts`` after the padding token ``""`` (id 0) and ``"[UNK]"`` (id 1)."""
    return ["", "[UNK]"] + sorted({word for text in texts for word in text.split()})


def encode_texts(texts: list[str], vocabulary: list[str], length: int = 8) -> np.ndarray:
    """``(n, length)`` int32 token ids (unknown words → 1, zero-padded, truncated)."""
    index = {word: i for i, word in enumerate(vocabulary)}
    ids = np.zeros((len(texts), length), np.int32)
    for i, text in enumerate(texts):
        words = [index.get(word, 1) for word in text.split()][:length]
        ids[i, : len(words)] = words
    return ids


def text_cnn(vocabulary_size: int, length: int = 8, seed: int = 0) -> keras.Model:
    """Embedding, a width-2 convolution (so "not <adjective>" can flip), max pooling, softmax."""
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [
            keras.Input((length,), dtype="int32", name="tokens"),
            keras.layers.Embedding(vocabulary_size, 16, embeddings_initializer=keras.initializers.RandomUniform(-0.05, 0.05, seed=seed), name="embedding"),
            keras.layers.Conv1D(32, 2, padding="same", activation="relu", kernel_initializer=init, name="bigrams"),
            keras.layers.GlobalMaxPooling1D(name="pool"),
            keras.layers.Dense(2, activation="softmax", kernel_initializer=init, name="sentiment"),
        ],
        name="text_cnn",
    )


# -- a shortcut: a watermark that predicts the label -------------------------------------------------
WATERMARK = (slice(1, 6), slice(1, 6))  # a 5×5 square in the top-left corner of a 28×28 digit


def watermarked_digits(agreement: float = 0.95, watermark: bool = True, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`digits` as odd (1) versus even (0), with a bright square stamped on ``agreement``
    of the odd digits and ``1 - agreement`` of the even ones (a shortcut to the label).

    ``watermark=False`` leaves the training images clean (the fix); the test images are
    always stamped the same way, so the two models are explained on the same inputs.
    Returns ``(x_train, y_train, x_test, y_test, mask)``, ``mask`` the ``(28, 28)`` square.
    """
    x_train, y_train, x_test, y_test = digits(seed=seed)
    rng = np.random.default_rng(seed)
    mask = np.zeros(x_train.shape[1:3], bool)
    mask[WATERMARK] = True
    parts = []
    for x, y, stamp in ((x_train, y_train, watermark), (x_test, y_test, True)):
        odd = (y % 2).astype(np.int64)
        if stamp:
            marked = rng.uniform(size=len(y)) < np.where(odd == 1, agreement, 1 - agreement)
            x = x.copy()
            x[marked] = np.where(mask[..., None], 1.0, x[marked])
        parts += [x, odd]
    return (*parts, mask)
