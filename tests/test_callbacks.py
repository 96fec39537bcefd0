"""ExplainCallback: what it logs, that it changes nothing in training, that nothing is lost."""

from __future__ import annotations

import glob
import io
import os
import random
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from matplotlib import image as mpimage
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
from tensorboard.util import tensor_util

import tf_explain_kit as tek
from tf_explain_kit import examples, logformat, render
from tests import text_models

CLASS_NAMES = [f"digit-{i}" for i in range(10)]
METHODS = ["saliency", "integrated_gradients", "gradcam", "lime_image"]


def _events(log_dir):
    """{tag: {step: tensor value}} of everything in <log_dir>/explanations."""
    found = {}
    for path in glob.glob(os.path.join(log_dir, logformat.RUN, "events.out.tfevents.*")):
        for event in EventFileLoader(path).Load():
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = tensor_util.make_ndarray(value.tensor)
    return found


def _compiled_cnn(seed=0):
    keras.utils.set_random_seed(seed)
    model = examples.digits_cnn(seed=seed)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits_data):
    x_train, y_train, x_test, y_test = digits_data
    log_dir = str(tmp_path_factory.mktemp("logs"))
    model = _compiled_cnn()
    callback = tek.ExplainCallback(
        (x_test, y_test), ["saliency", "integrated_gradients", "gradcam", ("lime_image", 2)], log_dir, max_samples=12, class_names=CLASS_NAMES
    )
    model.fit(x_train[:600], y_train[:600], epochs=3, batch_size=32, validation_data=(x_test, y_test), callbacks=[callback], verbose=0)
    return model, callback, log_dir, _events(log_dir)


def test_every_epoch_method_and_sample_is_logged(trained):
    _, callback, _, events = trained
    ids = callback.ids
    assert len(ids) == 12 and sorted(callback.labels[:10]) == list(range(10))  # stratified: one per class first
    for method in METHODS:
        epochs = [0, 2] if method == "lime_image" else [0, 1, 2]  # every 2 epochs, and the last
        assert sorted(events[logformat.explanation_tag(method)]) == epochs
        assert sorted(events[logformat.table_tag(method)]) == epochs
        for sample_id in ids:
            pictures = events[logformat.image_tag(method, int(sample_id))]
            assert sorted(pictures) == epochs
            width, height, png = pictures[epochs[-1]]
            image = mpimage.imread(io.BytesIO(png))
            assert image.shape[:2] == (int(height), int(width)) == (28, 28)  # TensorBoard scales it up, pixelated
    assert sorted(events[logformat.TRAINING_TAG]) == [0, 1, 2]
    assert sorted(events[logformat.health_tag("integrated_gradients", "mean_abs_convergence_delta")]) == [0, 1, 2]
    assert sorted(events[logformat.health_tag("lime_image", "mean_r2")]) == [0, 2]


def test_tables_name_the_classes(trained):
    model, callback, _, events = trained
    table = events[logformat.table_tag("gradcam")][2].item().decode()
    rows = table.splitlines()[2:]
    assert len(rows) == 12
    predicted = model(callback.x).numpy().argmax(axis=1)
    for row, label, guess in zip(rows, callback.labels, predicted):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == CLASS_NAMES[label]
        assert cells[2].startswith(CLASS_NAMES[guess] + " (")
        assert cells[3] == CLASS_NAMES[guess]


def test_load_run_gives_back_what_the_explainers_compute(trained):
    model, callback, log_dir, _ = trained
    run = tek.load_run(log_dir)
    assert run.epochs == [0, 1, 2] and run.methods == sorted(METHODS)
    np.testing.assert_array_equal(run.samples["inputs"], callback.x)
    np.testing.assert_array_equal(run.samples["ids"], callback.ids)
    assert run.samples["class_names"] == CLASS_NAMES
    for explainer, _ in callback.jobs:  # the final epoch's logs equal explaining the final model
        direct = explainer.explain(callback.x)
        logged = run.explanation(direct.method, 2)
        np.testing.assert_array_equal(logged.targets, direct.targets)
        np.testing.assert_allclose(logged.predictions, direct.predictions, rtol=1e-6)
        scale = np.abs(direct.attributions).reshape(12, -1).max(axis=1).reshape((12,) + (1,) * (direct.attributions.ndim - 1))
        assert np.all(np.abs(logged.attributions - direct.attributions) <= 2**-11 * scale + 1e-12), direct.method
    frame = run.scalars()
    assert list(frame.index) == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "integrated_gradients/seconds"} <= set(frame.columns)


