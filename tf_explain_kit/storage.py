"""File access for the logs: local paths through Python's own files, URLs (``gs://``,
``s3://``, ``hdfs://``, ``ram://`` ... any scheme TensorFlow's file systems handle) through
``tf.io.gfile``.

Local paths never import TensorFlow, so ``load_run`` on a local folder works in a process
without it. Reads are byte ranges (``seek`` then ``read``): an indexed explanation is
fetched without reading the rest of its event file, on a bucket as on a disk.
"""

from __future__ import annotations

import glob as _glob
import os
import posixpath
from typing import BinaryIO, Iterator


def is_url(path: str) -> bool:
    return "://" in path


def _gfile():
    try:
        import tensorflow as tf
    except ImportError as error:
        raise ImportError("log_dir: paths with a scheme (gs://, s3://, ram://...) are read and written with TensorFlow's tf.io.gfile; install tensorflow.") from error
    return tf.io.gfile


def join(path: str, *parts: str) -> str:
    return posixpath.join(path, *parts) if is_url(path) else os.path.join(path, *parts)


def makedirs(path: str) -> None:
    if is_url(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


def isdir(path: str) -> bool:
    return _gfile().isdir(path) if is_url(path) else os.path.isdir(path)


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_url(path) else os.path.exists(path)


def glob(pattern: str) -> list[str]:
    return sorted(_gfile().glob(pattern) if is_url(pattern) else _glob.glob(pattern))


def walk(root: str) -> Iterator[tuple[str, list[str]]]:
    """``(folder, file names)`` for ``root`` and every folder below it."""
    if is_url(root):
        for folder, _, files in _gfile().walk(root):
            yield folder.rstrip("/"), list(files)
    else:
        for folder, _, files in os.walk(root):
            yield folder, files


def relpath(path: str, root: str) -> str:
    if is_url(path):
        return posixpath.relpath(path.split("://", 1)[1], root.rstrip("/").split("://", 1)[1])
    return os.path.relpath(path, root)


def open_read(path: str) -> BinaryIO:
    """A binary file to ``seek`` and ``read``."""
    return _gfile().GFile(path, "rb") if is_url(path) else open(path, "rb")


def open_new(path: str) -> BinaryIO:
    """A new binary file to write and flush (object stores cannot append: each writer
    writes its own event file, as TensorBoard's writers do)."""
    return _gfile().GFile(path, "wb") if is_url(path) else open(path, "ab")
