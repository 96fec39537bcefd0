"""Logs written by the real callback, an in-process plugin and real TensorBoard processes."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from werkzeug import Response, test

from tb_plugin.plugin import ExplanationsPlugin
from tf_explain_kit import logformat

from . import logs
from .server import TensorBoard, tensorboard

PREFIX = "/data/plugin/tf_explain_kit"
NO_TENSORFLOW = str(Path(__file__).parent / "no_tensorflow")
# TensorFlow blocked, and this checkout's plugin imported ahead of any installed copy
SERVER_PATH = os.pathsep.join([NO_TENSORFLOW, str(Path(__file__).resolve().parents[2])])
LOADERS = ("false", "true")

Get = Callable[[str], tuple[int, bytes]]


@pytest.fixture(scope="session")
def logdir(tmp_path_factory) -> Path:
    """``digits`` (15 epochs, images), ``cancer`` (tabular) and ``hostile`` (text, HTML in names).
    ``TEK_TEST_LOGS=DIR`` reuses logs written by ``python -m tests.tb_plugin.logs DIR``."""
    if os.environ.get("TEK_TEST_LOGS"):
        return Path(os.environ["TEK_TEST_LOGS"])
    root = tmp_path_factory.mktemp("tb_plugin_logs")
    logs.write_all(str(root))
    return root


def plugin_client(logdir: Path) -> Get:
    """GET through the plugin in this process, over TensorBoard's multiplexer data provider."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={logformat.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(logdir))
    context = base_plugin.TBContext(logdir=str(logdir), multiplexer=multiplexer, data_provider=provider)
    client = test.Client(application.TensorBoardWSGI([ExplanationsPlugin(context)]), Response)

    def get(path: str) -> tuple[int, bytes]:
        response = client.get(PREFIX + path)
        return response.status_code, response.data

    return get


WIRE_TYPES = {"float32": "<f4", "float16": "<f2", "uint16": "<u2", "int32": "<i4"}


def decode_array(reference: dict, body: bytes) -> np.ndarray:
    """The numbers behind an array reference ``{key, shape, dtype[, scale]}``, from the
    array route's bytes (float16 times each sample's ``scale``)."""
    values = np.frombuffer(body, WIRE_TYPES[reference["dtype"]]).reshape(reference["shape"])
    if "scale" in reference:
        values = values.astype(np.float32) * np.asarray(reference["scale"], np.float32).reshape((-1,) + (1,) * (values.ndim - 1))
    return values


def wait_for_epochs(server: TensorBoard, run: str, method: str, epochs: int, timeout: float = 60.0) -> None:
    """Until the server has loaded ``epochs`` epochs of ``method`` in ``run``."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = server.get(PREFIX + "/index")
        if status == 200 and len(json.loads(body)["runs"].get(run, {}).get("methods", {}).get(method, [])) >= epochs:
            return
        assert time.monotonic() < deadline, f"{run}/{method}: {epochs} epochs not loaded in {timeout:.0f} s: {body[:300]!r}"
        time.sleep(0.3)


@pytest.fixture(scope="session")
def servers(logdir: Path, tmp_path_factory) -> Iterator[dict[str, TensorBoard]]:
    """One real TensorBoard per loader; TensorFlow is blocked there and attempts are logged
    to ``server.tf_imports``."""
    imports = tmp_path_factory.mktemp("tf_imports")
    with contextlib.ExitStack() as stack:
        started = {}
        for loader in LOADERS:
            log = imports / f"load_fast_{loader}.log"
            started[loader] = stack.enter_context(tensorboard(str(logdir), loader, env={"PYTHONPATH": SERVER_PATH, "TEK_TF_IMPORTS": str(log)}))
            started[loader].tf_imports = log
        for server in started.values():
            wait_for_epochs(server, "digits/explanations", "saliency", logs.EPOCHS)
        yield started


@pytest.fixture(scope="session", params=("multiplexer",) + tuple(f"load_fast={loader}" for loader in LOADERS))
def get(request, logdir: Path) -> Get:
    """GET through each data provider: in process (multiplexer) and real servers (both loaders)."""
    if request.param == "multiplexer":
        return plugin_client(logdir)
    server = request.getfixturevalue("servers")[request.param.split("=")[1]]
    return lambda path: server.get(PREFIX + path)
