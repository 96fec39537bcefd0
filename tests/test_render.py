"""Rendering: PNGs written by the toolkit decode (with Pillow) to exactly the pictures drawn."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tf_explain_kit import render


@pytest.mark.parametrize("shape", [(3, 28, 28), (2, 5, 9), (1, 224, 3), (2, 70, 64)])  # the last: deflated with the "up" filter
def test_pngs_decode_to_the_pictures(shape):
    pictures = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    pictures[:, 10:] = pictures[:, 10:11]  # repeated rows: deflate after the "up" filter makes them zeros
    for picture, data in zip(pictures, render.pngs(pictures)):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), picture)
    deflated = shape[1] * shape[2] >= render.DEFLATE_PIXELS
    assert all((len(data) < picture.nbytes / 2) == deflated for picture, data in zip(pictures, render.pngs(pictures)))


def test_shrink_averages_blocks_to_the_largest_side_allowed():
    rgb = np.arange(2 * 5 * 4 * 3, dtype=np.uint8).reshape(2, 5, 4, 3)
    small = render.shrink(rgb, max_side=2)  # factor 3 (⌈5/2⌉): 5×4 → 2×2, the last row and column repeated to fill
    assert small.shape == (2, 2, 2, 3)
    padded = np.pad(rgb, ((0, 0), (0, 1), (0, 2), (0, 0)), mode="edge").astype(float)
    assert small[1, 1, 1, 2] == pytest.approx(padded[1, 3:6, 3:6, 2].mean())
    assert small[0, 0, 0, 0] == pytest.approx(padded[0, :3, :3, 0].mean())
    assert render.shrink(rgb, max_side=5) is rgb and render.shrink(rgb, None) is rgb


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


def _cells(markdown: str) -> list[list[str]]:
    """The text of each body cell once TensorBoard's Text dashboard has rendered ``markdown``,
    and every tag it kept."""
    import html
    import re

    from tensorboard import plugin_util

    page = plugin_util.markdown_to_safe_html(markdown)
    body = page.split("<tbody>", 1)[1]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [[html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row, re.S)] for row in rows], set(re.findall(r"<(\w+)", page))


HOSTILE = ["![x](http://127.0.0.1:9/beacon.png)", "[support](https://phish.example/login)", "<script>alert(1)</script>", "a | b", "`code`", "**bold** _it_", "&amp; &lt;", "x\\|y", "# title", "<http://autolink.example>"]


@pytest.mark.parametrize("name", HOSTILE)
def test_table_cells_show_user_strings_as_plain_text(name):
    from tf_explain_kit.explanation import Explanation

    names = [name, "other"]
    ex = Explanation("saliency", np.array([[1.0, -2.0], [0.5, 0.1]], np.float32), np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]], np.float32), {})
    rows, tags = _cells(render.markdown_table(ex, np.arange(2), np.array([0, 1]), names, "tabular", feature_names=[name, "f2"]))
    assert tags <= {"table", "thead", "tbody", "tr", "th", "td"}, tags  # no link, image, emphasis or code
    assert rows[0][1] == name and rows[0][2].startswith(name + " (") and rows[0][3] == name  # true, predicted, explained
    assert rows[0][4] == f"f2 (-2), {name} (+1)"  # top attributions


def test_any_string_survives_the_text_dashboard_as_itself():
    from hypothesis import given, settings, strategies as st

    from tf_explain_kit.explanation import Explanation

    ex = Explanation("saliency", np.ones((1, 3), np.float32), np.array([0]), np.array([[1.0]], np.float32), {})

    @settings(max_examples=300, deadline=None)
    @given(st.text(st.characters(codec="utf-8"), max_size=40))
    def check(name):
        rows, tags = _cells(render.markdown_table(ex, np.arange(1), np.array([0]), [name], "text", tokens=[[name]]))
        assert tags <= {"table", "thead", "tbody", "tr", "th", "td", "strong", "sub"}, tags
        shown = " ".join(name.translate({c: " " for c in range(32)}).split())
        assert " ".join(rows[0][1].split()) == shown

    check()


@pytest.mark.parametrize("per_feature", [True, False])
def test_sequence_pngs_draw_a_strip_per_feature_with_the_attribution_colours(per_feature):
    """Feature f's band holds its attribution colours over time; a (N, T) map colours every band alike."""
    from types import SimpleNamespace

    steps, features = 20, 3
    series = np.random.default_rng(0).normal(size=(2, steps, features)).astype(np.float32)
    maps = np.zeros((2, steps, features) if per_feature else (2, steps), np.float32)
    maps[:, 5] = 1.0  # one step (and with per-feature maps, only feature 1) carries everything
    if per_feature:
        maps[:, 5, [0, 2]] = 0.0
    pictures = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in render.sequence_pngs(series, SimpleNamespace(attributions=maps))]
    widen = -(-render.MIN_SIDE // steps)
    assert pictures[0].shape == (features * 8, steps * widen, 3)
    hot = render.colorize(np.array([1.0]), 1.0, False)[0][0]  # the sequential map's top colour
    for feature in range(features):
        pixel = pictures[0][feature * 8 + 4, 5 * widen].astype(float) / 255
        is_hot = per_feature is False or feature == 1
        # blended towards the hot colour by the full opacity when hot; grey (r == g == b) elsewhere
        assert (np.abs(pixel - hot).max() < 0.3) == is_hot, (feature, pixel)
        cold = pictures[0][feature * 8 + 4, 12 * widen]
        assert cold[0] == cold[1] == cold[2]