def test_float32_precision_is_exact(tmp_path, digits_data):
    x_train, y_train, x_test, y_test = digits_data
    model = _compiled_cnn()
    explainer = tek.GradientInput(model)
    callback = tek.ExplainCallback((x_test, y_test), [explainer], str(tmp_path), max_samples=5, precision="float32")
    model.fit(x_train[:64], y_train[:64], epochs=1, verbose=0, callbacks=[callback])
    logged = tek.load_run(tmp_path).explanation("gradient_input", 0)
    np.testing.assert_array_equal(logged.attributions, explainer.explain(callback.x).attributions)


def _fit(model, data, callbacks):
    x_train, y_train, x_test, y_test = data
    model.fit(x_train[:256], y_train[:256], epochs=3, batch_size=32, validation_data=(x_test, y_test), callbacks=callbacks, verbose=0)
    return [w.numpy() for w in model.weights]


def test_training_is_unchanged_by_the_callback(tmp_path, digits_data):
    without = _fit(_compiled_cnn(), digits_data, [])
    after_without = np.random.random(), random.random()
    callback = tek.ExplainCallback(digits_data[2:], ["saliency", "smoothgrad", "integrated_gradients", "gradcam", "lime"], str(tmp_path), max_samples=4)
    with_callback = _fit(_compiled_cnn(), digits_data, [callback])
    after_with = np.random.random(), random.random()
    for a, b in zip(without, with_callback):
        np.testing.assert_array_equal(a, b)
    assert after_with == after_without


def _refusals(record, method):
    return [w for w in record if issubclass(w.category, RuntimeWarning) and f"ExplainCallback: {method} does not apply" in str(w.message)]


