"""Remote hosts over SSH, on real separate hosts (network namespaces with real sshd).

See tests/sshlab.py for the lab.  Every remote meister here runs from the
shipped bundle under the system's ``python3 -I``, which has none of the
project's dependencies, so these tests also prove the bundle is complete.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbench_runner import bus, procs
from pbench_runner.config import Deadlines
from pbench_runner.controller import Controller
from pbench_runner.errors import ActionError, RemoteHostError, StartupError
from pbench_runner.redisserver import RedisServer
from pbench_runner.remote.broker import ForwardBroker
from pbench_runner.remote.bundle import Bundle
from pbench_runner.remote.hosts import RemoteHosts, kill_run
from pbench_runner.remote.options import RemoteOptions
from pbench_runner.remote.parallel import MAX_WORKERS, on_every_host
from pbench_runner.remote.ssh import open_connection
from pbench_runner.remote.tunnel import Tunnel
from pbench_runner.session import all_sessions
from pbench_runner.sink import ToolDataSink
from pbench_runner.toolstore import HostTools, ToolGroup, local_hostname
from tests.conftest import latest_result, one_sample
from tests.live_output import wait_for_vmstat_rows
from tests.sshlab import SSHLab, _keygen, lab_or_skip

HOST = local_hostname()
REMOTES = ("nodeA", "nodeB")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHLab]:
    lab_or_skip()
    with SSHLab(tmp_path_factory.mktemp("lab"), list(REMOTES)) as built:
        yield built


def _group(*hosts: str) -> ToolGroup:
    return ToolGroup("default", {h: HostTools(tools={"vmstat": {"interval": 1}}) for h in hosts})


def _nothing_left(
    lab: SSHLab, timeout: float, hosts: tuple[str, ...] = REMOTES
) -> dict[str, dict[int, str]]:
    procs.wait_until(lambda: not any(lab.leftovers(h) for h in hosts), timeout, 0.1)
    return {h: lab.leftovers(h) for h in hosts if lab.leftovers(h)}


def _runs_left(lab: SSHLab) -> list[Path]:
    return [
        p
        for h in REMOTES
        if (lab.remote_dir(h) / "runs").is_dir()
        for p in (lab.remote_dir(h) / "runs").iterdir()
    ]


def test_user_benchmark_across_the_controller_and_two_remote_hosts(  # type: ignore[no-untyped-def]
    lab: SSHLab, pbench, run_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "pbench.toml").write_text(lab.toml())
    # the medium set: vmstat (procps), and iostat and sar (sysstat)
    pbench("register-tool-set", "medium", "--interval=1", check=True)
    pbench("register-tool-set", "medium", "--interval=1", "--remotes=nodeA,nodeB", check=True)
    pbench("user-benchmark", "--", "sleep", "2.5", check=True, timeout=120)
    result = latest_result(run_dir)
    for when in ("beg", "end"):  # sysinfo came back from every host too
        assert {p.name for p in (result / "sysinfo" / when).iterdir()} >= {HOST, *REMOTES}
    for host in (HOST, *REMOTES):
        tools = result / "1-default" / "sample1" / "tools-default" / host
        for csv in ("vmstat/vmstat.csv", "iostat/iostat.csv", "sar/sar-cpu.csv"):
            rows = (tools / csv).read_text().splitlines()
            assert rows[0].startswith("timestamp") and len(rows) >= 2, (host, csv, rows)
    for host in REMOTES:
        log = (result / "tm" / f"tm-{host}.log").read_text()
        bundles = lab.remote_dir(host) / "bundles"
        assert f"from bundle {bundles}/" in log and "isolated=1" in log, log
        assert list(bundles.glob("*/__main__.py")), "the bundle stays cached on the host"
    assert not _runs_left(lab), "every per-run directory is removed"
    assert not _nothing_left(lab, 5)


def test_a_second_session_uses_the_cached_bundle_and_direct_mode_works(
    lab: SSHLab, tmp_path: Path
) -> None:
    sample = tmp_path / "s1"
    opts = lab.options(mode="direct")
    with Controller(_group(*REMOTES), tmp_path / "first", remote=opts):
        pass  # the bundle is on both hosts now, if an earlier test had not put it there
    with Controller(_group(HOST, *REMOTES), tmp_path / "tm", remote=opts) as ctl:
        assert ctl.remotes is not None
        assert not any(h.copied for h in ctl.remotes.hosts.values())
        assert f"bind 127.0.0.1 {lab.gateway}" in (tmp_path / "tm" / "redis.conf").read_text()
        assert ctl.run_action("start", sample).ok
        for where in (tmp_path / "tm", *(lab.remote_dir(h) for h in REMOTES)):
            wait_for_vmstat_rows(where, 1)  # each host's vmstat has a row to send
        for verb in ("stop", "send"):
            assert ctl.run_action(verb, sample).ok
    for host in (HOST, *REMOTES):
        assert (sample / "tools-default" / host / "vmstat" / "vmstat.csv").stat().st_size > 0
    assert not _nothing_left(lab, 5)


def test_an_unreachable_host_fails_start_fast_naming_it_and_leaves_nothing(
    lab: SSHLab, tmp_path: Path
) -> None:
    lab.cut("nodeB")
    try:
        began = time.monotonic()
        with pytest.raises(StartupError) as info:
            Controller(
                _group(HOST, *REMOTES),
                tmp_path / "tm",
                remote=lab.options(),
                deadlines=Deadlines(connect=2.0, startup=20.0),
            ).start()
        took = time.monotonic() - began
    finally:
        lab.restore("nodeB")
    message = str(info.value)
    assert "host nodeB:" in message and "within 2 s" in message, message
    assert "nodeA" not in message
    assert took < 12, took  # the 2 s connect deadline, not the 20 s start deadline
    assert not _nothing_left(lab, 3)
    assert not _runs_left(lab)


def test_a_host_cut_off_mid_run_is_reported_and_the_others_go_on(
    lab: SSHLab, tmp_path: Path
) -> None:
    s1, s2 = tmp_path / "s1", tmp_path / "s2"
    deadlines = Deadlines(reconnect=4.0, action=20.0, send=30.0)
    with Controller(
        _group(HOST, *REMOTES),
        tmp_path / "tm",
        remote=lab.options(),
        deadlines=deadlines,
        on_host_failure="continue",
    ) as ctl:
        ctl.run_action("start", s1)
        lab.cut("nodeB")
        try:
            began = time.monotonic()
            stop = ctl.run_action("stop", s1)
            # within the heartbeat deadline, not the 20 s action deadline
            assert time.monotonic() - began < 12, "reported within the heartbeat deadline"
            assert list(stop.failures()) == ["nodeB"], stop.failures()
            send = ctl.run_action("send", s1)
            assert list(send.failures()) == ["nodeB"]
            for verb in ("start", "stop", "send"):  # the run goes on without it
                ctl.run_action(verb, s2)
            # left alone, the cut-off meister stops its tools and exits by itself
            time.sleep(deadlines.reconnect + 1)
        finally:
            lab.restore("nodeB")
        assert ctl.missing == {"nodeB": [str(s1), str(s2)]}
        left = _nothing_left(lab, 15, ("nodeB",))
        assert not left, left
        assert not (lab.remote_dir("nodeB") / "runs" / ctl.run_id).exists()
        ctl.stop()
    for sample in (s1, s2):
        for host in (HOST, "nodeA"):
            assert (sample / "tools-default" / host / "vmstat" / "vmstat.csv").exists()
        assert not (sample / "tools-default" / "nodeB").exists()
    assert not _runs_left(lab)


def test_a_remote_meister_killed_with_sigkill_is_detected(lab: SSHLab, tmp_path: Path) -> None:
    with Controller(_group(HOST, *REMOTES), tmp_path / "tm", remote=lab.options()) as ctl:
        ctl.run_action("start", tmp_path / "s1")
        meister = [p for p, cmd in lab.leftovers("nodeA").items() if " serve " in cmd]
        assert len(meister) == 1, lab.leftovers("nodeA")
        os.kill(meister[0], signal.SIGKILL)
        began = time.monotonic()
        with pytest.raises(ActionError) as info:
            ctl.run_action("stop", tmp_path / "s1")
        assert time.monotonic() - began < 12  # the heartbeat, not the 60 s action deadline
        assert "host nodeA" in str(info.value) and "nodeB" not in str(info.value)
    assert ctl.missing == {"nodeA": [str(tmp_path / "s1")]}
    assert not _nothing_left(lab, 5)
    assert not _runs_left(lab), "the controller cleans up after a meister that could not"


def _session_start(lab: SSHLab, pbench, tmp_path: Path, reconnect: float) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    (tmp_path / "pbench.toml").write_text(lab.toml(reconnect=reconnect))
    pbench("register-tool-set", "light", "--interval=1", "--remotes=nodeA,nodeB", check=True)
    pbench("tool-meister-start", check=True, timeout=60)
    pbench("start-tools", f"--dir={tmp_path / 's1'}", check=True)
    (info,) = all_sessions(Path(os.environ["PBENCH_RUN_DIR"]))
    assert all(" serve " in " ".join(lab.leftovers(h).values()) for h in REMOTES)
    return info.run_id, info.pids["agent"]


def test_remote_meisters_exit_by_themselves_when_the_controller_is_killed(  # type: ignore[no-untyped-def]
    lab: SSHLab, pbench, run_dir: Path, tmp_path: Path
) -> None:
    # Redis reconnects for 60 s, far beyond the wait: only the watchdog (end of
    # input on the SSH channel) can end the meisters in time.
    _, agent = _session_start(lab, pbench, tmp_path, reconnect=60)
    os.kill(agent, signal.SIGKILL)
    left = _nothing_left(lab, 8)
    assert not left, left
    assert not _runs_left(lab)
    pbench("kill", check=True)  # forget the session file; nothing is left to stop


def test_pbench_kill_reaches_the_remote_hosts_of_a_hung_session(  # type: ignore[no-untyped-def]
    lab: SSHLab, pbench, run_dir: Path, tmp_path: Path
) -> None:
    _, agent = _session_start(lab, pbench, tmp_path, reconnect=60)
    os.kill(agent, signal.SIGSTOP)  # a hung controller: its connections stay open
    try:
        out = pbench("kill", check=True, timeout=60).stdout
    finally:
        os.kill(agent, signal.SIGKILL)
        os.kill(agent, signal.SIGCONT)
    for host in REMOTES:
        line = next(ln for ln in out.splitlines() if f"host {host}:" in ln)
        assert "stopped" in line and "stopped 0 " not in line, out
    assert not _nothing_left(lab, 3)
    assert not _runs_left(lab)


def test_a_wrong_host_key_is_refused(lab: SSHLab, tmp_path: Path) -> None:
    other = tmp_path / "other_key"
    _keygen(other)
    known = tmp_path / "known_hosts"
    pub = Path(f"{other}.pub").read_text().split()
    known.write_text(f"{lab.hosts['nodeA'].address} {pub[0]} {pub[1]}\n")
    with pytest.raises(StartupError) as info:
        Controller(
            _group("nodeA"), tmp_path / "tm", remote=lab.options(known_hosts=str(known))
        ).start()
    assert "host nodeA: its host key (ssh-ed25519) differs from the one recorded" in str(info.value)
    assert not _nothing_left(lab, 2)


def test_an_unknown_host_key_is_refused_unless_new_keys_are_accepted(
    lab: SSHLab, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("")
    opts = lab.options(known_hosts=str(known))
    with pytest.raises(StartupError, match="--accept-new-host-keys"):
        open_connection_or_fail = Controller(_group("nodeA"), tmp_path / "tm", remote=opts)
        open_connection_or_fail.start()
    client = open_connection(
        "nodeA", lab.options(known_hosts=str(known), accept_new_host_keys=True), 5
    )
    client.close()
    assert lab.hosts["nodeA"].address in known.read_text()
    client = open_connection("nodeA", opts, 5)  # now known
    client.close()


def test_a_host_key_of_another_type_is_refused_even_when_new_keys_are_accepted(
    lab: SSHLab, tmp_path: Path
) -> None:
    other = tmp_path / "ecdsa_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(other)], check=True, timeout=10
    )
    known = tmp_path / "known_hosts"
    pub = Path(f"{other}.pub").read_text().split()
    recorded = f"{lab.hosts['nodeA'].address} {pub[0]} {pub[1]}\n"
    known.write_text(recorded)
    opts = lab.options(known_hosts=str(known), accept_new_host_keys=True)
    with pytest.raises(RemoteHostError, match=r"host nodeA: its host key \(ssh-ed25519\) differs"):
        open_connection("nodeA", opts, 5).close()
    assert known.read_text() == recorded


def test_forward_to_reaches_a_port_on_the_remote_host(lab: SSHLab) -> None:
    client = open_connection("nodeB", lab.options(), 5)
    tunnel = Tunnel("nodeB", client.get_transport())  # type: ignore[arg-type]
    try:
        port = tunnel.forward_to(22, lab.hosts["nodeB"].address)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            assert sock.recv(64).startswith(b"SSH-2.0-OpenSSH")
    finally:
        tunnel.close()
        client.close()


def test_the_lab_keeps_test_traffic_inside(lab: SSHLab) -> None:
    lab.verify()
    for host in lab.hosts.values():
        out = subprocess.run(
            ["ip", "-n", host.netns, "route", "get", "192.0.2.1"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode != 0, f"{host.netns} can reach outside the lab: {out.stdout}"
    options = lab.options()  # the agent gets them as JSON: they come back the same
    assert RemoteOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options


@pytest.mark.parametrize("mode", ["tunnel", "direct"])
def test_pcp_and_node_exporter_on_remote_hosts_are_recorded_by_the_sink(
    lab: SSHLab, tmp_path: Path, mode: str
) -> None:
    tools = {"pcp": {"interval": 1}, "node_exporter": {"interval": 1}}
    group = ToolGroup("default", {h: HostTools(tools=dict(tools)) for h in (HOST, *REMOTES)})
    sample = tmp_path / "s1"
    with Controller(group, tmp_path / "tm", remote=lab.options(mode=mode)) as ctl:
        one_sample(ctl, sample, 3)
    for host in (HOST, *REMOTES):
        pcp = sample / "tools-default" / host / "pcp"
        archives = list(pcp.glob("*.meta*"))
        assert archives, sorted(p.name for p in pcp.iterdir())
        out = subprocess.run(
            ["pmdumplog", "-l", str(archives[0]).split(".meta")[0]], capture_output=True, text=True
        )
        assert out.returncode == 0 and "commencing" in out.stdout, out.stderr
        prom = sample / "tools-default" / host / "node_exporter"
        assert prom.is_dir() and any(prom.rglob("*")), host
    assert not _nothing_left(lab, 5)


def test_user_benchmark_goes_on_without_a_lost_host_and_says_what_is_missing(  # type: ignore[no-untyped-def]
    lab: SSHLab, pbench, run_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "pbench.toml").write_text(lab.toml())
    pbench("register-tool-set", "light", "--interval=1", "--remotes=nodeA,nodeB", check=True)
    # the benchmark itself kills nodeB's meister during the first sample
    victim = f"[s]erve .*--host nodeB --base {lab.remote_dir('nodeB')}"  # not itself
    proc = pbench(
        "user-benchmark",
        "--sysinfo=none",
        "--samples=2",
        "--on-host-failure=continue",
        "--",
        "sh",
        "-c",
        f"pkill -KILL -f '{victim}'; sleep 1",
        timeout=120,
    )
    assert proc.returncode == 4, proc.stderr
    assert "host nodeB was lost: its tool data is missing for 1-default/sample1" in proc.stderr
    result = latest_result(run_dir)
    meta = json.loads((result / "metadata.json").read_text())
    assert meta["missing_data"] == {"nodeB": ["1-default/sample1", "1-default/sample2"]}
    for n in (1, 2):
        tools = result / "1-default" / f"sample{n}" / "tools-default"
        assert (tools / "nodeA" / "vmstat" / "vmstat.csv").exists()
        assert not (tools / "nodeB").exists()
    assert not _nothing_left(lab, 5)
    assert not _runs_left(lab)


def test_a_meister_of_another_version_is_refused(
    lab: SSHLab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import io
    import zipfile

    from pbench_runner import __version__
    from pbench_runner.remote import bundle as bundles

    ours = bundles.build()
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(ours.data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "pbench_runner/__init__.py":
                data = data.replace(f'"{__version__}"'.encode(), b'"0.0.1"')
            dst.writestr(item, data)
    other = bundles.Bundle(out.getvalue(), hashlib.sha256(out.getvalue()).hexdigest()[:20], "0.0.1")
    monkeypatch.setattr(bundles, "build", lambda: other)
    with pytest.raises(ActionError) as info:
        Controller(_group("nodeA"), tmp_path / "tm", remote=lab.options()).start()
    assert f"host nodeA: its tool meister is version 0.0.1, the controller {__version__}" in str(
        info.value
    )
    assert not _nothing_left(lab, 5)


def test_a_host_without_the_python_it_needs_is_named(lab: SSHLab, tmp_path: Path) -> None:
    with pytest.raises(StartupError) as info:
        Controller(
            _group("nodeB"), tmp_path / "tm", remote=lab.options(python="/opt/none/python3")
        ).start()
    assert "host nodeB: /opt/none/python3 is not installed there" in str(info.value)


def test_pbench_run_records_the_remote_hosts_around_every_sample(  # type: ignore[no-untyped-def]
    lab: SSHLab, pbench, run_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "pbench.toml").write_text(lab.toml())  # pbench run reads [remote] there
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "bench_tiny.py").write_text(
        "import time\n\ndef bench_nap(sample):\n    time.sleep(2.2)  # a vmstat row at 1 s, with slack\n"
    )
    pbench(
        "register-tool", "--name=vmstat", "--remotes=nodeA,nodeB", "--", "--interval=1", check=True
    )
    proc = pbench("run", str(suite), "--samples=2", "--sysinfo=none", timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = latest_result(run_dir)
    (bench,) = [p for p in result.iterdir() if p.is_dir() and p.name.endswith("bench_nap")]
    for n in (1, 2):
        record = json.loads((bench / f"sample{n}" / "result.json").read_text())
        for host in REMOTES:
            csv = bench / f"sample{n}" / "tools-default" / host / "vmstat" / "vmstat.csv"
            assert csv.stat().st_size > 0, csv
            # the same per-host summary as a local host: from its own counters,
            # over its own window, its clock's offset known
            start, stop = record["window"]["hosts"][host]
            assert 2.2 <= stop - start < 4, (start, stop)
            assert host in record["window"]["offsets"]
            summary = record["hosts"][host]
            assert summary["cpu_busy_pct"]["source"]["mean"] == "counters"
            assert summary["mem_used_mib"]["definition"] == "MemTotal - MemAvailable"
            assert summary["mem_used_mib"]["mean"] > 0
            # its network namespace has an interface of its own (not lo)
            assert summary["net_kib_s"]["per_interface"], summary["net_kib_s"]
    assert not _nothing_left(lab, 5)
    assert not _runs_left(lab)


def test_a_tool_whose_program_a_remote_host_lacks_is_refused_naming_host_and_package(
    lab: SSHLab, tmp_path: Path
) -> None:
    # The lab hosts share this machine's files; nodeB's login shell hides them.
    bashrc = lab.hosts["nodeB"].home / ".bashrc"
    bashrc.write_text("export PATH=/opt/pbench-test-empty-bin\n")
    try:
        with pytest.raises(ActionError) as info:
            Controller(_group("nodeA", "nodeB"), tmp_path / "tm", remote=lab.options()).start()
    finally:
        bashrc.unlink()
    message = str(info.value)
    assert "host nodeB: tool 'vmstat' needs the program 'vmstat'" in message
    assert "install the package 'procps' on nodeB" in message
    assert "host nodeA" not in message
    assert not _nothing_left(lab, 5)
    assert not _runs_left(lab)


def test_the_broker_keeps_one_forward_per_host_and_tool_and_answers_what_it_cannot_do(
    lab: SSHLab, redis_server: RedisServer
) -> None:
    client = open_connection("nodeB", lab.options(), 5)
    tunnel = Tunnel("nodeB", client.get_transport())  # type: ignore[arg-type,unused-ignore]
    keys = bus.Keys(bus.new_run_id())
    r = redis_server.client()
    broker = ForwardBroker(r, keys, {"nodeB": tunnel})
    broker.start()
    address = lab.hosts["nodeB"].address
    try:
        # a tool's port changes from one sample to the next: the old forward goes
        first = bus.request_forward(r, keys, "nodeB", address, 23, 5.0, "pcp")
        second = bus.request_forward(r, keys, "nodeB", address, 22, 5.0, "pcp")
        assert tunnel.forwards == 1
        assert not r.exists(keys.forward("nodeB", address, 23))
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", first), timeout=2).close()
        with socket.create_connection(("127.0.0.1", second), timeout=5) as sock:
            assert sock.recv(64).startswith(b"SSH-2.0-OpenSSH")
        # a malformed request does not end the broker; a host it cannot reach is refused at once
        r.publish(keys.forward_requests, b"{not json")
        began = time.monotonic()
        with pytest.raises(bus.ForwardRefused, match="host nodeA"):
            bus.request_forward(r, keys, "nodeA", "127.0.0.1", 44321, 5.0, "pcp")
        assert time.monotonic() - began < 3.5  # at once, not after the 5 s deadline
        assert broker.is_alive()
    finally:
        broker.close()
        tunnel.close()
        client.close()
        r.close()


def test_a_tool_the_sink_cannot_reach_through_the_tunnel_fails_naming_the_host(
    redis_server: RedisServer,
) -> None:
    run_id = bus.new_run_id()
    keys = bus.Keys(run_id)
    r = redis_server.client()
    r.set(
        keys.sink_config,
        json.dumps({"hosts": ["nodeA"], "tunneled": ["nodeA"], "tools": {"nodeA": {"pcp": {}}}}),
    )
    broker = ForwardBroker(r, keys, {})  # the controller has no connection to nodeA
    broker.start()
    tds = ToolDataSink(redis_server.url, run_id, redis_server.password)
    try:
        report = bus.Report("1-x", "nodeA", "start", True, info={"pcp": {"port": 44321}})
        reports, errors = tds._through_tunnels({"nodeA": report})
    finally:
        broker.close()
        tds.client.close()
        r.close()
    # never the controller's own 127.0.0.1:44321 under nodeA's name
    assert "pcp" not in reports["nodeA"].info
    assert list(errors) == ["nodeA"]
    assert "tool 'pcp' on host nodeA" in errors["nodeA"][0]
    assert "44321" in errors["nodeA"][0]


def test_no_remote_process_inherits_the_redis_password(lab: SSHLab, tmp_path: Path) -> None:
    with Controller(_group("nodeA"), tmp_path / "tm", remote=lab.options()) as ctl:
        assert ctl.run_action("start", tmp_path / "s1").ok
        environs = {
            pid: Path(f"/proc/{pid}/environ").read_bytes() for pid in lab.leftovers("nodeA")
        }
        assert ctl.run_action("stop", tmp_path / "s1").ok
        password = ctl.password.encode()
    assert len(environs) >= 2, environs  # the meister and vmstat at least
    assert not [pid for pid, env in environs.items() if password in env]
    assert not _nothing_left(lab, 5, ("nodeA",))


def test_hosts_not_contacted_before_the_deadline_say_so() -> None:
    release = threading.Event()
    hosts = [f"h{i:02d}" for i in range(MAX_WORKERS + 2)]
    try:
        with pytest.raises(StartupError) as info:
            on_every_host(hosts, lambda h: release.wait(5), 0.2, "remote setup", lambda r: None)
    finally:
        release.set()
    text = str(info.value)
    assert f"host h{MAX_WORKERS:02d}: remote setup: not contacted before the deadline" in text
    assert f"({MAX_WORKERS} hosts at once)" in text
    assert "host h00: remote setup: not done within 0.2 s" in text


def test_a_meister_lost_between_actions_is_told_within_seconds(
    lab: SSHLab, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Controller(_group("nodeA", "nodeB"), tmp_path / "tm", remote=lab.options()) as ctl:
        assert ctl.run_action("start", tmp_path / "s1").ok
        meister = [p for p, cmd in lab.leftovers("nodeA").items() if " serve " in cmd]
        assert len(meister) == 1, lab.leftovers("nodeA")
        os.kill(meister[0], signal.SIGKILL)
        told = "host nodeA: the tool meister stopped answering"
        assert procs.wait_until(lambda: told in capsys.readouterr().err, 8, 0.2)
        assert ctl.watcher is not None and ctl.watcher.lost == {"nodeA"}
    assert not _nothing_left(lab, 5)


def test_a_bundle_that_cannot_be_unpacked_leaves_no_copy_on_the_host(
    lab: SSHLab, tmp_path: Path
) -> None:
    remotes = RemoteHosts(["nodeA"], lab.options(), bus.new_run_id(), tmp_path, Deadlines())
    remotes.bundle = Bundle(data=b"not a zip", digest="0" * 20, version="0.0.0")
    with pytest.raises(StartupError, match="host nodeA: cannot unpack the bundle"):
        remotes.connect()
    bundles = lab.remote_dir("nodeA") / "bundles"
    assert not [p.name for p in bundles.iterdir() if p.name.startswith("0.0.0-")]


def test_port_forwarding_on_a_host_cut_after_connecting_fails_in_time_naming_it(
    lab: SSHLab, tmp_path: Path
) -> None:
    deadlines = Deadlines(connect=2.0)
    remotes = RemoteHosts(["nodeA", "nodeB"], lab.options(), bus.new_run_id(), tmp_path, deadlines)
    remotes.connect()
    lab.cut("nodeA")
    try:
        began = time.monotonic()
        with pytest.raises(StartupError) as info:
            remotes.expose(redis=lambda: ("127.0.0.1", 1), sink=lambda: ("127.0.0.1", 1))
        assert time.monotonic() - began < deadlines.connect + 5
    finally:
        lab.restore("nodeA")
        remotes.close()
    assert "host nodeA: port forwarding: not done within 2 s" in str(info.value)
    assert "nodeB" not in str(info.value)


def test_pbench_kill_names_a_host_whose_answer_cannot_be_read(lab: SSHLab) -> None:
    described = {
        "options": lab.options(python="echo").to_dict(),  # prints its arguments, not JSON
        "bundle": "none",
        "hosts": {"nodeA": {"base": str(lab.remote_dir("nodeA"))}},
    }
    (line,) = kill_run(bus.new_run_id(), described, timeout=5.0)
    assert line.startswith("host nodeA: its kill printed no answer I can read")


LOSES_NODE_B = """
import subprocess, time

