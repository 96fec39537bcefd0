"""LRP: conservation, the LRP-0 = Gradient×Input identity, hand-computed rules (z^B at the pixels too), planted signal."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tf_explain_kit as tek
from tf_explain_kit.explainers.lrp import LRP
from tf_explain_kit.imaging import peak_location, spatial_map

L = keras.layers
RNG = np.random.default_rng(0)


def _bias_free_relu_net() -> keras.Model:
    """Conv, max pooling, a nested block with a residual Add, dense: no biases anywhere."""
    init = keras.initializers.GlorotUniform(seed=1)
    inner = keras.Sequential([L.Conv2D(6, 3, padding="same", activation="relu", use_bias=False, kernel_initializer=init)], name="inner")
    x = keras.Input((10, 10, 2))
    h = L.Conv2D(6, 3, padding="same", activation="relu", use_bias=False, kernel_initializer=init)(x)
    h = L.MaxPooling2D(2)(h)
    h = L.Add()([h, inner(h)])
    h = L.Flatten()(L.Dropout(0.5)(h))
    h = L.Dense(12, activation="relu", use_bias=False, kernel_initializer=init)(h)
    return keras.Model(x, L.Dense(4, activation="softmax", use_bias=False, kernel_initializer=init)(h))


@pytest.fixture(scope="module")
def relu_net():
    return _bias_free_relu_net(), RNG.uniform(0, 1, (8, 10, 10, 2)).astype(np.float32)


@pytest.mark.parametrize("rule, epsilon", [("zero", 0.0), ("epsilon", 1e-9)])
def test_relevance_is_conserved_on_bias_free_relu_net(relu_net, rule, epsilon):
    model, x = relu_net
    ex = LRP(model, rule=rule, epsilon=epsilon).explain(x)
    score = ex.extras["score"]
    np.testing.assert_allclose(ex.attributions.sum(axis=(1, 2, 3)), score, rtol=1e-4)
    np.testing.assert_allclose(ex.extras["relevance"], score, rtol=1e-4)
    np.testing.assert_allclose(ex.extras["conservation"], 1.0, rtol=1e-4)


def test_lrp_zero_equals_gradient_times_input(relu_net):
    model, x = relu_net
    lrp = LRP(model, rule="zero").explain(x, targets=2).attributions
    gxi = tek.GradientInput(model).explain(x, targets=2).attributions
    np.testing.assert_allclose(lrp, gxi, atol=1e-5 * np.abs(gxi).max())


# -- a two-layer dense network computed by hand -------------------------------------------------
W1 = np.array([[1.0, -0.5, 0.3, 0.8], [-0.6, 0.9, 0.4, -0.2], [0.5, 0.7, -0.8, 0.6]], np.float32)
B1 = np.array([0.1, -0.2, 0.05, 0.0], np.float32)
W2 = np.array([[0.7, -0.3], [-0.4, 0.8], [0.6, 0.5], [0.9, -0.7]], np.float32)
B2 = np.array([0.05, -0.1], np.float32)
X = np.array([[1.0, 0.5, 2.0], [-0.5, 1.5, 0.8]], np.float32)
EPS, GAMMA = 1e-3, 0.5


def _contributions(a: np.ndarray, w: np.ndarray, b: np.ndarray, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """z_ij and the bias term of one sample under ``rule``, from the rules' definitions."""
    z = a[:, None] * w
    if rule in ("zero", "epsilon"):
        return z, b
    if rule == "gamma":
        return a[:, None] * (w + GAMMA * np.maximum(w, 0)), b + GAMMA * np.maximum(b, 0)
    return np.maximum(z, 0), np.maximum(b, 0)  # z⁺ / α1β0: positive contributions only


def _propagate(a: np.ndarray, w: np.ndarray, b: np.ndarray, relevance: np.ndarray, rule: str) -> np.ndarray:
    """R_i = Σ_j z_ij / (Σ_i' z_i'j + b_j + ε·sign) · R_j, written out in loops."""
    z, bias = _contributions(a, w, b, rule)
    eps = 0.0 if rule == "zero" else EPS
    out = np.zeros(len(a))
    for j in range(w.shape[1]):
        total = z[:, j].sum() + bias[j]
        total += eps if total >= 0 else -eps
        for i in range(len(a)):
            out[i] += z[i, j] / total * relevance[j]
    return out


@pytest.fixture(scope="module")
def dense_net():
    model = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="relu"), L.Dense(2)])
    model.set_weights([W1, B1, W2, B2])
    return model