def test_a_failing_explainer_warns_logs_and_training_goes_on(tmp_path, digits_data):
    model = _compiled_cnn()
    broken = tek.IntegratedGradients(model, baseline=lambda x: x[:1])  # one baseline row for 3 samples: fails at its first run, so it does not apply
    callback = tek.ExplainCallback(digits_data[2:], [broken, "saliency", _FailsAfterFirst(model)], str(tmp_path), max_samples=3)
    with pytest.warns(RuntimeWarning) as record:
        history = model.fit(digits_data[0][:64], digits_data[1][:64], epochs=3, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 3
    (refusal,) = _refusals(record, "integrated_gradients")
    assert "ValueError: baseline: expected shape (3, 28, 28, 1)" in str(refusal.message)
    failures = [str(w.message) for w in record if "and was skipped: ValueError: second call" in str(w.message)]
    assert failures == [f"gradient_input failed at epoch {e} and was skipped: ValueError: second call" for e in (1, 2)]
    events = _events(str(tmp_path))
    assert sorted(events[logformat.error_tag("integrated_gradients")]) == [0]  # refused once, not retried
    assert "baseline: expected shape" in events[logformat.error_tag("integrated_gradients")][0].item().decode()
    assert sorted(events[logformat.error_tag("gradient_input")]) == [1, 2] and sorted(events[logformat.explanation_tag("gradient_input")]) == [0]
    assert sorted(events[logformat.explanation_tag("saliency")]) == [0, 1, 2]

    strict = tek.ExplainCallback(digits_data[2:], [tek.IntegratedGradients(model, baseline=lambda x: x[:1])], str(tmp_path / "strict"), on_error="raise")
    with pytest.raises(ValueError, match="baseline: expected shape"):
        model.fit(digits_data[0][:64], digits_data[1][:64], epochs=1, verbose=0, callbacks=[strict])


class _FailsAfterFirst(tek.GradientInput):
    """Works at its first run, fails at every later one (a method that breaks mid-training)."""

    def attribute_pass(self, x, weights):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls > 1:
            raise ValueError("second call")
        return super().attribute_pass(x, weights)


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def test_completed_epochs_survive_an_interrupted_training(tmp_path, digits_data):
    model = _compiled_cnn()
    callback = tek.ExplainCallback(digits_data[2:], ["saliency"], str(tmp_path), max_samples=3)
    with pytest.raises(KeyboardInterrupt):
        model.fit(digits_data[0][:64], digits_data[1][:64], epochs=5, verbose=0, callbacks=[callback, _Interrupt()])
    assert tek.load_run(tmp_path).epochs == [0, 1]


KILLED_MID_EPOCH = """
import os, signal, keras, tf_explain_kit as tek
from tf_explain_kit import examples
x, y, xt, yt = examples.digits()
model = examples.digits_cnn()
model.compile("adam", "sparse_categorical_crossentropy")
class Kill(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
        if self.model._kill_epoch == 2 and batch == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    def on_epoch_begin(self, epoch, logs=None):
        self.model._kill_epoch = epoch
callback = tek.ExplainCallback((xt, yt), ["saliency", "gradcam"], {log_dir!r}, max_samples=4)
model.fit(x[:320], y[:320], epochs=5, batch_size=32, verbose=0, callbacks=[callback, Kill()])
"""


def test_a_run_killed_mid_epoch_keeps_every_completed_epoch(tmp_path):
    script = textwrap.dedent(KILLED_MID_EPOCH).format(log_dir=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    run = tek.load_run(tmp_path)
    assert run.epochs == [0, 1] and run.methods == ["gradcam", "saliency"]
    assert run.explanation("gradcam", 1).attributions.shape == (4, 28, 28)


MIRRORED = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, numpy as np, tf_explain_kit as tek
from tf_explain_kit import examples
x, y, xt, yt = examples.digits()
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
with strategy.scope():
    model = examples.digits_cnn()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
callback = tek.ExplainCallback((xt, yt), ["saliency", "integrated_gradients", "gradcam"], {log_dir!r}, max_samples=4)
model.fit(x[:256], y[:256], epochs=2, batch_size=32, verbose=0, callbacks=[callback])
direct = tek.IntegratedGradients(model).explain(callback.x)
logged = tek.load_run({log_dir!r}).explanation("integrated_gradients", 1)
scale = np.abs(direct.attributions).max()
assert np.abs(logged.attributions - direct.attributions).max() <= 2**-11 * scale
print("OK", callback.chief)
"""


def test_training_under_mirrored_strategy_logs_from_the_chief(tmp_path):
    script = textwrap.dedent(MIRRORED).format(log_dir=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert result.stdout.decode().strip().endswith("OK True")
    assert tek.load_run(tmp_path).epochs == [0, 1]


def test_inference_mode_and_untouched_state():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.Dropout(0.5), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 1)).astype(np.float32)
    model.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    state = [w.numpy().copy() for w in model.weights]
    first = tek.Saliency(model, signed=True).explain(x)
    second = tek.Saliency(model, signed=True).explain(x)
    np.testing.assert_array_equal(first.attributions, second.attributions)  # dropout off
    np.testing.assert_allclose(first.predictions, model(x, training=False).numpy(), rtol=1e-6)  # moving statistics used
    for before, after in zip(state, model.weights):
        np.testing.assert_array_equal(before, after.numpy())


def test_dataset_and_multi_input_validation_data(tmp_path):
    keras.utils.set_random_seed(0)
    image, side = keras.Input((12, 12, 1), name="image"), keras.Input((3,), name="side")
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu", name="conv")(image))
    model = keras.Model({"image": image, "side": side}, keras.layers.Dense(2, activation="softmax")(keras.layers.Concatenate()([features, side])))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = {"image": rng.random((40, 12, 12, 1), np.float32), "side": rng.random((40, 3), np.float32)}
    y = np.arange(40) % 2
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    callback = tek.ExplainCallback(dataset, ["integrated_gradients", "gradcam"], str(tmp_path), max_samples=6)
    model.fit(dataset, epochs=1, verbose=0, callbacks=[callback])
    run = tek.load_run(tmp_path)
    explanation = run.explanation("integrated_gradients", 0)
    assert isinstance(explanation.attributions, dict) and explanation.attributions["image"].shape == (6, 12, 12, 1)
    np.testing.assert_array_equal(run.samples["inputs"]["side"], x["side"][callback.ids])
    assert run.explanation("gradcam", 0).attributions.shape == (6, 12, 12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"explainers": "saliency"}, "explainers: expected a non-empty list"),
        ({"explainers": ["saliencyy"]}, "explainers: unknown method 'saliencyy'"),
        ({"explainers": [("lime", 0)]}, r"explainers: a pair must be \(explainer or method name, every_n_epochs >= 1\)"),
        ({"every_n_epochs": 0}, "every_n_epochs: expected a positive int"),
        ({"on_error": "ignore"}, "on_error: expected one of"),
        ({"precision": "float64"}, "precision: expected one of"),
        ({"channels": "mean"}, "channels: expected one of"),
        ({"max_picture_side": 0}, "max_picture_side: expected a positive int"),
        ({"pictures_every": 0}, "pictures_every: expected a positive int"),
        ({"log_dir": None}, r"log_dir: expected a directory path \(str or os.PathLike\), for example 'logs/run1', got None"),
        ({"class_names": "abc"}, r"class_names: expected a list of names, for example \['cat', 'dog'\], got 'abc'"),
    ],
)
def test_bad_callback_arguments_are_named(kwargs, message, tmp_path):
    options = {"validation_data": (np.zeros((2, 28, 28, 1)), np.zeros(2)), "explainers": ["saliency"], "log_dir": str(tmp_path), **kwargs}
    with pytest.raises((TypeError, ValueError), match=message):
        tek.ExplainCallback(**options)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda x, y, d: tek.ExplainCallback((x, y[:3]), ["saliency"], d), r"validation_data: expected one label per sample in \(x, y\), 6 for x, got y of shape \(3,\)"),
        (lambda x, y, d: tek.ExplainCallback((x, y), ["saliency"], d, class_names=["a", "b"]), r"class_names: expected a name for each of the model's 3 classes, got 2"),
        (lambda x, y, d: tek.ExplainCallback((x, y), ["saliency"], d, targets=99), r"targets: class 99 is out of range for a model with 3 output\(s\); use a class index from 0 to 2"),
        (lambda x, y, d: tek.ExplainCallback((x, y), ["saliency"], d, contrast=3), r"contrast: class 3 is out of range"),
        (lambda x, y, d: tek.GradCAMCallback((x, y), d, layer="nope"), r"layer: no layer 'nope' in model .* Candidates: 'conv'"),
    ],
)
def test_what_would_fail_every_epoch_is_refused_at_train_begin(build, message, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((6, 8, 8, 1), np.float32), np.array([0, 1, 2, 0, 1, 2])
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, name="conv"), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    model.compile("sgd", "mse")
    with pytest.raises((TypeError, ValueError), match=message):
        model.fit(x, np.eye(3)[y], epochs=2, verbose=0, callbacks=[build(x, y, str(tmp_path))])
    assert not os.path.exists(tmp_path / logformat.RUN)  # refused before anything was written


def test_single_method_callbacks_share_one_implementation(tmp_path, digits_data):
    model = _compiled_cnn()
    callback = tek.IntegratedGradientsCallback(digits_data[2:], str(tmp_path), steps=8, max_samples=3)
    model.fit(digits_data[0][:64], digits_data[1][:64], epochs=1, verbose=0, callbacks=[callback])
    (explainer, every), = callback.jobs
    assert isinstance(explainer, tek.IntegratedGradients) and explainer.steps == 8 and every == 1
    assert tek.load_run(tmp_path).explanation("integrated_gradients", 0).attributions.shape == (3, 28, 28, 1)


def test_diverged_model_trains_to_the_end_and_warns_not_finite(tmp_path):
    import keras
    import tf_explain_kit as tek
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1), np.float32), rng.integers(0, 3, 16)
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, activation="relu"), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    m.compile("adam", "sparse_categorical_crossentropy")

    class Diverge(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                for w in self.model.weights:
                    w.assign(np.full(w.shape, np.nan, "float32"))

    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        h = m.fit(x, y, epochs=3, verbose=0, callbacks=[Diverge(), tek.ExplainCallback((x, y), ["saliency"], str(tmp_path), max_samples=2)])
    assert len(h.history["loss"]) == 3 and np.isnan(h.history["loss"][-1])
    run = tek.load_run(tmp_path)  # the logs say so: NaN weights from the end of epoch 1 on (explained after it)
    assert run.epochs == [0, 1, 2] and np.isnan(run.explanation("saliency", 2).attributions).all()
    assert run.scalars()["saliency/not_finite_samples"].tolist() == [0.0, 2.0, 2.0]
    tables = _events(tmp_path)[logformat.table_tag("saliency")]
    assert [tables[epoch].item().decode().count("| not finite |") for epoch in range(3)] == [0, 2, 2]


def test_pictures_thin_out_after_n_epochs_while_attributions_stay(tmp_path, digits_data):
    """pictures_after=4, pictures_every=3 over 12 epochs: pictures at 0-3, then 6 and 9, and the last (11)."""
    model = _compiled_cnn()
    x_test, y_test = digits_data[2][:3], digits_data[3][:3]
    callback = tek.ExplainCallback((x_test, y_test), ["saliency"], str(tmp_path), max_samples=3, pictures_after=4, pictures_every=3)
    callback.set_model(model)
    callback.set_params({"epochs": 12})
    callback.on_train_begin()
    for epoch in range(12):
        callback.on_epoch_end(epoch, {"loss": 1.0})
    callback.on_train_end()
    events = _events(str(tmp_path))
    picture_tags = [tag for tag in events if tag.startswith("saliency/sample_")]
    assert len(picture_tags) == 3
    assert all(sorted(events[tag]) == [0, 1, 2, 3, 6, 9, 11] for tag in picture_tags)
    assert tek.load_run(str(tmp_path)).epochs_of("saliency") == list(range(12))


def test_callback_on_a_raw_string_model_logs_weights_on_the_shown_tokens(tmp_path):
    """Texts from tf.data, IG at the embedding and LIME: load_run gives back the tokens as
    written and one weight per token, the planted word's the largest."""
    texts, labels = text_models.reviews(200, seed=1)
    model = text_models.string_model(texts)
    dataset = tf.data.Dataset.from_tensor_slices((texts[:, None], labels)).batch(16)
    explainers = ["integrated_gradients", tek.LimeText(model, num_samples=300, seed=0)]
    callback = tek.ExplainCallback(dataset, explainers, str(tmp_path), max_samples=6, precision="float32")
    model.fit(text_models.as_tensor(texts), labels, epochs=8, batch_size=16, verbose=0, callbacks=[callback])
    run = tek.load_run(tmp_path)
    tokens = run.samples["tokens"]
    assert tokens == [t.split() for t in texts[callback.ids]]  # the fillers' words are single pieces
    for method in ("integrated_gradients", "lime_text"):
        explanation = run.explanation(method, 7)
        assert explanation.attributions.shape == (6, max(len(t) for t in tokens))
        assert explanation.extras["tokens"] == tokens
        for i, words in enumerate(tokens):
            planted = next(j for j, w in enumerate(words) if w.strip("!,") in text_models.POSITIVE + text_models.NEGATIVE)
            assert int(np.argmax(explanation.attributions[i, : len(words)])) == planted, (method, words)
            assert not explanation.attributions[i, len(words) :].any()
    ig = run.explanation("integrated_gradients", 7)
    np.testing.assert_allclose(ig.extras["convergence_delta"], 0, atol=1e-4)


def test_callback_on_a_bag_of_words_string_model_logs_words(tmp_path):
    """A TextVectorization with multi_hot output has no token positions: removal methods still
    explain its words (as written), the logged tokens are those words."""
    texts, labels = text_models.reviews(64, seed=2)
    vectorize = keras.layers.TextVectorization(max_tokens=30, output_mode="multi_hot")
    vectorize.adapt(texts)
    strings = keras.Input((), dtype="string")  # texts (N,)
    model = keras.Model(strings, keras.layers.Dense(2, activation="softmax")(vectorize(strings)))
    model.compile("adam", "sparse_categorical_crossentropy")
    callback = tek.ExplainCallback((list(texts), labels), ["partition_shap", tek.LimeText(model, num_samples=50)], str(tmp_path), max_samples=2)
    model.fit(tf.constant(texts), labels, epochs=1, verbose=0, callbacks=[callback])
    run = tek.load_run(tmp_path)
    tokens = [t.split() for t in texts[callback.ids]]
    assert run.samples["tokens"] == tokens
    for method in ("partition_shap", "lime_text"):
        assert run.explanation(method, 0).extras["tokens"] == tokens


# -- the callback on every model kind ---------------------------------------------------------
def test_a_method_that_does_not_apply_is_refused_once_and_training_goes_on(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((24, 8, 8, 1), np.float32), rng.integers(0, 3, 24)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])  # no convolution
    model.compile("adam", "sparse_categorical_crossentropy")
    callback = tek.ExplainCallback((x, y), ["saliency", "gradcam"], str(tmp_path), max_samples=3)
    with pytest.warns(RuntimeWarning) as record:
        history = model.fit(x, y, epochs=3, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 3
    (warning,) = _refusals(record, "gradcam")
    assert "no layer with a 4-D (N, h, w, channels) or 3-D" in str(warning.message) and "Methods for images" in str(warning.message)  # why, and what else applies
    run = tek.load_run(tmp_path)
    assert run.methods == ["saliency"] and run.epochs_of("saliency") == [0, 1, 2]
    assert list(run.errors) == ["gradcam"] and list(run.errors["gradcam"]) == [0]
    assert run.errors["gradcam"][0].startswith("**gradcam was refused for this model**") and "GradCAM needs a convolutional (2-D or 1-D) model" in run.errors["gradcam"][0]

    strict = tek.ExplainCallback((x, y), ["saliency", "gradcam"], str(tmp_path / "strict"), on_error="raise")
    with pytest.raises(ValueError, match="no layer with a 4-D"):  # at train begin: fit never starts
        model.fit(x, y, epochs=1, verbose=0, callbacks=[strict])


def test_token_id_model_resolves_shap_and_lime_by_kind(tmp_path):
    rng = np.random.default_rng(0)
    ids, y = rng.integers(1, 50, (48, 8)).astype("int32"), rng.integers(0, 2, 48)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,), dtype="int32"), keras.layers.Embedding(50, 8), keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    callback = tek.ExplainCallback((ids, y), ["integrated_gradients", "shap", "lime"], str(tmp_path), max_samples=4, precision="float32")
    with pytest.warns(RuntimeWarning) as record:
        history = model.fit(ids, y, epochs=2, verbose=0, callbacks=[callback])
    assert len(history.history["loss"]) == 2
    (refusal,) = _refusals(record, "lime_text")  # no vocabulary: LIME cannot show words
    assert "pass vocabulary=" in str(refusal.message)
    run = tek.load_run(tmp_path)
    assert run.methods == ["integrated_gradients", "kernel_shap"] and run.epochs == [0, 1]
    assert list(run.errors) == ["lime_text"] and "was refused for this model" in run.errors["lime_text"][0]
    shap = run.explanation("kernel_shap", 1)  # over the 8 tokens, hidden ones set to padding (id 0)
    assert shap.attributions.shape == (4, 8)
    np.testing.assert_allclose(shap.attributions.sum(axis=1), shap.extras["score"] - shap.extras["base_values"], atol=1e-4)  # SHAP efficiency
    assert run.explanation("integrated_gradients", 1).attributions.shape == (4, 8)

    vocabulary = ["", "[UNK]"] + [f"w{i}" for i in range(2, 50)]
    worded = tek.ExplainCallback((ids, y), ["lime"], str(tmp_path / "worded"), max_samples=2, vocabulary=vocabulary)
    model.fit(ids, y, epochs=1, verbose=0, callbacks=[worded])
    run = tek.load_run(tmp_path / "worded")
    assert run.methods == ["lime_text"] and run.errors == {}
    assert run.samples["tokens"] == [[vocabulary[t] for t in row] for row in ids[worded.ids]]
    lime = run.explanation("lime_text", 0)
    assert lime.attributions.shape == (2, 8) and np.isfinite(lime.attributions).all() and np.abs(lime.attributions).sum(axis=1).min() > 0


