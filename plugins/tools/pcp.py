"""``pcp``: Performance Co-Pilot, a persistent tool.

On each host the meister starts a private ``pmcd`` (its own port, socket,
configuration and log; no systemd) when the tools start and stops it when
they stop.  On the Tool Data Sink, one ``pmlogger`` per host records that
host's pmcd into ``tools-<group>/<host>/pcp/<host>.{0,index,meta}``, which
PCP's own tools (``pmdumplog``, ``pmrep``, ``pmchart``) read.  After
recording, the sink also writes ``activity.csv`` (CPU busy %, memory used,
disk and network throughput, load) for the host summaries and plots.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pbench_runner import hookimpl
from pbench_runner.collectors import in_threads
from pbench_runner.commandtool import ToolFailed
from pbench_runner.daemon import Daemon
from pbench_runner.hostsummary import write_activity
from pbench_runner.tools import (
    CollectorContext,
    Target,
    ToolContext,
    ToolOption,
    ToolSpec,
    positive_int,
)

#: pmcd is not on PATH in Debian's package
PMCD = os.environ.get("PBENCH_PMCD", "/usr/lib/pcp/bin/pmcd")
PMDA_DIR = Path(os.environ.get("PBENCH_PCP_PMDAS_DIR", "/var/lib/pcp/pmdas"))
#: the metric groups of ``--metrics``; the default records them all
METRIC_GROUPS: Mapping[str, Sequence[str]] = {
    "cpu": (
        "hinv.ncpu",
        "kernel.all.cpu.user",
        "kernel.all.cpu.nice",
        "kernel.all.cpu.sys",
        "kernel.all.cpu.idle",
        "kernel.all.cpu.wait.total",
        "kernel.all.cpu.steal",
        "kernel.all.cpu.irq.hard",
        "kernel.all.cpu.irq.soft",
        "kernel.percpu.cpu.user",
        "kernel.percpu.cpu.sys",
        "kernel.percpu.cpu.idle",
    ),
    "memory": (
        "mem.physmem",
        "mem.util.used",
        "mem.util.free",
        "mem.util.available",
        "mem.util.cached",
        "mem.util.bufmem",
        "swap.used",
    ),
    "disk": (
        "disk.all.read",
        "disk.all.write",
        "disk.all.read_bytes",
        "disk.all.write_bytes",
        "disk.dev.read_bytes",
        "disk.dev.write_bytes",
    ),
    "network": (
        "network.interface.in.bytes",
        "network.interface.out.bytes",
        "network.interface.in.packets",
        "network.interface.out.packets",
    ),
    "load": ("kernel.all.load", "kernel.all.runnable", "kernel.all.nprocs"),
}
#: what activity.csv is computed from (pmrep: time in s/s, space in KB)
_ACTIVITY_METRICS = (
    "hinv.ncpu",
    "kernel.all.cpu.idle",
    "mem.util.used",
    "disk.all.read_bytes",
    "disk.all.write_bytes",
    "network.interface.in.bytes",
    "network.interface.out.bytes",
    "kernel.all.load",
)
#: pmcd serves the kernel's metrics (linux) and its own (pmcd), both in-process
_PMCD_CONF = """\
pmcd\t2\tdso\tpmcd_init\t{pmdas}/pmcd/pmda_pmcd.so
linux\t60\tdso\tlinux_init\t{pmdas}/linux/pmda_linux.so

[access]
allow * : fetch;
disallow * : store;
"""


def metric_groups(text: str) -> str:
    """Option converter: ``cpu,memory`` (groups of METRIC_GROUPS)."""
    groups = [g.strip() for g in text.split(",") if g.strip()]
    unknown = [g for g in groups if g not in METRIC_GROUPS]
    if unknown or not groups:
        raise ValueError(
            f"unknown metric group {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(METRIC_GROUPS)}"
        )
    return ",".join(groups)


def logger_config(text: str) -> str:
    """Option converter: a pmlogger configuration file on the controller."""
    path = Path(text).expanduser().resolve()
    if not path.is_file() or not os.access(path, os.R_OK):
        raise ValueError(f"{path} is not a readable pmlogger configuration file")
    return str(path)


def _pcp_env(private: Path) -> dict[str, str]:
    """PCP's run and temporary directories, private to one program."""
    run, tmp = private / "run", private / "tmp"
    run.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    return {"PCP_RUN_DIR": str(run), "PCP_TMP_DIR": str(tmp)}


