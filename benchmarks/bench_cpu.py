"""CPU-bound: hashing in C, and arithmetic in pure Python."""

from __future__ import annotations

import hashlib
import time

import pytest


@pytest.mark.parametrize("algorithm", ["sha256", "blake2b"])
def bench_hash(sample, payload: bytes, algorithm: str) -> None:
    """Hash 1 MiB blocks for about two seconds; record MB/s."""
    digest = hashlib.new(algorithm)
    began = time.perf_counter()
    blocks = 0
    while time.perf_counter() - began < 2.0:
        digest.update(payload)
        blocks += 1
    sample.record("throughput", blocks / (time.perf_counter() - began), "MB/s", True)


def bench_python_loop(sample) -> None:
    """A sum of squares over ten million terms."""
    began = time.perf_counter()
    total = sum(i * i for i in range(10_000_000))
    assert total > 0
    sample.record("mterms_per_s", 10 / (time.perf_counter() - began), "M/s", True)
