"""Sequences: time series (N, T, F) and token ids (N, T) through the region and
perturbation methods, checked against hand-computed maps, brute force and planted signals."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tf_explain_kit as tek

T, F, WINDOW = 32, 3, slice(12, 18)  # the planted window on feature 1


def planted_series(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise series; class 1 carries a +2 bump on feature 1 over ``WINDOW``."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, T, F)).astype(np.float32)
    y = rng.integers(0, 2, n)
    x[y == 1, WINDOW, 1] += 2.0
    return x, y


@pytest.fixture(scope="module")
def series_model():
    """A Conv1D classifier of the planted series, trained briefly (about 99% accuracy)."""
    keras.utils.set_random_seed(0)
    x, y = planted_series(800)
    model = keras.Sequential(
        [keras.Input((T, F)), keras.layers.Conv1D(8, 5, padding="same", activation="relu", name="c1"), keras.layers.Conv1D(8, 3, strides=2, padding="same", activation="relu", name="c2"), keras.layers.GlobalMaxPooling1D(), keras.layers.Dense(2, name="head")]
    )
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    x_test, y_test = planted_series(200, seed=1)
    accuracy = model.evaluate(x_test, y_test, verbose=0)[1]
    assert accuracy > 0.95, f"series model trained to only {accuracy:.3f}"
    return model


def _linear_conv1d(kernel: int, strides: int) -> keras.Model:
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((T, F)), keras.layers.Conv1D(4, kernel, strides=strides, padding="same", name="conv"), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(3, name="head")])


def _hand_cam(model: keras.Model, x: np.ndarray, target: int, plus_plus: bool = False) -> np.ndarray:
    """Grad-CAM of conv → mean over time → dense, by hand: ∂score/∂A[t, k] = V[k, c] / T'."""
    activations = np.asarray(model.get_layer("conv")(x))
    steps = activations.shape[1]
    grads = np.broadcast_to(model.get_layer("head").get_weights()[0][:, target] / steps, activations.shape)
    if plus_plus:
        g2, g3 = grads**2, grads**3
        alpha = g2 / (2 * g2 + activations.sum(axis=1, keepdims=True) * g3)
        weights = (alpha * np.maximum(grads, 0)).sum(axis=1)
    else:
        weights = grads.mean(axis=1)
    cam = np.maximum(np.einsum("ntk,nk->nt", activations, weights), 0)
    centres = np.clip((np.arange(T) + 0.5) * steps / T - 0.5, 0, steps - 1)  # linear, half-step centres
    return np.stack([np.interp(centres, np.arange(steps), row) for row in cam])


@pytest.mark.parametrize("explainer", [tek.GradCAM, tek.GradCAMPlusPlus])
@pytest.mark.parametrize("strides", [1, 4])
def test_gradcam_on_conv1d_equals_the_hand_computed_map(explainer, strides):
    model = _linear_conv1d(3, strides)
    x = np.random.default_rng(0).normal(size=(5, T, F)).astype(np.float32)
    ex = explainer(model).explain(x, targets=2)
    expected = _hand_cam(model, x, 2, plus_plus=explainer is tek.GradCAMPlusPlus)
    assert ex.attributions.shape == (5, T) and ex.extras["layer"] == "conv"
    assert (expected.max(axis=1) > 0.01).all()
    np.testing.assert_allclose(ex.attributions, expected, rtol=1e-4, atol=1e-5)


def test_gradcam_finds_the_planted_window(series_model):
    x, y = planted_series(64, seed=2)
    x = x[y == 1]
    for explainer in (tek.GradCAM(series_model), tek.GradCAMPlusPlus(series_model)):
        ex = explainer.explain(x, targets=1)
        assert ex.extras["layer"] == "c2"  # the last Conv1D
        inside = ex.attributions[:, WINDOW].mean(axis=1)
        outside = np.delete(ex.attributions, np.arange(T)[WINDOW], axis=1).mean(axis=1)
        assert (inside > outside).mean() >= 0.9, (inside, outside)


def test_gradcam_over_tokens_of_an_embedding_conv1d_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((10,), dtype="int32"), keras.layers.Embedding(50, 8), keras.layers.Conv1D(6, 3, padding="valid", activation="relu", name="conv"), keras.layers.GlobalMaxPooling1D(), keras.layers.Dense(2)])
    ids = np.random.default_rng(0).integers(1, 50, (4, 10))
    ex = tek.GradCAM(model).explain(ids)
    assert ex.attributions.shape == (4, 10) and ex.extras["layer"] == "conv"
    assert np.isfinite(ex.attributions).all() and (ex.attributions >= 0).all() and ex.attributions.any(axis=1).all()


