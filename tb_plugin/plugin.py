"""The "Explanations" TensorBoard plugin: the toolkit's logs per sample and per epoch.

Reads only through ``context.data_provider`` (so both ``--load_fast`` loaders work) and
imports only :mod:`tf_explain_kit.logformat` and numpy, never TensorFlow (the tests run
TensorBoard with TensorFlow made unimportable). TensorBoard's own start-up still loads
TensorFlow when it is installed; the plugin works the same without it.

Routes (under ``data/plugin/tf_explain_kit/``), in the style of the images plugin:

- ``index``: every toolkit run with its data kind, class and feature names, tokens,
  sample ids and labels, an ``inputs`` array reference, each method's epochs (methods in
  the order the callback first wrote them), the errors logged for failed methods by
  epoch (``failures``) and the epochs of the training logs.
- ``epoch?run=&method=&epoch=``: one method at one epoch: targets, predictions, small
  extras as JSON, and array references for the attributions (channels summed for images)
  and large extras such as LIME's ``segments``.
- ``array?key=``: the bytes behind an array reference ``{key, shape, dtype[, scale]}``,
  little-endian, C order: ``float32`` (inputs), ``float16`` (attributions: sample ``i``'s
  values divided by ``scale[i]``, its largest finite absolute value, so every value is
  within 2**-11 of that, the precision the log stores), ``uint16`` or ``int32`` (LIME's
  segments). Keys are opaque to the client.
- ``training?run=``: the Keras logs (loss, accuracy, val_loss, ...) per epoch.
- ``index.js`` and ``static/*``: the front end (plain ES modules).

Bad requests get 400 (missing or malformed parameter) or 404 (unknown run, method,
epoch or key, unreadable data) with a plain-text message, raised as TensorBoard's own
``tensorboard.errors``. A run whose samples cannot be read is left out of ``index`` and
named in its ``errors``; a record that cannot be read (damaged or crafted logs) answers
404 for that request or, in ``training``, leaves that epoch out; other runs and records
are served as usual.

Decoded records are cached up to ``CACHE_BYTES`` of served arrays (least recently used
first out), and the listing of a run's tag serves the epoch and array routes for
``LISTING_SECONDS`` (the index lists anew and refreshes it; a step or record the listing
does not have is listed anew), so one epoch costs no listing after the index and its
array no listing and no decoding.

JSON has no NaN or infinity: ``training`` sends a non-finite value (a diverged loss) as
the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (JavaScript's ``Number()`` reads
them back; ``null`` there means the value was not logged at that epoch); the other
routes send non-finite numbers as ``null``.
"""

from __future__ import annotations

import base64
import binascii
import collections
import functools
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from tensorboard import errors, plugin_util
from tensorboard.backend import http_util
from tensorboard.data import provider
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from tf_explain_kit import logformat

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}
ALL_STEPS = 1 << 30  # "downsample" that keeps every step
JSON_EXTRA_LIMIT = 4096  # numeric extras up to this many values travel as JSON, larger by key
TEXT_PLUGIN = "text"  # the callback logs a method's failures as ``<method>/error`` text summaries
ERROR_SUFFIX = "/error"
ERROR_LIMIT = 4000  # characters of one error message sent to the client
CACHE_BYTES = 256 << 20  # decoded records kept in memory, by the size of their arrays
LISTING_SECONDS = 2.0  # how long a listing of one run's tag serves the epoch and array routes


def _route(handler: Callable[..., wrappers.Response]) -> Callable[..., wrappers.Response]:
    """A werkzeug application that answers ``tensorboard.errors`` with their 4xx code."""

    @wrappers.Request.application
    @functools.wraps(handler)
    def application(self: "ExplanationsPlugin", request: wrappers.Request) -> wrappers.Response:
        try:
            return handler(self, request)
        except errors.PublicError as error:
            return http_util.Respond(request, str(error), "text/plain", code=error.http_code)

    return application


def _arg(request: wrappers.Request, name: str) -> str:
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"missing query parameter {name!r}.")
    return value


def _int_arg(request: wrappers.Request, name: str) -> int:
    value = _arg(request, name)
    try:
        return int(value)
    except ValueError:
        raise errors.InvalidArgumentError(f"query parameter {name!r}: expected an integer, got {value[:60]!r}.") from None


def _json(request: wrappers.Request, value: Any) -> wrappers.Response:
    return http_util.Respond(request, json.dumps(_jsonable(value), allow_nan=False), "application/json")


