"""Lifecycle overhead: tool-meister-start, start/stop/send round trips, tool-meister-stop.

Every meister runs on this host under its own host name with the ``noop``
tool, so what is measured is pbench_runner's own cost.  Prints medians and
90th percentiles in milliseconds as JSON lines.

    python perf/lifecycle.py [--meisters 1,8,32] [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from pbench_runner.controller import Controller
from pbench_runner.toolstore import HostTools, ToolGroup


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(meisters: int, rounds: int) -> dict[str, object]:
    hosts = [f"perf-{i:03d}" for i in range(meisters)]
    group = ToolGroup("default", {h: HostTools(tools={"noop": {}}) for h in hosts})
    times: dict[str, list[float]] = {"start": [], "stop": [], "send": []}
    with tempfile.TemporaryDirectory(prefix="pbench-perf-") as tmp:
        base = Path(tmp)
        began = time.perf_counter()
        ctl = Controller(group, base / "tm", local_hosts=hosts).start()
        tm_start = time.perf_counter() - began
        try:
            for n in range(rounds):
                sample = base / f"sample{n}"
                for verb in ("start", "stop", "send"):
                    t0 = time.perf_counter()
                    ctl.run_action(verb, sample)
                    times[verb].append(time.perf_counter() - t0)
        finally:
            t0 = time.perf_counter()
            ctl.stop()
            tm_stop = time.perf_counter() - t0
    row: dict[str, object] = {
        "meisters": meisters,
        "rounds": rounds,
        "tool_meister_start_ms": round(tm_start * 1e3, 1),
        "tool_meister_stop_ms": round(tm_stop * 1e3, 1),
    }
    for verb, values in times.items():
        row[f"{verb}_median_ms"] = round(statistics.median(values) * 1e3, 2)
        row[f"{verb}_p90_ms"] = round(pct(values, 0.9) * 1e3, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--meisters", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    for n in (int(x) for x in args.meisters.split(",")):
        print(json.dumps({"benchmark": "lifecycle", **measure(n, args.rounds)}), flush=True)


if __name__ == "__main__":
    main()
