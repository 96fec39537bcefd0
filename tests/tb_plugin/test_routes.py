"""The plugin's routes over logs written by the real callback, through every data provider."""

from __future__ import annotations

import collections
import json
import shutil

import numpy as np
import pytest

import tf_explain_kit as tek
from tb_plugin.plugin import ExplanationsLoader

from .conftest import decode_array, plugin_client

from . import logs

DIGITS = "digits/explanations"


def ok(get, path: str) -> object:
    status, body = get(path)
    assert status == 200, f"{path}: {status} {body[:300]!r}"
    return json.loads(body)


def array(get, reference: dict) -> np.ndarray:
    status, body = get(f"/array?key={reference['key']}")
    assert status == 200, body[:300]
    return decode_array(reference, body)


def test_index_lists_every_run_method_and_epoch(get):
    index = ok(get, "/index")
    assert index["errors"] == []
    runs = index["runs"]
    assert sorted(runs) == ["cancer/explanations", DIGITS, "hostile/explanations", "series/explanations"]
    digits = runs[DIGITS]
    every = list(range(logs.EPOCHS))
    assert digits["kind"] == "image" and digits["class_names"][3] == "digit 3" and len(digits["ids"]) == len(digits["labels"]) == 6
    assert digits["methods"] == {"gradcam": every, "integrated_gradients": every, "lime_image": [0, 5, 10, 14], "saliency": every}
    assert digits["training_epochs"] == every and digits["inputs"]["shape"] == [6, 28, 28, 1]
    assert runs["cancer/explanations"]["kind"] == "tabular" and len(runs["cancer/explanations"]["feature_names"]) == 30
    assert runs["hostile/explanations"]["tokens"][0][0] in (logs.XSS, logs.SCRIPT, "good", "bad", "plot", "actor", "&amp;", "fine", "dull")


def test_index_keeps_the_callbacks_method_order_and_failures(get):
    """Methods in the order the callback was given them (not alphabetical); a method that
    fails at its first run is refused once (not retried): listed with no epochs and its
    logged error at that epoch."""
    runs = ok(get, "/index")["runs"]
    assert list(runs[DIGITS]["methods"]) == ["saliency", "integrated_gradients", "gradcam", "lime_image"]
    assert runs[DIGITS]["failures"] == {}
    hostile = runs["hostile/explanations"]
    assert hostile["methods"]["refusing"] == [] and hostile["methods"]["integrated_gradients"] == [0, 1]
    failures = hostile["failures"]["refusing"]
    assert sorted(failures) == ["0"] and logs.REFUSAL in failures["0"] and "refused" in failures["0"]


def test_every_epoch_is_served_and_matches_load_run(get, logdir):
    run = tek.load_run(logdir / "digits")
    for epoch in range(logs.EPOCHS):
        data = ok(get, f"/epoch?run={DIGITS}&method=saliency&epoch={epoch}")
        assert data["epoch"] == epoch and len(data["predictions"]) == 6
        expected = run.explanation("saliency", epoch).attributions.sum(axis=-1)
        np.testing.assert_allclose(array(get, data["arrays"]["attributions"]), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    lime = ok(get, f"/epoch?run={DIGITS}&method=lime_image&epoch=10")
    assert "r2" in lime["extras"] and array(get, lime["arrays"]["segments"]).shape == (6, 28, 28)
    index = ok(get, "/index")
    inputs = array(get, index["runs"][DIGITS]["inputs"])
    np.testing.assert_allclose(inputs, run.samples["inputs"], rtol=1e-6)


def test_training_curves(get):
    training = ok(get, f"/training?run={DIGITS}")
    assert training["epochs"] == list(range(logs.EPOCHS))
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(training["logs"][name]) == logs.EPOCHS and all(np.isfinite(training["logs"][name]))


@pytest.mark.parametrize(
    "path, code",
    [
        ("/epoch?run=nope&method=saliency&epoch=0", 404),
        (f"/epoch?run={DIGITS}&method=nope&epoch=0", 404),
        (f"/epoch?run={DIGITS}&method=saliency&epoch=99", 404),
        (f"/epoch?run={DIGITS}&method=saliency&epoch=x", 400),
        (f"/epoch?run={DIGITS}&method=saliency", 400),
        ("/epoch", 400),
        ("/training?run=nope", 404),
        ("/training", 400),
        ("/array", 400),
        ("/array?key=!!!", 400),
        ("/array?key=WyJub3BlIiwgInRmX2V4cGxhaW5fa2l0L3NhbXBsZXMiLCAwLCAxLjAsICJpbnB1dHMiXQ", 404),  # well formed, unknown run
        ("/array?key=WyJhIiwiYiIsImV4cGxhbmF0aW9uIiwiYXR0cmlidXRpb25zIl0", 400),  # not a key of this plugin
        ("/static/../plugin.py", 404),
        ("/static/%2e%2e/plugin.py", 404),
        ("/static/..%2fplugin.py", 404),
        ("/static/%2fetc%2fpasswd", 404),
        ("/static/colormaps.py", 404),
    ],
)
def test_bad_requests_get_a_message_never_a_500(get, path, code):
    status, body = get(path)
    assert status == code, f"{path}: {status} {body[:200]!r}"
    assert body and b"Traceback" not in body


def test_static_files(get):
    status, body = get("/index.js")
    assert status == 200 and b"export async function render" in body
    status, body = get("/static/style.css")
    assert status == 200 and b".grid-table" in body


def test_all_steps_kept_unless_the_user_chose():
    class Flags:
        samples_per_plugin: dict

    flags = Flags()
    flags.samples_per_plugin = {"images": 3}
    ExplanationsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"images": 3, "tf_explain_kit": 0}
    flags.samples_per_plugin = {"tf_explain_kit": 5}
    ExplanationsLoader().fix_flags(flags)
    assert flags.samples_per_plugin == {"tf_explain_kit": 5}