def _jsonable(value: Any, not_finite: Callable[[float], Any] = lambda number: None) -> Any:
    """``value`` with numpy values as plain ones and each non-finite float replaced by
    ``not_finite(it)`` (JSON has neither NaN nor infinity)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if np.isfinite(value) else not_finite(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v, not_finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, not_finite) for v in value]
    return value if value is None or isinstance(value, (str, int)) else str(value)


def _spelled(number: float) -> str:
    """How ``training`` sends a non-finite value (JavaScript's ``Number()`` reads it back)."""
    return "NaN" if np.isnan(number) else ("Infinity" if number > 0 else "-Infinity")


class _LRU:
    """A thread-safe least-recently-used cache of values with a ``nbytes``, holding at most
    ``limit`` bytes (and always the newest value)."""

    def __init__(self, limit: int):
        self.limit, self.nbytes, self._items, self._lock = limit, 0, collections.OrderedDict(), threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self.nbytes += value.nbytes
            while self.nbytes > self.limit and len(self._items) > 1:
                self.nbytes -= self._items.popitem(last=False)[1].nbytes
        return value


@dataclass(frozen=True)
class _Wire:
    """An array as the ``array`` route sends it (see the module's notes)."""

    data: bytes
    shape: list[int]
    dtype: str
    scale: list[float] | None = None

    def reference(self, key: str) -> dict:
        reference = {"key": key, "shape": self.shape, "dtype": self.dtype}
        return reference if self.scale is None else {**reference, "scale": self.scale}


def _wire(values: np.ndarray, dtype: str) -> _Wire:
    """``values`` as ``dtype``: ``float32``; ``float16`` scaled per sample; ``labels``
    (``uint16`` when they fit, else ``int32``)."""
    shape = list(values.shape)
    if dtype == "labels":
        labels = np.asarray(values, np.int64)
        small = labels.size == 0 or (labels.min() >= 0 and labels.max() < 1 << 16)
        return _Wire(labels.astype("<u2" if small else "<i4").tobytes(), shape, "uint16" if small else "int32")
    flat = np.asarray(values, np.float32).reshape((shape[0], math.prod(shape[1:])) if shape else (1, 1))
    if dtype == "float32":
        return _Wire(flat.astype("<f4").tobytes(), shape, dtype)
    largest = np.abs(np.where(np.isfinite(flat), flat, 0)).max(axis=1, initial=0)
    scale = np.where(largest > 0, largest, 1).astype(np.float32)
    return _Wire((flat / scale[:, None]).astype("<f2").tobytes(), shape, dtype, scale.tolist())


@dataclass(frozen=True)
class _Record:
    """One decoded record as the routes serve it: JSON fields and arrays."""

    fields: dict
    arrays: dict[str, _Wire]

    @property
    def nbytes(self) -> int:
        return sum(len(wire.data) for wire in self.arrays.values()) + 4096


def array_key(run: str, datum: provider.BlobSequenceDatum, tag: str, name: str) -> str:
    """The opaque key of array ``name`` of the record ``datum`` of ``tag`` in ``run``: the
    record's wall time is part of it, so a key never reads a record that replaced it."""
    return base64.urlsafe_b64encode(json.dumps([run, tag, datum.step, datum.wall_time, name]).encode()).decode().rstrip("=")


def _parse_key(key: str) -> tuple[str, str, int, float, str]:
    try:
        run, tag, step, wall_time, name = json.loads(base64.urlsafe_b64decode(key + "=" * (-len(key) % 4)))
        if not (isinstance(run, str) and isinstance(tag, str) and isinstance(name, str) and type(step) is int and isinstance(wall_time, (int, float))) or _reader_of(tag) is None:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise errors.InvalidArgumentError(f"malformed array key {key[:60]!r}; use the keys the index and epoch routes return.") from None
    return run, tag, step, float(wall_time), name


def _reader_of(tag: str) -> str | None:
    if tag == logformat.SAMPLES_TAG:
        return "samples"
    if tag == logformat.TRAINING_TAG:
        return "training"
    return "explanation" if logformat.method_of(tag) else None


def _newest(data: list[provider.BlobSequenceDatum]) -> dict[int, provider.BlobSequenceDatum]:
    """``{step: datum}``, sorted by step, where a step logged more than once (a resumed
    training) takes its newest record, as ``load_run`` does."""
    return {datum.step: datum for datum in sorted(data, key=lambda d: (d.step, d.wall_time))}


def _first(value: Any) -> Any:
    """The first input's array of a single, list or dict structure."""
    if isinstance(value, dict):
        return next(iter(value.values()))
    return value[0] if isinstance(value, list) else value


def _explanation_record(blobs: list[bytes]) -> _Record:
    """The attributions as drawn (the first input's, channels summed for images), LIME's
    segments, and the rest as JSON fields."""
    explanation = logformat.read_explanation(blobs)
    maps = np.asarray(_first(explanation["attributions"]), np.float32)
    arrays = {"attributions": _wire(maps.sum(axis=-1) if maps.ndim == 4 else maps, "float16")}
    extras = {}
    for name, value in explanation["extras"].items():
        if name == "segments" and isinstance(value, np.ndarray) and value.dtype.kind in "iu":
            arrays["segments"] = _wire(value, "labels")
        elif not isinstance(value, np.ndarray) or value.size <= JSON_EXTRA_LIMIT:
            extras[name] = value
    fields = {name: explanation[name] for name in ("seconds", "targets", "predictions")}
    return _Record({**fields, "extras": extras}, arrays)


def _samples_record(blobs: list[bytes]) -> _Record:
    samples = logformat.read_samples(blobs)
    inputs = np.asarray(_first(samples["inputs"]))
    arrays = {"inputs": _wire(inputs, "float32")} if inputs.dtype.kind in "biuf" else {}
    return _Record({name: samples[name] for name in ("kind", "class_names", "feature_names", "tokens", "ids", "labels")}, arrays)


READERS: dict[str, Callable[[list[bytes]], _Record]] = {
    "explanation": _explanation_record,
    "samples": _samples_record,
    "training": lambda blobs: _Record(logformat.read_training(blobs), {}),
}
# what reading a blob by a crafted or stale key raises in TensorBoard's data providers
BAD_BLOB_KEY = (errors.NotFoundError, errors.InvalidArgumentError, ValueError, KeyError, IndexError, TypeError, binascii.Error)


def _text(value: np.ndarray) -> str:
    """The string of a text summary's tensor (its first element), cut to ERROR_LIMIT characters."""
    first = np.asarray(value).reshape(-1)
    text = first[0] if first.size else b""
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return text[:ERROR_LIMIT]


def _references(run: str, datum: provider.BlobSequenceDatum, tag: str, record: _Record) -> dict:
    return {name: wire.reference(array_key(run, datum, tag, name)) for name, wire in record.arrays.items()}


class ExplanationsPlugin(base_plugin.TBPlugin):
    """Serves the toolkit's samples, explanations and training logs to the "Explanations" tab."""

    plugin_name = logformat.PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext):
        self._provider = context.data_provider
        self._cache = _LRU(CACHE_BYTES)
        self._listings: dict[tuple, tuple[float, dict]] = {}  # (experiment, run, tag) -> (when, {step: datum})

    def get_plugin_apps(self) -> dict[str, Callable]:
        return {
            "/index": self._serve_index,
            "/epoch": self._serve_epoch,
            "/array": self._serve_array,
            "/training": self._serve_training,
            "/index.js": self._serve_static,
            "/static/*": self._serve_static,
        }

    def is_active(self) -> bool:
        return False  # TensorBoard's list of plugins with data decides

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Explanations")

    # -- reading ---------------------------------------------------------------------------------
    def _series(self, request: wrappers.Request, runs: list[str] | None = None, tags: list[str] | None = None) -> dict:
        """``{run: {tag: [BlobSequenceDatum]}}`` of the toolkit's summaries, every step."""
        return self._provider.read_blob_sequences(
            plugin_util.context(request.environ),
            experiment_id=plugin_util.experiment_id(request.environ),
            plugin_name=logformat.PLUGIN_NAME,
            downsample=ALL_STEPS,
            run_tag_filter=provider.RunTagFilter(runs=runs, tags=tags),
        )

    def _decoded(self, request: wrappers.Request, datum: provider.BlobSequenceDatum, reader: str) -> _Record:
        """The record ``datum`` decoded by ``READERS[reader]``, cached by its blob keys and
        wall time (a record that replaces another at the same step has a later one)."""
        ctx = plugin_util.context(request.environ)
        blob_keys = self._keys(datum)

        def read() -> Any:
            try:
                blobs = [self._provider.read_blob(ctx, blob_key=key) for key in blob_keys]
            except BAD_BLOB_KEY:
                raise errors.NotFoundError("no data for this key: it is unknown or no longer stored.") from None
            try:
                return READERS[reader](blobs)
            except (ValueError, TypeError) as error:  # logformat.FormatError, or a crafted array
                raise errors.NotFoundError(f"the logged data cannot be read ({error})") from None

        return self._cache.get((blob_keys, datum.wall_time, reader), read)

    @staticmethod
    def _keys(datum: provider.BlobSequenceDatum) -> tuple[str, str]:
        if len(datum.values) != 2:
            raise errors.NotFoundError(f"step {datum.step}: expected a blob sequence of [header, arrays], got {len(datum.values)} blobs.")
        return datum.values[0].blob_key, datum.values[1].blob_key

    def _remember(self, request: wrappers.Request, run: str, series: dict[str, list]) -> None:
        """Keep the listing of every tag of toolkit run ``run`` (see :meth:`_listing`)."""
        experiment, now = plugin_util.experiment_id(request.environ), time.monotonic()
        for tag, data in series.items():
            self._listings[(experiment, run, tag)] = (now, _newest(data))

    def _listing(self, request: wrappers.Request, run: str, tag: str, fresh: bool = False) -> dict[int, provider.BlobSequenceDatum]:
        """``{step: newest datum}`` of ``tag`` in toolkit run ``run`` (404 for a run without
        toolkit data), listed at most ``LISTING_SECONDS`` ago unless ``fresh``."""
        key = (plugin_util.experiment_id(request.environ), run, tag)
        known = self._listings.get(key)
        if known is not None and not fresh and time.monotonic() - known[0] < LISTING_SECONDS:
            return known[1]
        series = self._series(request, [run], [logformat.SAMPLES_TAG, tag]).get(run, {})
        if logformat.SAMPLES_TAG not in series:
            raise errors.NotFoundError(f"unknown run {run!r}: it has no tf-explain-kit data.")
        self._remember(request, run, {tag: series.get(tag, [])})
        return self._listings[key][1]

    def _datum(self, request: wrappers.Request, run: str, tag: str, step: int, wall_time: float | None = None) -> provider.BlobSequenceDatum:
        """The newest record of ``tag`` at ``step`` in ``run`` (with ``wall_time``, that
        record only), listed anew unless a recent listing has it."""
        data = self._listing(request, run, tag)
        if step not in data or (wall_time is not None and data[step].wall_time != wall_time):
            data = self._listing(request, run, tag, fresh=True)
        if not data:
            raise errors.NotFoundError(f"run {run!r} has no data under {tag!r}.")
        if step not in data:
            raise errors.NotFoundError(f"run {run!r}, {tag!r}: nothing at step {step}; steps: {list(data)[:50]}.")
        if wall_time is not None and data[step].wall_time != wall_time:
            raise errors.NotFoundError(f"run {run!r}, {tag!r} at step {step} was logged again since this key was made; ask the index and epoch routes for new keys.")
        return data[step]

    # -- routes ----------------------------------------------------------------------------------
    def _failures(self, request: wrappers.Request) -> dict[str, dict[str, list]]:
        """``{run: {method: [(step, wall_time, text)]}}`` of the errors the callback logged as
        ``<method>/error`` text summaries."""
        ctx, experiment = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
        listing = self._provider.list_tensors(ctx, experiment_id=experiment, plugin_name=TEXT_PLUGIN)
        wanted = {(run, tag) for run, tags in listing.items() for tag in tags if tag.endswith(ERROR_SUFFIX)}
        if not wanted:
            return {}
        data = self._provider.read_tensors(
            ctx, experiment_id=experiment, plugin_name=TEXT_PLUGIN, downsample=ALL_STEPS,
            run_tag_filter=provider.RunTagFilter(runs=sorted({r for r, _ in wanted}), tags=sorted({t for _, t in wanted})),
        )
        failures: dict[str, dict[str, list]] = collections.defaultdict(dict)
        for run, tags in data.items():
            for tag, datums in tags.items():
                if (run, tag) in wanted:
                    failures[run][tag[: -len(ERROR_SUFFIX)]] = [(d.step, d.wall_time, _text(d.numpy)) for d in datums]
        return failures

    @_route
    def _serve_index(self, request: wrappers.Request) -> wrappers.Response:
        runs, problems = {}, []
        failures = self._failures(request)
        for run, series in sorted(self._series(request).items()):
            if logformat.SAMPLES_TAG not in series:
                continue
            self._remember(request, run, series)
            try:
                runs[run] = self._run_index(request, run, series, failures.get(run, {}))
            except errors.NotFoundError as error:
                problems.append({"run": run, "message": str(error)})
        return _json(request, {"runs": runs, "errors": problems})

    def _run_index(self, request: wrappers.Request, run: str, series: dict[str, list], failures: dict[str, list]) -> dict:
        first = next(iter(_newest(series[logformat.SAMPLES_TAG]).values()))
        samples = self._decoded(request, first, "samples")
        first_written, methods = {}, {}
        for tag, data in series.items():
            method = logformat.method_of(tag)
            if method is not None and data:
                methods[method] = list(_newest(data))
                first_written[method] = min((datum.step, datum.wall_time) for datum in data)
        for method, logged in failures.items():
            first_written[method] = min([first_written.get(method, (ALL_STEPS, 0.0))] + [(step, time) for step, time, _ in logged])
        order = sorted(first_written, key=first_written.get)  # the callback's order: first written first
        return {
            **samples.fields,
            "inputs": _references(run, first, logformat.SAMPLES_TAG, samples).get("inputs"),
            "methods": {method: methods.get(method, []) for method in order},
            "failures": {method: {str(step): text for step, _, text in failures[method]} for method in order if method in failures},
            "training_epochs": list(_newest(series.get(logformat.TRAINING_TAG, []))),
        }

    @_route
    def _serve_epoch(self, request: wrappers.Request) -> wrappers.Response:
        run, method, epoch = _arg(request, "run"), _arg(request, "method"), _int_arg(request, "epoch")
        tag = logformat.explanation_tag(method)
        datum = self._datum(request, run, tag, epoch)
        record = self._decoded(request, datum, "explanation")
        return _json(request, {"run": run, "method": method, "epoch": epoch, **record.fields, "arrays": _references(run, datum, tag, record)})

    @_route
    def _serve_array(self, request: wrappers.Request) -> wrappers.Response:
        run, tag, step, wall_time, name = _parse_key(_arg(request, "key"))
        reader = _reader_of(tag)
        wire = self._decoded(request, self._datum(request, run, tag, step, wall_time), reader).arrays.get(name)
        if wire is None:
            raise errors.NotFoundError(f"no numeric array {name!r} in this {reader} record.")
        return http_util.Respond(request, wire.data, "application/octet-stream")

    @_route
    def _serve_training(self, request: wrappers.Request) -> wrappers.Response:
        run = _arg(request, "run")
        epochs, logs = [], collections.defaultdict(dict)
        for datum in self._listing(request, run, logformat.TRAINING_TAG).values():
            try:
                values = self._decoded(request, datum, "training").fields
            except errors.NotFoundError:
                continue  # one unreadable epoch leaves a gap in the curves
            epochs.append(datum.step)
            for name, value in values.items():
                logs[name][datum.step] = value
        curves = {name: [by_epoch.get(epoch) for epoch in epochs] for name, by_epoch in sorted(logs.items())}
        return _json(request, {"run": run, "epochs": epochs, "logs": _jsonable(curves, _spelled)})

    @_route
    def _serve_static(self, request: wrappers.Request) -> wrappers.Response:
        prefix = f"/data/plugin/{self.plugin_name}/"
        path = request.path.split(prefix, 1)[-1]
        if path.startswith("static/"):
            path = path[len("static/") :]
        parts = path.split("/")
        extension = os.path.splitext(path)[1]
        if not path or any(part in ("", ".", "..") or "\\" in part or "\x00" in part for part in parts) or extension not in STATIC_TYPES:
            raise errors.NotFoundError(f"no static file {path!r}.")
        full = os.path.realpath(os.path.join(STATIC_DIR, *parts))
        if os.path.commonpath([full, STATIC_DIR]) != STATIC_DIR or not os.path.isfile(full):
            raise errors.NotFoundError(f"no static file {path!r}.")
        with open(full, "rb") as handle:
            return http_util.Respond(request, handle.read(), STATIC_TYPES[extension])


class ExplanationsLoader(base_plugin.TBLoader):
    """Loads the plugin and keeps every step of its data (unless the user chose otherwise)."""

    def fix_flags(self, flags: Any) -> None:
        hints = getattr(flags, "samples_per_plugin", None)
        if isinstance(hints, dict):
            hints.setdefault(logformat.PLUGIN_NAME, 0)  # 0: keep all (both loaders)

    def load(self, context: base_plugin.TBContext) -> ExplanationsPlugin:
        return ExplanationsPlugin(context)

