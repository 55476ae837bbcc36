"""pbench's ``benchmark`` fixture against pyperf and pytest-benchmark, same calls.

Three functions -- ``noop()`` (an empty function), ``work()`` (``sum(range(200))``,
about 1 us) and ``fib(20)`` (recursive, about 0.7 ms) -- are written once into a
module that every timer imports, so all three time the very same code objects:

* pyperf: ``python -m pyperf timeit -q -o FILE -s 'from peer_functions import noop' 'noop()'``
  (its default 20 worker processes x 3 values; --quick: 3 x 3); its mean and
  median per call;
* pytest-benchmark: ``python -m pytest -p no:cacheprovider --benchmark-json=FILE -q``
  on a generated ``test_peers.py`` (``def test_noop(benchmark): benchmark(noop)``;
  its default rounds, --quick: ``--benchmark-max-time=0.25``); the stats' mean and median;
* pbench: ``python -m pbench_runner run DIR --samples=N --sysinfo=none
  --tool-group=G --no-progress`` on a generated ``bench_peers.py``
  (``def bench_noop(benchmark): benchmark(noop)``), once with no tools (a group
  with nothing registered) and once with the light tool set; the newest
  result's ``metrics.wall_s.summary`` mean and median (seconds per call).

The timers run one after the other in this process tree, never at once.  One
JSON line per function: each timer's ns per call (mean, and median), and the
ratios pbench / pyperf and pytest-benchmark / pyperf of the means.  A timer
that fails gives a row with an ``error`` field (what ran, its exit status and
the end of its output) and nulls in the function rows; the others still run,
and the script exits 1.  About 70 s on a 2-CPU machine (--quick: about 20 s).

    python perf/timing_peers.py [--quick] [--samples 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: the functions every timer calls, one module imported by all of them
FUNCTIONS = '''\
"""What timing_peers.py times (generated)."""


def noop():
    pass


def work():  # about 1 us on the reference machine (Python 3.11)
    sum(range(200))


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
'''

MODULE = "peer_functions"
#: seconds any one timer's command may take
TIMEOUT_S = 900


@dataclass(frozen=True)
class Case:
    """One function timed: its name, what it imports and the call."""

    name: str
    imports: str
    #: the statement pyperf times
    call: str
    #: what the fixture gets: ``benchmark(<fixture_args>)``
    fixture_args: str


CASES = (
    Case("noop", "noop", "noop()", "noop"),
    Case("work_1us", "work", "work()", "work"),
    Case("fib20", "fib", "fib(20)", "fib, 20"),
)


class Failed(Exception):
    """A timer's command failed or its output could not be read."""


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command in its own process group; its output, or :class:`Failed`."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        raise Failed(f"{_shown(argv)}: timed out after {TIMEOUT_S} s\n{_tail(out)}") from None
    if proc.returncode != 0:
        raise Failed(f"{_shown(argv)}: exit status {proc.returncode}\n{_tail(out)}")
    return out


def _shown(argv: list[str]) -> str:
    return " ".join(a if a and " " not in a else repr(a) for a in argv[1:])


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def per_call(mean_s: float, median_s: float, **extra: Any) -> dict[str, Any]:
    return {"mean_ns": mean_s * 1e9, "median_ns": median_s * 1e9, **extra}


def time_pyperf(base: Path, quick: bool) -> dict[str, dict[str, Any]]:
    """pyperf timeit of each call: mean and median ns per call."""
    import pyperf

    options = ["-p", "3", "-n", "3"] if quick else []
    found = {}
    for case in CASES:
        out = base / f"pyperf-{case.name}.json"
        setup = (
            f"import sys; sys.path.insert(0, {str(base)!r}); from {MODULE} import {case.imports}"
        )
        argv = [sys.executable, "-m", "pyperf", "timeit", "-q", *options, "-o", str(out)]
        run([*argv, "--name", case.name, "-s", setup, case.call], cwd=base)
        bench = pyperf.Benchmark.load(str(out))
        found[case.name] = per_call(bench.mean(), bench.median(), values=bench.get_nvalue())
    return found


def time_pytest_benchmark(base: Path, quick: bool) -> dict[str, dict[str, Any]]:
    """pytest-benchmark's ``benchmark`` fixture on each call: mean and median ns per call."""
    tests = base / "pytest"
    tests.mkdir()
    (tests / f"{MODULE}.py").write_text(FUNCTIONS)
    (tests / "test_peers.py").write_text(
        _suite("test", "from {module} import {imports}\n\n\ndef test_{name}(benchmark):\n")
    )
    out = base / "pytest-benchmark.json"
    options = ["--benchmark-max-time=0.25"] if quick else []
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *options]
    run([*argv, f"--benchmark-json={out}", "-q", "test_peers.py"], cwd=tests)
    stats = {b["name"]: b["stats"] for b in json.loads(out.read_text())["benchmarks"]}
    found = {}
    for case in CASES:
        s = stats.get(f"test_{case.name}")
        if s is None:
            raise Failed(f"pytest-benchmark: no test_{case.name} in {out.name}")
        found[case.name] = per_call(
            s["mean"], s["median"], rounds=s["rounds"], loops=s["iterations"]
        )
    return found


