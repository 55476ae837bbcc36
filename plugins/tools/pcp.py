"""``pcp``: Performance Co-Pilot, a persistent tool.

Life cycle: as in pbench's Tool Meister, PCP runs for the whole session, not
around each sample.  Each host's meister starts a private ``pmcd`` (its own
port, socket, configuration and log; no systemd) when the meisters start and
stops it when they stop; :meth:`PmcdTool.check` says, as each sample stops,
whether it died meanwhile.  On the Tool Data Sink one ``pmlogger`` per host
records that host's pmcd for the whole run: :meth:`PmloggerCollector.start`
returns once every archive holds its first record, so the first sample is
covered from its start.  After every sample :meth:`PmloggerCollector.slice`
cuts the sample's window out of the live archive with ``pmlogextract`` and
writes ``activity.csv`` (CPU busy %, memory used = MemTotal - MemAvailable,
disk and network throughput, load) for the host summaries;
:meth:`PmloggerCollector.stop` closes the archives at the end.

Layout::

    <result>/tools-<group>/<host>/pcp/     the whole run
        <host>.0 <host>.index <host>.meta      pmlogger's archive
        pmlogger.config pmlogger.log
    <sample>/tools-<group>/<host>/pcp/     one sample
        <host>.0 <host>.index <host>.meta      the sample's records (below)
        activity.csv                           one row per interval between two
                                               records, stamped with the later

PCP's own tools (``pmdumplog``, ``pmrep``, ``pmchart``) read both archives.
A sample's archive holds the records from the last one at or before the
sample's start to its stop, and, as ``pmlogextract -T`` does, the first one
after the stop when pmlogger has written it by then; a window shorter than an
interval still has the record before its start.  Records carry the time of
the host's pmcd, so the window is taken on that host's clock
(:meth:`SampleWindow.on`).

Reading a live archive: pmlogger (PCP 6) writes every record with one
unbuffered write as soon as pmcd has answered, so there is nothing to flush
(``pmlc``'s ``flush`` is kept for compatibility only): when the slice is
taken, every record up to the stop is on disk but for one whose fetch was
still under way in the last moments before it.  A record that is half
written as ``pmlogextract`` reaches it is left out with a warning, the
records before it kept.  A failed extraction is tried once more.  The time of
the last record at or before the start is looked up first (``pmdumplog -S
-T`` on the live archive), so the slice starts exactly there whatever the
jitter of pmlogger's fetches.  ``activity.csv`` is computed from
``pmdumplog``'s values of the slice: a C program, a few ms (``pmrep``, a
Python program, costs some 50 ms a call).
"""

from __future__ import annotations

