"""What a user pays: ``pbench user-benchmark -- sleep 1`` and single lifecycle CLI calls.

* user-benchmark overhead = wall time of the whole command minus the 1 s the
  benchmark sleeps, with the light tool set (vmstat), with and without sysinfo;
* a lifecycle CLI call = the wall time of one ``pbench start-tools`` /
  ``stop-tools`` / ``send-tools`` process against a running session.

Medians over --repeat runs, as JSON lines.

    python perf/overhead.py [--repeat 5]
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
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbench-overhead-") as tmp:
        env = {**os.environ, "PBENCH_RUN_DIR": str(Path(tmp) / "run")}
        timed_pbench(env, "register-tool-set", "light")
        for sysinfo in ("none", "default"):
            runs = [
                timed_pbench(env, "user-benchmark", f"--sysinfo={sysinfo}", "--", "sleep", "1")
                for _ in range(args.repeat)
            ]
            print(
                json.dumps(
                    {
                        "benchmark": "user_benchmark_sleep_1",
                        "sysinfo": sysinfo,
                        "total_median_s": round(statistics.median(runs), 3),
                        "overhead_median_s": round(statistics.median(runs) - 1.0, 3),
                    }
                ),
                flush=True,
            )
        times: dict[str, list[float]] = {
            v: []
            for v in (
                "tool-meister-start",
                "start-tools",
                "stop-tools",
                "send-tools",
                "tool-meister-stop",
            )
        }
        for n in range(args.repeat):
            sample = str(Path(tmp) / "r" / f"sample{n}")
            times["tool-meister-start"].append(
                timed_pbench(env, "tool-meister-start", f"--dir={Path(tmp) / 'r'}")
            )
            for verb in ("start-tools", "stop-tools", "send-tools"):
                times[verb].append(timed_pbench(env, verb, f"--dir={sample}"))
            times["tool-meister-stop"].append(timed_pbench(env, "tool-meister-stop"))
        print(
            json.dumps(
                {
                    "benchmark": "lifecycle_cli_calls",
                    **{
                        f"{verb}_median_s": round(statistics.median(v), 3)
                        for verb, v in times.items()
                    },
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
