"""One ``pbench run``: the result directory, the tool session, and every sample.

Registered by the pytest plugin when ``--pbench-run`` is on.  Result layout::

    pbench-run_<config>_<YYYY.MM.DDTHH.MM.SS>/
        metadata.log  metadata.json  result.json  tm/  sysinfo/{beg,end}/<host>/
        <N>-<benchmark>/result.json  reference-result -> sample<K>
        <N>-<benchmark>/sample<K>/   result.json  tools-<group>/<host>/<tool>/
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import resource
import signal
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from pbench_runner import strictjson
from pbench_runner.bench import Sample, SampleHandle
from pbench_runner.config import load_remote
from pbench_runner.config import run_dir as resolve_run_dir
from pbench_runner.controller import Controller
from pbench_runner.errors import ActionError, PbenchError, UsageError
from pbench_runner.hostsummary import combine, sample_hosts
from pbench_runner.progress import RunProgress
from pbench_runner.pytest_plugin import handle_of
from pbench_runner.resultdir import RunMetadata, make_result_dir, missing_samples
from pbench_runner.stats import summarize
from pbench_runner.toolstore import ToolGroup, ToolStore

SCRIPT = "pbench-run"


class SampleTimeout(PbenchError):
    """A sample ran past its timeout."""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")[:100] or "benchmark"


def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class BenchSession:
    """The pytest plugin object of one ``pbench run``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.getoption
        self.run_dir = resolve_run_dir(opt("pbench_run_dir"))
        self.samples: int = opt("pbench_samples")
        self.warmup: int = opt("pbench_warmup")
        self.group_name: str = opt("pbench_tool_group")
        self.on_host_failure: str = opt("pbench_on_host_failure")
        #: the run was stopped because a host was lost (not by the user)
        self.stopped = False
        self.sysinfo: str = opt("pbench_sysinfo")
        self.timeout: float | None = opt("pbench_timeout")
        self.plugins: list[str] = opt("pbench_plugin")
        self.config_name: str = opt("pbench_config")
        self.json_path: str | None = opt("pbench_json")
        self.result_dir = Path()
        self.ctl: Controller | None = None
        #: sessions of other tool groups, started when a benchmark's marker asks
        self.others: dict[str, Controller | None] = {}
        self.group = ToolGroup(self.group_name)
        self.meta: RunMetadata | None = None
        self.iterations: list[dict[str, Any]] = []
        self.problems: list[str] = []
        capman = config.pluginmanager.getplugin("capturemanager")
        self.progress = RunProgress(
            enabled=not opt("pbench_no_progress"),
            suspend=capman.global_and_fixture_disabled if capman else contextlib.nullcontext,
        )

    # --- the session --------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        try:
            self.group = ToolStore(self.run_dir).load(self.group_name)
            self.result_dir = make_result_dir(self.run_dir / "results", SCRIPT, self.config_name)
            self.meta = RunMetadata(
                name=self.result_dir.name,
                script=SCRIPT,
                config=self.config_name,
                group=self.group,
            )
            self.meta.write(self.result_dir)
            if not self.group.empty:
                self.ctl = Controller(
                    self.group,
                    self.result_dir / "tm",
                    plugins=self.plugins,
                    result_dir=self.result_dir,
                    remote=load_remote(),
                    on_host_failure=self.on_host_failure,
                ).start()
                self.meta.run_id = self.ctl.run_id
                self._sysinfo("beg")
        except PbenchError as exc:
            if self.ctl is not None:
                self.ctl.stop(quiet=True)
            if self.meta is not None:  # pytest skips sessionfinish after this
                self.meta.end = dt.datetime.now()
                self.meta.status = "failed"
                self.meta.extra["problems"] = [str(exc)]
                self.meta.write(self.result_dir)
            self._tell_runner(infrastructure=True)
            pytest.exit(f"pbench: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        total = 0
        for item in session.items:
            options: dict[str, Any] = {}
            if isinstance(item, pytest.Function):
                # a typo in a marker: refused before anything runs
                try:
                    options = _marker_options(item)
                except UsageError as exc:
                    raise pytest.UsageError(str(exc)) from exc
            samples = options.get("samples")  # checked: a whole number >= 1, or None
            total += samples if samples is not None else self.samples
        self.progress.begin(total)

    def _sysinfo(self, when: str) -> None:
        if self.ctl is not None:
            self.problems.extend(self.ctl.collect_sysinfo(when, self.sysinfo))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.progress.end()
        if self.meta is None:
            return
        if self.ctl is not None:
            try:
                self._sysinfo("end")
            except PbenchError as exc:
                self.problems.append(str(exc))
            self.problems.extend(self.ctl.stop())
        for other in self.others.values():
            if other is not None:
                self.problems.extend(other.stop())
        self.meta.end = dt.datetime.now()
        self.meta.status = "ok" if exitstatus == 0 and not self.problems else "failed"
        self.meta.iterations = [
            {"name": it["name"], "nodeid": it["nodeid"], "status": it["status"]}
            for it in self.iterations
        ]
        missing = self._missing_data()
        if missing:
            self.meta.extra["missing_data"] = missing
        self.meta.extra["problems"] = self.problems
        self.meta.write(self.result_dir)
        result = {"run": self.meta.to_json(), "iterations": self.iterations}
        text = strictjson.dumps(result, indent=2, default=str) + "\n"
        (self.result_dir / "result.json").write_text(text)
        if self.json_path:
            Path(self.json_path).write_text(text)
        self._tell_runner(infrastructure=bool(self.problems))

    def _tell_runner(self, infrastructure: bool) -> None:
        """``pbench run`` learns the result directory, and whether a host or tool failed."""
        marker = self.config.getoption("pbench_result_file")
        if marker:
            flags = "\ninfrastructure" if infrastructure else ""
            flags += "\nstopped" if self.stopped else ""
            Path(marker).write_text(f"{self.result_dir}{flags}")

    # --- one benchmark ----------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool:
        mk = _marker_options(pyfuncitem)
        samples = int(mk["samples"]) if mk.get("samples") is not None else self.samples
        warmup = int(mk["warmup"]) if mk.get("warmup") is not None else self.warmup
        timeout = mk.get("timeout") or self.timeout
        ctl = self._controller(str(mk.get("tool_group") or self.group_name))
        use_tools = bool(mk.get("tools", True)) and ctl is not None
        handle = handle_of(pyfuncitem) or SampleHandle()
        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in names}
        index = len(self.iterations) + 1
        iteration_dir = self.result_dir / f"{index}-{_safe(pyfuncitem.name)}"
        iteration: dict[str, Any] = {
            "name": iteration_dir.name,
            "nodeid": pyfuncitem.nodeid,
            "status": "running",
            "samples": [],
            "metrics": {},
        }
        self.iterations.append(iteration)
        failure: BaseException | None = None
        sysinfo = str(mk.get("sysinfo") or "none")
        if ctl is not None:  # this benchmark's own sysinfo, around its samples
            self.problems.extend(ctl.collect_sysinfo("beg", sysinfo, base=iteration_dir))
        for w in range(1, warmup + 1):
            self.progress.sample(pyfuncitem.name, "warm-up", w, warmup)
            record, failure = self._sample(
                pyfuncitem, handle, kwargs, iteration_dir / f"warmup{w}", w, None, timeout
            )
            if failure is not None:
                break
        for n in range(1, samples + 1):
            if failure is not None or pyfuncitem.session.shouldstop:
                break
            self.progress.sample(pyfuncitem.name, "sample", n, samples)
            record, failure = self._sample(
                pyfuncitem,
                handle,
                kwargs,
                iteration_dir / f"sample{n}",
                n,
                ctl if use_tools else None,
                timeout,
            )
            iteration["samples"].append(record)
        iteration["status"] = "failed" if failure is not None else "ok"
        if ctl is not None:
            self.problems.extend(ctl.collect_sysinfo("end", sysinfo, base=iteration_dir))
        self._summarize(iteration, iteration_dir)
        if failure is not None:
            raise failure
        return True

    def _sample(
        self,
        item: pytest.Function,
        handle: SampleHandle,
        kwargs: dict[str, Any],
        directory: Path,
        number: int,
        ctl: Controller | None,
        timeout: float | None,
    ) -> tuple[dict[str, Any], BaseException | None]:
        """One sample; with ``ctl``, wrapped in that session's start/stop/send."""
        directory.mkdir(parents=True, exist_ok=True)
        sample = Sample(number, directory)
        handle.current = sample
        failure: BaseException | None = None
        tool_problems: list[str] = []
        try:
            if ctl is not None:
                ctl.run_action("start", directory)
            self.progress.phase("running")
            began, cpu0 = time.perf_counter(), _cpu()
            try:
                with _deadline(timeout, item.name):
                    item.obj(**kwargs)
            finally:
                wall, cpu = time.perf_counter() - began, _cpu() - cpu0
        except BaseException as exc:
            failure = exc
            wall = cpu = float("nan")
        finally:
            handle.current = None
            if ctl is not None:
                for verb in ("stop", "send"):  # whatever happened: stop, and keep the data
                    self.progress.phase(f"{verb}-tools")
                    try:
                        ctl.run_action(verb, directory)
                    except ActionError as exc:
                        # A tool died or a host failed: the sample is marked, the
                        # benchmark's own figures stand, and the run exits 4.
                        tool_problems.append(str(exc))
                        self.problems.append(f"{item.nodeid} sample {number}: {exc}")
                        if ctl.missing and self.on_host_failure == "abort":
                            # a host is gone: no further benchmark runs without it
                            lost = ", ".join(sorted(ctl.missing))
                            item.session.shouldstop = f"pbench: host {lost} lost; run stopped"
                            self.stopped = True
                    except PbenchError as exc:
                        self.problems.append(f"{item.nodeid} sample {number}: {exc}")
                        failure = failure or exc
        record: dict[str, Any] = {
            "sample": number,
            "wall_s": wall,
            "cpu_s": cpu,
            "metrics": {k: m.value for k, m in sample.metrics.items()},
            "units": {k: [m.unit, m.higher_is_better] for k, m in sample.metrics.items()},
            "commands": sample.commands,
            "status": "ok" if failure is None else f"failed: {type(failure).__name__}: {failure}",
            "tools": ctl.group.name if ctl is not None else None,
        }
        if tool_problems:
            record["tool_problems"] = tool_problems
        text = strictjson.dumps(record, indent=2)
        (directory / "result.json").write_text(text + "\n")
        self.progress.sample_done(
            "ok" if failure is None else "failed", wall, counted=directory.name.startswith("sample")
        )
        return record, failure

    def _controller(self, group: str) -> Controller | None:
        """The tool session of ``group``: the run's own, or one started on first use."""
        if group == self.group_name:
            return self.ctl
        if group not in self.others:
            tools = ToolStore(self.run_dir).load(group)
            if tools.empty:
                raise UsageError(
                    f"the pbench marker asks for tool group {group!r}, which has no tools "
                    f"registered (run dir {self.run_dir})"
                )
            self.others[group] = Controller(
                tools,
                self.result_dir / f"tm-{group}",
                plugins=self.plugins,
                result_dir=self.result_dir,
                remote=load_remote(),
                on_host_failure=self.on_host_failure,
            ).start()
        return self.others[group]

    def _summarize(self, iteration: dict[str, Any], iteration_dir: Path) -> None:
        ok = [s for s in iteration["samples"] if s["status"] == "ok"]
        series: dict[str, dict[str, Any]] = {
            "wall_s": {"unit": "s", "higher_is_better": False, "values": [s["wall_s"] for s in ok]},
            "cpu_s": {"unit": "s", "higher_is_better": False, "values": [s["cpu_s"] for s in ok]},
        }
        for s in ok:
            for name, value in s["metrics"].items():
                unit, better = s["units"][name]
                entry = series.setdefault(
                    name, {"unit": unit, "higher_is_better": better, "values": []}
                )
                entry["values"].append(value)
        for entry in series.values():
            if entry["values"]:
                entry["summary"] = summarize(entry["values"])
        iteration["metrics"] = series
        iteration["hosts"] = combine(
            sample_hosts(iteration_dir / f"sample{s['sample']}", str(s["tools"]))
            for s in iteration["samples"]
            if s.get("tools")
        )
        if ok:
            # pbench's reference is the sample closest to the mean of the primary
            # metric: the first one the benchmark records, else its wall time
            primary = next((m for m in series if m not in ("wall_s", "cpu_s")), "wall_s")
            iteration["primary_metric"] = primary
            closest = series[primary]["summary"]["closest"]
            reference = ok[closest - 1]["sample"]
            iteration["reference"] = f"sample{reference}"
            link = iteration_dir / "reference-result"
            link.unlink(missing_ok=True)
            os.symlink(f"sample{reference}", link)
        text = strictjson.dumps(iteration, indent=2)
        (iteration_dir / "result.json").write_text(text + "\n")

    def _missing_data(self) -> dict[str, list[str]]:
        """Host -> the samples (relative to the result) whose data it never sent."""
        ctls = [c for c in [self.ctl, *self.others.values()] if c is not None]
        missing = missing_samples(self.result_dir, *(c.missing for c in ctls))
        for host, samples in missing.items():
            self.problems.append(
                f"host {host}: no data for {len(samples)} sample(s): {', '.join(samples)}"
            )
        return missing

    # --- the report --------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from pbench_runner.benchreport import summary_lines

        tr = terminalreporter
        tr.section("pbench results")
        for line in summary_lines(self.iterations):
            tr.write_line(line)
        for problem in self.problems:
            tr.write_line(f"problem: {problem}", red=True)
        tr.write_line(f"Result directory: {self.result_dir}")


