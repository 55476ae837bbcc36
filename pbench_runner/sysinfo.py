"""Sysinfo: named items of a host's configuration, collected in parallel.

A plugin answers :func:`~pbench_runner.hookspecs.pbench_sysinfo_items` with
:class:`SysinfoItem` objects.  ``--sysinfo`` selects them: ``default``,
``all``, ``none`` or a comma-separated list of item names.  Each item writes
files into its own directory, ``<host>/<item>/``; an item that fails or runs
past its deadline is recorded in ``<host>/sysinfo.json`` and never fails the
run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

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


def run_command(argv: Sequence[str], out: Path, timeout: float = 20.0) -> None:
    """Run a command for a sysinfo item, its output (stdout and stderr) in ``out``.

    Raises ``FileNotFoundError`` when the program is absent and
    ``RuntimeError`` when it fails, so that the item is recorded as failed.
    """
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(f"{argv[0]} is not installed")
    env = {**os.environ, "LC_ALL": "C"}
    with open(out, "wb") as fh:
        proc = subprocess.run(
            list(argv), stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, env=env, check=False
        )
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with status {proc.returncode}")


def collect(items: Sequence[SysinfoItem], outdir: Path) -> dict[str, dict[str, object]]:
    """Collect ``items`` in parallel into ``outdir/<item>/``; return each one's status.

    The status of every item, ``{"ok": bool, "seconds": float, "error": str}``,
    is also written to ``outdir/sysinfo.json``.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    status: dict[str, dict[str, object]] = {}
    if not items:
        (outdir / "sysinfo.json").write_text("{}\n")
        return status

    def one(item: SysinfoItem) -> None:
        began = time.monotonic()
        target = outdir / item.name
        target.mkdir(exist_ok=True)
        try:
            item.collect(target)
        except Exception as exc:  # an item failing is data, not a crash
            status[item.name] = {
                "ok": False,
                "seconds": round(time.monotonic() - began, 3),
                "error": f"{type(exc).__name__}: {exc}",
            }
        else:
            status[item.name] = {"ok": True, "seconds": round(time.monotonic() - began, 3)}

    pool = ThreadPoolExecutor(max_workers=min(8, len(items)), thread_name_prefix="sysinfo")
    futures = {pool.submit(one, item): item for item in items}
    deadline = max(item.timeout for item in items)
    _done, pending = wait(futures, timeout=deadline)
    for future in pending:
        item = futures[future]
        status[item.name] = {"ok": False, "seconds": deadline, "error": "deadline exceeded"}
    pool.shutdown(wait=False, cancel_futures=True)
    (outdir / "sysinfo.json").write_text(json.dumps(status, indent=2, sort_keys=True) + "\n")
    return status
