"""The cost of one counter snapshot: what each host's Tool Meister spends at
the start and the stop of every sample (it must stay under 2 ms).

Takes ``--calls`` snapshots back to back and also times :func:`summarize` of
a pair; prints medians and 99th percentiles in milliseconds as a JSON line,
with how many disks, interfaces and CPUs the host has (the cost grows with
them).  Exits 1 when the median snapshot costs 2 ms or more.

    python perf/counters_cost.py [--calls 1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from pbench_runner import counters

#: what a snapshot may cost at most, in ms
BUDGET_MS = 2.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_ms(call: object, calls: int) -> list[float]:
    assert callable(call)
    took = []
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        took.append((time.perf_counter() - t0) * 1000)
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    counters.snapshot()  # the first call opens files cold
    snaps = timed_ms(counters.snapshot, args.calls)
    start, stop = counters.snapshot(), counters.snapshot()
    summaries = timed_ms(lambda: counters.summarize(start, stop), args.calls)
    median = statistics.median(snaps)
    print(
        json.dumps(
            {
                "benchmark": "counters_cost",
                "calls": args.calls,
                "snapshot_median_ms": round(median, 3),
                "snapshot_p99_ms": round(pct(snaps, 0.99), 3),
                "summarize_median_ms": round(statistics.median(summaries), 3),
                "cpus": len(stop.get("cpu", {})) - 1,
                "disks": len(stop.get("disks", {})),
                "interfaces": len(stop.get("net", {})),
                "cgroup_cpu": (stop.get("cgroup_cpu") or {}).get("source"),
                "budget_ms": BUDGET_MS,
            }
        ),
        flush=True,
    )
    return 0 if median < BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
