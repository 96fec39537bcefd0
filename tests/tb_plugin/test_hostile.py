"""Damaged and crafted logs: each bad run or record answers 4xx for itself, never a 500,
and the good run beside them is served as usual (real TensorBoard processes, both loaders,
and the plugin in process)."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from . import crafted
from .conftest import LOADERS, PREFIX, SERVER_PATH, plugin_client
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
    assert sorted(index["runs"]) == ["crafted/explanations", GOOD, "nanloss/explanations"]
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
        maps = np.frombuffer(answer(hget, f"/array?key={data['arrays']['attributions']['key']}"), "<f4")
        np.testing.assert_allclose(maps, (crafted.X[..., 0] - 0.5).ravel(), atol=2.0**-11)
    else:
        assert b"cannot be read" in data
    if epoch == 1:
        assert data["extras"] == {"note": None, "ranks": [1.0, None]}
    answer(hget, f"/epoch?run={GOOD}&method=integrated_gradients&epoch=1")  # the good run beside it