@pytest.mark.parametrize("rule", ["zero", "epsilon", "gamma", "zplus"])
def test_hand_computed_two_layer_dense_net(dense_net, rule):
    target = 1
    expected = []
    for x in X.astype(np.float64):
        hidden = np.maximum(x @ W1 + B1, 0)
        top = np.zeros(2)
        top[target] = hidden @ W2[:, target] + B2[target]  # relevance at the output: the explained score
        relevance_hidden = _propagate(hidden, W2, B2, top, rule)
        expected.append(_propagate(x, W1, B1, relevance_hidden, rule))
    ex = LRP(dense_net, rule=rule, epsilon=EPS, gamma=GAMMA).explain(X, targets=target)
    np.testing.assert_allclose(ex.attributions, np.array(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ["gamma", "zplus"])
def test_hand_computed_rule_after_a_relu(rule):
    """A middle layer reading a ReLU's output and ending in one: its denominators are
    known positive wherever relevance flows, a shortcut that must give the rule's numbers."""
    w_mid = np.array([[0.5, -0.4, 0.3, 0.2], [-0.3, 0.6, -0.2, 0.4], [0.8, 0.1, -0.5, -0.6], [-0.2, 0.3, 0.7, 0.5]], np.float32)
    b_mid = np.array([0.1, -0.3, 0.2, -0.05], np.float32)
    model = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="relu"), L.Dense(4, activation="relu"), L.Dense(2)])
    model.set_weights([W1, B1, w_mid, b_mid, W2, B2])
    ex = LRP(model, rule=rule, epsilon=EPS, gamma=GAMMA).explain(X, targets=0)
    for x, got in zip(X.astype(np.float64), ex.attributions):
        first = np.maximum(x @ W1 + B1, 0)
        second = np.maximum(first @ w_mid + b_mid, 0)
        top = np.array([second @ W2[:, 0] + B2[0], 0.0])
        relevance = _propagate(first, w_mid, b_mid, _propagate(second, W2, B2, top, rule), rule)
        np.testing.assert_allclose(got, _propagate(x, W1, B1, relevance, rule), rtol=1e-5, atol=1e-6)


def test_layer_rules_override_per_layer(dense_net):
    first, second = dense_net.layers
    ex = LRP(dense_net, rule="zplus", epsilon=EPS, layer_rules={second.name: "epsilon"}).explain(X, targets=0)
    for x, got in zip(X.astype(np.float64), ex.attributions):
        hidden = np.maximum(x @ W1 + B1, 0)
        top = np.array([hidden @ W2[:, 0] + B2[0], 0.0])
        expected = _propagate(x, W1, B1, _propagate(hidden, W2, B2, top, "epsilon"), "zplus")
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


# -- z^B at the pixels ---------------------------------------------------------------------------
X_WITH_ZERO = np.array([[1.0, 0.0, 2.0], [-0.5, 1.5, 0.8]], np.float32)  # a pixel at 0 keeps its relevance


def _propagate_bounded(x: np.ndarray, w: np.ndarray, low: np.ndarray, high: np.ndarray, relevance: np.ndarray) -> np.ndarray:
    """R_i = Σ_j (x_i w_ij − l_i w⁺_ij − h_i w⁻_ij) / (Σ_i' … + ε) · R_j, written out in loops (no bias)."""
    out = np.zeros(len(x))
    for j in range(w.shape[1]):
        terms = [x[i] * w[i, j] - low[i] * max(w[i, j], 0) - high[i] * min(w[i, j], 0) for i in range(len(x))]
        for i in range(len(x)):
            out[i] += terms[i] / (sum(terms) + EPS) * relevance[j]
    return out


@pytest.mark.parametrize("activation", ["relu", "tanh"])  # tanh is split off the layer: z^B reads W·a before it
@pytest.mark.parametrize("bounds", [(-1.0, 2.5), ([-1.0, -0.5, 0.0], [2.0, 1.5, 3.0]), None], ids=["numbers", "per_feature", "per_sample"])
def test_hand_computed_bounded_rule_at_the_pixels(bounds, activation):
    model = keras.Sequential([keras.Input((3,)), L.Dense(4, activation=activation), L.Dense(2)])
    model.set_weights([W1, B1, W2, B2])
    lrp = LRP(model, rule="epsilon", epsilon=EPS, layer_rules={model.layers[0].name: "zbox"}, input_bounds=bounds)
    ex = lrp.explain(X_WITH_ZERO, targets=1)
    for x, got in zip(X_WITH_ZERO.astype(np.float64), ex.attributions):
        low, high = (np.broadcast_to(b, 3) for b in bounds) if bounds else (np.full(3, x.min()), np.full(3, x.max()))
        hidden = {"relu": lambda v: np.maximum(v, 0), "tanh": np.tanh}[activation](x @ W1 + B1)
        top = np.array([0.0, hidden @ W2[:, 1] + B2[1]])
        expected = _propagate_bounded(x, W1, low, high, _propagate(hidden, W2, B2, top, "epsilon"))
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert ex.attributions[0, 1] != 0  # x = 0, but not its relevance


def test_bounded_rule_on_a_softmax_output_layer_explains_its_logit():
    """The only layer reads the pixels and ends in a softmax, stripped to explain the logit."""
    model = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="softmax")])
    model.set_weights([W1, B1])
    ex = LRP(model, rule="composite", epsilon=EPS).explain(X_WITH_ZERO, targets=2)
    for x, got in zip(X_WITH_ZERO.astype(np.float64), ex.attributions):
        top = np.array([0.0, 0.0, x @ W1[:, 2] + B1[2], 0.0])
        np.testing.assert_allclose(got, _propagate_bounded(x, W1, np.full(3, x.min()), np.full(3, x.max()), top), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["conv", "depthwise"])
