"""Logs on any file system: TensorFlow's ``ram://`` (not on local disk) for the callback,
``explain_dataset``, the command line and ``load_run``; local reading without TensorFlow."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

import tf_explain_kit as tek
from tf_explain_kit import examples, storage
from tf_explain_kit.cli import main

FLOAT16_LIMIT = 2.0**-11
NO_TENSORFLOW = os.path.join(os.path.dirname(__file__), "tb_plugin", "no_tensorflow")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _within_float16(logged: np.ndarray, computed: np.ndarray) -> None:
    largest = np.abs(computed).reshape(len(computed), -1).max(axis=1).reshape((-1,) + (1,) * (computed.ndim - 1))
    assert (np.abs(logged - computed) / np.where(largest > 0, largest, 1)).max() <= FLOAT16_LIMIT


def _train_with_callback(log_dir: str, x: np.ndarray, epochs: int = 2):
    model = examples.digits_cnn()
    callback = tek.ExplainCallback(x, ["saliency", "gradcam"], log_dir, max_samples=len(x), select="first")
    callback.set_model(model)
    callback.set_params({"epochs": epochs})
    callback.on_train_begin()
    for epoch in range(epochs):
        callback.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    callback.on_train_end()
    return callback


class _Counting:
    """Wraps ``storage.open_read`` and counts the bytes read."""

    def __init__(self, monkeypatch):
        self.bytes, self._open = 0, storage.open_read
        monkeypatch.setattr(storage, "open_read", self)

    def __call__(self, path):
        file, counter = self._open(path), self

        class Reader:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                file.close()

            def seek(self, offset):
                file.seek(offset)

            def read(self, n):
                data = file.read(n)
                counter.bytes += len(data)
                return data

        return Reader()


def test_callback_to_ram_and_load_run_reads_only_the_record(monkeypatch, digits_data):
    x = digits_data[2][:4]
    callback = _train_with_callback("ram://tek-callback/run1", x)
    assert not os.path.exists("ram:") and storage.glob("ram://tek-callback/run1/explanations/events.out.tfevents.*")
    run = tek.load_run("ram://tek-callback")
    assert run.name == "run1" and run.epochs == [0, 1] and run.scalars()["loss"].tolist() == [1.0, 0.5]
    np.testing.assert_array_equal(run.samples["inputs"], x)
    counting = _Counting(monkeypatch)
    for explainer, _ in callback.jobs:
        logged = run.explanation(explainer.method, 1)
        _within_float16(logged.attributions, np.asarray(explainer.explain(x).attributions))
    locations = [run._explanations[(explainer.method, 1)] for explainer, _ in callback.jobs]
    assert counting.bytes == sum(where.length + 4 for where in locations)  # ranges (each record and its CRC), not whole files


def test_explain_dataset_and_cli_write_to_ram(tmp_path, digits_data):
    model = examples.digits_cnn(seed=3)
    x = digits_data[2][:20]
    tek.explain_dataset(model, x, ["saliency"], log_dir="ram://tek-dataset", batch_size=8)
    run = tek.load_run("ram://tek-dataset")
    assert run.epochs == [0, 1, 2]
    _within_float16(run.explanation("saliency", 1).attributions, tek.Saliency(model).explain(x[8:16]).attributions)
    model.save(tmp_path / "digits.keras")
    np.savez(tmp_path / "digits.npz", x=x)
    argv = ["explain", str(tmp_path / "digits.keras"), "--data", str(tmp_path / "digits.npz"), "--methods", "gradcam", "--batch-size", "10", "--logdir", "ram://tek-cli"]
    assert main(argv) == 0
    assert main(argv) == 2  # the folder holds explanations: found on ram:// too (--resume to continue)
    gradcam = tek.load_run("ram://tek-cli").explanation("gradcam", 1)
    _within_float16(gradcam.attributions, tek.GradCAM(model).explain(x[10:]).attributions)


def test_local_load_run_needs_no_tensorflow(tmp_path, digits_data):
    x = digits_data[2][:3]
    callback = _train_with_callback(str(tmp_path / "logs"), x)
    expected = np.asarray(callback.jobs[0][0].explain(x).attributions)
    np.save(tmp_path / "expected.npy", expected)
    script = textwrap.dedent(f"""
        import sys, numpy as np
        import tf_explain_kit as tek
        run = tek.load_run({str(tmp_path / "logs")!r})
        got = run.explanation("saliency", 1).attributions
        np.save({str(tmp_path / "got.npy")!r}, got)
        assert not any(name == "tensorflow" or name.startswith("tensorflow.") for name in sys.modules if sys.modules[name] is not None)
    """)
    imports = tmp_path / "tf_imports.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([NO_TENSORFLOW, ROOT]), "TEK_TF_IMPORTS": str(imports)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _within_float16(np.load(tmp_path / "got.npy"), expected)
    attempts = imports.read_text().split("\n----\n") if imports.exists() else []
    assert all("tensorboard/compat" in stack and "/tf_explain_kit/" not in stack for stack in attempts if stack.strip()), attempts
