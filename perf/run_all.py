"""Run every project benchmark; ``./run.sh perf`` calls this.

    python perf/run_all.py [--quick]

--quick uses fewer rounds and a 256 MiB tarball (for a smoke check).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = [
        ["lifecycle.py", "--meisters", "1,8,32", "--rounds", "10" if args.quick else "30"],
        ["counters_cost.py", "--calls", "200" if args.quick else "1000"],
        ["sink_ingest.py", "--size-mib", "256" if args.quick else "1024"],
        ["overhead.py", "--repeat", "2" if args.quick else "5"],
        ["run_overhead.py", "--repeat", "1" if args.quick else "3"],
        ["false_alarms.py", "--quick"] if args.quick else ["false_alarms.py"],
        ["timing_peers.py", "--quick"] if args.quick else ["timing_peers.py"],
        ["observer_overhead.py", "--seconds", "10" if args.quick else "60"],
        [
            "remote_scale.py",
            "--ssh",
            "2" if args.quick else "4,16",
            "--rounds",
            "5" if args.quick else "20",
            "--put-mib",
            "64" if args.quick else "1024",
        ],
        [
            "results_server.py",
            "--size-mib",
            "256" if args.quick else "1024",
            "--datasets",
            "2000" if args.quick else "10000",
        ],
    ]
    status = 0
    for argv in runs:
        proc = subprocess.run([sys.executable, str(HERE / argv[0]), *argv[1:]])
        status = status or proc.returncode
    return status


if __name__ == "__main__":
    sys.exit(main())