def test_bounded_rule_on_a_convolution_matches_its_matrix(kind):
    """A convolution is a matrix (plus a bias z^B ignores): z^B on the conv (padding,
    stride, depthwise channels) must give what the written-out rule gives on that matrix."""
    init = keras.initializers.GlorotUniform(seed=5)
    if kind == "conv":
        pixel_layer = L.Conv2D(3, 3, strides=2, padding="same", kernel_initializer=init)
    else:
        pixel_layer = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2, depthwise_initializer=init)
    x = np.random.default_rng(5).uniform(-1, 1, (3, 5, 5, 2)).astype(np.float32)
    inputs = keras.Input((5, 5, 2))
    conv = keras.Sequential([pixel_layer])
    conv.build((None, 5, 5, 2))
    hidden = L.Flatten()(L.ReLU()(conv(inputs)))
    top = L.Dense(2, kernel_initializer=keras.initializers.GlorotUniform(seed=4))
    model = keras.Model(inputs, top(hidden))
    basis = np.eye(50, dtype=np.float32).reshape(50, 5, 5, 2)
    matrix = keras.ops.convert_to_numpy(conv(basis) - conv(np.zeros_like(basis[:1]))).reshape(50, -1)
    bias = keras.ops.convert_to_numpy(conv(np.zeros_like(basis[:1]))).reshape(-1)
    w_top, b_top = top.get_weights()
    ex = LRP(model, rule="epsilon", epsilon=EPS, layer_rules={pixel_layer.name: "zbox"}, input_bounds=(-1.0, 1.0)).explain(x, targets=0)
    for sample, got in zip(x.reshape(3, -1).astype(np.float64), ex.attributions.reshape(3, -1)):
        h = np.maximum(sample @ matrix + bias, 0)
        relevance = _propagate(h, w_top, b_top, np.array([h @ w_top[:, 0] + b_top[0], 0.0]), "epsilon")
        np.testing.assert_allclose(got, _propagate_bounded(sample, matrix, np.full(50, -1.0), np.full(50, 1.0), relevance), rtol=1e-4, atol=1e-6)


def test_bounded_rule_reads_pixels_through_flatten_and_dropout():
    """Per-pixel bounds follow the pixels through Flatten (and an inference Dropout, which
    returns its input): the same numbers as the flat model given flattened bounds."""
    image = keras.Sequential([keras.Input((4, 4, 2)), L.Dropout(0.3), L.Flatten(), L.Dense(5, activation="relu"), L.Dense(3)])
    flat = keras.Sequential([keras.Input((32,)), L.Dense(5, activation="relu"), L.Dense(3)])
    flat.set_weights(image.get_weights())
    rng = np.random.default_rng(6)
    x = rng.uniform(0, 1, (4, 4, 4, 2)).astype(np.float32)
    low, high = rng.uniform(-1, 0, (4, 4, 2)), rng.uniform(1, 2, 2)
    lrp = LRP(image, rule="composite", input_bounds=(low, high))
    ours = lrp.explain(x, targets=1).attributions
    assert lrp.rules[image.layers[2].name].name == "zbox"
    flat_bounds = (low.reshape(-1), np.broadcast_to(high, (4, 4, 2)).reshape(-1))
    expected = LRP(flat, rule="composite", input_bounds=flat_bounds).explain(x.reshape(4, -1), targets=1).attributions
    np.testing.assert_allclose(ours.reshape(4, -1), expected, rtol=1e-5, atol=1e-7)


def test_composite_with_bounded_pixels_conserves_relevance(relu_net):
    model, x = relu_net
    ex = LRP(model, rule="composite", epsilon=1e-9).explain(x)
    np.testing.assert_allclose(ex.attributions.sum(axis=(1, 2, 3)), ex.extras["score"], rtol=1e-4)
    np.testing.assert_allclose(ex.extras["conservation"], 1.0, rtol=1e-4)
    # The box decides the numbers: a wider box than the samples' own range moves relevance.
    wide = LRP(model, rule="composite", epsilon=1e-9, input_bounds=(-1.0, 2.0)).explain(x)
    np.testing.assert_allclose(wide.attributions.sum(axis=(1, 2, 3)), ex.extras["score"], rtol=1e-4)
    assert not np.allclose(wide.attributions, ex.attributions, atol=1e-3 * np.abs(ex.attributions).max())


def test_bounded_rule_errors_name_the_argument(dense_net, relu_net):
    first, second = dense_net.layers
    with pytest.raises(ValueError, match=f"layer_rules: '{second.name}' does not read the input pixels"):
        LRP(dense_net, layer_rules={second.name: "zbox"}).explain(X)
    with pytest.raises(ValueError, match=r"inputs: samples \[0\] have values outside input_bounds"):
        LRP(dense_net, layer_rules={first.name: "zbox"}, input_bounds=(-1, 1.5)).explain(X)
    with pytest.raises(ValueError, match="input_bounds: expected finite bounds with low <= high"):
        LRP(dense_net, input_bounds=(1, 0))
    with pytest.raises(ValueError, match=r"input_bounds: a bound of shape \(3,\) does not broadcast to one input sample of shape \(10, 10, 2\)"):
        LRP(relu_net[0], rule="composite", input_bounds=([0, 0, 0], [1, 1, 1])).explain(relu_net[1])


