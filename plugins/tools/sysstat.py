"""The sysstat tools: ``vmstat``, ``iostat``, ``mpstat``, ``sar`` and ``pidstat``.

Each tool is one long-running command (a :class:`CommandTool`) whose raw
output lands in ``<outdir>/<tool>-stdout.txt``.  ``postprocess`` turns that
text into CSV files whose first column, ``timestamp``, is ISO-8601; the
commands run with ``TZ=UTC`` so the times they print are UTC.

The parsers are pure functions (text in, :class:`Table` out).  The tools are
stopped by a signal that may land in the middle of a write, so a last line
without its newline is taken as truncated and dropped; repeated header lines
and lines that do not fit the header are skipped.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

from pbench_runner import hookimpl
from pbench_runner.commandtool import CommandTool
from pbench_runner.tools import ToolOption, ToolSpec, flag, positive_int

log = logging.getLogger(__name__)

#: seconds between samples unless ``--interval`` says otherwise
DEFAULT_INTERVAL = 3
#: ISO-8601 offset of the times the tools print (they run with TZ=UTC)
UTC_SUFFIX = "+00:00"
#: sar activity reports written by ``sar`` postprocess: file -> sadf flags
SAR_REPORTS: Mapping[str, Sequence[str]] = {
    "sar-cpu.csv": ("-u", "ALL", "-P", "ALL"),
    "sar-memory.csv": ("-r", "ALL"),
    "sar-disk.csv": ("-d",),
    "sar-network.csv": ("-n", "DEV"),
}

_TIME = re.compile(r"\d{2}:\d{2}:\d{2}")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_US_DATE = re.compile(r"\b(\d{2})/(\d{2})/(\d{4}|\d{2})\b")
_DEVICE = re.compile(r"[\w.:/-]+", re.ASCII)
_CPU_ITEM = re.compile(r"(\d+)(?:-(\d+))?", re.ASCII)
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_SADF_TIME = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})( UTC)?")


# -- option converters -------------------------------------------------------


def _items(text: str, what: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if any(not item for item in items):
        raise ValueError(f"expected a comma-separated list of {what} with no empty items")
    return items


def pid_list(text: str) -> str:
    """Option converter: ``1234,5678`` (process ids, each 1 or more)."""
    items = _items(text, "process ids")
    for item in items:
        if not (item.isascii() and item.isdigit()) or int(item) < 1:
            raise ValueError(f"{item!r} is not a process id (a whole number of 1 or more)")
    return ",".join(str(int(item)) for item in items)


def device_list(text: str) -> str:
    """Option converter: ``sda,nvme0n1`` (block device names)."""
    items = _items(text, "device names")
    for item in items:
        if not _DEVICE.fullmatch(item):
            raise ValueError(f"{item!r} is not a device name like sda or nvme0n1")
    return ",".join(items)


def cpu_list(text: str) -> str:
    """Option converter: ``ALL``, ``ON`` or CPU numbers and ranges like ``0,2-3``."""
    if text.strip().upper() in ("ALL", "ON"):
        return text.strip().upper()
    items = _items(text, "CPU numbers or ranges")
    for item in items:
        match = _CPU_ITEM.fullmatch(item)
        if match is None or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise ValueError(f"{item!r} is not a CPU number or a range like 0-3 (or use ALL)")
    return ",".join(items)


def pattern_list(text: str) -> str:
    """Option converter: ``postgres,pgbench`` (command-name regular expressions)."""
    return ",".join(_items(text, "command name patterns"))


# -- parsing ------------------------------------------------------------------


@dataclass
class Table:
    """Rows parsed from a tool's output; ``columns`` starts with ``timestamp``."""

    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, str]] = field(default_factory=list)

    def header(self, columns: Iterable[str]) -> None:
        """Take a header line's columns (after ``timestamp``; a repeat adds nothing)."""
        for name in ("timestamp", *columns):
            if name not in self.columns:
                self.columns.append(name)

    def add(self, stamp: str, columns: Sequence[str], values: Sequence[str]) -> None:
        """Add a row: ``values`` under ``columns``, and ``stamp`` as its timestamp."""
        self.rows.append({**dict(zip(columns, values)), "timestamp": stamp})

    def write_csv(self, path: Path) -> None:
        """Write a header row and the rows; an empty file when nothing was parsed."""
        with open(path, "w", newline="", encoding="utf-8") as fh:
            if not self.columns:
                return
            writer = csv.DictWriter(fh, fieldnames=self.columns, restval="", lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.rows)


