"""Reading logs back for notebooks: ``load_run(log_dir)`` → :class:`Run`.

Reads the event files written by the callback through :mod:`logformat`, from any path
:mod:`storage` handles (local folders without TensorFlow; ``gs://``, ``s3://``, ``ram://``
... through ``tf.io.gfile``). Opening a run indexes its event files: small summaries
(training logs, health scalars) are kept, explanations and samples are remembered by
file offset and read as byte ranges when asked for, so memory does not grow with the
number of epochs.
``Run.refresh()`` reads what a run still training has written since (a record still
being written is picked up by the next refresh).

Records are checked as TensorBoard checks them: the masked CRC32C of each length and of
each record, lengths no larger than the file. A damaged record is skipped, a damaged
length makes the reader look for the next intact record, and either is reported with one
warning per file; a garbage file next to good ones costs nothing else. A step logged
more than once (a resumed training) keeps its newest record, as the plugin does.
"""

from __future__ import annotations

import numbers
import os
import struct
import warnings
from typing import Any, Iterator, NamedTuple

from google.protobuf.message import DecodeError
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util

from . import logformat, storage
from .checks import directory
from .explanation import Explanation
from .logwriter import masked_crc

_HEADER = 12  # TFRecord framing: uint64 length, uint32 length CRC, data, uint32 data CRC
_FOOTER = 4
MAX_RECORD = 1 << 31  # protobuf messages are smaller than 2 GiB: a longer length is damage


class _Location(NamedTuple):
    """Where one summary's record is: event file, byte offset and length of the event, and
    the event's wall time (the newest record of a step wins)."""

    file: str
    offset: int
    length: int
    tag: str
    wall_time: float = 0.0


def _intact_header(header: bytes) -> bool:
    return len(header) == _HEADER and masked_crc(header[:8]) == header[8:]


class _EventFile:
    """Incremental reader of one event file: yields each complete, intact record once."""

    def __init__(self, path: str):
        self.path, self.offset = path, 0
        self.problems: list[str] = []  # damage found since the last report

    def new_records(self) -> Iterator[tuple[int, bytes]]:
        with storage.open_read(self.path) as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            while True:
                file.seek(self.offset)
                header = file.read(_HEADER)
                if len(header) < _HEADER:
                    return
                if not _intact_header(header):
                    self.problems.append(f"damaged length at byte {self.offset}")
                    if not self._resync(file, size):
                        return
                    continue
                (length,) = struct.unpack("<Q", header[:8])
                if length > MAX_RECORD:
                    self.problems.append(f"a length of {length} bytes at byte {self.offset}")
                    if not self._resync(file, size):
                        return
                    continue
                if self.offset + _HEADER + length + _FOOTER > size:
                    return  # the writer is mid-record: read it on the next refresh
                data, footer = file.read(length), file.read(_FOOTER)
                start, self.offset = self.offset + _HEADER, self.offset + _HEADER + length + _FOOTER
                if masked_crc(data) != footer:
                    self.problems.append(f"damaged record at byte {start - _HEADER}")
                    continue
                yield start, data

    def _resync(self, file: Any, size: int) -> bool:
        """Move to the next byte where an intact header starts. False when there is none
        on disk (yet: the offset stays, so a record still being written is read later)."""
        file.seek(self.offset + 1)
        rest = file.read(size - self.offset - 1)
        for skip in range(len(rest) - _HEADER + 1):
            if _intact_header(rest[skip : skip + _HEADER]):
                self.offset += 1 + skip
                return True
        return False

    def report(self) -> None:
        """One warning for the damage found since the last report."""
        if self.problems:
            warnings.warn(f"{self.path}: skipped {len(self.problems)} damaged or unreadable records ({'; '.join(self.problems[:3])}).", RuntimeWarning, stacklevel=4)
            self.problems = []


