"""Gradient methods against analytic answers, the completeness axiom and planted signals."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tf_explain_kit as tek
from tf_explain_kit import examples
from tf_explain_kit.imaging import peak_location, spatial_map


@pytest.fixture(scope="module")
def linear():
    """A linear softmax classifier: its logits are x @ w + b."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    w, _ = model.layers[0].get_weights()
    model.layers[0].set_weights([w, np.array([0.3, -0.2, 0.1], np.float32)])
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    return model, x, model.layers[0].get_weights()[0]


def test_linear_model_attributions_are_exact(linear):
    model, x, w = linear
    targets = np.array([0, 1, 2, 0, 1, 2])
    column = w[:, targets].T  # (N, 5): the weights of each sample's explained logit

    np.testing.assert_allclose(tek.Saliency(model, signed=True).explain(x, targets).attributions, column, rtol=1e-6)
    np.testing.assert_allclose(tek.Saliency(model).explain(x, targets).attributions, np.abs(column), rtol=1e-6)
    np.testing.assert_allclose(tek.GradientInput(model).explain(x, targets).attributions, x * column, rtol=1e-5, atol=1e-7)
    baseline = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    ig = tek.IntegratedGradients(model, steps=3, baseline=baseline).explain(x, targets)
    np.testing.assert_allclose(ig.attributions, (x - baseline) * column, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ig.extras["convergence_delta"], 0, atol=1e-5)


def test_contrast_explains_the_difference_of_two_logits(linear):
    model, x, w = linear
    explanation = tek.GradientInput(model).explain(x, targets=2, contrast=0)
    np.testing.assert_allclose(explanation.attributions, x * (w[:, 2] - w[:, 0]), rtol=1e-5, atol=1e-6)
    logits = x @ w + np.array([0.3, -0.2, 0.1])
    np.testing.assert_allclose(explanation.extras["score"], logits[:, 2] - logits[:, 0], rtol=1e-5)


def test_probabilities_can_be_explained_instead_of_logits(linear):
    model, x, w = linear
    p = model(x).numpy()
    explanation = tek.Saliency(model, signed=True, score="probabilities").explain(x, targets=1)
    # d softmax_1 / dx = p_1 * (w_1 - sum_c p_c w_c)
    expected = p[:, 1:2] * (w[:, 1][None] - p @ w.T)
    np.testing.assert_allclose(explanation.attributions, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(explanation.extras["score"], p[:, 1], rtol=1e-6)


def test_single_sigmoid_output_explains_its_logit():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    w = model.layers[0].get_weights()[0][:, 0]
    explanation = tek.GradientInput(model).explain(x)
    np.testing.assert_array_equal(explanation.targets, np.zeros(5))
    np.testing.assert_allclose(explanation.attributions, x * w, rtol=1e-5, atol=1e-7)
    assert explanation.predictions.shape == (5, 1) and ((explanation.predictions > 0) & (explanation.predictions < 1)).all()


@pytest.fixture(scope="module")
def smooth_digits_model(digits_data):
    """The digits CNN with swish and average pooling: smooth along any path."""
    keras.utils.set_random_seed(0)
    model = examples.digits_cnn(activation="swish", pooling="average")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits_data[0], digits_data[1], epochs=12, batch_size=32, verbose=0)
    assert model.evaluate(digits_data[2], digits_data[3], verbose=0)[1] > 0.9
    return model


def _relative_delta(explanation):
    difference = explanation.extras["score"] - explanation.extras["baseline_score"]
    return np.abs(explanation.extras["convergence_delta"]) / np.abs(difference)


@pytest.mark.parametrize("baseline", ["zeros", "blur", "uniform"])
def test_integrated_gradients_is_complete_on_a_digits_cnn(baseline, smooth_digits_model, digits_model, digits_data):
    x = digits_data[2][:32]
    smooth = _relative_delta(tek.IntegratedGradients(smooth_digits_model, steps=64, baseline=baseline).explain(x))
    assert smooth.max() < 0.01 and np.median(smooth) < 1e-3, (smooth.max(), np.median(smooth))
    # ReLU and max pooling put kinks on the path: quadrature converges only as 1/steps.
    relu = _relative_delta(tek.IntegratedGradients(digits_model, steps=64, baseline=baseline).explain(x))
    print(f"{baseline}: relative delta smooth max {smooth.max():.2e}; ReLU median {np.median(relu):.2e}, max {relu.max():.2e}")
    assert np.median(relu) < 0.01 and relu.max() < 0.05


def test_integrated_gradients_warns_when_steps_are_too_few(digits_model, digits_data):
    with pytest.warns(RuntimeWarning, match="increase steps"):
        tek.IntegratedGradients(digits_model, steps=1, baseline="uniform").explain(digits_data[2][:8])


