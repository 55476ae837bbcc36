"""PCP and node_exporter + Prometheus as persistent tools, driven directly.

No meister, sink or Redis: the test builds the host side (``PmcdTool``,
``NodeExporterTool``) and the sink side (the collectors) itself, starts them
once, runs a few "samples", slices each, and stops everything once, as a
session does.  What is asserted is read back with the programs' own tools
(``pmdumplog``, ``promtool``).  The leak guard (../conftest.py) checks after
each test that no pmcd, pmlogger, exporter or Prometheus is left running.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pbench_runner_tools.node_exporter import NodeExporterTool, PrometheusCollector
from pbench_runner_tools.pcp import PMCD, PmcdTool, PmloggerCollector

from pbench_runner import procs
from pbench_runner.commandtool import ToolFailed
from pbench_runner.tools import (
    Collector,
    CollectorContext,
    SampleWindow,
    Target,
    Tool,
    ToolContext,
)

pytestmark = pytest.mark.skipif(
    not all(
        shutil.which(p)
        for p in (
            PMCD,
            "pmlogger",
            "pmlogextract",
            "pmdumplog",
            "prometheus",
            "promtool",
            "prometheus-node-exporter",
        )
    ),
    reason="needs pcp, prometheus and prometheus-node-exporter (scripts/install.sh installs them)",
)

#: sample lengths in seconds, with interval=1: one shorter than an interval
SAMPLES = (0.4, 1.3, 2.5)
_ENV = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
#: series that every scrape of a node_exporter has, from the first
STEADY = {"up", "node_load1", "node_cpu_seconds_total", "node_memory_MemTotal_bytes"}


@contextlib.contextmanager
def host_tools(tool: type, name: str, hosts: list[str], tmp_path: Path) -> Iterator[list[Target]]:
    """Start ``tool`` on every host; yield the targets the sink would get; stop them all."""
    started: list[Tool] = []
    targets = []
    try:
        for host in hosts:
            options = {"interval": 1}
            instance = tool(ToolContext(host, name, "default", options, tmp_path / host / name))
            started.append(instance)
            targets.append(Target(host, options, facts=instance.start() or {}))
        yield targets
    finally:
        for instance in started:
            with contextlib.suppress(ToolFailed):
                instance.stop()


@contextlib.contextmanager
def running(collector: Collector) -> Iterator[Collector]:
    """``collector`` started; stopped at the end, whatever happens."""
    problems = collector.start()
    try:
        assert not problems, problems
        yield collector
    finally:
        stopped = collector.stop()
    assert not stopped, stopped  # (not checked when the test failed already)


def pids(program: str, fragment: str) -> set[int]:
    """Live processes running ``program`` with ``fragment`` on their command line."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cmd = procs.cmdline(int(entry))
            if cmd.split(" ", 1)[0].endswith(program) and fragment in cmd:
                found.add(int(entry))
    return found


def run_samples(collector: Collector, run: Path, watch: tuple[str, str]) -> list[SampleWindow]:
    """Run SAMPLES, slicing each into ``<run>/sample<N>/tools-default``.

    Asserts that one and the same recorder (``watch``: program, fragment of
    its command line) runs from the first sample to the last.
    """
    seen = pids(*watch)
    windows = []
    for number, length in enumerate(SAMPLES, 1):
        start = time.time()
        time.sleep(length)
        window = SampleWindow(start, time.time())
        problems = collector.slice(window, run / f"sample{number}" / "tools-default")
        assert not problems, problems
        windows.append(window)
        seen |= pids(*watch)
    assert len(seen) == 1, f"{watch[0]} ran as {len(seen)} processes: {seen}"
    return windows


def _utc(text: str) -> float:
    """A time as pmdumplog writes it with -Z UTC: ``Wed Dec  2 17:03:10.211285 2026``."""
    moment = datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S.%f %Y")
    return moment.replace(tzinfo=timezone.utc).timestamp()


