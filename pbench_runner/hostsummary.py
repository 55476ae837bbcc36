"""What every host did during a benchmark, from the tool data of its samples.

For each host: CPU busy % (mean and peak), memory used (MiB), disk and
network throughput (KiB/s), from whichever tools ran: sar first, then
vmstat / mpstat / iostat, then PCP and node_exporter (whose collectors write
``activity.csv`` in the same units).  Loopback traffic is not counted.
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Final

Rows = Iterable[dict[str, str]]
Series = list[tuple[str, float]]

#: timestamps read per CSV file (a day at one sample a second); later rows are
#: ignored, so that a huge file cannot take the memory of whoever reads it
MAX_TIMES: Final = 86_400

#: the columns of ``<host>/<tool>/activity.csv``, written by persistent tools
ACTIVITY_COLUMNS = ("timestamp", "cpu_busy_pct", "mem_used_mib", "disk_kib_s", "net_kib_s", "load1")
#: tools whose activity.csv is read, in order of preference
ACTIVITY_TOOLS = ("pcp", "node_exporter")


def is_host_dir(path: Path) -> bool:
    """A host's directory in ``tools-<group>/``; data of the whole group (a
    collector's, like ``_prometheus``) is under a name no host can have."""
    return path.is_dir() and not path.name.startswith("_")


def write_activity(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a host's activity over time; empty cells for what was not measured."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        out = csv.DictWriter(fh, ACTIVITY_COLUMNS, extrasaction="ignore")
        out.writeheader()
        for row in rows:
            out.writerow(
                {k: ("" if row.get(k) is None else _fmt(row[k])) for k in ACTIVITY_COLUMNS}
            )


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a CSV file, one at a time; none after an unreadable line."""
    try:
        with open(path, newline="", errors="replace") as fh:
            yield from csv.DictReader(fh)
    except (OSError, csv.Error):
        return


def _num(row: dict[str, str], key: str) -> float | None:
    try:
        return float(row[key])
    except (KeyError, TypeError, ValueError):
        return None


def _per_time(
    rows: Rows,
    value: Callable[[dict[str, str]], float | None],
    keep: Callable[[dict[str, str]], bool] = lambda r: True,
) -> Series:
    """Sum ``value`` over the rows of each timestamp (devices, interfaces)."""
    sums: dict[str, float] = {}
    for row in rows:
        v = value(row)
        if v is None or not keep(row):
            continue
        _add(sums, row.get("timestamp") or "", v)
    return list(sums.items())


def _add(sums: dict[str, float], when: str, value: float) -> None:
    if when in sums:
        sums[when] += value
    elif len(sums) < MAX_TIMES:
        sums[when] = value


def _per_time_many(rows: Rows, columns: list[str]) -> dict[str, Series]:
    """:func:`_per_time` of several columns in one pass over the rows."""
    sums: dict[str, dict[str, float]] = {c: {} for c in columns}
    for row in rows:
        when = row.get("timestamp") or ""
        for column in columns:
            if (v := _num(row, column)) is not None:
                _add(sums[column], when, v)
    return {c: list(per.items()) for c, per in sums.items()}


def _stat(series: Series) -> dict[str, float] | None:
    values = [v for _, v in series]
    return {"mean": statistics.fmean(values), "peak": max(values)} if values else None


def host_series(tool_dir: Path) -> dict[str, Series]:
    """Each measure of one host over time, from ``tools-<group>/<host>/``.

    A measure is a list of (ISO timestamp, value); a measure no tool recorded
    is left out.
    """
    found: dict[str, Series] = {}
    sar = tool_dir / "sar"
    cpu = _per_time(
        _rows(sar / "sar-cpu.csv"),
        lambda r: 100 - (_num(r, "%idle") or 0),
        lambda r: r.get("CPU") in ("-1", "all"),
    )
    if not cpu:
        cpu = _per_time(
            _rows(tool_dir / "mpstat" / "mpstat.csv"),
            lambda r: 100 - (_num(r, "%idle") or 0),
            lambda r: r.get("CPU") == "all",
        )
    if not cpu:
        cpu = _per_time(
            _rows(tool_dir / "vmstat" / "vmstat.csv"),
            lambda r: None if (v := _num(r, "id")) is None else 100 - v,
        )
    found["cpu_busy_pct"] = cpu
    found["mem_used_mib"] = _per_time(
        _rows(sar / "sar-memory.csv"),
        lambda r: None if (v := _num(r, "kbmemused")) is None else v / 1024,
    )

    def disk_rate(r: dict[str, str]) -> float | None:
        return (_num(r, "rkB/s") or 0) + (_num(r, "wkB/s") or 0)

    disk = _per_time(_rows(sar / "sar-disk.csv"), disk_rate)
    if not disk:
        disk = _per_time(_rows(tool_dir / "iostat" / "iostat.csv"), disk_rate)
    found["disk_kib_s"] = disk
    found["net_kib_s"] = _per_time(
        _rows(sar / "sar-network.csv"),
        lambda r: (_num(r, "rxkB/s") or 0) + (_num(r, "txkB/s") or 0),
        lambda r: r.get("IFACE") != "lo",
    )
    for tool in ACTIVITY_TOOLS:
        missing = [m for m in ACTIVITY_COLUMNS[1:5] if not found.get(m)]
        if missing:
            found.update(_per_time_many(_rows(tool_dir / tool / "activity.csv"), missing))
    return {k: v for k, v in found.items() if v}


def activity(measures: dict[str, Series]) -> dict[str, dict[str, float]]:
    """Mean and peak of each measure of :func:`host_series`."""
    return {name: stat for name, series in measures.items() if (stat := _stat(series))}


def host_activity(tool_dir: Path) -> dict[str, dict[str, float]]:
    """The activity of one host in one sample: mean and peak of each measure."""
    return activity(host_series(tool_dir))


def sample_hosts(sample_dir: Path, group: str) -> dict[str, dict[str, dict[str, float]]]:
    """Every host's activity in one sample."""
    base = sample_dir / f"tools-{group}"
    if not base.is_dir():
        return {}
    return {host.name: host_activity(host) for host in sorted(base.iterdir()) if is_host_dir(host)}


def combine(per_sample: Iterable[dict[str, dict[str, dict[str, float]]]]) -> dict[str, Any]:
    """Per host and measure: the mean of the samples' means and the highest peak."""
    gathered: dict[str, dict[str, list[dict[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for hosts in per_sample:
        for host, measures in hosts.items():
            per_host = gathered[host]  # a host stays listed even when its tools said nothing
            for name, stat in measures.items():
                per_host[name].append(stat)
    return {
        host: {
            name: {
                "mean": statistics.fmean(s["mean"] for s in stats),
                "peak": max(s["peak"] for s in stats),
            }
            for name, stats in measures.items()
        }
        for host, measures in gathered.items()
    }