class _deadline:
    """Raise :class:`SampleTimeout` in the main thread after ``seconds``."""

    def __init__(self, seconds: float | None, name: str) -> None:
        self.seconds, self.name = seconds, name

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        raise SampleTimeout(f"{self.name}: the sample ran past its timeout of {self.seconds:g} s")

    def __enter__(self) -> None:
        if self.seconds:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            self.began = time.monotonic()
            # an outer alarm (pytest-timeout's) is put back, less the time spent here
            self.outer, _ = signal.setitimer(signal.ITIMER_REAL, float(self.seconds))

    def __exit__(self, *exc: object) -> None:
        if self.seconds:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            if self.outer:
                left = self.outer - (time.monotonic() - self.began)
                signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


#: the keywords of the ``pbench`` marker
MARKER_KEYS = frozenset({"samples", "warmup", "tool_group", "timeout", "tools", "sysinfo"})


def _marker_options(item: pytest.Function) -> dict[str, Any]:
    """The ``pbench`` marker's keywords, checked: a typo is an error, not a default."""
    marker = item.get_closest_marker("pbench")
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    unknown = sorted(set(options) - MARKER_KEYS)
    if unknown:
        raise UsageError(
            f"{item.nodeid}: the pbench marker has no {', '.join(unknown)} "
            f"(it takes {', '.join(sorted(MARKER_KEYS))})"
        )
    for key, least in (("samples", 1), ("warmup", 0)):
        value = options.get(key)
        if value is not None and (not isinstance(value, int) or value < least):
            raise UsageError(
                f"{item.nodeid}: pbench marker {key}={value!r}: a whole number >= {least}"
            )
    timeout = options.get("timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise UsageError(f"{item.nodeid}: pbench marker timeout={timeout!r}: seconds, more than 0")
    return options
