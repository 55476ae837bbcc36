"""``pbench user-benchmark``: the whole sequence diagram around one command.

tool-meister-start → sysinfo (beg) → for every sample: start-tools → the
command → stop-tools → send-tools → sysinfo (end) → tool-meister-stop.
Tools are always stopped and their data sent, whatever happened to the
command; an interrupted run keeps what it collected.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pbench_runner import procs, strictjson
from pbench_runner.config import Deadlines
from pbench_runner.controller import Controller
from pbench_runner.errors import (
    ActionError,
    InfrastructureError,
    Interrupted,
    PbenchError,
    UsageError,
)
from pbench_runner.exitcodes import ExitCode
from pbench_runner.interrupts import interruptible
from pbench_runner.pluginmanager import get_plugin_manager, notify
from pbench_runner.remote.options import RemoteOptions
from pbench_runner.resultdir import RunMetadata, make_result_dir, missing_samples
from pbench_runner.toolstore import ToolGroup, ToolStore

SCRIPT = "pbench-user-benchmark"
ITERATION = "1-default"


@dataclass
class Options:
    run_dir: Path
    command: Sequence[str]
    group: str = "default"
    config: str = ""
    samples: int = 1
    sysinfo: str = "default"
    plugins: Sequence[str] = ()
    deadlines: Deadlines = field(default_factory=Deadlines)
    remote: RemoteOptions | None = None
    on_host_failure: str = "abort"


def run_command(command: Sequence[str], sample_dir: Path, echo: IO[str]) -> dict[str, Any]:
    """Run the user's command as one sample; its output is kept and echoed.

    The sample ends when the command exits; whatever it left running in its
    process group (background children) is stopped then, so that it neither
    outlives the run nor stretches the sample.
    """
    (sample_dir / "command.txt").write_text(" ".join(command) + "\n")
    began, start = time.monotonic(), dt.datetime.now()
    cpu0 = _children_cpu()
    out = open(sample_dir / "output.txt", "wb")  # noqa: SIM115  (closed below on every path)
    try:
        try:
            proc = procs.spawn(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=None
            )
        except OSError as exc:
            raise UsageError(f"cannot run the benchmark command {command[0]!r}: {exc}") from exc
        assert proc.stdout is not None
        tee = threading.Thread(target=_tee, args=(proc.stdout, out, echo), daemon=True)
        tee.start()
        try:
            status = proc.wait()
            duration = time.monotonic() - began
        finally:
            procs.stop(proc, timeout=3)  # its leftovers, or itself when interrupted
            tee.join(timeout=5)
    finally:
        out.close()
    result = {
        "command": list(command),
        "exit_status": status,
        "start": start.isoformat(timespec="microseconds"),
        "end": dt.datetime.now().isoformat(timespec="microseconds"),
        "duration_s": round(duration, 6),
        "cpu_s": round(_children_cpu() - cpu0, 6),
    }
    _write_result(sample_dir, result)  # now: kept even if stopping the tools is interrupted
    return result


def _write_result(sample_dir: Path, result: dict[str, Any]) -> None:
    """Write a sample's ``result.json`` (strict JSON, as ``pbench run`` writes it)."""
    (sample_dir / "result.json").write_text(strictjson.dumps(result, indent=2) + "\n")


