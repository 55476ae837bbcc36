"""End to end: a real ``pbench user-benchmark``, then ``move-results`` / ``copy-results``
to a real results server, and what the server then lists."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pbench_runner import results
from pbench_runner.errors import UploadError
from pbench_runner.toolstore import local_hostname
from tests.conftest import pbench_env
from tests.results_helpers import ResultsServer, make_result, make_token, results_server


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ResultsServer]:
    with results_server(tmp_path) as srv:
        yield srv


def _hold_free_port() -> socket.socket:
    """A socket bound to a free loopback port, not listening: close it to let go.

    While it is open, connections to the port are refused and the kernel gives
    the port to no one else (no bind to port 0, no connect's ephemeral port);
    a server that binds it with SO_REUSEADDR (cheroot does) still can, and
    listens there.
    """
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


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
    assert it["metrics"]["wall_s"]["summary"]["n"] == 2
    assert 1.0 <= it["metrics"]["wall_s"]["summary"]["mean"] < 3.0
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
    # a port nobody listens on: held (bound, not listening) so that no one else gets it
    with _hold_free_port() as placeholder:
        port = placeholder.getsockname()[1]
        local = make_result(run_dir / "results", "pbench-user-benchmark_y_2026.01.01T00.00.00")
        moved = _pbench(
            run_dir,
            tmp_path,
            "move-results",
            "--server",
            f"http://127.0.0.1:{port}",
            "--token",
            "t",
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
    import time

    from pbench_runner import procs

    # a free port for a server that is not up yet, held until the server has it
    with _hold_free_port() as placeholder:
        port = placeholder.getsockname()[1]
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
                placeholder.close()  # the server listens there now
                out, err = client.communicate(timeout=60)
                assert client.returncode == 0, err
                assert b"moved" in out
                (ds,) = srv.get("/api/v1/datasets", token).json()["datasets"]
                assert ds["name"] == local.name
            assert not local.exists()
        finally:
            procs.stop(client)


def _with_noise(result_dir: Path, size: int) -> Path:
    """Incompressible bytes in the result, so that its tarball is about ``size`` bytes."""
    (result_dir / "noise.bin").write_bytes(os.urandom(size))
    return result_dir


def _pack_within(result_dir: Path, target: Path, deadline: float = 60.0) -> BaseException | None:
    """``results.pack`` in a thread; fails the test if it has not returned by ``deadline``."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            results.pack(result_dir, target)
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline)
    assert not thread.is_alive(), f"packing {result_dir.name} into {target} hangs"
    return raised[0] if raised else None


def test_a_full_disk_while_packing_is_an_upload_error_not_a_hang(tmp_path: Path) -> None:
    result_dir = _with_noise(make_result(tmp_path / "results", "run-full-disk"), 4 << 20)
    error = _pack_within(result_dir, Path("/dev/full"))
    assert isinstance(error, UploadError), error
    assert "run-full-disk" in str(error) and "No space left" in str(error)


def test_a_tarball_that_cannot_be_written_is_an_upload_error_naming_the_result(
    tmp_path: Path,
) -> None:
    result_dir = make_result(tmp_path / "results", "run-nowhere")
    error = _pack_within(result_dir, tmp_path / "missing" / "run-nowhere.tar.xz")
    assert isinstance(error, UploadError), error
    assert "run-nowhere" in str(error) and "No such file" in str(error)


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at ``where`` (root only), unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True, timeout=30
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True, timeout=30)


