"""SHAP explainers: exact Shapley values, the axioms, agreement with shap, hygiene, errors."""

from __future__ import annotations

import itertools
import random
from math import factorial

import keras
import numpy as np
import pytest
import shap

from tf_explain_kit.explainers.shap import DeepShap, GradientShap, KernelShap, PartitionShap
from tf_explain_kit.model import ModelAdapter

M = 9  # players in the exact tests: 2**9 − 2 = 510 coalitions, all enumerated by nsamples="auto"
SYMMETRIC, DUMMY = (0, 7), 8


def _mlp(features: int, hidden: int, activation: str = "relu", head: str = "softmax", seed: int = 0) -> keras.Model:
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(hidden, activation=activation, kernel_initializer=init),
            keras.layers.Dense(2, activation=head, kernel_initializer=init),
        ]
    )


@pytest.fixture(scope="module")
def cancer():
    """Standardised breast_cancer: (x_train, y_train, x_test)."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    order = np.random.default_rng(0).permutation(len(data.target))
    x, y = data.data[order].astype(np.float32), data.target[order]
    x = (x - x[:400].mean(0)) / x[:400].std(0)
    return x[:400], y[:400], x[400:]


@pytest.fixture(scope="module")
def exact_case(cancer):
    """A trained MLP on M features where features 0 and 7 are interchangeable and 8 is ignored."""
    x_train, y_train, x_test = cancer
    pick = lambda x: np.concatenate([x[:, :7], x[:, :1], x[:, 7:8]], axis=1)  # noqa: E731 - column 7 copies column 0
    model = _mlp(M, 16)
    keras.utils.set_random_seed(0)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(pick(x_train), y_train, epochs=20, verbose=0)
    kernel, bias = model.layers[0].get_weights()
    kernel[list(SYMMETRIC)] = kernel[list(SYMMETRIC)].mean(axis=0)
    kernel[DUMMY] = 0.0
    model.layers[0].set_weights([kernel, bias])
    return model, pick(x_train)[:20], pick(x_test)[:4]


def _scores(model: keras.Model, x: np.ndarray, target: np.ndarray) -> np.ndarray:
    return ModelAdapter.shared(model).forward(x)[1][np.arange(len(x)), target]


def brute_force_shapley(model: keras.Model, x: np.ndarray, background: np.ndarray, target: int) -> np.ndarray:
    """φ_j = Σ_S |S|!(M−|S|−1)!/M! (v(S ∪ j) − v(S)), v(S) = mean score over the background."""
    m = len(x)
    subsets = [s for size in range(m + 1) for s in itertools.combinations(range(m), size)]
    masks = np.zeros((len(subsets), m), bool)
    for row, s in zip(masks, subsets):
        row[list(s)] = True
    synthetic = np.where(masks[:, None], x, background[None]).reshape(-1, m)
    values = dict(zip(subsets, _scores(model, synthetic, np.full(len(synthetic), target)).reshape(len(subsets), -1).mean(1)))
    phi = np.zeros(m)
    for s, value in values.items():
        for j in set(range(m)) - set(s):
            phi[j] += factorial(len(s)) * factorial(m - len(s) - 1) / factorial(m) * (values[tuple(sorted(s + (j,)))] - value)
    return phi


# -- the perturbation primitive shared by KernelShap and LimeImage ------------------------------
@pytest.mark.parametrize("per_sample", [False, True])
def test_masked_scores_equal_scores_of_copies_built_in_numpy(digits_model, digits_data, per_sample):
    """Per-sample players and fills, weighted fills, and calls that split and span samples."""
    rng = np.random.default_rng(0)
    x = digits_data[2][:3]
    players = 7
    elements = rng.integers(0, players, (3, 28, 28)) if per_sample else None
    masks = rng.random((3 * 11, players if per_sample else 28 * 28)) < 0.5
    owners = np.repeat(np.arange(3), 11)
    fills = rng.random((3 if per_sample else 1, 4, 28, 28, 1)).astype(np.float32)
    fill_weights = np.array([0.1, 0.2, 0.3, 0.4])
    adapter = ModelAdapter(digits_model, batch_size=4 * 5)  # 5 rows per call: calls split and span samples
    ours = adapter.masked_scores(x, elements, masks, owners, fills, fill_weights)
    shown = masks[np.arange(len(masks))[:, None, None], elements[owners]] if per_sample else masks.reshape(-1, 28, 28)
    copies = np.where(shown[:, None, :, :, None], x[owners][:, None], fills[owners if per_sample else 0])
    scores = ModelAdapter(digits_model).forward(copies.reshape(-1, 28, 28, 1))[1].reshape(len(masks), 4, -1)
    np.testing.assert_allclose(ours, np.einsum("rbc,b->rc", scores, fill_weights), rtol=1e-5, atol=1e-5)


# -- KernelShap --------------------------------------------------------------------------------
def test_kernel_shap_is_exact_shapley_and_satisfies_the_axioms(exact_case):
    model, background, x = exact_case
    ex = KernelShap(model, background).explain(x)
    for i in range(len(x)):
        assert np.abs(ex.attributions[i] - brute_force_shapley(model, x[i], background, ex.targets[i])).max() < 1e-6
    np.testing.assert_allclose(ex.attributions.sum(1), ex.extras["score"] - ex.extras["base_values"], atol=1e-6)
    np.testing.assert_allclose(ex.attributions[:, DUMMY], 0.0, atol=1e-6)
    np.testing.assert_allclose(ex.attributions[:, SYMMETRIC[0]], ex.attributions[:, SYMMETRIC[1]], atol=1e-6)
    assert np.abs(ex.attributions).min(axis=0)[:7].max() > 1e-3  # no silent truncation: the real features all count


def _shap_kernel_values(model, background, x, targets):
    adapter = ModelAdapter.shared(model)
    explainer = shap.KernelExplainer(lambda z: adapter.forward(np.asarray(z, np.float32))[1], background)
    values = explainer.shap_values(x, l1_reg=False, silent=True)
    return values[np.arange(len(x)), :, targets]


def test_kernel_shap_agrees_with_shap_kernel_explainer(exact_case):
    model, background, x = exact_case
    ours = KernelShap(model, background).explain(x)
    np.testing.assert_allclose(ours.attributions, _shap_kernel_values(model, background, x, ours.targets), atol=1e-6)
    summarised = KernelShap(model, background, summarize=5).explain(x)
    np.testing.assert_allclose(summarised.attributions, _shap_kernel_values(model, shap.kmeans(background, 5), x, ours.targets), atol=1e-6)


def test_kernel_shap_sampled_agrees_with_shap_and_keeps_all_features(cancer):
    """30 features, sampled coalitions: both estimate the same Shapley values."""
    x_train, _, x_test = cancer
    model = _mlp(30, 8, seed=1)
    background = x_train[:10]
    ours = KernelShap(model, background, nsamples=4000).explain(x_test[:2])
    reference = _shap_kernel_values(model, background, x_test[:2], ours.targets)
    scale = np.abs(reference).max()
    assert np.abs(ours.attributions - reference).max() < 0.05 * scale
    assert (np.abs(ours.attributions) > 1e-4 * scale).sum(axis=1).min() > 10  # shap's default l1_reg would keep 10
    np.testing.assert_allclose(ours.attributions.sum(1), ours.extras["score"] - ours.extras["base_values"], atol=1e-5)


def test_kernel_shap_over_superpixel_groups(digits_model, digits_data):
    x = digits_data[2][:2]
    grid = np.arange(28)[:, None] // 7 * 4 + np.arange(28)[None] // 7  # 16 blocks of 7×7
    ex = KernelShap(digits_model, np.zeros((1, 28, 28, 1), np.float32), groups=grid).explain(x)
    assert ex.attributions.shape == (2, 28, 28) and ex.extras["shap_values"].shape == (2, 16)
    np.testing.assert_allclose(ex.attributions[:, 0, 0], ex.extras["shap_values"][:, 0])
    np.testing.assert_allclose(ex.extras["shap_values"].sum(1), ex.extras["score"] - ex.extras["base_values"], atol=1e-4)


# -- GradientShap ------------------------------------------------------------------------------
def test_gradient_shap_agrees_with_shap_gradient_explainer_and_is_efficient_in_expectation(cancer):
    """Both are Monte Carlo means of the same integrand (x − b)·∇f(b + t(x − b)).

    With S draws each, the difference of the two estimates has standard deviation
    sqrt(2/S)·σ per feature, where σ is the per-draw spread; we measure σ from our own
    draws and allow 5 standard deviations, far from flaky yet tight enough to catch a
    wrong integrand (which moves values by about σ or more).
    """
    x_train, _, x_test = cancer
    model = _mlp(30, 16, activation="tanh", head=None, seed=2)
    background, x, draws = x_train[:50], x_test[:3], 3000
    ours = GradientShap(model, background, samples=draws).explain(x, targets=1)
    reference = shap.GradientExplainer(model, background).shap_values(x, nsamples=draws, rseed=0)[..., 1]
    single = np.stack([GradientShap(model, background, samples=1, seed=s).explain(x, targets=1).attributions for s in range(200)])
    sigma = single.std(axis=0)
    assert np.all(np.abs(ours.attributions - reference) <= 5 * np.sqrt(2 / draws) * sigma + 1e-6)
    # efficiency in expectation: the sum's error shrinks like 1/sqrt(S)
    delta = ours.extras["convergence_delta"]
    spread = single.sum(axis=2).std(axis=0)
    assert np.all(np.abs(delta) <= 5 * spread / np.sqrt(draws))


# -- DeepShap ----------------------------------------------------------------------------------
def test_deep_shap_is_additive_on_the_digits_cnn(digits_model, digits_data):
    x_train, _, x_test, _ = digits_data
    ex = DeepShap(digits_model, x_train[:20]).explain(x_test[:3])
    assert ex.attributions.shape == x_test[:3].shape
    scores = ModelAdapter.shared(digits_model).forward(x_train[:20])[1][:, ex.targets].mean(0)
    np.testing.assert_allclose(ex.extras["base_values"], scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ex.attributions.reshape(3, -1).sum(1), ex.extras["score"] - scores, rtol=1e-4, atol=1e-4)


def test_deep_shap_matches_shap_and_supports_leaky_relu(cancer):
    x_train, _, x_test = cancer
    init = keras.initializers.GlorotUniform(seed=3)
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(16, kernel_initializer=init), keras.layers.LeakyReLU(0.2), keras.layers.Dense(2, kernel_initializer=init)])
    ex = DeepShap(model, x_train[:30]).explain(x_test[:4], targets=0)
    np.testing.assert_allclose(ex.extras["convergence_delta"], 0.0, atol=1e-4)
    relu = keras.Sequential([keras.Input((30,)), keras.layers.Dense(16, activation="relu", kernel_initializer=init), keras.layers.Dense(2, kernel_initializer=init)])
    ours = DeepShap(relu, x_train[:30]).explain(x_test[:4], targets=0).attributions
    np.testing.assert_allclose(ours, shap.DeepExplainer(relu, x_train[:30]).shap_values(x_test[:4])[..., 0], atol=1e-5)


class _Scaled(keras.layers.Layer):
    """x · mean(x): a product of two varying tensors inside one layer, which no rule covers."""

    def call(self, x):
        return x * keras.ops.mean(x, axis=-1, keepdims=True)


def test_deep_shap_refuses_a_layer_without_a_rule_when_built():
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="gelu"), _Scaled(name="scaled"), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"DeepShap has no rule for layer 'scaled' \(_Scaled\): its call computes Mul.*GradientShap"):
        DeepShap(model, np.zeros((3, 5), np.float32))


# -- PartitionShap -----------------------------------------------------------------------------
def test_partition_shap_on_images_is_additive(digits_model, digits_data):
    x = digits_data[2][:2]
    ex = PartitionShap(digits_model, max_evals=300).explain(x)
    assert ex.attributions.shape == x.shape
    np.testing.assert_allclose(ex.attributions.reshape(2, -1).sum(1), ex.extras["score"] - ex.extras["base_values"], atol=1e-4)


@pytest.fixture(scope="module")
def text_model():
    texts = np.array(["good great fine", "bad awful poor", "great good", "poor bad", "fine good", "awful bad"] * 10)
    labels = np.array([1, 0, 1, 0, 1, 0] * 10)
    vectorize = keras.layers.TextVectorization(max_tokens=50, output_sequence_length=8)
    vectorize.adapt(texts)
    classifier = keras.Sequential([keras.Input((8,), dtype="int64"), keras.layers.Embedding(50, 8), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2, activation="softmax")])
    keras.utils.set_random_seed(0)
    classifier.compile(keras.optimizers.Adam(0.05), "sparse_categorical_crossentropy")
    classifier.fit(keras.ops.convert_to_numpy(vectorize(texts)), labels, epochs=30, verbose=0)
    return keras.Sequential([keras.Input((), dtype="string"), vectorize, classifier])  # takes raw strings


def test_partition_shap_on_text_models(text_model):
    texts = np.array(["good film great cast", "awful plot"])
    ex = PartitionShap(text_model).explain(texts, targets=1)
    assert [t.strip() for t in ex.extras["tokens"][0]] == ["good", "film", "great", "cast"]
    assert ex.attributions.shape == (2, 4) and np.all(ex.attributions[1, 2:] == 0)
    np.testing.assert_allclose(ex.attributions.sum(1), ex.extras["score"] - ex.extras["base_values"], atol=1e-4)
    assert ex.attributions[0, 0] > ex.attributions[0, 1]  # "good" pushes towards class 1 more than "film"
    with pytest.raises(TypeError, match="inputs: model input .* takes strings, got float32"):
        PartitionShap(text_model).explain(np.ones(2, np.float32))


# -- determinism, global state, training loops, errors ------------------------------------------
def test_same_seed_same_result_and_global_state_untouched(cancer):
    x_train, _, x_test = cancer
    model = _mlp(30, 8, seed=4)
    linear = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    np.random.seed(123)
    random.seed(123)
    numpy_state, python_state = np.random.get_state(), random.getstate()  # (building Keras models draws from `random`)
    makers = {
        "gradient": lambda seed: GradientShap(model, x_train[:20], samples=50, seed=seed),
        "kernel": lambda seed: KernelShap(model, x_train[:20], nsamples=300, seed=seed, summarize=8, summary="sample"),
        "kmeans": lambda seed: KernelShap(model, x_train[:50], nsamples=300, seed=seed, summarize=8),
        "deep": lambda seed: DeepShap(model, x_train[:20]),
    }
    for name, make in makers.items():
        first, again = make(0).explain(x_test[:2]).attributions, make(0).explain(x_test[:2]).attributions
        np.testing.assert_array_equal(first, again, err_msg=name)
        if name in ("gradient", "kernel"):
            assert not np.array_equal(first, make(1).explain(x_test[:2]).attributions), name
    images = np.random.default_rng(0).random((1, 8, 8, 1), np.float32)
    partition = PartitionShap(linear, max_evals=50)
    np.testing.assert_array_equal(partition.explain(images).attributions, partition.explain(images).attributions)
    assert _same_state(numpy_state, np.random.get_state()) and python_state == random.getstate()


def _same_state(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(a, b))


def test_results_follow_the_current_weights(cancer):
    """Nothing is cached across weight changes (a callback explains after every epoch)."""
    x_train, _, x_test = cancer
    model = _mlp(30, 8, seed=5)
    explainers = [KernelShap(model, x_train[:10], nsamples=200), DeepShap(model, x_train[:10]), GradientShap(model, x_train[:10], samples=20)]
    before = [e.explain(x_test[:2], targets=1) for e in explainers]
    model.set_weights([w * 1.5 for w in model.get_weights()])
    expected_base = ModelAdapter.shared(model).forward(x_train[:10])[1][:, 1].mean()
    for explainer, old in zip(explainers, before):
        new = explainer.explain(x_test[:2], targets=1)
        assert not np.allclose(new.attributions, old.attributions)
        np.testing.assert_allclose(new.extras["base_values"], expected_base, rtol=1e-5, err_msg=explainer.method)


def test_errors_name_the_argument_and_the_fix(cancer, digits_model):
    x_train, _, x_test = cancer
    model = _mlp(30, 8)
    for make in (lambda bg: KernelShap(model, bg), lambda bg: GradientShap(model, bg), lambda bg: DeepShap(model, bg)):
        with pytest.raises(ValueError, match=r"background: expected shape \(N, 30\).*got \(5, 29\)"):
            make(x_train[:5, :29])
    with pytest.raises(ValueError, match="background: expected reference samples"):
        KernelShap(model, None)
    feature_map = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, padding="same")])
    with pytest.raises(ValueError, match=r"model: .*\(N, classes\); got \(None, 8, 8, 2\)"):
        KernelShap(feature_map, np.zeros((1, 8, 8, 1), np.float32))
    with pytest.raises(ValueError, match="nsamples: expected a positive int"):
        KernelShap(model, x_train[:5], nsamples=0)
    with pytest.raises(ValueError, match="groups: expected int labels"):
        KernelShap(digits_model, np.zeros((1, 28, 28, 1), np.float32), groups=np.zeros((14, 14), int)).explain(np.zeros((1, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match=r"model: PartitionShap masks images, series and texts; .* takes a table \(N, 30\)\. Use KernelShap"):
        PartitionShap(model)  # refused when built
