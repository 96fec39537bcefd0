"""The plugin's routes over logs written by the real callback, through every data provider."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import tf_explain_kit as tek
from tb_plugin.plugin import ExplanationsLoader

from .conftest import plugin_client

from . import logs

DIGITS = "digits/explanations"


def ok(get, path: str) -> object:
    status, body = get(path)
    assert status == 200, f"{path}: {status} {body[:300]!r}"
    return json.loads(body)


def array(get, reference: dict) -> np.ndarray:
    status, body = get(f"/array?key={reference['key']}")
    assert status == 200, body[:300]
    return np.frombuffer(body, "<f4").reshape(reference["shape"])


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
