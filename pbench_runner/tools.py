"""The types a tool plugin hands to pbench_runner.

A tool plugin answers :func:`~pbench_runner.hookspecs.pbench_tool_specs` with
one :class:`ToolSpec` per tool it provides.  The spec says what the tool is
(transient or persistent), which options it takes and how they are checked,
which programs it needs on a host (and which Debian package holds each), and
how to build the object that runs it on a Tool Meister: a :class:`Tool`.

A :class:`Tool` has a pyperf-style lifecycle: construct = check, ``start`` =
begin collecting into ``ctx.outdir``, ``stop`` = end collecting, and
``postprocess`` = turn raw output into machine-readable files before the
meister tars ``outdir`` and sends it to the Tool Data Sink.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Union

from pbench_runner.errors import ToolStoreError

OptionValue = Union[str, int, float, bool]
ToolKind = Literal["transient", "persistent"]


def positive_int(text: str) -> int:
    """Option converter: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError(f"must be 1 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    """Option converter: a number greater than 0."""
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be greater than 0, not {text}")
    return value


def flag(text: str) -> bool:
    """Option converter: ``--opt`` alone, or ``--opt=yes|no|true|false|1|0``."""
    lowered = text.lower()
    if lowered in ("", "1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off"):
        return False
    raise ValueError(f"expected yes or no, not {text!r}")


@dataclass(frozen=True)
class ToolOption:
    """One ``--name=value`` option of a tool."""

    name: str
    convert: Callable[[str], OptionValue]
    default: OptionValue | None = None
    help: str = ""
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolContext:
    """What a tool instance on a meister gets to know about its run."""

    host: str
    tool: str
    group: str
    options: Mapping[str, OptionValue]
    outdir: Path
    #: the address a persistent tool's server listens on, for the sink to reach
    address: str = "127.0.0.1"


class Tool(Protocol):
    """A running instance of a tool on one host for one directory."""

    def start(self) -> Mapping[str, Any] | None:
        """Start collecting into ``ctx.outdir``; return facts for the sink (a port)."""

    def stop(self) -> None:
        """Stop collecting; must not raise for a tool that already died."""

    def postprocess(self) -> None:
        """Write machine-readable forms of the raw data into ``ctx.outdir``."""


class PersistentTool(Tool, Protocol):
    """A persistent tool's host side (pmcd, node_exporter): it runs from
    ``tool-meister-start`` to ``tool-meister-stop``, across every sample."""

    def check(self) -> None:
        """Raise :class:`~pbench_runner.commandtool.ToolFailed` if it has died.

        Called as every sample stops, so that a sample during which the tool
        died is marked.
        """


ToolFactory = Callable[[ToolContext], Tool]


@dataclass(frozen=True)
class Target:
    """One host's persistent tool, as its meister reported it at start."""

    host: str
    options: Mapping[str, OptionValue]
    #: what the tool's ``start`` returned on that host (its address and port)
    facts: Mapping[str, Any]

    @property
    def endpoint(self) -> str:
        """``address:port`` of the host's tool, as the sink reaches it."""
        return f"{self.facts.get('address', '127.0.0.1')}:{self.facts['port']}"


@dataclass(frozen=True)
class CollectorContext:
    """What a collector on the Tool Data Sink gets to know."""

    tool: str
    group: str
    #: ``<result>/tools-<group>``: the whole run's data, per host in ``<host>/<tool>/``
    tool_dir: Path
    #: every host that runs the tool, in host order
    targets: Sequence[Target]


@dataclass(frozen=True)
class SampleWindow:
    """When one sample ran, in seconds since the epoch.

    ``start`` and ``stop`` are read on the controller (the sink's clock: the
    sink runs there); ``hosts`` holds the same two instants as each host's
    meister read them on its own clock, right where it took its counter
    snapshots.  ``offsets`` is each host's clock minus the controller's,
    measured when the meisters started.
    """

    start: float
    stop: float
    hosts: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    offsets: Mapping[str, float] = field(default_factory=dict)

    def on(self, host: str) -> tuple[float, float]:
        """The window on ``host``'s clock (the controller's, shifted, if it did not say)."""
        if host in self.hosts:
            return self.hosts[host]
        offset = self.offsets.get(host, 0.0)
        return self.start + offset, self.stop + offset

    def to_json(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "stop": self.stop,
            "hosts": {h: list(w) for h, w in sorted(self.hosts.items())},
            "offsets": dict(sorted(self.offsets.items())),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SampleWindow:
        return cls(
            start=float(data["start"]),
            stop=float(data["stop"]),
            hosts={h: (float(w[0]), float(w[1])) for h, w in data.get("hosts", {}).items()},
            offsets={h: float(o) for h, o in data.get("offsets", {}).items()},
        )


class Collector(Protocol):
    """Runs on the Tool Data Sink for the whole session while a persistent
    tool runs on the hosts.

    pmlogger records each host's pmcd; Prometheus scrapes every host's
    node_exporter.  As pbench's Tool Meister does, persistent tools start
    once, when the meisters start (``tool-meister-start``), and stop once,
    at ``tool-meister-stop``; each sample then takes its window of their data
    with :meth:`slice`.
    """

    def start(self) -> Sequence[Exception] | None:
        """Begin recording every target, for the whole run, into ``ctx.tool_dir``.

        Called once every host has started its persistent tools.  Return only
        when the first record of every target is taken (a sample that starts
        right after must be covered).  Return the errors of targets that could
        not be recorded (the others keep recording); raise only when nothing
        was started.
        """

    def slice(self, window: SampleWindow, tool_dir: Path) -> Sequence[Exception] | None:
        """Write each target's data for ``window`` into ``tool_dir/<host>/<tool>/``.

        ``tool_dir`` is the sample's ``tools-<group>``.  Called once the
        sample's tools have stopped, with the recording still going; what is
        written starts at the last record at or before the window's start.
        Return the errors of targets whose recorder has died; must not raise.
        """

    def stop(self) -> Sequence[Exception] | None:
        """Stop recording and leave the whole run's data readable, within a bounded time.

        Return the errors of targets whose recording failed (a recorder that
        had died); must not raise for a dead one.
        """


CollectorFactory = Callable[[CollectorContext], Collector]


@dataclass(frozen=True)
class ToolSpec:
    """What a plugin says about one tool it provides."""

    name: str
    kind: ToolKind
    summary: str
    factory: ToolFactory
    options: Sequence[ToolOption] = ()
    #: program name -> Debian package that provides it
    programs: Mapping[str, str] = field(default_factory=dict)
    aliases: Sequence[str] = ()
    #: persistent tools: what records them on the Tool Data Sink
    collector: CollectorFactory | None = None
    #: programs the collector needs on the controller (program -> package)
    collector_programs: Mapping[str, str] = field(default_factory=dict)

    def option(self, name: str) -> ToolOption | None:
        return next((o for o in self.options if o.name == name), None)

    def validate(self, raw: Mapping[str, str]) -> dict[str, OptionValue]:
        """Check raw ``--name=value`` strings; return converted values with defaults.

        Raises :class:`ToolStoreError` naming the tool and the option.
        """
        values: dict[str, OptionValue] = {}
        for name, text in raw.items():
            opt = self.option(name)
            if opt is None:
                known = ", ".join(f"--{o.name}" for o in self.options) or "none"
                raise ToolStoreError(
                    f"tool {self.name!r} has no option --{name} (its options: {known})"
                )
            if opt.choices and text not in opt.choices:
                raise ToolStoreError(
                    f"tool {self.name!r}: --{name}={text} is not one of {', '.join(opt.choices)}"
                )
            try:
                values[name] = opt.convert(text)
            except ValueError as exc:
                raise ToolStoreError(f"tool {self.name!r}: --{name}={text}: {exc}") from exc
        for opt in self.options:
            if opt.name not in values and opt.default is not None:
                values[opt.name] = opt.default
        return values

    def missing_programs(self) -> dict[str, str]:
        """Programs this host lacks to run the tool, mapped to the package to install."""
        return _missing(self.programs)

    def missing_collector_programs(self) -> dict[str, str]:
        """Programs the controller lacks to record the tool (its collector)."""
        return _missing(self.collector_programs)


def _missing(programs: Mapping[str, str]) -> dict[str, str]:
    return {prog: pkg for prog, pkg in programs.items() if shutil.which(prog) is None}


def parse_tool_options(args: Sequence[str]) -> dict[str, str]:
    """Turn ``["--interval=3", "--all"]`` into ``{"interval": "3", "all": ""}``."""
    raw: dict[str, str] = {}
    for arg in args:
        if not arg.startswith("--") or arg == "--":
            raise ToolStoreError(f"tool options look like --name=value, not {arg!r}")
        name, _, value = arg[2:].partition("=")
        if not name:
            raise ToolStoreError(f"tool option {arg!r} has no name")
        raw[name] = value
    return raw
