"""load_run: callback → event files → load_run equals the direct computation; plots."""

from __future__ import annotations

import os

import keras
import numpy as np
import pytest
from matplotlib.figure import Figure

import tf_explain_kit as tek
from tf_explain_kit import logformat, metrics, plots
from tf_explain_kit.examples import digits_cnn
from tf_explain_kit.logwriter import SummaryWriter

FLOAT16_LIMIT = 2.0**-11  # logformat: float16 storage error, relative to a sample's largest |attribution|
EPOCHS = 3


def _train(digits_data, log_dir, precision, **options):
    x_train, y_train, x_test, y_test = digits_data
    keras.utils.set_random_seed(0)
    model = digits_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    explainers = [tek.Saliency(model), tek.IntegratedGradients(model, steps=16), (tek.GradCAM(model), 2), (tek.LimeImage(model, num_samples=200), 2)]
    callback = tek.ExplainCallback((x_test, y_test), explainers, str(log_dir), max_samples=6, precision=precision, **options)
    model.fit(x_train[:400], y_train[:400], epochs=EPOCHS, batch_size=32, callbacks=[callback], verbose=0)
    return model, callback


@pytest.fixture(scope="module")
def trained_runs(digits_data, tmp_path_factory):
    """Two runs under one log_dir: float16 and float32 storage (the latter with metrics)."""
    root = tmp_path_factory.mktemp("logs")
    mask = np.zeros((28, 28), bool)
    mask[8:20, 8:20] = True
    half = _train(digits_data, root / "half", "float16")
    full = _train(digits_data, root / "full", "float32", metrics=["deletion", "stability", "randomization", "pointing_game", "mask_share"], masks=mask)
    return root, half, full, mask


def test_round_trip_equals_the_direct_computation(trained_runs):
    root, (model, callback), (model32, callback32), _ = trained_runs
    for name, (model, callback), exact in (("half", (model, callback), False), ("full", (model32, callback32), True)):
        run = tek.load_run(root, run=name)
        assert run.epochs == list(range(EPOCHS))
        assert run.methods == ["gradcam", "integrated_gradients", "lime_image", "saliency"]
        assert run.epochs_of("gradcam") == [0, 2]  # every 2 epochs, and the last one
        samples = run.samples
        np.testing.assert_array_equal(samples["ids"], callback.ids)
        np.testing.assert_array_equal(samples["inputs"], callback.x)
        assert samples["kind"] == "image"
        for explainer, _ in callback.jobs:  # the model now has the weights of the last epoch
            direct = explainer.explain(callback.x)
            logged = run.explanation(explainer.method, EPOCHS - 1)
            np.testing.assert_array_equal(logged.targets, direct.targets)
            np.testing.assert_allclose(logged.predictions, direct.predictions, rtol=1e-6)
            a, b = np.asarray(direct.attributions), np.asarray(logged.attributions)
            limit = np.abs(a).reshape(len(a), -1).max(axis=1).reshape((-1,) + (1,) * (a.ndim - 1))
            error = np.abs(a - b) / np.where(limit > 0, limit, 1)
            assert error.max() <= (1e-6 if exact else FLOAT16_LIMIT), (name, explainer.method, error.max())
        table = run.scalars()
        assert list(table.index) == list(range(EPOCHS)) and {"loss", "accuracy", "saliency/seconds"} <= set(table.columns)


def test_logged_quality_metrics_equal_the_offline_ones(trained_runs):
    root, _, (model, callback), mask = trained_runs
    run = tek.load_run(root, run="full")
    table = run.scalars()
    last = EPOCHS - 1
    for method in ("saliency", "integrated_gradients"):
        now, before = run.explanation(method, last), run.explanation(method, last - 1)
        assert table.loc[last, f"{method}/mask_share"] == pytest.approx(np.nanmean(metrics.mask_share(now, mask)), rel=1e-5)
        assert table.loc[last, f"{method}/pointing_game"] == pytest.approx(metrics.pointing_game(now, mask).mean())
        assert table.loc[last, f"{method}/stability"] == pytest.approx(np.nanmean(metrics.rank_correlation(before, now)), rel=1e-5)
        curve = metrics.deletion(model, callback.x, now, now.targets)
        assert table.loc[last, f"{method}/deletion_auc"] == pytest.approx(curve.auc.mean(), rel=1e-5)
        assert np.isnan(table.loc[0, f"{method}/stability"])  # nothing to compare with at the first epoch
    # a trained CNN's saliency changes when the weights are re-initialised
    assert table[["saliency/randomization", "integrated_gradients/randomization"]].max().max() < 0.9


