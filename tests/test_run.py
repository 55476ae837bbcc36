"""``pbench run``: benchmark files run like tests, with tools around every sample."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import HOST, latest_result, pbench_env, running

BENCH = """
import time
import pytest

VALUES = {1: 10.0, 2: 20.0, 3: 60.0}

def bench_known(sample):
    sample.record("score", VALUES[sample.number], unit="pts", higher_is_better=True)

@pytest.mark.parametrize("size", [1, 2])
def bench_param(sample, size, workload):
    sample.record("size", size * workload)

@pytest.mark.slowish
def bench_marked(sample):
    sample.run(["true"])

@pytest.mark.pbench(samples=1, tools=False)
def bench_no_tools(sample):
    sample.record("x", 1)

def bench_broken(sample):
    sample.run("echo oops >&2; exit 3")

@pytest.mark.pbench(timeout=0.5, samples=1)
def bench_too_slow(sample):
    time.sleep(10)

def test_not_a_benchmark():
    raise AssertionError("pbench run must not run tests")
"""

CONFTEST = """
import pytest

def pytest_configure(config):
    config.addinivalue_line("markers", "slowish: a custom marker")

@pytest.fixture
def workload():
    return 100
"""


def write_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "bench_suite.py").write_text(textwrap.dedent(BENCH))
    (suite / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    (suite / "test_plain.py").write_text("def test_ok():\n    assert True\n")
    return suite


def iteration(result: Path, prefix: str) -> dict:  # type: ignore[type-arg]
    matches = [p for p in result.iterdir() if p.is_dir() and p.name.split("-", 1)[-1] == prefix]
    assert len(matches) == 1, (prefix, sorted(p.name for p in result.iterdir()))
    return json.loads((matches[0] / "result.json").read_text())  # type: ignore[no-any-return]


def test_a_suite_runs_with_tools_statistics_and_failures(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(tmp_path)
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    junit = tmp_path / "junit.xml"
    out = tmp_path / "out.json"
    proc = pbench(
        "run",
        str(suite),
        "--samples=3",
        "--sysinfo=none",
        f"--json={out}",
        "--",
        f"--junitxml={junit}",
    )
    assert proc.returncode == 1, proc.stdout[-3000:]  # two benchmarks fail, the rest run
    result = latest_result(run_dir)
    assert result.name.startswith("pbench-run_")

    known = iteration(result, "bench_known")
    summary = known["metrics"]["score"]["summary"]
    values = [10.0, 20.0, 60.0]
    assert known["metrics"]["score"]["values"] == values
    assert summary["mean"] == statistics.fmean(values)
    assert summary["stddev"] == statistics.stdev(values)
    assert summary["median"] == 20.0
    assert summary["closest"] == 2  # 20 is nearest the mean of 30
    assert known["metrics"]["score"]["unit"] == "pts"
    assert known["metrics"]["score"]["higher_is_better"] is True
    assert len(known["samples"]) == 3
    for n in (1, 2, 3):
        sample = result / known["name"] / f"sample{n}"
        assert (sample / "tools-default" / HOST / "vmstat" / "vmstat-stdout.txt").exists()
    assert (result / known["name"] / "reference-result").resolve().name.startswith("sample")

    assert iteration(result, "bench_param_1")["metrics"]["size"]["values"] == [100.0] * 3
    assert iteration(result, "bench_param_2")["metrics"]["size"]["values"] == [200.0] * 3

    no_tools = iteration(result, "bench_no_tools")
    assert len(no_tools["samples"]) == 1
    assert not (result / no_tools["name"] / "sample1" / "tools-default").exists()

    broken = iteration(result, "bench_broken")
    assert broken["status"] == "failed"
    assert "exited with status 3" in broken["samples"][0]["status"]
    assert "oops" in broken["samples"][0]["status"]
    # its tools were stopped and their data kept
    assert (result / broken["name"] / "sample1" / "tools-default" / HOST / "vmstat").is_dir()

    slow = iteration(result, "bench_too_slow")
    assert "ran past its timeout of 0.5 s" in slow["samples"][0]["status"]

    assert "pbench results" in proc.stdout
    assert "test_not_a_benchmark" not in proc.stdout
    assert "test_plain" not in proc.stdout
    assert junit.exists() and "bench_known" in junit.read_text()
    data = json.loads(out.read_text())
    assert {it["nodeid"].split("::")[1] for it in data["iterations"]} >= {
        "bench_known",
        "bench_broken",
    }


def test_selection_with_k_and_markers(pbench, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(tmp_path)
    proc = pbench("run", str(suite), "--samples=1", "--", "-k", "known or param")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "3 passed" in proc.stdout
    proc = pbench("run", str(suite), "--samples=1", "--", "-m", "slowish")
    assert proc.returncode == 0
    assert "1 passed" in proc.stdout


def test_plain_pytest_does_not_run_benchmarks(tmp_path: Path) -> None:
    import subprocess
    import sys

    suite = write_suite(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite), "-q", "-p", "no:cacheprovider"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout
    assert "1 passed" in proc.stdout  # only test_plain.py


def test_no_benchmarks_exits_5_and_starts_nothing(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    """As pytest's 'no tests ran', and before Redis, the sink or a result directory."""
    pbench("register-tool", "--name=vmstat", check=True)
    (tmp_path / "empty").mkdir()
    proc = pbench("run", str(tmp_path / "empty"))
    assert proc.returncode == 5, proc.stdout
    proc = pbench("run", str(tmp_path / "nonexistent"))
    assert proc.returncode == 2 and "not found" in proc.stdout + proc.stderr
    assert not (run_dir / "results").exists()
    assert "Result directory" not in proc.stdout


