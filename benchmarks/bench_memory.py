"""Memory: copy a 256 MiB buffer again and again for about two seconds."""

from __future__ import annotations

import time


def bench_copy(sample) -> None:
    src = bytearray(256 << 20)
    began = time.perf_counter()
    copies = 0
    while time.perf_counter() - began < 2.0:
        dst = bytes(src)
        copies += 1
    assert len(dst) == len(src)
    seconds = time.perf_counter() - began
    sample.record("bandwidth", copies * len(src) / seconds / 1e9, "GB/s", True)