def test_a_full_results_disk_fails_that_result_only_and_exits_4(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    token = server.token("alice")
    with _tmpfs(run_dir / "results", "3m"):
        big = _with_noise(make_result(run_dir / "results", "a-big"), 2 << 20)
        small = make_result(run_dir / "results", "b-small")
        moved = _pbench(run_dir, tmp_path, "move-results", "--server", server.url, "--token", token)
        assert moved.returncode == 4, moved.stdout + moved.stderr
        assert "a-big" in moved.stderr and "No space left" in moved.stderr
        assert "moved b-small" in moved.stdout
        assert big.is_dir() and not small.exists()
        assert [p.name for p in (run_dir / "results").iterdir()] == ["a-big"]  # no staging left
    names = [d["name"] for d in server.get("/api/v1/datasets", token).json()["datasets"]]
    assert names == ["b-small"]


def test_moving_a_result_from_outside_results_is_refused_before_anything_is_sent(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    # it used to be uploaded, then refused deletion, and the results after it were not sent
    token = server.token("alice")
    elsewhere = make_result(tmp_path / "elsewhere", "run-elsewhere")
    local = make_result(run_dir / "results", "run-here")
    args = ("--server", server.url, "--token", token)
    moved = _pbench(run_dir, tmp_path, "move-results", str(elsewhere), local.name, *args)
    assert moved.returncode != 0, moved.stdout
    assert f"refusing to move {elsewhere}: not a result directory under results/" in moved.stderr
    assert elsewhere.is_dir() and local.is_dir()
    assert server.get("/api/v1/datasets", token).json()["total"] == 0
    copied = _pbench(run_dir, tmp_path, "copy-results", str(elsewhere), *args)
    assert copied.returncode == 0, copied.stderr
    assert elsewhere.is_dir()
    assert server.get("/api/v1/datasets", token).json()["total"] == 1


def test_staging_left_by_a_killed_client_is_removed_on_the_next_run(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    gone = subprocess.run(["true"], timeout=30)
    dead = subprocess.Popen(["true"])
    assert dead.wait(timeout=30) == 0 and gone.returncode == 0
    stale = run_dir / "results" / f".upload-{dead.pid}-abc"
    live = run_dir / "results" / f".upload-{os.getpid()}-def"  # a client still running
    for folder in (stale, live):
        folder.mkdir(parents=True)
        (folder / "half.tar.xz").write_bytes(b"half")
    local = make_result(run_dir / "results", "run-after-a-kill")
    token = server.token("alice")
    moved = _pbench(run_dir, tmp_path, "move-results", "--server", server.url, "--token", token)
    assert moved.returncode == 0, moved.stderr
    assert not stale.exists() and live.is_dir() and not local.exists()


def test_copy_results_to_a_second_server_sends_it_there_too(run_dir: Path, tmp_path: Path) -> None:
    local = make_result(run_dir / "results", "run-two-servers")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with results_server(tmp_path / "a") as one, results_server(tmp_path / "b") as two:
        tokens = {one.url: one.token("alice"), two.url: two.token("alice")}

        def copy(url: str) -> subprocess.CompletedProcess[str]:
            args = ("copy-results", "--server", url, "--token", tokens[url])
            done = _pbench(run_dir, tmp_path, *args)
            assert done.returncode == 0, done.stderr
            return done

        assert "copied run-two-servers" in copy(one.url).stdout
        assert "copied run-two-servers" in copy(two.url).stdout
        assert "nothing to send" in copy(one.url).stdout
        assert "nothing to send" in copy(two.url).stdout
        for srv in (one, two):
            (ds,) = srv.get("/api/v1/datasets", tokens[srv.url]).json()["datasets"]
            assert ds["name"] == local.name
    marker = json.loads((run_dir / "results" / f"{local.name}.copied").read_text())
    assert sorted(marker["servers"]) == sorted(tokens)


class _Busy503Proxy(http.server.ThreadingHTTPServer):
    """Drops the first ``drops`` PUTs half way through their body, answers the next
    ``refusals`` with 503, then passes them on to ``target``."""

    def __init__(self, target: str, refusals: int = 0, drops: int = 0) -> None:
        super().__init__(("127.0.0.1", 0), _BusyHandler)
        self.target, self.refusals, self.drops, self.seen = target, refusals, drops, 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _BusyHandler(http.server.BaseHTTPRequestHandler):
    server: _Busy503Proxy

    def do_PUT(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.seen += 1
        if self.server.seen <= self.server.drops:
            self.rfile.read(length // 2)
            self.close_connection = True  # no answer: the connection drops mid-body
            return
        body = self.rfile.read(length)
        if self.server.seen <= self.server.drops + self.server.refusals:
            self._answer(503, b'{"message": "busy, try again"}', {})
            return
        headers = {k: self.headers[k] for k in ("Authorization", "Content-MD5", "Content-Type")}
        resp = requests.put(self.server.target + self.path, data=body, headers=headers, timeout=60)
        self._answer(resp.status_code, resp.content, {"Location": resp.headers.get("Location", "")})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in {**headers, "Content-Type": "application/json"}.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _proxy(target: str, refusals: int = 0, drops: int = 0) -> Iterator[_Busy503Proxy]:
    proxy = _Busy503Proxy(target, refusals, drops)
    serving = threading.Thread(target=proxy.serve_forever, daemon=True)
    serving.start()
    try:
        yield proxy
    finally:
        proxy.shutdown()
        proxy.server_close()
        serving.join(30)


def test_move_results_retries_a_server_that_answers_503(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    local = make_result(run_dir / "results", "run-after-503s")
    token = server.token("alice")
    with _proxy(server.url, refusals=2) as proxy:
        moved = _pbench(run_dir, tmp_path, "move-results", "--server", proxy.url, "--token", token)
    assert moved.returncode == 0, moved.stderr
    assert proxy.seen == 3  # two 503s, then the upload
    assert not local.exists()
    (ds,) = server.get("/api/v1/datasets", token).json()["datasets"]
    assert ds["name"] == local.name


def test_a_body_cut_off_is_sent_again_twice_at_most(
    server: ResultsServer, run_dir: Path, tmp_path: Path
) -> None:
    local = _with_noise(make_result(run_dir / "results", "run-cut-off"), 1 << 20)
    token = server.token("alice")
    with _proxy(server.url, drops=3) as proxy:
        failed = _pbench(run_dir, tmp_path, "move-results", "--server", proxy.url, "--token", token)
    assert failed.returncode == 4 and "run-cut-off" in failed.stderr
    assert proxy.seen == 3 and local.is_dir()  # the first try and two more
    with _proxy(server.url, drops=2) as proxy:
        moved = _pbench(run_dir, tmp_path, "move-results", "--server", proxy.url, "--token", token)
    assert moved.returncode == 0, moved.stderr
    assert proxy.seen == 3 and not local.exists()
