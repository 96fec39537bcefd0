"""Pictures of explanations: numpy in, RGB arrays and PNG bytes out (no pyplot figures).

Conventions shared by the callback, the notebooks and the plugin: signed attributions use
a diverging colour map centred on zero (red positive, blue negative); magnitudes use a
sequential map. One scale is shared by every sample of a method at an epoch, so colours
compare across samples. The original image stays visible underneath, in grey.
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Any

import numpy as np
from matplotlib import colormaps

from .tasks import CLASSES, Task

DIVERGING = "RdBu_r"
SEQUENTIAL = "inferno"
OPACITY = 0.75
MIN_SIDE = 112  # figures enlarge small images (nearest neighbour) to at least this many pixels
PICTURE_SIDE = 128  # logged pictures of larger images are averaged down to at most this side
DEFLATE_PIXELS = 64 * 64  # pictures with fewer pixels are stored: deflating them costs more than it saves
NOT_FINITE = (0.0, 1.0, 0.0)  # full-strength green marks NaN/inf attributions (no colour map uses it)


def attribution_maps(attributions: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` maps: channels summed for pixel-level ``(N, H, W, C)`` attributions."""
    a = np.asarray(attributions, np.float32)
    return a.sum(axis=-1) if a.ndim == 4 else a


def is_signed(maps: np.ndarray) -> bool:
    return bool((maps < 0).any())


def shared_scale(maps: np.ndarray, percentile: float = 99.5) -> float:
    """One colour-scale limit for all ``maps``: a high percentile of |value| (outliers clip)."""
    finite = np.abs(maps[np.isfinite(maps)])
    scale = float(np.percentile(finite, percentile)) if finite.size else 0.0
    return scale if scale > 0 else 1.0


@functools.cache
def _table(name: str) -> np.ndarray:
    """A colour map sampled at 256 levels, ``(256, 3)`` float32 RGB."""
    return colormaps[name](np.linspace(0, 1, 256))[:, :3].astype(np.float32)


