"""Damaged and crafted logs: each bad run or record answers 4xx for itself, never a 500,
and the good run beside them is served as usual (real TensorBoard processes, both loaders,
and the plugin in process)."""

from __future__ import annotations

import collections
import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from . import crafted
from .conftest import LOADERS, PREFIX, SERVER_PATH, decode_array, plugin_client
from .server import tensorboard

GOOD = "good/explanations"


def strict_json(body: bytes) -> object:
    """JSON as browsers parse it: NaN and Infinity are not JSON."""
    return json.loads(body, parse_constant=lambda name: pytest.fail(f"{name} in a JSON answer"))


@pytest.fixture(scope="module")
def hostile_dir(logdir: Path, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile_logs")
    shutil.copytree(logdir / "cancer", root / "good")
    crafted.write(str(root))
    return root


@pytest.fixture(scope="module")
def hostile_servers(hostile_dir: Path) -> Iterator[dict]:
    with contextlib.ExitStack() as stack:
        started = {loader: stack.enter_context(tensorboard(str(hostile_dir), loader, env={"PYTHONPATH": SERVER_PATH, "TEK_TF_IMPORTS": "/dev/null"})) for loader in LOADERS}
        for server in started.values():
            deadline = time.monotonic() + 60
            while True:
                status, body = server.get(PREFIX + "/index")
                if status == 200 and {GOOD, "crafted/explanations", "nanloss/explanations"} <= set(json.loads(body)["runs"]) and json.loads(body)["errors"]:
                    break
                assert time.monotonic() < deadline, body[:300]
                time.sleep(0.3)
        yield started


@pytest.fixture(scope="module", params=("multiplexer",) + tuple(f"load_fast={loader}" for loader in LOADERS))
def hget(request, hostile_dir: Path):
    if request.param == "multiplexer":
        return plugin_client(hostile_dir)
    server = request.getfixturevalue("hostile_servers")[request.param.split("=")[1]]
    return lambda path: server.get(PREFIX + path)


def answer(hget, path: str, code: int = 200) -> object:
    status, body = hget(path)
    assert status == code, f"{path}: {status} {body[:300]!r}"
    assert b"Traceback" not in body
    return strict_json(body) if code == 200 and not path.startswith("/array") else body


def test_a_run_without_inputs_is_named_in_the_index_and_the_others_are_served(hget):
    index = answer(hget, "/index")
    assert sorted(set(index["runs"]) - {"resumed/explanations"}) == ["crafted/explanations", GOOD, "nanloss/explanations"]
    (problem,) = index["errors"]
    assert problem["run"] == "emptyin/explanations" and "holds no arrays" in problem["message"]
    assert index["runs"][GOOD]["methods"] == {"integrated_gradients": [0, 1, 2], "saliency": [0, 1, 2]}
    answer(hget, f"/epoch?run={GOOD}&method=saliency&epoch=2")


def test_non_finite_losses_are_sent_as_strings(hget):
    training = answer(hget, "/training?run=nanloss/explanations")
    assert training["epochs"] == [0, 1, 2]
    assert training["logs"] == {"accuracy": [0.5, 0.5, 0.5], "loss": [2.0, "NaN", "Infinity"]}


def test_a_training_record_with_a_list_leaves_a_gap(hget):
    training = answer(hget, "/training?run=crafted/explanations")
    assert training["epochs"] == [0, 2] and training["logs"] == {"loss": [1.0, 0.5]}


@pytest.mark.parametrize("epoch", sorted(crafted.CRAFTED_EPOCHS))
def test_each_crafted_record_answers_for_itself(hget, epoch):
    code = crafted.CRAFTED_EPOCHS[epoch][1]
    data = answer(hget, f"/epoch?run=crafted/explanations&method=saliency&epoch={epoch}", code)
    if code == 200:
        assert data["epoch"] == epoch and data["predictions"] == [[pytest.approx(0.7), pytest.approx(0.3)], [pytest.approx(0.4), pytest.approx(0.6)]]
        reference = data["arrays"]["attributions"]
        maps = decode_array(reference, answer(hget, f"/array?key={reference['key']}")).ravel()
        np.testing.assert_allclose(maps, (crafted.X[..., 0] - 0.5).ravel(), atol=2.0**-11)
    else:
        assert b"cannot be read" in data
    if epoch == 1:
        assert data["extras"] == {"note": None, "ranks": [1.0, None]}
    answer(hget, f"/epoch?run={GOOD}&method=integrated_gradients&epoch=1")  # the good run beside it


# -- fuzzing: hostile query strings through every provider, crafted payloads in process --------
ROUTES = ["/index", "/epoch", "/array", "/training", "/index.js", "/static/style.css", "/static/x.js", "/nope"]
RUNS = [GOOD, "crafted/explanations", "nanloss/explanations", "emptyin/explanations", "../../etc", ""]
TAGS = ["tf_explain_kit/samples", "tf_explain_kit/training", "tf_explain_kit/explanation/saliency", "tf_explain_kit/explanation/../x"]
STATUSES: collections.Counter = collections.Counter()  # what the fuzzers got, for the report


def _texts():
    from hypothesis import strategies as st

    return st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


def _keys():
    """Array keys: random text, or base64 of JSON lists near the real layout (run, tag, step, wall time, name)."""
    import base64

    from hypothesis import strategies as st

    numbers = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True))
    parts = st.lists(st.one_of(st.sampled_from(RUNS + TAGS + ["inputs", "attributions", "segments"]), _texts(), numbers, st.none(), st.lists(st.integers(), max_size=3)), max_size=6)
    layout = st.tuples(st.sampled_from(RUNS), st.sampled_from(TAGS), numbers, numbers, st.sampled_from(["inputs", "attributions", "segments", "x"])).map(list)
    encoded = st.one_of(parts, layout).map(lambda value: base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("="))
    return st.one_of(encoded, _texts())


