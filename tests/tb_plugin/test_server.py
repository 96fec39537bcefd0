"""Real ``tensorboard`` processes with each loader: plugin active, every epoch, no TensorFlow."""

from __future__ import annotations

import json

import pytest

from . import logs
from .conftest import LOADERS, PREFIX, SERVER_PATH, wait_for_epochs
from .server import tensorboard


@pytest.mark.parametrize("loader", LOADERS)
def test_plugin_is_active_and_serves_every_epoch(servers, loader):
    server = servers[loader]
    listing = server.json("/data/plugins_listing")["tf_explain_kit"]
    assert listing["enabled"] and listing["tab_name"] == "Explanations"
    assert listing["loading_mechanism"] == {"type": "IFRAME", "module_path": f"{PREFIX}/index.js"}
    for method in ("saliency", "integrated_gradients", "gradcam"):
        for epoch in range(logs.EPOCHS):
            status, body = server.get(f"{PREFIX}/epoch?run=digits/explanations&method={method}&epoch={epoch}")
            assert status == 200, f"{method} epoch {epoch}: {status} {body[:200]!r}"


@pytest.mark.parametrize("loader", LOADERS)
def test_tensorboard_process_never_imports_tensorflow(servers, loader):
    server = servers[loader]
    server.json(f"{PREFIX}/index")  # the plugin has served data
    mapped = server.mapped_files()
    assert "libtensorflow" not in mapped and "/tensorflow/python/" not in mapped
    attempts = server.tf_imports.read_text().split("\n----\n") if server.tf_imports.exists() else []
    for stack in filter(str.strip, attempts):  # TensorBoard probes for TensorFlow itself at start-up
        assert "tensorboard/compat" in stack and "tb_plugin/plugin.py" not in stack and "/tf_explain_kit/" not in stack, stack


def test_explicit_samples_per_plugin_wins(logdir):
    with tensorboard(str(logdir), "false", "--samples_per_plugin", "tf_explain_kit=4", env={"PYTHONPATH": SERVER_PATH, "TEK_TF_IMPORTS": "/dev/null"}) as server:
        wait_for_epochs(server, "digits/explanations", "saliency", 4)
        index = json.loads(server.get(f"{PREFIX}/index")[1])
        assert len(index["runs"]["digits/explanations"]["methods"]["saliency"]) == 4
