"""What every host did during a benchmark, from the tool data of its samples.

For each host four measures, each with a ``mean`` and a ``peak``: CPU busy %
(busy is all CPU time but idle and iowait), memory used in MiB (MemTotal -
MemAvailable, the one meaning everywhere), disk and network throughput in
KiB/s (loopback traffic not counted).

Means come from the kernel counters each host's Tool Meister reads when the
sample starts and stops (``<host>/counters.json``, see
:mod:`pbench_runner.counters`), so they are exact however short the sample.
Without them (older data) the tools' series give the mean.

Peaks come from the tools' series: sar first, then vmstat / mpstat /
iostat, then PCP and node_exporter (whose ``activity.csv`` has the same
units).  Within a known window (the counters' instants, or one given) a
peak is only taken when the window spans at least two of the tool's
intervals and holds at least two of its rows; a row counts when its
timestamp (the end of its interval) is in the window and so is at least
half of its interval (see :func:`_inside`).  Otherwise ``peak`` is null and
``peak_note`` says why: a peak is never taken from outside the window.
"""

from __future__ import annotations

import csv
import functools
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Final

from pbench_runner import counters

Rows = Iterable[dict[str, str]]
Series = list[tuple[str, float]]
#: (start, stop) in epoch seconds, on the host's clock
Window = tuple[float, float]

#: timestamps read per CSV file (a day at one sample a second); later rows are
#: ignored, so that a huge file cannot take the memory of whoever reads it
MAX_TIMES: Final = 86_400

#: the columns of ``<host>/<tool>/activity.csv``, written by persistent tools
ACTIVITY_COLUMNS = ("timestamp", "cpu_busy_pct", "mem_used_mib", "disk_kib_s", "net_kib_s", "load1")
#: tools whose activity.csv is read, in order of preference
ACTIVITY_TOOLS = ("pcp", "node_exporter")
#: the measures of a host, each with a mean and a peak
MEASURES: Final = ACTIVITY_COLUMNS[1:5]
DEFINITIONS: Final = {
    "cpu_busy_pct": counters.CPU_BUSY_DEFINITION,
    "mem_used_mib": counters.MEM_USED_DEFINITION,
}


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


def _per_time_many(rows: Rows, columns: Iterable[str]) -> dict[str, Series]:
    """:func:`_per_time` of several columns in one pass over the rows."""
    sums: dict[str, dict[str, float]] = {c: {} for c in columns}
    for row in rows:
        when = row.get("timestamp") or ""
        for column in sums:
            if (v := _num(row, column)) is not None:
                _add(sums[column], when, v)
    return {c: list(per.items()) for c, per in sums.items()}


def _busy(idle: str, iowait: str) -> Callable[[dict[str, str]], float | None]:
    """Busy % of a row: 100 - idle % - iowait %."""

    def value(r: dict[str, str]) -> float | None:
        v = _num(r, idle)
        return None if v is None else 100 - v - (_num(r, iowait) or 0)

    return value


def _cpu_is(names: tuple[str, ...]) -> Callable[[dict[str, str]], bool]:
    """Rows of the whole host (not one CPU's)."""
    return lambda r: r.get("CPU") in names


def sar_mem_total_kib(row: dict[str, str]) -> float | None:
    """MemTotal (kB) from a ``sadf -d -- -r ALL`` row without counters at hand.

    sysstat 12 counts kbmemused as total - free - buffers - cached - slab (older
    ones without slab, or only free); the sum matching %memused is taken.
    """
    free, used, pct = _num(row, "kbmemfree"), _num(row, "kbmemused"), _num(row, "%memused")
    if free is None or used is None:
        return None
    parts = [_num(row, k) for k in ("kbbuffers", "kbcached", "kbslab")]
    sums = [free + used + sum(p for p in parts[:n] if p is not None) for n in (3, 2, 0)]
    if not pct:
        return sums[0]
    estimate = used * 100 / pct
    bound = estimate * 0.006 / pct + 1  # %memused has two decimals
    return next((s for s in sums if abs(s - estimate) <= bound), estimate)


def _sar_mem_used(total_kib: float | None) -> Callable[[dict[str, str]], float | None]:
    def value(r: dict[str, str]) -> float | None:
        avail = _num(r, "kbavail")
        total = total_kib or sar_mem_total_kib(r)
        return None if avail is None or total is None else (total - avail) / 1024

    return value


Found = dict[str, list[tuple[str, Callable[[], Series]]]]