def test_integration_rules_agree_with_enough_steps(digits_model, digits_data):
    x = digits_data[2][:4]
    reference = tek.IntegratedGradients(digits_model, steps=256).explain(x).attributions
    for rule in ("riemann_midpoint", "riemann_trapezoid"):
        other = tek.IntegratedGradients(digits_model, steps=256, integration=rule).explain(x).attributions
        assert np.abs(other - reference).sum() / np.abs(reference).sum() < 0.02, rule


# Planted signal: the class is the colour of a 6×6 patch; the explanation must point at it.
HIT_RATES = {
    "gradcam": (lambda m: tek.GradCAM(m), 0.90),
    "gradcam_plus_plus": (lambda m: tek.GradCAMPlusPlus(m), 0.90),
    "occlusion": (lambda m: tek.Occlusion(m, patch_size=6, stride=3), 0.90),
    "integrated_gradients": (lambda m: tek.IntegratedGradients(m, steps=32), 0.75),
    "saliency": (lambda m: tek.Saliency(m), 0.60),  # chance: 36 / 1024 pixels ≈ 0.04 of the image
    "smoothgrad": (lambda m: tek.SmoothGrad(m, samples=16), 0.60),
}


@pytest.mark.parametrize("method", HIT_RATES)
def test_planted_patch_is_found(method, patch_model, patch_data):
    x, _, masks = patch_data[1]
    build, threshold = HIT_RATES[method]
    attributions = build(patch_model).explain(x).attributions
    row, column = peak_location(spatial_map(attributions), window=6).T
    hit_rate = masks[np.arange(len(x)), row, column].mean()
    print(f"{method}: planted patch found in {hit_rate:.1%} of {len(x)} held-out samples")
    assert hit_rate >= threshold


def test_text_model_explained_at_the_embedding_layer():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((7,), dtype="int32"), keras.layers.Embedding(20, 4, name="embedding"), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)]
    )
    tokens = np.random.default_rng(0).integers(1, 20, (5, 7)).astype(np.int32)
    explanation = tek.IntegratedGradients(model, steps=8, layer="embedding").explain(tokens, targets=1)
    assert explanation.attributions.shape == (5, 7)
    # The model is linear in the embeddings, so IG is exact and complete.
    embeddings = model.get_layer("embedding").get_weights()[0]
    w = model.layers[-1].get_weights()[0][:, 1]
    expected = (embeddings[tokens] - embeddings[0]) @ w / 7
    np.testing.assert_allclose(explanation.attributions, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(explanation.extras["convergence_delta"], 0, atol=1e-5)


class TokenAndPositionEmbedding(keras.layers.Layer):
    """The Keras Transformer tutorial's embedding: token and position embeddings added."""

    def __init__(self, maxlen, vocabulary, width, **kwargs):
        super().__init__(**kwargs)
        self.token_emb = keras.layers.Embedding(vocabulary, width)
        self.pos_emb = keras.layers.Embedding(maxlen, width)

    def call(self, x):
        return self.token_emb(x) + self.pos_emb(keras.ops.arange(0, keras.ops.shape(x)[-1], 1))


def test_layer_nested_in_a_custom_layer_by_path_or_object():
    """IG and expected gradients at the token embedding inside a custom layer: one value per
    token, exact (the model is linear in it: the position embedding cancels against the
    baseline's)."""
    keras.utils.set_random_seed(0)
    ids = keras.Input((6,), dtype="int32")
    embed = TokenAndPositionEmbedding(6, 30, 4, name="token_and_position_embedding")
    model = keras.Model(ids, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling1D()(embed(ids))))
    tokens = np.random.default_rng(0).integers(1, 30, (3, 6)).astype(np.int32)
    by_path = tek.IntegratedGradients(model, steps=4, layer="token_and_position_embedding/token_emb").explain(tokens, targets=0)
    by_object = tek.IntegratedGradients(model, steps=4, layer=embed.token_emb).explain(tokens, targets=0)
    embeddings, w = embed.token_emb.get_weights()[0], model.layers[-1].get_weights()[0][:, 0]
    np.testing.assert_allclose(by_path.attributions, (embeddings[tokens] - embeddings[0]) @ w / 6, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(by_object.attributions, by_path.attributions)
    expected_gradients = tek.GradientShap(model, np.zeros((1, 6), np.int32), samples=3, layer="token_and_position_embedding/token_emb").explain(tokens, targets=0)
    np.testing.assert_allclose(expected_gradients.attributions, by_path.attributions, atol=1e-6)  # linear: every draw gives IG's
    with pytest.raises(ValueError, match=r"layer: no layer 'token_emb2' .* Candidates: .*'token_and_position_embedding/token_emb', 'token_and_position_embedding/pos_emb'"):
        tek.IntegratedGradients(model, layer="token_emb2")
    with pytest.raises(TypeError, match=r"embedding layers: 'token_and_position_embedding/token_emb', 'token_and_position_embedding/pos_emb'"):
        tek.IntegratedGradients(model).explain(tokens)