# -- planted signal ------------------------------------------------------------------------------
def test_composite_keeps_gamma_where_it_is_well_posed_on_mobilenet():
    """MobileNetV2's linear bottlenecks give convolutions without a ReLU after them, and
    convolutions reading signed inputs: γ there blows relevance up (1e30 for scores near 1
    at 224 px), so the composite gives them ε and keeps relevance near the score."""
    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(48, 48, 3), alpha=0.35, classes=10)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 48, 48, 3)).astype(np.float32)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0  # batch-norm statistics from this batch, so activations do not vanish
    model(x, training=True)
    explainer = LRP(model, rule="composite")
    ex = explainer.explain(x)
    ratio = ex.extras["relevance"] / ex.extras["score"]
    assert np.abs(ratio).max() < 10, ratio  # not conserved exactly (biases, ε), but of the score's size
    rules = {name: rule.name for name, rule in explainer.rules.items()}
    assert rules["Conv1"] == "zbox" and rules["predictions"] == "epsilon"
    assert rules["block_1_depthwise"] == "gamma"  # reads a ReLU6 output, ReLU6 after its batch norm
    assert rules["block_1_project"] == rules["block_2_expand"] == "epsilon"  # no ReLU after; reads the signed bottleneck
    gamma_everywhere = LRP(model, rule="gamma").explain(x).extras["relevance"] / ex.extras["score"]
    assert np.abs(gamma_everywhere).max() > 100 * np.abs(ratio).max()


def test_composite_rule_finds_planted_patch(patch_model, patch_data):
    _, (x_test, y_test, masks) = patch_data
    ex = LRP(patch_model, rule="composite").explain(x_test, targets=y_test)
    peaks = peak_location(spatial_map(ex.attributions), 6)
    hits = masks[np.arange(len(masks)), peaks[:, 0], peaks[:, 1]]
    print(f"LRP composite planted-signal hit rate: {hits.mean():.3f}")
    assert hits.mean() >= 0.85


# -- layers ---------------------------------------------------------------------------------------
class _SoftClip(L.Layer):
    """x · tanh(mean(x)): a custom layer whose own computation no LRP rule covers."""

    def call(self, x):
        return x * keras.ops.tanh(keras.ops.mean(x, axis=-1, keepdims=True))


class _Cube(L.Layer):
    """An elementwise custom activation (x³): relevance can pass it unchanged."""

    def call(self, x):
        return x * x * x


def test_a_layer_without_a_rule_is_refused_when_built_and_can_be_given_one():
    model = keras.Sequential([keras.Input((6, 3)), L.Dense(4), _SoftClip(name="soft_clip"), L.Flatten(), L.Dense(2)])
    with pytest.raises(ValueError, match=r"LRP has no rule for layer 'soft_clip' \(_SoftClip\): its call computes .*layer_rules=\{'soft_clip': 'pass'\}"):
        LRP(model)
    cubed = keras.Sequential([keras.Input((3,)), L.Dense(4), _Cube(name="cube"), L.Dense(2)])
    cubed.set_weights([W1, B1, W2, B2])
    ex = LRP(cubed, rule="epsilon", epsilon=EPS).explain(X, targets=0)  # elementwise by its ops: relevance passes
    for x, got in zip(X.astype(np.float64), ex.attributions):
        hidden = (x @ W1 + B1) ** 3
        top = np.array([hidden @ W2[:, 0] + B2[0], 0.0])
        np.testing.assert_allclose(got, _propagate(x, W1, B1, _propagate(hidden, W2, B2, top, "epsilon"), "epsilon"), rtol=1e-5, atol=1e-6)


def test_batch_norm_is_folded_into_the_conv_before_it():
    x = RNG.uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    inputs = keras.Input((8, 8, 3))
    conv, bn = L.Conv2D(5, 3, use_bias=True), L.BatchNormalization()
    h = L.DepthwiseConv2D(3, padding="same")(L.ReLU(6.0)(bn(conv(inputs))))
    outputs = L.Dense(3)(L.GlobalAveragePooling2D()(L.ReLU()(h)))
    model = keras.Model(inputs, outputs)
    gamma, beta = RNG.uniform(0.5, 1.5, 5), RNG.normal(0, 0.1, 5)
    mean, var = RNG.normal(0, 0.2, 5), RNG.uniform(0.5, 2.0, 5)
    bn.set_weights([gamma, beta, mean, var])
    # The same network with the batch norm folded by hand into the conv.
    scale = gamma / np.sqrt(var + bn.epsilon)
    kernel, bias = conv.get_weights()
    folded_conv = L.Conv2D(5, 3)
    f = L.ReLU(6.0)(folded_conv(inputs))
    rest = [model.layers[-4], L.ReLU(), model.layers[-2], model.layers[-1]]
    for layer in rest:
        f = layer(f)
    folded = keras.Model(inputs, f)
    folded_conv.set_weights([kernel * scale, bias * scale + beta - mean * scale])
    for rule in ("epsilon", "gamma", "zplus"):
        ours = LRP(model, rule=rule).explain(x, targets=1).attributions
        by_hand = LRP(folded, rule=rule).explain(x, targets=1).attributions
        np.testing.assert_allclose(ours, by_hand, rtol=1e-4, atol=1e-6 * np.abs(by_hand).max())


