"""The low-level lifecycle verbs and the faults they must survive."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from pbench_runner import bus, procs
from pbench_runner.controller import Controller
from pbench_runner.errors import ActionError
from pbench_runner.redisserver import RedisServer
from pbench_runner.toolstore import HostTools, ToolGroup

from .conftest import HOST
from .live_output import wait_for_vmstat_rows


def start_session(pbench, run_dir: Path, tmp_path: Path, tool: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """Register ``tool`` (1 s interval where it has one), start a session in tmp/r."""
    options = ["--", "--interval=1"] if tool != "noop" else []
    pbench("register-tool", f"--name={tool}", *options, check=True)
    pbench("tool-meister-start", f"--dir={tmp_path / 'r'}", check=True)
    return json.loads(session_file(run_dir).read_text())  # type: ignore[no-any-return]


def session_file(run_dir: Path) -> Path:
    files = list((run_dir / "sessions").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def test_low_level_verbs_walk_the_diagram(pbench, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    result = tmp_path / "result"
    proc = pbench("tool-meister-start", f"--dir={result}", "--sysinfo=kernel,memory", check=True)
    assert "run id:" in proc.stdout
    sess = session_file(run_dir)
    assert stat.S_IMODE(sess.stat().st_mode) == 0o600
    info = json.loads(sess.read_text())
    assert all(procs.pid_alive(pid) for pid in info["pids"].values())
    sample = result / "1-default" / "sample1"
    pbench("start-tools", f"--dir={sample}", check=True)
    wait_for_vmstat_rows(result / "tm", 1)
    pbench("stop-tools", f"--dir={sample}", check=True)
    pbench("send-tools", f"--dir={sample}", check=True)
    pbench("tool-meister-stop", "--sysinfo=kernel", check=True)
    assert (sample / "tools-default" / HOST / "vmstat" / "vmstat.csv").read_text().count("\n") >= 2
    assert (result / "sysinfo" / "beg" / HOST / "memory" / "meminfo").exists()
    assert (result / "sysinfo" / "end" / HOST / "kernel" / "uname.txt").exists()
    assert not (result / "sysinfo" / "end" / HOST / "memory").exists()
    assert not list((run_dir / "sessions").glob("*.json"))
    assert not any(procs.pid_alive(pid) for pid in info["pids"].values())


def test_a_killed_meister_is_reported_within_the_deadline(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    info = start_session(pbench, run_dir, tmp_path, "vmstat")
    sample = tmp_path / "r" / "sample1"
    pbench("start-tools", f"--dir={sample}", check=True)
    os.kill(info["pids"][HOST], signal.SIGKILL)
    began = time.monotonic()
    proc = pbench("stop-tools", f"--dir={sample}")
    assert time.monotonic() - began < 12  # the heartbeat, not the 60 s action deadline
    assert proc.returncode == 4
    assert f"host {HOST}: the tool meister stopped answering" in proc.stderr
    # its vmstat died with it (parent-death signal), and the rest stops cleanly
    pbench("tool-meister-stop")
    assert not list((run_dir / "sessions").glob("*.json"))


def test_pbench_kill_stops_what_a_crashed_session_left(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    info = start_session(pbench, run_dir, tmp_path, "vmstat")
    pbench("start-tools", f"--dir={tmp_path / 'r' / 's1'}", check=True)
    assert len(procs.run_pids(info["run_id"])) >= 3  # sink, meister, vmstat
    assert procs.pid_alive(info["pids"]["redis"])
    proc = pbench("kill", check=True)
    assert f"run {info['run_id']}: stopped" in proc.stdout
    assert procs.run_pids(info["run_id"]) == []
    assert not procs.pid_alive(info["pids"]["redis"])
    assert not list((run_dir / "sessions").glob("*.json"))
    # the next session finds nothing in its way
    pbench("tool-meister-start", f"--dir={tmp_path / 'r2'}", check=True)
    pbench("tool-meister-stop", check=True)


def test_start_timeout_names_who_is_not_ready_and_leaves_nothing(
    pbench: Callable[..., subprocess.CompletedProcess[str]],
    run_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the meister hangs while it loads its tools (tests/plugins/pbench_test_hang_meister.py),
    # so the deadline is met by everything else: Redis, the sink
    record = tmp_path / "hung-meister"
    monkeypatch.setenv("TEST_HANG_MEISTER_RECORD", str(record))
    # the hung meister hears no terminate: wait 1 s, not 5, before it is killed
    (tmp_path / "pbench.toml").write_text("[deadlines]\nshutdown = 1\n")
    pbench("register-tool", "--name=vmstat", check=True)
    began = time.monotonic()
    proc = pbench("tool-meister-start", "-p", "pbench_test_hang_meister", "--start-timeout=3")
    assert proc.returncode == 4, proc.stderr
    assert time.monotonic() - began < 60  # not the meister's 120 s hang
    assert "tool-meister-start: no answer within 3 s from:" in proc.stderr
    waiting = proc.stderr.split("from:", 1)[1].splitlines()[0]
    assert HOST in [name.strip() for name in waiting.split(",")], proc.stderr
    run_id, pid = record.read_text().split()  # the meister really was the one hanging
    assert not list((run_dir / "sessions").glob("*.json"))
    assert not procs.pid_alive(int(pid))
    assert procs.run_pids(run_id) == []


def test_wrong_redis_password_is_refused(redis_server: RedisServer, tmp_path: Path) -> None:
    bad = bus.connect(redis_server.url, "not-the-password")
    with pytest.raises(redis.exceptions.AuthenticationError):
        bad.ping()
    bad.close()
    env = {**os.environ, bus.PASSWORD_ENV: "not-the-password", bus.RUN_ID_ENV: "x"}
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "precious.txt").write_text("keep me")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pbench_runner.meister",
            "--redis",
            redis_server.url,
            "--run-id",
            "x",
            "--host",
            "h1",
        ],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 3
    assert "invalid username-password pair" in proc.stderr.lower() or "auth" in proc.stderr.lower()
    # a meister that fails to set up cleans up only what it made, never its cwd
    assert (cwd / "precious.txt").read_text() == "keep me"


def _group(*hosts: str, tool: str = "noop") -> ToolGroup:
    return ToolGroup(
        "default",
        {
            h: HostTools(tools={tool: {}} if tool == "noop" else {tool: {"interval": 1}})
            for h in hosts
        },
    )


def test_a_meister_that_lost_redis_catches_up_on_the_missed_action(tmp_path: Path) -> None:
    with Controller(_group(HOST), tmp_path / "tm") as ctl:
        assert ctl.client is not None
        pid = ctl.pids[HOST]
        # both the sink and the meister are subscribed before the meister is frozen
        assert procs.wait_until(lambda: ctl.client.pubsub_numsub(ctl.keys.action)[0][1] == 2, 10)
        os.kill(pid, signal.SIGSTOP)
        try:
            # cut the meister's connections while it cannot notice
            killed = set()
            for client in ctl.client.client_list():
                if client.get("name") == f"tm-{HOST}":
                    ctl.client.client_kill_filter(_id=client["id"])
                    killed.add(client["id"])
            assert killed
            seq = int(ctl.client.incr(ctl.keys.seq))
            action = bus.Action(
                id=f"{seq}-blip",
                seq=seq,
                action="start",
                group="default",
                directory=str(tmp_path / "s1"),
                args={"timeout": 10},
            )
            ctl.client.set(ctl.keys.action, action.dumps())
            assert (
                ctl.client.publish(ctl.keys.action, action.dumps()) == 1
            )  # only the sink heard it
        finally:
            os.kill(pid, signal.SIGCONT)
        assert procs.wait_until(
            lambda: ctl.client.hexists(ctl.keys.reports(action.id), HOST), 10
        ), procs.tail(tmp_path / "tm" / f"tm-{HOST}.log", 20)
        report = bus.Report.loads(ctl.client.hget(ctl.keys.reports(action.id), HOST))
        assert report.ok
        now = {c["id"] for c in ctl.client.client_list() if c.get("name") == f"tm-{HOST}"}
        assert now and not now & killed  # it really did reconnect
        ctl.run_action("stop", tmp_path / "s1")


def test_many_meisters_are_counted_by_host(tmp_path: Path) -> None:
    hosts = [f"node-{i}" for i in range(4)]
    sample = tmp_path / "s1"
    with Controller(_group(*hosts, tool="vmstat"), tmp_path / "tm", local_hosts=hosts) as ctl:
        for verb in ("start", "stop", "send"):
            result = ctl.run_action(verb, sample)
            assert sorted(result.hosts) == hosts
    for host in hosts:
        assert (sample / "tools-default" / host / "vmstat" / "vmstat-stdout.txt").exists()


def test_an_action_for_another_group_is_refused_by_every_host(tmp_path: Path) -> None:
    with Controller(_group(HOST), tmp_path / "tm") as ctl:
        ctl.group = ToolGroup("other", ctl.group.hosts)
        with pytest.raises(ActionError) as err:
            ctl.run_action("start", tmp_path / "s1")
        assert "action for tool group 'other'" in str(err.value)
        ctl.group = ToolGroup("default", ctl.group.hosts)


def test_forked_local_meisters_are_watched_one_by_one(tmp_path: Path) -> None:
    hosts = ["node-a", "node-b", "node-c"]
    with Controller(_group(*hosts), tmp_path / "tm", local_hosts=hosts) as ctl:
        pids = {h: ctl.pids[h] for h in hosts}
        assert len(set(pids.values())) == 3  # each host its own process
        ctl.run_action("start", tmp_path / "s1")
        os.kill(pids["node-b"], signal.SIGKILL)
        began = time.monotonic()
        with pytest.raises(ActionError) as err:
            ctl.run_action("stop", tmp_path / "s1")
        assert time.monotonic() - began < 10  # the heartbeat, not the 60 s action deadline
        assert set(err.value.failures) == {"node-b"}
        assert "stopped answering" in err.value.failures["node-b"][0]
        for host in ("node-a", "node-c"):
            assert (tmp_path / "tm" / f"tm-{host}.log").exists()
    assert not any(procs.pid_alive(p) for p in pids.values())


def test_a_dead_sink_is_reported_not_waited_for(pbench, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    info = start_session(pbench, run_dir, tmp_path, "noop")
    os.kill(info["pids"]["tds"], signal.SIGKILL)
    began = time.monotonic()
    proc = pbench("start-tools", f"--dir={tmp_path / 'r' / 's1'}")
    assert time.monotonic() - began < 12  # not the 60 s action deadline
    assert proc.returncode == 4
    assert "start-tools: the Tool Data Sink stopped answering" in proc.stderr
    pbench("kill", check=True)


def test_a_dead_redis_is_reported_clearly(pbench, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    info = start_session(pbench, run_dir, tmp_path, "noop")
    os.kill(info["pids"]["redis"], signal.SIGKILL)
    proc = pbench("start-tools", f"--dir={tmp_path / 'r' / 's1'}")
    assert proc.returncode == 4
    assert "start-tools: the session's Redis at redis://127.0.0.1:" in proc.stderr
    assert "is not answering" in proc.stderr
    assert "Traceback" not in proc.stderr
    pbench("kill", check=True)


def test_send_before_stop_is_refused_and_the_data_survives_a_failed_send(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    start_session(pbench, run_dir, tmp_path, "vmstat")
    sample = tmp_path / "r" / "s1"
    try:
        pbench("start-tools", f"--dir={sample}", check=True)
        early = pbench("send-tools", f"--dir={sample}")
        assert early.returncode == 4
        assert "are still running; stop them (stop-tools) before sending" in early.stderr
        wait_for_vmstat_rows(tmp_path / "r" / "tm", 1)
        pbench("stop-tools", f"--dir={sample}", check=True)
        (sample / "tools-default").write_text("in the way")  # the sink cannot unpack here
        failed = pbench("send-tools", f"--dir={sample}")
        assert failed.returncode == 4
        assert "the sink cannot unpack host" in failed.stderr
        assert "<html" not in failed.stderr.lower()
        (sample / "tools-default").unlink()
        pbench("send-tools", f"--dir={sample}", check=True)  # the retry sends the kept data
        assert (sample / "tools-default" / HOST / "vmstat" / "vmstat.csv").read_text().count(
            "\n"
        ) >= 2
        again = pbench("send-tools", f"--dir={sample}")
        assert "its data was already sent" in again.stderr
    finally:
        pbench("tool-meister-stop", check=True)


def test_tool_meister_stop_stops_everything_even_when_sysinfo_fails(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    info = start_session(pbench, run_dir, tmp_path, "vmstat")
    pbench("start-tools", f"--dir={tmp_path / 'r' / 's1'}", check=True)
    os.kill(info["pids"]["tds"], signal.SIGKILL)
    proc = pbench("tool-meister-stop", "--sysinfo=default")
    assert proc.returncode == 4
    assert "the Tool Data Sink stopped answering" in proc.stderr
    assert procs.run_pids(info["run_id"]) == []
    assert not list((run_dir / "sessions").glob("*.json"))


def test_sigterm_during_tool_meister_start_leaves_nothing(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from .conftest import pbench_env

    pbench("register-tool", "--name=vmstat", check=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pbench_runner",
            "tool-meister-start",
            "--sysinfo=all",
            f"--dir={tmp_path / 'r'}",
        ],
        cwd=tmp_path,
        env=pbench_env(run_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert procs.wait_until(lambda: list(run_dir.glob("sessions/*.json")), 20)
    run_id = json.loads(session_file(run_dir).read_text())["run_id"]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert procs.wait_until(lambda: not procs.run_pids(run_id), 10)
    assert not list((run_dir / "sessions").glob("*.json"))


def test_a_forked_meister_that_cannot_start_is_reported_at_once(tmp_path: Path) -> None:
    hosts = ["node-a", "node-b"]
    (tmp_path / "tm" / "tm-node-b.log").mkdir(parents=True)  # its log cannot be opened
    began = time.monotonic()
    with pytest.raises(ActionError) as err:
        Controller(_group(*hosts), tmp_path / "tm", local_hosts=hosts).start()
    assert time.monotonic() - began < 10
    assert set(err.value.failures) == {"node-b"}
    assert "the tool meister failed to start: IsADirectoryError" in str(err.value)


def test_a_killed_session_agent_takes_its_session_with_it(
    pbench, run_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    info = start_session(pbench, run_dir, tmp_path, "vmstat")
    pbench("start-tools", f"--dir={tmp_path / 'r' / 's1'}", check=True)
    os.kill(info["pids"]["agent"], signal.SIGKILL)
    # Redis, the sink, the meister and vmstat all go (parent-death signals)
    assert procs.wait_until(lambda: not procs.run_pids(info["run_id"]), 10)
    proc = pbench("stop-tools", f"--dir={tmp_path / 'r' / 's1'}")
    assert proc.returncode == 2
    assert f"the session agent of run {info['run_id']} is not running" in proc.stderr
    assert "`pbench kill` cleans up" in proc.stderr
    pbench("kill", check=True)
    assert not list((run_dir / "sessions").glob("*"))


def test_two_commands_on_one_session_take_turns(pbench, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from concurrent.futures import ThreadPoolExecutor

    start_session(pbench, run_dir, tmp_path, "vmstat")
    try:
        with ThreadPoolExecutor(2) as pool:
            runs = list(
                pool.map(lambda d: pbench("start-tools", f"--dir={tmp_path / 'r' / d}"), ["a", "b"])
            )
        assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
        for d in ("a", "b"):
            pbench("stop-tools", f"--dir={tmp_path / 'r' / d}", check=True)
            pbench("send-tools", f"--dir={tmp_path / 'r' / d}", check=True)
            assert (tmp_path / "r" / d / "tools-default" / HOST / "vmstat").is_dir()
    finally:
        pbench("tool-meister-stop", check=True)
