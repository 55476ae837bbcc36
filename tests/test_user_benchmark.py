"""``pbench user-benchmark`` end to end with real Redis, sink, meisters and sysstat tools."""

from __future__ import annotations

import configparser
import csv
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from pbench_runner import procs

from .conftest import HOST, latest_result, pbench_env, running, spawn_pbench
from .live_output import wait_for_vmstat_rows

#: odd durations, different in every test session (other checkouts may run these
#: tests at the same time), so that a search of `ps` finds only this test's command
SLEEPER = f"59.{secrets.randbelow(10**6):06d}"
LEFTOVER = f"37.{secrets.randbelow(10**6):06d}"


def start_sleeping_benchmark(run_dir: Path, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """``pbench user-benchmark -- sleep SLEEPER`` in the background, to be interrupted."""
    return spawn_pbench(
        run_dir, tmp_path, "user-benchmark", "--sysinfo=none", *args, "--", "sleep", SLEEPER
    )


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_user_benchmark_with_two_sysstat_tools_writes_the_result_tree(
    pbench, run_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    pbench(
        "register-tool", "--name=vmstat", "--labels=controller", "--", "--interval=1", check=True
    )
    pbench("register-tool", "--name=iostat", "--", "--interval=1", check=True)
    proc = pbench(
        "user-benchmark",
        "--config=two-tools",
        "--samples=2",
        "--",
        "sh",
        "-c",
        "echo benchmark-output; sleep 3.2",  # vmstat -n 1: 2 rows and an interval to spare
    )
    assert proc.returncode == 0, proc.stderr
    result = latest_result(run_dir)
    assert f"Result directory: {result}" in proc.stdout
    assert result.name.startswith("pbench-user-benchmark_two-tools_")

    ini = configparser.ConfigParser(interpolation=None)
    ini.read(result / "metadata.log")
    assert ini["pbench"]["script"] == "pbench-user-benchmark"
    assert ini["run"]["status"] == "ok"
    assert ini["tools"]["hosts"] == HOST
    assert ini[f"tools/{HOST}"]["tools"] == "iostat,vmstat"
    assert ini[f"tools/{HOST}"]["label"] == "controller"
    assert ini["iterations/1-default"]["samples"] == "2"
    meta = json.loads((result / "metadata.json").read_text())
    assert meta["tools"]["hosts"][HOST]["tools"]["vmstat"] == {"interval": 1}
    assert meta["pbench"]["run_id"]
    assert (result / "tool-registration" / "default.json").exists()
    for log in ("redis.log", "tds.log", f"tm-{HOST}.log"):
        assert (result / "tm" / log).exists(), log

    for when in ("beg", "end"):
        info = result / "sysinfo" / when / HOST
        assert "Linux" in (info / "kernel" / "uname.txt").read_text()
        assert json.loads((info / "sysinfo.json").read_text())["kernel"]["ok"]

    for n in (1, 2):
        sample = result / "1-default" / f"sample{n}"
        assert (sample / "output.txt").read_text() == "benchmark-output\n"
        res = json.loads((sample / "result.json").read_text())
        assert res["exit_status"] == 0
        assert 3.0 < res["wall_s"] < 12
        tools = sample / "tools-default" / HOST
        rows = read_csv(tools / "vmstat" / "vmstat.csv")
        assert len(rows) >= 2
        assert all(0 <= int(r["id"]) <= 100 for r in rows)
        iorows = read_csv(tools / "iostat" / "iostat.csv")
        assert iorows and "timestamp" in iorows[0]


def test_the_commands_exit_status_is_passed_on(pbench, run_dir: Path) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = pbench("user-benchmark", "--sysinfo=none", "--", "sh", "-c", "exit 3")
    assert proc.returncode == 3
    assert "exited with status 3" in proc.stderr
    res = json.loads((latest_result(run_dir) / "1-default" / "sample1" / "result.json").read_text())
    assert res["exit_status"] == 3


def test_a_command_that_cannot_be_run_is_named(pbench, run_dir: Path) -> None:  # type: ignore[no-untyped-def]
    proc = pbench("user-benchmark", "--sysinfo=none", "--", "no-such-benchmark-9c1", "-x")
    assert proc.returncode == 2, proc.stderr
    assert "cannot run the benchmark command 'no-such-benchmark-9c1'" in proc.stderr
    assert "No such file or directory" in proc.stderr


def test_without_tools_the_benchmark_still_runs_and_says_so(pbench, run_dir: Path) -> None:  # type: ignore[no-untyped-def]
    proc = pbench("user-benchmark", "--", "echo", "hi")
    assert proc.returncode == 0, proc.stderr
    assert "no tools are registered in group 'default'" in proc.stderr
    assert "no tool data will be collected" in proc.stderr
    sample = latest_result(run_dir) / "1-default" / "sample1"
    assert (sample / "output.txt").read_text() == "hi\n"
    assert not (sample / "tools-default").exists()


def test_a_tool_that_fails_to_start_is_named_and_the_others_are_stopped(
    pbench, run_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    pbench("register-tool", "-p", "pbench_test_tools", "--name=failstart", check=True)
    proc = pbench(
        "user-benchmark", "-p", "pbench_test_tools", "--sysinfo=none", "--", "sleep", "0.5"
    )
    assert proc.returncode == 4, proc.stderr
    assert f"host {HOST}" in proc.stderr
    assert "failstart" in proc.stderr
    assert "cannot open /dev/imaginary-counter" in proc.stderr
    sample = latest_result(run_dir) / "1-default" / "sample1"
    # vmstat had started: it was stopped and its data kept
    assert (sample / "tools-default" / HOST / "vmstat" / "vmstat-stdout.txt").exists()
    meta = json.loads((latest_result(run_dir) / "metadata.json").read_text())
    assert meta["run"]["status"] == "failed"


def test_a_tool_that_dies_mid_sample_is_reported_with_its_stderr(pbench, run_dir: Path) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool", "-p", "pbench_test_tools", "--name=dies", check=True)
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = pbench(
        "user-benchmark", "-p", "pbench_test_tools", "--sysinfo=none", "--samples=2",
        "--", "sleep", "1.5",
    )  # fmt: skip
    assert proc.returncode == 4
    assert "tool 'dies' on host" in proc.stderr
    assert "exit status 7" in proc.stderr
    assert "counter vanished" in proc.stderr
    result = latest_result(run_dir)
    for n in (1, 2):  # the run goes on; every sample is marked and keeps the other data
        sample = result / "1-default" / f"sample{n}"
        marked = json.loads((sample / "result.json").read_text())["tool_problems"]
        assert any("tool 'dies'" in p and "exit status 7" in p for p in marked)
        tools = sample / "tools-default" / HOST
        assert (tools / "dies" / "dies-stdout.txt").read_text() == "collecting\n"
        assert read_csv(tools / "vmstat" / "vmstat.csv")
    assert json.loads((result / "metadata.json").read_text())["run"]["status"] == "failed"


def test_a_missing_program_is_refused_at_tool_meister_start(pbench, run_dir: Path) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool", "-p", "pbench_test_tools", "--name=needsmissing", check=True)
    began = time.monotonic()
    proc = pbench("user-benchmark", "-p", "pbench_test_tools", "--", "echo", "never")
    assert proc.returncode == 4
    assert time.monotonic() - began < 15
    assert (
        f"host {HOST}: tool 'needsmissing' needs the program 'pbench-no-such-program'"
        in proc.stderr
    )
    assert "install the package 'pbench-imaginary-package'" in proc.stderr
    assert not (latest_result(run_dir) / "1-default").exists()


def test_sigint_during_the_benchmark_keeps_partial_results_and_leaves_nothing(
    run_dir: Path, tmp_path: Path, pbench
) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = start_sleeping_benchmark(run_dir, tmp_path, "--samples=3")
    try:
        assert procs.wait_until(
            lambda: list(run_dir.glob("results/*/1-default/sample1/command.txt")), 30
        )
        result = latest_result(run_dir)
        wait_for_vmstat_rows(result / "tm", 1)  # vmstat has a row of the sample
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted by SIGINT" in err
    result = latest_result(run_dir)
    meta = json.loads((result / "metadata.json").read_text())
    assert meta["run"]["status"] == "interrupted"
    vmstat = result / "1-default" / "sample1" / "tools-default" / HOST / "vmstat"
    assert read_csv(vmstat / "vmstat.csv")
    assert not (result / "1-default" / "sample2").exists()
    assert not running(f"sleep {SLEEPER}")


def test_pbench_runs_as_a_module_and_a_script(run_dir: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pbench_runner", "--version"],
        capture_output=True,
        text=True,
        check=True,
        env=pbench_env(run_dir),
    )
    assert out.stdout.startswith("pbench_runner ")
    exe = Path(sys.executable).with_name("pbench")
    assert os.access(exe, os.X_OK)


def test_observers_see_the_lifecycle_and_a_broken_one_stops_nothing(
    pbench, run_dir: Path, tmp_path: Path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("TEST_OBSERVER_EVENTS", str(events))
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = pbench(
        "user-benchmark",
        "-p",
        "pbench_test_broken_observer",
        "-p",
        "pbench_test_observer",
        "--samples=2",
        "--",
        "true",
    )
    # the broken observer is reported, and the run is not lost
    assert proc.returncode == 0, proc.stderr
    assert "pbench_test_broken_observer: pbench_sample_started raised RuntimeError" in proc.stderr
    seen = [json.loads(line) for line in events.read_text().splitlines()]
    controller_events = [e["event"] for e in seen if e["event"] != "data_received"]
    assert controller_events == [
        "run_started",
        "sample_started",
        "tools_stopped",
        "sample_finished",
        "sample_started",
        "tools_stopped",
        "sample_finished",
        "run_finished",
    ]
    received = [(e["host"], e["kind"]) for e in seen if e["event"] == "data_received"]
    assert received.count((HOST, "tools")) == 2
    assert received.count((HOST, "sysinfo")) == 2
    assert seen[-1]["exit_status"] == str(proc.returncode)
    assert (latest_result(run_dir) / "1-default" / "sample2" / "tools-default" / HOST).exists()


def test_a_controller_killed_with_sigkill_takes_every_part_with_it(
    run_dir: Path, tmp_path: Path, pbench
) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = start_sleeping_benchmark(run_dir, tmp_path)
    try:
        assert procs.wait_until(
            lambda: list(run_dir.glob("results/*/1-default/sample1/command.txt")), 30
        )
        meta = json.loads((latest_result(run_dir) / "metadata.json").read_text())
        run_id = meta["pbench"]["run_id"]
        assert len(procs.run_pids(run_id)) >= 3  # sink, meister, vmstat
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # redis-server, the sink, the meister, vmstat and the benchmark all go too
    assert procs.wait_until(lambda: not procs.run_pids(run_id), 10), procs.run_pids(run_id)
    assert not running(f"sleep {SLEEPER}")


def test_the_sample_ends_when_the_command_exits_and_its_leftovers_are_stopped(
    pbench, run_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    proc = pbench(
        "user-benchmark", "--sysinfo=none", "--", "sh", "-c", f"sleep {LEFTOVER} & echo started"
    )
    assert proc.returncode == 0, proc.stderr
    res = json.loads((latest_result(run_dir) / "1-default" / "sample1" / "result.json").read_text())
    assert res["wall_s"] < 2
    assert not running(f"sleep {LEFTOVER}")