def test_gradcam_refuses_models_without_a_convolution_at_construction():
    mlp = keras.Sequential([keras.Input((T * F,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, name="head")])
    with pytest.raises(ValueError, match=r"has no layer with a 4-D \(N, h, w, channels\) or 3-D \(N, steps, channels\) output; GradCAM needs .* Use Saliency, IntegratedGradients or Occlusion"):
        tek.GradCAM(mlp)
    with pytest.raises(ValueError, match=r"layer: 'head' has output shape \(N, 3\), not \(N, h, w, channels\) or \(N, steps, channels\)\. Choose a convolutional layer: 'conv'"):
        tek.GradCAMPlusPlus(_linear_conv1d(3, 1), layer="head")


# -- Occlusion ----------------------------------------------------------------------------------
def _score(model: keras.Model, x: np.ndarray, target: int) -> np.ndarray:
    return np.asarray(model(x))[:, target]


def test_occlusion_windows_over_time_equal_brute_force_drops(series_model):
    x = planted_series(3, seed=4)[0]
    ex = tek.Occlusion(series_model, patch_size=4, stride=4).explain(x, targets=1)
    per_feature = tek.Occlusion(series_model, patch_size=(8, 1), stride=(8, 1), fill=0.5).explain(x, targets=1)
    assert ex.attributions.shape == (3, T) and per_feature.attributions.shape == (3, T, F)
    full = _score(series_model, x, 1)
    for start in range(0, T, 4):
        hidden = x.copy()
        hidden[:, start : start + 4] = 0.0
        np.testing.assert_allclose(ex.attributions[:, start : start + 4], np.repeat((full - _score(series_model, hidden, 1))[:, None], 4, axis=1), rtol=1e-4, atol=1e-4)
    for start in range(0, T, 8):
        for feature in range(F):
            hidden = x.copy()
            hidden[:, start : start + 8, feature] = 0.5
            np.testing.assert_allclose(per_feature.attributions[:, start : start + 8, feature], np.repeat((full - _score(series_model, hidden, 1))[:, None], 8, axis=1), rtol=1e-4, atol=1e-4)


def test_occlusion_finds_the_planted_window(series_model):
    x, y = planted_series(64, seed=5)
    ex = tek.Occlusion(series_model, patch_size=(6, 1), stride=(2, 1)).explain(x[y == 1], targets=1)
    peak = np.stack(np.unravel_index(ex.attributions.reshape(len(ex.attributions), -1).argmax(axis=1), (T, F)), axis=1)
    inside = (peak[:, 1] == 1) & (peak[:, 0] >= WINDOW.start) & (peak[:, 0] < WINDOW.stop)
    assert inside.mean() >= 0.9, peak


def test_occlusion_over_tokens_replaces_them_by_the_pad_id():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(20, 4), keras.layers.Flatten(), keras.layers.Dense(2)])
    ids = np.random.default_rng(0).integers(1, 20, (3, 6))
    ex = tek.Occlusion(model).explain(ids, targets=0)
    windows = tek.Occlusion(model, patch_size=2, stride=2).explain(ids, targets=0)
    assert ex.attributions.shape == (3, 6)
    full = _score(model, ids, 0)
    for t in range(6):
        padded = ids.copy()
        padded[:, t] = 0
        np.testing.assert_allclose(ex.attributions[:, t], full - _score(model, padded, 0), rtol=1e-4, atol=1e-5)
    padded = ids.copy()
    padded[:, 2:4] = 0
    np.testing.assert_allclose(windows.attributions[:, 3], full - _score(model, padded, 0), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"fill: 'mean' of token ids is not a token; pass the pad id"):
        tek.Occlusion(model, fill="mean")


def test_occlusion_on_tables_single_features_and_groups_are_exact_on_a_linear_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, name="linear")])
    kernel, bias = model.get_layer("linear").get_weights()
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    baseline = np.linspace(-1, 1, 6).astype(np.float32)
    single = tek.Occlusion(model, fill=baseline).explain(x, targets=1)
    np.testing.assert_allclose(single.attributions, (x - baseline) * kernel[:, 1], rtol=1e-4, atol=1e-5)  # w_j (x_j − b_j)
    grouped = tek.Occlusion(model, groups=[[0, 1], [2], [3, 5]]).explain(x, targets=1)
    contribution = x * kernel[:, 1]
    expected = np.stack([contribution[:, :2].sum(1)] * 2 + [contribution[:, 2]] + [contribution[:, [3, 5]].sum(1)] + [np.zeros(4)] + [contribution[:, [3, 5]].sum(1)], axis=1)
    np.testing.assert_allclose(grouped.attributions, expected, rtol=1e-4, atol=1e-5)  # feature 4 is in no group
    with pytest.raises(ValueError, match=r"groups: feature\(s\) \[1\] are in more than one group"):
        tek.Occlusion(model, groups=[[0, 1], [1, 2]])
    with pytest.raises(ValueError, match=r"patch_size/stride: expected 1 size\(s\) for tabular inputs"):
        tek.Occlusion(model, patch_size=(2, 2)).explain(x)


def test_occlusion_refuses_raw_strings_at_construction():
    vectorizer = keras.layers.TextVectorization(max_tokens=20, output_sequence_length=5)
    vectorizer.adapt(["a good film", "a bad film"])
    texts = keras.Input((1,), dtype="string")
    model = keras.Model(texts, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(20, 3)(vectorizer(texts)))))
    with pytest.raises(TypeError, match="takes raw strings, which Occlusion cannot hide element by element. Use LimeText or PartitionShap"):
        tek.Occlusion(model)
