"""DeepLIFT and DeepShap, native: hand-computed rules, shap's numbers, exact summation on
every architecture the rules cover, the model's own forward pass, baselines and errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import shap
from keras import layers as L
from keras import ops

from tf_explain_kit.explainers.deeplift import DeepLift
from tf_explain_kit.explainers.shap import DeepShap
from tf_explain_kit.model import ModelAdapter

RNG = np.random.default_rng(0)
INIT = keras.initializers.GlorotUniform(seed=1)


def _relative_gap(ex) -> float:
    """|Σ attributions − (score − base)| relative to |score − base|, worst sample."""
    base = ex.extras["base_values"] if "base_values" in ex.extras else ex.extras["baseline_score"]
    difference = ex.extras["score"] - base
    return float(np.max(np.abs(ex.extras["convergence_delta"]) / np.maximum(np.abs(difference), 1e-6)))


# -- rules by hand ------------------------------------------------------------------------------
def test_rescale_rule_by_hand():
    """Dense → tanh → Dense: the multiplier of each hidden unit is Δtanh/Δz."""
    w1, b1 = RNG.normal(size=(3, 4)).astype(np.float32), RNG.normal(size=4).astype(np.float32)
    w2, b2 = RNG.normal(size=(4, 2)).astype(np.float32), RNG.normal(size=2).astype(np.float32)
    model = keras.Sequential([keras.Input((3,)), L.Dense(4, activation="tanh"), L.Dense(2)])
    model.set_weights([w1, b1, w2, b2])
    x, reference = RNG.normal(size=(5, 3)).astype(np.float32), RNG.normal(size=3).astype(np.float32)
    ex = DeepLift(model, baseline=reference).explain(x, targets=1)
    z, z_ref = x @ w1 + b1, reference @ w1 + b1
    multiplier = (np.tanh(z) - np.tanh(z_ref)) / (z - z_ref)  # (5, 4)
    expected = (x - reference) * ((multiplier * w2[:, 1]) @ w1.T)
    np.testing.assert_allclose(ex.attributions, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex.extras["convergence_delta"], 0.0, atol=1e-5)


def test_max_pooling_rule_by_hand():
    """A 1-D max pooling of width 2 read by a dense layer: shap's rule, written out."""
    model = keras.Sequential([keras.Input((6, 1)), L.MaxPooling1D(2), L.Flatten(), L.Dense(1, use_bias=False)])
    w = np.array([[0.5], [-1.5], [2.0]], np.float32)
    model.set_weights([w])
    x = np.array([[3.0, 1.0, -1.0, 2.0, 0.5, 0.5]], np.float32)[..., None]
    r = np.array([[0.0, 4.0, 1.0, -2.0, 1.0, 0.0]], np.float32)[..., None]
    ex = DeepShap(model, r).explain(x, targets=0)
    expected = np.zeros(6)
    for window, weight in zip(range(3), w[:, 0]):
        xs, rs = x[0, 2 * window : 2 * window + 2, 0], r[0, 2 * window : 2 * window + 2, 0]
        cross = max(xs.max(), rs.max())
        expected[2 * window + xs.argmax()] += weight * (cross - rs.max())  # through the input's maximum
        expected[2 * window + rs.argmax()] += weight * (xs.max() - cross)  # through the reference's
    np.testing.assert_allclose(ex.attributions[0, :, 0], expected, rtol=1e-6, atol=1e-6)
    assert abs(ex.extras["convergence_delta"][0]) < 1e-6


def test_product_of_two_inputs_is_the_shapley_split():
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    model = keras.Model([a, b], L.Dense(1, use_bias=False, kernel_initializer="ones")(L.Multiply()([a, b])))
    x = [RNG.normal(size=(3, 4)).astype(np.float32), RNG.normal(size=(3, 4)).astype(np.float32)]
    base = [RNG.normal(size=(1, 4)).astype(np.float32), RNG.normal(size=(1, 4)).astype(np.float32)]
    ex = DeepLift(model, baseline=base).explain(x, targets=0)
    np.testing.assert_allclose(ex.attributions[0], (x[0] - base[0]) * (x[1] + base[1]) / 2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex.attributions[1], (x[1] - base[1]) * (x[0] + base[0]) / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["softmax", "layer_norm", "rms_norm"])
