"""The log format at real image sizes: what comes back, and what a logged cell costs."""

from __future__ import annotations

import functools
import glob
import os

import numpy as np
import pytest

import tf_explain_kit as tek
from tf_explain_kit import examples, logformat

FLOAT16_LIMIT = 2.0**-11  # relative to each sample's largest |attribution| (module notes of logformat)
CELL_BOUND = 100 * 1024  # bytes per sample × method × epoch at 224² by default (README)

pytestmark = pytest.mark.filterwarnings("ignore:integrated_gradients:RuntimeWarning")  # 4 steps: only storage matters here


@functools.cache
def _model(side: int):
    """4 inputs and a model: the digits CNN at 28², MobileNetV2 (random weights, batch-norm
    statistics from the photos) at 96² and 224²."""
    if side == 28:
        return examples.digits()[2][:4], examples.digits_cnn()
    x = examples.photos(4, side)
    return x, examples.mobilenet_v2(x)


@pytest.fixture(scope="module", params=[28, 96, 224])
def explained(request):
    """Saliency, IG, Grad-CAM and LIME on 4 images at one size."""
    side = request.param
    x, model = _model(side)
    explainers = [tek.Saliency(model), tek.IntegratedGradients(model, steps=4), tek.GradCAM(model), tek.LimeImage(model, num_samples=40)]
    return side, x, [e.explain(x) for e in explainers]


def _relative_error(logged: np.ndarray, computed: np.ndarray) -> float:
    largest = np.abs(computed).reshape(len(computed), -1).max(axis=1).reshape((-1,) + (1,) * (computed.ndim - 1))
    return float((np.abs(logged - computed) / np.where(largest > 0, largest, 1)).max())


@pytest.mark.parametrize("precision, channels", [("float16", "sum"), ("float16", "all"), ("float32", "all")])
def test_round_trip_within_the_documented_precision(explained, precision, channels):
    side, x, explanations = explained
    limit = FLOAT16_LIMIT if precision == "float16" else 1e-5
    for explanation in explanations:
        computed = np.asarray(explanation.attributions)
        if channels == "sum" and computed.ndim == 4:
            computed = computed.sum(axis=-1, keepdims=True)  # (N, H, W, 1): the map the plugin shows
        back = logformat.read_explanation(logformat.explanation_payload(explanation, 3, precision, channels=channels))
        assert back["attributions"].shape == computed.shape, (side, explanation.method)
        assert _relative_error(back["attributions"], computed) <= limit, (side, explanation.method, precision)
        np.testing.assert_array_equal(back["targets"], explanation.targets)
        if "segments" in explanation.extras:
            np.testing.assert_array_equal(back["extras"]["segments"], explanation.extras["segments"])


def test_region_maps_are_stored_at_their_native_resolution(explained):
    side, _, explanations = explained
    gradcam, lime = explanations[2], explanations[3]
    h, w = gradcam.extras["resolution"]
    assert h < side and w < side
    header, arrays = logformat.decode(logformat.explanation_payload(gradcam, 0))
    assert header["layouts"]["attributions"] == {"upsample": [side, side]}
    assert arrays["attributions:planes"].shape == (2, 4, h, w)
    segments = lime.extras["segments"]
    _, arrays = logformat.decode(logformat.explanation_payload(lime, 0))
    assert arrays["attributions:planes"].shape == (2, 4, int(segments.max()) + 1)  # one value per superpixel


def test_a_map_that_is_not_an_upsampling_is_stored_whole():
    maps = np.random.default_rng(0).random((2, 16, 16)).astype(np.float32)
    explanation = tek.Explanation("gradcam", maps, np.zeros(2, int), np.zeros((2, 3)), {"resolution": [4, 4]})
    header, arrays = logformat.decode(logformat.explanation_payload(explanation, 0, "float32"))
    assert header["layouts"]["attributions"] is None
    np.testing.assert_array_equal(logformat.read_explanation(logformat.explanation_payload(explanation, 0, "float32"))["attributions"], maps)


def test_bytes_per_cell_at_224_by_default(tmp_path):
    """The event file's growth over one epoch, per sample × method, with the callback's defaults."""
    x, model = _model(224)
    explainers = [tek.Saliency(model), tek.IntegratedGradients(model, steps=4), tek.GradCAM(model)]
    callback = tek.ExplainCallback(x, explainers, str(tmp_path), max_samples=4, select="first")
    callback.set_model(model)
    callback.set_params({"epochs": 3})
    callback.on_train_begin()
    sizes = []
    for epoch in range(2):
        callback.on_epoch_end(epoch, {"loss": 1.0})
        sizes.append(sum(os.path.getsize(f) for f in glob.glob(str(tmp_path / logformat.RUN / "events.out.tfevents.*"))))
    callback.on_train_end()
    per_cell = (sizes[1] - sizes[0]) / (4 * len(explainers))
    assert per_cell <= CELL_BOUND, per_cell


@pytest.mark.parametrize(
    "layout, extras, message",
    [
        ({"upsample": [10**6, 10**6]}, {}, "layout: cannot upsample"),
        ({"upsample": "224"}, {}, "layout: cannot upsample"),
        ({"segments": True}, {"segments": np.full((2, 4, 4), 9)}, "segments: labels outside"),
        ({"something": 1}, {}, "layout: expected upsample, channels or segments"),
    ],
)
def test_crafted_layouts_are_format_errors(layout, extras, message):
    stored = np.ones((2, 3), np.float32)
    explanation = tek.Explanation("lime_image", stored, np.zeros(2, int), np.zeros((2, 3)), extras)
    header, arrays = logformat.decode(logformat.explanation_payload(explanation, 0, "float32"))
    header["layouts"] = {"attributions": layout}
    blobs = [logformat.json.dumps(header).encode(), logformat.encode({}, arrays)[1]]
    with pytest.raises(logformat.FormatError, match=message):
        logformat.read_explanation(blobs)