def test_nested_residual_model_with_concatenate_and_average_pooling():
    init = keras.initializers.GlorotUniform(seed=2)
    block_in = keras.Input((8, 8, 4))
    block = keras.Model(block_in, L.Add()([block_in, L.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, kernel_initializer=init)(block_in)]), name="residual")
    inputs = keras.Input((16, 16, 2))
    h = L.AveragePooling2D(2)(L.Conv2D(4, 3, padding="same", activation="relu", use_bias=False, kernel_initializer=init)(inputs))
    h = L.Concatenate()([block(h), h])
    h = L.GlobalAveragePooling2D()(L.Activation("relu")(h))
    model = keras.Model(inputs, L.Dense(3, use_bias=False, kernel_initializer=init)(h))
    x = RNG.uniform(0, 1, (5, 16, 16, 2)).astype(np.float32)
    ex = LRP(model, rule="zero").explain(x)
    np.testing.assert_allclose(ex.attributions.sum(axis=(1, 2, 3)), ex.extras["score"], rtol=1e-4)
    np.testing.assert_allclose(ex.attributions, tek.GradientInput(model).explain(x).attributions, atol=1e-5 * np.abs(ex.attributions).max())
    composite = LRP(model, rule="composite").explain(x)
    assert composite.attributions.shape == x.shape and np.isfinite(composite.attributions).all()


def test_embedding_model_gets_relevance_per_token():
    init = keras.initializers.GlorotUniform(seed=3)
    model = keras.Sequential(
        [keras.Input((7,), dtype="int32"), L.Embedding(20, 5), L.Conv1D(6, 3, padding="causal", activation="relu", use_bias=False, kernel_initializer=init),
         L.GlobalAveragePooling1D(), L.Dense(2, activation="sigmoid", use_bias=False, kernel_initializer=init)]
    )  # fmt: skip
    tokens = RNG.integers(0, 20, (6, 7))
    ex = LRP(model, rule="zero").explain(tokens, targets=0)
    assert ex.attributions.shape == (6, 7)
    np.testing.assert_allclose(ex.attributions.sum(axis=1), ex.extras["score"], rtol=1e-4)


@pytest.mark.parametrize("kwargs, message", [({"rule": "alpha2beta2"}, "rule: expected one of"), ({"gamma": -1}, "gamma: expected a number >= 0"),
                                             ({"layer_rules": {"nope": "zero"}}, "layer_rules: no layer 'nope'")])  # fmt: skip
def test_bad_arguments_are_named(dense_net, kwargs, message):
    with pytest.raises(ValueError, match=message):
        LRP(dense_net, **kwargs)


def test_epsilon_through_a_capped_relu_matches_the_hand_computed_rule():
    """Dense → ReLU(max 1) → Dense with a large ε: the ε factor and the capped ReLU's
    pass-through are fused in one backward step; the numbers must still be the rule's."""
    model = keras.Sequential([keras.Input((3,)), L.Dense(4), L.ReLU(max_value=1.0), L.Dense(2)])
    model.set_weights([W1, B1, W2, B2])
    expected = []
    for x in X.astype(np.float64):
        hidden = np.clip(x @ W1 + B1, 0, 1.0)
        top = np.array([0.0, hidden @ W2[:, 1] + B2[1]])
        expected.append(_propagate(x, W1, B1, _propagate(hidden, W2, B2, top, "epsilon"), "epsilon"))
    ex = LRP(model, rule="epsilon", epsilon=EPS).explain(X, targets=1)
    np.testing.assert_allclose(ex.attributions, np.array(expected), rtol=1e-5, atol=1e-6)


# -- round 2: rules as objects, composites, canonizers, more layer kinds --------------------------
from tf_explain_kit.explainers.propagation.composites import Composite  # noqa: E402
from tf_explain_kit.explainers.propagation.lrp_rules import AlphaBeta, Epsilon, Gamma, ZPlus  # noqa: E402


