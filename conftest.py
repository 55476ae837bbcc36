"""Shared by the test suite and the benchmarks: nothing a run starts may outlive it.

Every process that pbench_runner starts carries ``PBENCH_RUN_ID`` in its
environment.  After each test, any such process that did not exist before the
test fails the test (after it is killed, so the next test starts clean).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import pytest

from pbench_runner import procs


def pbench_processes() -> dict[int, str]:
    """pid -> command line of every live process of some pbench run (and redis-servers)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                ours = b"PBENCH_RUN_ID=" in fh.read()
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            # redis-server overwrites its environment with its process title
            if not ours and not cmd.startswith(("redis-server", "/usr/bin/redis-server")):
                continue
        except OSError:
            continue
        if procs.pid_alive(int(entry)):
            found[int(entry)] = cmd
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    before = set(pbench_processes())
    yield
    deadline = time.monotonic() + 3.0
    left = {}
    while time.monotonic() < deadline:
        left = {p: c for p, c in pbench_processes().items() if p not in before}
        if not left:
            return
        time.sleep(0.05)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    pytest.fail(f"processes left behind: {left}")
