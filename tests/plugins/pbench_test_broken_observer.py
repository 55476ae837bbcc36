"""An observer with a bug: it raises in ``pbench_sample_started``."""

from __future__ import annotations

from pathlib import Path

from pbench_runner import hookimpl


@hookimpl
def pbench_sample_started(run_id: str, sample_dir: Path, group: str) -> None:
    raise RuntimeError("observer bug")
