"""Waiting on what a running vmstat has written, instead of sleeping a fixed time."""

from __future__ import annotations

from pathlib import Path

from pbench_runner_tools.sysstat import parse_vmstat

from pbench_runner import procs


def live_vmstat_rows(tm_dir: Path) -> int:
    """The rows vmstat.csv would hold now (the since-boot report left out).

    Counts the live ``vmstat-stdout.txt`` of every sample running in the
    scratch directories of the meisters anywhere under ``tm_dir`` (a run's
    ``tm/``, or a lab host's pbench directory).
    """
    rows = 0
    for path in tm_dir.glob("**/pbench-tm-*/*/vmstat/vmstat-stdout.txt"):
        try:
            rows += len(parse_vmstat(path.read_text(errors="replace")).rows)
        except FileNotFoundError:  # the sample stopped meanwhile
            continue
    return rows


def wait_for_vmstat_rows(tm_dir: Path, rows: int, timeout: float = 20.0) -> None:
    """Wait until the running vmstat has written ``rows`` rows of its own."""
    assert procs.wait_until(lambda: live_vmstat_rows(tm_dir) >= rows, timeout, 0.1), (
        f"vmstat wrote {live_vmstat_rows(tm_dir)} row(s) in {timeout:g} s, not {rows}"
    )
