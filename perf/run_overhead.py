"""What ``pbench run`` adds around each sample of a no-op benchmark.

Runs a suite of one empty benchmark for --samples samples with no tools,
with the light tool set, and with the light set plus the persistent tools
(pcp, node_exporter: they run for the whole session, so a sample pays only
for its counter snapshots and its slice of their data).  A sample's cost is
the time from one sample's end to the next one's start, read from the
result's sample windows: stop-tools, send-tools, the per-host summary, the
records, start-tools.  Medians over every gap of --repeat runs.

    python perf/run_overhead.py [--samples 21] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from _common import timed_pbench


def gaps(result: Path) -> list[float]:
    """Seconds between one sample's end and the next one's start."""
    records = sorted(
        (json.loads(p.read_text()) for p in result.glob("1-*/sample*/result.json")),
        key=lambda r: r["sample"],
    )
    return [_instant(b, "start") - _instant(a, "end") for a, b in zip(records, records[1:])]


def _instant(record: dict, key: str) -> float:  # type: ignore[type-arg]
    from datetime import datetime

    return datetime.fromisoformat(record[key]).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=21)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbench-run-overhead-") as tmp:
        base = Path(tmp)
        (base / "bench_noop.py").write_text("def bench_noop(sample):\n    pass\n")
        env = {**os.environ, "PBENCH_RUN_DIR": str(base / "run")}
        row: dict[str, object] = {"benchmark": "run_overhead_per_sample", "samples": args.samples}
        groups = (("no_tools", "empty"), ("light_tools", "light"), ("persistent_tools", "both"))
        for label, group in groups:
            if group in ("light", "both"):
                timed_pbench(env, "register-tool-set", "light", f"--group={group}", cwd=base)
            if group == "both":
                for tool in ("pcp", "node_exporter"):
                    timed_pbench(env, "register-tool", f"--name={tool}", "--group=both", cwd=base)
            found: list[float] = []
            for _ in range(args.repeat):
                timed_pbench(
                    env,
                    "run",
                    "bench_noop.py",
                    f"--samples={args.samples}",
                    "--sysinfo=none",
                    f"--tool-group={group}",
                    cwd=base,
                )
                newest = max((base / "run" / "results").iterdir(), key=lambda p: p.stat().st_mtime)
                found += gaps(newest)
            row[f"{label}_ms"] = round(statistics.median(found) * 1e3, 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