def _two_headed(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((10, 10, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inp))
    model = keras.Model(inp, [keras.layers.Dense(3, activation="softmax", name="cls")(h), keras.layers.Dense(1, name="reg")(h)])
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    return model


def test_multi_output_models_explain_the_chosen_output(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((30, 10, 10, 3), np.float32), np.arange(30) % 3
    reg = x.mean(axis=(1, 2, 3))
    model = _two_headed()
    by_instance = tek.ExplainCallback((x, [y, reg]), [tek.Saliency(model, output="cls"), "integrated_gradients"], str(tmp_path / "instance"), max_samples=6)
    by_name = tek.ExplainCallback((x, {"cls": y, "reg": reg}), ["saliency"], str(tmp_path / "name"), max_samples=6, output="cls")
    model.fit(x, [y, reg], epochs=2, verbose=0, callbacks=[by_instance, by_name])
    for log_dir, callback in ((tmp_path / "instance", by_instance), (tmp_path / "name", by_name)):
        run = tek.load_run(log_dir)
        assert sorted(run.samples["labels"][:3]) == [0, 1, 2]  # stratified over the classifier's labels
        logged = run.explanation("saliency", 1)
        assert logged.predictions.shape == (6, 3)
        expected = tek.Saliency(model, output="cls").explain(x[callback.ids]).attributions.sum(axis=-1, keepdims=True)  # logged: channel sums
        np.testing.assert_allclose(logged.attributions, expected, rtol=2e-3, atol=1e-3 * np.abs(expected).max())
    assert tek.load_run(tmp_path / "instance").explanation("integrated_gradients", 1).predictions.shape == (6, 3)

    lost = tek.ExplainCallback((x, y), ["saliency"], str(tmp_path / "none"))
    with pytest.raises(ValueError, match=r"output: the model has 2 outputs \['cls', 'reg'\]; choose the explained one with output="):
        model.fit(x, [y, reg], epochs=1, verbose=0, callbacks=[lost])


@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer()
    return StandardScaler().fit_transform(data.data).astype("float32"), data.target


@pytest.mark.parametrize("logits", [False, True])
def test_misclassified_on_a_one_unit_binary_classifier(tmp_path, cancer, logits):
    X, Y = cancer
    keras.utils.set_random_seed(0)
    head = keras.layers.Dense(1) if logits else keras.layers.Dense(1, activation="sigmoid")
    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(16, activation="relu"), head])
    model.compile("adam", keras.losses.BinaryCrossentropy(from_logits=logits))
    model.fit(X[:450], Y[:450], epochs=10, verbose=0)
    out = model.predict(X[450:], verbose=0).ravel()
    wrong = np.flatnonzero((out > (0.0 if logits else 0.5)) != Y[450:])
    assert 1 <= len(wrong) <= 8
    callback = tek.ExplainCallback((X[450:], Y[450:]), ["saliency"], str(tmp_path), select="misclassified", max_samples=8, class_names=["malignant", "benign"])
    model.fit(X[:450], Y[:450], epochs=1, verbose=0, callbacks=[callback])
    np.testing.assert_array_equal(callback.ids, wrong)
    np.testing.assert_array_equal(callback.labels, Y[450:][wrong])
    names = np.array(["malignant", "benign"])
    rows = [line.split(" | ") for line in _events(str(tmp_path))[logformat.table_tag("saliency")][0].item().decode().splitlines()[2:]]
    outputs = tek.load_run(tmp_path).explanation("saliency", 0).predictions[:, 0]  # after the epoch: the table's predictions
    assert [row[1] for row in rows] == list(names[Y[450:][wrong]])
    assert [row[2] for row in rows] == [f"{names[int(o > (0.0 if logits else 0.5))]} ({o:.2f})" for o in outputs]


