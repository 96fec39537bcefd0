"""One writer per run folder: a lock file naming the process that writes it.

``<log_dir>/explanations/writer.lock`` holds the writer's pid, host and process start time
(TensorBoard reads only ``events.out.tfevents.*`` files). A second writer is refused while
the holder is alive: on the same host, while its process runs (a pid reused by another
process does not count: the start time differs); on another host, while the lock's
heartbeat (its modification time, renewed at every flush) is younger than
:data:`STALE_AFTER`. A lock left by a killed run is taken over by the next writer.
Object stores (``gs://``...) have no exclusive create: their folders are not locked.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time

LOCK_NAME = "writer.lock"
STALE_AFTER = 3600.0  # seconds without a heartbeat after which another host's lock is stale


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def identity() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": _started(os.getpid()), "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def _alive(holder: dict, path: str) -> bool:
    """Whether the lock's holder may still be writing (never true for this process)."""
    if holder.get("host") != socket.gethostname():
        return time.time() - os.path.getmtime(path) < STALE_AFTER
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    started = _started(pid)
    return started is None or holder.get("started") in (None, started)


class WriterLock:
    """The lock of run folder ``folder``; ValueError naming the holder if it is taken."""

    def __init__(self, folder: str):
        self.path, self.owner = os.path.join(folder, LOCK_NAME), identity()
        for _ in range(3):
            try:
                handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and _alive(holder, self.path):
                    raise ValueError(
                        f"log_dir: {os.path.dirname(folder)!r} is being written by another live process (pid {holder.get('pid')} on host "
                        f"{holder.get('host')!r}, since {holder.get('since')}; lock file {self.path}). Two writers would mix their records: give this "
                        "one its own log_dir, or stop the other. (A lock left by a killed run is taken over: at once on the same host, after "
                        f"{STALE_AFTER / 3600:g} h without a heartbeat from another host.)"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)  # stale: its writer is gone
                continue
            with os.fdopen(handle, "w") as file:
                json.dump(self.owner, file)
            return
        raise ValueError(f"log_dir: could not take the lock {self.path}: other writers keep creating it.")

    def _holder(self) -> dict | None:
        try:
            with open(self.path) as file:
                holder = json.load(file)
        except (OSError, ValueError):
            return None  # half written or unreadable: treated as stale
        return holder if isinstance(holder, dict) else None

    def heartbeat(self) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def release(self) -> None:
        """Remove the lock if it is still this writer's."""
        if self._holder() == self.owner:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
