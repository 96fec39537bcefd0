"""LIME: faithful to lime, finds planted signal, deterministic, leaves global state alone."""

from __future__ import annotations

import random

import keras
import numpy as np
import pytest
import tensorflow as tf
from lime import lime_image, lime_tabular, lime_text
from skimage import data as skdata
from skimage.transform import resize

from tf_explain_kit import examples
from tf_explain_kit.explainers.lime import LimeImage, LimeTabular, LimeText, auto_segmentation

WORDS = {"good": 1, "great": 1, "fine": 1, "bad": 0, "awful": 0, "poor": 0}
FILLER = ["the", "movie", "was", "plot", "and", "actors", "really", "quite"]


def _lime_weights(local_exp: list, size: int) -> np.ndarray:
    weights = np.zeros(size)
    for feature, weight in local_exp:
        weights[feature] = weight
    return weights


def _probabilities(explainer):
    return lambda batch: explainer.adapter.forward(np.asarray(batch, np.float32))[0]


@pytest.fixture(scope="module")
def reviews():
    """Generated two-class texts: the class is the sentiment word planted in filler."""
    rng = np.random.default_rng(0)
    words, labels = list(WORDS), list(WORDS.values())
    texts, y = [], []
    for _ in range(400):
        k = rng.integers(len(words))
        filler = list(rng.choice(FILLER, rng.integers(3, 7)))
        filler.insert(rng.integers(len(filler) + 1), words[k])
        texts.append(" ".join(filler))
        y.append(labels[k])
    return texts, np.array(y)


@pytest.fixture(scope="module")
def vectorizer(reviews):
    layer = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=12)
    layer.adapt(reviews[0])
    return layer


@pytest.fixture(scope="module")
def text_models(reviews, vectorizer):
    """One trained head (embedding, pooling, softmax) behind token ids and behind strings."""
    head = [
        keras.layers.Embedding(50, 8, embeddings_initializer=keras.initializers.RandomUniform(seed=1)),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(2, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed=0)),
    ]
    ids_model = keras.Sequential([keras.Input((12,), dtype="int64")] + head)
    ids_model.compile(keras.optimizers.Adam(3e-2), "sparse_categorical_crossentropy")
    texts, y = reviews
    ids_model.fit(_ids(vectorizer, texts), y, epochs=15, batch_size=64, verbose=0)
    strings = keras.Input((1,), dtype="string")
    h = vectorizer(strings)
    for layer in head:
        h = layer(h)
    return ids_model, keras.Model(strings, h)


def _ids(vectorizer, texts) -> np.ndarray:
    return np.asarray(vectorizer(np.array(texts)))


# -- images ---------------------------------------------------------------------------------


def test_lime_image_equals_lime_on_digits(digits_model, digits_data):
    """Same segmentation, settings and seed (and the same probability function) → lime's weights."""
    x = digits_data[2][:4]
    explainer = LimeImage(digits_model, num_samples=500, seed=3, score="probabilities")
    ours = explainer.explain(x)
    probabilities = lambda batch: _probabilities(explainer)(batch[..., :1])  # lime makes grey images RGB  # noqa: E731
    worst = 0.0
    for i, image in enumerate(x):
        target = int(ours.targets[i])
        segments = ours.extras["segments"][i]
        reference = lime_image.LimeImageExplainer(random_state=3).explain_instance(
            image[..., 0], probabilities, labels=(target,), top_labels=None, num_samples=500, batch_size=100, segmentation_fn=lambda _: segments
        )
        expected = _lime_weights(reference.local_exp[target], segments.max() + 1)
        np.testing.assert_allclose(ours.attributions[i], expected[segments], atol=1e-6)
        np.testing.assert_allclose(ours.extras["intercept"][i], reference.intercept[target], atol=1e-6)
        np.testing.assert_allclose(ours.extras["r2"][i], reference.score, atol=1e-6)
        worst = max(worst, float(np.abs(ours.attributions[i] - expected[segments]).max()))
    assert worst < 1e-6  # measured: about 1e-10


