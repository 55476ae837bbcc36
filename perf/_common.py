"""Helpers shared by the benchmark scripts in perf/."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def timed_pbench(env: dict[str, str], *args: str, cwd: Path | None = None) -> float:
    """Wall seconds of one ``pbench`` command (its output discarded; it must succeed)."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pbench_runner", *args],
        env=env,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def peak_rss_mib(pid: int) -> float:
    """A live process's peak resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")
