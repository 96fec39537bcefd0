"""One writer per log_dir: another live process is refused, a killed one's lock is taken
over, two callbacks in one process do not mix their records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import tf_explain_kit as tek
from tf_explain_kit import logformat, writerlock
from tf_explain_kit.logwriter import SummaryWriter

HOLD = "import sys, time; from tf_explain_kit.logwriter import SummaryWriter; w = SummaryWriter(sys.argv[1]); print('ready', flush=True); time.sleep(120)"


def test_a_second_process_is_refused_until_the_first_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(ValueError, match=rf"log_dir: .* is being written by another live process \(pid {holder.pid} on host"):
            SummaryWriter(tmp_path)
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9 leaves the lock file behind
        holder.wait()
    lock = tmp_path / logformat.RUN / writerlock.LOCK_NAME
    assert json.loads(lock.read_text())["pid"] == holder.pid
    writer = SummaryWriter(tmp_path)  # the dead holder's lock is taken over
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    writer.close()
    assert not lock.exists()


def test_another_hosts_lock_holds_until_its_heartbeat_is_stale(tmp_path):
    folder = tmp_path / logformat.RUN
    folder.mkdir()
    lock = folder / writerlock.LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": "another-host", "started": None, "since": "then"}))
    with pytest.raises(ValueError, match="pid 1 on host 'another-host'"):
        SummaryWriter(tmp_path)
    old = time.time() - writerlock.STALE_AFTER - 60
    os.utime(lock, (old, old))
    SummaryWriter(tmp_path).close()


def test_two_callbacks_on_one_log_dir_do_not_mix(tmp_path):
    import keras

    rng = np.random.default_rng(0)
    x, y = rng.random((32, 6), np.float32), rng.integers(0, 2, 32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    first = tek.ExplainCallback((x, y), ["saliency"], str(tmp_path), max_samples=4)
    second = tek.ExplainCallback((x, y), ["saliency"], str(tmp_path), max_samples=8)
    with pytest.warns(RuntimeWarning, match="another writer in this process took this log_dir over"):
        model.fit(x, y, epochs=2, verbose=0, callbacks=[first, second])
    run = tek.load_run(tmp_path)  # only the newer writer's records: 8 samples everywhere
    assert len(run.samples["ids"]) == 8 and run.epochs == [0, 1]
    assert all(run.explanation("saliency", epoch).attributions.shape == (8, 6) for epoch in run.epochs)