def test_lime_image_rgb_equals_lime_with_hide_color(patch_model, patch_data):
    x = patch_data[1][0][:2]
    explainer = LimeImage(patch_model, num_samples=300, seed=1, hide_color=0.0, score="probabilities")
    ours = explainer.explain(x, targets=1)
    for i, image in enumerate(x):
        segments = ours.extras["segments"][i]
        reference = lime_image.LimeImageExplainer(random_state=1).explain_instance(
            image, _probabilities(explainer), labels=(1,), top_labels=None, hide_color=0.0, num_samples=300, batch_size=300, segmentation_fn=lambda _: segments
        )
        np.testing.assert_allclose(ours.attributions[i], _lime_weights(reference.local_exp[1], segments.max() + 1)[segments], atol=1e-6)


def _patch_iou(segments, mask, label):
    region = segments == label
    return (region & mask).sum() / (region | mask).sum()


def test_lime_image_finds_the_planted_patch(patch_model, patch_data):
    x, _, masks = patch_data[1]
    x, masks = x[:40], masks[:40]
    # hide_color=0: with lime's default (each superpixel's mean colour) a superpixel that is
    # exactly the uniform patch looks the same hidden or shown, so LIME cannot see it
    ex = LimeImage(patch_model, num_samples=400, hide_color=0.0).explain(x)
    ious = [_patch_iou(segments, mask, segments.flat[attribution.argmax()]) for attribution, segments, mask in zip(ex.attributions, ex.extras["segments"], masks)]
    assert np.mean(np.array(ious) >= 0.9) >= 0.95, ious  # the top superpixel is the patch


def test_auto_segmentation_retries_when_slic_collapses_on_noise():
    """Textured noise collapses SLIC at compactness 10 (1–8 segments on 32×32); the retry
    with larger compactness gives the planted 6×6 patch its own superpixel."""
    from skimage.segmentation import slic

    images, _, masks = examples.planted_patches(60, seed=3)
    collapsed = [len(np.unique(slic(image, n_segments=34, compactness=10.0, start_label=0))) for image in images]
    assert max(collapsed) < 34 // 2, collapsed  # the first try fails on every image
    for image, mask in zip(images, masks):
        segments = auto_segmentation(image)
        assert 14 <= len(np.unique(segments)) <= 20  # SLIC's superpixels, not the 6×6 grid
        labels, counts = np.unique(segments[mask], return_counts=True)
        assert _patch_iou(segments, mask, labels[counts.argmax()]) >= 0.9


def test_auto_segmentation_sizes(digits_data):
    digits = digits_data[2][:50]
    counts = [len(np.unique(auto_segmentation(image))) for image in digits]
    assert min(counts) >= 10, counts
    for name in ("astronaut", "chelsea", "coffee"):
        photo = resize(getattr(skdata, name)(), (224, 224), anti_aliasing=True).astype(np.float32)
        segments = auto_segmentation(photo)
        assert 50 <= len(np.unique(segments)) <= 150, (name, len(np.unique(segments)))
        assert segments.min() == 0


def test_segmentations_are_cached_and_callables_renumbered(digits_model, digits_data):
    calls = []

    def stripes(image):  # labels 1..4 (not from 0): renumbered, no superpixel skipped
        calls.append(1)
        return np.repeat(np.arange(1, 5), 7)[None, :].repeat(image.shape[0], axis=0)

    explainer = LimeImage(digits_model, num_samples=100, segmentation=stripes)
    x = digits_data[2][:3]
    first = explainer.explain(x)
    again = explainer.explain(x)
    assert len(calls) == 3
    assert first.extras["segments"].min() == 0 and first.extras["segments"].max() == 3
    np.testing.assert_array_equal(first.attributions, again.attributions)


