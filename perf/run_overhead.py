"""What ``pbench run`` adds around each sample of a no-op benchmark.

Runs a suite of one empty benchmark with 1 and with --samples N samples, with
no tools, with the light tool set, and with the light set plus the persistent
tools (pcp, node_exporter: they run for the whole session, so a sample pays
only for its counter snapshots and its slice of their data); the per-sample overhead is the
difference in wall time divided by N - 1.  Medians over --repeat runs.

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
            per_sample = []
            for _ in range(args.repeat):
                one = timed_pbench(
                    env,
                    "run",
                    "bench_noop.py",
                    "--samples=1",
                    "--sysinfo=none",
                    f"--tool-group={group}",
                    cwd=base,
                )
                many = timed_pbench(
                    env,
                    "run",
                    "bench_noop.py",
                    f"--samples={args.samples}",
                    "--sysinfo=none",
                    f"--tool-group={group}",
                    cwd=base,
                )
                per_sample.append((many - one) / (args.samples - 1))
            row[f"{label}_ms"] = round(statistics.median(per_sample) * 1e3, 2)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
