"""procs.spawn's promises: a child dies with its parent, even in a race, and a
program that cannot be run raises at once."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from pbench_runner import procs

from .conftest import running

# The parent starts a sleeper and dies at once, often before the child has
# set its parent-death signal: the child must notice and not run.
PARENT = """
import os, sys
from pbench_runner import procs
procs.spawn(["sleep", sys.argv[1]])
os._exit(0)
"""


def test_a_child_whose_parent_died_before_it_started_does_not_run() -> None:
    marker = f"{random.uniform(40, 50):.6f}"
    for _ in range(40):
        subprocess.run([sys.executable, "-c", PARENT, marker], check=True, timeout=30)
    assert procs.wait_until(lambda: not running(f"sleep {marker}"), 10)


def test_a_program_that_cannot_be_run_raises_as_popen_would(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # behind setpriv and the parent check it would only be an exit status of 127
    with pytest.raises(FileNotFoundError, match="no-such-program"):
        procs.spawn(["no-such-program-3e7"])
    with pytest.raises(FileNotFoundError):
        procs.spawn([str(tmp_path / "absent")])
    script = tmp_path / "not-executable"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(PermissionError):
        procs.spawn([str(script)])
    with pytest.raises(FileNotFoundError):
        procs.spawn(["./not-executable-either"], cwd=tmp_path)
    script.chmod(0o755)
    proc = procs.spawn(["./not-executable"], cwd=tmp_path)
    assert proc.wait(timeout=10) == 0
