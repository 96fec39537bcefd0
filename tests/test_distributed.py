"""explain_dataset on one device, on two logical CPU devices (MirroredStrategy) and on two
worker processes (MultiWorkerMirroredStrategy); ExplainCallback under both strategies' scope
(training with fit under MirroredStrategy; Keras 3's fit does not run under
MultiWorkerMirroredStrategy, keras-team/keras#20585, so there the callback is driven directly).

Strategies need a fresh TensorFlow (logical devices, collective ops), so they run in
subprocesses: this file is also their script (``python test_distributed.py MODE ...``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

METHODS = ["integrated_gradients", "gradcam"]
SAMPLES, BATCH = 37, 8  # an uneven last batch: replicas get unequal (or empty) shares
TIMEOUT = 240


def _data():
    from tf_explain_kit import examples

    _, _, x_test, y_test = examples.digits()
    return x_test[:SAMPLES], y_test[:SAMPLES]


def _save(path: Path, result) -> None:
    arrays = {f"{m}/{f}": getattr(e, f) for m, e in result.explanations.items() for f in ("attributions", "targets", "predictions")}
    arrays.update({f"{m}/sample_ids": e.extras["sample_ids"] for m, e in result.explanations.items()})
    np.savez(path, **arrays)


# -- subprocess side ------------------------------------------------------------------------------
def _worker(mode: str, model_path: str, out: str) -> None:
    """Explain the data under a strategy, then train with ExplainCallback under its scope."""
    import tensorflow as tf

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    import keras

    import tf_explain_kit as tek

    out_dir = Path(out)
    task = json.loads(os.environ.get("TF_CONFIG", '{"task": {"index": 0}}'))["task"]["index"]
    x, y = _data()
    model = keras.saving.load_model(model_path)
    result = tek.explain_dataset(model, (x, y), METHODS, log_dir=str(out_dir / "explain"), strategy=strategy, batch_size=BATCH, keep=True)
    _save(out_dir / f"{mode}_{task}.npz", result)

    with strategy.scope():
        trained = keras.saving.load_model(model_path)
        trained.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = tek.ExplainCallback((x, y), ["saliency", "gradcam"], str(out_dir / "train"), max_samples=4)
    if mode == "mirrored":
        loss = trained.fit(x, y, epochs=2, batch_size=BATCH, verbose=0, callbacks=[callback]).history["loss"]
    else:  # Keras 3's fit fails under MultiWorkerMirroredStrategy (keras-team/keras#20585): drive the callback as fit would
        callback.set_model(trained)
        callback.set_params({"epochs": 2})
        callback.on_train_begin()
        loss = [float(np.mean(keras.losses.sparse_categorical_crossentropy(y, trained(x))))] * 2
        for epoch in range(2):
            callback.on_epoch_end(epoch, {"loss": loss[epoch]})
        callback.on_train_end()
    (out_dir / f"{mode}_{task}.json").write_text(json.dumps({"replicas": strategy.num_replicas_in_sync, "loss": loss, "chief": callback.chief}))


# -- pytest side ----------------------------------------------------------------------------------
def _model_file(tmp_path: Path) -> Path:
    from tf_explain_kit import examples

    path = tmp_path / "digits.keras"
    examples.digits_cnn(seed=3).save(path)
    return path


def _reference(model_path: Path):
    import keras

    import tf_explain_kit as tek

    x, y = _data()
    return tek.explain_dataset(keras.saving.load_model(model_path), (x, y), METHODS, batch_size=BATCH, keep=True)


def _assert_equal_to(reference, path: Path) -> None:
    got = np.load(path)
    for method, expected in reference.explanations.items():
        np.testing.assert_array_equal(got[f"{method}/sample_ids"], np.arange(SAMPLES))
        np.testing.assert_array_equal(got[f"{method}/targets"], expected.targets)
        np.testing.assert_allclose(got[f"{method}/predictions"], expected.predictions, rtol=1e-5, atol=1e-6)
        scale = np.abs(expected.attributions).max()
        np.testing.assert_allclose(got[f"{method}/attributions"], expected.attributions, rtol=1e-4, atol=1e-5 * scale)


def _event_files(folder: Path) -> list[Path]:
    return sorted((folder / "explanations").glob("events.out.tfevents.*"))


def _check_logs(out: Path, reference) -> None:
    import tf_explain_kit as tek

    assert len(_event_files(out / "explain")) == 1, "only the chief writes"
    run = tek.load_run(out / "explain")
    assert run.epochs == list(range(-(-SAMPLES // BATCH)))  # step = batch index
    last = run.explanation("integrated_gradients", run.epochs[-1])
    np.testing.assert_array_equal(last.extras["sample_ids"], np.arange(SAMPLES)[-(SAMPLES % BATCH) :])
    expected = reference.explanations["integrated_gradients"].attributions[last.extras["sample_ids"]]
    np.testing.assert_allclose(last.attributions, expected, atol=1e-3 * np.abs(expected).max())
    assert len(_event_files(out / "train")) == 1, "only the chief writes"
    trained = tek.load_run(out / "train")
    assert trained.epochs == [0, 1] and trained.methods == ["gradcam", "saliency"]


def _env(**extra: str) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", **extra}


def test_mirrored_two_logical_devices_equals_single_device(tmp_path):
    model_path = _model_file(tmp_path)
    done = subprocess.run([sys.executable, __file__, "mirrored", str(model_path), str(tmp_path)], env=_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    reference = _reference(model_path)
    _assert_equal_to(reference, tmp_path / "mirrored_0.npz")
    info = json.loads((tmp_path / "mirrored_0.json").read_text())
    assert info["replicas"] == 2 and info["chief"] and all(np.isfinite(info["loss"]))
    _check_logs(tmp_path, reference)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_multi_worker_two_processes_equals_single_device(tmp_path):
    model_path = _model_file(tmp_path)
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    try:
        for index in range(2):
            config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
            command = [sys.executable, __file__, "multi_worker", str(model_path), str(tmp_path)]
            processes.append(subprocess.Popen(command, env=_env(TF_CONFIG=config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        errors = [p.communicate(timeout=TIMEOUT)[1] for p in processes]
        assert [p.returncode for p in processes] == [0, 0], "\n".join(e[-2000:] for e in errors)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    reference = _reference(model_path)
    for index in range(2):  # every worker holds every gathered result
        _assert_equal_to(reference, tmp_path / f"multi_worker_{index}.npz")
    infos = [json.loads((tmp_path / f"multi_worker_{i}.json").read_text()) for i in range(2)]
    assert [i["chief"] for i in infos] == [True, False] and all(i["replicas"] == 2 for i in infos)
    assert infos[0]["loss"] == infos[1]["loss"]  # one model, mirrored on both workers
    _check_logs(tmp_path, reference)


def test_explain_dataset_streams_a_dataset_and_checks_arguments(digits_data, tmp_path):
    import pytest
    import tensorflow as tf

    import tf_explain_kit as tek
    from tf_explain_kit import examples

    model = examples.digits_cnn(seed=3)
    x, y = digits_data[2][:20], digits_data[3][:20]
    batched = tf.data.Dataset.from_tensor_slices((x, y)).batch(7)  # re-batched to batch_size
    seen = []
    result = tek.explain_dataset(model, batched, ["saliency"], batch_size=6, targets="labels", on_batch=lambda i, ids, ex: seen.append((i, ids.tolist())), keep=True)
    assert (result.samples, result.batches) == (20, 4) and seen[-1] == (3, [18, 19])
    np.testing.assert_array_equal(result.explanations["saliency"].targets, y)
    direct = tek.Saliency(model).explain(x, y)
    np.testing.assert_allclose(result.explanations["saliency"].attributions, direct.attributions, rtol=1e-5, atol=1e-7)
    resumed = tek.explain_dataset(model, (x, y), ["saliency"], batch_size=6, start_batch=2, keep=True)
    np.testing.assert_array_equal(resumed.explanations["saliency"].extras["sample_ids"], np.arange(12, 20))
    with pytest.raises(ValueError, match="targets: 'labels' needs"):
        tek.explain_dataset(model, x, ["saliency"], targets="labels")
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        tek.explain_dataset(model, x, ["nope"])
    with pytest.raises(ValueError, match="batch_size"):
        tek.explain_dataset(model, x, ["saliency"], batch_size=0)
    with pytest.raises(TypeError, match=r"log_dir: expected a directory path \(str or os.PathLike\), for example 'logs/run1', got 7"):
        tek.explain_dataset(model, x, ["saliency"], 7)
    with pytest.raises(TypeError, match=r"class_names: expected a list of names, for example \['cat', 'dog'\], got '0123456789'"):
        tek.explain_dataset(model, x, ["saliency"], str(tmp_path), class_names="0123456789")
    assert not os.listdir(tmp_path)  # refused before anything was written


if __name__ == "__main__":
    _worker(*sys.argv[1:])
