"""Per-host summaries of fabricated samples: means from the counters, peaks from
the tools' rows within the sample only, and the samples of an iteration combined."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pbench_runner import counters
from pbench_runner.hostsummary import (
    combine,
    epoch,
    host_series,
    sample_hosts,
    sar_mem_total_kib,
)

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone.utc)
MEM_TOTAL_KB = 8 << 20  # 8 GiB


def _iso(seconds: float, zone: bool = True) -> str:
    when = T0 + timedelta(seconds=seconds)
    return when.isoformat() if zone else when.replace(tzinfo=None).isoformat()


def _cpu(busy: int, idle: int) -> dict[str, int]:
    return {**dict.fromkeys(counters.CPU_FIELDS, 0), "user": busy, "idle": idle}


def _snap(at: float, busy: int, idle: int, avail_kb: int, written_sectors: int) -> dict[str, Any]:
    return {
        "version": 1,
        "time": T0.timestamp() + at,
        "monotonic": 100.0 + at,
        "user_hz": 100,
        "cpu": {"cpu": _cpu(busy, idle), "cpu0": _cpu(busy, idle)},
        "memory": {"MemTotal": MEM_TOTAL_KB, "MemAvailable": avail_kb},
        "disks": {
            "vda": {
                "reads": 0,
                "read_sectors": 0,
                "writes": 1,
                "write_sectors": written_sectors,
                "io_ticks_ms": 0,
            }
        },
        "net": {
            "lo": {"rx_bytes": 0, "rx_packets": 0, "tx_bytes": 0, "tx_packets": 0},
            "eth0": {"rx_bytes": 0, "rx_packets": 0, "tx_bytes": 0, "tx_packets": 0},
        },
    }


def _sar_cpu(rows: Sequence[tuple[float, float]]) -> str:
    """sar-cpu.csv as the sysstat plugin writes it: (seconds after T0, % busy)."""
    lines = ["hostname,interval,timestamp,CPU,%usr,%iowait,%idle"]
    for at, busy in rows:
        lines.append(f"node1,3,{_iso(at)},-1,{busy - 1:.2f},1.00,{99 - busy:.2f}")
        lines.append(f"node1,3,{_iso(at)},0,0.00,0.00,100.00")  # one CPU's row: not the host's
    return "\n".join(lines) + "\n"


def _sample(
    parent: Path,
    seconds: float,
    sar_rows: Sequence[tuple[float, float]],
    busy_ticks: int,
    name: str = "sample1",
) -> Path:
    """A sample whose counters span [T0, T0 + seconds] on one CPU."""
    host = parent / name / "tools-default" / "node1"
    (host / "sar").mkdir(parents=True)
    ticks = round(seconds * 100)
    start = _snap(0, 1000, 9000, avail_kb=6 << 20, written_sectors=0)
    stop = _snap(
        seconds,
        1000 + busy_ticks,
        9000 + ticks - busy_ticks,
        avail_kb=5 << 20,
        written_sectors=2048,
    )
    (host / "counters.json").write_text(json.dumps({"start": start, "stop": stop}))
    (host / "sar" / "sar-cpu.csv").write_text(_sar_cpu(sar_rows))
    return parent / name


def test_means_come_from_the_counters_and_peaks_from_rows_within_the_sample(
    tmp_path: Path,
) -> None:
    # a 10 s sample, 40 % busy by the counters; sar every 3 s, with rows before
    # and after the sample that are busier than anything within it
    rows = [(-3, 99.0), (3, 30.0), (6, 70.0), (9, 20.0), (12, 95.0)]
    sample = _sample(tmp_path, 10.0, rows, busy_ticks=400)
    node = sample_hosts(sample, "default")["node1"]
    cpu = node["cpu_busy_pct"]
    assert cpu["mean"] == pytest.approx(40.0)
    assert cpu["peak"] == pytest.approx(70.0)  # not 99 or 95: those rows are outside
    assert cpu["source"] == {"mean": "counters", "peak": "sar"}
    assert cpu["definition"] == counters.CPU_BUSY_DEFINITION
    assert cpu["cpu_seconds"] == pytest.approx(4.0)
    assert cpu["per_cpu"] == {"cpu0": pytest.approx(40.0)}
    mem = node["mem_used_mib"]
    assert mem["definition"] == "MemTotal - MemAvailable"
    assert (mem["start"], mem["stop"], mem["mean"]) == (2048, 3072, 2560)
    assert mem["peak"] is None and "no tool recorded it" in mem["peak_note"]
    disk = node["disk_kib_s"]
    assert disk["write_bytes"] == 1 << 20
    assert disk["mean"] == pytest.approx(1024 / 10)
    assert disk["per_device"]["vda"]["write_bytes"] == 1 << 20
    assert node["net_kib_s"]["mean"] == 0
    assert node["window"]["seconds"] == pytest.approx(10.0)
    assert json.loads(json.dumps(node)) == node


def test_a_sample_shorter_than_two_intervals_has_no_peak(tmp_path: Path) -> None:
    sample = _sample(tmp_path, 0.05, [(3, 50.0), (6, 60.0)], busy_ticks=5)
    cpu = sample_hosts(sample, "default", intervals={"node1": {"sar": 3}})["node1"]["cpu_busy_pct"]
    assert cpu["mean"] == pytest.approx(100.0)  # 5 busy ticks of 5
    assert cpu["peak"] is None
    assert cpu["peak_note"] == (
        "the sample lasted 0.05 s, under two intervals (2 x 3 s) of sar: no peak"
    )
    assert cpu["source"] == {"mean": "counters", "peak": None}
    # sar writes its first row an interval after it starts: usually none at all
    sample = _sample(tmp_path, 0.05, [], busy_ticks=5, name="sample2")
    node = sample_hosts(sample, "default", intervals={"node1": {"sar": 3}})["node1"]
    for measure in ("cpu_busy_pct", "mem_used_mib", "disk_kib_s", "net_kib_s"):
        assert node[measure]["peak"] is None
        assert node[measure]["peak_note"] == (
            "the sample lasted 0.05 s, under two intervals (2 x 3 s) of sar: no peak"
        )
        assert node[measure]["mean"] is not None


def test_a_row_counts_only_when_most_of_its_interval_is_within_the_sample(
    tmp_path: Path,
) -> None:
    # a 7 s sample: the row at +0 s stands for [-3, 0] (to [-2.5, 0.5], as
    # whole-second timestamps are truncated), mostly before the sample
    sample = _sample(tmp_path, 7.0, [(0, 90.0), (4, 30.0), (7, 35.0)], busy_ticks=200)
    cpu = sample_hosts(sample, "default", intervals={"node1": {"sar": 3}})["node1"]["cpu_busy_pct"]
    assert cpu["peak"] == pytest.approx(35.0)
    # a window given by the caller wins over the counters' instants
    windows = {"node1": (T0.timestamp() + 4, T0.timestamp() + 8)}
    cpu = sample_hosts(sample, "default", windows, {"node1": {"sar": 2}})["node1"]["cpu_busy_pct"]
    assert cpu["peak"] is None
    assert cpu["peak_note"] == "1 of sar's rows lie within the sample's 4 s: no peak"
    assert cpu["mean"] == pytest.approx(200 / 7)  # still the counters'


def test_without_counters_the_tools_give_mean_and_peak_as_before(tmp_path: Path) -> None:
    host = tmp_path / "sample1" / "tools-default" / "node1"
    (host / "vmstat").mkdir(parents=True)
    (host / "vmstat" / "vmstat.csv").write_text(
        "timestamp,r,b,free,us,sy,id,wa\n"
        f"{_iso(1, zone=False)},1,0,1000,10,0,80,10\n"  # no zone: UTC, as the tools run
        f"{_iso(2, zone=False)},1,0,1000,30,0,70,0\n"
    )
    node = sample_hosts(tmp_path / "sample1", "default")["node1"]
    assert node["cpu_busy_pct"]["mean"] == pytest.approx(20.0)  # iowait is not busy
    assert node["cpu_busy_pct"]["peak"] == pytest.approx(30.0)
    assert node["cpu_busy_pct"]["source"] == {"mean": "vmstat", "peak": "vmstat"}
    assert "window" not in node
    # within a window that holds none of the rows: neither mean nor peak
    windows = {"node1": (T0.timestamp() + 100, T0.timestamp() + 110)}
    cpu = sample_hosts(tmp_path / "sample1", "default", windows)["node1"]["cpu_busy_pct"]
    assert cpu["mean"] is None and cpu["peak"] is None
    assert "no counters and no tool row within the sample" in cpu["mean_note"]


SAR_MEMORY = (
    "hostname;interval;timestamp;kbmemfree;kbavail;kbmemused;%memused;kbbuffers;kbcached;"
    "kbcommit;%commit;kbactive;kbinact;kbdirty;kbanonpg;kbslab;kbkstack;kbpgtbl;kbvmused\n"
    "vm;1;2026-12-02 17:03:28 UTC;24376352;24344884;85404;0.35;5596;115456;54588;0.22;62076;"
    "55436;684;8256;100776;1360;1044;14124\n"
)


def test_sar_memory_is_total_minus_available(tmp_path: Path) -> None:
    header, row = (line.split(";") for line in SAR_MEMORY.splitlines())
    fields = dict(zip(header, row))
    # sysstat 12: kbmemused = total - free - buffers - cached - slab; MemTotal was 24683584
    assert sar_mem_total_kib(fields) == 24683584
    host = tmp_path / "node1"
    (host / "sar").mkdir(parents=True)
    rows = [",".join(header), ",".join(row)]
    rows[1] = rows[1].replace("2026-12-02 17:03:28 UTC", "2026-12-02T17:03:28+00:00")
    (host / "sar" / "sar-memory.csv").write_text("\n".join(rows) + "\n")
    (used,) = [v for _, v in host_series(host)["mem_used_mib"]]
    assert used == pytest.approx((24683584 - 24344884) / 1024)
    # with counters at hand their MemTotal is used
    snap = {"memory": {"MemTotal": 24683600, "MemAvailable": 1}}
    (host / "counters.json").write_text(json.dumps({"start": snap, "stop": snap}))
    (used,) = [v for _, v in host_series(host)["mem_used_mib"]]
    assert used == pytest.approx((24683600 - 24344884) / 1024)


def test_combine_averages_means_keeps_the_highest_peak_and_sums_bytes(tmp_path: Path) -> None:
    long = _sample(tmp_path, 10.0, [(3, 30.0), (6, 70.0), (9, 20.0)], 400, "sample1")
    short = _sample(tmp_path, 0.05, [], 5, "sample2")
    one, two = sample_hosts(long, "default"), sample_hosts(short, "default")
    both = combine([one, two])["node1"]
    cpu = both["cpu_busy_pct"]
    assert cpu["mean"] == pytest.approx((40.0 + 100.0) / 2)
    assert cpu["peak"] == pytest.approx(70.0)
    assert cpu["cpu_seconds"] == pytest.approx(4.05)
    assert cpu["samples"] == 2
    assert cpu["ncpu"] == 1  # the same in every sample: kept as it is
    assert both["disk_kib_s"]["write_bytes"] == 2 << 20
    assert both["disk_kib_s"]["per_device"]["vda"]["write_bytes"] == 2 << 20
    assert both["mem_used_mib"]["definition"] == "MemTotal - MemAvailable"
    assert both["window"] == {"seconds": pytest.approx(10.05), "samples": 2}
    alone = combine([two, two])["node1"]["cpu_busy_pct"]
    assert alone["peak"] is None
    assert alone["peak_note"].startswith("none of the 2 samples has a peak: ")
    # the old shape (mean and peak only) combines as it did
    old = combine([{"h": {"cpu_busy_pct": {"mean": 1.0, "peak": 2.0}}}] * 2)
    assert old["h"]["cpu_busy_pct"]["mean"] == 1.0 and old["h"]["cpu_busy_pct"]["peak"] == 2.0


def test_epoch_reads_iso_timestamps() -> None:
    assert epoch("2026-11-20T10:00:00+00:00") == T0.timestamp()
    assert epoch("2026-11-20T10:00:00") == T0.timestamp()  # no zone: UTC
    assert epoch("2026-11-20T11:00:00+01:00") == T0.timestamp()
    assert epoch("2026-11-20T10:00:00Z") == T0.timestamp()
    assert epoch("10:00:00") is None
    assert epoch("") is None


def test_a_finer_tool_gives_the_peak_when_the_first_one_cannot(tmp_path: Path) -> None:
    # a 4 s sample: too short for sar at 3 s, long enough for pcp at 1 s
    sample = _sample(tmp_path, 4.0, [(3, 50.0)], busy_ticks=100)
    pcp = sample / "tools-default" / "node1" / "pcp"
    pcp.mkdir()
    rows = [(at, 10.0 * at) for at in range(-2, 8)]  # 1 s apart; the busiest are after
    (pcp / "activity.csv").write_text(
        "timestamp,cpu_busy_pct,mem_used_mib,disk_kib_s,net_kib_s,load1\n"
        + "".join(f"{_iso(at)},{busy},100,0,0,0.1\n" for at, busy in rows)
    )
    intervals = {"node1": {"sar": 3, "pcp": 1}}
    node = sample_hosts(sample, "default", intervals=intervals)["node1"]
    cpu = node["cpu_busy_pct"]
    assert cpu["peak"] == pytest.approx(40.0)  # the row at +4 s, the last within
    assert cpu["source"] == {"mean": "counters", "peak": "pcp"}
    assert node["mem_used_mib"]["peak"] == 100
