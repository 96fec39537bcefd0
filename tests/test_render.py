"""Rendering: PNGs written by the toolkit decode (with Pillow) to exactly the pictures drawn."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tf_explain_kit import render


@pytest.mark.parametrize("shape", [(3, 28, 28), (2, 5, 9), (1, 224, 3)])
def test_pngs_decode_to_the_pictures(shape):
    pictures = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    for picture, data in zip(pictures, render.pngs(pictures)):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), picture)


def test_overlay_blends_the_colour_map_over_grey_by_strength():
    images = np.linspace(0, 1, 2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    attributions = np.zeros((2, 8, 8), np.float32)
    attributions[0, 3, 4] = 1.0  # the positive peak of a signed map: the red end of the diverging map
    attributions[1, 0, 0] = -1.0  # the negative peak: the blue end
    rgb = render.overlay(images, attributions, scale=1.0)
    grey = render.grey(images)
    np.testing.assert_array_equal(rgb[0, 0, 0], np.round(grey[0, 0, 0] * 255))  # no attribution: the image in grey
    top, bottom = render._table(render.DIVERGING)[[255, 0]]
    alpha = render.OPACITY
    np.testing.assert_allclose(rgb[0, 3, 4], ((1 - alpha) * grey[0, 3, 4] + alpha * top) * 255, atol=0.5)
    np.testing.assert_allclose(rgb[1, 0, 0], ((1 - alpha) * grey[1, 0, 0] + alpha * bottom) * 255, atol=0.5)
    assert render.enlarge(rgb).shape == (2, 112, 112, 3)  # figures: 8 px → at least 112 px, nearest neighbour


def test_non_finite_attributions_draw_the_marker_and_keep_the_scale():
    from tf_explain_kit import render
    maps = np.array([[[1.0, -2.0], [np.nan, np.inf]]], np.float32)
    assert render.shared_scale(maps) == pytest.approx(np.percentile([1.0, 2.0], 99.5))
    colours, strength = render.colorize(maps, 2.0, signed=True)
    assert np.allclose(colours[0, 1], render.NOT_FINITE) and np.allclose(strength[0, 1], 1.0)
    assert not np.allclose(colours[0, 0, 0], render.NOT_FINITE) and strength[0, 0, 0] == pytest.approx(0.5)
    rgb = render.overlay(np.zeros((1, 2, 2, 1), np.float32), maps, opacity=1.0)
    assert (rgb[0, 1] == (0, 255, 0)).all()
