"""Small numpy image operations shared by explainers, renderers and metrics."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def interpolation_matrix(size_out: int, size_in: int) -> np.ndarray:
    """Linear interpolation with half-pixel centres (as tf.image.resize), ``(out, in)``."""
    centres = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    centres = np.clip(centres, 0, size_in - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = centres - low
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.arange(size_out), low), 1 - frac)
    np.add.at(matrix, (np.arange(size_out), high), frac)
    return matrix


def resize_bilinear(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``(N, h, w)`` maps to ``(N, height, width)`` with bilinear interpolation."""
    rows = interpolation_matrix(height, maps.shape[1])
    cols = interpolation_matrix(width, maps.shape[2])
    return (rows @ maps @ cols.T).astype(np.float32)


def resize_linear(maps: np.ndarray, length: int) -> np.ndarray:
    """Resize ``(N, t)`` maps to ``(N, length)`` with linear interpolation (half-step centres)."""
    return np.einsum("Tt,nt->nT", interpolation_matrix(length, maps.shape[1]), maps).astype(np.float32)


def blur(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of ``(N, H, W[, C])`` images over the spatial axes only."""
    sigmas = (0, sigma, sigma) + (0,) * (images.ndim - 3)
    return ndimage.gaussian_filter(images, sigmas, mode="nearest").astype(images.dtype)


def spatial_map(attributions: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` magnitude map: |attributions| summed over channels if there are any."""
    a = np.abs(attributions)
    return a.sum(axis=-1) if a.ndim == 4 else a


def window_sum(maps: np.ndarray, size: int) -> np.ndarray:
    """Sum of each ``size × size`` window of ``(N, H, W)`` maps, centred ("same" size)."""
    return ndimage.uniform_filter(maps.astype(np.float64), size=(1, size, size), mode="constant") * size * size


def peak_location(maps: np.ndarray, window: int) -> np.ndarray:
    """``(N, 2)`` row/column of the strongest ``window × window`` region of each map."""
    smoothed = window_sum(maps, window)
    flat = smoothed.reshape(len(maps), -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, maps.shape[1:]), axis=1)
