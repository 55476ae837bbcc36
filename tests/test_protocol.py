"""One run and sample protocol under every verb: the same hooks, records and layout.

Each test drives the real ``pbench`` CLI (redis-server, the sink, a meister,
vmstat) and reads what a plugin author or a user sees: the hook calls an
observer plugin recorded, and the files of the result directory.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time
from pathlib import Path

import pytest

from pbench_runner import procs

from .conftest import HOST, latest_result, spawn_pbench

OBSERVERS = ("-p", "pbench_test_observer", "-p", "pbench_test_wrapper")


def _events(path: Path) -> list[tuple[str, ...]]:
    """The controller's hook calls, each as (event, sample, group, status)."""
    seen = [json.loads(line) for line in path.read_text().splitlines()]
    return [
        tuple(e.get(k, "") for k in ("event", "sample", "group", "status", "hosts"))
        for e in seen
        if e["event"] not in ("data_received",)
    ]


def _bench_file(tmp_path: Path) -> None:
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "bench_noop.py").write_text(
        textwrap.dedent(
            """
            def bench_noop(sample):
                sample.record("answer", 42)
            """
        )
    )


@pytest.fixture
def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv("TEST_OBSERVER_EVENTS", str(path))
    return path


def test_every_verb_fires_the_same_hooks_in_the_same_order(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path, events: Path
) -> None:
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    sequences: dict[str, list[tuple[str, ...]]] = {}

    proc = pbench("user-benchmark", *OBSERVERS, "--sysinfo=none", "--samples=2", "--", "true")
    assert proc.returncode == 0, proc.stderr
    sequences["user-benchmark"] = _events(events)
    events.unlink()

    _bench_file(tmp_path)
    proc = pbench("run", *OBSERVERS, "--sysinfo=none", "--samples=2", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sequences["run"] = _events(events)
    events.unlink()

    session = tmp_path / "session"
    pbench("tool-meister-start", *OBSERVERS, f"--dir={session}", "--sysinfo=none", check=True)
    try:
        for n in (1, 2):
            for verb in ("start-tools", "stop-tools", "send-tools"):
                done = pbench(verb, f"--dir={session / f'sample{n}'}", check=True)
            # send-tools tells what every host did during the sample
            assert f"host {HOST}: CPU busy %" in done.stdout, done.stdout
    finally:
        pbench("tool-meister-stop", "--sysinfo=none", check=True)
    sequences["lifecycle verbs"] = _events(events)

    expected = [("run_started", "", "", "", HOST)]
    for n in (1, 2):
        expected += [
            ("wrapped", f"sample{n}", "", "", ""),
            ("sample_started", f"sample{n}", "default", "", ""),
            ("tools_stopped", f"sample{n}", "default", "", ""),
            ("sample_finished", f"sample{n}", "default", "ok", ""),
        ]
    expected.append(("run_finished", "", "", "", ""))
    for verb, seen in sequences.items():
        assert seen == expected, verb


def test_user_benchmark_and_run_write_the_same_records(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    pbench("user-benchmark", "--sysinfo=none", "--", "true", check=True)
    ub = latest_result(run_dir)
    _bench_file(tmp_path)
    pbench("run", "--sysinfo=none", "--samples=1", "--no-progress", check=True)
    run = latest_result(run_dir)
    assert ub != run
    keys: list[set[str]] = []
    iteration_keys: list[set[str]] = []
    for result, iteration in ((ub, "1-default"), (run, "1-bench_noop")):
        assert (result / "tool-registration" / "default.json").exists(), result
        assert (result / "metadata.log").exists() and (result / "result.json").exists()
        sample = json.loads((result / iteration / "sample1" / "result.json").read_text())
        keys.append(set(sample) - {"command", "exit_status"})  # user-benchmark's own
        iteration_keys.append(set(json.loads((result / iteration / "result.json").read_text())))
        assert sample["status"] == "ok" and sample["tools"] == "default"
        window = sample["window"]
        assert window["start"] < window["stop"]
        host_start, host_stop = window["hosts"][HOST]
        assert host_start <= host_stop
        assert HOST in sample["hosts"]
        summary = json.loads((result / iteration / "result.json").read_text())
        assert summary["metrics"]["wall_s"]["summary"]["n"] == 1
        assert HOST in summary["hosts"]
        assert (result / iteration / "reference-result").resolve().name == "sample1"
        top = json.loads((result / "result.json").read_text())
        assert [it["name"] for it in top["iterations"]] == [iteration]
        assert top["run"]["run"]["status"] == "ok"
    # one record, one layout: the same keys under both verbs
    assert keys[0] == keys[1], keys
    assert keys[0] >= {"sample", "status", "start", "end", "wall_s", "cpu_s", "window", "hosts"}
    assert iteration_keys[0] - {"command"} == iteration_keys[1], iteration_keys


SLEEPY = """
import time

def bench_sleepy(sample):
    time.sleep(60)
"""


@pytest.mark.parametrize(
    ("verb", "sig", "status"),
    [("user-benchmark", signal.SIGINT, 130), ("run", signal.SIGTERM, 143)],
)
def test_an_interrupted_sample_is_stopped_sent_and_recorded_under_every_verb(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path, events: Path, verb: str, sig: int, status: int
) -> None:
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    if verb == "run":
        (tmp_path / "benchmarks").mkdir()
        (tmp_path / "benchmarks" / "bench_sleepy.py").write_text(SLEEPY)
        args = ["run", *OBSERVERS, "--sysinfo=none", "--samples=2", "--no-progress"]
    else:
        args = ["user-benchmark", *OBSERVERS, "--sysinfo=none", "--samples=2", "--", "sleep", "60"]
    proc = spawn_pbench(run_dir, tmp_path, *args)
    try:
        assert procs.wait_until(
            lambda: events.exists() and "sample_started" in events.read_text(), 60
        ), "the first sample never started"
        time.sleep(1.2)  # a vmstat row or so
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    seen = [e[0] for e in _events(events)]
    assert seen[-3:] == ["tools_stopped", "sample_finished", "run_finished"], seen
    assert seen.count("sample_started") == 1, seen
    result = latest_result(run_dir)
    meta = json.loads((result / "metadata.json").read_text())
    assert meta["run"]["status"] == "interrupted"
    (sample,) = result.glob("1-*/sample1")
    vmstat = sample / "tools-default" / HOST / "vmstat" / "vmstat.csv"
    assert vmstat.exists()  # what the tools collected was sent
    record = json.loads((sample / "result.json").read_text())
    assert record["status"].startswith("failed") and record["end"]
