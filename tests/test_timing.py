"""Timing as precise as pyperf's, and pytest-benchmark suites run unchanged.

The unit tests time real calls; the rest run the real ``pbench run`` (with
vmstat around every sample where tools matter) and plain ``pytest`` with
pytest-benchmark on the same files.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pbench_runner.timing import calibrate, fmt_time, time_round

from .conftest import HOST, latest_result, pbench_env


def test_a_round_times_only_its_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slow CPU clocks around the loop do not reach the per-call time."""
    real = time.thread_time_ns

    def slow_thread_time() -> int:
        time.sleep(0.02)
        return real()

    monkeypatch.setattr(time, "thread_time_ns", slow_thread_time)
    one = time_round(lambda: None, loops=1000)
    assert one.per_call_s < 2e-6, fmt_time(one.per_call_s)  # 20 ms would show as 20 µs


def test_calibration_makes_a_round_last_the_minimum_time() -> None:
    loops = calibrate(lambda: None, min_time=0.02)
    assert loops > 10_000
    assert time_round(lambda: None, loops=loops).wall_ns >= 0.015e9


def test_times_are_shown_in_the_unit_that_fits() -> None:
    assert fmt_time(4.2e-8) == "42 ns"
    assert fmt_time(3.2e-6) == "3.2 µs"
    assert fmt_time(0.015) == "15 ms"
    assert fmt_time(1.25) == "1.25 s"


SUITE = """
import time

import pytest


def noop():
    pass


def one_us():
    end = time.perf_counter_ns() + 1000
    while time.perf_counter_ns() < end:
        pass


def bench_noop(benchmark):
    benchmark(noop)


def bench_one_us(benchmark):
    assert benchmark(one_us) is None


def bench_plain_is_timed_without_the_slow_clocks(sample):
    pass


def bench_twice(benchmark):
    benchmark(noop)
    benchmark(noop)
"""

SLOW_CLOCKS = """
import resource
import time

_thread_time_ns, _getrusage = time.thread_time_ns, resource.getrusage


def _slow_thread_time_ns():
    time.sleep(0.05)
    return _thread_time_ns()


def _slow_getrusage(who):
    time.sleep(0.05)
    return _getrusage(who)


time.thread_time_ns = _slow_thread_time_ns
resource.getrusage = _slow_getrusage
"""


def test_callables_are_timed_per_call_in_calibrated_loops(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "bench_timing.py").write_text(SUITE)
    (suite / "conftest.py").write_text(SLOW_CLOCKS)  # CPU clocks that take 50 ms a read
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = pbench(
        "run", str(suite), "--samples=3", "--sysinfo=none", "--no-progress", "--min-time=0.05"
    )
    assert proc.returncode == 1, proc.stdout[-3000:]  # bench_twice fails, the rest pass
    assert "can be used only once per test" in proc.stdout
    result = latest_result(run_dir)

    def iteration(name: str) -> dict:  # type: ignore[type-arg]
        (found,) = result.glob(f"*-{name}/result.json")
        return json.loads(found.read_text())  # type: ignore[no-any-return]

    noop, one_us = iteration("bench_noop"), iteration("bench_one_us")
    for it in (noop, one_us):
        stats = it["metrics"]["wall_s"]["summary"]
        assert stats["rounds"] == 3 and stats["loops"] == it["benchmark"]["loops"]
        assert stats["ops"] == pytest.approx(1 / stats["mean"])
        for sample in it["samples"]:
            assert sample["loops"] == stats["loops"]
            # a round lasts the minimum time, the tools around it
            assert sample["loops"] * sample["wall_s"] >= 0.04
            assert HOST in sample["hosts"]
    assert noop["metrics"]["wall_s"]["summary"]["median"] < 0.5e-6
    assert 0.8e-6 < one_us["metrics"]["wall_s"]["summary"]["median"] < 3e-6
    # a plain benchmark: only the call is timed, not the (slow) CPU clocks around it
    plain = iteration("bench_plain_is_timed_without_the_slow_clocks")
    assert max(s["wall_s"] for s in plain["samples"]) < 0.01
    assert " ns ±" in proc.stdout and "ops/s" in proc.stdout