def test_softmax_and_normalization_rules_sum_exactly(layer):
    inner = {"softmax": L.Softmax(), "layer_norm": L.LayerNormalization(), "rms_norm": L.RMSNormalization()}[layer]
    model = keras.Sequential([keras.Input((6,)), L.Dense(5, kernel_initializer=INIT), inner, L.Dense(3, kernel_initializer=INIT)])
    inner.set_weights([RNG.uniform(0.5, 1.5, w.shape) if i == 0 else RNG.normal(0, 0.3, w.shape) for i, w in enumerate(inner.weights)])
    x = RNG.normal(size=(6, 6)).astype(np.float32)
    ex = DeepShap(model, RNG.normal(size=(7, 6)).astype(np.float32)).explain(x)
    assert _relative_gap(ex) < 1e-5
    probabilities = keras.Sequential([keras.Input((6,)), L.Dense(4, activation="softmax", kernel_initializer=INIT)])
    assert _relative_gap(DeepShap(probabilities, x[:3], score="probabilities").explain(x)) < 1e-5


# -- shap's numbers -----------------------------------------------------------------------------
def _cnn(pooling: str) -> keras.Model:
    pool = {"max": L.MaxPooling2D, "average": L.AveragePooling2D}[pooling]
    return keras.Sequential(
        [keras.Input((12, 12, 2)), L.Conv2D(6, 3, padding="same", activation="relu", kernel_initializer=INIT), pool(2), L.BatchNormalization(),
         L.Conv2D(8, 3, activation="elu", kernel_initializer=INIT), L.Flatten(), L.Dense(3, kernel_initializer=INIT)]
    )  # fmt: skip


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "elu", "softplus"])
def test_deep_shap_equals_shap_on_dense_networks(activation):
    model = keras.Sequential([keras.Input((8,)), L.Dense(10, activation=activation, kernel_initializer=INIT), L.Dense(6, activation=activation, kernel_initializer=INIT), L.Dense(3, kernel_initializer=INIT)])
    background, x = RNG.normal(size=(12, 8)).astype(np.float32), RNG.normal(size=(4, 8)).astype(np.float32)
    ours = DeepShap(model, background).explain(x, targets=2)
    reference = shap.DeepExplainer(model, background).shap_values(x, check_additivity=False)[..., 2]
    np.testing.assert_allclose(ours.attributions, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())
    assert _relative_gap(ours) < 1e-4


@pytest.mark.parametrize("pooling", ["max", "average"])
def test_deep_shap_equals_shap_on_a_cnn_with_pooling_and_batch_norm(pooling):
    model = _cnn(pooling)
    bn = next(layer for layer in model.layers if isinstance(layer, L.BatchNormalization))
    bn.set_weights([RNG.uniform(0.5, 1.5, 6), RNG.normal(0, 0.1, 6), RNG.normal(0, 0.1, 6), RNG.uniform(0.5, 1.5, 6)])
    background, x = RNG.uniform(0, 1, (10, 12, 12, 2)).astype(np.float32), RNG.uniform(0, 1, (3, 12, 12, 2)).astype(np.float32)
    ours = DeepShap(model, background).explain(x, targets=1)
    reference = shap.DeepExplainer(model, background).shap_values(x, check_additivity=False)[..., 1]
    # Float rounding (fused kernels, convolution order) decides a few secants near |Δx| = 1e-6.
    np.testing.assert_allclose(ours.attributions, reference, rtol=1e-4, atol=5e-5 * np.abs(reference).max())


