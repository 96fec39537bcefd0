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


# -- KernelShap over time × feature groups and over the inputs of multi-input models -----------
def _exact_shapley(value, m: int) -> np.ndarray:
    """Shapley values of ``m`` players by enumerating every coalition: ``value(mask) -> (N,)``."""
    from itertools import combinations
    from math import factorial

    cache = {}

    def v(members):
        if members not in cache:
            mask = np.zeros(m, bool)
            mask[list(members)] = True
            cache[members] = value(mask)
        return cache[members]

    phi = 0
    for i in range(m):
        others = [j for j in range(m) if j != i]
        phi_i = 0
        for size in range(m):
            for subset in combinations(others, size):
                phi_i = phi_i + factorial(size) * factorial(m - size - 1) / factorial(m) * (v(tuple(sorted(subset + (i,)))) - v(subset))
        phi = phi + np.eye(m)[i][None] * np.asarray(phi_i)[:, None]
    return phi


def _grouped_value(model, x, background, labels, target):
    """v(S): the mean score over background rows with the groups in S shown."""

    def value(mask):
        shown = mask[labels]  # (T, F)
        copies = np.where(shown[None, None], x[:, None], background[None])  # (N, B, T, F)
        return np.asarray(model(copies.reshape((-1,) + x.shape[1:])))[:, target].reshape(len(x), len(background)).mean(axis=1)

    return value


def test_window_groups():
    from tf_explain_kit.explainers.groups import window_groups

    labels = window_groups(5, 2, 2)
    np.testing.assert_array_equal(labels, [[0, 3], [0, 3], [1, 4], [1, 4], [2, 5]])
    np.testing.assert_array_equal(window_groups(5, 2, 2, per_feature=False), [[0, 0], [0, 0], [1, 1], [1, 1], [2, 2]])
    with pytest.raises(ValueError, match="window: expected a positive int, got 0"):
        window_groups(5, 2, 0)


def test_kernel_shap_over_time_feature_groups_is_exact_shapley_and_efficient(series_model):
    from tf_explain_kit.explainers.groups import window_groups

    x, _ = planted_series(3, seed=6)
    background = planted_series(6, seed=7)[0]
    labels = window_groups(T, F, 16)  # 2 windows × 3 features: 6 groups, all 62 coalitions enumerated
    ex = tek.KernelShap(series_model, background, groups=labels).explain(x, targets=1)
    assert ex.attributions.shape == (3, T, F) and ex.extras["shap_values"].shape == (3, 6)
    exact = _exact_shapley(_grouped_value(series_model, x, background, labels, 1), 6)
    np.testing.assert_allclose(ex.extras["shap_values"], exact, atol=2e-4)
    full = _score(series_model, x, 1)
    np.testing.assert_allclose(ex.extras["shap_values"].sum(axis=1), full - ex.extras["base_values"], atol=1e-4)  # efficiency over the groups
    np.testing.assert_allclose(ex.extras["base_values"], _score(series_model, background, 1).mean(), atol=1e-4)
    np.testing.assert_array_equal(ex.attributions, ex.extras["shap_values"][:, labels])  # each cell carries its group's value


def test_kernel_shap_groups_agree_with_shap_kernel_explainer_when_sampled(series_model):
    """12 groups, 600 coalitions of 4094: sampled; ours is as close to exact Shapley as shap is."""
    import shap

    from tf_explain_kit.explainers.groups import window_groups

    x, _ = planted_series(1, seed=8)
    background = planted_series(4, seed=9)[0]
    labels = window_groups(T, F, 8)[:, :F]  # 4 windows × 3 features = 12 groups
    ours = tek.KernelShap(series_model, background, groups=labels, nsamples=600).explain(x, targets=1)
    coalitions = (np.arange(2**12)[:, None] >> np.arange(12)) & 1  # every coalition, scored in one batch
    copies = np.where(coalitions[:, labels][:, None].astype(bool), x[:, None], background[None])
    table = series_model.predict(copies.reshape((-1, T, F)), batch_size=4096, verbose=0)[:, 1].reshape(2**12, len(background)).mean(axis=1)
    value = lambda mask: table[[int((np.asarray(mask) << np.arange(12)).sum())]]  # noqa: E731
    reference = shap.KernelExplainer(lambda z: np.concatenate([value(row.astype(int)) for row in z]), np.zeros((1, 12))).shap_values(np.ones((1, 12)), nsamples=600, silent=True)
    exact = _exact_shapley(value, 12)[0]
    ours_error, shap_error = np.abs(ours.extras["shap_values"][0] - exact).max(), np.abs(np.ravel(reference) - exact).max()
    assert ours_error <= max(2 * shap_error, 0.02 * np.abs(exact).max()), (ours_error, shap_error)


