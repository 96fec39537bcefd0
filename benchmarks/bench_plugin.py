"""The TensorBoard plugin against a real ``tensorboard`` process, with each loader.

Log directories of 100 epochs x 32 samples x 4 methods, on 28x28 grey images and on
224x224 RGB images, written directly with the log format (its defaults) from random
arrays: pixel methods' noise (the worst case for deflate), Grad-CAM maps upsampled from
7x7, LIME maps constant on 16x16 blocks. Time to list the index and to fetch one epoch
(the epoch route plus its attributions), median and p95 over repeated requests, and
TensorBoard's resident memory once every epoch was fetched. Targets: index < 300 ms, one
epoch < 100 ms.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import tempfile
import time
from types import SimpleNamespace

import numpy as np

from tests.tb_plugin.conftest import PREFIX, wait_for_epochs
from tests.tb_plugin.server import TensorBoard, tensorboard
from tf_explain_kit import logformat
from tf_explain_kit.imaging import resize_bilinear
from tf_explain_kit.logwriter import SummaryWriter

EPOCHS, SAMPLES, METHODS = 100, 32, ("saliency", "integrated_gradients", "gradcam", "lime_image")
RUN = "bench/explanations"
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _attributions(rng: np.random.Generator, method: str, side: int, channels: int) -> tuple[np.ndarray, dict]:
    if method == "gradcam":
        return resize_bilinear(rng.random((SAMPLES, 7, 7), np.float32), side, side), {"resolution": [7, 7]}
    if method == "lime_image":
        block = side // 4
        segments = np.repeat(np.arange(16).reshape(4, 4).repeat(block, 0).repeat(block, 1)[None], SAMPLES, 0)
        return rng.standard_normal((SAMPLES, 16)).astype(np.float32)[np.arange(SAMPLES)[:, None, None], segments], {"segments": segments}
    return rng.standard_normal((SAMPLES, side, side, channels)).astype(np.float32), {}


def write_logs(root: str, side: int = 28, channels: int = 1) -> None:
    rng = np.random.default_rng(0)
    writer = SummaryWriter(f"{root}/bench")
    images = rng.random((SAMPLES, side, side, channels), np.float32)
    labels = rng.integers(0, 10, SAMPLES)
    writer.blobs(logformat.SAMPLES_TAG, 0, logformat.samples_payload(images, labels, np.arange(SAMPLES), "image", [f"class {i}" for i in range(10)]), "samples")
    for epoch in range(EPOCHS):
        writer.blobs(logformat.TRAINING_TAG, epoch, logformat.training_payload({"loss": 1 / (epoch + 1), "accuracy": epoch / EPOCHS, "val_loss": 1.1 / (epoch + 1), "val_accuracy": epoch / EPOCHS - 0.01}), "training")
        for method in METHODS:
            attributions, extras = _attributions(rng, method, side, channels)
            explanation = SimpleNamespace(method=method, attributions=attributions, targets=labels, predictions=rng.random((SAMPLES, 10)), extras={"score": rng.random(SAMPLES), **extras})
            writer.blobs(logformat.explanation_tag(method), epoch, logformat.explanation_payload(explanation, epoch), "explanation")
    writer.close()


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _fetch_epoch(server: TensorBoard, method: str, epoch: int) -> None:
    status, body = server.get(f"{PREFIX}/epoch?run={RUN}&method={method}&epoch={epoch}")
    assert status == 200, body[:200]
    status, _ = server.get(f"{PREFIX}/array?key={json.loads(body)['arrays']['attributions']['key']}")
    assert status == 200


def _rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` and its descendants (the fast loader's data server)."""
    with open(f"/proc/{pid}/status") as status:
        own = next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024
    children = [int(child) for path in glob.glob(f"/proc/{pid}/task/*/children") for child in open(path).read().split()]
    return own + sum(_rss_mb(child) for child in children)


def _row(name: str, times: list[float], note: str, **extra) -> dict:
    median = statistics.median(times)
    p95 = float(np.percentile(times, 95))
    return {"benchmark": name, "repeats": len(times), "ours_s": median, "median_ms": 1000 * median, "p95_ms": 1000 * p95, "note": note, **extra}


def run(quick: bool) -> list[dict]:
    repeats = 10 if quick else 50
    rows = []
    for side, channels in ((28, 1), (224, 3)):
        size = f"{side}x{side}{' RGB' if channels == 3 else ''}"
        with tempfile.TemporaryDirectory() as root:
            write_logs(root, side, channels)
            log_mb = sum(os.path.getsize(f) for f in glob.glob(f"{root}/{RUN}/events.out.tfevents.*")) / 2**20
            for loader in ("false", "true"):
                with tensorboard(root, loader, env={"PYTHONPATH": CHECKOUT}) as server:  # this checkout's plugin
                    start = time.perf_counter()
                    wait_for_epochs(server, RUN, "lime_image", EPOCHS, timeout=900)
                    loaded = time.perf_counter() - start
                    cold = _timed(lambda: _fetch_epoch(server, "saliency", 50), 1)[0]
                    rows.append(_row(f"plugin index, {size} (load_fast={loader})", _timed(lambda: server.get(f"{PREFIX}/index"), repeats), "target < 300 ms", log_mb=log_mb, load_s=loaded))
                    requests = iter(range(10**9))
                    # each request a different (method, epoch): all miss the plugin's cache of decoded data
                    warm = _timed(lambda: (lambda k: _fetch_epoch(server, METHODS[k % 4], (7 * k + 1) % EPOCHS))(next(requests)), repeats)
                    rows.append(_row(f"plugin one epoch, {size} (load_fast={loader})", warm, "target < 100 ms; epoch JSON + attributions", cold_ms=1000 * cold))
                    for method in METHODS:
                        for epoch in range(EPOCHS):
                            _fetch_epoch(server, method, epoch)
                    rows[-1]["rss_mb"] = _rss_mb(server.pid)
    return rows
