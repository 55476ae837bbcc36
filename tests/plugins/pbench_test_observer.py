"""A cross-cutting plugin that records every lifecycle event it sees.

Events go, one JSON line each, to the file named by $TEST_OBSERVER_EVENTS.
``pbench_test_broken_observer`` raises in ``pbench_sample_started``, to show
that a broken observer never stops the run or the other observers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pbench_runner import hookimpl


def _record(event: str, **fields: Any) -> None:
    with open(os.environ["TEST_OBSERVER_EVENTS"], "a") as fh:
        fh.write(json.dumps({"event": event, **{k: str(v) for k, v in fields.items()}}) + "\n")


@hookimpl
def pbench_run_started(run_id: str, result_dir: Path, hosts: Sequence[str]) -> None:
    _record("run_started", run_id=run_id, hosts=",".join(hosts))


@hookimpl
def pbench_sample_started(run_id: str, sample_dir: Path, group: str) -> None:
    _record("sample_started", sample=sample_dir.name, group=group)


@hookimpl
def pbench_tools_stopped(run_id: str, sample_dir: Path, group: str) -> None:
    _record("tools_stopped", sample=sample_dir.name, group=group)


@hookimpl
def pbench_sample_finished(
    run_id: str, sample_dir: Path, group: str, result: Mapping[str, Any]
) -> None:
    _record("sample_finished", sample=sample_dir.name, group=group, status=result["status"])


@hookimpl
def pbench_tool_data_received(host: str, directory: Path, kind: str) -> None:
    _record("data_received", host=host, kind=kind)


@hookimpl
def pbench_run_finished(run_id: str, result_dir: Path, exit_status: int) -> None:
    _record("run_finished", exit_status=exit_status)