def bench_a(sample):
    if sample.number == 1:  # nodeB's meister is killed during the first sample
        subprocess.run(["pkill", "-KILL", "-f", {victim!r}])
    time.sleep(1)

def bench_b(sample):
    time.sleep(0.5)
"""


@pytest.mark.parametrize("mode", ["continue", "abort"])
def test_pbench_run_without_a_lost_host_continues_or_stops_and_says_what_is_missing(  # type: ignore[no-untyped-def]
    lab: SSHLab, pbench, run_dir: Path, tmp_path: Path, mode: str
) -> None:
    (tmp_path / "pbench.toml").write_text(lab.toml())
    suite = tmp_path / "suite"
    suite.mkdir()
    victim = f"[s]erve .*--host nodeB --base {lab.remote_dir('nodeB')}"
    (suite / "bench_lost.py").write_text(LOSES_NODE_B.format(victim=victim))
    pbench("register-tool-set", "light", "--interval=1", "--remotes=nodeA,nodeB", check=True)
    proc = pbench(
        "run", str(suite), "--samples=2", "--sysinfo=none", f"--on-host-failure={mode}",
        timeout=180,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stdout[-3000:] + proc.stderr[-2000:]
    result = latest_result(run_dir)
    meta = json.loads((result / "metadata.json").read_text())
    ran = sorted(p.name for p in result.iterdir() if p.name[0].isdigit())
    if mode == "continue":
        assert ran == ["1-bench_a", "2-bench_b"]
        expected = [f"{b}/sample{n}" for b in ran for n in (1, 2)]
        assert meta["missing_data"] == {"nodeB": expected}
        for sample in expected:
            tools = result / sample / "tools-default"
            assert (tools / "nodeA" / "vmstat" / "vmstat.csv").exists()
            assert not (tools / "nodeB").exists()
    else:
        assert ran == ["1-bench_a"]  # stopped cleanly after the benchmark that lost it
        assert "host nodeB lost; run stopped" in proc.stdout
        assert "nodeB" in meta["missing_data"]
    assert not _nothing_left(lab, 5)
    assert not _runs_left(lab)