def complete_lines(text: str) -> list[str]:
    """The newline-terminated lines of ``text``; a last line without one is dropped."""
    return text.split("\n")[:-1]


def _numeric(values: Iterable[str]) -> bool:
    return all(value == "-" or _NUMBER.fullmatch(value) for value in values)


class _Clock:
    """Turns the ``HH:MM:SS`` times of one report into ISO-8601 timestamps.

    The date comes from the banner (``Linux 6.1 (host) 2024-05-01 ...``) and
    moves on a day when the time jumps back by over twelve hours (midnight).
    """

    def __init__(self, suffix: str) -> None:
        self.day: date | None = None
        self.suffix = suffix
        self.last: int | None = None

    def banner(self, line: str) -> None:
        iso, us = _ISO_DATE.search(line), _US_DATE.search(line)
        with contextlib.suppress(ValueError):  # a date-like text that is no date
            if self.day is None and iso:
                self.day = date(int(iso[1]), int(iso[2]), int(iso[3]))
            elif self.day is None and us:
                year = int(us[3]) + (2000 if len(us[3]) == 2 else 0)
                self.day = date(year, int(us[1]), int(us[2]))

    def stamp(self, hms: str) -> str:
        hours, minutes, seconds = (int(part) for part in hms.split(":"))
        now = hours * 3600 + minutes * 60 + seconds
        if self.day is not None and self.last is not None and self.last - now > 12 * 3600:
            self.day += timedelta(days=1)
        self.last = now
        prefix = f"{self.day.isoformat()}T" if self.day is not None else ""
        return f"{prefix}{hms}{self.suffix}"


