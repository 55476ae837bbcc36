"""One run and its samples: the protocol every verb follows.

::

    with Run(options) as run:          # result dir, metadata, tool meisters (and their
        it = run.iteration("1-x")      # persistent tools), pbench_run_started, sysinfo beg
        with run.sample(it, 1) as rec:  # start-tools, pbench_sample_started
            ...                         # the workload; its runner fills rec
                                        # stop-tools, pbench_tools_stopped, send-tools,
                                        # per-host summary, result.json, pbench_sample_finished
    # sysinfo end, tool-meister-stop, metadata, result.json, pbench_run_finished

``pbench user-benchmark`` and ``pbench run`` are thin clients of it; so is the
session agent behind the lifecycle verbs, which calls :class:`SampleActions`
one verb at a time.  Tools are always stopped and their data sent, whatever
happened to the workload.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from pbench_runner import bus, strictjson
from pbench_runner.config import Deadlines
from pbench_runner.controller import Controller
from pbench_runner.errors import (
    ActionError,
    Interrupted,
    PbenchError,
    UsageError,
)
from pbench_runner.exitcodes import ExitCode, for_error
from pbench_runner.hostsummary import sample_hosts
from pbench_runner.machine import commit_info, machine_info
from pbench_runner.pluginmanager import broadcast, get_plugin_manager
from pbench_runner.records import Iteration, SampleRecord, group_intervals
from pbench_runner.remote.options import RemoteOptions
from pbench_runner.resultdir import RunMetadata, make_result_dir, missing_samples
from pbench_runner.session import SessionInfo
from pbench_runner.tools import SampleWindow
from pbench_runner.toolstore import ToolGroup, ToolStore


@dataclass
class RunOptions:
    """How a run is set up; the same for every verb."""

    script: str
    run_dir: Path
    group: str = "default"
    config: str = ""
    sysinfo: str = "default"
    plugins: Sequence[str] = ()
    deadlines: Deadlines = field(default_factory=Deadlines)
    remote: RemoteOptions | None = None
    on_host_failure: str = "abort"
    #: an existing directory to use (the lifecycle verbs' ``--dir``); else a new one
    result_dir: Path | None = None
    #: write metadata.log/json, tool-registration/ and result.json (not for --dir)
    records: bool = True
    #: also write the run's results to this file
    json_path: Path | None = None
    run_id: str | None = None
    #: called with the session as it grows (the session agent saves it)
    on_spawn: Callable[[SessionInfo], object] | None = None


def _iso(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp).isoformat(timespec="microseconds")


class Run:
    """One run: its result directory, tool sessions, hooks, problems and exit status."""

    def __init__(self, opts: RunOptions, say: Callable[[str], None] | None = None) -> None:
        self.opts = opts
        self.say = say or (lambda text: None)
        self.pm = get_plugin_manager(opts.plugins)
        self.group: ToolGroup = ToolStore(opts.run_dir).load(opts.group)
        self.result_dir = Path()
        self.meta: RunMetadata | None = None
        self.ctl: Controller | None = None
        #: sessions of other tool groups, started when a benchmark asks
        self.others: dict[str, Controller] = {}
        self.iterations: list[Iteration] = []
        self.problems: list[str] = []
        self.run_id = opts.run_id or bus.new_run_id()
        #: the code the workload earned (a command's status; 1: a benchmark failed)
        self.workload_status = 0
        self.exit_status: int = ExitCode.OK
        #: a host was lost and the run stops without it (``--on-host-failure=abort``)
        self.host_lost = False
        self.interrupted: Interrupted | None = None
        #: the error that ended the run, if one did
        self._error: BaseException | None = None
        #: a sample's tool phase, for progress displays
        self.on_phase: Callable[[str], None] = lambda phase: None
        self._opened = self._closed = False

    # --- the run ------------------------------------------------------------------

    def __enter__(self) -> Run:
        return self if self._opened else self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return self.close(exc)

    def open(self) -> Run:
        """The result directory, then the tool meisters; ``pbench_run_started``.

        If anything fails, the run is closed (its records say why) and the
        error raised.
        """
        self._opened = True
        try:
            return self._open()
        except BaseException as exc:
            self.close(exc)
            raise

    def _open(self) -> Run:
        opts = self.opts
        if opts.result_dir is not None:
            self.result_dir = opts.result_dir
            self.result_dir.mkdir(parents=True, exist_ok=True)
        else:
            self.result_dir = make_result_dir(opts.run_dir / "results", opts.script, opts.config)
        self.meta = RunMetadata(
            name=self.result_dir.name, script=opts.script, config=opts.config, group=self.group
        )
        if opts.records:
            # what compare checks two runs against: the machine, the benchmarked commit
            self.meta.extra["machine_info"] = machine_info()
            self.meta.extra["commit_info"] = commit_info(Path.cwd())
            reg = self.result_dir / "tool-registration"
            reg.mkdir(exist_ok=True)
            text = json.dumps(self.group.to_json(), indent=2)
            (reg / f"{self.group.name}.json").write_text(text)
            self.meta.write(self.result_dir)
        hosts: list[str] = []
        if self.group.empty:
            self.say(
                f"no tools are registered in group {self.group.name!r}: the benchmark "
                "runs, but no tool data will be collected"
            )
        else:
            hosts = sorted(self.group.hosts)
            self.say(f"starting tool meisters for group {self.group.name!r} on {', '.join(hosts)}")
            self.ctl = self._start_controller(self.group, "tm", self.run_id)
            self.meta.run_id = self.run_id
            self.meta.extra["clock_offsets"] = self.ctl.clock_offsets
            self._write_meta()
        self._broadcast("pbench_run_started", result_dir=self.result_dir, hosts=hosts)
        self.collect_sysinfo("beg", self.opts.sysinfo)
        return self

    def _start_controller(self, group: ToolGroup, tm: str, run_id: str | None) -> Controller:
        ctl = Controller(
            group,
            self.result_dir / tm,
            deadlines=self.opts.deadlines,
            plugins=self.opts.plugins,
            result_dir=self.result_dir,
            run_id=run_id,
            remote=self.opts.remote,
            on_host_failure=self.opts.on_host_failure,
            on_spawn=self.opts.on_spawn,
        )
        if tm == "tm":
            self.ctl = ctl  # stopped by close() even if it fails half-way
        else:
            self.others[group.name] = ctl
        return ctl.start()

    def close(self, exc: BaseException | None = None) -> bool:
        """Sysinfo (end), every tool session stopped, the records; ``pbench_run_finished``.

        Every step runs whatever happened before it, an interruption during
        the close included.  Returns True when ``exc`` is one of ours (a usage
        or infrastructure error, an interruption), which it has turned into
        the exit status.
        """
        if self._closed:
            return False
        self._closed = True
        failure: BaseException | None = exc
        if exc is not None:
            self._failed(exc)
        if exc is None and self._opened:
            try:
                self.collect_sysinfo("end", self.opts.sysinfo)
            except BaseException as err:  # the rest must still happen
                self._failed(err)
                failure = failure or err
        for ctl in self.controllers():
            try:
                self.problems.extend(ctl.stop(quiet=failure is not None))
            except BaseException as err:  # an interrupt: stop() is idempotent
                self._failed(err)
                ctl.stop(quiet=True)
        for it in self.iterations:
            if not it.finished:
                it.finish()
        self._write_records()
        if self.meta is not None:
            self._broadcast(
                "pbench_run_finished", result_dir=self.result_dir, exit_status=self.exit_status
            )
        return isinstance(exc, PbenchError)

    def _failed(self, exc: BaseException) -> None:
        """Record what ended the run: an interruption, or a failure's message."""
        if isinstance(exc, Interrupted):
            if self.interrupted is None:
                self.interrupted = exc
                self.say(f"{exc}; tools stopped, partial results kept")
        elif isinstance(exc, KeyboardInterrupt):
            if self.interrupted is None:
                self.interrupted = Interrupted(signal.SIGINT)
        else:
            text = str(exc) if isinstance(exc, PbenchError) else f"{type(exc).__name__}: {exc}"
            if not any(text in problem for problem in self.problems):  # said once
                self.problems.append(text)
            self._error = self._error or exc

    def _status(self) -> int:
        """The exit status, from what happened (after every problem is known)."""
        if self.interrupted is not None:
            return for_error(self.interrupted)
        if self._error is not None:
            return for_error(self._error)
        if self.problems:
            return ExitCode.INFRASTRUCTURE_ERROR
        return self.workload_status

    @property
    def opened(self) -> bool:
        """Whether :meth:`open` was called (the run may have failed to start)."""
        return self._opened

    @property
    def infrastructure(self) -> bool:
        """A host or a tool failed (the run exits 4 unless something worse happened)."""
        return bool(self.problems)

    def controllers(self) -> list[Controller]:
        return [c for c in [self.ctl, *self.others.values()] if c is not None]

    def _write_meta(self) -> None:
        if self.meta is not None and self.opts.records:
            self.meta.write(self.result_dir)

    def _write_records(self) -> None:
        if self.meta is None:
            self.exit_status = self._status()
            return
        missing = missing_samples(self.result_dir, *(c.missing for c in self.controllers()))
        for host, samples in missing.items():
            self.problems.append(
                f"host {host} was lost: its tool data is missing for {', '.join(samples)}"
            )
        if missing:
            self.meta.extra["missing_data"] = missing
        self.exit_status = self._status()
        self.meta.end = dt.datetime.now()
        if self.interrupted is not None:
            self.meta.status = "interrupted"
        elif self.exit_status == ExitCode.REGRESSION:
            self.meta.status = "regressed"
        else:
            failed = self.exit_status != ExitCode.OK or self.problems
            self.meta.status = "failed" if failed else "ok"
        self.meta.iterations = [it.meta() for it in self.iterations]
        self.meta.extra["problems"] = self.problems
        if not self.opts.records:
            return
        self.meta.write(self.result_dir)
        result = {"run": self.meta.to_json(), "iterations": [i.to_json() for i in self.iterations]}
        text = strictjson.dumps(result, indent=2, default=str) + "\n"
        (self.result_dir / "result.json").write_text(text)
        if self.opts.json_path is not None:
            self.opts.json_path.write_text(text)

    def _broadcast(self, hook: str, **kwargs: Any) -> None:
        # A broken observer is reported, but it is not the run's failure.
        for warning in broadcast(self.pm, hook, run_id=self.run_id, **kwargs):
            self.say(f"warning: {warning}")

    # --- tool sessions and sysinfo -----------------------------------------------------

    def controller(self, group: str | None = None) -> Controller | None:
        """The tool session of ``group``: the run's own, or one started on first use."""
        if group is None or group == self.group.name:
            return self.ctl
        if group not in self.others:
            tools = ToolStore(self.opts.run_dir).load(group)
            if tools.empty:
                raise UsageError(
                    f"the benchmark asks for tool group {group!r}, which has no tools "
                    f"registered (run dir {self.opts.run_dir})"
                )
            self._start_controller(tools, f"tm-{group}", None)
        return self.others[group]

    def collect_sysinfo(
        self, when: str, selection: str, base: Path | None = None, group: str | None = None
    ) -> None:
        """Sysinfo of every host of the run (or of ``group``) into ``<base>/sysinfo/<when>/``."""
        ctl = self.controller(group)
        if ctl is None or selection == "none":
            return
        self.say(f"collecting sysinfo ({when})")
        self.problems.extend(ctl.collect_sysinfo(when, selection, base=base))

    # --- samples ---------------------------------------------------------------------

    def iteration(
        self, name: str, *, nodeid: str = "", command: list[str] | None = None
    ) -> Iteration:
        it = Iteration(name, self.result_dir / name, nodeid=nodeid, command=command)
        self.iterations.append(it)
        return it

    def actions(
        self, directory: Path, number: int, group: str | None = None, tools: bool = True
    ) -> SampleActions:
        """The tool actions of one sample in ``directory``, to be called one by one."""
        directory.mkdir(parents=True, exist_ok=True)
        record = SampleRecord(sample=number, directory=directory)
        return SampleActions(self, self.controller(group) if tools else None, record)

    @contextmanager
    def sample(
        self,
        iteration: Iteration,
        number: int,
        *,
        group: str | None = None,
        tools: bool = True,
        kind: str = "sample",
    ) -> Iterator[SampleRecord]:
        """start → yield → stop → send; whatever the workload did, tools stop and
        their data is kept.  A warm-up (``kind="warmup"``) runs without tools or
        hooks and is not one of the iteration's samples."""
        warmup = kind == "warmup"
        directory = iteration.directory / f"{kind}{number}"
        actions = self.actions(directory, number, group, tools=tools and not warmup)
        actions.quiet = warmup
        record = actions.record
        record.kind = kind
        if not warmup:
            iteration.samples.append(record)
        failure: BaseException | None = None
        try:
            actions.start()
            self.on_phase("running")
            yield record
        except BaseException as exc:
            failure = exc
            record.fail(exc)
        for step in (actions.stop, actions.send):  # every path: stop, and keep the data
            try:
                step()
            except BaseException as exc:  # raised below, after the rest
                if failure is None:
                    failure = exc
                    record.fail(exc)
                else:
                    self.problems.append(f"{directory.name}: {exc}")
        actions.finish()
        if failure is not None:
            raise failure


