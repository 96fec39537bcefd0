"""Bad input gets a clear error naming the argument, what was expected and the fix."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import tf_explain_kit as tek


@pytest.fixture(scope="module")
def dense_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3)], name="dense")


def test_a_single_sample_without_batch_axis_is_named(digits_model, digits_data):
    x = digits_data[2]
    with pytest.raises(ValueError, match=r"inputs: expected shape \(N, 28, 28, 1\) for model input 'image', got \(28, 28, 1\)\. .*x\[None\]"):
        tek.Saliency(digits_model).explain(x[0])
    with pytest.raises(ValueError, match=r"expected shape \(N, 28, 28, 1\) .* got \(2, 8, 8, 1\)"):
        tek.Saliency(digits_model).explain(np.zeros((2, 8, 8, 1), np.float32))


def test_targets_are_checked(digits_model, digits_data):
    x = digits_data[2][:3]
    with pytest.raises(ValueError, match=r"targets: class 12 is out of range for a model with 10 output\(s\); use a class index from 0 to 9"):
        tek.Saliency(digits_model).explain(x, targets=12)
    with pytest.raises(ValueError, match=r"targets: expected one class per sample, shape \(3,\), got shape \(2,\)"):
        tek.Saliency(digits_model).explain(x, targets=[1, 2])
    with pytest.raises(TypeError, match="targets: expected None, an int or an int array"):
        tek.Saliency(digits_model).explain(x, targets=1.5)
    with pytest.raises(ValueError, match=r"contrast: sample 0 has contrast equal to its target \(1\)"):
        tek.Saliency(digits_model).explain(x, targets=[1, 2, 3], contrast=1)
    predicted = digits_model.predict(x, verbose=0).argmax(axis=1)
    with pytest.raises(ValueError, match=rf"contrast: sample 1 has contrast equal to its target \({predicted[1]}\)"):
        tek.Saliency(digits_model).explain(x, contrast=[(predicted[0] + 1) % 10, predicted[1], predicted[2]])


def test_a_non_differentiable_layer_is_named(dense_model):
    inputs = keras.Input((6,))
    hidden = dense_model(inputs)
    rounded = keras.layers.Lambda(lambda t: keras.ops.round(t * 0) + keras.ops.cast(keras.ops.argmax(t, axis=1)[:, None], "float32"), name="argmax")(hidden)
    model = keras.Model(inputs, keras.layers.Dense(2, name="head")(rounded))
    with pytest.raises(ValueError, match=r"gradient .* is None\. Layer 'argmax' \(Lambda\) breaks differentiation"):
        tek.Saliency(model).explain(np.ones((2, 6), np.float32))


def test_token_ids_need_the_embedding_layer():
    """Methods that differentiate with respect to their inputs refuse a model declaring token
    ids when built, naming those that apply; IntegratedGradients, which takes them at a
    layer, refuses at explain without one."""
    from tf_explain_kit.explainers import registry

    model = keras.Sequential([keras.Input((5,), dtype="int32"), keras.layers.Embedding(10, 3, name="tokens"), keras.layers.Flatten(), keras.layers.Dense(2)], name="ids")
    ids = np.ones((2, 5), np.int32)
    float_only = [registry.METHODS[name] for name in ("saliency", "gradient_input", "smoothgrad", "vargrad", "deeplift", "deep_shap")]
    for method in float_only:
        with pytest.raises(registry.NotApplicable, match=rf"model: {method.cls.__name__} needs float inputs, and model 'ids' takes token ids .* Methods for token ids .*integrated_gradients"):
            method.cls(model, **method.defaults(registry.Setting(model, ids, "tokens")))
    with pytest.raises(TypeError, match=r"needs float inputs, got integer inputs .* layer=<embedding layer name>\) \(this model's embedding layers: 'tokens'\)"):
        tek.IntegratedGradients(model).explain(ids)
    with pytest.raises(ValueError, match="baseline: 'blur' needs float inputs; for token ids use baseline='zeros'"):
        tek.IntegratedGradients(model, layer="tokens", baseline="blur").explain(ids)


def test_degenerate_attributions_warn_with_the_usual_causes(dense_model):
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    with pytest.warns(RuntimeWarning, match=r"integrated_gradients: attributions are all zero for samples \[0, 1, 2\]\. Usual causes: .*a baseline equal to the input"):
        tek.IntegratedGradients(dense_model, baseline=x).explain(x)
    log = keras.Sequential([keras.Input((6,)), keras.layers.Lambda(keras.ops.sqrt), keras.layers.Dense(2)])
    with pytest.warns(RuntimeWarning, match=r"saliency: attributions are NaN or infinite for samples \[0, 1, 2\]"):
        tek.Saliency(log).explain(x)
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"inputs: samples \[1\] contain NaN or infinite values"):
        tek.Saliency(dense_model).explain(x)


def test_cam_layer_errors_list_the_candidates(digits_model, dense_model, digits_data):
    x = digits_data[2][:2]
    with pytest.raises(ValueError, match=r"layer: no layer 'conv9' in model 'digits_cnn'\. Pass a layer of the model, its name or its path .* Candidates: 'conv1', 'pool1', 'conv2', 'pool2', 'conv3'"):
        tek.GradCAM(digits_model, layer="conv9").explain(x)
    with pytest.raises(ValueError, match=r"layer: 'classes' has output shape \(N, 10\), not \(N, h, w, channels\) or \(N, steps, channels\)\. Choose a convolutional layer: 'conv1', 'pool1', 'conv2', 'pool2', 'conv3'"):
        tek.GradCAM(digits_model, layer="classes").explain(x)
    with pytest.raises(ValueError, match="layer: model 'dense' has no layer with a 4-D"):
        tek.GradCAMPlusPlus(dense_model).explain(np.zeros((2, 6), np.float32))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda m: tek.Saliency("model.keras"), "model: expected a keras.Model, got str"),
        (lambda m: tek.Saliency(m, score="softmax"), "score: expected one of"),
        (lambda m: tek.Saliency(m, batch_size=0), "batch_size: expected a positive int"),
        (lambda m: tek.IntegratedGradients(m, steps=0), "steps: expected a positive int"),
        (lambda m: tek.IntegratedGradients(m, baseline="black"), "baseline: expected one of"),
        (lambda m: tek.IntegratedGradients(m, integration="simpson"), "integration: expected one of"),
        (lambda m: tek.IntegratedGradients(m, layer="nope"), "layer: no layer 'nope'"),
        (lambda m: tek.SmoothGrad(m, samples=0), "samples: expected a positive int"),
        (lambda m: tek.SmoothGrad(m, noise=-1), "noise: expected a non-negative fraction"),
        (lambda m: tek.SmoothGrad(m, noise="x"), r"noise: expected a number, .* got 'x'"),
        (lambda m: tek.IntegratedGradients(m, baseline=np.zeros((5, 5, 1))), r"baseline: expected an array that broadcasts .* one sample \(28, 28, 1\) .* got shape \(5, 5, 1\)"),
        (lambda m: tek.IntegratedGradients(m, baseline=np.zeros((3, 28, 28, 1))).explain(np.zeros((2, 28, 28, 1))), r"baseline: expected .* \(N, 28, 28, 1\), got shape \(3, 28, 28, 1\)"),
        (lambda m: tek.Saliency(m).explain(np.full((2, 28, 28, 1), "0.5")), r"inputs: model input .* takes float32 \(numbers\), got strings \(<U3, shape \(2, 28, 28, 1\)\)"),
        (lambda m: tek.SmoothGrad(m, base="saliency"), "base: expected an explainer instance"),
        (lambda m: tek.Occlusion(m, patch_size=0), r"patch_size: expected a positive int or \(rows, columns\)"),
        (lambda m: tek.Occlusion(m, fill="median"), "fill: expected a number, 'mean' or an array shaped like one sample"),
    ],
)
def test_bad_options_are_named(build, message, digits_model):
    with pytest.raises((TypeError, ValueError), match=message):
        build(digits_model)


def test_strings_for_a_numeric_input_of_a_multi_input_model_are_refused():
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(TypeError, match=r"inputs: model input 'b' takes float32 \(numbers\), got strings"):
        tek.Saliency(model).explain({"a": np.zeros((2, 3)), "b": np.array([["1", "2"], ["3", "4"]])})


def test_an_unbuilt_model_is_refused():
    model = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match=r"model: the model is not built\. Call it once on a batch"):
        tek.Saliency(model)


def test_baseline_of_the_wrong_shape(digits_model, digits_data):
    with pytest.raises(ValueError, match=r"baseline: expected shape \(2, 28, 28, 1\)"):
        tek.IntegratedGradients(digits_model, baseline=lambda x: x[:1]).explain(digits_data[2][:2])