def test_fuzzed_requests_never_answer_5xx(hget):
    from urllib.parse import quote

    from hypothesis import HealthCheck, given, settings, strategies as st

    values = st.one_of(_texts(), st.sampled_from(RUNS + ["saliency", "0", "1", "-1", "99999999999999999999", "1e3", " 1"]), st.integers(-(2**64), 2**64).map(str), _keys())
    queries = st.dictionaries(st.sampled_from(["run", "method", "epoch", "key", "tag"]) | _texts(), values, max_size=4)

    @settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(ROUTES), queries)
    def check(route, query):
        path = route + "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query.items())
        status, body = hget(path)
        STATUSES[status] += 1
        assert status < 500, f"{path}: {status} {body[:300]!r}"
        if status == 200 and route in ("/index", "/epoch", "/training"):
            strict_json(body)

    check()


def _payloads():
    """Explanation blobs: a JSON header from random JSON values around the real fields, and
    an .npz of random arrays under the real member names."""
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), _texts())
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_texts(), inner, max_size=3), max_leaves=12)
    fields = st.sampled_from(["version", "method", "epoch", "structure", "extras", "seconds", "precision", "layouts"])
    valid = {"version": 1, "method": "saliency", "epoch": 0, "structure": None, "extras": {}}
    header = st.dictionaries(fields, values | st.sampled_from([{"list": 0}, {"dict": ["a"]}, {"list": 10**12}]), max_size=3).map(lambda changed: {**valid, **changed})
    dtypes = st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.unicode_string_dtypes(max_len=3), hnp.boolean_dtypes())
    names = st.sampled_from(["attributions:values", "attributions:scaled", "attributions:scale", "attributions:planes", "targets", "predictions", "extra:segments", "x"])
    good = {"attributions:values": np.ones((2, 6, 6), np.float32), "targets": np.array([0, 1]), "predictions": np.eye(2, dtype=np.float32)}
    arrays = st.dictionaries(names, hnp.arrays(dtypes, hnp.array_shapes(min_dims=0, max_dims=4, max_side=3)), max_size=3).map(lambda changed: {**good, **changed})
    return st.tuples(header, arrays)