def _tee(source: IO[bytes], out: IO[bytes], echo: IO[str]) -> None:
    for line in iter(source.readline, b""):
        out.write(line)
        echo.write(line.decode(errors="replace"))
        echo.flush()


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class UserBenchmark:
    """One run of ``pbench user-benchmark``."""

    def __init__(self, opts: Options, err: IO[str] = sys.stderr, out: IO[str] = sys.stdout) -> None:
        self.opts = opts
        self.err, self.out = err, out
        self.group: ToolGroup = ToolStore(opts.run_dir).load(opts.group)
        self.result_dir = make_result_dir(opts.run_dir / "results", SCRIPT, opts.config)
        self.meta = RunMetadata(
            name=self.result_dir.name, script=SCRIPT, config=opts.config, group=self.group
        )
        self.problems: list[str] = []
        self.exit_status = 0
        self.pm = get_plugin_manager(opts.plugins)
        self.ctl: Controller | None = None

    def notify(self, hook: str, **kwargs: Any) -> None:
        # A broken observer is reported, but it is not the run's failure.
        for warning in notify(self.pm, hook, run_id=self.meta.run_id, **kwargs):
            self.say(f"warning: {warning}")

    def say(self, text: str) -> None:
        print(f"pbench: {text}", file=self.err, flush=True)

    def run(self) -> int:
        reg = self.result_dir / "tool-registration"
        reg.mkdir()
        (reg / f"{self.group.name}.json").write_text(json.dumps(self.group.to_json(), indent=2))
        self.meta.write(self.result_dir)
        code: int = ExitCode.OK
        try:
            with interruptible():
                if self.group.empty:
                    self.say(
                        f"no tools are registered in group {self.group.name!r}: the benchmark "
                        "runs, but no tool data will be collected"
                    )
                    self._samples(None)
                else:
                    self._with_tools()
        except Interrupted as exc:
            self.meta.status = "interrupted"
            self.say(f"{exc}; tools stopped, partial results kept")
            code = ExitCode.INTERRUPTED if exc.signum == signal.SIGINT else ExitCode.TERMINATED
        except InfrastructureError as exc:
            self.meta.status = "failed"
            self.problems.append(str(exc))
            code = ExitCode.INFRASTRUCTURE_ERROR
        except PbenchError as exc:
            self.meta.status = "failed"
            self.problems.append(str(exc))
            code = ExitCode.USAGE_ERROR
        finally:
            self.meta.end = dt.datetime.now()
            if self.meta.status == "running":
                self.meta.status = "failed" if self.problems else "ok"
            self.meta.extra["problems"] = self.problems
            if self.ctl is not None and self.ctl.missing:
                self.meta.extra["missing_data"] = self._missing(self.ctl.missing)
            self.meta.write(self.result_dir)
        if code == ExitCode.OK and self.problems:
            code = ExitCode.INFRASTRUCTURE_ERROR
        final = code if code != ExitCode.OK else self.exit_status
        self.notify("pbench_run_finished", result_dir=self.result_dir, exit_status=int(final))
        for problem in self.problems:
            self.say(problem)
        print(f"Result directory: {self.result_dir}", file=self.out, flush=True)
        return final

    def _missing(self, missing: dict[str, list[str]]) -> dict[str, list[str]]:
        """Host -> the samples (relative to the result) whose data it never sent."""
        named = missing_samples(self.result_dir, missing)
        for host, dirs in named.items():
            self.problems.append(
                f"host {host} was lost: its tool data is missing for {', '.join(dirs)}"
            )
        return named

    def _with_tools(self) -> None:
        hosts = sorted(self.group.hosts)
        self.say(f"starting tool meisters for group {self.group.name!r} on {', '.join(hosts)}")
        ctl = Controller(
            self.group,
            self.result_dir / "tm",
            deadlines=self.opts.deadlines,
            plugins=self.opts.plugins,
            result_dir=self.result_dir,
            remote=self.opts.remote,
            on_host_failure=self.opts.on_host_failure,
        )
        self.ctl = ctl
        with ctl:
            self.meta.run_id = ctl.run_id
            self.meta.write(self.result_dir)
            self.notify("pbench_run_started", result_dir=self.result_dir, hosts=hosts)
            self._sysinfo(ctl, "beg")
            self._samples(ctl)
            self._sysinfo(ctl, "end")
            self.problems.extend(ctl.stop())

    def _sysinfo(self, ctl: Controller, when: str) -> None:
        if self.opts.sysinfo == "none":
            return
        self.say(f"collecting sysinfo ({when})")
        self.problems.extend(ctl.collect_sysinfo(when, self.opts.sysinfo))

    def _samples(self, ctl: Controller | None) -> None:
        iteration = self.result_dir / ITERATION
        record: dict[str, Any] = {
            "name": ITERATION,
            "user_script": " ".join(self.opts.command),
            "samples": [],
        }
        self.meta.iterations.append(record)
        for n in range(1, self.opts.samples + 1):
            sample_dir = iteration / f"sample{n}"
            sample_dir.mkdir(parents=True)
            self.say(f"sample {n}/{self.opts.samples}")
            result = self._sample(ctl, sample_dir)
            record["samples"].append({"sample": n, **result})
            if result.get("exit_status"):
                self.exit_status = int(result["exit_status"])
                self.say(f"sample {n}: the command exited with status {result['exit_status']}")

    def _sample(self, ctl: Controller | None, sample_dir: Path) -> dict[str, Any]:
        if ctl is None:
            return run_command(self.opts.command, sample_dir, self.out)
        failure: BaseException | None = None
        result: dict[str, Any] = {}
        group = self.group.name
        try:
            ctl.run_action("start", sample_dir)
            self.notify("pbench_sample_started", sample_dir=sample_dir, group=group)
            result = run_command(self.opts.command, sample_dir, self.out)
        except BaseException as exc:
            failure = exc
        # Whatever happened: stop every tool that started, and keep its data.
        tool_problems: list[str] = []
        for verb in ("stop", "send"):
            try:
                ctl.run_action(verb, sample_dir)
            except ActionError as exc:
                # A tool that died, or a host that failed: the sample is marked,
                # what the others collected is kept, and the run goes on.
                tool_problems.append(str(exc))
            except PbenchError as exc:
                if failure is None:
                    failure = exc
                else:
                    self.problems.append(str(exc))
            if verb == "stop":
                self.notify("pbench_tools_stopped", sample_dir=sample_dir, group=group)
        if tool_problems:
            self.problems.extend(f"{sample_dir.name}: {p}" for p in tool_problems)
            if result:
                result["tool_problems"] = tool_problems
                _write_result(sample_dir, result)
        if failure is not None:
            raise failure
        self.notify("pbench_sample_finished", sample_dir=sample_dir, group=group, result=result)
        return result
