"""``tf-explain-kit explain`` on real files: a saved model and data written by the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

import tf_explain_kit as tek
from tf_explain_kit import examples
from tf_explain_kit.cli import main


@pytest.fixture(scope="module")
def files(tmp_path_factory, digits_data):
    folder = tmp_path_factory.mktemp("cli")
    model = examples.digits_cnn(seed=3)
    model.save(folder / "digits.keras")
    x, y = digits_data[2][:40], digits_data[3][:40]
    np.savez(folder / "digits.npz", x=x, y=y)
    return folder, model, x, y


def _one_line_error(capsys, argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("tf-explain-kit: error:"), err


def test_explain_writes_arrays_and_logs(files, tmp_path):
    folder, model, x, y = files
    out, logs = tmp_path / "out.npz", tmp_path / "logs"
    argv = [str(folder / "digits.keras"), "--data", str(folder / "digits.npz"), "--methods", "integrated_gradients,gradcam", "--targets", "labels"]
    assert main(["explain", *argv, "--output", str(out), "--logdir", str(logs), "--batch-size", "16", "--precision", "float32"]) == 0
    arrays = np.load(out)
    np.testing.assert_array_equal(arrays["ids"], np.arange(40))
    direct = tek.IntegratedGradients(model).explain(x, y)
    np.testing.assert_array_equal(arrays["integrated_gradients/targets"], y)
    np.testing.assert_allclose(arrays["integrated_gradients/attributions"], direct.attributions, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(arrays["integrated_gradients/convergence_delta"], direct.extras["convergence_delta"], rtol=1e-3, atol=1e-5)
    assert arrays["gradcam/attributions"].shape == (40, 28, 28)
    assert not (tmp_path / "out.npz.parts").exists()
    run = tek.load_run(logs)
    assert run.epochs == [0, 1, 2] and run.methods == ["gradcam", "integrated_gradients"]  # step = batch
    last = run.explanation("integrated_gradients", 2)
    np.testing.assert_array_equal(last.extras["sample_ids"], np.arange(32, 40))
    np.testing.assert_allclose(last.attributions, direct.attributions[32:], rtol=1e-5, atol=1e-7)


def test_explain_reads_csv_and_image_folders(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    tabular = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    tabular.save(tmp_path / "table.keras")
    table = rng.normal(size=(10, 4)).round(3)
    lines = ["a,b,c,d,label"] + [",".join(map(str, row)) + f",{i % 3}" for i, row in enumerate(table)]
    (tmp_path / "table.csv").write_text("\n".join(lines))
    assert main(["explain", str(tmp_path / "table.keras"), "--data", str(tmp_path / "table.csv"), "--labels", "label", "--targets", "labels", "--methods", "saliency,lime", "--samples", "200", "--output", str(tmp_path / "t.npz")]) == 0
    arrays = np.load(tmp_path / "t.npz")
    assert arrays["lime_tabular/attributions"].shape == (10, 4)
    np.testing.assert_array_equal(arrays["saliency/targets"], np.arange(10) % 3)

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 20), dtype=np.uint8)).save(images / f"{i}.png")
    examples.digits_cnn(seed=3).save(tmp_path / "digits.keras")
    assert main(["explain", str(tmp_path / "digits.keras"), "--data", str(images), "--methods", "saliency", "--output", str(tmp_path / "i.npz")]) == 0
    assert np.load(tmp_path / "i.npz")["saliency/attributions"].shape == (3, 28, 28, 1)  # resized to the model's input
    _one_line_error(capsys, ["explain", str(tmp_path / "table.keras"), "--data", str(tmp_path / "table.csv"), "--output", str(tmp_path / "x.npz")], "expected shape (N, 4)")  # the label column counted as a feature


def test_bad_input_exits_2_with_one_line(files, tmp_path, capsys):
    folder, *_ = files
    model, data = str(folder / "digits.keras"), str(folder / "digits.npz")
    out = ["--output", str(tmp_path / "o.npz")]
    _one_line_error(capsys, ["explain", str(tmp_path / "missing.keras"), "--data", data, *out], "model: no such file")
    (tmp_path / "broken.keras").write_text("not a model")
    _one_line_error(capsys, ["explain", str(tmp_path / "broken.keras"), "--data", data, *out], "model: cannot load")
    np.save(tmp_path / "small.npy", np.zeros((5, 8, 8, 1), np.float32))
    _one_line_error(capsys, ["explain", model, "--data", str(tmp_path / "small.npy"), *out], "data: expected shape (N, 28, 28, 1) for the model's input, got (5, 8, 8, 1).")
    _one_line_error(capsys, ["explain", model, "--data", data, "--methods", "integrated_gradients,nope", *out], "unknown method 'nope'")
    _one_line_error(capsys, ["explain", model, "--data", str(tmp_path / "nothing.npz"), *out], "data: no such file")
    _one_line_error(capsys, ["explain", model, "--data", data], "--logdir DIR and/or --output")
    np.save(tmp_path / "x_only.npy", np.zeros((5, 28, 28, 1), np.float32))
    _one_line_error(capsys, ["explain", model, "--data", str(tmp_path / "x_only.npy"), "--targets", "labels", *out], "has no labels")


def test_files_and_shapes_are_checked_before_tensorflow_loads(files, tmp_path):
    folder, *_ = files
    np.save(tmp_path / "small.npy", np.zeros((5, 20, 20, 3), np.float32))
    cases = {
        "model: no such file": [str(tmp_path / "missing.keras"), "--data", str(tmp_path / "small.npy")],
        "data: no such file or folder": [str(folder / "digits.keras"), "--data", str(tmp_path / "missing.npz")],
        "data: expected shape (N, 28, 28, 1) for the model's input, got (5, 20, 20, 3).": [str(folder / "digits.keras"), "--data", str(tmp_path / "small.npy")],
    }
    for message, argv in cases.items():
        code = f"import sys; from tf_explain_kit.cli import main; code = main({['explain', *argv, '--output', str(tmp_path / 'o.npz')]!r}); print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.stdout.split() == ["2", "False", "False"], (message, done.stdout, done.stderr[-500:])
        lines = done.stderr.strip().splitlines()  # one line: no TensorFlow start-up noise before it
        assert len(lines) == 1 and lines[0].startswith(f"tf-explain-kit: error: {message}"), done.stderr


def test_explain_help_lists_the_method_names(capsys):
    from tf_explain_kit.explainers import registry

    with pytest.raises(SystemExit) as exit:
        main(["explain", "--help"])
    assert exit.value.code == 0
    listed = capsys.readouterr().out.split("methods (--methods):")[1].replace("\n", " ")
    assert [name.strip() for name in listed.split(",")] == list(registry.names())


def test_interrupted_run_is_readable_and_resumes(files, tmp_path, digits_data):
    folder, model, *_ = files
    x = digits_data[2][:320]
    np.save(tmp_path / "many.npy", x)
    out, logs = tmp_path / "out.npz", tmp_path / "logs"
    argv = ["explain", str(folder / "digits.keras"), "--data", str(tmp_path / "many.npy"), "--output", str(out), "--logdir", str(logs), "--batch-size", "16"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    process = subprocess.Popen([sys.executable, "-m", "tf_explain_kit.cli", *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    parts = tmp_path / "out.npz.parts"
    try:
        deadline = time.monotonic() + 120
        while len(list(parts.glob("batch_*.npz"))) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130 and "--resume" in err, err[-2000:]
    shards = sorted(parts.glob("batch_*.npz"))
    assert 3 <= len(shards) < 20 and not list(parts.glob("*.tmp"))  # nothing half-written
    for i, shard in enumerate(shards):
        np.testing.assert_array_equal(np.load(shard)["ids"], np.arange(16 * i, 16 * i + 16))
    logged = tek.load_run(logs).epochs
    assert len(logged) >= len(shards) - 1 and logged == list(range(len(logged)))

    assert main([*argv, "--resume"]) == 0
    arrays = np.load(out)
    np.testing.assert_array_equal(arrays["ids"], np.arange(320))
    direct = tek.IntegratedGradients(model).explain(x[-16:])
    np.testing.assert_allclose(arrays["integrated_gradients/attributions"][-16:], direct.attributions, rtol=1e-4, atol=1e-6)
    assert tek.load_run(logs).epochs == list(range(20))


def test_demo_trains_logs_and_serves_until_ctrl_c(tmp_path):
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "tf_explain_kit.cli", "demo", "--epochs", "1", "--logdir", str(tmp_path / "demo"), "--port", str(port)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    demo = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert any(f"http://127.0.0.1:{port}/" in line for line in demo.stdout if "TensorBoard:" in line), "no URL printed"
        deadline, listing = time.monotonic() + 60, None
        while listing is None and time.monotonic() < deadline:
            try:
                listing = urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugins_listing", timeout=2).read()
            except OSError:
                time.sleep(0.5)
        assert listing is not None and json.loads(listing)["tf_explain_kit"]["enabled"], listing[:500]
        index = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/data/plugin/tf_explain_kit/index", timeout=30).read())
        run = index["runs"]["explanations"]
        assert index["errors"] == [] and run["kind"] == "image" and run["training_epochs"] == [0]
        assert {"gradcam", "integrated_gradients", "lime_image", "gradient_shap", "saliency"} <= set(run["methods"])
        assert all(epochs == [0] for epochs in run["methods"].values()), run["methods"]
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    run = tek.load_run(tmp_path / "demo")
    assert run.epochs == [0] and {"gradcam", "integrated_gradients", "lime_image", "gradient_shap", "saliency"} <= set(run.methods)
    assert (tmp_path / "demo" / "train").is_dir()  # Keras' TensorBoard callback