# -- every architecture the rules cover: summation, and the model's own forward pass ------------
class _TokenAndPosition(L.Layer):
    """The Keras Transformer tutorial's embedding: a custom layer holding two Embeddings."""

    def __init__(self, length: int, vocabulary: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.tokens, self.positions = L.Embedding(vocabulary, width), L.Embedding(length, width)

    def call(self, x):
        return self.tokens(x) + self.positions(ops.arange(0, ops.shape(x)[-1], 1))


class SubclassedNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv, self.pool, self.head = L.Conv1D(5, 3, activation="swish"), L.GlobalMaxPooling1D(), L.Dense(3)

    def call(self, x):
        return self.head(self.pool(self.conv(x)))


def _encoder(inputs: keras.KerasTensor, h: keras.KerasTensor) -> keras.Model:
    a = L.MultiHeadAttention(2, 4, kernel_initializer=INIT)(h, h)
    h = L.LayerNormalization()(L.Add()([h, a]))
    f = L.Dense(8, kernel_initializer=INIT)(L.Dense(16, activation="gelu", kernel_initializer=INIT)(h))
    h = L.LayerNormalization()(L.Add()([h, f]))
    return keras.Model(inputs, L.Dense(3, kernel_initializer=INIT)(L.GlobalAveragePooling1D()(h)))


def _transformer() -> keras.Model:
    inputs = keras.Input((10, 4))
    return _encoder(inputs, L.Dense(8, kernel_initializer=INIT)(inputs))


def _squeeze_excite() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    h = L.Conv2D(6, 3, padding="same", activation="swish", kernel_initializer=INIT)(inputs)
    gate = L.Conv2D(6, 1, activation="sigmoid", kernel_initializer=INIT)(L.GlobalAveragePooling2D(keepdims=True)(h))
    h = L.Multiply()([h, gate])
    h = L.DepthwiseConv2D(3, activation="relu6", depthwise_initializer=INIT)(h) + 3.0  # a raw operation between layers
    return keras.Model(inputs, L.Dense(3, kernel_initializer=INIT)(L.GlobalMaxPooling2D()(h)))


SEQUENCE = (10, 4)
ARCHITECTURES = {
    "lstm": lambda: keras.Sequential([keras.Input(SEQUENCE), L.LSTM(6, return_sequences=True), L.LSTM(4), L.Dense(3)]),
    "gru": lambda: keras.Sequential([keras.Input(SEQUENCE), L.GRU(5, return_sequences=True), L.GRU(4, reset_after=False), L.Dense(3)]),
    "bidirectional_simple_rnn": lambda: keras.Sequential([keras.Input(SEQUENCE), L.Bidirectional(L.SimpleRNN(4, go_backwards=False)), L.Dense(3)]),
    "conv1d": lambda: keras.Sequential([keras.Input(SEQUENCE), L.Conv1D(6, 3, activation="relu"), L.MaxPooling1D(2), L.Conv1D(6, 2, activation="selu"), L.GlobalMaxPooling1D(), L.Dense(3)]),
    "transformer": _transformer,
    "squeeze_excite": _squeeze_excite,
    "subclassed": lambda: SubclassedNet(),
}


def _data(name: str, n: int) -> np.ndarray:
    shape = (8, 8, 3) if name == "squeeze_excite" else SEQUENCE
    return RNG.normal(size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_deep_shap_sums_exactly_and_keeps_the_models_forward_pass(name):
    keras.utils.set_random_seed(0)
    model = ARCHITECTURES[name]()
    x = _data(name, 4)
    model(x)  # builds the subclassed model
    ex = DeepShap(model, _data(name, 5)).explain(x)
    assert ex.attributions.shape == x.shape and np.isfinite(ex.attributions).all() and np.abs(ex.attributions).max() > 0
    assert _relative_gap(ex) < 1e-4
    np.testing.assert_allclose(ex.predictions, keras.ops.convert_to_numpy(model(x, training=False)).reshape(4, -1), rtol=1e-5, atol=1e-6)


def test_deep_shap_on_a_token_and_position_transformer_is_refused_at_token_ids():
    """Refused when built: differences of token ids mean nothing (the methods that apply are named)."""
    inputs = keras.Input((6,), dtype="int32")
    model = _encoder(inputs, _TokenAndPosition(6, 20, 8)(inputs))
    with pytest.raises(ValueError, match=r"model: DeepShap needs float inputs, and model '\w+' takes token ids .* integrated_gradients"):
        DeepShap(model, RNG.integers(0, 20, (4, 6)))


def test_mixed_precision_gives_float32_attributions_equal_to_a_float32_twin():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, activation="relu"), L.GlobalAveragePooling2D(), L.Dense(3), L.Activation("softmax", dtype="float32")])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    twin = keras.models.clone_model(model)
    twin.set_weights(model.get_weights())
    x = RNG.uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    ours, expected = DeepShap(model, x[:2]).explain(x, targets=1), DeepShap(twin, x[:2]).explain(x, targets=1)
    assert ours.attributions.dtype == np.float32 and model.layers[0].compute_dtype == "float16"
    np.testing.assert_allclose(ours.attributions, expected.attributions, rtol=1e-6, atol=1e-7)


# -- baselines and errors -----------------------------------------------------------------------
def test_deeplift_baselines_shared_per_sample_or_computed():
    model = keras.Sequential([keras.Input((5,)), L.Dense(6, activation="relu", kernel_initializer=INIT), L.Dense(2, kernel_initializer=INIT)])
    x = RNG.normal(size=(4, 5)).astype(np.float32)
    zeros = DeepLift(model).explain(x, targets=0)
    np.testing.assert_allclose(zeros.attributions, DeepLift(model, baseline=np.zeros(5, np.float32)).explain(x, targets=0).attributions, rtol=1e-6)
    per_sample = x[::-1].copy()
    ex = DeepLift(model, baseline=per_sample).explain(x, targets=0)
    by_call = DeepLift(model, baseline=lambda inputs: inputs[::-1]).explain(x, targets=0)
    np.testing.assert_allclose(ex.attributions, by_call.attributions, rtol=1e-6)
    scores = ModelAdapter.shared(model).forward(per_sample)[1][:, 0]
    np.testing.assert_allclose(ex.extras["baseline_score"], scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex.attributions.sum(axis=1), ex.extras["score"] - scores, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"baseline: expected one sample of shape \(5,\)"):
        DeepLift(model, baseline=np.zeros((3, 5), np.float32)).explain(x)
    with pytest.raises(ValueError, match="baseline: expected 'zeros', an array or a callable"):
        DeepLift(model, baseline="blur")


