"""Any shell command is a benchmark: here, gzip compressing 64 MiB."""

from __future__ import annotations

import time
from pathlib import Path


def bench_gzip(sample, scratch_file: Path, payload: bytes) -> None:
    scratch_file.write_bytes(payload * 64)
    began = time.perf_counter()
    sample.run(f"gzip -c -1 {scratch_file} > /dev/null")
    sample.record("throughput", 64 / (time.perf_counter() - began), "MB/s", True)