def record_times(archive: Path) -> list[float]:
    """Every record's time in a PCP archive, as pmdumplog reads them."""
    dump = subprocess.run(
        ["pmdumplog", "-x", "-Z", "UTC", str(archive), "kernel.all.load"],
        capture_output=True, text=True, check=True, env=_ENV,
    ).stdout  # fmt: skip
    return [_utc(" ".join(line.split()[:5])) for line in dump.splitlines() if "metric" in line]


def activity(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def memory(archive: Path) -> list[dict[str, float]]:
    """Every record's mem.physmem and mem.util.available (KB), as pmdumplog reads them."""
    dump = subprocess.run(
        ["pmdumplog", str(archive), "mem.physmem", "mem.util.available"],
        capture_output=True, text=True, check=True, env=_ENV,
    ).stdout  # fmt: skip
    records: list[dict[str, float]] = []
    for line in dump.splitlines():
        if "metric" in line:
            records.append({})
        elif "): value " in line:
            name = line.split("(", 1)[1].split(")", 1)[0]
            records[-1][name] = float(line.rsplit(" ", 1)[1])
    return records


def test_pcp_records_once_for_the_run_and_slices_each_sample(tmp_path: Path) -> None:
    run = tmp_path / "run"
    host = "pcp-host"
    with host_tools(PmcdTool, "pcp", [host], tmp_path / "hosts") as targets:
        collector = PmloggerCollector(
            CollectorContext("pcp", "default", run / "tools-default", targets)
        )
        archive = run / "tools-default" / host / "pcp" / host
        with running(collector):
            # start returned with a record taken: a sample that starts now is covered
            assert record_times(archive)
            windows = run_samples(collector, run, ("pmlogger", str(archive)))
        assert not pids("pmlogger", str(archive))
    # the whole run's archive covers every sample
    times = record_times(archive)
    assert times[0] <= windows[0].start and times[-1] >= windows[-1].stop - 1.5
    for number, window in enumerate(windows, 1):
        pcp = run / f"sample{number}" / "tools-default" / host / "pcp"
        label = subprocess.run(
            ["pmdumplog", "-L", "-Z", "UTC", str(pcp / host)],
            capture_output=True, text=True, check=True, env=_ENV,
        ).stdout  # fmt: skip
        assert f"host {host}" in label
        commencing = next(ln for ln in label.splitlines() if "commencing" in ln)
        first = _utc(commencing.split("commencing", 1)[1])
        # the slice starts with the last record at or before the sample's start
        assert first <= window.start, (number, first, window)
        times = record_times(pcp / host)
        assert times[0] == pytest.approx(first, abs=1e-5)
        assert len(times) == 1 or times[1] > window.start, (number, times, window)
        assert times[-1] <= window.stop + 1.5  # at most one record past the stop
        rows = activity(pcp / "activity.csv")
        if window.stop - window.start >= 1.2:  # a record fell in the window
            assert rows and all(r["cpu_busy_pct"] and r["disk_kib_s"] for r in rows), rows
            assert all(0 <= float(r["cpu_busy_pct"]) <= 100 for r in rows)
            # memory used is MemTotal - MemAvailable (not PCP's mem.util.used), in MiB
            used = {
                round((m["mem.physmem"] - m["mem.util.available"]) / 1024, 3)
                for m in memory(pcp / host)[1:]
            }
            assert {float(r["mem_used_mib"]) for r in rows} <= used, (rows, used)


def test_prometheus_scrapes_once_for_the_run_and_exports_each_sample(tmp_path: Path) -> None:
    run = tmp_path / "run"
    hosts = ["node-a", "node-b"]
    with host_tools(NodeExporterTool, "node_exporter", hosts, tmp_path / "hosts") as targets:
        collector = PrometheusCollector(
            CollectorContext("node_exporter", "default", run / "tools-default", targets)
        )
        shared = run / "tools-default" / "_prometheus"
        config = str(shared / "prometheus.yml")
        with running(collector):
            windows = run_samples(collector, run, ("prometheus", config))
        assert not pids("prometheus", config)
    # the whole run: a snapshot of the TSDB, in blocks that promtool reads
    listing = subprocess.run(
        ["promtool", "tsdb", "list", str(shared / "tsdb")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    blocks = listing.splitlines()[1:]
    assert blocks and all(int(line.split()[4]) > 0 for line in blocks), listing  # samples
    assert not (shared / "data").exists()
    for number, window in enumerate(windows, 1):
        for host in hosts:
            outdir = run / f"sample{number}" / "tools-default" / host / "node_exporter"
            export = json.loads((outdir / "series.json").read_text())
            series = export["data"]["result"]
            assert series and {s["metric"]["host"] for s in series} == {host}
            assert any(s["metric"]["__name__"] == "node_load1" for s in series)
            for item in series:
                stamps = [float(t) for t, _ in item["values"]]
                # from the last scrape at or before the start, to the stop
                assert all(window.start < t <= window.stop for t in stamps[1:]), (item, window)
                # (a series that appeared during the sample, a new mount or
                # network device, starts later)
                if item["metric"]["__name__"] in STEADY:
                    assert stamps[0] <= window.start, (item, window)
            if window.stop - window.start >= 1.2:  # a scrape fell in the window
                assert any(len(s["values"]) >= 2 for s in series)
                rows = activity(outdir / "activity.csv")
                assert rows and all(r["cpu_busy_pct"] and r["mem_used_mib"] for r in rows)
                assert all(0 <= float(r["cpu_busy_pct"]) <= 100 for r in rows)


@pytest.mark.parametrize(
    ("tool", "name", "program"),
    [
        (PmcdTool, "pcp", "pmcd"),
        (NodeExporterTool, "node_exporter", "prometheus-node-exporter"),
    ],
)
def test_a_host_tool_that_died_is_reported_by_check(
    tool: type, name: str, program: str, tmp_path: Path
) -> None:
    instance = tool(ToolContext("dying-host", name, "default", {"interval": 1}, tmp_path / name))
    try:
        pid = instance.start()["pid"]
        instance.check()  # a live tool passes
        os.kill(pid, signal.SIGKILL)
        assert procs.wait_until(lambda: not instance.daemon.alive(), 5)
        with pytest.raises(ToolFailed) as failed:
            instance.check()
        assert failed.value.host == "dying-host" and failed.value.tool == name
        assert f"tool {name!r} on host dying-host" in str(failed.value)
        assert f"{program} died" in str(failed.value) and "exit status -9" in str(failed.value)
    finally:
        with contextlib.suppress(ToolFailed):
            instance.stop()


def test_a_dead_pmlogger_is_reported_by_slice_and_stop_without_raising(tmp_path: Path) -> None:
    run = tmp_path / "run"
    host = "pcp-host"
    with host_tools(PmcdTool, "pcp", [host], tmp_path / "hosts") as targets:
        collector = PmloggerCollector(
            CollectorContext("pcp", "default", run / "tools-default", targets)
        )
        collector.start()
        try:
            start = time.time()
            time.sleep(1.2)
            logger = collector.loggers[0].daemon
            assert logger.proc is not None
            os.kill(logger.proc.pid, signal.SIGKILL)
            assert procs.wait_until(lambda: not logger.alive(), 5)
            problems = collector.slice(SampleWindow(start, time.time()), run / "s1")
            assert len(problems) == 1 and isinstance(problems[0], ToolFailed)
            assert f"tool 'pcp' on host {host}" in str(problems[0])
            assert "pmlogger died" in str(problems[0])
            # what it recorded before it died is still sliced
            assert record_times(run / "s1" / host / "pcp" / host)
        finally:
            stopped = collector.stop()
        assert len(stopped) == 1 and "pmlogger died" in str(stopped[0])
