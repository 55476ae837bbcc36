"""The kernel counters a host reads around a sample: parsers on fixed /proc text,
summaries of fixed snapshots worked out by hand, and real snapshots around real
work checked against what the kernel says the work cost."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from pbench_runner import counters

from .conftest import block_backed

STAT = """\
cpu  3746 0 1729 119113 382 0 48 8 0 0
cpu0 967 0 649 60883 21 0 12 2 0 0
cpu1 2779 0 1080 58230 361 0 36 6 0 0
intr 1234 0 0
ctxt 99
"""

MEMINFO = """\
MemTotal:       24683584 kB
MemFree:        24365780 kB
MemAvailable:   24333784 kB
Buffers:            5236 kB
Cached:           114764 kB
SwapCached:            0 kB
"""

DISKSTATS = """\
   7       0 loop0 10 0 80 0 0 0 0 0 0 4 0 0 0 0 0 0 0
   8       0 sda 33949 8838 2136330 9193 14224 16269 2935824 7288 0 5636 17097 4519 39 118056 471 2322 144
   8       1 sda1 33000 8000 2100000 9000 14000 16000 2900000 7000 0 5500 17000
 253       0 dm-0 100 0 800 10 200 0 1600 20 0 30 30
   1       0 ram0 0 0 0 0 0 0 0 0 0 0 0
 104       0 cciss/c0d0 1 0 8 0 2 0 16 0 0 1 1
"""

NET_DEV = """\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  116477     944    0    0    0     0          0         0   116477     944    0    0    0     0       0          0
  eth0: 244302660    5074    0    0    0     0          0         0   254592    2741    0    0    0     0       0          0
