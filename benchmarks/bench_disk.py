"""Disk: dd with two block sizes, and fio when it is installed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

UNITS = {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}


@pytest.mark.parametrize("block_size", ["64k", "1M"])
def bench_dd(sample, scratch_file: Path, block_size: str) -> None:
    """Write 256 MiB with dd, fsync at the end; record dd's own MB/s."""
    count = (256 << 20) // (64 << 10 if block_size == "64k" else 1 << 20)
    out = sample.run(
        f"LC_ALL=C dd if=/dev/zero of={scratch_file} bs={block_size} count={count} conv=fsync 2>&1"
    )
    match = re.search(r"([\d.]+) ([kMG]?B)/s", out)
    assert match, out
    sample.record("throughput", float(match.group(1)) * UNITS[match.group(2)], "MB/s", True)


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed")
def bench_fio_randread(sample, scratch_file: Path) -> None:
    """4 KiB random reads for three seconds."""
    out = sample.run(
        [
            "fio",
            "--name=randread",
            f"--filename={scratch_file}",
            "--size=128M",
            "--rw=randread",
            "--bs=4k",
            "--runtime=3",
            "--time_based",
            "--output-format=json",
        ]
    )
    sample.record("iops", json.loads(out)["jobs"][0]["read"]["iops"], "IO/s", True)