def _iso_datetime(text: str) -> str | None:
    """``2024-05-01T10:00:00+0000`` (iostat -t with S_TIME_FORMAT=ISO) in ISO-8601 form."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").isoformat()
    except ValueError:
        return None


def parse_vmstat(text: str) -> Table:
    """Parse ``vmstat -t -n`` output: one row per sample, the timestamp from ``-t``.

    vmstat's first report is the average since boot, not a sample of the run:
    it is left out (it stays in the raw output).
    """
    table = Table()
    columns: list[str] = []
    suffix = ""
    since_boot = True
    for line in complete_lines(text):
        tokens = line.split()
        if not tokens or tokens[0] == "procs":
            continue
        if tokens[0] == "r":
            columns, zone = tokens[:-1], tokens[-1]
            suffix = UTC_SUFFIX if zone in ("UTC", "GMT") else ""
            table.header(columns)
            continue
        if not columns or len(tokens) != len(columns) + 2:
            continue
        day, hms = tokens[-2], tokens[-1]
        if _ISO_DATE.fullmatch(day) and _TIME.fullmatch(hms) and _numeric(tokens[:-2]):
            if since_boot:
                since_boot = False
                continue
            table.add(f"{day}T{hms}{suffix}", columns, tokens)
    return table


def parse_iostat(text: str) -> Table:
    """Parse ``iostat -x -t`` output: one row per device per report."""
    table = Table()
    columns: list[str] = []
    stamp = ""
    in_devices = False
    for line in complete_lines(text):
        tokens = line.split()
        if not tokens or tokens[0] == "avg-cpu:":
            in_devices = False
            continue
        when = _iso_datetime(line.strip())
        if when is not None:
            stamp, in_devices = when, False
        elif tokens[0] in ("Device", "Device:"):
            columns = ["Device", *tokens[1:]]
            table.header(columns)
            in_devices = True
        elif in_devices and len(tokens) == len(columns) and _numeric(tokens[1:]):
            table.add(stamp, columns, tokens)
    return table


def parse_mpstat(text: str, suffix: str = UTC_SUFFIX) -> Table:
    """Parse ``mpstat -P ...`` output: one row per CPU per report, averages skipped.

    ``suffix`` is the UTC offset of the printed times (the tools run with TZ=UTC).
    """
    table = Table()
    columns: list[str] = []
    clock = _Clock(suffix)
    for line in complete_lines(text):
        tokens = line.split()
        if not tokens or tokens[0] == "Average:":
            continue
        if not _TIME.fullmatch(tokens[0]):
            clock.banner(line)
            continue
        if len(tokens) > 1 and tokens[1] == "CPU":
            columns = tokens[1:]
            table.header(columns)
            clock.stamp(tokens[0])
        elif columns and len(tokens) == len(columns) + 1 and _numeric(tokens[2:]):
            table.add(clock.stamp(tokens[0]), columns, tokens[1:])
    return table


def parse_pidstat(text: str, suffix: str = UTC_SUFFIX) -> Table:
    """Parse ``pidstat -h`` output (``-H`` epoch times or ``HH:MM:SS``): one row per task."""
    table = Table()
    columns: list[str] = []
    clock = _Clock(suffix)
    for line in complete_lines(text):
        tokens = line.split()
        if not tokens or tokens[0] == "Average:":
            continue
        if tokens[0] == "#":
            if len(tokens) > 2 and tokens[1] == "Time":
                columns = tokens[2:]
                table.header(columns)
            continue
        if _TIME.fullmatch(tokens[0]):
            stamp = clock.stamp(tokens[0])
        elif tokens[0].isascii() and tokens[0].isdigit():
            stamp = datetime.fromtimestamp(int(tokens[0]), tz=timezone.utc).isoformat()
        else:
            clock.banner(line)
            continue
        width = len(columns)
        if not columns or len(tokens) < width + 1 or not _numeric(tokens[1:width]):
            continue
        values = [*tokens[1:width], " ".join(tokens[width:])]  # a command may hold spaces
        table.add(stamp, columns, values)
    return table


def parse_sadf(text: str) -> Table:
    """Parse ``sadf -d`` output (``;``-separated, header after ``# ``); timestamp first."""
    table = Table()
    columns: list[str] = []
    for line in complete_lines(text):
        if line.startswith("# ") and ";" in line:
            columns = line[2:].split(";")
            table.header(columns)
            continue
        fields = line.split(";")
        if line.startswith("#") or not columns or len(fields) != len(columns):
            continue  # comments, restart marks, text before any header
        stamp = dict(zip(columns, fields)).get("timestamp", "")
        match = _SADF_TIME.fullmatch(stamp)
        if match:
            stamp = f"{match[1]}T{match[2]}{UTC_SUFFIX if match[3] else ''}"
        table.add(stamp, columns, fields)
    return table


# -- the tools ------------------------------------------------------------------


class SysstatCommand(CommandTool):
    """A :class:`CommandTool` whose ``postprocess`` writes ``<tool>.csv``."""

    ENV: Mapping[str, str] = {**CommandTool.ENV, "TZ": "UTC"}

    #: turns the raw output into a table
    parser: ClassVar[staticmethod[[str], Table]]

    def raw_text(self) -> str:
        """The raw output so far, or '' when there is none."""
        try:
            return Path(self.stdout_path).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def postprocess(self) -> None:
        """Write ``<tool>.csv`` from the raw output (header-less and empty if none)."""
        self.ctx.outdir.mkdir(parents=True, exist_ok=True)
        self.parser(self.raw_text()).write_csv(self.ctx.outdir / f"{self.ctx.tool}.csv")


class VmstatTool(SysstatCommand):
    """``vmstat -t -n INTERVAL``.

    Keeps SIGTERM: vmstat has no SIGINT handler, and a SIGINT ignored by a
    background parent would be ignored by vmstat as well.
    """

    parser = staticmethod(parse_vmstat)

    def argv(self) -> Sequence[str]:
        return ["vmstat", "-t", "-n", str(self.interval())]


class IostatTool(SysstatCommand):
    """``iostat -x -t -y [DEVICE...] INTERVAL``; stops on SIGTERM (each report is flushed)."""

    parser = staticmethod(parse_iostat)

    def argv(self) -> Sequence[str]:
        devices = str(self.ctx.options.get("devices") or "")
        return ["iostat", "-x", "-t", "-y", *filter(None, devices.split(",")), str(self.interval())]


class MpstatTool(SysstatCommand):
    """``mpstat -u -P CPUS INTERVAL``; stops on SIGTERM (each report is flushed)."""

    parser = staticmethod(parse_mpstat)

    def argv(self) -> Sequence[str]:
        cpus = str(self.ctx.options.get("cpus") or "ALL")
        return ["mpstat", "-u", "-P", cpus, str(self.interval())]


class PidstatTool(SysstatCommand):
    """``pidstat -h -H -u -r -d -w [-t] [-p PIDS|ALL] [-C REGEX] INTERVAL``.

    Without ``--pids`` or ``--patterns`` only tasks active in an interval are
    reported; with ``--patterns`` every matching task is (``-p ALL``).
    """

    parser = staticmethod(parse_pidstat)

    def argv(self) -> Sequence[str]:
        opts = self.ctx.options
        argv = ["pidstat", "-h", "-H", "-u", "-r", "-d", "-w"]
        if opts.get("threads"):
            argv.append("-t")
        pids = str(opts.get("pids") or "")
        patterns = str(opts.get("patterns") or "")
        if pids or patterns:
            argv += ["-p", pids or "ALL"]
        if patterns:
            argv += ["-C", "|".join(patterns.split(","))]
        return [*argv, str(self.interval())]


class SarTool(SysstatCommand):
    """``sar -o <outdir>/sar.data INTERVAL``: every activity in binary (sadc ``-S XALL``).

    Stopped with SIGINT, sar's own way to end: sar and its sadc exit 0 and the
    text output gets its averages.  ``postprocess`` runs ``sadf -d`` once per
    entry of :data:`SAR_REPORTS`.
    """

    stop_signal = signal.SIGINT

    @property
    def data_path(self) -> Path:
        """The binary data file sadc writes."""
        return self.ctx.outdir / "sar.data"

    def argv(self) -> Sequence[str]:
        return ["sar", "-o", str(self.data_path), str(self.interval())]

    def start(self) -> Mapping[str, Any] | None:
        # sadc appends to an existing file; a stale one would mix two runs.
        self.data_path.unlink(missing_ok=True)
        return super().start()

    def postprocess(self) -> None:
        """Write one CSV per :data:`SAR_REPORTS` entry (empty when there is no data)."""
        self.ctx.outdir.mkdir(parents=True, exist_ok=True)
        problems: list[str] = []
        for name, flags in SAR_REPORTS.items():
            text = self._sadf(flags, problems) if self.data_path.exists() else ""
            parse_sadf(text).write_csv(self.ctx.outdir / name)
        if problems:
            log.warning("sar on %s: sadf failed: %s", self.ctx.host, "; ".join(problems))
            (self.ctx.outdir / "sadf-stderr.txt").write_text("\n".join(problems) + "\n")

    def _sadf(self, flags: Sequence[str], problems: list[str]) -> str:
        argv = ["sadf", "-d", str(self.data_path), "--", *flags]
        env = {**os.environ, **self.ENV}
        try:
            done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            problems.append(f"{' '.join(argv)}: {exc}")
            return ""
        if done.returncode != 0 or done.stderr.strip():
            problems.append(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout


def _spec(name: str, summary: str, factory: type[SysstatCommand], *options: ToolOption) -> ToolSpec:
    programs = {name: "procps" if name == "vmstat" else "sysstat"}
    if name == "sar":
        programs["sadf"] = "sysstat"
    interval = ToolOption("interval", positive_int, DEFAULT_INTERVAL, "seconds between samples")
    return ToolSpec(name, "transient", summary, factory, (interval, *options), programs)


@hookimpl
def pbench_tool_specs() -> Sequence[ToolSpec]:
    """The five sysstat tools, each with ``--interval`` (seconds, default 3)."""
    return [
        _spec("vmstat", "virtual memory, CPU and run queue summary (vmstat)", VmstatTool),
        _spec(
            "iostat",
            "extended block device statistics (iostat -x)",
            IostatTool,
            ToolOption("devices", device_list, None, "only these devices, e.g. sda,sdb"),
        ),
        _spec(
            "mpstat",
            "per-CPU utilisation (mpstat -P)",
            MpstatTool,
            ToolOption("cpus", cpu_list, "ALL", "ALL, ON, or CPUs like 0,2-3"),
        ),
        _spec("sar", "all system activity recorded by sar, with CSV reports", SarTool),
        _spec(
            "pidstat",
            "per-task CPU, memory, I/O and context switches (pidstat)",
            PidstatTool,
            ToolOption("pids", pid_list, None, "only these process ids, e.g. 1234,5678"),
            ToolOption("patterns", pattern_list, None, "only tasks whose name matches a regex"),
            ToolOption("threads", flag, False, "also report each thread"),
        ),
    ]