class Run:
    """The explanations of one training run (one ``<log_dir>/<run>/explanations`` folder).

    ``name`` is the run's path relative to the ``log_dir`` it was loaded from (``"."``
    for a run directly in it).
    """

    def __init__(self, path: str, name: str = "."):
        self.path, self.name = path, name
        self._files: dict[str, _EventFile] = {}
        self._explanations: dict[tuple[str, int], _Location] = {}
        self._samples_at: _Location | None = None
        self._samples: dict[str, Any] | None = None
        self._training: dict[int, tuple[_Location, dict[str, float]]] = {}
        self._health: dict[int, dict[str, tuple[_Location, float]]] = {}
        self._started = False  # a SessionLog.START was read
        self._errors: dict[str, dict[int, str]] = {}
        self.refresh()

    def refresh(self) -> "Run":
        """Index what was written since the last read (a run still training grows)."""
        for path in storage.glob(storage.join(self.path, "events.out.tfevents.*")):
            reader = self._files.setdefault(path, _EventFile(path))
            for offset, data in reader.new_records():
                try:
                    event = event_pb2.Event.FromString(data)
                    if event.session_log.status == event_pb2.SessionLog.START:
                        self._session_start(event.step)
                    for value in event.summary.value:
                        self._index(value, event.step, _Location(path, offset, len(data), value.tag, event.wall_time))
                except logformat.NewerFormatError:
                    raise
                except (DecodeError, logformat.FormatError, ValueError, TypeError) as error:
                    reader.problems.append(f"record at byte {offset - _HEADER}: {type(error).__name__}: {str(error)[:200]}")
            reader.report()
        return self

    def _session_start(self, step: int) -> None:
        """TensorBoard's rule: the first SessionLog.START of a run starts it; each later one
        is a restart that discards everything logged at ``step`` or after."""
        if not self._started:
            self._started = True
            return
        self._explanations = {key: where for key, where in self._explanations.items() if key[1] < step}
        self._training = {epoch: entry for epoch, entry in self._training.items() if epoch < step}
        self._health = {epoch: entry for epoch, entry in self._health.items() if epoch < step}
        if step == 0:
            self._samples_at = self._samples = None

    def _index(self, value: Any, step: int, where: _Location) -> None:
        plugin = value.metadata.plugin_data.plugin_name
        if plugin == logformat.PLUGIN_NAME:
            logformat.parse_metadata(value.metadata.plugin_data.content)  # FormatError for newer logs
            method = logformat.method_of(value.tag)
            if method is not None:
                if _newer(where, self._explanations.get((method, step))):
                    self._explanations[(method, step)] = where
            elif value.tag == logformat.SAMPLES_TAG:
                if _newer(where, self._samples_at):
                    self._samples_at, self._samples = where, None
            elif value.tag == logformat.TRAINING_TAG:
                if _newer(where, self._training.get(step, (None,))[0]):
                    self._training[step] = (where, logformat.read_training(_blobs(value)))
        elif plugin == "scalars" and value.tag.startswith("health/"):
            metrics = self._health.setdefault(step, {})
            name = value.tag[len("health/") :]
            if _newer(where, metrics.get(name, (None,))[0]):
                metrics[name] = (where, float(tensor_util.make_ndarray(value.tensor)))
        elif plugin == "text" and logformat.error_method(value.tag):
            text = tensor_util.make_ndarray(value.tensor).item()
            self._errors.setdefault(logformat.error_method(value.tag), {})[step] = text.decode() if isinstance(text, bytes) else str(text)

    @property
    def epochs(self) -> list[int]:
        """Epochs with at least one explanation."""
        return sorted({epoch for _, epoch in self._explanations})

    @property
    def methods(self) -> list[str]:
        return sorted({method for method, _ in self._explanations})

    @property
    def errors(self) -> dict[str, dict[int, str]]:
        """``{method: {epoch: markdown}}``: methods that failed at an epoch, and methods the
        callback refused at train begin (logged at epoch 0) because they do not apply."""
        return {method: dict(sorted(by_epoch.items())) for method, by_epoch in sorted(self._errors.items())}

    def epochs_of(self, method: str) -> list[int]:
        """Epochs at which ``method`` was logged (methods may run every few epochs)."""
        self._check_method(method)
        return sorted(e for m, e in self._explanations if m == method)

    @property
    def samples(self) -> dict[str, Any]:
        """``inputs``, ``labels``, ``ids`` (indices into the validation data), ``kind``,
        ``class_names``, ``feature_names`` and ``tokens`` of the explained samples."""
        if self._samples_at is None:
            raise ValueError(f"run '{self.path}' has no samples summary yet; it is written when training begins.")
        if self._samples is None:
            self._samples = logformat.read_samples(_read(self._samples_at))
        return self._samples

    def explanation(self, method: str, epoch: int) -> Explanation:
        """What the callback computed for ``method`` at ``epoch`` (see the storage precision
        in :mod:`logformat`); ``extras["seconds"]`` is the time it took."""
        epoch = _epoch(epoch)
        if (method, epoch) not in self._explanations:
            raise KeyError(f"epoch: {method} was not logged at epoch {epoch}; it was at epochs {self.epochs_of(method)}.")
        fields = logformat.read_explanation(_read(self._explanations[(method, epoch)]))
        fields["extras"]["seconds"] = fields.pop("seconds")
        fields.pop("epoch")
        return Explanation(**fields)

    def explanations(self, method: str) -> dict[int, Explanation]:
        """``{epoch: Explanation}`` for every epoch ``method`` was logged at (decodes them all)."""
        return {epoch: self.explanation(method, epoch) for epoch in self.epochs_of(method)}

    def _check_method(self, method: str) -> None:
        if method not in self.methods:
            raise KeyError(f"method: {method!r} is not in this run; it has {self.methods}.")

    def scalars(self):
        """A pandas DataFrame indexed by epoch: Keras' logs (loss, accuracy, val_...) and
        the explanation health and quality metrics (``<method>/<metric>``)."""
        import pandas as pd

        epochs = sorted(set(self._training) | set(self._health))
        rows = [{**self._training.get(e, (None, {}))[1], **{name: value for name, (_, value) in self._health.get(e, {}).items()}} for e in epochs]
        return pd.DataFrame(rows, index=pd.Index(epochs, name="epoch"))

    def __repr__(self) -> str:
        return f"Run({self.name!r}, epochs={len(self.epochs)}, methods={self.methods})"