def _propagate_alpha_beta(a: np.ndarray, w: np.ndarray, b: np.ndarray, relevance: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """R_i = Σ_j (α (a_i w_ij)⁺ / (z_j⁺ + ε) − β (a_i w_ij)⁻ / (z_j⁻ − ε)) R_j, in loops."""
    out = np.zeros(len(a))
    for j in range(w.shape[1]):
        contributions = a * w[:, j]
        positive, negative = np.maximum(contributions, 0), np.minimum(contributions, 0)
        z_pos, z_neg = positive.sum() + max(b[j], 0) + EPS, negative.sum() + min(b[j], 0) - EPS
        out += (alpha * positive / z_pos - beta * negative / z_neg) * relevance[j]
    return out


def test_hand_computed_alpha_beta_rule(dense_net):
    ex = LRP(dense_net, rule=AlphaBeta(2.0, 1.0, epsilon=EPS)).explain(X, targets=0)
    for x, got in zip(X.astype(np.float64), ex.attributions):
        hidden = np.maximum(x @ W1 + B1, 0)
        top = np.array([hidden @ W2[:, 0] + B2[0], 0.0])
        expected = _propagate_alpha_beta(x, W1, B1, _propagate_alpha_beta(hidden, W2, B2, top, 2.0, 1.0), 2.0, 1.0)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _small_cnn() -> keras.Model:
    init = keras.initializers.GlorotUniform(seed=7)
    return keras.Sequential(
        [keras.Input((8, 8, 3)), L.Conv2D(4, 3, activation="relu", kernel_initializer=init, name="first"), L.Conv2D(4, 3, kernel_initializer=init, name="second"),
         L.ReLU(), L.DepthwiseConv2D(3, activation="relu", depthwise_initializer=init, name="depthwise"), L.Flatten(), L.Dense(3, kernel_initializer=init, name="head")]
    )  # fmt: skip


@pytest.mark.parametrize(
    "preset, expected",
    [("epsilon_gamma_box", {"first": "zbox", "second": "gamma", "depthwise": "gamma", "head": "epsilon"}),
     ("epsilon_plus", {"first": "zplus", "second": "zplus", "depthwise": "zplus", "head": "epsilon"}),
     ("epsilon_alpha2_beta1", {"first": "alpha_beta", "second": "alpha_beta", "depthwise": "alpha_beta", "head": "epsilon"}),
     ("composite", {"first": "zbox", "second": "gamma", "depthwise": "gamma", "head": "epsilon"})],
)  # fmt: skip
def test_presets_map_layer_types_to_rules(preset, expected):
    explainer = LRP(_small_cnn(), rule=preset)
    assert {name: rule.name for name, rule in explainer.rules.items()} == expected


def test_rules_and_composites_as_objects_and_layer_rules_by_type(dense_net):
    by_object = LRP(dense_net, rule=ZPlus(epsilon=EPS)).explain(X, targets=1).attributions
    by_name = LRP(dense_net, rule="zplus", epsilon=EPS).explain(X, targets=1).attributions
    np.testing.assert_allclose(by_object, by_name, rtol=1e-6)
    composite = Composite([(L.Dense, Gamma(GAMMA, EPS))])
    np.testing.assert_allclose(LRP(dense_net, rule=composite).explain(X, targets=1).attributions, LRP(dense_net, rule="gamma", epsilon=EPS, gamma=GAMMA).explain(X, targets=1).attributions, rtol=1e-6)
    by_type = LRP(dense_net, rule="zplus", epsilon=EPS, layer_rules={L.Dense: Epsilon(EPS)})
    np.testing.assert_allclose(by_type.explain(X, targets=1).attributions, LRP(dense_net, rule="epsilon", epsilon=EPS).explain(X, targets=1).attributions, rtol=1e-6)


def test_preprocessing_and_augmentation_are_folded_into_the_pixel_layer():
    """RandomFlip (inactive), Rescaling and Normalization before the first conv: the composite
    gives it z^B in raw-pixel space, the same numbers as the bare network on the
    preprocessed pixels with the box mapped through, and the relevance comes back unchanged."""
    mean, variance = np.array([0.4, 0.5, 0.6], np.float32), np.array([0.04, 0.09, 0.16], np.float32)
    bare = _small_cnn()
    inputs = keras.Input((8, 8, 3))
    h = L.Normalization(mean=mean, variance=variance)(L.Rescaling(1 / 255.0)(L.RandomFlip("horizontal")(inputs)))
    for layer in bare.layers:
        h = layer(h)
    wrapped = keras.Model(inputs, h)
    raw = RNG.uniform(0, 255, (4, 8, 8, 3)).astype(np.float32)
    pre = (raw / 255.0 - mean) / np.sqrt(variance)
    ours = LRP(wrapped, rule="composite", input_bounds=(0.0, 255.0))
    assert ours.rules["first"].name == "zbox"
    mapped = ((0.0 - mean) / np.sqrt(variance), (1.0 - mean) / np.sqrt(variance))
    expected = LRP(bare, rule="composite", input_bounds=mapped).explain(pre, targets=2).attributions
    np.testing.assert_allclose(ours.explain(raw, targets=2).attributions, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    # Without the canonizers, the preprocessing hides the pixels: ε at the first layer.
    assert LRP(wrapped, rule="composite", canonizers=()).rules["first"].name == "epsilon"


def _relu_cnn_without_biases() -> keras.Model:
    init = keras.initializers.GlorotUniform(seed=9)
    return keras.Sequential(
        [keras.Input((10, 10, 2)), L.Conv2D(5, 3, padding="same", activation="relu", use_bias=False, kernel_initializer=init, name="c1"), L.MaxPooling2D(2),
         L.Conv2D(6, 3, padding="same", activation="relu", use_bias=False, kernel_initializer=init, name="c2"), L.GlobalAveragePooling2D(),
         L.Dense(8, activation="relu", use_bias=False, kernel_initializer=init, name="d1"), L.Dense(3, use_bias=False, kernel_initializer=init, name="d2")]
    )  # fmt: skip


@pytest.mark.parametrize("rule", [Epsilon(1e-9), ZPlus(1e-9), Gamma(0.5, 1e-9), AlphaBeta(1.0, 0.0, 1e-9), "zero"], ids=lambda r: getattr(r, "name", r))
def test_relevance_is_conserved_layer_by_layer(rule):
    """Without biases and with ε → 0 these rules conserve: the relevance at the output of
    every layer (activation × modified gradient) sums to the explained score."""
    model = _relu_cnn_without_biases()
    x = RNG.uniform(0, 1, (5, 10, 10, 2)).astype(np.float32)
    lrp = LRP(model, rule=rule)
    ex = lrp.explain(x, targets=1)
    weights = np.zeros((5, 3), np.float32)
    weights[:, 1] = 1
    for name in ("c1", "c2", "d1"):
        result = lrp.adapter.layer_gradients(x, weights, model.get_layer(name), lrp._build(x), lrp._key)
        layer_relevance = (result.activations * result.grads).reshape(5, -1).sum(axis=1)
        np.testing.assert_allclose(layer_relevance, ex.extras["score"], rtol=1e-4, err_msg=name)
    np.testing.assert_allclose(ex.attributions.reshape(5, -1).sum(axis=1), ex.extras["score"], rtol=1e-4)


def test_layer_normalization_passes_relevance_unchanged(dense_net):
    model = keras.Sequential([keras.Input((3,)), L.Dense(4), L.LayerNormalization(), L.Dense(2)])
    norm = model.layers[1]
    norm.set_weights([np.array([1.2, 0.8, 1.5, 0.6], np.float32), np.array([0.1, -0.2, 0.0, 0.3], np.float32)])
    model.layers[0].set_weights([W1, B1])
    model.layers[2].set_weights([W2, B2])
    ex = LRP(model, rule="epsilon", epsilon=EPS).explain(X, targets=0)
    for x, got in zip(X.astype(np.float64), ex.attributions):
        z = x @ W1 + B1
        y = keras.ops.convert_to_numpy(norm(z[None].astype(np.float32)))[0].astype(np.float64)
        top = np.array([y @ W2[:, 0] + B2[0], 0.0])
        relevance_y = _propagate(y, W2, B2, top, "epsilon")  # = the relevance of z: identity
        np.testing.assert_allclose(got, _propagate(x, W1, B1, relevance_y, "epsilon"), rtol=1e-5, atol=1e-6)


def test_a_gate_is_held_constant_and_its_signal_takes_all_the_relevance():
    """Squeeze-and-excitation style: signal · sigmoid(gate); LRP-0 gives the gate nothing."""
    inputs = keras.Input((3,))
    signal = L.Dense(4, name="signal")(inputs)
    gate = L.Dense(4, activation="sigmoid", name="gate")(inputs)
    model = keras.Model(inputs, L.Dense(2, name="head")(L.Multiply()([signal, gate])))
    w_gate, b_gate = RNG.normal(size=(3, 4)).astype(np.float32), RNG.normal(size=4).astype(np.float32)
    model.get_layer("signal").set_weights([W1, B1])
    model.get_layer("gate").set_weights([w_gate, b_gate])
    model.get_layer("head").set_weights([W2, B2])
    ex = LRP(model, rule="epsilon", epsilon=EPS).explain(X, targets=1)
    for x, got in zip(X.astype(np.float64), ex.attributions):
        g = 1 / (1 + np.exp(-(x @ w_gate + b_gate)))
        s = x @ W1 + B1
        product = s * g
        top = np.array([0.0, product @ W2[:, 1] + B2[1]])
        np.testing.assert_allclose(got, _propagate(x, W1, B1, _propagate(product, W2, B2, top, "epsilon"), "epsilon"), rtol=1e-5, atol=1e-6)


def test_lstm_signal_take_all_by_hand():
    """One LSTM step from zero state: h = o·tanh(i·tanh(z_c)); gates constant, so the
    relevance of h reaches z_c whole and the ε-rule hands it to the input."""
    lstm = L.LSTM(3, name="lstm")
    model = keras.Sequential([keras.Input((1, 2)), lstm, L.Dense(2, name="head")])
    x = RNG.normal(size=(3, 1, 2)).astype(np.float32)
    ex = LRP(model, rule="epsilon", epsilon=EPS).explain(x, targets=0)
    kernel, _, bias = (w.astype(np.float64) for w in lstm.get_weights())
    w_head, b_head = (w.astype(np.float64) for w in model.get_layer("head").get_weights())
    for sample, got in zip(x[:, 0].astype(np.float64), ex.attributions[:, 0]):
        z = sample @ kernel + bias
        z_i, _, z_c, z_o = np.split(z, 4)
        sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        h = sig(z_o) * np.tanh(sig(z_i) * np.tanh(z_c))
        relevance_h = _propagate(h, w_head, b_head, np.array([h @ w_head[:, 0] + b_head[0], 0.0]), "epsilon")
        expected = _propagate(sample, kernel[:, 6:9], bias[6:9], relevance_h, "epsilon")  # z_c's columns
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


def test_attention_weights_are_held_constant_and_relevance_is_conserved():
    inputs = keras.Input((6, 4))
    init = keras.initializers.GlorotUniform(seed=4)
    h = L.MultiHeadAttention(2, 3, use_bias=False, kernel_initializer=init)(inputs, inputs)
    h = L.LayerNormalization(center=False)(L.Add()([inputs, h]))
    model = keras.Model(inputs, L.Dense(2, use_bias=False, kernel_initializer=init)(L.GlobalAveragePooling1D()(h)))
    x = RNG.normal(size=(4, 6, 4)).astype(np.float32)
    ex = LRP(model, rule="zero").explain(x, targets=0)
    np.testing.assert_allclose(ex.attributions.reshape(4, -1).sum(axis=1), ex.extras["score"], rtol=1e-4)
    np.testing.assert_allclose(ex.predictions, keras.ops.convert_to_numpy(model(x)), rtol=1e-5, atol=1e-6)


def test_mixed_precision_computes_float32_relevance():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(), L.GlobalAveragePooling2D(), L.Dense(3), L.Activation("softmax", dtype="float32")])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    x = RNG.uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    for rule in ("epsilon", "composite"):
        ours, expected = LRP(model, rule=rule).explain(x, targets=1), LRP(twin, rule=rule).explain(x, targets=1)
        assert ours.attributions.dtype == np.float32
        np.testing.assert_allclose(ours.attributions, expected.attributions, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["separable", "conv3d", "conv1d_causal"])