def test_the_rescale_rule_sums_exactly_for_every_elementwise_activation():
    """Every elementwise activation Keras has, each on its own branch (as a Dense layer's
    activation and as an Activation layer), in one model: the branches sum exactly."""
    from tf_explain_kit.explainers.propagation.kinds import ELEMENTWISE_ACTIVATIONS

    inputs = keras.Input((6,))
    branches = [L.Activation(name)(L.Dense(4, activation=name, kernel_initializer=INIT)(inputs)) for name in sorted(ELEMENTWISE_ACTIVATIONS)]
    model = keras.Model(inputs, L.Dense(2, kernel_initializer=INIT)(L.Concatenate()(branches)))
    x = RNG.normal(size=(5, 6)).astype(np.float32)
    ex = DeepShap(model, RNG.normal(size=(6, 6)).astype(np.float32)).explain(x, targets=0)
    assert np.isfinite(ex.attributions).all() and _relative_gap(ex) < 1e-4


@pytest.mark.parametrize("conv", ["separable", "conv3d"])
def test_more_convolutions_sum_exactly(conv):
    layer = {"separable": L.SeparableConv2D(4, 3, activation="relu"), "conv3d": L.Conv3D(4, 2, activation="relu")}[conv]
    shape = (6, 6, 2) if conv == "separable" else (4, 4, 4, 2)
    model = keras.Sequential([keras.Input(shape), layer, L.Flatten(), L.Dense(3)])
    ex = DeepShap(model, RNG.normal(size=(4, *shape)).astype(np.float32)).explain(RNG.normal(size=(3, *shape)).astype(np.float32))
    assert _relative_gap(ex) < 1e-4


def test_rule_kernels_are_fused_when_the_pair_axis_is_open():
    """DeepShap's pair rows reach the rules as (None, None, H, W, C): the open axes must not
    keep a large activation off its fused kernel (they did, and DeepShap ran 2–5× slower)."""
    import tensorflow as tf

    from tf_explain_kit.tf_backend import fused

    kernel = fused(lambda a, b: a * 2.0 + b)

    @tf.function(input_signature=[tf.TensorSpec((None, None, 32, 32, 8), tf.float32)] * 2)
    def pairs(a, b):
        return kernel(a, b)

    @tf.function(input_signature=[tf.TensorSpec((None, None, 4), tf.float32)] * 2)
    def small(a, b):
        return kernel(a, b)

    x = np.ones((2, 3, 32, 32, 8), np.float32)
    np.testing.assert_array_equal(pairs(x, x).numpy(), 3 * x)
    assert kernel.kernel.experimental_get_tracing_count() == 1
    np.testing.assert_array_equal(small(x[..., 0, 0, :4], x[..., 0, 0, :4]).numpy(), 3 * x[..., 0, 0, :4])
    assert kernel.kernel.experimental_get_tracing_count() == 1  # small activations run unfused


def test_rule_kernels_are_fused_when_any_argument_is_large():
    """A max-pooling rule's first argument is the small pooled gradient and its second the
    large activation: the kernel is fused by its largest argument (the first alone kept
    the digits CNN's pooling rules unfused, and DeepShap at 2.6× its bare passes)."""
    import tensorflow as tf

    from tf_explain_kit.tf_backend import fused

    kernel = fused(lambda upstream, a: a * tf.reduce_sum(upstream))

    @tf.function(input_signature=[tf.TensorSpec((None, 14, 14, 16), tf.float32), tf.TensorSpec((None, 28, 28, 16), tf.float32)])
    def pooled(upstream, a):
        return kernel(upstream, a)

    g, a = np.ones((2, 14, 14, 16), np.float32), np.ones((2, 28, 28, 16), np.float32)
    np.testing.assert_array_equal(pooled(g, a).numpy(), a * g.sum())
    assert kernel.kernel.experimental_get_tracing_count() == 1
