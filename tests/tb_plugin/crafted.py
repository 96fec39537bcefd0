"""Hostile and damaged records, written with the toolkit's own writer (no training): what a
diverged run, a crafted event file or a bug in another writer can leave in a log_dir."""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np

from tf_explain_kit import logformat
from tf_explain_kit.explanation import Explanation
from tf_explain_kit.logwriter import SummaryWriter

X = np.random.default_rng(0).random((2, 6, 6, 1), np.float32)
GOOD_SAMPLES = logformat.samples_payload(X, np.arange(2), np.arange(2), "image", class_names=["a", "b"])
HUGE = (1 << 40,)  # a declared float32 shape of 4 TiB, in a member of 16 bytes


def explanation(extras: dict | None = None) -> Explanation:
    return Explanation("saliency", X[..., 0] - 0.5, np.array([0, 1]), np.array([[0.7, 0.3], [0.4, 0.6]], np.float32), extras or {})


def npz(members: dict[str, bytes]) -> bytes:
    """An ``.npz`` of raw ``.npy`` members (headers that may lie about their data)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(f"{name}.npy", data)
    return buffer.getvalue()


def npy(array: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    """``array`` as ``.npy`` bytes, its header declaring ``shape`` if given."""
    buffer = io.BytesIO()
    header = np.lib.format.header_data_from_array_1_0(array)
    header["shape"] = shape if shape is not None else array.shape
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue() + array.tobytes()


def header(**fields) -> bytes:
    return json.dumps({"version": 1, "method": "saliency", "structure": None, "extras": {}, "seconds": 0.1, **fields}).encode()


def arrays(attributions: np.ndarray, shape: tuple[int, ...] | None = None) -> bytes:
    return npz({"attributions:values": npy(attributions, shape), "targets": npy(np.array([0, 1], np.int64)), "predictions": npy(np.array([[0.7, 0.3], [0.4, 0.6]], np.float32))})


# epoch -> the explanation blobs logged for it in run "crafted", and whether /epoch serves it
CRAFTED_EPOCHS = {
    0: (logformat.explanation_payload(explanation(), 0), 200),
    1: (logformat.explanation_payload(explanation({"note": float("nan"), "ranks": [1.0, float("inf")]}), 1), 200),  # NaN in header extras
    2: ([header(epoch=2), arrays(np.array([["a", "b"], ["c", "d"]]))], 404),  # string-typed attributions
    3: ([header(epoch=3), arrays(np.zeros(4, np.float32), HUGE)], 404),  # a huge declared shape
    4: ([b'{"version": 1, "extras": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", arrays(np.zeros((2, 6, 6), np.float32))], 404),  # RecursionError
    5: ([header(epoch=5, extras={"deep": [[[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]]]}), arrays(np.zeros((2, 6, 6), np.float32))], 404),  # nested past the limit
    6: ([header(epoch=6, structure={"list": 0}), arrays(np.zeros((2, 6, 6), np.float32))], 404),  # no attributions at all
    7: ([b"\xff\xfe", b"PK\x03\x04 truncated zip"], 404),
}
CRAFTED_TRAINING = {0: {"loss": 1.0}, 1: {"loss": [1.0, 2.0]}, 2: {"loss": 0.5}}  # epoch 1: a list value


def write(root: str) -> None:
    """``nanloss`` (a diverged loss), ``emptyin`` (samples without inputs), ``crafted``
    (one bad record per epoch, see ``CRAFTED_EPOCHS``) under ``root``."""
    nanloss = SummaryWriter(os.path.join(root, "nanloss"))
    nanloss.blobs(logformat.SAMPLES_TAG, 0, GOOD_SAMPLES, "samples")
    for epoch, loss in enumerate([2.0, float("nan"), float("inf")]):
        nanloss.blobs(logformat.TRAINING_TAG, epoch, logformat.training_payload({"loss": loss, "accuracy": 0.5}), "training")
    nanloss.close()
    empty = SummaryWriter(os.path.join(root, "emptyin"))
    samples_header = {"version": 1, "kind": "image", "structure": {"list": 0}, "class_names": None, "feature_names": None, "tokens": None}
    empty.blobs(logformat.SAMPLES_TAG, 0, [json.dumps(samples_header).encode(), npz({"ids": npy(np.arange(2))})], "samples")
    empty.blobs(logformat.explanation_tag("saliency"), 0, logformat.explanation_payload(explanation(), 0), "explanation")
    empty.close()
    crafted = SummaryWriter(os.path.join(root, "crafted"))
    crafted.blobs(logformat.SAMPLES_TAG, 0, GOOD_SAMPLES, "samples")
    for epoch, (blobs, _) in CRAFTED_EPOCHS.items():
        crafted.blobs(logformat.explanation_tag("saliency"), epoch, blobs, "explanation")
    for epoch, logs in CRAFTED_TRAINING.items():
        crafted.blobs(logformat.TRAINING_TAG, epoch, logformat.encode({"logs": logs}, {}), "training")
    crafted.close()