class PmcdTool:
    """The host side: one private pmcd from start to stop."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.daemon: Daemon | None = None
        self._private: Path | None = None

    def start(self) -> Mapping[str, Any] | None:
        outdir = self.ctx.outdir
        outdir.mkdir(parents=True, exist_ok=True)
        # Sockets and pid files stay out of the data that is sent.
        # A short path: pmcd's unix socket lives here (108 bytes at most).
        self._private = Path(tempfile.mkdtemp(prefix="pbench-pmcd-"))
        conf = self._private / "pmcd.conf"
        conf.write_text(_PMCD_CONF.format(pmdas=PMDA_DIR))
        socket_path = self._private / "pmcd.socket"
        self.daemon = Daemon(
            self.ctx.host, self.ctx.tool, "pmcd", outdir / "pmcd.log", _pcp_env(self._private)
        )

        def argv(port: int) -> list[str]:
            return [
                PMCD,
                "-f",
                "-A",
                "-i",
                self.ctx.address,
                "-p",
                str(port),
                "-c",
                str(conf),
                "-s",
                str(socket_path),
                "-H",
                self.ctx.host,
                "-l",
                str(outdir / "pmcd.log"),
            ]

        try:
            port = self.daemon.start(argv, self.ctx.address)
        except BaseException:
            self._cleanup()
            raise
        return {"address": self.ctx.address, "port": port, "pid": self.daemon.proc.pid}  # type: ignore[union-attr]

    def stop(self) -> None:
        try:
            if self.daemon is not None:
                self.daemon.stop()
        finally:
            self._cleanup()

    def postprocess(self) -> None:
        """pmcd's log is all there is on the host; pmlogger records at the sink."""

    def _cleanup(self) -> None:
        if self._private is not None and self._private.name.startswith("pbench-pmcd-"):
            shutil.rmtree(self._private, ignore_errors=True)
        self._private = None


class PmloggerCollector:
    """The sink side: one pmlogger per host, recording from that host's pmcd."""

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx
        self.loggers: list[tuple[Target, Daemon, Path]] = []
        self._private: Path | None = None

    def start(self) -> list[Exception]:
        """One pmlogger per host; a host whose pmlogger fails is reported, the rest record.

        They are started from this thread, one after the other: a child dies
        with the thread that started it (its parent-death signal).
        """
        self._private = Path(tempfile.mkdtemp(prefix="pbench-pmlogger-"))
        failed: list[Exception] = []
        for target in self.ctx.targets:
            try:
                self.loggers.append(self._start_one(target))
            except Exception as exc:
                failed.append(exc)
        if len(failed) == len(self.ctx.targets):
            self.stop()
            raise failed[0]
        return failed

    def _start_one(self, target: Target) -> tuple[Target, Daemon, Path]:
        assert self._private is not None
        outdir = self.ctx.tool_dir / target.host / self.ctx.tool
        outdir.mkdir(parents=True, exist_ok=True)
        config = outdir / "pmlogger.config"
        if target.options.get("config"):
            shutil.copyfile(str(target.options["config"]), config)
        else:
            groups = str(target.options.get("metrics", ",".join(METRIC_GROUPS))).split(",")
            metrics = [m for g in groups for m in METRIC_GROUPS[g]]
            config.write_text(
                "log mandatory on default {\n" + "".join(f"    {m}\n" for m in metrics) + "}\n"
            )
        archive = outdir / target.host
        daemon = Daemon(
            target.host,
            self.ctx.tool,
            "pmlogger",
            outdir / "pmlogger.log",
            _pcp_env(self._private / target.host),
        )
        argv = [
            "pmlogger", "-h", target.endpoint, "-c", str(config),
            "-t", f"{int(target.options.get('interval', 3))}sec",
            "-l", str(outdir / "pmlogger.log"), str(archive),
        ]  # fmt: skip
        # pmlogger serves no port of ours: it is up once its archive exists.
        daemon.start(lambda port: argv, ready=lambda port: Path(f"{archive}.0").exists())
        return target, daemon, archive

    def stop(self) -> list[Exception]:
        """Stop every pmlogger at once (SIGINT closes an archive), then summarise each."""

        def stop_one(logger: tuple[Target, Daemon, Path]) -> Exception | None:
            target, daemon, archive = logger
            error: Exception | None = None
            try:
                daemon.stop(sig=signal.SIGINT)
            except ToolFailed as exc:
                error = exc
            _activity(target, archive)
            return error

        loggers, self.loggers = self.loggers, []
        errors = [exc for exc in in_threads(stop_one, loggers) if exc is not None]
        if self._private is not None and self._private.name.startswith("pbench-pmlogger-"):
            shutil.rmtree(self._private, ignore_errors=True)
        self._private = None
        return errors