def test_kernel_shap_puts_the_planted_window_first(series_model):
    from tf_explain_kit.explainers.groups import window_groups

    x, y = planted_series(32, seed=10)
    background = planted_series(8, seed=11)[0]
    labels = window_groups(T, F, 6)  # windows 12-17 of feature 1 is group 1 * 6 + 2 = 8
    ex = tek.KernelShap(series_model, background, groups=labels).explain(x[y == 1], targets=1)
    assert (ex.extras["shap_values"].argmax(axis=1) == labels[12, 1]).mean() >= 0.9


def _three_input_model() -> keras.Model:
    keras.utils.set_random_seed(2)
    series, table, ids = keras.Input((8, 2), name="series"), keras.Input((4,), name="table"), keras.Input((5,), dtype="int32", name="ids")
    a = keras.layers.GlobalAveragePooling1D()(keras.layers.Conv1D(4, 3, activation="tanh")(series))
    c = keras.layers.Flatten()(keras.layers.Embedding(10, 2)(ids))
    hidden = keras.layers.Dense(6, activation="tanh")(keras.layers.Concatenate()([a, keras.layers.Dense(3, activation="tanh")(table), c]))
    return keras.Model({"series": series, "table": table, "ids": ids}, keras.layers.Dense(2)(hidden))


def _three_inputs(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {"series": rng.normal(size=(n, 8, 2)).astype(np.float32), "table": rng.normal(size=(n, 4)).astype(np.float32), "ids": rng.integers(0, 10, (n, 5))}


def test_kernel_shap_on_a_multi_input_model_equals_exact_shapley_over_named_groups():
    model = _three_input_model()
    x, background = _three_inputs(3, 0), _three_inputs(4, 1)
    groups = {"series": "series", "table_a": ("table", [0, 1]), "table_b": ("table", [2, 3]), "ids": "ids"}
    ex = tek.KernelShap(model, background, groups=groups).explain(x, targets=0)
    assert ex.extras["group_names"] == list(groups)
    assert {k: v.shape for k, v in ex.attributions.items()} == {"series": (3, 8, 2), "table": (3, 4), "ids": (3, 5)}
    masks = {"series": np.zeros((1, 8, 2), int), "table": np.array([[0, 0, 1, 1]]) + 1, "ids": np.full((1, 5), 3)}

    def value(mask):
        shown = {k: mask[v].reshape(v.shape) for k, v in masks.items()}
        rows = {k: np.where(shown[k][:, None], x[k][:, None], background[k][None]).reshape((-1,) + x[k].shape[1:]) for k in x}
        return np.asarray(model(rows))[:, 0].reshape(3, 4).mean(axis=1)

    exact = _exact_shapley(value, 4)
    np.testing.assert_allclose(ex.extras["shap_values"], exact, atol=1e-5)
    np.testing.assert_allclose(ex.attributions["table"][:, 2], exact[:, 2], atol=1e-5)
    default = tek.KernelShap(model, background).explain(x, targets=0)  # each input one group
    assert default.extras["group_names"] == ["ids", "series", "table"]
    np.testing.assert_allclose(default.extras["shap_values"].sum(axis=1), _score(model, x, 0) - default.extras["base_values"], atol=1e-5)
    with pytest.raises(ValueError, match=r"groups: group 'x' names input 'pixels'; the model's inputs are \['ids', 'series', 'table'\]"):
        tek.KernelShap(model, background, groups={"x": "pixels"})


# -- LIME: series, groups, multi-input models ---------------------------------------------------
def test_lime_tabular_on_series_cells_equals_lime_on_the_flattened_table():
    from lime import lime_tabular

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 2)), keras.layers.Flatten(), keras.layers.Dense(3, activation="tanh"), keras.layers.Dense(2)])
    train = np.random.default_rng(0).normal(size=(60, 4, 2)).astype(np.float32)
    x = train[:2]
    ours = tek.LimeTabular(model, train, num_samples=300, seed=3).explain(x, targets=1)
    assert ours.attributions.shape == (2, 4, 2) and ours.extras["feature_names"][:3] == ["0@0", "1@0", "0@1"]
    predict = lambda rows: np.asarray(model(rows.reshape(-1, 4, 2).astype(np.float32)))[:, 1]  # noqa: E731  (logits: no softmax)
    for i in range(2):
        reference = lime_tabular.LimeTabularExplainer(train.reshape(60, -1).astype(np.float64), mode="regression", feature_selection="none", random_state=3)
        exp = reference.explain_instance(x[i].reshape(-1).astype(np.float64), predict, num_features=8, num_samples=300)
        expected = np.zeros(8)
        for feature, weight in exp.local_exp[1]:
            expected[feature] = weight
        np.testing.assert_allclose(ours.attributions[i].reshape(-1), expected, atol=1e-5)


