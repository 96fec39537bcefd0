"""The log format: what the callback writes and what the plugin and ``load_run`` read.

This module is the single definition of the format. It imports no TensorFlow (only
numpy and TensorBoard's protobufs), so the TensorBoard process can use it.

Layout: the callback writes into ``<log_dir>/explanations`` (its own TensorBoard run, next
to Keras' ``train`` and ``validation`` runs). Step = epoch index, as Keras uses.

Dataset explanations (``tek.explain_dataset``, ``tf-explain-kit explain``) use the same run
and tags with step = global batch index: every step has its own samples summary (that
batch; ``ids`` = sample indices in the dataset; header ``unit="batch"``), and each
explanation carries the same ids in ``extras["sample_ids"]``. No training summaries.

- ``tf_explain_kit/samples`` (step 0, once): the explained samples, their labels, class
  names, ids in the validation data and the data kind.
- ``tf_explain_kit/training`` (each epoch): the epoch's Keras logs (loss, accuracy, ...),
  kept here so the plugin shows them without duplicating Keras' scalar curves.
- ``tf_explain_kit/explanation/<method>`` (each epoch the method runs): attributions,
  targets, predictions and extras.

Each of these is a blob sequence (rank-1 string tensor) of two blobs: a JSON header and an
``.npz`` of arrays, with plugin name ``tf_explain_kit`` and ``data_class=BLOB_SEQUENCE``
(so both of TensorBoard's loaders serve it). Members of 64 KB and more are deflated
(zlib level 1); smaller ones are stored, as deflating them costs more than it saves.
Images, markdown tables and health scalars go to TensorBoard's own plugins under
``<method>/...`` and ``health/<method>/...`` tags.

Attributions are stored in the smallest form that gives them back (``layouts`` in the
header says how each array is rebuilt):

- maps upsampled from a layer (Grad-CAM, Grad-CAM++: ``extras["resolution"]``) at that
  layer's size, upsampled on reading with the explainer's own interpolation;
- maps constant on LIME's superpixels (``extras["segments"]``) as one value per segment;
- ``channels="sum"`` (the callback's default): image attributions ``(N, H, W, C)`` as
  their channel sum ``(N, H, W, 1)``, the map that pictures, tables and the plugin show;
  ``channels="all"`` keeps every channel.

Storage precision: predictions, targets and extras are stored exactly. Attributions are
stored, by default, as float16 after dividing each sample by its largest absolute value
(kept in float32), its two bytes in separate planes so that deflate finds the repeated
high bytes: every value comes back within 2**-11 (≈ 4.9e-4) of that sample's largest
absolute attribution (for upsampled maps, of the upsampled map's). ``precision="float32"``
stores them exactly (maps rebuilt by upsampling: within 1e-5 of the largest value).
"""

from __future__ import annotations

import functools
import io
import json
import math
import zipfile
from typing import Any, Callable

import numpy as np
from tensorboard.compat.proto import summary_pb2

VERSION = 2  # 2: attribution layouts, byte planes, deflated members
PLUGIN_NAME = "tf_explain_kit"
RUN = "explanations"
SAMPLES_TAG = "tf_explain_kit/samples"
TRAINING_TAG = "tf_explain_kit/training"
EXPLANATION_PREFIX = "tf_explain_kit/explanation/"
PRECISIONS = ("float16", "float32")
CHANNELS = ("sum", "all")
DEFLATE_FROM = 1 << 16  # bytes: larger npz members are deflated
REBUILD_TOLERANCE = 1e-5  # a reduced form is kept only if it rebuilds the map this closely (relative)
KINDS = ("image", "sequence", "tabular", "text")


class FormatError(ValueError):
    """Logs that this version of tf-explain-kit cannot read."""


class NewerFormatError(FormatError):
    """Logs written by a newer version of the log format."""


def explanation_tag(method: str) -> str:
    return EXPLANATION_PREFIX + method


def method_of(tag: str) -> str | None:
    return tag[len(EXPLANATION_PREFIX) :] if tag.startswith(EXPLANATION_PREFIX) else None