def colorize(maps: np.ndarray, scale: float, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(N, H, W, 3)`` float32 RGB in [0, 1] and ``(N, H, W)`` strength in [0, 1].

    Non-finite values (a diverged model) are drawn at full strength in ``NOT_FINITE`` green.
    """
    maps = np.asarray(maps, np.float32)
    bad = ~np.isfinite(maps)
    any_bad = bool(bad.any())
    unit = np.clip((np.where(bad, 0.0, maps) if any_bad else maps) / scale, -1 if signed else 0, 1)
    if signed:  # np.take: a third of the time of fancy indexing
        colours, strength = np.take(_table(DIVERGING), np.rint((unit + 1) * 127.5).astype(np.intp), axis=0), np.abs(unit)
    else:
        colours, strength = np.take(_table(SEQUENTIAL), np.rint(unit * 255).astype(np.intp), axis=0), unit
    if any_bad:
        colours[bad], strength = NOT_FINITE, np.where(bad, 1.0, strength).astype(np.float32)
    return colours, strength


def grey(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3)`` float32 greyscale copies of images (any value range) in [0, 1]."""
    x = np.asarray(images, np.float32)
    x = x.mean(axis=-1) if x.ndim == 4 else x
    low = x.reshape(len(x), -1).min(1).reshape(-1, 1, 1)
    high = x.reshape(len(x), -1).max(1).reshape(-1, 1, 1)
    x = (x - low) / np.where(high > low, high - low, 1)
    return np.repeat(x[..., None], 3, axis=-1)


def overlay(images: np.ndarray, attributions: np.ndarray, scale: float | None = None, opacity: float = OPACITY, outlines: np.ndarray | None = None, signed: bool | None = None) -> np.ndarray:
    """Heatmaps over greyed images: ``(N, H, W, 3)`` uint8 at the images' size.

    Each pixel blends towards the colour map by ``opacity × strength``, so weak
    attributions leave the image readable. ``outlines`` (``(N, H, W)`` bool) are drawn in
    yellow, for example LIME's top superpixels. ``scale`` and ``signed`` default to the maps' own.
    """
    maps = attribution_maps(attributions)
    signed = is_signed(maps) if signed is None else signed
    colours, strength = colorize(maps, scale if scale is not None else shared_scale(maps), signed)
    alpha = (opacity * strength)[..., None]
    background = grey(images)
    rgb = background + alpha * (colours - background)
    if outlines is not None:
        rgb[outlines] = (1.0, 0.85, 0.0)
    return (rgb * 255).round().astype(np.uint8)


def enlarge(rgb: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """``(N, H, W, 3)`` pictures enlarged (nearest neighbour) to at least ``min_side`` pixels."""
    factor = int(np.ceil(min_side / min(rgb.shape[1:3])))
    return rgb.repeat(factor, axis=1).repeat(factor, axis=2) if factor > 1 else rgb


def shrink(arrays: np.ndarray, max_side: int | None = PICTURE_SIDE) -> np.ndarray:
    """``(N, H, W, ...)`` arrays averaged over ``f × f`` blocks (float32; edges repeated to
    fill the last blocks), ``f`` the smallest integer that brings both sides to at most
    ``max_side``; unchanged when they already are (or ``max_side`` is None)."""
    factor = 1 if max_side is None else -(-max(arrays.shape[1:3]) // max_side)
    if factor <= 1:
        return arrays
    height, width = arrays.shape[1:3]
    padding = ((0, 0), (0, -height % factor), (0, -width % factor)) + ((0, 0),) * (arrays.ndim - 3)
    padded = np.pad(arrays, padding, mode="edge").astype(np.float32, copy=False)
    total = sum(padded[:, i::factor, j::factor] for i in range(factor) for j in range(factor))
    return total / np.float32(factor * factor)


def pngs(rgb: np.ndarray) -> list[bytes]:
    """PNG bytes of each ``(N, H, W, 3)`` uint8 picture.

    Pictures of ``DEFLATE_PIXELS`` or more are deflated at zlib level 1 after PNG's "up"
    filter (each byte minus the one above): at 224×224, heatmaps over photos shrink from
    147 KB to 75–113 KB in 7–13 ms; levels 6 and 9 save 2–4 % more at 2–3× the time, and
    the other filters gain nothing over "up". Smaller pictures are stored: a 28×28 digit
    shrinks by 2 % for 45 µs, while storing 16 of them takes 0.05 ms — on a small model,
    encoding was the largest part of the callback's logging.
    """
    n, height, width = rgb.shape[:3]
    rows = np.ascontiguousarray(rgb).reshape(n, height, -1)
    lines = np.zeros((n, height, 1 + rows.shape[2]), np.uint8)  # each scanline: its filter type, then the bytes
    deflate = height * width >= DEFLATE_PIXELS
    if deflate:
        lines[:, :, 0] = 2  # "up"; the row above the first is zeros
        lines[:, 0, 1:] = rows[:, 0]
        np.subtract(rows[:, 1:], rows[:, :-1], out=lines[:, 1:, 1:])  # uint8 wraps modulo 256, as PNG's filters do
    else:
        lines[:, :, 1:] = rows
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return [_SIGNATURE + header + _chunk(b"IDAT", zlib.compress(picture.tobytes(), 1 if deflate else 0)) + _END for picture in lines]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_SIGNATURE, _END = b"\x89PNG\r\n\x1a\n", _chunk(b"IEND", b"")


def grid(rows: list[list[np.ndarray]], gap: int = 4) -> np.ndarray:
    """Tile equally sized ``(H, W, 3)`` uint8 images into one picture with white gaps."""
    height, width = rows[0][0].shape[:2]
    columns = max(len(r) for r in rows)
    canvas = np.full((len(rows) * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            canvas[i * (height + gap) : i * (height + gap) + height, j * (width + gap) : j * (width + gap) + width] = tile
    return canvas


# -- what the callback logs per method and epoch ----------------------------------------------
def lime_outlines(segments: np.ndarray, attributions: np.ndarray, top: int = 3) -> np.ndarray:
    """``(N, H, W)`` boundaries of each sample's ``top`` superpixels by positive weight."""
    from skimage.segmentation import find_boundaries

    outlines = np.zeros(segments.shape, bool)
    for i, (seg, attr) in enumerate(zip(segments, attributions)):  # a few samples per epoch
        labels = np.unique(seg)
        weights = np.array([attr[seg == label].mean() for label in labels])
        order = np.argsort(weights)[::-1][:top]
        best = labels[order][weights[order] > 0]
        outlines[i] = find_boundaries(seg, mode="inner") & np.isin(seg, best)
    return outlines


def image_pngs(images: np.ndarray, explanation: Any, opacity: float = OPACITY, max_side: int | None = PICTURE_SIDE) -> list[bytes]:
    """One PNG per sample: the heatmap over the image, one colour scale for all samples.

    Pictures are drawn at most ``max_side`` pixels a side: image, map and outlines are
    averaged over blocks first (:func:`shrink`), the colour scale and signedness taken from
    the full-resolution maps, as the plugin's.
    """
    maps = attribution_maps(explanation.attributions)
    outlines = None
    if "segments" in explanation.extras:
        outlines = shrink(lime_outlines(np.asarray(explanation.extras["segments"]), maps), max_side) > 0
    picture = overlay(shrink(images, max_side), shrink(maps, max_side), shared_scale(maps), opacity, outlines, is_signed(maps))
    return pngs(picture)


def sequence_pngs(series: np.ndarray, explanation: Any, band: int = 8, opacity: float = OPACITY) -> list[bytes]:
    """One PNG per sample of an ``(N, T, F)`` series: a heat strip over time per feature.

    Row band ``f`` (``band`` pixels high) shows feature ``f`` over the ``T`` steps, its
    values as grey levels (each feature scaled to its own range) under the attribution
    colours; ``(N, T)`` maps (Grad-CAM, Occlusion over whole steps) colour every band of a
    step alike. Narrow series are widened (nearest neighbour) to ``MIN_SIDE`` pixels.
    """
    x = np.asarray(series, np.float32)
    maps = np.asarray(explanation.attributions, np.float32)
    maps = np.broadcast_to(maps[..., None], x.shape) if maps.ndim == 2 else maps
    low, high = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    levels = (x - low) / np.where(high > low, high - low, 1)
    picture = overlay(np.swapaxes(levels, 1, 2), np.swapaxes(maps, 1, 2), shared_scale(maps), opacity, None, is_signed(maps))
    widen = max(1, -(-MIN_SIDE // x.shape[1]))
    return pngs(picture.repeat(band, axis=1).repeat(widen, axis=2))


# characters that start markdown (links, images, emphasis, code), HTML or a new table cell
# inside a cell, written as numeric character references; control characters become spaces
_MARKUP = str.maketrans({c: f"&#{ord(c)};" for c in "\\`*_[]<>|&"} | {chr(c): " " for c in range(32)})


def escape(text: Any) -> str:
    """A user string shown as plain text in a markdown table cell of the Text dashboard:
    no markdown (links, images, emphasis, code), HTML or cell break survives."""
    return str(text).translate(_MARKUP)


def _label(value: Any, class_names: list[str] | None) -> str:
    if value is None:
        return "–"
    value = int(value)
    return escape(class_names[value]) if class_names and 0 <= value < len(class_names) else str(value)


def top_features(weights: np.ndarray, names: list[str], k: int = 5) -> str:
    order = np.argsort(-np.abs(weights))[:k]
    return ", ".join(f"{escape(names[j])} ({weights[j]:+.3g})" for j in order)


def highlighted_tokens(tokens: list[str], weights: np.ndarray) -> str:
    """Tokens in markdown: strongest positive in **bold**, strongest negative in _italics_,
    each followed by its weight as a superscript-like bracket."""
    limit = np.abs(weights).max() if len(weights) else 0
    parts = []
    for token, weight in zip(tokens, weights):
        text = escape(token)
        if limit and abs(weight) >= 0.5 * limit:
            text = f"**{text}**" if weight > 0 else f"_{text}_"
        parts.append(f"{text}<sub>{weight:+.2f}</sub>" if limit and abs(weight) >= 0.2 * limit else text)
    return " ".join(parts)


def markdown_table(
    explanation: Any,
    ids: np.ndarray,
    labels: np.ndarray | None,
    class_names: list[str] | None,
    kind: str,
    feature_names: list[str] | None = None,
    tokens: list[list[str]] | None = None,
    task: Task = CLASSES,
) -> str:
    """The per-epoch text summary of one method: a row per sample. ``labels`` are class
    indices, or for a regression ``task`` the true values."""
    n = len(explanation.targets)
    per_sample = {k: v for k, v in explanation.extras.items() if isinstance(v, np.ndarray) and v.shape == (n,) and v.dtype.kind in "fiu"}
    maps = attribution_maps(explanation.attributions) if kind == "image" else np.asarray(explanation.attributions).reshape(n, -1)
    regression = task.name == "regression"
    header = ["sample", "true", "predicted" if regression else "predicted (p)", "explained"] + ["peak (row, col)" if kind == "image" else "top attributions"] + list(per_sample)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    p = explanation.predictions
    predicted, confidence = task.predicted(p), p.max(axis=1)
    if kind == "image":
        peaks = np.stack(np.unravel_index(np.abs(maps).reshape(n, -1).argmax(axis=1), maps.shape[1:3]), axis=1).tolist()
    finite = np.isfinite(maps.reshape(n, -1)).all(axis=1)
    for i in range(n):
        if not finite[i]:
            top = "not finite"
        elif kind == "image":
            top = f"({peaks[i][0]}, {peaks[i][1]})"
        elif kind == "text" and tokens is not None:
            top = highlighted_tokens(tokens[i], maps[i][: len(tokens[i])])
        else:
            names = feature_names or [f"x{j}" for j in range(maps.shape[1])]
            top = top_features(maps[i], names)
        if regression:
            true = f"{float(labels[i]):.4g}" if labels is not None else "–"
            cells = [str(int(ids[i])), true, f"{float(predicted[i]):.4g}", "value", top]
        else:
            true = _label(labels[i], class_names) if labels is not None else "–"
            cells = [str(int(ids[i])), true, f"{_label(int(predicted[i]), class_names)} ({float(confidence[i]):.2f})", _label(explanation.targets[i], class_names), top]
        cells += [f"{float(per_sample[k][i]):.3g}" for k in per_sample]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