def test_regression_targets_are_values_not_classes(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((40, 6), np.float32)
    counts = np.round(10 * x[:, 0] + 3 * x[:, 1]).astype(np.int64)  # integer targets of a regression
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    callback = tek.ExplainCallback((x, counts), ["saliency", "shap"], str(tmp_path), max_samples=5)
    model.fit(x, counts, epochs=2, verbose=0, callbacks=[callback])
    assert callback.task.name == "regression" and callback.labels is None
    np.testing.assert_array_equal(callback.ids, np.arange(5))  # no classes to stratify over: the first samples
    run = tek.load_run(tmp_path)
    assert run.samples["labels"] is None and run.methods == ["kernel_shap", "saliency"]
    predicted = model.predict(x[:5], verbose=0)[:, 0]
    rows = [line.split(" | ") for line in _events(str(tmp_path))[logformat.table_tag("saliency")][1].item().decode().splitlines()[2:]]
    assert [row[1] for row in rows] == [f"{float(c):.4g}" for c in counts[:5]]
    np.testing.assert_allclose([float(row[2]) for row in rows], predicted, rtol=1e-3)

    with pytest.raises(ValueError, match="select: 'misclassified' needs a classifier; this output is a regression"):
        model.fit(x, counts, epochs=1, verbose=0, callbacks=[tek.ExplainCallback((x, counts), ["saliency"], str(tmp_path / "m"), select="misclassified")])


class SmallNet(keras.Model):
    def __init__(self):
        super().__init__()
        self.c, self.p, self.d = keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)

    def call(self, x):
        return self.d(self.p(self.c(x)))


