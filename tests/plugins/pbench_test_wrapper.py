"""A hook wrapper around ``pbench_sample_started``: it runs only when pbench
calls its hooks through pluggy's hook caller."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from pbench_runner import hookimpl


@hookimpl(wrapper=True)
def pbench_sample_started(run_id: str, sample_dir: Path, group: str) -> Iterator[None]:
    with open(os.environ["TEST_OBSERVER_EVENTS"], "a") as fh:
        fh.write(json.dumps({"event": "wrapped", "sample": sample_dir.name}) + "\n")
    return (yield)