def test_several_runs_are_listed_and_named(trained_runs):
    root = trained_runs[0]
    assert [run.name for run in tek.load_runs(root)] == ["full", "half"]
    with pytest.raises(ValueError, match=r"run: .* holds 2 runs \['full', 'half'\]"):
        tek.load_run(root)
    with pytest.raises(ValueError, match="run: no run 'other'"):
        tek.load_run(root, run="other")
    run = tek.load_run(root, run="half")
    with pytest.raises(KeyError, match="method: 'lrp' is not in this run"):
        run.explanation("lrp", 0)
    with pytest.raises(KeyError, match=r"epoch: gradcam was not logged at epoch 1; it was at epochs \[0, 2\]"):
        run.explanation("gradcam", 1)
    np.testing.assert_array_equal(run.explanation("gradcam", "2").attributions, run.explanation("gradcam", 2).attributions)
    with pytest.raises(TypeError, match=r"epoch: expected an int such as 3 .* got 2.0"):
        run.explanation("gradcam", 2.0)


def test_missing_empty_and_newer_logs_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="log_dir: .* does not exist"):
        tek.load_run(tmp_path / "missing")
    with pytest.raises(ValueError, match="log_dir: no tf-explain-kit logs"):
        tek.load_run(tmp_path)
    with pytest.raises(TypeError, match=r"log_dir: expected a directory path \(str or os.PathLike\), .* got None"):
        tek.load_run(None)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"log_dir: .*notes.txt' is a file, not a directory; pass the folder given to ExplainCallback"):
        tek.load_run(tmp_path / "notes.txt")
    monkeypatch.setattr(logformat, "VERSION", logformat.VERSION + 1)  # logs from a future version
    writer = SummaryWriter(tmp_path)
    writer.blobs(logformat.SAMPLES_TAG, 0, logformat.samples_payload(np.zeros((1, 2)), None, np.zeros(1), "tabular"), "samples")
    writer.close()
    monkeypatch.undo()
    with pytest.raises(logformat.FormatError, match="Upgrade tf-explain-kit"):
        tek.load_run(tmp_path)


def _event_file(folder) -> str:
    (name,) = [f for f in os.listdir(folder) if f.startswith("events.out.tfevents")]
    return os.path.join(folder, name)


def test_a_run_still_being_written_grows_on_refresh(tmp_path):
    explanation = tek.Explanation("saliency", np.arange(6.0).reshape(2, 3), np.array([0, 1]), np.eye(2), {})
    writer = SummaryWriter(tmp_path / "live")
    writer.blobs(logformat.SAMPLES_TAG, 0, logformat.samples_payload(np.ones((2, 3)), np.array([0, 1]), np.arange(2), "tabular"), "samples")
    writer.blobs(logformat.explanation_tag("saliency"), 0, logformat.explanation_payload(explanation, 0, "float32"), "explanation")
    writer.flush()
    run = tek.load_run(tmp_path / "live")
    assert run.epochs == [0]
    # epoch 1 arrives in two pieces, as a writer mid-record leaves it
    other = SummaryWriter(tmp_path / "scratch")
    other.blobs(logformat.explanation_tag("saliency"), 1, logformat.explanation_payload(explanation, 1, "float32"), "explanation")
    other.close()
    with open(_event_file(tmp_path / "scratch" / "explanations"), "rb") as file:
        first_record = _records_after_header(file.read())
    target = _event_file(tmp_path / "live" / "explanations")
    with open(target, "ab") as file:
        file.write(first_record[:40])
    assert run.refresh().epochs == [0]  # half a record: not yet
    with open(target, "ab") as file:
        file.write(first_record[40:])
    assert run.refresh().epochs == [0, 1]
    np.testing.assert_array_equal(run.explanation("saliency", 1).attributions, explanation.attributions)


def _records_after_header(data: bytes) -> bytes:
    """The records of an event file after its first (file_version) record."""
    length = int.from_bytes(data[:8], "little")
    return data[12 + length + 4 :]