def test_a_subclassed_model_fit_would_build_is_built_and_trains_as_without_the_callback(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((32, 12, 12, 3), np.float32), rng.integers(0, 3, 32)
    weights = []
    for callbacks in ([], [tek.ExplainCallback((x, y), ["saliency"], str(tmp_path), max_samples=3)]):
        keras.utils.set_random_seed(0)
        model = SmallNet()
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(x, y, epochs=2, verbose=0, shuffle=False, callbacks=callbacks)
        weights.append([w.numpy() for w in model.weights])
    assert len(history.history["loss"]) == 2 and tek.load_run(tmp_path).epochs_of("saliency") == [0, 1]
    for without, with_callback in zip(*weights):
        np.testing.assert_array_equal(without, with_callback)


def test_series_are_logged_as_heat_strips(tmp_path):
    """(N, T, F) series: one picture per sample and method, a band of 8 pixel rows per feature
    over the T steps (widened to the minimum side), for pixel-level and (N, T) maps alike."""
    from tests import zoo

    model, series = zoo.built("conv1d_series")
    labels = model.predict(series, verbose=0).argmax(axis=1)
    callback = tek.ExplainCallback((series, labels), ["saliency", "gradcam"], str(tmp_path), max_samples=4)
    weights = model.get_weights()
    model.compile("sgd", "sparse_categorical_crossentropy")
    model.fit(series, labels, epochs=1, verbose=0, callbacks=[callback])
    model.set_weights(weights)
    events = _events(str(tmp_path))
    for method in ("saliency", "gradcam"):
        for sample_id in callback.ids:
            width, height, png = events[logformat.image_tag(method, int(sample_id))][0]
            image = mpimage.imread(io.BytesIO(png))
            steps, features = zoo.SEQ
            assert image.shape[:2] == (int(height), int(width)) == (8 * features, steps * -(-render.MIN_SIDE // steps))


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not os.path.exists("/bin/mount"), reason="mounting a small tmpfs needs root")
def test_a_full_disk_stops_the_logging_not_the_training(tmp_path, digits_data):
    """A 600 KB file system fills after a few epochs: one warning, every epoch trained, and
    the epochs written before the disk filled read back whole."""
    x_train, y_train, x_test, y_test = digits_data
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        model = _compiled_cnn()
        callback = tek.ExplainCallback((x_test, y_test), ["saliency", "integrated_gradients", "gradcam"], str(folder / "run"), max_samples=16)
        with pytest.warns(RuntimeWarning, match="No space left on device.*training goes on") as caught:
            history = model.fit(x_train[:256], y_train[:256], epochs=8, verbose=0, callbacks=[callback])
        assert len(history.history["loss"]) == 8
        assert sum("writing failed" in str(w.message) for w in caught) == 1
        run = tek.load_run(str(folder / "run"))
        assert 2 <= len(run.epochs) < 8 and run.epochs == list(range(len(run.epochs)))
        for method in ("saliency", "integrated_gradients", "gradcam"):
            assert run.epochs_of(method) == run.epochs and run.explanation(method, run.epochs[-1]).attributions.shape[0] == 16
    finally:
        subprocess.run(["umount", str(folder)], check=True)