"""

PRESSURE = """\
some avg10=0.01 avg60=0.18 avg300=0.50 total=5398367
full avg10=0.00 avg60=0.00 avg300=0.00 total=12
"""


def test_parse_stat_keeps_the_eight_fields_per_cpu() -> None:
    cpus = counters.parse_stat(STAT)
    assert set(cpus) == {"cpu", "cpu0", "cpu1"}
    assert cpus["cpu"] == {
        "user": 3746,
        "nice": 0,
        "system": 1729,
        "idle": 119113,
        "iowait": 382,
        "irq": 0,
        "softirq": 48,
        "steal": 8,
    }
    assert cpus["cpu1"]["iowait"] == 361
    # an old kernel's line with four fields: the others are 0
    assert counters.parse_stat("cpu 1 2 3 4\n")["cpu"]["steal"] == 0


def test_parse_meminfo_in_kb() -> None:
    assert counters.parse_meminfo(MEMINFO) == {
        "MemTotal": 24683584,
        "MemFree": 24365780,
        "MemAvailable": 24333784,
        "Buffers": 5236,
        "Cached": 114764,
    }


def test_parse_diskstats_keeps_whole_devices_only() -> None:
    whole = {"loop0", "sda", "dm-0", "ram0", "cciss!c0d0"}
    disks = counters.parse_diskstats(DISKSTATS, whole, stacked={"dm-0"})
    assert set(disks) == {"sda", "dm-0", "cciss/c0d0"}  # no partition, loop or ram
    assert disks["sda"] == {
        "reads": 33949,
        "read_sectors": 2136330,
        "writes": 14224,
        "write_sectors": 2935824,
        "io_ticks_ms": 5636,
    }
    assert disks["dm-0"]["stacked"] == 1
    # without /sys/block every device is kept but loop and ram
    assert set(counters.parse_diskstats(DISKSTATS)) == {"sda", "sda1", "dm-0", "cciss/c0d0"}


def test_parse_net_dev_and_pressure_and_cgroup_cpu() -> None:
    net = counters.parse_net_dev(NET_DEV)
    assert net["eth0"] == {
        "rx_bytes": 244302660,
        "rx_packets": 5074,
        "tx_bytes": 254592,
        "tx_packets": 2741,
    }
    assert set(net) == {"lo", "eth0"}
    assert counters.parse_pressure(PRESSURE) == {"some": 5398367, "full": 12}
    assert counters.parse_pressure("some avg10=0.00 total=7\n") == {"some": 7}
    assert counters.parse_cgroup_cpu("60194670509\n", 1) == 60194670509
    assert counters.parse_cgroup_cpu("usage_usec 57439680\nuser_usec 3\n", 1000) == 57439680000
    assert counters.parse_cgroup_cpu("garbage\n", 1) is None
    assert counters.parse_cgroup_cpu("", 1000) is None


def _cpu(user: int, system: int, idle: int, iowait: int) -> dict[str, int]:
    ticks = {"user": user, "system": system, "idle": idle, "iowait": iowait}
    return {**dict.fromkeys(counters.CPU_FIELDS, 0), **ticks}


def _snap(**kw: Any) -> dict[str, Any]:
    return {"version": 1, "user_hz": 100, **kw}


START = _snap(
    time=1000.0,
    monotonic=10.0,
    cpu={
        "cpu": _cpu(100, 50, 800, 50),
        "cpu0": _cpu(40, 20, 400, 0),
        "cpu1": _cpu(60, 30, 400, 50),
    },
    memory={"MemTotal": 8388608, "MemAvailable": 6291456},
    disks={
        "vda": {"reads": 10, "read_sectors": 1000, "writes": 0, "write_sectors": 0, "io_ticks_ms": 0},
        "dm-0": {"reads": 0, "read_sectors": 0, "writes": 0, "write_sectors": 0, "io_ticks_ms": 0, "stacked": 1},
        "vdb": {"reads": 5, "read_sectors": 900, "writes": 0, "write_sectors": 0, "io_ticks_ms": 0},
    },
    net={
        "lo": {"rx_bytes": 0, "rx_packets": 0, "tx_bytes": 0, "tx_packets": 0},
        "eth0": {"rx_bytes": 1000, "rx_packets": 1, "tx_bytes": 500, "tx_packets": 1},
    },
    pressure={"cpu": {"some": 0}},
)  # fmt: skip
STOP = _snap(
    time=1001.6,  # the wall clock stepped: the monotonic clock wins
    monotonic=11.5,
    cpu={
        "cpu": _cpu(160, 70, 1000, 70),
        "cpu0": _cpu(50, 30, 530, 0),
        "cpu1": _cpu(110, 40, 470, 70),
    },
    memory={"MemTotal": 8388608, "MemAvailable": 5242880},
    disks={
        "vda": {"reads": 20, "read_sectors": 3048, "writes": 8, "write_sectors": 4096, "io_ticks_ms": 150},
        "dm-0": {"reads": 0, "read_sectors": 0, "writes": 8, "write_sectors": 4096, "io_ticks_ms": 150, "stacked": 1},
        "vdb": {"reads": 1, "read_sectors": 8, "writes": 0, "write_sectors": 0, "io_ticks_ms": 0},
    },
    net={
        "lo": {"rx_bytes": 1000, "rx_packets": 2, "tx_bytes": 1000, "tx_packets": 2},
        "eth0": {"rx_bytes": 4072, "rx_packets": 4, "tx_bytes": 2036, "tx_packets": 3},
    },
    pressure={"cpu": {"some": 150000}},
)  # fmt: skip


def test_summarize_two_fixed_snapshots() -> None:
    s = counters.summarize(START, STOP)
    assert s["seconds"] == pytest.approx(1.5)
    cpu = s["cpu"]
    # deltas: user 60, system 20, idle 200, iowait 20: 300 ticks, 80 busy
    assert cpu["jiffies"] == {"busy": 80, "total": 300}
    assert cpu["cpu_seconds"] == pytest.approx(0.8)
    assert cpu["cpu_seconds_source"] == "/proc/stat"
    assert cpu["ncpu"] == 2
    assert cpu["busy_pct"] == pytest.approx(100 * 0.8 / (1.5 * 2))
    # cpu0: 10 + 10 busy of 150; cpu1: 50 + 10 busy of 150 (its 20 iowait is not busy)
    assert cpu["per_cpu_busy_pct"] == pytest.approx({"cpu0": 20 / 1.5, "cpu1": 40.0})
    assert "note" not in cpu
    mem = s["memory"]
    assert mem["definition"] == "MemTotal - MemAvailable"
    assert (mem["used_mib_start"], mem["used_mib_stop"]) == (2048, 3072)
    assert mem["used_mib_mean"] == 2560
    assert mem["total_mib"] == 8192
    disk = s["disk"]
    # vda: 2048 sectors read (1 MiB), 4096 written (2 MiB); dm-0 sits on it and is
    # not counted again; vdb's counters went back (a reset) and it is skipped
    assert (disk["read_bytes"], disk["write_bytes"]) == (1 << 20, 2 << 20)
    assert disk["kib_s"] == pytest.approx(3072 / 1.5)
    assert disk["read_kib_s"] == pytest.approx(1024 / 1.5)
    assert disk["write_bytes_s"] == pytest.approx((2 << 20) / 1.5)
    assert disk["devices"]["vda"]["util_pct"] == pytest.approx(10.0)  # 150 ms of 1.5 s
    assert disk["devices"]["dm-0"]["stacked"] is True
    assert disk["devices"]["dm-0"]["write_bytes"] == 2 << 20
    assert set(disk["skipped"]) == {"vdb"}
    net = s["net"]
    # eth0: 3072 bytes in, 1536 out; lo left out of the totals
    assert (net["rx_bytes"], net["tx_bytes"]) == (3072, 1536)
    assert net["kib_s"] == pytest.approx(4.5 / 1.5)
    assert net["interfaces"]["lo"]["rx_bytes"] == 1000
    assert s["pressure"] == {"cpu": {"some_pct": pytest.approx(10.0)}}


def test_summarize_prefers_the_finer_cgroup_cpu_time_when_it_agrees() -> None:
    path = "/sys/fs/cgroup/cpuacct/cpuacct.usage"
    start = {**START, "cgroup_cpu": {"ns": 10**9, "source": path, "resolution_ns": 1}}
    stop = {**STOP, "cgroup_cpu": {"ns": 10**9 + 810_000_000, "source": path, "resolution_ns": 1}}
    cpu = counters.summarize(start, stop)["cpu"]
    assert cpu["cpu_seconds"] == pytest.approx(0.81)
    assert cpu["cpu_seconds_source"] == path
    assert cpu["busy_pct"] == pytest.approx(27.0)
    # a cgroup that saw far less than /proc/stat is not the host's: not used
    stop["cgroup_cpu"] = {"ns": 10**9 + 300_000_000, "source": path, "resolution_ns": 1}
    cpu = counters.summarize(start, stop)["cpu"]
    assert cpu["cpu_seconds"] == pytest.approx(0.8)
    assert cpu["cpu_seconds_source"] == "/proc/stat"
    assert "not the whole host's" in cpu["note"]


def test_summarize_of_a_tiny_or_empty_window() -> None:
    start = _snap(
        time=5.0, monotonic=1.0, cpu={"cpu": _cpu(1, 0, 10, 0), "cpu0": _cpu(1, 0, 10, 0)}
    )
    stop = _snap(
        time=5.005, monotonic=1.005, cpu={"cpu": _cpu(1, 0, 10, 0), "cpu0": _cpu(1, 0, 10, 0)}
    )
    s = counters.summarize(start, stop)
    assert s["cpu"]["per_cpu_busy_pct"] == {"cpu0": None}  # no tick went by
    assert s["cpu"]["busy_pct"] == 0.0
    assert "approximate" in s["cpu"]["note"]
    assert set(s) == {"seconds", "start_time", "stop_time", "cpu"}
    assert counters.summarize({}, {}) == {"seconds": 0.0, "start_time": None, "stop_time": None}


def test_snapshot_is_json_and_survives_missing_files(monkeypatch: pytest.MonkeyPatch) -> None:
    snap = counters.snapshot()
    assert json.loads(json.dumps(snap)) == snap
    assert {"time", "monotonic", "user_hz", "cpu", "memory", "disks", "net"} <= set(snap)
    assert snap["memory"]["MemTotal"] > 0
    assert not any(name.startswith(("loop", "ram")) for name in snap["disks"])
    assert counters._read("/proc/no-such-file") is None
    assert counters._read("/proc") is None  # a directory
    monkeypatch.setattr(counters, "_read", lambda path: None)
    bare = counters.snapshot()
    assert set(bare) == {"version", "time", "monotonic", "user_hz"}
    assert set(counters.summarize(bare, bare)) == {"seconds", "start_time", "stop_time"}


def _child_cpu_seconds(seconds: float) -> tuple[float, dict[str, Any]]:
    """A child spins for ``seconds``: (its CPU time as the kernel tells its
    parent, the host's counters over its life)."""
    code = f"import time\nend = time.perf_counter() + {seconds}\nwhile time.perf_counter() < end: pass\n"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = counters.snapshot()
    subprocess.run([sys.executable, "-S", "-c", code], check=True)
    stop = counters.snapshot()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return child, counters.summarize(start, stop)


def _others_cpu_seconds(seconds: float) -> float:
    """The host's CPU seconds while this process sleeps for ``seconds``: other work."""
    start = counters.snapshot()
    time.sleep(seconds)
    return float(counters.summarize(start, counters.snapshot())["cpu"]["cpu_seconds"])


@pytest.mark.parametrize("seconds", [0.2, 0.05])
def test_cpu_seconds_match_a_child_process_cpu_time(seconds: float) -> None:
    """The host's CPU seconds over a CPU-bound child's life are the child's own
    CPU time (rusage), within 15 %.  Other work on the host can only add: a few
    tries are allowed for a quiet moment, and a host kept busy by others (as
    measured while this process sleeps) skips the test."""
    tries, quiet = [], 0
    for _ in range(5):
        child, summary = _child_cpu_seconds(seconds)
        cpu = summary["cpu"]
        tries.append((round(child, 4), round(cpu["cpu_seconds"], 4), cpu["cpu_seconds_source"]))
        assert cpu["cpu_seconds"] >= 0.85 * child, tries
        # the same figure as busy % of the window's CPU capacity
        capacity = summary["seconds"] * cpu["ncpu"]
        assert cpu["busy_pct"] == pytest.approx(min(100, 100 * cpu["cpu_seconds"] / capacity))
        if abs(cpu["cpu_seconds"] - child) <= 0.15 * child:
            return
        others = _others_cpu_seconds(summary["seconds"])
        quiet += others <= 0.05 * child
    if not quiet:
        pytest.skip(f"the host is busy with other work: (child s, host s, source) = {tries}")
    pytest.fail(f"never within 15 %: (child s, host s, source) = {tries}")


def test_a_direct_write_shows_on_a_device(tmp_path: Path) -> None:
    project = Path(__file__).resolve().parent.parent
    places = [Path("/var/tmp"), project, tmp_path]
    usable = [p for p in places if p.is_dir() and os.access(p, os.W_OK) and block_backed(p)]
    if not usable:
        pytest.skip(
            f"none of {', '.join(map(str, places))} is on a block device (tmpfs or "
            "overlay): no device would show the writes"
        )
    with tempfile.TemporaryDirectory(dir=usable[0], prefix="pbench-counters-") as where:
        target = Path(where) / "x"
        start = counters.snapshot()
        proc = subprocess.run(
            ["dd", "if=/dev/zero", f"of={target}", "bs=1M", "count=50", "oflag=direct"],
            capture_output=True,
            text=True,
        )
        stop = counters.snapshot()
    if proc.returncode != 0 and "Invalid argument" in proc.stderr:
        pytest.skip(f"{usable[0]} refuses O_DIRECT: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    disk = counters.summarize(start, stop)["disk"]
    written = {name: d["write_bytes"] for name, d in disk["devices"].items()}
    assert max(written.values()) >= 45 << 20, written
    assert disk["write_bytes"] >= 45 << 20  # the total counts it too