def test_more_convolutions_conserve_relevance(kind):
    init = keras.initializers.GlorotUniform(seed=11)
    conv = {
        "separable": lambda: L.SeparableConv2D(4, 3, padding="same", activation="relu", use_bias=False, depthwise_initializer=init, pointwise_initializer=init),
        "conv3d": lambda: L.Conv3D(4, 2, activation="relu", use_bias=False, kernel_initializer=init),
        "conv1d_causal": lambda: L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu", use_bias=False, kernel_initializer=init),
    }[kind]
    shape = {"separable": (6, 6, 2), "conv3d": (4, 4, 4, 2), "conv1d_causal": (9, 2)}[kind]
    model = keras.Sequential([keras.Input(shape), conv(), L.Flatten(), L.Dense(3, use_bias=False, kernel_initializer=init)])
    x = RNG.uniform(0, 1, (4, *shape)).astype(np.float32)
    ex = LRP(model, rule="epsilon", epsilon=1e-9).explain(x, targets=0)
    np.testing.assert_allclose(ex.attributions.reshape(4, -1).sum(axis=1), ex.extras["score"], rtol=1e-4)
    np.testing.assert_allclose(ex.attributions, tek.GradientInput(model).explain(x, targets=0).attributions, atol=1e-5 * np.abs(ex.attributions).max())
    if kind == "separable":
        with pytest.raises(ValueError, match=r"rule: '.*' is a SeparableConv2D \(two kernels\).*layer_rules="):
            LRP(model, rule=Gamma())


