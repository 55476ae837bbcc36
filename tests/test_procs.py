"""procs.spawn's promise: a child dies with its parent, even in a race."""

from __future__ import annotations

import random
import subprocess
import sys

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
