"""Fixtures for the demo benchmarks (pytest's conftest.py, as usual)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def scratch_file() -> Iterator[Path]:
    """A file on a real disk (not tmpfs), removed afterwards."""
    base = Path(os.environ.get("PBENCH_SCRATCH", "/var/tmp"))
    path = base / f"pbench-demo-{os.getpid()}.dat"
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def payload() -> bytes:
    """1 MiB of data to hash or copy, made once."""
    return bytes(range(256)) * 4096