def test_lime_image_grayscale_without_channel_axis():
    model = keras.Sequential([keras.Input((16, 16)), keras.layers.Flatten(), keras.layers.Dense(3, kernel_initializer=keras.initializers.GlorotUniform(seed=0))])
    x = np.random.default_rng(0).uniform(size=(2, 16, 16)).astype(np.float32)
    ex = LimeImage(model, num_samples=50).explain(x)
    assert ex.attributions.shape == (2, 16, 16)
    assert ex.extras["num_superpixels"].min() >= 10


def test_lime_image_deterministic_and_global_state_untouched(digits_model, digits_data):
    x = digits_data[2][:2]
    np.random.seed(123)
    random.seed(123)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    a = LimeImage(digits_model, num_samples=200, seed=5).explain(x)
    b = LimeImage(digits_model, num_samples=200, seed=5).explain(x)
    c = LimeImage(digits_model, num_samples=200, seed=6).explain(x)
    after = np.random.get_state()
    assert all(np.array_equal(u, v) if isinstance(u, np.ndarray) else u == v for u, v in zip(numpy_state, after))
    assert random.getstate() == python_state
    np.testing.assert_array_equal(a.attributions, b.attributions)
    assert not np.array_equal(a.attributions, c.attributions)
    # one sample's explanation does not depend on the others in the batch
    np.testing.assert_allclose(LimeImage(digits_model, num_samples=200, seed=5).explain(x[1:]).attributions[0], a.attributions[1], atol=1e-6)


def test_lime_image_errors(digits_model):
    with pytest.raises(ValueError, match="segmentation: expected 'auto' or a callable"):
        LimeImage(digits_model, segmentation="quickshift")
    with pytest.raises(ValueError, match="num_samples: expected an int of at least 2, got 1"):
        LimeImage(digits_model, num_samples=1)
    with pytest.raises(ValueError, match="seed: expected a non-negative int"):
        LimeImage(digits_model, seed=-1)
    with pytest.raises(ValueError, match=r"segmentation: expected integer labels of shape \(28, 28\)"):
        LimeImage(digits_model, segmentation=lambda image: np.zeros((8, 8), int)).explain(np.zeros((1, 28, 28, 1), np.float32))


# -- tables ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    x = (x - x.mean(axis=0)) / x.std(axis=0)
    init = keras.initializers.GlorotUniform(seed=0)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(16, activation="relu", kernel_initializer=init), keras.layers.Dense(2, activation="softmax", kernel_initializer=init)])
    return x, list(data.feature_names), model


def test_lime_tabular_equals_lime(cancer):
    x, names, model = cancer
    explainer = LimeTabular(model, x, feature_names=names, num_samples=800, seed=2, categorical_features=None, score="probabilities")
    ours = explainer.explain(x[:3], targets=1)
    assert ours.attributions.shape == (3, 30)
    assert ours.extras["feature_names"] == names
    for i in range(3):
        reference = lime_tabular.LimeTabularExplainer(x, feature_names=names, random_state=2).explain_instance(
            x[i], _probabilities(explainer), labels=(1,), num_features=30, num_samples=800
        )
        np.testing.assert_allclose(ours.attributions[i], _lime_weights(reference.local_exp[1], 30), atol=1e-6)
        np.testing.assert_allclose(ours.extras["intercept"][i], reference.intercept[1], atol=1e-6)


def test_lime_tabular_categorical_deterministic_and_errors(cancer):
    x, names, model = cancer
    table = x[:, :4].copy()
    table[:, 3] = (table[:, 3] > 0).astype(np.float32)  # a categorical column
    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, kernel_initializer=keras.initializers.GlorotUniform(seed=0))])
    numpy_state = np.random.get_state()
    a = LimeTabular(small, table, num_samples=300, categorical_features=[3]).explain(table[:2])
    b = LimeTabular(small, table, num_samples=300, categorical_features=[3]).explain(table[:2])
    assert np.array_equal(np.random.get_state()[1], numpy_state[1])
    np.testing.assert_array_equal(a.attributions, b.attributions)
    assert np.all(a.attributions != 0)
    with pytest.raises(ValueError, match=r"feature_names: expected 4 names"):
        LimeTabular(small, table, feature_names=["a"])
    with pytest.raises(ValueError, match=r"categorical_features: expected column indices from 0 to 3"):
        LimeTabular(small, table, categorical_features=[7])
    with pytest.raises(ValueError, match=r"training_data: expected a numeric \(M, F\) table or \(M, T, F\) series"):
        LimeTabular(small, table[0])


