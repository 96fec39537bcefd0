"""Writes the log format (:mod:`logformat`) and TensorBoard's own summaries to event files.

Event files are TFRecord files of ``Event`` protobufs, written here directly with
TensorBoard's protobufs and a C implementation of CRC32C (``google-crc32c``): no
TensorFlow summary ops, so writing works the same under any Keras backend and inside a
distribution strategy, and megabytes of attributions are checksummed in microseconds
(TensorBoard's pure-Python fallback takes about 80 ms per MB). Files are opened through
:mod:`storage`: local folders, or ``gs://``, ``s3://``... through ``tf.io.gfile``.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import struct
import threading
import time
import warnings
import weakref
from typing import Any

import google_crc32c
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata

from . import logformat, storage
from .writerlock import WriterLock

_FILES = itertools.count()


def masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC32C of ``data``, 4 little-endian bytes."""
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def _value(tag: str, value: bytes | list[bytes] | float, metadata: summary_pb2.SummaryMetadata) -> summary_pb2.Summary.Value:
    """A summary value holding a string (rank 0), strings (rank 1) or a float32 scalar."""
    if isinstance(value, float):
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=_SCALAR, float_val=[value])
    elif isinstance(value, bytes):
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=_SCALAR, string_val=[value])
    else:
        shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=len(value))])
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape, string_val=value)
    return summary_pb2.Summary.Value(tag=tag, tensor=tensor, metadata=metadata)


_SCALAR = tensor_shape_pb2.TensorShapeProto()


@functools.lru_cache(maxsize=4096)  # the same tags come back every epoch
def _metadata(plugin: Any, data_class: int, tag: str) -> summary_pb2.SummaryMetadata:
    """A TensorBoard plugin's summary metadata for ``tag`` (``plugin``: its metadata module)."""
    meta = plugin.create_summary_metadata(display_name=tag, description="")
    meta.data_class = data_class
    return meta


def _png_size(png: bytes) -> tuple[int, int]:
    """``(width, height)`` from a PNG's header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


class EventFile:
    """An append-only TFRecord file of events, safe to share between threads."""

    def __init__(self, directory: str):
        name = f"events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}.{next(_FILES)}"
        self.path = storage.join(directory, name)
        self._file = storage.open_new(self.path)
        self._lock = threading.Lock()
        self.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def write(self, event: event_pb2.Event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        with self._lock:
            self._file.write(header + masked_crc(header) + data + masked_crc(data))

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class SummaryWriter:
    """One event file in ``<log_dir>/explanations``; call :meth:`flush` after each epoch.

    One writer per folder (:mod:`writerlock`): a writer in another live process is
    refused with a ValueError; in this process, the newer writer takes over and the older
    one stops writing, with a RuntimeWarning (two callbacks on one log_dir).
    """

    def __init__(self, log_dir: str | os.PathLike, keep_going: bool = False):
        """``keep_going``: a failed write (a full disk, a lost mount) warns once and stops
        the writing instead of raising (for a training callback: training goes on)."""
        self.path = storage.join(os.fspath(log_dir), logformat.RUN)
        self.keep_going, self._failed = keep_going, False
        storage.makedirs(self.path)
        self._lock = None if storage.is_url(self.path) else WriterLock(self.path)
        self._writer = EventFile(self.path)
        self._superseded = False
        previous = _WRITERS.get(self.path)
        if previous is not None:
            previous._superseded = True
        _WRITERS[self.path] = self

    def _write(self, step: int, *values: summary_pb2.Summary.Value) -> None:
        self._event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary_pb2.Summary(value=values)))

    def _event(self, event: event_pb2.Event) -> None:
        if self._superseded:
            if self._superseded is True:
                warnings.warn(f"{self.path}: another writer in this process took this log_dir over; this one stops writing (give each callback its own log_dir).", RuntimeWarning, stacklevel=4)
                self._superseded = "warned"
            return
        if not self._failed:
            self._guarded(self._writer.write, event)

    def _guarded(self, write, *args) -> None:
        try:
            write(*args)
        except OSError as error:
            if not self.keep_going:
                raise
            if not self._failed:
                warnings.warn(f"{self.path}: writing failed ({error}); nothing more is logged to this log_dir and training goes on. Free space (or fix the file system), then resume the training to log again.", RuntimeWarning, stacklevel=4)
            self._failed = True

    def session(self, step: int) -> None:
        """Mark the start of a training session at ``step`` (TensorBoard's SessionLog.START):
        a resumed training replaces what an earlier one logged from ``step`` on."""
        self._event(event_pb2.Event(wall_time=time.time(), step=int(step), session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def blobs(self, tag: str, step: int, blobs: list[bytes], kind: str) -> None:
        """A toolkit summary: a rank-1 string tensor with the plugin's metadata."""
        self._write(step, _value(tag, list(blobs), logformat.metadata(kind)))

    def images(self, step: int, pictures: list[tuple[str, bytes]]) -> None:
        """PNG images for the Images dashboard, ``(tag, png)`` pairs, in one event."""
        self._write(step, *(_value(tag, [*(str(side).encode() for side in _png_size(png)), png], _metadata(image_metadata, summary_pb2.DATA_CLASS_BLOB_SEQUENCE, tag)) for tag, png in pictures))

    def text(self, tag: str, step: int, markdown: str) -> None:
        self._write(step, _value(tag, markdown.encode(), _metadata(text_metadata, summary_pb2.DATA_CLASS_TENSOR, tag)))

    def scalar(self, tag: str, step: int, value: float) -> None:
        self._write(step, _value(tag, float(value), _metadata(scalar_metadata, summary_pb2.DATA_CLASS_SCALAR, tag)))

    def flush(self) -> None:
        if not self._failed:
            self._guarded(self._writer.flush)
        if self._lock is not None:
            self._lock.heartbeat()

    def close(self) -> None:
        self._guarded(self._writer.close)
        if self._lock is not None and not self._superseded:
            self._lock.release()
        if _WRITERS.get(self.path) is self:
            del _WRITERS[self.path]


_WRITERS: "weakref.WeakValueDictionary[str, SummaryWriter]" = weakref.WeakValueDictionary()  # this process's writer per folder