def test_lime_tabular_groups_recover_a_linear_models_group_contributions():
    from tf_explain_kit.explainers.groups import window_groups

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((T, F)), keras.layers.Flatten(), keras.layers.Dense(2, name="linear")])
    train, _ = planted_series(200, seed=12)
    x = planted_series(3, seed=13)[0]
    labels = window_groups(T, F, 8)  # 12 groups
    ex = tek.LimeTabular(model, train, groups=labels, num_samples=3000).explain(x, targets=0)
    kernel = model.get_layer("linear").get_weights()[0][:, 0].reshape(T, F)
    contribution = (x - train.mean(axis=0)) * kernel  # f is linear: a group's effect is its cells' w·(x − mean)
    expected = np.stack([[contribution[i][labels == g].sum() for g in range(12)] for i in range(3)])
    assert ex.attributions.shape == (3, T, F) and ex.extras["group_weights"].shape == (3, 12)
    np.testing.assert_allclose(ex.extras["group_weights"], expected, atol=0.03 * np.abs(expected).max())
    np.testing.assert_array_equal(ex.attributions, ex.extras["group_weights"][:, labels])


def test_lime_tabular_finds_the_planted_window(series_model):
    from tf_explain_kit.explainers.groups import window_groups

    train, _ = planted_series(100, seed=14)
    x, y = planted_series(24, seed=15)
    labels = window_groups(T, F, 6)
    ex = tek.LimeTabular(series_model, train, groups=labels, num_samples=500).explain(x[y == 1], targets=1)
    assert (ex.extras["group_weights"].argmax(axis=1) == labels[12, 1]).mean() >= 0.9


def test_lime_tabular_on_a_multi_input_model_over_named_groups():
    """An additive 3-input model: each group's LIME weight is its effect f(x) − f(x, group at the fill)."""
    keras.utils.set_random_seed(4)
    series, table, ids = keras.Input((8, 2), name="series"), keras.Input((4,), name="table"), keras.Input((5,), dtype="int32", name="ids")
    parts = [keras.layers.Dense(2)(keras.layers.Flatten()(series)), keras.layers.Dense(2)(table), keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Embedding(10, 2)(ids)))]
    model = keras.Model({"series": series, "table": table, "ids": ids}, keras.layers.Add()(parts))
    train, x = _three_inputs(50, 2), _three_inputs(2, 3)
    groups = {"series": "series", "table": "table", "ids": "ids"}
    ex = tek.LimeTabular(model, train, groups=groups, num_samples=2000).explain(x, targets=0)
    assert ex.extras["group_names"] == ["series", "table", "ids"] and ex.extras["group_weights"].shape == (2, 3)
    assert {k: v.shape for k, v in ex.attributions.items()} == {"series": (2, 8, 2), "table": (2, 4), "ids": (2, 5)}
    np.testing.assert_array_equal(ex.attributions["table"], np.repeat(ex.extras["group_weights"][:, 1:2], 4, axis=1))
    fills = {"series": train["series"].mean(axis=0), "table": train["table"].mean(axis=0), "ids": np.array([np.bincount(c).argmax() for c in train["ids"].T])}
    effects = []
    for name in groups:
        hidden = dict(x, **{name: np.broadcast_to(fills[name].astype(x[name].dtype), x[name].shape)})
        effects.append(_score(model, x, 0) - _score(model, hidden, 0))
    expected = np.stack(effects, axis=1)
    np.testing.assert_allclose(ex.extras["group_weights"], expected, atol=0.03 * np.abs(expected).max())
    default = tek.LimeTabular(model, train, num_samples=400).explain(x, targets=0)  # each input one group
    assert default.extras["group_names"] == ["ids", "series", "table"]


