"""End to end: a real ``pbench user-benchmark``, then ``move-results`` / ``copy-results``
to a real results server, and what the server then lists."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbench_runner.toolstore import local_hostname
from tests.conftest import pbench_env
from tests.results_helpers import ResultsServer, make_result, make_token, results_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ResultsServer]:
    with results_server(tmp_path) as srv:
        yield srv


def _pbench(run_dir: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pbench_runner", *args],
        cwd=cwd,
        env={**pbench_env(run_dir), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _results(run_dir: Path) -> list[Path]:
    return sorted(p for p in (run_dir / "results").iterdir() if p.is_dir())


def test_move_results_sends_a_real_run_which_the_server_lists_and_removes_it_here(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    token = server.token("alice")
    env = {"PBENCH_SERVER": server.url, "PBENCH_ACCESS_TOKEN": token}
    assert _pbench(run_dir, tmp_path, "register-tool-set", "light", "--interval=1").returncode == 0
    ran = _pbench(
        run_dir, tmp_path, "user-benchmark", "--config=e2e", "--samples=2", "--", "sleep", "1"
    )
    assert ran.returncode == 0, ran.stderr
    (local,) = _results(run_dir)
    moved = _pbench(run_dir, tmp_path, "move-results", **env)
    assert moved.returncode == 0, moved.stderr
    assert f"moved {local.name}" in moved.stdout
    assert not local.exists()
    assert not list((run_dir / "results").iterdir())  # no tarball or staging left either

    listed = server.get("/api/v1/datasets", token).json()
    assert listed["total"] == 1
    (ds,) = listed["datasets"]
    assert ds["name"] == local.name
    assert ds["owner"] == "alice" and ds["access"] == "private"
    assert ds["config"] == "e2e"
    assert ds["benchmark"] == "pbench-user-benchmark"
    assert ds["status"] == "ok"
    assert ds["hosts"] == [local_hostname()]
    assert ds["tools"] == ["vmstat"]
    one = server.get(f"/api/v1/datasets/{ds['id']}", token).json()
    (it,) = one["iterations"]
    assert it["command"] == "sleep 1"
    assert it["metrics"]["duration_s"]["summary"]["n"] == 2
    assert 1.0 <= it["metrics"]["duration_s"]["summary"]["mean"] < 3.0
    assert "cpu_busy_pct" in it["hosts"][local_hostname()]
    assert set(one["sysinfo"]) == {"beg", "end"}
    series = server.get(f"/api/v1/datasets/{ds['id']}/series", token).json()
    assert len(series[local_hostname()]["cpu_busy_pct"]) >= 2


def test_copy_results_keeps_the_local_copy_and_sends_it_once(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    token = server.token("bob")
    ran = _pbench(run_dir, tmp_path, "user-benchmark", "--sysinfo=none", "--", "true")
    assert ran.returncode == 0, ran.stderr
    (local,) = _results(run_dir)
    copied = _pbench(
        run_dir, tmp_path, "copy-results", "--public", "--server", server.url, "--token", token
    )
    assert copied.returncode == 0, copied.stderr
    assert local.is_dir() and (local / "metadata.json").is_file()
    marker = json.loads((run_dir / "results" / f"{local.name}.copied").read_text())
    assert marker["server"] == server.url
    (ds,) = server.get("/api/v1/datasets").json()["datasets"]  # public: no token needed
    assert ds["name"] == local.name and ds["id"] == marker["md5"]
    again = _pbench(run_dir, tmp_path, "copy-results", "--server", server.url, "--token", token)
    assert again.returncode == 0
    assert "nothing to send" in again.stdout
    # move-results after a copy: the server has it already (200), so the local copy goes
    moved = _pbench(run_dir, tmp_path, "move-results", "--server", server.url, "--token", token)
    assert moved.returncode == 0, moved.stderr
    assert "already there" in moved.stdout
    assert not local.exists()
    assert not (run_dir / "results" / f"{local.name}.copied").exists()


def test_a_refused_upload_keeps_the_local_copy_and_exits_4(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    local = make_result(run_dir / "results", "pbench-user-benchmark_x_2026.01.01T00.00.00")
    moved = _pbench(run_dir, tmp_path, "move-results", "--server", server.url, "--token", "wrong")
    assert moved.returncode == 4
    assert "401" in moved.stderr and local.name in moved.stderr
    assert local.is_dir()
    assert [p.name for p in (run_dir / "results").iterdir()] == [local.name]


def test_an_unreachable_server_exits_4_and_keeps_the_result(run_dir: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    local = make_result(run_dir / "results", "pbench-user-benchmark_y_2026.01.01T00.00.00")
    moved = _pbench(
        run_dir, tmp_path, "move-results", "--server", f"http://127.0.0.1:{port}", "--token", "t"
    )
    assert moved.returncode == 4
    assert local.name in moved.stderr
    assert local.is_dir()


def test_without_a_server_it_says_how_to_name_one_and_exits_2(
    run_dir: Path, tmp_path: Path
) -> None:
    moved = _pbench(run_dir, tmp_path, "move-results", XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    assert moved.returncode == 2
    assert "--server" in moved.stderr and "PBENCH_SERVER" in moved.stderr


def test_the_server_and_token_can_come_from_the_user_config_file(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    token = server.token("carol")
    cfg = tmp_path / "cfg" / "pbench"
    cfg.mkdir(parents=True)
    (cfg / "results.toml").write_text(f'server = "{server.url}"\ntoken = "{token}"\n')
    local = make_result(run_dir / "results", "pbench-user-benchmark_z_2026.01.01T00.00.00")
    running = make_result(run_dir / "results", "pbench-user-benchmark_r_2026.01.01T00.00.00")
    meta = json.loads((running / "metadata.json").read_text())
    meta["run"]["status"] = "running"
    (running / "metadata.json").write_text(json.dumps(meta))
    moved = _pbench(run_dir, tmp_path, "move-results", XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    assert moved.returncode == 0, moved.stderr
    assert not local.exists()
    assert running.is_dir()  # a run still going is never sent
    names = [d["name"] for d in server.get("/api/v1/datasets", token).json()["datasets"]]
    assert names == [local.name]


def test_pbench_run_upload_copies_the_run_to_the_server(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    token = server.token("dave")
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "bench_tiny.py").write_text(
        "def bench_add(sample):\n    sample.record('ops', 1000.0, unit='op/s', higher_is_better=True)\n"
    )
    ran = _pbench(
        run_dir,
        tmp_path,
        "run",
        "--samples=2",
        "--sysinfo=none",
        "--upload",
        PBENCH_SERVER=server.url,
        PBENCH_ACCESS_TOKEN=token,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (local,) = _results(run_dir)
    (ds,) = server.get("/api/v1/datasets", token).json()["datasets"]
    assert ds["name"] == local.name and ds["benchmark"] == "pbench-run"
    (it,) = server.get(f"/api/v1/datasets/{ds['id']}", token).json()["iterations"]
    assert it["metrics"]["ops"]["summary"]["mean"] == 1000.0
    assert local.is_dir()  # --upload copies


def test_move_results_retries_until_a_restarting_server_answers(
    run_dir: Path, tmp_path: Path
) -> None:
    import socket
    import time

    from pbench_runner import procs

    with socket.socket() as sock:  # a free port for a server that is not up yet
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    local = make_result(run_dir / "results", "pbench-user-benchmark_w_2026.01.01T00.00.00")
    data_dir = tmp_path / "srv" / "server-data"
    token = make_token(data_dir, "erin")
    client = procs.spawn(
        [
            sys.executable,
            "-m",
            "pbench_runner",
            "move-results",
            "--server",
            f"http://127.0.0.1:{port}",
            "--token",
            token,
        ],
        env=pbench_env(run_dir),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)  # the client's first tries are refused
        assert client.poll() is None, client.communicate()
        with results_server(tmp_path / "srv", "--port", str(port)) as srv:
            out, err = client.communicate(timeout=60)
            assert client.returncode == 0, err
            assert b"moved" in out
            (ds,) = srv.get("/api/v1/datasets", token).json()["datasets"]
            assert ds["name"] == local.name
        assert not local.exists()
    finally:
        procs.stop(client)