def test_corrupt_and_truncated_event_files_do_not_stop_the_rest(logdir, tmp_path):
    shutil.copytree(logdir / "digits", tmp_path / "good")
    shutil.copytree(logdir / "cancer", tmp_path / "truncated")
    (event_file,) = (tmp_path / "truncated" / "explanations").iterdir()
    event_file.write_bytes(event_file.read_bytes()[:-5000])  # cut inside the last epoch
    (tmp_path / "garbage" / "explanations").mkdir(parents=True)
    (tmp_path / "garbage" / "explanations" / "events.out.tfevents.1.garbage").write_bytes(b"\\x00not an event file" * 100)
    get = plugin_client(tmp_path)
    runs = ok(get, "/index")["runs"]
    assert runs["good/explanations"]["methods"]["saliency"] == list(range(logs.EPOCHS))
    for method, epochs in runs["truncated/explanations"]["methods"].items():
        for epoch in epochs:
            ok(get, f"/epoch?run=truncated/explanations&method={method}&epoch={epoch}")
    ok(get, "/training?run=truncated/explanations")


def test_attributions_travel_as_float16_within_the_logs_precision():
    """Each sample divided by its largest finite absolute value: every value comes back within
    2**-11 of that (the log's own float16 bound), tiny and beyond-float16 samples included;
    non-finite values stay what they are; LIME's labels travel as integers."""
    from tb_plugin.plugin import _wire

    values = np.random.default_rng(0).standard_normal((4, 5, 6)).astype(np.float32) * np.float32([1e-30, 1.0, 1e6, 0.0])[:, None, None]
    values[1, 0, :2] = np.nan, -np.inf
    wire = _wire(values, "float16")
    decoded = decode_array(wire.reference("key"), wire.data)
    finite = np.isfinite(values)
    largest = np.abs(np.where(finite, values, 0)).reshape(4, -1).max(axis=1)
    error = np.abs(np.where(finite, decoded - values, 0)).reshape(4, -1).max(axis=1)
    assert len(wire.data) == values.size * 2 and np.all(error <= 2.0**-11 * largest) and largest[0] > 0
    assert np.isnan(decoded[1, 0, 0]) and decoded[1, 0, 1] == -np.inf and np.all(decoded[3] == 0)
    for labels, dtype in ((np.array([[0, 65535]]), "uint16"), (np.array([[-1, 70000]]), "int32")):
        wire = _wire(labels, "labels")
        assert wire.dtype == dtype and np.array_equal(decode_array(wire.reference("key"), wire.data), labels)


def test_the_decoded_cache_is_bounded_by_bytes():
    from types import SimpleNamespace

    from tb_plugin.plugin import _LRU

    cache, made = _LRU(100), []

    def make(key, nbytes=30):
        return lambda: made.append(key) or SimpleNamespace(nbytes=nbytes)

    for key in range(10):
        cache.get(key, make(key))
    assert cache.nbytes == 90
    made.clear()
    for key in (9, 8, 7, 6):
        cache.get(key, make(key))
    assert made == [6]  # 7, 8, 9 were kept; 6 had gone
    cache.get("large", make("large", 500))  # larger than the limit: kept alone, being the newest
    cache.get(9, make(9))
    assert cache.nbytes == 30 and made == [6, "large", 9]


def test_an_epoch_after_the_index_needs_no_listing_and_its_array_no_decoding(logdir, monkeypatch):
    """The index's listing serves the epoch and array routes for LISTING_SECONDS; the array
    comes from the epoch's decoded record; an older listing is renewed."""
    from tensorboard.backend.event_processing import data_provider

    from tb_plugin import plugin

    calls = collections.Counter()

    def counted(owner, name):
        original = getattr(owner, name)

        def call(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, call)

    counted(data_provider.MultiplexerDataProvider, "read_blob_sequences")
    counted(plugin.logformat, "read_explanation")
    get = plugin_client(logdir)
    ok(get, "/index")
    assert calls["read_blob_sequences"] == 1
    data = ok(get, f"/epoch?run={DIGITS}&method=saliency&epoch=3")
    for _ in range(2):
        array(get, data["arrays"]["attributions"])
    assert calls == {"read_blob_sequences": 1, "read_explanation": 1}
    monkeypatch.setattr(plugin, "LISTING_SECONDS", 0.0)
    ok(get, f"/epoch?run={DIGITS}&method=saliency&epoch=4")
    assert calls == {"read_blob_sequences": 2, "read_explanation": 2}