def time_pbench(
    base: Path, samples: int, group: str, env: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """``pbench run`` of each call with the ``benchmark`` fixture, tools of ``group`` around."""
    benches = base / "pbench"
    if not benches.exists():
        benches.mkdir()
        (benches / f"{MODULE}.py").write_text(FUNCTIONS)
        (benches / "bench_peers.py").write_text(
            _suite("bench", "from {module} import {imports}\n\n\ndef bench_{name}(benchmark):\n")
        )
    results = Path(env["PBENCH_RUN_DIR"]) / "results"
    before = set(results.iterdir()) if results.exists() else set()
    argv = [sys.executable, "-m", "pbench_runner", "run", str(benches), f"--samples={samples}"]
    argv += ["--sysinfo=none", f"--tool-group={group}", "--no-progress"]
    run(argv, cwd=base, env=env)
    new = (
        [p for p in results.iterdir() if p.is_dir() and p not in before] if results.exists() else []
    )
    if not new:
        raise Failed(f"{_shown(argv)}: no new result directory under {results}")
    newest = max(new, key=lambda p: p.stat().st_mtime)
    iterations = {}
    for path in newest.glob("*/result.json"):
        record = json.loads(path.read_text())
        # a directory's name is numbered (1-bench_noop); the node id ends in the function
        iterations[str(record.get("nodeid", "")).rsplit("::", 1)[-1]] = (path, record)
    found = {}
    for case in CASES:
        if f"bench_{case.name}" not in iterations:
            raise Failed(f"pbench: no bench_{case.name} in {newest} (has {sorted(iterations)})")
        path, record = iterations[f"bench_{case.name}"]
        summary = record.get("metrics", {}).get("wall_s", {}).get("summary")
        if record.get("status") != "ok" or not summary:
            raise Failed(f"pbench: {path}: status {record.get('status')!r}, no wall_s summary")
        loops = (record.get("benchmark") or {}).get("loops")
        if not loops or loops <= 1:
            # one call per sample: wall_s is the whole sample, not a call
            raise Failed(f"pbench: {path}: no benchmark fixture loops (loops={loops!r})")
        found[case.name] = per_call(
            summary["mean"], summary["median"], samples=summary["n"], loops=loops
        )
    return found


def _suite(prefix: str, template: str) -> str:
    """A test or benchmark file: one function per case, each calling ``benchmark``."""
    parts = [f'"""The {prefix} side of timing_peers.py (generated)."""\n']
    for case in CASES:
        head = template.format(module=MODULE, imports=case.imports, name=case.name)
        parts.append(f"{head}    benchmark({case.fixture_args})\n")
    return "\n\n".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer processes, rounds, samples")
    parser.add_argument("--samples", type=int, help="pbench samples per function (20; --quick 5)")
    args = parser.parse_args()
    samples = args.samples or (5 if args.quick else 20)
    timings: dict[str, dict[str, dict[str, Any]]] = {}
    status = 0
    with tempfile.TemporaryDirectory(prefix="pbench-timing-peers-") as tmp:
        base = Path(tmp)
        (base / f"{MODULE}.py").write_text(FUNCTIONS)
        env = {**os.environ, "PBENCH_RUN_DIR": str(base / "run")}
        parts = [
            ("pyperf", lambda: time_pyperf(base, args.quick)),
            ("pytest_benchmark", lambda: time_pytest_benchmark(base, args.quick)),
            ("pbench_no_tools", lambda: time_pbench(base, samples, "empty", env)),
            ("pbench_light", lambda: light(base, samples, env)),
        ]
        for label, measure in parts:
            try:
                timings[label] = measure()
            except Exception as exc:  # one timer failing leaves the others' rows
                status = 1
                row = {"benchmark": "timing_peers", "timer": label, "error": str(exc)}
                print(json.dumps(row), flush=True)
    for case in CASES:
        print(json.dumps(row_of(case, timings, samples)), flush=True)
    return status


def light(base: Path, samples: int, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    argv = [sys.executable, "-m", "pbench_runner", "register-tool-set", "light", "--group=light"]
    run(argv, cwd=base, env=env)
    return time_pbench(base, samples, "light", env)


def row_of(
    case: Case, timings: dict[str, dict[str, dict[str, Any]]], samples: int
) -> dict[str, Any]:
    """One function's JSON line: ns per call of each timer, and the ratios to pyperf."""

    def fact(label: str, key: str) -> Any:
        return timings.get(label, {}).get(case.name, {}).get(key)

    def ns(label: str, key: str = "mean_ns") -> float | None:
        value = fact(label, key)
        return None if value is None else round(value, 1)

    def ratio(label: str) -> float | None:
        mine, pyperf = fact(label, "mean_ns"), fact("pyperf", "mean_ns")
        return None if mine is None or not pyperf else round(mine / pyperf, 3)

    return {
        "benchmark": "timing_peers",
        "function": case.name,
        "call": case.call,
        "pyperf_ns": ns("pyperf"),
        "pyperf_median_ns": ns("pyperf", "median_ns"),
        "pytest_benchmark_ns": ns("pytest_benchmark"),
        "pytest_benchmark_median_ns": ns("pytest_benchmark", "median_ns"),
        "pbench_ns_no_tools": ns("pbench_no_tools"),
        "pbench_median_ns_no_tools": ns("pbench_no_tools", "median_ns"),
        "pbench_ns_light": ns("pbench_light"),
        "pbench_median_ns_light": ns("pbench_light", "median_ns"),
        "ratio_pbench_no_tools_to_pyperf": ratio("pbench_no_tools"),
        "ratio_pbench_light_to_pyperf": ratio("pbench_light"),
        "ratio_pytest_benchmark_to_pyperf": ratio("pytest_benchmark"),
        "pyperf_values": fact("pyperf", "values"),
        "pytest_benchmark_rounds": fact("pytest_benchmark", "rounds"),
        "pytest_benchmark_loops": fact("pytest_benchmark", "loops"),
        "pbench_samples": samples,
        "pbench_loops_no_tools": fact("pbench_no_tools", "loops"),
        "pbench_loops_light": fact("pbench_light", "loops"),
    }


if __name__ == "__main__":
    sys.exit(main())