import calendar
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pbench_runner import hookimpl, procs
from pbench_runner.collectors import in_threads
from pbench_runner.commandtool import ToolFailed
from pbench_runner.daemon import Daemon
from pbench_runner.hostsummary import write_activity
from pbench_runner.tools import (
    CollectorContext,
    SampleWindow,
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
#: what activity.csv is computed from (both memory metrics in KB: used = MemTotal - MemAvailable)
_ACTIVITY_METRICS = (
    "hinv.ncpu",
    "kernel.all.cpu.idle",
    "kernel.all.cpu.wait.total",
    "mem.physmem",
    "mem.util.available",
    "disk.all.read_bytes",
    "disk.all.write_bytes",
    "network.interface.in.bytes",
    "network.interface.out.bytes",
    "kernel.all.load",
)
#: a PCP unit (as pmdumplog names it) -> the factor to seconds or to KiB
_SCALE: Mapping[str, float] = {
    "nanosec": 1e-9,
    "microsec": 1e-6,
    "millisec": 1e-3,
    "sec": 1.0,
    "byte": 1 / 1024,
    "Kbyte": 1.0,
    "Mbyte": 1024.0,
    "Gbyte": 1024.0**2,
    "none": 1.0,
}
#: seconds a pmlogger may take to write its first record
FIRST_RECORD_TIMEOUT = 15.0
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
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
    """The host side: one private pmcd, from ``tool-meister-start`` to ``tool-meister-stop``."""

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

    def check(self) -> None:
        """Raise :class:`ToolFailed` (naming the host and the tool) if pmcd has died."""
        if self.daemon is not None:
            self.daemon.check()

    def postprocess(self) -> None:
        """pmcd's log is all there is on the host; pmlogger records at the sink."""

    def _cleanup(self) -> None:
        if self._private is not None and self._private.name.startswith("pbench-pmcd-"):
            shutil.rmtree(self._private, ignore_errors=True)
        self._private = None


@dataclass
class _Logger:
    """One host's pmlogger and its live archive."""

    target: Target
    daemon: Daemon
    archive: Path
    interval: int
    #: the activity metrics the archive holds -> their units; set by the first record
    units: dict[str, str] | None = None


class PmloggerCollector:
    """The sink side: one pmlogger per host, recording that host's pmcd for the whole run."""

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx
        self.loggers: list[_Logger] = []
        self._private: Path | None = None

    def start(self) -> list[Exception]:
        """One pmlogger per host; return once each has written its first record.

        A host whose pmlogger fails, or writes no record within
        FIRST_RECORD_TIMEOUT, is reported; the rest record.  They are started
        from this thread, one after the other: a child dies with the thread
        that started it (its parent-death signal), so this thread must live
        as long as the run.
        """
        self._private = Path(tempfile.mkdtemp(prefix="pbench-pmlogger-"))
        failed: list[Exception] = []
        for target in self.ctx.targets:
            try:
                self.loggers.append(self._start_one(target))
            except Exception as exc:
                failed.append(exc)
        failed += self._wait_for_first_records()
        if failed and not self.loggers:
            self.stop()
            raise failed[0]
        return failed

    def _start_one(self, target: Target) -> _Logger:
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
        interval = int(target.options.get("interval", 3))
        daemon = Daemon(
            target.host,
            self.ctx.tool,
            "pmlogger",
            outdir / "pmlogger.log",
            _pcp_env(self._private / target.host),
        )
        argv = [
            "pmlogger", "-h", target.endpoint, "-c", str(config), "-t", f"{interval}sec",
            "-l", str(outdir / "pmlogger.log"), str(archive),
        ]  # fmt: skip
        # pmlogger serves no port of ours: it is up once its archive exists.
        daemon.start(lambda port: argv, ready=lambda port: Path(f"{archive}.0").exists())
        return _Logger(target, daemon, archive, interval)

    def _wait_for_first_records(self) -> list[Exception]:
        """Wait (bounded) until every archive holds a record of the host's metrics.

        A pmlogger that writes none in time is stopped and reported.
        """
        failed: list[Exception] = []
        deadline = time.monotonic() + FIRST_RECORD_TIMEOUT
        pending = list(self.loggers)
        while pending:
            for logger in list(pending):
                logger.units = _first_record(logger.archive)
                if logger.units is not None:
                    pending.remove(logger)
                elif not logger.daemon.alive() or time.monotonic() >= deadline:
                    pending.remove(logger)
                    self.loggers.remove(logger)
                    failed.append(self._no_record(logger))
            if pending:
                time.sleep(0.02)
        return failed

    def _no_record(self, logger: _Logger) -> Exception:
        error: Exception
        try:
            logger.daemon.check()
            error = ToolFailed(
                logger.target.host,
                self.ctx.tool,
                f"pmlogger wrote no record of pmcd at {logger.target.endpoint} "
                f"within {FIRST_RECORD_TIMEOUT:g} s",
                procs.tail(logger.daemon.log_path),
            )
        except ToolFailed as exc:
            error = exc
        with contextlib.suppress(ToolFailed):
            logger.daemon.stop(sig=signal.SIGINT)
        return error

    def slice(self, window: SampleWindow, tool_dir: Path) -> list[Exception]:
        """Each host's records of ``window`` into ``tool_dir/<host>/pcp/``, with activity.csv.

        Returns the errors of hosts whose slice failed or whose pmlogger has died.
        """

        def slice_one(logger: _Logger) -> list[Exception]:
            errors: list[Exception] = []
            try:
                self._slice_one(logger, window, tool_dir)
            except Exception as exc:
                errors.append(
                    ToolFailed(
                        logger.target.host,
                        self.ctx.tool,
                        f"cannot take the sample's records from {logger.archive}: {exc}",
                    )
                )
            try:
                logger.daemon.check()
            except ToolFailed as exc:
                errors.append(exc)
            return errors

        return [exc for errors in in_threads(slice_one, self.loggers) for exc in errors]

    def _slice_one(self, logger: _Logger, window: SampleWindow, tool_dir: Path) -> None:
        host = logger.target.host
        start, stop = window.on(host)  # records carry the time of the host's pmcd
        outdir = tool_dir / host / self.ctx.tool
        outdir.mkdir(parents=True, exist_ok=True)
        out = outdir / host
        first = _last_record_at(logger.archive, start, logger.interval)
        # -S keeps the records at or after it: just before the one at or before
        # the start (when none is found, one interval and a little before it)
        begin = start - 1.1 * logger.interval if first is None else first - 0.001
        argv = [
            "pmlogextract", "-Z", "UTC", "-S", _pcp_time(begin), "-T", _pcp_time(stop),
            str(logger.archive), str(out),
        ]  # fmt: skip
        for attempt in (1, 2):
            _remove_archive(out)  # pmlogextract writes no archive over another
            try:
                _run(argv)
                break
            except RuntimeError:
                # e.g. metadata read while pmlogger was adding to it
                if attempt == 2:
                    raise
                time.sleep(0.05)
        rows: list[dict[str, Any]] = []
        if logger.units:
            records = _parse_dump(_run(["pmdumplog", "-x", "-Z", "UTC", str(out), *logger.units]))[
                1
            ]
            rows = _activity_rows(records, logger.units)
        write_activity(outdir / "activity.csv", rows)

    def stop(self) -> list[Exception]:
        """Close every archive at once (SIGINT: pmlogger closes it and exits)."""

        def stop_one(logger: _Logger) -> Exception | None:
            try:
                logger.daemon.stop(sig=signal.SIGINT)
            except ToolFailed as exc:
                return exc
            return None

        loggers, self.loggers = self.loggers, []
        errors = [exc for exc in in_threads(stop_one, loggers) if exc is not None]
        if self._private is not None and self._private.name.startswith("pbench-pmlogger-"):
            shutil.rmtree(self._private, ignore_errors=True)
        self._private = None
        return errors


#: one record's values: metric -> instance name ("" for none) -> value
Values = dict[str, dict[str, float]]
_RECORD = re.compile(r"\w{3} (\w{3}) +(\d{1,2}) (\d\d):(\d\d):(\d\d(?:\.\d*)?) (\d{4}) (.*)")
_PMID = re.compile(r"PMID: \S+ \((.+)\)")
_UNITS = re.compile(r"\s+Semantics: \S+\s+Units: (.+)")
_METRIC = re.compile(r"\s+\S+ \((.+?)\):(?: value (.*))?")
_INST = re.compile(r'\s+inst \[\d+ or "(.*)"\] value (.*)')


def _env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "TZ": "UTC"}