def test_fuzzed_payloads_answer_4xx_or_valid_json_and_load_run_says_format_error(tmp_path_factory):
    import io
    import os

    from hypothesis import HealthCheck, given, settings

    import tf_explain_kit as tek
    from tf_explain_kit import logformat
    from tf_explain_kit.logwriter import SummaryWriter

    @settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(_payloads())
    def check(payload):
        header, arrays = payload
        root = tmp_path_factory.mktemp("fuzzed")
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        writer = SummaryWriter(os.path.join(root, "run"))
        writer.blobs(logformat.SAMPLES_TAG, 0, crafted.GOOD_SAMPLES, "samples")
        writer.blobs(logformat.explanation_tag("saliency"), 0, [json.dumps(header).encode(), buffer.getvalue()], "explanation")
        writer.blobs(logformat.TRAINING_TAG, 0, [json.dumps({"version": 1, "logs": header.get("extras")}).encode(), crafted.npz({})], "training")
        writer.close()
        get = plugin_client(root)
        paths = ["/index", "/epoch?run=run/explanations&method=saliency&epoch=0", "/training?run=run/explanations"]
        for path in paths:
            status, body = get(path)
            STATUSES[status] += 1
            assert status < 500, f"{path}: {status} {body[:300]!r}"
            if status == 200 and not path.startswith("/array"):
                data = strict_json(body)
                paths += [f"/array?key={ref['key']}" for ref in (data.get("arrays") or {}).values()]
        run = tek.load_run(root)
        try:
            run.explanation("saliency", 0)
        except logformat.FormatError:
            pass

    check()


# -- resuming into a served log_dir -------------------------------------------------------------
def _session(folder: str, first: int, epochs: range, base: float) -> None:
    """What the callback writes in one training session: its start, the samples, then each
    epoch's loss ``base + epoch`` and attributions equal to it."""
    import tf_explain_kit as tek
    from tf_explain_kit import logformat
    from tf_explain_kit.logwriter import SummaryWriter

    writer = SummaryWriter(folder)
    writer.session(first)
    writer.blobs(logformat.SAMPLES_TAG, 0, crafted.GOOD_SAMPLES, "samples")
    for epoch in epochs:
        writer.blobs(logformat.TRAINING_TAG, epoch, logformat.training_payload({"loss": base + epoch}), "training")
        ex = tek.Explanation("saliency", np.full((2, 6, 6), base + epoch, np.float32), np.array([0, 1]), np.eye(2, dtype=np.float32), {})
        writer.blobs(logformat.explanation_tag("saliency"), epoch, logformat.explanation_payload(ex, epoch, "float32"), "explanation")
    writer.close()


def _served(get, run: str) -> tuple[list, list, dict]:
    """Epochs, losses and ``{epoch: first attribution}`` as the plugin serves them."""
    training = answer(get, f"/training?run={run}")
    values = {}
    for epoch in answer(get, "/index")["runs"][run]["methods"]["saliency"]:
        reference = answer(get, f"/epoch?run={run}&method=saliency&epoch={epoch}")["arrays"]["attributions"]
        values[epoch] = float(decode_array(reference, answer(get, f"/array?key={reference['key']}")).flat[0])
    return training["epochs"], training["logs"]["loss"], values


def test_a_resumed_training_replaces_what_it_relogs_in_every_reader(hostile_dir, hostile_servers):
    import tf_explain_kit as tek

    run, folder = "resumed/explanations", str(hostile_dir / "resumed")
    gets = {loader: (lambda path, server=server: server.get(PREFIX + path)) for loader, server in hostile_servers.items()}
    _session(folder, 0, range(6), 0.0)
    for get in gets.values():
        deadline = time.monotonic() + 60
        while len(answer(get, "/index")["runs"].get(run, {}).get("methods", {}).get("saliency", [])) < 6 or len(answer(get, f"/training?run={run}")["epochs"]) < 6:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert _served(get, run)[2] == {epoch: float(epoch) for epoch in range(6)}  # and cached
    old_key = answer(gets["true"], f"/epoch?run={run}&method=saliency&epoch=3")["arrays"]["attributions"]["key"]
    _session(folder, 3, range(3, 5), 100.0)  # resumed at epoch 3, stopped after epoch 4
    expected = ([0, 1, 2, 3, 4], [0.0, 1.0, 2.0, 103.0, 104.0], {0: 0.0, 1: 1.0, 2: 2.0, 3: 103.0, 4: 104.0})
    loaded = tek.load_run(folder)
    assert (loaded.epochs, loaded.scalars()["loss"].tolist()) == (expected[0], expected[1])
    assert {epoch: float(loaded.explanation("saliency", epoch).attributions.flat[0]) for epoch in loaded.epochs} == expected[2]
    gets["multiplexer"] = plugin_client(hostile_dir)
    for loader, get in gets.items():
        deadline = time.monotonic() + 60
        while _served(get, run)[1][3:] != [103.0, 104.0]:
            assert time.monotonic() < deadline, (loader, _served(get, run))
            time.sleep(0.3)
        assert _served(get, run) == expected, loader
    answer(gets["true"], f"/array?key={old_key}", 404)  # a key of the replaced record reads nothing
