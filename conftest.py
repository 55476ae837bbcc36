"""Shared by the test suite and the benchmarks: nothing a run starts may outlive it.

This pytest session marks its own environment with ``PBENCH_TEST_SESSION``;
every process the tests start inherits it (pbench_runner adds
``PBENCH_RUN_ID`` too).  After each test, any process of this session that did
not exist before the test fails the test, after it is killed so that the next
test starts clean.  redis-server overwrites its environment with its title, so
a redis-server counts as ours when its working directory (the run's ``tm/``)
is under this session's temporary directory.  Processes of other pytest
sessions, or of someone using pbench on the same machine, are left alone.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbench_runner import procs

SESSION_MARK = f"PBENCH_TEST_SESSION={uuid.uuid4().hex}"
os.environ["PBENCH_TEST_SESSION"] = SESSION_MARK.partition("=")[2]


def pbench_processes(basetemp: Path) -> dict[int, str]:
    """pid -> command line of every live process this test session started."""
    found = {}
    mark = SESSION_MARK.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                ours = mark in fh.read().split(b"\0")
            cmd = procs.cmdline(int(entry))
            if not ours and "redis-server" in cmd.split(" ", 1)[0]:
                ours = os.readlink(f"/proc/{entry}/cwd").startswith(str(basetemp))
        except OSError:
            continue
        if ours and procs.pid_alive(int(entry)):
            found[int(entry)] = cmd
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    basetemp = tmp_path_factory.getbasetemp()
    before = set(pbench_processes(basetemp))
    yield
    # generous: processes that are really exiting may be slow on a loaded
    # machine, and a clean test pays nothing for it
    deadline = time.monotonic() + 10.0
    left = {}
    while time.monotonic() < deadline:
        left = {p: c for p, c in pbench_processes(basetemp).items() if p not in before}
        if not left:
            return
        time.sleep(0.05)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    procs.wait_until(lambda: not any(map(procs.pid_alive, left)), 5)
    pytest.fail(f"processes left behind: {left}")