def _epoch(epoch: Any) -> int:
    """An epoch number: an int, or a string of digits such as ``"3"``."""
    if isinstance(epoch, str) and epoch.strip().isdigit():
        return int(epoch)
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
        raise TypeError(f"epoch: expected an int such as 3 (see run.epochs_of(method)), got {epoch!r}.")
    return int(epoch)


def _blobs(value: Any) -> list[bytes]:
    return list(tensor_util.make_ndarray(value.tensor).reshape(-1))


def _newer(where: _Location, than: _Location | None) -> bool:
    """Whether the record at ``where`` replaces ``than`` (same step): written later, or as
    late and further on in the run's files."""
    return than is None or (where.wall_time, where.file, where.offset) >= (than.wall_time, than.file, than.offset)


def _read(where: _Location) -> list[bytes]:
    """The blobs of one indexed summary, read from its event file (checked again: the
    file may have changed since it was indexed)."""
    with storage.open_read(where.file) as file:
        file.seek(where.offset)
        data, footer = file.read(where.length), file.read(_FOOTER)
    if masked_crc(data) != footer:
        raise logformat.FormatError(f"{where.file}: the record at byte {where.offset - _HEADER} changed since it was read; call refresh().")
    event = event_pb2.Event.FromString(data)
    return next(_blobs(value) for value in event.summary.value if value.tag == where.tag)


def runs(log_dir: str | os.PathLike) -> dict[str, str]:
    """``{run name: path}`` of every explanations folder below ``log_dir``."""
    root = os.fspath(log_dir)
    found = {}
    for folder, files in storage.walk(root):
        if os.path.basename(folder) == logformat.RUN and any(f.startswith("events.out.tfevents") for f in files):
            found[storage.relpath(os.path.dirname(folder), root)] = folder
    return dict(sorted(found.items()))


def _found(log_dir: str | os.PathLike) -> dict[str, str]:
    log_dir = directory(log_dir)
    if not storage.isdir(log_dir):
        if storage.exists(log_dir):
            raise NotADirectoryError(f"log_dir: {log_dir!r} is a file, not a directory; pass the folder given to ExplainCallback (the one that holds 'explanations').")
        raise FileNotFoundError(f"log_dir: {log_dir!r} does not exist; pass the log_dir given to ExplainCallback.")
    found = runs(log_dir)
    if not found:
        raise ValueError(f"log_dir: no tf-explain-kit logs under {os.fspath(log_dir)!r} (no '{logformat.RUN}' folder with event files). Was ExplainCallback given this log_dir?")
    return found


def load_run(log_dir: str | os.PathLike, run: str | None = None) -> Run:
    """Open the run logged under ``log_dir`` (name it with ``run=`` if there are several:
    the folder below ``log_dir`` that holds its ``explanations`` folder)."""
    found = _found(log_dir)
    if run is None:
        if len(found) > 1:
            raise ValueError(f"run: {os.fspath(log_dir)!r} holds {len(found)} runs {list(found)}; choose one with load_run(log_dir, run=...) or open all with load_runs(log_dir).")
        run = next(iter(found))
    if run not in found:
        raise ValueError(f"run: no run {run!r} under {os.fspath(log_dir)!r}; runs: {list(found)}.")
    return Run(found[run], run)


def load_runs(log_dir: str | os.PathLike) -> list[Run]:
    """Every run logged under ``log_dir``, sorted by name (for example two trainings to compare)."""
    return [Run(path, name) for name, path in _found(log_dir).items()]