def image_tag(method: str, sample_id: int) -> str:
    return f"{method}/sample_{sample_id:05d}"


def table_tag(method: str) -> str:
    return f"{method}/table"


def error_tag(method: str) -> str:
    """Text summary of a method's failure at an epoch, or its refusal (epoch 0) when it
    does not apply to the model."""
    return f"{method}/error"


def error_method(tag: str) -> str | None:
    return tag[: -len("/error")] if tag.endswith("/error") and not tag.startswith("health/") else None


def health_tag(method: str, metric: str) -> str:
    return f"health/{method}/{metric}"


# -- metadata ----------------------------------------------------------------------------------
def metadata(kind: str, description: str = "") -> summary_pb2.SummaryMetadata:
    """Metadata of the toolkit's own summaries (``kind``: samples, training, explanation)."""
    content = json.dumps({"version": VERSION, "kind": kind}).encode()
    return summary_pb2.SummaryMetadata(
        summary_description=description,
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=PLUGIN_NAME, content=content),
        data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE,
    )


def parse_metadata(content: bytes) -> dict:
    """The plugin content of a summary; FormatError for a newer or unknown format."""
    try:
        parsed = json.loads(content.decode() if isinstance(content, bytes) else content)
        version = int(parsed["version"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise FormatError(f"not tf-explain-kit plugin metadata: {content[:80]!r}") from error
    if version > VERSION:
        raise NewerFormatError(f"these logs use tf-explain-kit log format {version}; this version reads up to {VERSION}. Upgrade tf-explain-kit.")
    return parsed


# -- payloads: [JSON header, npz arrays] --------------------------------------------------------
def encode(header: dict, arrays: dict[str, np.ndarray]) -> list[bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
            deflate = member.tell() >= DEFLATE_FROM
            archive.writestr(f"{name}.npy", member.getbuffer(), zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED, 1)
    return [json.dumps({"version": VERSION, **header}, default=_json_default).encode(), buffer.getvalue()]


def decode(blobs: list[bytes]) -> tuple[dict, dict[str, np.ndarray]]:
    """Header and arrays of a payload; FormatError for anything else (crafted or damaged
    logs: malformed or deeply nested JSON, arrays declaring more data than they hold)."""
    if len(blobs) != 2:
        raise FormatError(f"expected a blob sequence of [header, arrays], got {len(blobs)} blobs.")
    try:
        header = json.loads(blobs[0])
    except (ValueError, TypeError, RecursionError) as error:
        raise FormatError(f"the header is not JSON ({type(error).__name__}).") from None
    if not isinstance(header, dict) or _depth(header) > MAX_HEADER_DEPTH:
        raise FormatError(f"the header is not a JSON object nested at most {MAX_HEADER_DEPTH} deep.")
    version = header.get("version", 0)
    if not isinstance(version, int):
        raise FormatError(f"version: expected an integer, got {version!r:.40}.")
    if version > VERSION:
        raise NewerFormatError(f"these logs use tf-explain-kit log format {version}; this version reads up to {VERSION}. Upgrade tf-explain-kit.")
    try:
        return header, _arrays(blobs[1])
    except (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as error:
        raise FormatError(f"the arrays cannot be read ({type(error).__name__}: {error}).") from None


MAX_HEADER_DEPTH = 16


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in a parsed JSON value (without recursion)."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [item for container in level if isinstance(container, (dict, list)) for item in (container.values() if isinstance(container, dict) else container)]
    return depth - 1


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz``, each checked to hold the data its header declares before
    it is read (a crafted shape must not allocate terabytes)."""
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                shape, _, dtype = (np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0)(member)
                declared = math.prod(shape) * dtype.itemsize
                if dtype.hasobject or declared > info.file_size - member.tell():
                    raise ValueError(f"{info.filename} declares {shape} {dtype}, more than its {info.file_size} bytes hold")
            with archive.open(info) as member:
                arrays[info.filename.removesuffix(".npy")] = np.lib.format.read_array(member, allow_pickle=False)
    return arrays


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# -- structures (multi-input models): flattened to named arrays and back -------------------------
def _flatten(value: Any, prefix: str) -> tuple[dict[str, np.ndarray], Any]:
    """Arrays named ``prefix``, ``prefix.0``... and the structure to rebuild them."""
    if isinstance(value, dict):
        return {f"{prefix}.{k}": np.asarray(v) for k, v in value.items()}, {"dict": list(value)}
    if isinstance(value, (list, tuple)):
        return {f"{prefix}.{i}": np.asarray(v) for i, v in enumerate(value)}, {"list": len(value)}
    return {prefix: np.asarray(value)}, None


def _unflatten(arrays: dict[str, np.ndarray], prefix: str, structure: Any) -> Any:
    if structure is None:
        return arrays[prefix]
    if "dict" in structure:
        value = {k: arrays[f"{prefix}.{k}"] for k in structure["dict"]}
    else:
        value = [arrays[f"{prefix}.{i}"] for i in range(structure["list"])]
    if not value:
        raise FormatError(f"{prefix}: the structure {structure!r} holds no arrays.")
    return value


def _numeric(array: np.ndarray, name: str, ndim: int | None = None) -> np.ndarray:
    if array.dtype.kind not in "biuf" or (ndim is not None and array.ndim != ndim):
        raise FormatError(f"{name}: expected a numeric array{f' of rank {ndim}' if ndim else ''}, got {array.dtype} of shape {array.shape}.")
    return array


def _reader(read: Callable[[list[bytes]], Any]) -> Callable[[list[bytes]], Any]:
    """``read`` raising FormatError, naming what it read, for missing or mistyped fields."""

    @functools.wraps(read)
    def checked(blobs: list[bytes]) -> Any:
        try:
            return read(blobs)
        except FormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise FormatError(f"{read.__name__}: a field is missing or mistyped ({type(error).__name__}: {error}).") from None

    return checked


def _pack(values: np.ndarray, precision: str) -> dict[str, np.ndarray]:
    if precision == "float32":
        return {"values": values.astype(np.float32)}
    flat = values.reshape(len(values), -1).astype(np.float32)
    scale = np.abs(flat).max(axis=1) if flat.size else np.zeros(len(values), np.float32)
    safe = np.where(scale > 0, scale, 1)
    half = np.ascontiguousarray((flat / safe[:, None]).astype("<f2")).reshape(values.shape)  # astype keeps a transposed layout (einsum results)
    planes = np.moveaxis(half.view(np.uint8).reshape(values.shape + (2,)), -1, 0)  # (2, ...): low bytes, high bytes
    return {"planes": np.ascontiguousarray(planes), "scale": scale.astype(np.float32)}


def _unpack(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    if f"{name}:values" in arrays:
        return _numeric(arrays[f"{name}:values"], name)
    if f"{name}:planes" in arrays:
        scaled = np.ascontiguousarray(np.moveaxis(_numeric(arrays[f"{name}:planes"], name), 0, -1)).view("<f2")[..., 0].astype(np.float32)
    else:  # format 1
        scaled = _numeric(arrays[f"{name}:scaled"], name).astype(np.float32)
    return scaled * _numeric(arrays[f"{name}:scale"], name).reshape((-1,) + (1,) * (scaled.ndim - 1))


# -- attribution layouts: the smallest exact form of an array, and how to rebuild it -------------
def _reduced(values: np.ndarray, extras: dict, channels: str) -> tuple[np.ndarray, dict | None]:
    """``values`` in the form to store, and its layout (None: stored as it is)."""
    resolution = extras.get("resolution")
    if resolution is not None and values.ndim == len(resolution) + 1 and values.dtype.kind == "f":
        native = _downsampled(values, [int(r) for r in resolution])
        if native is not None:
            return native, {"upsample": list(values.shape[1:])}
    segments = extras.get("segments")
    if isinstance(segments, np.ndarray) and segments.shape == values.shape and segments.dtype.kind in "iu":
        per_segment = _per_segment(values, segments)
        if per_segment is not None:
            return per_segment, {"segments": True}
    if channels == "sum" and values.ndim == 4 and values.shape[-1] > 1:
        return values.sum(axis=-1, keepdims=True, dtype=np.float32), {"channels": "sum"}
    return values, None


def _upsampled(native: np.ndarray, shape: list[int]) -> np.ndarray:
    from .imaging import resize_bilinear, resize_linear  # the explainers' own interpolation

    return resize_linear(native, shape[0]) if len(shape) == 1 else resize_bilinear(native, *shape)


def _downsampled(values: np.ndarray, resolution: list[int]) -> np.ndarray | None:
    """The map at ``resolution`` whose upsampling is ``values``, if there is one."""
    from .imaging import interpolation_matrix

    if len(resolution) not in (1, 2) or any(r > s for r, s in zip(resolution, values.shape[1:])):
        return None
    inverses = [np.linalg.pinv(interpolation_matrix(s, r)) for s, r in zip(values.shape[1:], resolution)]
    native = (values @ inverses[0].T if len(resolution) == 1 else inverses[0] @ values @ inverses[1].T).astype(np.float32)
    largest = np.abs(values.reshape(len(values), -1)).max(axis=1) if values.size else np.zeros(0)
    error = np.abs(_upsampled(native, list(values.shape[1:])) - values).reshape(len(values), -1).max(axis=1, initial=0)
    native_largest = np.abs(native.reshape(len(native), -1)).max(axis=1, initial=0)
    exact = (error <= REBUILD_TOLERANCE * largest) & (native_largest <= 2 * largest)  # the float16 bound holds
    return native if bool(exact.all()) else None


def _per_segment(values: np.ndarray, segments: np.ndarray) -> np.ndarray | None:
    """``(N, S)`` values per segment if ``values`` is constant on each of ``segments``."""
    if segments.size == 0 or segments.min() < 0:
        return None
    n, count = len(values), int(segments.max()) + 1
    index = (segments.reshape(n, -1) + (np.arange(n) * count)[:, None]).ravel()
    per_segment = np.zeros(n * count, values.dtype)
    per_segment[index] = values.ravel()
    return per_segment.reshape(n, count) if np.array_equal(per_segment[index], values.ravel()) else None


MAX_REBUILT = 1 << 28  # values a rebuilt attribution array may have (a crafted layout must not allocate terabytes)


def _rebuilt(stored: np.ndarray, layout: Any, extras: dict) -> np.ndarray:
    if layout is None or (isinstance(layout, dict) and "channels" in layout):
        return stored
    if isinstance(layout, dict) and "upsample" in layout:
        shape = layout["upsample"]
        if not (isinstance(shape, list) and len(shape) == stored.ndim - 1 and len(shape) in (1, 2) and all(isinstance(s, int) and 0 < s for s in shape) and len(stored) * math.prod(shape) <= MAX_REBUILT):
            raise FormatError(f"layout: cannot upsample {stored.shape} to {shape!r:.40}.")
        return _upsampled(stored, shape)
    segments = np.asarray(extras.get("segments"))
    if not (isinstance(layout, dict) and layout.get("segments") is True and segments.dtype.kind in "iu" and segments.ndim >= 2 and len(segments) == len(stored) and stored.ndim == 2):
        raise FormatError(f"layout: expected upsample, channels or segments with (N, H, W) segments, got {layout!r:.60}.")
    if segments.size and not 0 <= segments.min() <= segments.max() < stored.shape[1]:
        raise FormatError(f"segments: labels outside the {stored.shape[1]} stored values.")
    return np.take_along_axis(stored, segments.reshape(len(segments), -1), axis=1).reshape(segments.shape)


def explanation_payload(explanation: Any, epoch: int, precision: str = "float16", seconds: float | None = None, channels: str = "sum") -> list[bytes]:
    """Blobs for one method at one epoch (``explanation``: a :class:`tf_explain_kit.Explanation`;
    ``channels``: ``"sum"`` or ``"all"``, see the module's notes)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {PRECISIONS}, got {precision!r}.")
    if channels not in CHANNELS:
        raise ValueError(f"channels: expected one of {CHANNELS}, got {channels!r}.")
    named, structure = _flatten(explanation.attributions, "attributions")
    arrays, layouts = {}, {}
    for name, values in named.items():
        stored, layouts[name] = _reduced(values, explanation.extras, channels)
        arrays.update({f"{name}:{part}": value for part, value in _pack(stored, precision).items()})
    arrays["targets"] = np.asarray(explanation.targets, np.int64)
    arrays["predictions"] = np.asarray(explanation.predictions, np.float32)
    extras_json = {}
    for key, value in explanation.extras.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            arrays[f"extra:{key}"] = value
        else:
            extras_json[key] = value
    header = {"method": explanation.method, "epoch": epoch, "precision": precision, "structure": structure, "layouts": layouts, "extras": extras_json, "seconds": seconds}
    return encode(header, arrays)


@_reader
def read_explanation(blobs: list[bytes]) -> dict[str, Any]:
    """The fields of an Explanation (``method, attributions, targets, predictions, extras``)
    plus ``epoch`` and ``seconds``, from :func:`explanation_payload` blobs."""
    header, arrays = decode(blobs)
    names = sorted({key.split(":")[0] for key in arrays if key.startswith("attributions")})
    extras = {key[len("extra:") :]: value for key, value in arrays.items() if key.startswith("extra:")}
    extras.update(header["extras"])
    layouts = header.get("layouts", {})
    unpacked = {name: _rebuilt(_unpack(arrays, name), layouts.get(name), extras) for name in names}
    return {
        "method": header["method"],
        "attributions": _unflatten(unpacked, "attributions", header["structure"]),
        "targets": _numeric(arrays["targets"], "targets", 1),
        "predictions": _numeric(arrays["predictions"], "predictions", 2),
        "extras": extras,
        "epoch": header["epoch"],
        "seconds": header.get("seconds"),
    }


def samples_payload(
    inputs: Any,
    labels: np.ndarray | None,
    ids: np.ndarray,
    kind: str,
    class_names: list[str] | None = None,
    feature_names: list[str] | None = None,
    tokens: list[list[str]] | None = None,
    unit: str = "epoch",
) -> list[bytes]:
    """Blobs describing the explained samples: written once, at step 0, by the callback
    (``unit="epoch"``); at every step, for that batch, by ``explain_dataset`` (``unit="batch"``)."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}.")
    named, structure = _flatten(inputs, "inputs")
    arrays = {name: (a.astype(str) if a.dtype.kind == "O" else a) for name, a in named.items()}
    arrays["ids"] = np.asarray(ids, np.int64)
    if labels is not None:
        arrays["labels"] = np.asarray(labels)
    header = {"kind": kind, "structure": structure, "class_names": class_names, "feature_names": feature_names, "tokens": tokens, "unit": unit}
    return encode(header, arrays)


@_reader
def read_samples(blobs: list[bytes]) -> dict[str, Any]:
    header, arrays = decode(blobs)
    if header["kind"] not in KINDS:
        raise FormatError(f"kind: expected one of {KINDS}, got {header['kind']!r}.")
    names = {key: value for key, value in arrays.items() if key.startswith("inputs")}
    return {
        "inputs": _unflatten(names, "inputs", header["structure"]),
        "labels": arrays.get("labels"),
        "ids": _numeric(arrays["ids"], "ids", 1),
        "kind": header["kind"],
        "class_names": header["class_names"],
        "feature_names": header["feature_names"],
        "tokens": header["tokens"],
        "unit": header.get("unit", "epoch"),
    }


def training_payload(logs: dict[str, float]) -> list[bytes]:
    """Blobs of one epoch's Keras logs (``loss``, ``accuracy``, ``val_loss``, ...)."""
    return encode({"logs": {k: float(v) for k, v in logs.items() if np.isscalar(v) or np.ndim(v) == 0}}, {})


@_reader
def read_training(blobs: list[bytes]) -> dict[str, float]:
    logs = decode(blobs)[0]["logs"]
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in logs.values()):
        raise FormatError(f"training logs: expected a number for each name, got {logs!r:.200}.")
    return {str(name): float(value) for name, value in logs.items()}
