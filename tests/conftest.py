"""Fixtures that start the real parts: redis-server, the sink, the pbench CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from pbench_runner import bus, procs
from pbench_runner.redisserver import RedisServer
from pbench_runner.toolstore import local_hostname

PLUGINS = Path(__file__).parent / "plugins"
HOST = local_hostname()


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "run"
    monkeypatch.setenv("PBENCH_RUN_DIR", str(path))
    return path


def pbench_env(run_dir: Path) -> dict[str, str]:
    # a clean pbench environment, but for the leak guard's mark (see ../conftest.py)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PBENCH_") or k == "PBENCH_TEST_SESSION"
    }
    env["PBENCH_RUN_DIR"] = str(run_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PLUGINS), env.get("PYTHONPATH")]))
    return env


def spawn_pbench(run_dir: Path, cwd: Path, *args: str) -> subprocess.Popen[str]:
    """``pbench ARGS`` in the background (output piped), for runs a test waits on."""
    return subprocess.Popen(
        [sys.executable, "-m", "pbench_runner", *args],
        cwd=cwd,
        env=pbench_env(run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def pbench(run_dir: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run the real ``pbench`` command; returns the CompletedProcess."""

    def run(
        *args: str, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "pbench_runner", *args],
            cwd=tmp_path,
            env=pbench_env(run_dir),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"pbench {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run


def one_sample(ctl: Any, directory: Path, seconds: float) -> None:
    """start → ``seconds`` → stop → send through a Controller, with the sample
    window the run protocol passes to send (so collectors cut their slice)."""
    from pbench_runner.tools import SampleWindow

    started = ctl.run_action("start", directory)
    began = time.time()
    time.sleep(seconds)
    ended = time.time()
    stopped = ctl.run_action("stop", directory)
    hosts = {
        h: (started.info[h]["window_start"], stopped.info[h]["window_stop"]) for h in ctl.hosts
    }
    window = SampleWindow(began, ended, hosts, ctl.clock_offsets)
    ctl.run_action("send", directory, {"window": window.to_json()})


def block_backed(directory: Path) -> bool:
    """Whether ``directory``'s file system sits on a block device the kernel counts."""
    dev = os.stat(directory).st_dev
    return os.major(dev) != 0 and Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").exists()


def running(fragment: str) -> bool:
    """True while some process's command line contains ``fragment``.

    A zombie does not count: ``ps`` shows it as ``[name] <defunct>``.
    """
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    return fragment in ps.stdout


def latest_result(run_dir: Path) -> Path:
    results = sorted((run_dir / "results").iterdir(), key=lambda p: p.stat().st_mtime)
    return results[-1]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "tm") as server:
        yield server


@dataclass
class SinkHarness:
    """A real redis-server and a real Tool Data Sink process for hosts ``hosts``."""

    client: redis.Redis
    keys: bus.Keys
    url: str
    token: str
    log: Path
    proc: subprocess.Popen[bytes]
    seq: int = 0

    def publish(
        self,
        action: str,
        directory: Path,
        group: str = "default",
        action_id: str | None = None,
        timeout: float = 20.0,
    ) -> bus.Action:
        self.seq += 1
        act = bus.Action(
            id=action_id or f"{self.seq}-test",
            seq=self.seq,
            action=action,
            group=group,
            directory=str(directory),
            args={"timeout": timeout},
        )
        self.client.set(self.keys.action, act.dumps())
        self.client.publish(self.keys.action, act.dumps())
        return act

    def result(self, action_id: str, timeout: float = 20.0) -> bus.Result:
        assert procs.wait_until(lambda: self.client.exists(self.keys.result(action_id)), timeout), (
            f"no result for {action_id}"
        )
        return bus.Result.loads(self.client.get(self.keys.result(action_id)))


@pytest.fixture
def sink(redis_server: RedisServer, tmp_path: Path) -> Iterator[SinkHarness]:
    run_id = bus.new_run_id()
    keys = bus.Keys(run_id)
    client = redis_server.client()
    token = "test-token-123"
    client.set(
        keys.sink_config,
        json.dumps(
            {
                "run_id": run_id,
                "hosts": ["h1", "h2"],
                "token": token,
                "bind": "127.0.0.1",
                "deadlines": {"reconnect": 5},
            }
        ),
    )
    for host in ("h1", "h2"):  # stand-ins for the meisters' heartbeats
        client.set(keys.alive(host), "1", ex=120)
    log = tmp_path / "tds.log"
    env = {**os.environ, bus.PASSWORD_ENV: redis_server.password, bus.RUN_ID_ENV: run_id}
    with open(log, "wb") as fh:
        proc = procs.spawn(
            [
                sys.executable,
                "-m",
                "pbench_runner.sink",
                "--redis",
                redis_server.url,
                "--run-id",
                run_id,
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        assert procs.wait_until(lambda: client.hexists(keys.ready, bus.SINK), 20), procs.tail(
            log, 30
        )
        url = json.loads(client.hget(keys.ready, bus.SINK))["info"]["url"]
        yield SinkHarness(client, keys, url, token, log, proc)
    finally:
        procs.stop(proc, timeout=5)
        client.close()