PYTEST_BENCHMARK_SUITE = {
    "conftest.py": """
import pytest


@pytest.fixture
def numbers():
    return list(range(100))
""",
    "test_suite.py": """
import pytest


def test_sum(benchmark, numbers):
    assert benchmark(sum, numbers) == 4950


@pytest.mark.parametrize("n", [10, 15])
def test_fib(benchmark, n):
    def fib(k):
        return k if k < 2 else fib(k - 1) + fib(k - 2)

    benchmark.extra_info["n"] = n
    benchmark(fib, n)


@pytest.mark.benchmark(group="sorting")
def test_sort_pedantic(benchmark):
    def setup():
        return (list(range(1000, 0, -1)),), {}

    benchmark.pedantic(sorted, setup=setup, rounds=5, warmup_rounds=1)


class TestGrouped:
    def test_join(self, benchmark):
        benchmark.group = "strings"
        benchmark(",".join, ["a"] * 100)


def test_not_a_benchmark():
    assert True
""",
}


def _write(where: Path, files: dict[str, str]) -> None:
    where.mkdir()
    for name, text in files.items():
        (where / name).write_text(textwrap.dedent(text))


def test_a_pytest_benchmark_suite_runs_unchanged_with_tools(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "pb"
    _write(suite, PYTEST_BENCHMARK_SUITE)
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = pbench(
        "run", str(suite), "--pytest-benchmark", "--samples=2", "--sysinfo=none",
        "--no-progress", "--min-time=0.02",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 deselected" in proc.stdout  # test_not_a_benchmark is left to pytest
    top = json.loads((latest_result(run_dir) / "result.json").read_text())
    found = {it["benchmark"]["fullname"]: it for it in top["iterations"]}
    assert len(found) == 5, sorted(found)
    assert found["pb/test_suite.py::test_fib[15]"]["benchmark"]["extra_info"] == {"n": 15}
    assert found["pb/test_suite.py::test_fib[15]"]["benchmark"]["params"] == {"n": 15}
    assert found["pb/test_suite.py::test_sort_pedantic"]["benchmark"]["group"] == "sorting"
    assert found["pb/test_suite.py::TestGrouped::test_join"]["benchmark"]["group"] == "strings"
    pedantic = found["pb/test_suite.py::test_sort_pedantic"]
    assert pedantic["benchmark"]["loops"] == 5  # rounds x iterations, as asked
    for it in found.values():
        assert it["status"] == "ok" and HOST in it["hosts"]
        assert all(s["tools"] == "default" for s in it["samples"])

    # plain pytest on the same files: pytest-benchmark's own fixture, untouched by pbench
    theirs, ours = tmp_path / "theirs.json", tmp_path / "ours.json"
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider",
         "--benchmark-min-rounds=2", f"--benchmark-json={theirs}"],
        capture_output=True, text=True, env=pbench_env(run_dir), cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stdout[-3000:]
    assert "6 passed" in plain.stdout and "benchmark" in plain.stdout.lower()

    # pytest-benchmark's file as the baseline, ours in its format, read by its compare
    proc = pbench(
        "run", str(suite), "--pytest-benchmark", "--samples=2", "--sysinfo=none",
        "--no-progress", "--min-time=0.02", f"--compare={theirs}", f"--benchmark-json={ours}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "compared with" in proc.stdout and "test_sort_pedantic" in proc.stdout
    exported = json.loads(ours.read_text())
    assert {b["fullname"] for b in exported["benchmarks"]} == set(found)
    assert exported["machine_info"]["cpu"]["count"] >= 1 and "commit_info" in exported
    compared = subprocess.run(
        [str(Path(sys.executable).with_name("pytest-benchmark")), "compare", str(theirs),
         str(ours), "--columns=min,mean"],
        capture_output=True, text=True, cwd=tmp_path / "run", timeout=120,
    )  # fmt: skip
    assert compared.returncode == 0, compared.stdout + compared.stderr
    assert "test_sum" in compared.stdout and "test_fib[15]" in compared.stdout