@pytest.mark.parametrize("canonizers", ["default", "none"])
def test_relevance_is_conserved_layer_by_layer_through_each_canonizer(canonizers):
    """Rescaling (no offset) before the pixels and a batch norm without shift: with the
    canonizers (folded, z^B at the pixels) or without (each an affine layer, LRP-0), the
    ε → 0 rules conserve relevance at every layer."""
    init = keras.initializers.GlorotUniform(seed=12)
    inputs = keras.Input((8, 8, 2))
    conv = L.Conv2D(4, 3, use_bias=False, kernel_initializer=init, name="conv")
    norm = L.BatchNormalization(center=False, name="norm")
    h = L.ReLU(name="relu")(norm(conv(L.Rescaling(1 / 255.0)(inputs))))
    model = keras.Model(inputs, L.Dense(3, use_bias=False, kernel_initializer=init)(L.GlobalAveragePooling2D()(h)))
    norm.set_weights([RNG.uniform(0.5, 1.5, 4), np.zeros(4), RNG.uniform(0.5, 1.5, 4)])  # gamma, mean 0, variance: a pure scale
    x = RNG.uniform(0, 255, (4, 8, 8, 2)).astype(np.float32)
    lrp = LRP(model, rule="composite", epsilon=1e-9, **({} if canonizers == "default" else {"canonizers": ()}))
    ex = lrp.explain(x, targets=2)
    assert lrp.rules["conv"].name == ("zbox" if canonizers == "default" else "epsilon")
    weights = np.zeros((4, 3), np.float32)
    weights[:, 2] = 1
    result = lrp.adapter.layer_gradients(x, weights, model.get_layer("relu"), lrp._build(x), lrp._key)
    np.testing.assert_allclose((result.activations * result.grads).reshape(4, -1).sum(axis=1), ex.extras["score"], rtol=1e-4)
    np.testing.assert_allclose(ex.attributions.reshape(4, -1).sum(axis=1), ex.extras["score"], rtol=1e-4)


@pytest.mark.parametrize("bounds", [None, (0.0, 1.0)], ids=["own_range", "given"])
def test_bounded_rule_through_zero_padding_gives_padding_no_relevance(bounds):
    """ZeroPadding before the first convolution (ResNet, DenseNet, EfficientNet stems): the
    padded zeros are not pixels, so z^B gives them the box [0, 0] and the pixels keep all
    the relevance (conserved without biases)."""
    init = keras.initializers.GlorotUniform(seed=13)
    model = keras.Sequential([keras.Input((6, 6, 2)), L.ZeroPadding2D(1), L.Conv2D(3, 3, activation="relu", use_bias=False, kernel_initializer=init, name="stem"), L.Flatten(), L.Dense(2, use_bias=False, kernel_initializer=init)])
    x = RNG.uniform(0, 1, (4, 6, 6, 2)).astype(np.float32)
    lrp = LRP(model, rule="composite", epsilon=1e-9, input_bounds=bounds)
    ex = lrp.explain(x, targets=0)
    assert lrp.rules["stem"].name == "zbox"
    np.testing.assert_allclose(ex.attributions.reshape(4, -1).sum(axis=1), ex.extras["score"], rtol=1e-4)
