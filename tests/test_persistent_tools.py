"""PCP and node_exporter + Prometheus, real programs started by the system under test.

What is asserted is the result tree and that PCP's and Prometheus's own tools
read the data back.  The leak guard (../conftest.py) checks after each test
that no pmcd, pmlogger, node_exporter or prometheus is left running.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pbench_runner import procs
from pbench_runner.controller import Controller
from pbench_runner.daemon import Daemon
from pbench_runner.toolstore import HostTools, ToolGroup

from .conftest import HOST, latest_result, one_sample, pbench_env, spawn_pbench

pytestmark = pytest.mark.skipif(
    not (shutil.which("pmlogger") and shutil.which("prometheus")),
    reason="needs pcp and prometheus (scripts/install.sh installs them)",
)


def _archive_span(archive: Path) -> tuple[datetime, datetime]:
    """The first and last record times of a PCP archive, as pmdumplog reads them."""
    out = subprocess.run(
        ["pmdumplog", "-L", "-Z", "UTC", str(archive)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout
    stamps = {}
    for line in out.splitlines():
        words = line.split()
        if words and words[0] in ("commencing", "ending"):
            stamps[words[0]] = datetime.strptime(" ".join(words[1:6]), "%a %b %d %H:%M:%S.%f %Y")
    return stamps["commencing"], stamps["ending"]


def test_user_benchmark_with_pcp_records_the_benchmark_in_an_archive(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path
) -> None:
    pbench("register-tool", "--name=pcp", "--", "--interval=1", check=True)
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    began = datetime.utcnow()
    pbench("user-benchmark", "--sysinfo=none", "--", "sleep", "5.2", check=True)
    ended = datetime.utcnow()
    result = latest_result(run_dir)
    host_dir = result / "1-default" / "sample1" / "tools-default" / HOST
    pcp = host_dir / "pcp"
    assert (pcp / f"{HOST}.meta").exists() and (pcp / f"{HOST}.index").exists()
    # the run's whole archive, of which the sample's is a cut
    whole = result / "tools-default" / HOST / "pcp" / HOST
    assert _archive_span(whole)[0] <= _archive_span(pcp / HOST)[0]
    assert (pcp / "pmcd.log").exists()  # the host's own part, sent by its meister
    assert (host_dir / "vmstat" / "vmstat.csv").exists()  # the other tools' data beside it
    # PCP's own tools read it: the host's name, and records of the default metrics
    label = subprocess.run(
        ["pmdumplog", "-l", str(pcp / HOST)], capture_output=True, text=True, check=True
    ).stdout
    assert f"host {HOST}" in label
    first, last = _archive_span(pcp / HOST)
    assert began.replace(microsecond=0) <= first.replace(microsecond=0) and last <= ended
    # the records cover the benchmark, from its start to its end, give or take
    # two of pmlogger's 1 s intervals (a loaded machine delays its fetches)
    sample = json.loads((host_dir.parent.parent / "result.json").read_text())
    bench_start, bench_end = (
        datetime.fromisoformat(sample[k]).astimezone(timezone.utc).replace(tzinfo=None)
        for k in ("start", "end")
    )
    # the cut starts at the last record at or before the sample's start, and
    # ends within one of pmlogger's 1 s intervals (and some slack) of its end
    assert first <= bench_start, (first, bench_start)
    assert last >= bench_end - timedelta(seconds=2.5), (last, bench_end)
    for metric in (
        "kernel.all.load",
        "mem.util.used",
        "kernel.all.cpu.idle",
        "disk.all.read_bytes",
        "network.interface.in.bytes",
    ):
        dump = subprocess.run(
            ["pmdumplog", str(pcp / HOST), metric], capture_output=True, text=True, check=True
        ).stdout
        assert dump.count(metric) >= 2, (metric, dump)
    with open(pcp / "activity.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["cpu_busy_pct"]]
    assert len(rows) >= 2
    assert all(0 <= float(r["cpu_busy_pct"]) <= 100 and float(r["mem_used_mib"]) > 0 for r in rows)


def _prometheus_query(tsdb: Path, tmp_path: Path, *queries: str) -> list[list[dict]]:  # type: ignore[type-arg]
    """Start a Prometheus of our own on a copy of stored data and run ``queries``."""
    copy = tmp_path / "tsdb-copy"
    shutil.copytree(tsdb, copy)
    config = tmp_path / "empty.yml"
    config.write_text("scrape_configs: []\n")
    daemon = Daemon("reader", "prometheus", "prometheus", tmp_path / "reader.log")

    def ready(port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2):
                return True
        except OSError:
            return False

    port = daemon.start(
        lambda p: [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={copy}",
            f"--web.listen-address=127.0.0.1:{p}",
        ],
        ready=ready,
    )
    results = []
    try:
        for query in queries:
            url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
                {"query": query, "time": f"{time.time():.3f}"}
            )
            with urllib.request.urlopen(url, timeout=10) as resp:
                answer = json.load(resp)
            assert answer["status"] == "success", answer
            results.append(answer["data"]["result"])
    finally:
        daemon.stop()
    return results


def test_prometheus_scrapes_every_hosts_node_exporter(tmp_path: Path) -> None:
    hosts = ["node-a", "node-b"]
    group = ToolGroup(
        "default",
        {h: HostTools(tools={"node_exporter": {"interval": 1, "collectors": "cpu,meminfo,loadavg"}})
         for h in hosts},
    )  # fmt: skip
    sample = tmp_path / "s1"
    with Controller(group, tmp_path / "tm", local_hosts=hosts) as ctl:
        exporters = [
            int(p) for p in procs.run_pids(ctl.run_id) if "node-exporter" in procs.cmdline(p)
        ]
        assert len(exporters) == 2  # one per host, running for the whole session
        one_sample(ctl, sample, 1.0)
        # a sample's stop leaves them running: they are persistent
        assert all(procs.pid_alive(p) for p in exporters)
    assert not any(procs.pid_alive(p) for p in exporters)  # the end stops them
    tools = tmp_path / "tools-default"
    assert (tools / "_prometheus" / "prometheus.yml").exists()
    found, samples = _prometheus_query(
        tools / "_prometheus" / "tsdb",
        tmp_path,
        "count by (host) (node_cpu_seconds_total)",
        "count_over_time(node_load1[1h])",
    )
    assert sorted(r["metric"]["host"] for r in found) == hosts
    assert all(float(r["value"][1]) >= 2 for r in samples) and len(samples) == 2
    for host in hosts:
        out = sample / "tools-default" / host / "node_exporter"
        assert (out / "node_exporter.log").exists()
        with open(out / "activity.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert any(r["cpu_busy_pct"] for r in rows) and all(r["mem_used_mib"] for r in rows)


def test_two_runs_at_once_do_not_collide(tmp_path: Path) -> None:
    """Ports are never fixed: two runs with pcp and node_exporter side by side."""
    runs = []
    for name in ("one", "two"):
        run_dir = tmp_path / name
        env = pbench_env(run_dir)
        for tool in ("pcp", "node-exporter"):
            subprocess.run(
                [sys.executable, "-m", "pbench_runner", "register-tool", f"--name={tool}",
                 "--", "--interval=1"],
                env=env, check=True, capture_output=True,
            )  # fmt: skip
        user_benchmark = ("user-benchmark", "--sysinfo=none", "--", "sleep", "1.3")
        runs.append((run_dir, spawn_pbench(run_dir, tmp_path, *user_benchmark)))
    for run_dir, proc in runs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        host_dir = latest_result(run_dir) / "1-default" / "sample1" / "tools-default" / HOST
        assert (host_dir / "pcp" / f"{HOST}.0").exists()
        assert (host_dir / "node_exporter" / "activity.csv").exists()


def test_a_missing_program_is_refused_at_start_naming_host_tool_and_package(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path
) -> None:
    pbench("register-tool", "--name=pcp", check=True)
    env_run = subprocess.run(
        [sys.executable, "-m", "pbench_runner", "tool-meister-start"],
        env={**pbench_env(run_dir), "PBENCH_PMCD": "/nonexistent/pcp/bin/pmcd"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert env_run.returncode == 4, env_run.stderr
    assert HOST in env_run.stderr and "'pcp'" in env_run.stderr
    assert "'/nonexistent/pcp/bin/pmcd'" in env_run.stderr
    assert "install the package 'pcp'" in env_run.stderr
    assert not list((run_dir / "sessions").glob("*.json"))


def test_a_tool_that_dies_during_a_sample_is_reported_and_the_rest_kept(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    pbench("register-tool", "--name=pcp", "--", "--interval=1", check=True)
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    sample = tmp_path / "r" / "s1"
    pbench("tool-meister-start", f"--dir={tmp_path / 'r'}", "--sysinfo=none", check=True)
    try:
        pbench("start-tools", f"--dir={sample}", check=True)
        run_id = json.loads(next((run_dir / "sessions").glob("*.json")).read_text())["run_id"]
        pmcd = [p for p in procs.run_pids(run_id) if "pmcd" in procs.cmdline(p).split(" ")[0]]
        assert pmcd, "no pmcd of this run is running"
        for pid in pmcd:
            os.kill(pid, 9)
        time.sleep(1.2)
        stopped = pbench("stop-tools", f"--dir={sample}")
        assert stopped.returncode == 4
        assert f"tool 'pcp' on host {HOST}" in stopped.stderr
        assert "pmcd died" in stopped.stderr and "exit status -9" in stopped.stderr
        pbench("send-tools", f"--dir={sample}", check=True)
    finally:
        pbench("tool-meister-stop", "--sysinfo=none")
    host_dir = sample / "tools-default" / HOST
    assert (host_dir / "vmstat" / "vmstat.csv").exists()
    assert (host_dir / "pcp" / "pmcd.log").exists()
    assert (host_dir / "pcp" / f"{HOST}.0").exists()  # what pmlogger recorded is kept


def test_a_collector_program_missing_on_the_controller_is_refused_at_start(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    pbench("register-tool", "--name=node-exporter", check=True)
    # A PATH with everything a run needs but Prometheus.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("redis-server", "prometheus-node-exporter", "setpriv"):
        found = shutil.which(program)
        assert found, program
        (bin_dir / program).symlink_to(found)
    proc = subprocess.run(
        [sys.executable, "-m", "pbench_runner", "tool-meister-start", "--sysinfo=none"],
        env={**pbench_env(run_dir), "PATH": str(bin_dir)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 4, proc.stderr
    assert "(the controller)" in proc.stderr and "'node_exporter'" in proc.stderr
    assert "'prometheus'" in proc.stderr and "install the package 'prometheus'" in proc.stderr
    assert not list((run_dir / "sessions").glob("*.json"))


def test_pcp_records_the_metrics_of_a_users_pmlogger_config(tmp_path: Path) -> None:
    from pbench_runner.errors import ToolStoreError
    from pbench_runner.pluginmanager import get_plugin_manager, tool_registry

    spec = tool_registry(get_plugin_manager()).get("pcp")
    with pytest.raises(ToolStoreError, match="unknown metric group bogus"):
        spec.validate({"metrics": "cpu,bogus"})
    with pytest.raises(ToolStoreError, match="not a readable pmlogger configuration"):
        spec.validate({"config": str(tmp_path / "absent.conf")})
    config = tmp_path / "mine.conf"
    config.write_text("log mandatory on default {\n    kernel.all.load\n}\n")
    options = spec.validate({"config": str(config), "interval": "1"})
    group = ToolGroup("default", {HOST: HostTools(tools={"pcp": options})})
    sample = tmp_path / "s1"
    with Controller(group, tmp_path / "tm") as ctl:
        one_sample(ctl, sample, 2.2)
    archive = sample / "tools-default" / HOST / "pcp" / HOST
    whole = tmp_path / "tools-default" / HOST / "pcp"  # the run's own recording
    assert (whole / "pmlogger.config").read_text() == config.read_text()
    dump = subprocess.run(
        ["pmdumplog", "-a", str(archive)], capture_output=True, text=True, check=True
    ).stdout
    assert "kernel.all.load" in dump and "mem.util.used" not in dump


PIDS = """
from pbench_runner import procs