def _lazy(
    path: Path, value: Callable[[dict[str, str]], float | None], *keep: Any
) -> Callable[[], Series]:
    """The series of one CSV file, read on the first call only."""
    return functools.cache(lambda: _per_time(_rows(path), value, *keep))


def _lazy_activity(path: Path) -> dict[str, Callable[[], Series]]:
    """Every measure of an ``activity.csv``, read in one pass on the first call only."""
    every = functools.cache(lambda: _per_time_many(_rows(path), MEASURES))

    def one(measure: str) -> Callable[[], Series]:
        return lambda: every()[measure]

    return {m: one(m) for m in MEASURES}


def _disk_rate(r: dict[str, str]) -> float | None:
    return (_num(r, "rkB/s") or 0) + (_num(r, "wkB/s") or 0)


def _net_rate(r: dict[str, str]) -> float | None:
    return (_num(r, "rxkB/s") or 0) + (_num(r, "txkB/s") or 0)


def _sources(tool_dir: Path, mem_total_kib: float | None) -> Found:
    """Each measure's series of one host, per tool in order of preference (see
    :func:`_series`); a file is read when first asked for."""
    sar, busy = tool_dir / "sar", _busy("%idle", "%iowait")
    found: Found = {
        "cpu_busy_pct": [
            ("sar", _lazy(sar / "sar-cpu.csv", busy, _cpu_is(("-1", "all")))),
            ("mpstat", _lazy(tool_dir / "mpstat" / "mpstat.csv", busy, _cpu_is(("all",)))),
            ("vmstat", _lazy(tool_dir / "vmstat" / "vmstat.csv", _busy("id", "wa"))),
        ],
        "mem_used_mib": [("sar", _lazy(sar / "sar-memory.csv", _sar_mem_used(mem_total_kib)))],
        "disk_kib_s": [
            ("sar", _lazy(sar / "sar-disk.csv", _disk_rate)),
            ("iostat", _lazy(tool_dir / "iostat" / "iostat.csv", _disk_rate)),
        ],
        "net_kib_s": [
            ("sar", _lazy(sar / "sar-network.csv", _net_rate, lambda r: r.get("IFACE") != "lo"))
        ],
    }
    for tool in ACTIVITY_TOOLS:
        for measure, read in _lazy_activity(tool_dir / tool / "activity.csv").items():
            found[measure].append((tool, read))
    return found


def _series(found: list[tuple[str, Callable[[], Series]]]) -> Iterator[tuple[str, Series]]:
    """The (tool, series) of a measure that some tool recorded, in order of preference."""
    for tool, read in found:
        if series := read():
            yield tool, series


def host_series(tool_dir: Path) -> dict[str, Series]:
    """Each measure of one host over time, from ``tools-<group>/<host>/``.

    A measure is a list of (ISO timestamp, value) from the first tool that
    recorded it; a measure no tool recorded is left out.
    """
    sources = _sources(tool_dir, _mem_total_kib(read_counters(tool_dir)))
    return {m: first[1] for m, found in sources.items() if (first := next(_series(found), None))}


def _stat(series: Series) -> dict[str, float] | None:
    values = [v for _, v in series]
    return {"mean": statistics.fmean(values), "peak": max(values)} if values else None


def activity(measures: dict[str, Series]) -> dict[str, dict[str, float]]:
    """Mean and peak of each measure of :func:`host_series`."""
    return {name: stat for name, series in measures.items() if (stat := _stat(series))}


def host_activity(tool_dir: Path) -> dict[str, dict[str, float]]:
    """The activity of one host in one sample: mean and peak of each measure."""
    return activity(host_series(tool_dir))


# --- one sample, with the counters and the window ----------------------------------


