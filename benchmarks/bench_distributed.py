"""``explain_dataset`` throughput and memory (issue 7).

Integrated Gradients (50 steps) on the digits CNN over the digits test images (repeated
as needed), streamed from a ``tf.data.Dataset``: samples per second with one replica, two
logical CPU devices (MirroredStrategy) and two worker processes on 127.0.0.1
(MultiWorkerMirroredStrategy); and the peak resident memory of a one-replica run on the
throughput dataset and on one ten times larger (it must stay flat: results are written
per batch, not held). Every measurement runs in a fresh process (strategies and logical
devices need a fresh TensorFlow): ``python -m benchmarks.bench_distributed MODE SAMPLES``.
On CPU, logical devices and local workers share the same cores, so two replicas measure
the overhead of distribution, not a speed-up.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

BATCH = 64
TIMEOUT = 900


def _measure(mode: str, samples: int) -> dict:
    """In this (fresh) process: explain ``samples`` images under ``mode``; seconds and peak RSS."""
    import tensorflow as tf

    if mode == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    strategy = {"single": lambda: None, "mirrored": lambda: tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), "multi_worker": tf.distribute.MultiWorkerMirroredStrategy}[mode]()
    import tf_explain_kit as tek
    from tf_explain_kit import examples

    images = examples.digits()[2]
    model = examples.digits_cnn()
    dataset = tf.data.Dataset.from_tensor_slices(images).repeat().take(samples)
    with tempfile.TemporaryDirectory() as logs:
        tek.explain_dataset(model, dataset.take(BATCH), ["integrated_gradients"], strategy=strategy, batch_size=BATCH)  # tracing
        start = time.perf_counter()
        result = tek.explain_dataset(model, dataset, ["integrated_gradients"], log_dir=logs, strategy=strategy, batch_size=BATCH)
        seconds = time.perf_counter() - start
    return {"samples": result.samples, "seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's peak resident memory: VmHWM, which starts afresh at exec (``ru_maxrss``
    keeps the parent's peak across fork and exec, so every child reported the parent's)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def _env(**extra: str) -> dict:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "", **extra}


def _child(mode: str, samples: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.bench_distributed", mode, str(samples)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _collect(processes: list[subprocess.Popen]) -> list[dict]:
    try:
        outputs = [p.communicate(timeout=TIMEOUT)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(p.returncode for p in processes):
        raise RuntimeError(f"benchmark worker failed: exit codes {[p.returncode for p in processes]}")
    return [json.loads(out.strip().splitlines()[-1]) for out in outputs]


def _multi_worker(samples: int) -> dict:
    sockets = [socket.socket() for _ in range(2)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    workers = [f"127.0.0.1:{s.getsockname()[1]}" for s in sockets]
    for s in sockets:
        s.close()
    configs = [json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}) for i in range(2)]
    return _collect([_child("multi_worker", samples, _env(TF_CONFIG=c)) for c in configs])[0]  # the chief's view


def _row(name: str, measured: dict, note: str = "") -> dict:
    return {
        "benchmark": name,
        "ours_s": measured["seconds"],
        "samples": measured["samples"],
        "samples_per_s": measured["samples"] / measured["seconds"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "repeats": 1,
        "note": note,
    }


def run(quick: bool) -> list[dict]:
    samples = 128 if quick else 512
    single = _collect([_child("single", samples, _env())])[0]
    rows = [
        _row(f"explain_dataset IG, {samples} digits, 1 replica", single),
        _row(f"explain_dataset IG, {samples} digits, 2 logical CPU devices", _collect([_child("mirrored", samples, _env())])[0]),
        _row(f"explain_dataset IG, {samples} digits, 2 worker processes", _multi_worker(samples), "one host: both workers share its cores"),
    ]
    large = _collect([_child("single", samples * 10, _env())])[0]
    rows.append(_row(f"explain_dataset IG, {samples * 10} digits (10×), 1 replica", large, f"peak RSS {large['peak_rss_mb']:.0f} MB vs {single['peak_rss_mb']:.0f} MB at 1×"))
    return rows


if __name__ == "__main__":
    print(json.dumps(_measure(sys.argv[1], int(sys.argv[2]))))
