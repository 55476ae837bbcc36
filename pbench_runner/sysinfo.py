"""Sysinfo: named items of a host's configuration, collected in parallel.

A plugin answers :func:`~pbench_runner.hookspecs.pbench_sysinfo_items` with
:class:`SysinfoItem` objects.  ``--sysinfo`` selects them: ``default``,
``all``, ``none`` or a comma-separated list of item names.  Each item writes
files into its own directory, ``<host>/<item>/``; an item that fails or runs
past its deadline is recorded in ``<host>/sysinfo.json`` and never fails the
run.
"""

from __future__ import annotations

import contextvars
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbench_runner import procs
from pbench_runner.errors import UsageError


@dataclass(frozen=True)
class SysinfoItem:
    """One piece of a host's configuration."""

    name: str
    summary: str
    #: writes the item's files into the directory it is given
    collect: Callable[[Path], None]
    default: bool = True
    timeout: float = 30.0


def select_items(available: Sequence[SysinfoItem], selection: str) -> list[SysinfoItem]:
    """The items named by a ``--sysinfo`` value, in a stable order."""
    by_name = {item.name: item for item in available}
    selection = selection.strip()
    if selection in ("", "none"):
        return []
    if selection == "default":
        return [item for item in available if item.default]
    if selection == "all":
        return list(available)
    chosen = []
    for name in (part.strip() for part in selection.split(",")):
        if name not in by_name:
            known = ", ".join(sorted(by_name)) or "none"
            raise UsageError(
                f"unknown sysinfo item {name!r}; use default, all, none or some of: {known}"
            )
        chosen.append(by_name[name])
    return chosen


#: the monotonic time the sysinfo item running in this thread must end by
_item_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "sysinfo_item_deadline", default=None
)


def time_left(timeout: float) -> float:
    """``timeout``, cut to what is left of the current item's deadline."""
    deadline = _item_deadline.get()
    if deadline is None:
        return timeout
    return max(0.1, min(timeout, deadline - time.monotonic()))


def run_command(argv: Sequence[str], out: Path, timeout: float = 20.0) -> None:
    """Run a command for a sysinfo item, its output (stdout and stderr) in ``out``.

    The command gets ``timeout`` seconds, and never more than its item has
    left; then it and everything it started (its process group) are killed.
    Raises ``FileNotFoundError`` when the program is absent and
    ``RuntimeError`` when it fails or runs out of time, so that the item is
    recorded as failed.
    """
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(f"{argv[0]} is not installed")
    status = run_bounded(argv, out, subprocess.STDOUT, time_left(timeout))
    if status != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with status {status}")


def run_bounded(argv: Sequence[str], out: Path, err: Any, timeout: float) -> int:
    """Run ``argv`` (stdout in ``out``) in its own process group; kill the group at
    ``timeout``; return its exit status."""
    env = {**os.environ, "LC_ALL": "C"}
    with open(out, "wb") as fh:
        proc = procs.spawn(argv, stdout=fh, stderr=err, env=env)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            procs.stop(proc, sig=signal.SIGKILL)
            raise RuntimeError(
                f"{' '.join(argv)} did not finish within {timeout:.1f} s (stopped)"
            ) from None


def collect(items: Sequence[SysinfoItem], outdir: Path) -> dict[str, dict[str, object]]:
    """Collect ``items`` in parallel into ``outdir/<item>/``; return each one's status.

    Each item has its own deadline: its commands are cut to what it has left,
    and an item still running at its deadline is recorded as failed.  The
    status of every item, ``{"ok": bool, "seconds": float, "error": str}``,
    is also written to ``outdir/sysinfo.json``.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    status: dict[str, dict[str, object]] = {}
    if not items:
        (outdir / "sysinfo.json").write_text("{}\n")
        return status
    began = time.monotonic()

    def one(item: SysinfoItem) -> dict[str, object]:
        _item_deadline.set(began + item.timeout)
        target = outdir / item.name
        target.mkdir(exist_ok=True)
        try:
            item.collect(target)
        except Exception as exc:  # an item failing is data, not a crash
            return {
                "ok": False,
                "seconds": round(time.monotonic() - began, 3),
                "error": f"{type(exc).__name__}: {exc}",
            }
        return {"ok": True, "seconds": round(time.monotonic() - began, 3)}

    # Every item at once, so that each deadline counts from the same start.
    pool = ThreadPoolExecutor(max_workers=len(items), thread_name_prefix="sysinfo")
    futures = {item.name: (item, pool.submit(one, item)) for item in items}
    late = []
    for name, (item, future) in sorted(futures.items(), key=lambda kv: kv[1][0].timeout):
        try:
            # a little grace: the item's own commands stop at its deadline
            status[name] = future.result(
                timeout=max(0.0, began + item.timeout + 1 - time.monotonic())
            )
        except FutureTimeout:
            late.append(future)
            status[name] = {
                "ok": False,
                "seconds": item.timeout,
                "error": f"did not finish within its deadline of {item.timeout:g} s",
            }
    wait(late, timeout=2.0)  # its commands are bounded: let it end before its files go
    pool.shutdown(wait=False, cancel_futures=True)
    (outdir / "sysinfo.json").write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")
    return status