# -- texts ----------------------------------------------------------------------------------


def _lime_reference(explainer, text, target, split_expression, num_samples, seed):
    """lime's own LimeTextExplainer with our compiled forward as its probability function."""
    probabilities = lambda strings: explainer.adapter.forward(explainer.adapter.prepare(list(strings)))[0]  # noqa: E731
    reference = lime_text.LimeTextExplainer(split_expression=split_expression, random_state=seed)
    return dict(reference.explain_instance(text, probabilities, labels=(target,), num_features=30, num_samples=num_samples).as_list(label=target))


def test_lime_text_equals_lime_and_finds_the_sentiment_word(text_models):
    string_model = text_models[1]
    texts = ["the movie was awful and the actors", "really good plot", "quite poor movie the plot was poor"]
    explainer = LimeText(string_model, num_samples=500, seed=4, score="probabilities")
    ours = explainer.explain(texts)
    for i, text in enumerate(texts):
        weights = _lime_reference(explainer, text, int(ours.targets[i]), r"\W+", 500, 4)  # lime's default split: the same words here
        tokens = ours.extras["tokens"][i]
        assert tokens == text.split()
        np.testing.assert_allclose(ours.attributions[i, : len(tokens)], [weights[t] for t in tokens], atol=1e-6)
        sentiment = [t for t in tokens if t in WORDS]
        assert tokens[int(np.argmax(ours.attributions[i, : len(tokens)]))] in sentiment


def test_lime_text_weights_sit_on_words_with_punctuation_and_html(text_models):
    """The model's own tokens (TextVectorization: lower case, punctuation stripped, split on
    whitespace), shown as written: each weight is lime's weight of that word, and the planted
    word ("Great!" → "great") gets the largest weight at its position."""
    string_model = text_models[1]
    texts = ["<b>the</b> movie, was Great! , really", "quite <i>the</i> plot... poor, (actors)"]
    explainer = LimeText(string_model, num_samples=400, seed=1, score="probabilities")
    ours = explainer.explain(texts, targets=[1, 0])
    assert ours.extras["tokens"] == [["<b>the</b>", "movie,", "was", "Great!", "really"], ["quite", "<i>the</i>", "plot...", "poor,", "(actors)"]]
    assert ours.attributions.shape == (2, 5)
    words = lambda text: [t.shown for t in explainer.words.tokens(text)]  # noqa: E731
    for i, text in enumerate(texts):
        weights = _lime_reference(explainer, text, [1, 0][i], words, 400, 1)
        np.testing.assert_allclose(ours.attributions[i], [weights[t] for t in ours.extras["tokens"][i]], atol=1e-6)
    assert int(np.argmax(ours.attributions[0])) == 3  # "Great!" for class 1
    assert int(np.argmax(ours.attributions[1])) == 3  # "poor," for class 0


def test_lime_text_takes_every_form_of_texts(text_models):
    string_model = text_models[1]
    texts = ["awful movie", "the plot was great", "really good", "poor actors"]
    explainer = LimeText(string_model, num_samples=100, seed=0)
    expected = explainer.explain(texts).attributions
    forms = [np.array(texts), np.array(texts)[:, None], np.array(texts, dtype=object), [t.encode() for t in texts], tf.data.Dataset.from_tensor_slices(np.array(texts)[:, None]).batch(3)]
    for form in forms:
        explanation = explainer.explain(form)
        assert len(explanation.targets) == 4
        np.testing.assert_array_equal(explanation.attributions, expected)


def test_strings_of_any_length_share_one_compiled_function(text_models):
    adapter = LimeText(text_models[1], score="probabilities").adapter
    for text in ("good", "a much longer review of the movie"):
        adapter.forward(adapter.prepare(np.array([[text]])))
    forward = [f for key, f in adapter._backend._functions.items() if key[0] == "forward"]
    assert len(forward) == 1 and forward[0].experimental_get_tracing_count() == 1