def bench_nap(sample, request):
    # which pmlogger and prometheus of this run record the sample
    run_id = request.config.pluginmanager.get_plugin("pbench-session").run.run_id
    for pid in procs.run_pids(run_id):
        program = procs.cmdline(pid).split(" ")[0].rsplit("/", 1)[-1]
        if program in ("pmlogger", "prometheus"):
            sample.record(program, pid)
    sample.run("sleep 3.5")  # two of the tools' 1 s intervals, and slack
"""


def test_persistent_tools_run_once_and_every_sample_takes_its_window(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    """pmlogger and Prometheus start once; each sample's PCP cut and Prometheus
    series begin at or before the sample does, read back by pmdumplog."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "bench_nap.py").write_text(PIDS)
    for tool in ("pcp", "node_exporter"):
        pbench("register-tool", f"--name={tool}", "--", "--interval=1", check=True)
    proc = pbench("run", str(suite), "--samples=3", "--sysinfo=none", "--no-progress")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    result = latest_result(run_dir)
    it = json.loads((result / "1-bench_nap" / "result.json").read_text())
    for program in ("pmlogger", "prometheus"):
        assert len(set(it["metrics"][program]["values"])) == 1, it["metrics"][program]
    for n in (1, 2, 3):
        sample_dir = result / "1-bench_nap" / f"sample{n}"
        record = json.loads((sample_dir / "result.json").read_text())
        start, _stop = record["window"]["hosts"][HOST]
        host = sample_dir / "tools-default" / HOST
        first, last = _archive_span(host / "pcp" / HOST)
        as_utc = datetime.fromtimestamp(start, timezone.utc).replace(tzinfo=None)
        assert first <= as_utc, (n, first, as_utc)  # the record before the start is in
        assert last >= as_utc  # and records of the sample itself
        series = json.loads((host / "node_exporter" / "series.json").read_text())
        points = [p[0] for s in series["data"]["result"] for p in s["values"]]
        prom_start = record["window"]["start"]
        assert min(points) <= prom_start < max(points), (n, min(points), prom_start)
        assert max(points) <= record["window"]["stop"] + 0.01
        # the per-host summary's peaks come from the tools' rows inside the window
        assert record["hosts"][HOST]["mem_used_mib"]["peak"] is not None
