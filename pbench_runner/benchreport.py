"""The end-of-run table of ``pbench run``."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from pbench_runner.timing import fmt_time

HOST_MEASURES = (
    ("cpu_busy_pct", "CPU busy %"),
    ("mem_used_mib", "memory used MiB"),
    ("disk_kib_s", "disk KiB/s"),
    ("net_kib_s", "network KiB/s"),
)


def fmt_number(value: float) -> str:
    if math.isnan(value):
        return "nan"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.3f}"
    return f"{value:.4g}"


def summary_lines(iterations: Iterable[dict[str, Any]]) -> list[str]:
    """One line per benchmark and metric: mean ± stddev (%), median, min, max, n."""
    lines = []
    for it in iterations:
        what = it.get("nodeid") or " ".join(it.get("command") or [])
        lines.append(f"{it['name']}  [{it['status']}]  {what}")
        for name, entry in it.get("metrics", {}).items():
            s = entry.get("summary")
            if not s:
                continue
            arrow = "higher is better" if entry["higher_is_better"] else "lower is better"
            outliers = f", outliers: samples {s['outliers']}" if s["outliers"] else ""
            show: Callable[[float], str]
            if entry["unit"] == "s":  # times in the unit that fits: ns, µs, ms or s
                show = fmt_time
                unit = ""
            else:
                show = fmt_number
                unit = f" {entry['unit']}" if entry["unit"] else ""
            extra = ""
            if name == "wall_s" and s.get("ops"):
                loops = s.get("loops", 1)
                per = "per call, " if loops != 1 else ""
                extra = f"  {per}{fmt_number(s['ops'])} ops/s, {s['n']} rounds x {loops} loops"
            lines.append(
                f"    {name:<16} {show(s['mean'])}{unit} ± {show(s['stddev'])} "
                f"({fmt_number(s['stddev_pct'])}%)  median {show(s['median'])}  "
                f"min {show(s['min'])}  max {show(s['max'])}  IQR {show(s['q3'] - s['q1'])}  "
                f"n={s['n']}{extra}  ({arrow}{outliers})"
            )
        lines.extend(f"    {line}" for line in host_lines(it.get("hosts", {})))
    return lines


def host_lines(hosts: dict[str, Any]) -> list[str]:
    """One line per host: the mean (and peak) of CPU, memory, disk and network."""
    lines = []
    for host, measures in sorted(hosts.items()):
        parts = []
        for key, label in HOST_MEASURES:
            if not isinstance(measures.get(key), dict) or measures[key].get("mean") is None:
                continue
            peak = measures[key].get("peak")
            shown = f" (peak {fmt_number(peak)})" if peak is not None else ""
            parts.append(f"{label} {fmt_number(measures[key]['mean'])}{shown}")
        if parts:
            lines.append(f"host {host}: " + ", ".join(parts))
    return lines