def _activity(target: Target, archive: Path) -> None:
    """Write ``activity.csv`` beside the archive from pmrep's rates; never raises."""
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    # pmrep is a PCP Python program: it needs the system Python's pcp module.
    env.setdefault("PCP_PYTHON_PROG", "/usr/bin/python3")
    argv = [
        "pmrep", "-a", str(archive), "-o", "csv", "-t",
        f"{int(target.options.get('interval', 3))}sec", "-y", "sec", "-b", "KB",
        "-P", "3", "-f", "%Y-%m-%dT%H:%M:%S", "-i", ".*", *_ACTIVITY_METRICS,
    ]  # fmt: skip
    try:
        out = subprocess.run(
            argv, capture_output=True, text=True, env=env, timeout=30.0, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        with contextlib.suppress(OSError):
            (archive.parent / "pmrep.err").write_text(f"{' '.join(argv)}\n{exc}\n")
        return
    rows = []
    for row in csv.DictReader(out.splitlines()):
        ncpu = _num(row.get("hinv.ncpu"))
        idle = _num(row.get("kernel.all.cpu.idle"))
        net = [
            _num(v)
            for k, v in row.items()
            if k.startswith("network.interface.") and not k.endswith("-lo")
        ]
        rows.append(
            {
                "timestamp": f"{row['Time']}+00:00",
                "cpu_busy_pct": None
                if idle is None or not ncpu
                else max(0.0, 100.0 * (1 - idle / ncpu)),
                "mem_used_mib": _scaled(row.get("mem.util.used"), 1 / 1024),
                "disk_kib_s": _sum(
                    [_num(row.get("disk.all.read_bytes")), _num(row.get("disk.all.write_bytes"))]
                ),
                "net_kib_s": _sum(net),
                "load1": _num(row.get("kernel.all.load-1 minute")),
            }
        )
    write_activity(archive.parent / "activity.csv", rows)


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _scaled(text: str | None, factor: float) -> float | None:
    value = _num(text)
    return None if value is None else value * factor


def _sum(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


@hookimpl
def pbench_tool_specs() -> Sequence[ToolSpec]:
    return [
        ToolSpec(
            name="pcp",
            kind="persistent",
            summary="Performance Co-Pilot: pmcd on each host, recorded by pmlogger on the sink",
            factory=PmcdTool,
            collector=PmloggerCollector,
            programs={PMCD: "pcp"},
            collector_programs={"pmlogger": "pcp", "pmrep": "pcp"},
            options=[
                ToolOption("interval", positive_int, 3, "seconds between records"),
                ToolOption(
                    "metrics",
                    metric_groups,
                    ",".join(METRIC_GROUPS),
                    f"metric groups to record: {', '.join(METRIC_GROUPS)}",
                ),
                ToolOption(
                    "config",
                    logger_config,
                    None,
                    "a pmlogger configuration file of your own (replaces --metrics)",
                ),
            ],
        )
    ]