def test_plots_return_figures(trained_runs, tmp_path):
    root = trained_runs[0]
    run = tek.load_run(root, run="full")
    figures = [plots.run_grid(run), plots.evolution(run, "integrated_gradients", sample=1), plots.training_curves(run)]
    explanation = tek.Explanation("kernel_shap", np.array([[0.5, -1.0, 0.1], [0.2, 0.3, -0.4]]), np.array([1, 0]), np.eye(2), {})
    figures += [plots.feature_bars(explanation, 0, ["a", "b", "c"]), plots.feature_summary(explanation, ["a", "b", "c"])]
    figures.append(plots.highlighted_text([["a", "good", "film"], ["bad"]], np.array([[0.0, 1.0, 0.1], [-1.0, 0, 0]])))
    for figure in figures:
        assert isinstance(figure, Figure)
        figure.savefig(tmp_path / "figure.png")  # draws headless (Agg)
    assert len(figures[0].axes) == 6 * 5  # 6 samples × (input + 4 methods)
    with pytest.raises(ValueError, match="metrics: \\['nope'\\]"):
        plots.training_curves(run, ["nope"])


# -- damaged and crafted event files ----------------------------------------------------------
def _small_run(log_dir, epochs=6):
    """A run of ``epochs`` epochs without training: saliency attributions equal to the epoch."""
    writer = SummaryWriter(log_dir)
    x = np.zeros((2, 4), np.float32)
    writer.blobs(logformat.SAMPLES_TAG, 0, logformat.samples_payload(x, np.arange(2), np.arange(2), "tabular"), "samples")
    for epoch in range(epochs):
        writer.blobs(logformat.TRAINING_TAG, epoch, logformat.training_payload({"loss": 1.0 / (epoch + 1)}), "training")
        ex = tek.Explanation("saliency", np.full((2, 4), float(epoch + 1), np.float32), np.array([0, 1]), np.eye(2, dtype=np.float32), {})
        writer.blobs(logformat.explanation_tag("saliency"), epoch, logformat.explanation_payload(ex, epoch, "float32"), "explanation")
    writer.close()
    (path,) = (log_dir / logformat.RUN).iterdir()
    return path


def _record_offsets(path):
    """``{(tag, step): byte offset of its record}`` in an event file."""
    import struct

    from tensorboard.compat.proto import event_pb2

    data, offset, found = path.read_bytes(), 0, {}
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
        for value in event.summary.value:
            found[(value.tag, event.step)] = offset
        offset += 16 + length
    return found


def _flip(path, offset, bit=0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def _check(run, epochs):
    assert run.epochs == epochs and list(run.scalars().index) == list(range(6))
    for epoch in epochs:
        np.testing.assert_array_equal(run.explanation("saliency", epoch).attributions, epoch + 1)


def test_a_garbage_event_file_beside_a_good_one_is_skipped_with_a_warning(tmp_path):
    path = _small_run(tmp_path)
    garbage = path.parent / "events.out.tfevents.0.garbage"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.warns(RuntimeWarning, match="garbage: skipped 1 damaged"):
        _check(tek.load_run(tmp_path), list(range(6)))


@pytest.mark.parametrize("where", ["length", "length_crc", "data", "data_crc"])
def test_a_damaged_record_costs_that_record_only(tmp_path, where):
    path = _small_run(tmp_path)
    offsets = _record_offsets(path)
    start = offsets[(logformat.explanation_tag("saliency"), 3)]
    flips = {"length": start + 1, "length_crc": start + 9, "data": start + 40, "data_crc": offsets[(logformat.TRAINING_TAG, 4)] - 2}
    _flip(path, flips[where])
    with pytest.warns(RuntimeWarning, match="skipped 1 damaged"):
        run = tek.load_run(tmp_path)
    assert run.epochs == [0, 1, 2, 4, 5]  # epochs 4 and 5 follow the damaged record and are kept
    for epoch in run.epochs:
        np.testing.assert_array_equal(run.explanation("saliency", epoch).attributions, epoch + 1)


def test_declared_lengths_are_not_trusted(tmp_path):
    import struct

    from tf_explain_kit.logwriter import masked_crc

    path = _small_run(tmp_path)
    start = _record_offsets(path)[(logformat.explanation_tag("saliency"), 3)]
    data = bytearray(path.read_bytes())
    length = struct.pack("<Q", 1 << 40)  # 1 TiB, with a valid CRC
    data[start : start + 12] = length + masked_crc(length)
    path.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="a length of 1099511627776 bytes"):
        run = tek.load_run(tmp_path)
    assert run.epochs == [0, 1, 2, 4, 5]


def test_a_truncated_file_keeps_its_complete_records_silently(tmp_path, recwarn):
    path = _small_run(tmp_path)
    offsets = _record_offsets(path)
    path.write_bytes(path.read_bytes()[: offsets[(logformat.explanation_tag("saliency"), 5)] + 30])  # mid-record
    run = tek.load_run(tmp_path)
    assert run.epochs == [0, 1, 2, 3, 4] and not [w for w in recwarn if "damaged" in str(w.message)]