def test_lime_text_token_id_model_with_vocabulary_or_tokenizer(text_models, vectorizer):
    """On token ids with the vocabulary, or on texts with a tokenizer, LIME gives the string
    model's weights (the same head): removing a word removes its id."""
    ids_model, string_model = text_models
    texts = ["awful movie", "the plot was great"]
    with pytest.raises(TypeError, match="vocabulary: model .* takes token ids, not strings.*vocabulary=<token strings by id>"):
        LimeText(ids_model)
    same = LimeText(string_model, num_samples=200, score="probabilities").explain(texts)
    ours = LimeText(ids_model, num_samples=200, tokenizer=lambda strings: _ids(vectorizer, strings), score="probabilities").explain(texts)
    np.testing.assert_allclose(ours.attributions, same.attributions, atol=1e-5)
    assert ours.attributions.shape == (2, 4) and ours.attributions[0, 2:].tolist() == [0, 0]
    by_ids = LimeText(ids_model, num_samples=200, vocabulary=vectorizer.get_vocabulary(), score="probabilities").explain(_ids(vectorizer, texts))
    ids_too = LimeText(ids_model, num_samples=200, tokenizer=lambda strings: _ids(vectorizer, strings), score="probabilities").explain(_ids(vectorizer, texts))
    np.testing.assert_array_equal(ids_too.attributions, by_ids.attributions)  # a tokenizer-built LimeText on ids: words shown as ids
    assert ids_too.extras["tokens"][0] == [str(i) for i in _ids(vectorizer, texts)[0, :2]]
    assert by_ids.attributions.shape == (2, 12) and by_ids.extras["tokens"] == [["awful", "movie"], ["the", "plot", "was", "great"]]
    np.testing.assert_allclose(by_ids.attributions[:, :4], same.attributions, atol=1e-5)
    assert not by_ids.attributions[:, 4:].any()
    with pytest.raises(TypeError, match="inputs: LimeText on token-id model .* explains token ids"):
        LimeText(ids_model, vocabulary=vectorizer.get_vocabulary()).explain(np.ones((2, 12), np.float32))


def test_lime_text_on_front_padded_ids_keeps_the_padding_in_front(text_models, vectorizer):
    ids_model = text_models[0]
    ids = _ids(vectorizer, ["awful movie"])
    front = np.roll(ids, 10, axis=1)  # [0 ... 0 awful movie]
    explainer = LimeText(ids_model, num_samples=50, vocabulary=vectorizer.get_vocabulary())
    from tf_explain_kit.explainers.lime import _Document

    document = _Document.of_ids(front[0], explainer.words, 0)
    rows = document.perturbed(np.array([[True, False], [False, True]]))
    assert rows[:, :10].tolist() == [[0] * 10] * 2 and rows[:, 10:].tolist() == [[0, ids[0, 0]], [0, ids[0, 1]]]
    assert document.shown[10:] == ["awful", "movie"]


def test_lime_text_errors(text_models, vectorizer):
    ids_model, string_model = text_models
    with pytest.raises(TypeError, match="inputs: model input .* takes strings, got int64"):
        LimeText(string_model).explain(np.array([[3, 4, 5]]))
    with pytest.raises(ValueError, match="tokenizer: model .* takes strings and tokenises them itself"):
        LimeText(string_model, tokenizer=str.split)
    with pytest.raises(ValueError, match="vocabulary: model .* takes strings"):
        LimeText(string_model, vocabulary=["", "[UNK]"])
    with pytest.raises(TypeError, match="inputs: model input .* takes int64 \\(token ids\\), got strings"):
        LimeText(ids_model, vocabulary=vectorizer.get_vocabulary()).explain(["awful movie"])
    with pytest.raises(ValueError, match="has no tokens"):
        LimeText(string_model, num_samples=10, score="probabilities").explain(["..."])