SCORED = """
import os

def bench_scored(sample):
    sample.record("score", float(os.environ["BENCH_SCORE"]) + sample.number * 0.01,
                  unit="pts", higher_is_better=True)
"""


def test_compare_and_fail_on_gate_a_regression(
    pbench, run_dir: Path, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    suite = tmp_path / "scored"
    suite.mkdir()
    (suite / "bench_scored.py").write_text(textwrap.dedent(SCORED))
    monkeypatch.setenv("BENCH_SCORE", "100")
    base = pbench("run", str(suite), "--samples=3", "--sysinfo=none", "--save=base")
    assert base.returncode == 0, base.stdout[-2000:]
    assert (run_dir / "saved" / "base" / "result.json").exists()

    monkeypatch.setenv("BENCH_SCORE", "99")  # -1 %: inside the limit
    ok = pbench(
        "run", str(suite), "--samples=3", "--sysinfo=none", "--compare=base", "--fail-on=score:-5%"
    )
    assert ok.returncode == 0, ok.stderr
    assert "compared with" in ok.stdout and "-1.0%" in ok.stdout

    monkeypatch.setenv("BENCH_SCORE", "90")  # -10 %: a regression
    bad = pbench(
        "run",
        str(suite),
        "--samples=3",
        "--sysinfo=none",
        "--compare=base",
        "--fail-on=score:-5%",
        "--save=base",
        "--",
        f"--junitxml={tmp_path / 'junit.xml'}",
    )
    assert bad.returncode == 3
    assert "regression: " in bad.stderr
    assert "bench_scored: score changed -10.0%" in bad.stderr
    assert "past the limit of -5%" in bad.stderr
    # the baseline is kept: a run that fails its gate never replaces it
    assert "not saved as 'base'" in bad.stderr
    assert (run_dir / "saved" / "base").resolve().name != latest_result(run_dir).name
    # the verdict where CI looks: the benchmark failed in JUnit, and in result.json
    junit = (tmp_path / "junit.xml").read_text()
    assert 'failures="1"' in junit and "score changed -10.0%" in junit
    it = iteration(latest_result(run_dir), "bench_scored")
    assert it["status"] == "regressed" and it["verdict"]["score"]["verdict"] == "worse"
    meta = json.loads((latest_result(run_dir) / "metadata.json").read_text())
    assert meta["run"]["status"] == "regressed"

    table = pbench("compare", "base", str(latest_result(run_dir)))
    assert table.returncode == 0
    assert "score" in table.stdout and "-10.0%" in table.stdout and "worse" in table.stdout
    gated = pbench("compare", "base", str(latest_result(run_dir)), "--fail-on=score:-5%")
    assert gated.returncode == 3
    listed = pbench("compare", "--list")
    assert listed.returncode == 0 and listed.stdout.startswith("base")

    bad_rule = pbench("run", str(suite), "--compare=base", "--fail-on=score-5")
    assert bad_rule.returncode == 2
    assert "bad --fail-on 'score-5'" in bad_rule.stderr
    missing = pbench("compare", "nosuch", "base")
    assert missing.returncode == 2
    assert "no run 'nosuch'" in missing.stderr


BUSY = """
import time

def bench_busy(sample):
    end = time.perf_counter() + 3.2
    n = 0
    while time.perf_counter() < end:
        n += 1
    sample.record("loops", n)
"""


def test_each_benchmark_shows_what_every_host_did(pbench, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = tmp_path / "busy"
    suite.mkdir()
    (suite / "bench_busy.py").write_text(textwrap.dedent(BUSY))
    pbench("register-tool", "--name=sar", "--", "--interval=1", check=True)
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = pbench("run", str(suite), "--samples=1", "--sysinfo=none")
    assert proc.returncode == 0, proc.stdout[-2000:]
    busy = iteration(latest_result(run_dir), "bench_busy")
    host = busy["hosts"][HOST]
    # one of this machine's cores spins: the host is clearly busy, never over 100 %
    cpus = os.cpu_count() or 1
    assert 60 / cpus < host["cpu_busy_pct"]["mean"] <= 100
    # the mean is the kernel counters' over the exact window, the peak the highest of
    # sar's 1 s rows inside it: two readings of the same CPU time, within a few points
    assert host["cpu_busy_pct"]["peak"] is not None
    assert host["cpu_busy_pct"]["peak"] >= host["cpu_busy_pct"]["mean"] - 3
    assert host["mem_used_mib"]["mean"] > 10
    assert host["disk_kib_s"]["mean"] >= 0 and host["net_kib_s"]["mean"] >= 0
    assert f"host {HOST}: CPU busy %" in proc.stdout


def test_sigterm_stops_the_run_cleanly_and_keeps_what_it_has(
    run_dir: Path, tmp_path: Path, pbench
) -> None:  # type: ignore[no-untyped-def]
    import signal
    import subprocess
    import sys

    from pbench_runner import procs

    from .conftest import pbench_env

    suite = tmp_path / "slow"
    suite.mkdir()
    began = tmp_path / "benchmark-began"  # the benchmark runs once the tools have started
    (suite / "bench_slow.py").write_text(
        "import pathlib\nimport time\n\n"
        f"def bench_slow(sample):\n    pathlib.Path({str(began)!r}).touch()\n    time.sleep(30)\n"
    )
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pbench_runner", "run", str(suite), "--samples=3", "--sysinfo=none"],
        cwd=tmp_path,
        env=pbench_env(run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert procs.wait_until(began.exists, 30)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out[-2000:]
    result = latest_result(run_dir)
    assert (result / "result.json").exists()
    sample = next(result.glob("1-*/sample1"))
    assert (sample / "tools-default" / HOST / "vmstat" / "vmstat-stdout.txt").exists()


GROUPS = """
import pytest

def bench_plain(sample):
    sample.record("x", 1)

@pytest.mark.pbench(tool_group="other", samples=2)
def bench_other_group(sample):
    sample.record("x", 2)

@pytest.mark.pbench(tool_group="nosuch")
def bench_missing_group(sample):
    sample.record("x", 3)
"""


def test_a_marker_picks_the_tool_group_of_one_benchmark(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    suite = tmp_path / "groups"
    suite.mkdir()
    (suite / "bench_groups.py").write_text(textwrap.dedent(GROUPS))
    pbench("register-tool", "--name=vmstat", "--group=other", "--", "--interval=1", check=True)
    proc = pbench("run", str(suite), "--samples=1", "--sysinfo=none")
    assert proc.returncode == 1  # the benchmark naming an empty group fails, the others run
    assert "tool group 'nosuch', which has no tools registered" in proc.stdout
    result = latest_result(run_dir)
    plain = iteration(result, "bench_plain")
    assert plain["samples"][0]["tools"] is None
    other = iteration(result, "bench_other_group")
    assert len(other["samples"]) == 2
    for n in (1, 2):
        vmstat = result / other["name"] / f"sample{n}" / "tools-other" / HOST / "vmstat"
        assert (vmstat / "vmstat-stdout.txt").exists()
    assert HOST in other["hosts"]


def test_host_summary_from_pcp_and_node_exporter_alone(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Without sysstat, the per-host summary comes from the persistent tools' data."""
    suite = tmp_path / "busy"
    suite.mkdir()
    (suite / "bench_busy.py").write_text(textwrap.dedent(BUSY))
    pbench("register-tool", "--name=pcp", "--", "--interval=1", check=True)
    proc = pbench("run", str(suite), "--samples=1", "--sysinfo=none")
    assert proc.returncode == 0, proc.stdout[-2000:]
    host = iteration(latest_result(run_dir), "bench_busy")["hosts"][HOST]
    cpus = os.cpu_count() or 1
    assert 60 / cpus < host["cpu_busy_pct"]["peak"] <= 100
    assert host["mem_used_mib"]["mean"] > 10


PYPROJECT = """
[tool.pbench]
samples = 2
warmup = 1
sysinfo = "none"
"""


def test_project_settings_give_run_defaults_and_options_win(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    suite = write_suite(tmp_path)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    proc = pbench("run", str(suite), "--", "-k", "known")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    known = iteration(latest_result(run_dir), "bench_known")
    assert [s["sample"] for s in known["samples"]] == [1, 2]
    directory = next(p for p in latest_result(run_dir).iterdir() if p.name.endswith("bench_known"))
    assert (directory / "warmup1").is_dir()
    # without a terminal, progress is one line per sample (and warm-up run), each a
    # line of its own among pytest's output: never in the middle of its dots
    lines = proc.stdout.splitlines()
    assert any(line.startswith("pbench: bench_known warm-up 1/1: ok") for line in lines)
    assert any(line.startswith("pbench: bench_known sample 2/2: ok") for line in lines)
    assert all(line.startswith("pbench: ") for line in lines if "pbench: bench_" in line)
    proc = pbench("run", str(suite), "--samples=1", "--no-progress", "-k", "known")  # -k directly
    assert proc.returncode == 0
    assert len(iteration(latest_result(run_dir), "bench_known")["samples"]) == 1
    assert "pbench: bench_known" not in proc.stdout + proc.stderr


def test_a_bad_project_setting_is_a_usage_error_naming_it(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    suite = write_suite(tmp_path)
    (tmp_path / "pbench.toml").write_text('samples = "two"\n')
    proc = pbench("run", str(suite))
    assert proc.returncode == 2
    assert 'pbench.toml: samples = "two" must be a whole number' in proc.stderr
    # a typo names the key it looks like, under pbench run and user-benchmark alike,
    # and the settings are found from a directory below the project's
    (tmp_path / "pbench.toml").write_text("sampels = 7\n[deadlines]\nactoin = 5\n")
    for args in (("run", "."), ("user-benchmark", "--", "true")):
        proc = subprocess.run(
            [sys.executable, "-m", "pbench_runner", *args],
            cwd=suite, env=pbench_env(run_dir), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert proc.returncode == 2, (args, proc.stderr)
        assert "unknown key 'sampels' (did you mean 'samples'?)" in proc.stderr, proc.stderr
    (tmp_path / "pbench.toml").write_text("[deadlines]\nactoin = 5\n")
    proc = pbench("run", str(suite))
    assert "unknown key 'actoin' in [deadlines] (did you mean 'action'?)" in proc.stderr


def test_a_marker_collects_sysinfo_around_one_benchmark(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    suite = tmp_path / "si"
    suite.mkdir()
    (suite / "bench_si.py").write_text(
        "import pytest\n\n"
        "@pytest.mark.pbench(samples=1, sysinfo='kernel,memory')\n"
        "def bench_with(sample):\n    sample.record('x', 1)\n\n"
        "@pytest.mark.pbench(samples=1)\n"
        "def bench_without(sample):\n    sample.record('x', 1)\n"
    )
    pbench("register-tool", "--name=noop", check=True)
    proc = pbench("run", str(suite), "--sysinfo=none")
    assert proc.returncode == 0, proc.stdout[-2000:]
    result = latest_result(run_dir)
    with_dir = next(p for p in result.iterdir() if p.name.endswith("bench_with"))
    without = next(p for p in result.iterdir() if p.name.endswith("bench_without"))
    for when in ("beg", "end"):
        assert (with_dir / "sysinfo" / when / HOST / "kernel" / "uname.txt").exists()
        assert (with_dir / "sysinfo" / when / HOST / "memory").is_dir()
        assert not (with_dir / "sysinfo" / when / HOST / "packages").exists()
    assert not (without / "sysinfo").exists() and not (result / "sysinfo" / "beg" / HOST).exists()


def test_usage_errors_are_refused_before_anything_runs(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    suite = tmp_path / "typo"
    suite.mkdir()
    (suite / "bench_typo.py").write_text(
        "import pytest\n\n@pytest.mark.pbench(sample=5)\ndef bench_t(sample):\n    pass\n"
    )
    proc = pbench("run", str(suite))
    assert proc.returncode == 2
    assert "the pbench marker has no sample" in proc.stdout + proc.stderr
    good = write_suite(tmp_path)
    proc = pbench("run", str(good), "--fail-on=score:-5%")
    assert proc.returncode == 2 and "--fail-on needs a baseline" in proc.stderr
    proc = pbench("run", str(good), "--save=latest")
    assert proc.returncode == 2 and "bad --save name 'latest'" in proc.stderr
    # refused before anything started: no Redis, no result directory
    assert not (run_dir / "results").exists()
    proc = pbench("run", str(good), "--tool-group=defualt")
    assert proc.returncode == 2 and "tool group 'defualt' has no tools registered" in proc.stderr
    assert "--no-tools" in proc.stderr
    proc = pbench("run", str(good), "--json=/nonexistent/x.json")
    assert proc.returncode == 2 and "cannot write /nonexistent/x.json" in proc.stderr
    proc = pbench("run", str(good), "--", "--junitxml=/nonexistent/j.xml")
    assert proc.returncode == 2 and "cannot write /nonexistent/j.xml" in proc.stderr
    assert not (run_dir / "results").exists()


DIES = """
import os, signal, time
from pbench_runner import procs

def bench_tools_die(sample, request):
    # the run's own pmcd is killed while the benchmark runs
    run_id = request.config.pluginmanager.get_plugin("pbench-session").run.run_id
    for pid in procs.run_pids(run_id):
        if "pmcd" in procs.cmdline(pid).split(" ")[0] and sample.number == 1:
            os.kill(pid, signal.SIGKILL)
    time.sleep(1.2)
    sample.record("done", 1.0)
"""


def test_a_tool_that_dies_marks_the_sample_and_the_run_exits_4(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "dies"
    suite.mkdir()
    (suite / "bench_dies.py").write_text(textwrap.dedent(DIES))
    pbench("register-tool", "--name=pcp", "--", "--interval=1", check=True)
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = pbench("run", str(suite), "--samples=2", "--sysinfo=none", "--save=nope")
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "not saved as 'nope'" in proc.stderr
    result = latest_result(run_dir)
    it = iteration(result, "bench_tools_die")
    assert it["status"] == "ok"  # the benchmark's own figures stand
    first, second = it["samples"]
    assert any("pmcd died" in p for p in first["tool_problems"])
    # pmcd runs for the whole session: every later sample is marked too
    assert any("pmcd died" in p for p in second["tool_problems"])
    vmstat = result / "1-bench_tools_die" / "sample1" / "tools-default" / HOST / "vmstat"
    assert (vmstat / "vmstat.csv").exists()
    meta = json.loads((result / "metadata.json").read_text())
    assert meta["run"]["status"] == "failed"


def test_tools_that_cannot_start_exit_4_and_leave_a_failed_result(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    suite = write_suite(tmp_path)
    pbench("register-tool", "--name=pcp", check=True)
    import subprocess
    import sys

    from .conftest import pbench_env

    proc = subprocess.run(
        [sys.executable, "-m", "pbench_runner", "run", str(suite), "--", "-k", "known"],
        env={**pbench_env(run_dir), "PBENCH_PMCD": "/nonexistent/pmcd"},
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    meta = json.loads((latest_result(run_dir) / "metadata.json").read_text())
    assert meta["run"]["status"] == "failed"
    assert "/nonexistent/pmcd" in json.dumps(meta)


def test_result_files_are_strict_json_and_the_reference_follows_the_primary_metric(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    suite = write_suite(tmp_path)
    proc = pbench("run", str(suite), "--samples=3", "--", "-k", "known or broken")
    assert proc.returncode == 1
    result = latest_result(run_dir)
    for path in result.rglob("result.json"):
        assert "NaN" not in path.read_text() and "Infinity" not in path.read_text(), path
        json.loads(path.read_text())
    known = iteration(result, "bench_known")
    assert known["primary_metric"] == "score"
    # scores 10, 20, 60: the mean is 30, closest is sample 2
    assert known["reference"] == "sample2"


def test_a_shell_command_past_its_timeout_takes_its_children_with_it(tmp_path: Path) -> None:

    from pbench_runner.bench import CommandFailed, Sample

    marker = f"{os.getpid()}.{time.time_ns() % 1000:03d}"
    sample = Sample(1, tmp_path / "s1")
    with pytest.raises(CommandFailed, match=r"did not finish within 0\.5 s"):
        sample.run(f"sleep {marker}; echo never", timeout=0.5)
    assert not running(f"sleep {marker}")


DISCOVERY = """
[tool.pbench]
files = "perf_*.py"
functions = "perf_*"
classes = "Perf*"
samples = 1
sysinfo = "none"
"""


def test_classes_project_discovery_patterns_x_and_p(pbench, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    suite = tmp_path / "custom"
    suite.mkdir()
    (tmp_path / "pyproject.toml").write_text(DISCOVERY)
    (suite / "perf_things.py").write_text(
        "class PerfThings:\n"
        "    def perf_one(self, sample):\n        sample.record('x', 1)\n"
        "    def perf_two(self, sample):\n        raise RuntimeError('broken')\n"
        "    def perf_three(self, sample):\n        sample.record('x', 3)\n"
        "def bench_not_matched(sample):\n    raise AssertionError('not a benchmark here')\n"
    )
    (suite / "bench_ignored.py").write_text("def bench_x(sample):\n    raise AssertionError\n")
    (tmp_path / "extra_plugin.py").write_text(
        "def pytest_configure(config):\n    print('extra plugin loaded')\n"
    )
    proc = pbench("run", str(suite), "-p", "extra_plugin", "--", "-x")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "extra plugin loaded" in proc.stdout
    result = latest_result(run_dir)
    ran = sorted(json.loads((p / "result.json").read_text())["nodeid"].split("::", 1)[1]
                 for p in result.iterdir() if p.is_dir() and (p / "result.json").exists()
                 and p.name[0].isdigit())  # fmt: skip
    assert ran == ["PerfThings::perf_one", "PerfThings::perf_two"]  # -x: stopped at the failure


CONTROLLED = """
import os

def bench_latency(sample):
    values = [float(v) for v in os.environ["BENCH_VALUES"].split(",")]
    sample.record("latency_ms", values[sample.number - 1], unit="ms")
"""


def test_a_steady_slowdown_with_one_outlier_fails_and_unchanged_runs_pass(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    """Issue 13's first case: five new samples all above the base's maximum, one of
    them an outlier, once passed as 'within noise' (Welch's t on the means)."""
    suite = tmp_path / "controlled"
    suite.mkdir()
    (suite / "bench_latency.py").write_text(CONTROLLED)
    run = ("run", str(suite), "--samples=5", "--sysinfo=none", "--no-progress")
    monkeypatch.setenv("BENCH_VALUES", "100,101,99,100,102")
    assert pbench(*run, "--save=base").returncode == 0
    for unchanged in ("101,99,100,102,100", "99,100,101,100,101"):  # no false alarm
        monkeypatch.setenv("BENCH_VALUES", unchanged)
        proc = pbench(*run, "--compare=base", "--fail-on=latency_ms:+10%")
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    monkeypatch.setenv("BENCH_VALUES", "130,131,129,132,300")
    report = tmp_path / "report.md"
    proc = pbench(*run, "--compare=base", "--fail-on=latency_ms:+10%", f"--markdown={report}")
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "regression: " in proc.stderr and "latency_ms" in proc.stderr
    # the interval is reported, not only the point, and its near edge is past +10 %
    (line,) = [x for x in proc.stdout.splitlines() if "latency_ms" in x and "worse" in x]
    assert "+31.0% [+" in line, line
    # the verdict for a pull-request comment, and as JSON
    markdown = report.read_text()
    assert markdown.startswith("**") and "| latency_ms |" in markdown.replace("`", "")
    latest = str(latest_result(run_dir))
    as_json = pbench("compare", "base", latest, "--format=json")
    (change,) = [c for c in json.loads(as_json.stdout) if c["metric"] == "latency_ms"]
    assert change["verdict"] == "worse"
    assert change["ci_low"] > 0.1
    # runs made with other tools are not compared under --strict
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    monkeypatch.setenv("BENCH_VALUES", "100,101,99,100,102")
    proc = pbench(*run, "--compare=base", "--strict")
    assert proc.returncode == 2 and "tool" in proc.stderr, proc.stderr