def test_lime_image_explains_the_image_of_a_multi_input_model_with_the_side_input_held():
    from tests import model_kinds

    keras.utils.set_random_seed(0)
    model = model_kinds.multi_input()
    images = np.random.default_rng(0).uniform(0, 1, (2,) + model_kinds.SHAPE).astype(np.float32)
    side = np.random.default_rng(1).normal(size=(2, 2)).astype(np.float32)
    segmentation = lambda image: (np.arange(12)[:, None] // 4) * 3 + np.arange(12)[None, :] // 4  # noqa: E731  9 squares
    both = tek.LimeImage(model, num_samples=300, segmentation=segmentation, hide_color=0.0).explain([images, side], targets=1)
    alone = keras.Model(model.inputs[0], model.get_layer("head")(model.get_layer("gap")(model.get_layer("c2")(model.get_layer("c1")(model.inputs[0])))))
    image_only = tek.LimeImage(alone, num_samples=300, segmentation=segmentation, hide_color=0.0).explain(images, targets=1)
    assert both.attributions.shape == (2, 12, 12)
    # the side input adds a constant to the logit: LIME's weights are those of the image path alone
    np.testing.assert_allclose(both.attributions, image_only.attributions, atol=1e-5)
    np.testing.assert_allclose(both.extras["intercept"] - image_only.extras["intercept"], np.asarray(model.get_layer("side_head")(side))[:, 1], atol=1e-4)


def test_partition_shap_on_series_sums_to_the_score_drop_and_finds_the_planted_window(series_model):
    x, y = planted_series(24, seed=16)
    x = x[y == 1][:3]
    ex = tek.PartitionShap(series_model, max_evals=200).explain(x, targets=1)
    assert ex.attributions.shape == (3, T, F)
    hidden = np.broadcast_to(x.mean(axis=1, keepdims=True), x.shape)  # fill="mean": each feature's mean over time
    np.testing.assert_allclose(ex.attributions.sum(axis=(1, 2)), _score(series_model, x, 1) - _score(series_model, hidden, 1), atol=1e-3)
    np.testing.assert_allclose(ex.extras["base_values"], _score(series_model, hidden, 1), atol=1e-4)
    window = ex.attributions[:, WINDOW, 1].sum(axis=1)
    assert (window > 0.5 * ex.attributions.sum(axis=(1, 2))).all(), window


# -- the log format carries sequence and multi-input explanations --------------------------------
def test_sequence_and_multi_input_explanations_survive_the_log_format(series_model):
    from tf_explain_kit import logformat

    x = planted_series(3, seed=17)[0]
    model = _three_input_model()
    explanations = [
        tek.GradCAM(series_model).explain(x),  # (N, T) from a layer of length T / 2: stored at the layer's size
        tek.Occlusion(series_model, patch_size=(4, 1), stride=(4, 1)).explain(x),  # (N, T, F)
        tek.KernelShap(model, _three_inputs(4, 1), groups={"series": "series", "rest": ("table", [0, 1, 2, 3])}).explain(_three_inputs(2, 0)),  # a dict
    ]
    for ex in explanations:
        for precision, tolerance in (("float32", 1e-5), ("float16", 2**-11)):
            back = logformat.read_explanation(logformat.explanation_payload(ex, epoch=3, precision=precision))
            for ours, stored in zip(keras.tree.flatten(ex.attributions), keras.tree.flatten(back["attributions"])):
                assert stored.shape == ours.shape
                np.testing.assert_allclose(stored, ours, atol=tolerance * np.abs(ours).max() + 1e-7)
            assert back["extras"].get("group_names") == ex.extras.get("group_names")
    assert type(back["attributions"]) is dict and set(back["attributions"]) == {"series", "table", "ids"}


def test_methods_that_do_not_apply_refuse_when_built():
    table = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"PartitionShap masks images, series and texts; .* takes a table \(N, 6\)\. Use KernelShap"):
        tek.PartitionShap(table)
    with pytest.raises(TypeError, match="PartitionShap explains single-input models .* takes 3 inputs. Use KernelShap or LimeTabular with named input groups"):
        tek.PartitionShap(_three_input_model())
    tokens = keras.Sequential([keras.Input((T,), dtype="int32"), keras.layers.Embedding(20, 4), keras.layers.Flatten(), keras.layers.Dense(2)])
    for model in (table, tokens):
        with pytest.raises(ValueError, match=r"model: LimeImage explains images .* Use LimeTabular for tables, LimeText for texts"):
            tek.LimeImage(model)
    series = keras.Sequential([keras.Input((T, F)), keras.layers.LSTM(4), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"has no layer with a 4-D .* or 3-D \(N, steps, channels\) output"):
        tek.GradCAM(series)  # an LSTM that returns its last state has no map over time
