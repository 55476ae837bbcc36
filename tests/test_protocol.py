"""One run and sample protocol under every verb: the same hooks, records and layout.

Each test drives the real ``pbench`` CLI (redis-server, the sink, a meister,
vmstat) and reads what a plugin author or a user sees: the hook calls an
observer plugin recorded, and the files of the result directory.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from .conftest import HOST, latest_result

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
    for result, iteration in ((ub, "1-default"), (run, "1-bench_noop")):
        assert (result / "tool-registration" / "default.json").exists(), result
        assert (result / "metadata.log").exists() and (result / "result.json").exists()
        sample = json.loads((result / iteration / "sample1" / "result.json").read_text())
        for key in (
            "sample",
            "status",
            "start",
            "end",
            "wall_s",
            "cpu_s",
            "tools",
            "window",
            "hosts",
        ):
            assert key in sample, (result.name, key)
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