def _run(argv: Sequence[str], timeout: float = 30.0) -> str:
    """A PCP program's output (times in UTC); RuntimeError with its stderr if it fails."""
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=_env(), timeout=timeout, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{argv[0]} exited with status {proc.returncode}: {proc.stderr.strip()[-500:]}"
        )
    return proc.stdout


def _pcp_time(stamp: float) -> str:
    """``@Wed Dec  2 17:00:00.123456 2026``: an absolute time for -S/-T (read in UTC)."""
    moment = datetime.fromtimestamp(stamp, timezone.utc)
    return (
        f"@{_DAYS[moment.weekday()]} {_MONTHS[moment.month - 1]} {moment.day:2d} "
        f"{moment:%H:%M:%S}.{moment.microsecond:06d} {moment.year}"
    )


def _parse_dump(text: str) -> tuple[dict[str, str], list[tuple[float, Values]]]:
    """``pmdumplog -x [-d]`` output: units by metric name, and every record's numeric values."""
    units: dict[str, str] = {}
    records: list[tuple[float, Values]] = []
    described: str | None = None
    values: Values | None = None
    metric = ""
    for line in text.splitlines():
        found = _RECORD.match(line)
        if found:
            values = None
            if "metric" in found[7]:  # not a <mark>
                month = _MONTHS.index(found[1]) + 1
                day = (int(found[6]), month, int(found[2]), int(found[3]), int(found[4]), 0)
                values = {}
                records.append((calendar.timegm(day) + float(found[5]), values))
        elif values is not None and (found := _INST.match(line)):
            with contextlib.suppress(ValueError):
                values.setdefault(metric, {})[found[1]] = float(found[2])
        elif values is not None and (found := _METRIC.match(line)):
            metric = found[1]
            values.setdefault(metric, {})
            if found[2] is not None:
                with contextlib.suppress(ValueError):
                    values[metric][""] = float(found[2])
        elif found := _PMID.match(line):
            described = found[1]
        elif described and (found := _UNITS.match(line)):
            units[described] = found[1].strip()
            described = None
    return units, records