class SampleActions:
    """One sample's tool actions in the protocol's order, each with its hooks.

    :meth:`Run.sample` calls them around a workload; the session agent calls
    them one verb at a time (start-tools, stop-tools, send-tools).
    """

    def __init__(self, run: Run, ctl: Controller | None, record: SampleRecord) -> None:
        self.run, self.ctl, self.record = run, ctl, record
        self.quiet = False
        self.group = ctl.group.name if ctl is not None else run.group.name
        record.tools = ctl.group.name if ctl is not None else None
        self._start = self._stop = 0.0
        self._hosts_start: dict[str, float] = {}
        self._hosts_stop: dict[str, float] = {}

    @property
    def directory(self) -> Path:
        return self.record.directory

    def _hook(self, hook: str, **kwargs: Any) -> None:
        if not self.quiet:
            self.run._broadcast(hook, sample_dir=self.directory, group=self.group, **kwargs)

    def _act(self, verb: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """One action; a tool's or a host's failure marks the sample, the run goes on."""
        assert self.ctl is not None
        try:
            return self.ctl.run_action(verb, self.directory, args).info
        except ActionError as exc:
            self.record.tool_problems.append(str(exc))
            self.run.problems.append(f"{self.directory.name}: {exc}")
            if self.ctl.missing and self.run.opts.on_host_failure == "abort":
                self.run.host_lost = True
            if verb == "start":
                raise  # a tool that cannot start fails the sample
            return {}

    def start(self) -> None:
        if self.ctl is not None:
            self.run.on_phase("start-tools")
            info = self._act("start")
            self._hosts_start = _instants(info, "window_start")
        self._start = time.time()
        self.record.start = _iso(self._start)
        self._hook("pbench_sample_started")

    def stop(self) -> None:
        self._stop = time.time()
        self.record.end = _iso(self._stop)
        if self.ctl is not None:
            self.run.on_phase("stop-tools")
            self._hosts_stop = _instants(self._act("stop"), "window_stop")
        self._hook("pbench_tools_stopped")

    def window(self) -> SampleWindow:
        hosts = {
            h: (self._hosts_start[h], self._hosts_stop[h])
            for h in self._hosts_start
            if h in self._hosts_stop
        }
        offsets = self.ctl.clock_offsets if self.ctl is not None else {}
        return SampleWindow(self._start, self._stop, hosts, offsets)

    def send(self) -> None:
        if self.ctl is None:
            return
        self.run.on_phase("send-tools")
        if not (self._start and self._stop):  # its tools never started: no window
            self._act("send")
            return
        window = self.window()
        self.record.window = window.to_json()
        self._act("send", {"window": window.to_json()})
        ctl = self.ctl
        self.record.hosts = sample_hosts(
            self.directory,
            ctl.group.name,
            windows={h: window.on(h) for h in ctl.hosts},
            intervals=group_intervals({h: ctl.group.hosts[h].tools for h in ctl.hosts}),
        )

    def finish(self) -> None:
        """The record is written; ``pbench_sample_finished``."""
        if not self.quiet and self.run.opts.records:
            self.record.write()
        self._hook("pbench_sample_finished", result=self.record.to_json())


def _instants(info: dict[str, Any], key: str) -> dict[str, float]:
    return {h: float(i[key]) for h, i in info.items() if isinstance(i, dict) and key in i}