def read_counters(tool_dir: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The (start, stop) snapshots of ``<host>/counters.json``; None without them."""
    try:
        data = json.loads((tool_dir / counters.COUNTERS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    start, stop = data.get("start"), data.get("stop")
    return (start, stop) if isinstance(start, dict) and isinstance(stop, dict) else None


def _mem_total_kib(snaps: tuple[dict[str, Any], dict[str, Any]] | None) -> float | None:
    for snap in snaps or ():
        total = (snap.get("memory") or {}).get("MemTotal")
        if isinstance(total, (int, float)) and total > 0:
            return float(total)
    return None


def epoch(stamp: str) -> float | None:
    """Epoch seconds of an ISO-8601 timestamp; one without a zone is UTC (the
    tools run with ``TZ=UTC``); None when it is no full date and time."""
    try:
        when = datetime.fromisoformat(stamp[:-1] + "+00:00" if stamp.endswith("Z") else stamp)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _timed(series: Series) -> list[tuple[float, float]]:
    return sorted((t, v) for stamp, v in series if (t := epoch(stamp)) is not None)


def _spacing(timed: list[tuple[float, float]]) -> float | None:
    """The tool's interval as its rows show it: the median gap between them."""
    gaps = [b[0] - a[0] for a, b in zip(timed, timed[1:]) if b[0] > a[0]]
    return statistics.median(gaps) if gaps else None


def _inside(timed: list[tuple[float, float]], window: Window, interval: float) -> list[float]:
    """The values of the rows whose timestamp is in the window and so is at least
    half of the interval that ends there; a whole-second timestamp is truncated,
    so its interval is taken to end half a second later."""
    start, stop = window
    return [
        v
        for t, v in timed
        if start <= t <= stop and t + (0.5 if t.is_integer() else 0) - interval / 2 >= start
    ]


def _peak(
    found: list[tuple[str, Callable[[], Series]]],
    window: Window | None,
    intervals: Mapping[str, float],
) -> dict[str, Any]:
    """The peak of a measure: from the first tool whose series qualifies; a
    tool with a known interval but no rows says why it gave none."""
    seconds = 0.0 if window is None else window[1] - window[0]
    notes = []
    for tool, read in found:
        series = read()
        if not series and tool not in intervals:
            continue  # not run
        if window is None:  # no window known (old data): the whole series, as ever
            if series:
                return {"peak": max(v for _, v in series), "tool": tool}
            continue
        timed = _timed(series)
        interval = intervals.get(tool) or _spacing(timed)
        if not interval:
            notes.append(f"{tool} has one row and no known interval")
        elif seconds < 2 * interval:
            notes.append(
                f"the sample lasted {seconds:.3g} s, under two intervals (2 x {interval:g} s) of {tool}"
            )
        elif len(inside := _inside(timed, window, interval)) < 2:
            notes.append(f"{len(inside)} of {tool}'s rows lie within the sample's {seconds:.3g} s")
        else:
            return {"peak": max(inside), "tool": tool}
    return {
        "peak": None,
        "tool": None,
        "note": "; ".join(notes or ["no tool recorded it"]) + ": no peak",
    }


def _series_mean(found: Iterable[tuple[str, Series]], window: Window | None) -> dict[str, Any]:
    for tool, series in found:
        if window is None:
            return {"mean": statistics.fmean(v for _, v in series), "tool": tool}
        timed = _timed(series)
        inside = [v for t, v in timed if window[0] <= t <= window[1]]
        if inside:
            return {"mean": statistics.fmean(inside), "tool": tool}
    return {"mean": None, "tool": None, "note": "no counters and no tool row within the sample"}


def host_summary(
    tool_dir: Path, window: Window | None = None, intervals: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """One host's summary of one sample; see :func:`sample_hosts`."""
    snaps = read_counters(tool_dir)
    summary = counters.summarize(*snaps) if snaps else {}
    if window is None and snaps:
        start, stop = summary.get("start_time"), summary.get("stop_time")
        if isinstance(start, (int, float)) and isinstance(stop, (int, float)) and stop >= start:
            window = (float(start), float(stop))
    sources = _sources(tool_dir, _mem_total_kib(snaps))
    exact = counters.host_measures(summary)
    found: dict[str, Any] = {}
    for measure in MEASURES:
        details = dict(exact.get(measure) or {})
        mean = {"mean": details.pop("mean", None), "tool": "counters"}
        if "mean_note" in details:
            mean["note"] = details.pop("mean_note")
        recorded = next(_series(sources[measure]), None) is not None
        if mean["mean"] is None:
            if not recorded:
                continue
            mean = _series_mean(_series(sources[measure]), window)
        peak = _peak(sources[measure], window, intervals or {})
        entry = {"mean": mean["mean"], "peak": peak["peak"]}
        entry.update(
            {f"{k}_note": d["note"] for k, d in (("mean", mean), ("peak", peak)) if "note" in d}
        )
        entry["source"] = {"mean": mean["tool"], "peak": peak["tool"]}
        if measure in DEFINITIONS:
            entry["definition"] = DEFINITIONS[measure]
        found[measure] = {**entry, **details}
    if window is not None:
        found["window"] = {
            "seconds": summary.get("seconds", window[1] - window[0]),
            "start": window[0],
            "stop": window[1],
        }
    if pressure := summary.get("pressure"):
        found["pressure_stall_pct"] = pressure
    return found


def sample_hosts(
    sample_dir: Path,
    group: str,
    windows: Mapping[str, Window] | None = None,
    intervals: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every host's summary of one sample: ``{host: {measure: {"mean", "peak", ...}}}``.

    ``windows[host]`` is the sample's (start, stop) in epoch seconds on that
    host's clock; by default the instants of its ``counters.json``.
    ``intervals[host][tool]`` is a tool's interval in seconds; by default the
    median gap between its rows.  The measures are ``cpu_busy_pct``,
    ``mem_used_mib``, ``disk_kib_s`` and ``net_kib_s``; beside them ``window``
    and ``pressure_stall_pct`` when known.
    """
    base = sample_dir / f"tools-{group}"
    if not base.is_dir():
        return {}
    return {
        host.name: host_summary(
            host, (windows or {}).get(host.name), (intervals or {}).get(host.name)
        )
        for host in sorted(base.iterdir())
        if is_host_dir(host)
    }


# --- an iteration: its samples together ----------------------------------------------

#: details summed over the samples; other numbers are averaged
_SUMMED: Final = ("cpu_seconds", "read_bytes", "write_bytes", "rx_bytes", "tx_bytes", "seconds")


def _mean(values: Iterable[Any]) -> float | None:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.fmean(numbers) if numbers else None


def _merge(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbers of the samples' dicts: summed (:data:`_SUMMED`) or averaged;
    nested dicts (per device, per CPU) merged the same way."""
    merged: dict[str, Any] = {}
    keys = list(dict.fromkeys(k for s in stats for k in s))
    for key in keys:
        values = [s[key] for s in stats if key in s]
        if all(isinstance(v, dict) for v in values):
            merged[key] = _merge(values)
        elif key in _SUMMED:
            merged[key] = sum(v for v in values if isinstance(v, (int, float)))
        elif all(v == values[0] for v in values) or isinstance(values[-1], (bool, str)):
            merged[key] = values[-1]  # the same in every sample (or a word: the last)
        else:
            merged[key] = _mean(values)
    return merged


def combine(per_sample: Iterable[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per host and measure: the mean of the samples' means (each sample weighs
    the same), the highest peak (null with a ``peak_note`` when no sample has
    one), byte and CPU-second totals summed, other details averaged."""
    gathered: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for hosts in per_sample:
        for host, measures in hosts.items():
            per_host = gathered[host]  # a host stays listed even when its tools said nothing
            for name, stat in measures.items():
                if isinstance(stat, dict):
                    per_host[name].append(stat)
    return {
        host: {name: _combine_measure(name, stats) for name, stats in measures.items()}
        for host, measures in gathered.items()
    }


def _combine_measure(name: str, stats: list[dict[str, Any]]) -> dict[str, Any]:
    if name not in MEASURES:  # window, pressure
        merged = _merge(stats)
        if name == "window":
            merged = {"seconds": merged.get("seconds"), "samples": len(stats)}
        return merged
    details = [
        {
            k: v
            for k, v in s.items()
            if k not in ("mean", "peak", "peak_note", "mean_note", "source")
        }
        for s in stats
    ]
    found: dict[str, Any] = {
        "mean": _mean(s.get("mean") for s in stats),
        "peak": max(
            (p for s in stats if isinstance(p := s.get("peak"), (int, float))), default=None
        ),
    }
    if found["peak"] is None:
        notes = [n for s in stats if isinstance(n := s.get("peak_note"), str)]
        first = f": {notes[0]}" if notes else ""
        found["peak_note"] = f"none of the {len(stats)} samples has a peak{first}"
    if found["mean"] is None:
        found["mean_note"] = f"none of the {len(stats)} samples has a mean"
    sources = [s["source"] for s in stats if isinstance(s.get("source"), dict)]
    if sources:
        found["source"] = {
            part: ", ".join(sorted({str(s[part]) for s in sources if s.get(part)})) or None
            for part in ("mean", "peak")
        }
    if len(stats) > 1 or "source" in stats[0]:
        found["samples"] = len(stats)
    found.update(_merge(details))
    if "start" in found or "stop" in found:  # memory: at the first start, the last stop
        found["start"], found["stop"] = stats[0].get("start"), stats[-1].get("stop")
    return found
