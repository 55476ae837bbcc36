"""How often ``pbench compare`` calls unchanged runs different: the false-alarm rate.

Runs one tiny benchmark (``sum(range(10**5))`` in a plain ``bench_*``
function, no tools) with ``pbench run --samples=5 --sysinfo=none
--no-progress`` --runs times, compares each run with the first through the
compare API (what ``pbench compare FIRST RUN`` reports), and prints one JSON
line: the share of comparisons with any metric (wall_s, cpu_s) outside the
noise, the share of metrics, what Welch's t on the means (the rule before)
would have said of the same runs, the share a ``--fail-on=METRIC:+10%`` or
``-10%`` rule on either metric would fail, and the same over every pair of runs.

    python perf/false_alarms.py [--runs 20] [--samples 5] [--quick]

--quick makes 8 runs.  Nothing changes between the runs: every alarm is a
false one.  The samples of one run share its moment (CPU frequency, other
load), so runs differ by more than their samples spread: that, not the test's
5 %, is what this measures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import timed_pbench

from pbench_runner import compare, noise

BENCH = "def bench_sum(sample):\n    sum(range(10**{exponent}))\n"


def welch_alarm(base: Sequence[float], new: Sequence[float]) -> bool:
    """Welch's t on the means at 5 %, two-sided (the noise rule before issue 13)."""
    va, vb = statistics.variance(base) / len(base), statistics.variance(new) / len(new)
    diff = statistics.fmean(new) - statistics.fmean(base)
    if va + vb == 0:
        return diff != 0
    df = (va + vb) ** 2 / (va**2 / (len(base) - 1) + vb**2 / (len(new) - 1))
    return noise.t_p_value(diff / math.sqrt(va + vb), df) <= noise.ALPHA


def metric_values(run: dict[str, Any]) -> dict[str, list[float]]:
    (it,) = run["iterations"]
    return {name: entry["values"] for name, entry in it["metrics"].items()}


def tally(pairs: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    runs = metrics = alarmed_runs = alarmed_metrics = welch_runs = gated = 0
    alarms = []
    for base, new in pairs:
        found = compare.changes(base, new)
        outside = [ch for ch in found if ch.significant]
        a, b = metric_values(base), metric_values(new)
        runs += 1
        metrics += len(found)
        alarmed_runs += bool(outside)
        alarmed_metrics += len(outside)
        welch_runs += any(welch_alarm(a[ch.metric], b[ch.metric]) for ch in found)
        gated += any(compare.past_limit(ch, limit) for ch in found for limit in (-10, 10))
        alarms += [f"{ch.metric} {compare.change_text(ch)}" for ch in outside]
    return {
        "comparisons": runs,
        "false_alarm_rate": round(alarmed_runs / runs, 3),
        "metric_false_alarm_rate": round(alarmed_metrics / metrics, 3),
        "welch_false_alarm_rate": round(welch_runs / runs, 3),
        "past_10pct_rate": round(gated / runs, 3),
        "alarms": alarms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--exponent", type=int, default=5, help="sum(range(10**N))")
    parser.add_argument("--quick", action="store_true", help="8 runs")
    args = parser.parse_args()
    runs = 8 if args.quick else args.runs
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pbench-false-alarms-") as tmp:
        base = Path(tmp)
        (base / "bench_sum.py").write_text(BENCH.format(exponent=args.exponent))
        env = {**os.environ, "PBENCH_RUN_DIR": str(base / "run")}
        for _ in range(runs):
            timed_pbench(
                env,
                "run",
                "bench_sum.py",
                f"--samples={args.samples}",
                "--sysinfo=none",
                "--no-progress",
                cwd=base,
            )
        results = sorted((base / "run" / "results").iterdir(), key=lambda p: p.stat().st_mtime)
        loaded = [compare.load(path) for path in results]
    first, *others = loaded
    row: dict[str, Any] = {
        "benchmark": "false_alarms",
        "runs": len(loaded),
        "samples": args.samples,
        "against_first": tally([(first, other) for other in others]),
        "every_pair": {
            k: v for k, v in tally(list(itertools.combinations(loaded, 2))).items() if k != "alarms"
        },
        "run_medians_ms": [
            round(statistics.median(metric_values(run)["wall_s"]) * 1e3, 3) for run in loaded
        ],
        "seconds": round(time.perf_counter() - began, 1),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
