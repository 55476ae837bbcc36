"""Per-host numbers that are right for every sample, checked against outside readings.

Each test runs the real CLI (redis-server, a meister, the sink, the tools) and
compares the per-host summary with what another reader saw: the benchmark's
own CPU time, the bytes ``dd`` wrote, and what sar, PCP and node_exporter
recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .conftest import HOST, block_backed, latest_result

SPIN = """
import time

def bench_spin(sample):
    began = time.thread_time()
    while time.thread_time() - began < 0.05:
        pass
"""


def _samples(result: Path, iteration: str) -> list[dict[str, Any]]:
    return [
        json.loads(path.read_text())
        for path in sorted((result / iteration).glob("sample*/result.json"))
    ]


def test_a_50_ms_cpu_bound_sample_gets_the_cpu_time_it_used(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    """sar and vmstat at 3 s see nothing of a 50 ms sample; the counters do."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "bench_spin.py").write_text(textwrap.dedent(SPIN))
    pbench("register-tool", "--name=sar", "--", "--interval=3", check=True)
    pbench("register-tool", "--name=vmstat", "--", "--interval=3", check=True)
    proc = pbench("run", "--samples=5", "--sysinfo=none", "--no-progress")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    samples = _samples(latest_result(run_dir), "1-bench_spin")
    ratios = []
    for sample in samples:
        cpu = sample["hosts"][HOST]["cpu_busy_pct"]
        assert cpu["source"]["mean"] == "counters"
        # the tools' 3 s rows cannot give a peak of a 50 ms window, and say so
        assert cpu["peak"] is None and "interval" in cpu["peak_note"]
        # the host's CPU time over the window against the benchmark's own
        ratios.append(cpu["cpu_seconds"] / sample["cpu_s"])
    # within 15 %: the least disturbed sample (on a loaded 2-core CI machine a
    # neighbour's CPU time lands in some windows: the host's counters see all)
    assert 0.85 <= min(ratios) <= 1.15, ratios
    assert statistics.median(ratios) < 1.5, ratios


def test_200_mb_written_in_under_a_second_are_counted_on_the_host(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    places = [Path("/var/tmp"), tmp_path]
    usable = [p for p in places if os.access(p, os.W_OK) and block_backed(p)]
    if not usable:
        pytest.skip(f"none of {places} is on a block device (tmpfs, overlay): no device counts")
    target = usable[0] / f"pbench-test-dd-{os.getpid()}.out"
    pbench("register-tool", "--name=vmstat", "--", "--interval=3", check=True)
    dd = f"dd if=/dev/zero of={target} bs=1M count=200 oflag=direct"
    proc = pbench("user-benchmark", "--sysinfo=none", "--", "sh", "-c", f"{dd} && rm {target}")
    target.unlink(missing_ok=True)
    if proc.returncode != 0 and "Invalid argument" in proc.stderr:
        pytest.skip(f"{usable[0]} refuses O_DIRECT")
    assert proc.returncode == 0, proc.stderr
    (sample,) = _samples(latest_result(run_dir), "1-default")
    disk = sample["hosts"][HOST]["disk_kib_s"]
    assert disk["write_bytes"] >= 180e6, disk
    assert disk["source"]["mean"] == "counters"
    # user-benchmark prints the same summary as pbench run
    assert f"host {HOST}: CPU busy %" in proc.stderr and "disk KiB/s" in proc.stderr
    it = json.loads((latest_result(run_dir) / "1-default" / "result.json").read_text())
    assert it["hosts"][HOST]["disk_kib_s"]["write_bytes"] == disk["write_bytes"]


@pytest.mark.skipif(
    not (shutil.which("pmlogger") and shutil.which("prometheus")),
    reason="needs pcp and prometheus (scripts/install.sh installs them)",
)
def test_memory_used_means_the_same_whichever_tool_measured_it(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path
) -> None:
    """sar, PCP and node_exporter each give the peak; all mean MemTotal - MemAvailable.

    Each tool's peak is set against the counters' reading of the same sample:
    page cache counted as used (PCP's mem.util.used, sar's kbmemused) would
    put it hundreds of MiB or more away.
    """
    for tool in ("sar", "pcp", "node_exporter"):
        group = f"only-{tool}"
        pbench(
            "register-tool", f"--name={tool}", f"--group={group}", "--", "--interval=1", check=True
        )
        proc = pbench(
            "user-benchmark", f"--tool-group={group}", "--sysinfo=none", "--", "sleep", "3.5"
        )
        assert proc.returncode == 0, proc.stderr
        (sample,) = _samples(latest_result(run_dir), "1-default")
        mem = sample["hosts"][HOST]["mem_used_mib"]
        assert mem["definition"] == "MemTotal - MemAvailable"
        assert mem["source"] == {"mean": "counters", "peak": tool}, mem
        low, high = sorted((mem["start"], mem["stop"]))
        assert low - 64 <= mem["peak"] <= high + 64, (tool, mem)