def _first_record(archive: Path) -> dict[str, str] | None:
    """The units of the activity metrics ``archive`` holds, once it holds a record
    of the host's metrics (not only the prologue pmlogger writes first); else None."""
    try:
        units, records = _parse_dump(
            _run(["pmdumplog", "-x", "-d", "-m", "-Z", "UTC", str(archive)])
        )
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None  # not there yet, or a record half written
    if not any(not _prologue(m) for _, values in records for m in values):
        return None
    return {m: units[m] for m in _ACTIVITY_METRICS if m in units}


def _prologue(metric: str) -> bool:
    """A metric of the record pmlogger writes first (and last) about itself."""
    return metric.startswith("pmcd.pmlogger.") or metric in ("pmcd.pid", "pmcd.seqnum")


def _last_record_at(archive: Path, stamp: float, interval: int) -> float | None:
    """The time of the last record at or before ``stamp``, looked for two intervals
    back; None when there is none, or pmdumplog could not say."""
    try:
        dump = _run(
            ["pmdumplog", "-x", "-Z", "UTC", "-S", _pcp_time(stamp - 2 * interval - 1),
             "-T", _pcp_time(stamp), str(archive)]
        )  # fmt: skip
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None
    return max((t for t, _ in _parse_dump(dump)[1] if t <= stamp), default=None)


def _remove_archive(base: Path) -> None:
    volume = re.compile(re.escape(base.name) + r"\.(\d+|index|meta)")
    for path in base.parent.iterdir():
        if volume.fullmatch(path.name):
            path.unlink()


def _activity_rows(
    records: Sequence[tuple[float, Values]], units: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One row per interval between two records, stamped with the later one."""
    return [
        _row(now - then, before, after, now, units)
        for (then, before), (now, after) in zip(records, records[1:])
        if now > then
    ]


def _row(
    span: float, before: Values, after: Values, now: float, units: Mapping[str, str]
) -> dict[str, Any]:
    def value(metric: str, inst: str = "") -> float | None:
        factor, found = _SCALE.get(units.get(metric, "")), after.get(metric, {}).get(inst)
        return None if factor is None or found is None else found * factor

    def rate(metric: str, skip: str | None = None) -> float | None:
        """Summed over the instances (an instance whose counter went back is left out)."""
        factor = _SCALE.get(units.get(metric, ""))
        old, new = before.get(metric, {}), after.get(metric, {})
        deltas = [new[i] - old[i] for i in new if i in old and i != skip and new[i] >= old[i]]
        return None if factor is None or not deltas else sum(deltas) * factor / span

    ncpu, idle = value("hinv.ncpu"), rate("kernel.all.cpu.idle")  # idle in s/s
    if idle is not None:  # busy is all but idle and iowait, as the counters count it
        idle += rate("kernel.all.cpu.wait.total") or 0.0
    total, available = value("mem.physmem"), value("mem.util.available")
    return {
        "timestamp": datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
        "cpu_busy_pct": None
        if idle is None or not ncpu
        else min(100.0, max(0.0, 100.0 * (1 - idle / ncpu))),
        "mem_used_mib": None if total is None or available is None else (total - available) / 1024,
        "disk_kib_s": _sum([rate("disk.all.read_bytes"), rate("disk.all.write_bytes")]),
        "net_kib_s": _sum(
            [
                rate("network.interface.in.bytes", skip="lo"),
                rate("network.interface.out.bytes", skip="lo"),
            ]
        ),
        "load1": value("kernel.all.load", "1 minute"),
    }


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
            collector_programs={"pmlogger": "pcp", "pmlogextract": "pcp", "pmdumplog": "pcp"},
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
