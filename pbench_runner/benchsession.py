"""One ``pbench run``: pytest collects the benchmarks, the run protocol runs them.

``pbench run`` hands a :class:`BenchSession` to ``pytest.main(plugins=[...])``;
it opens one :class:`~pbench_runner.run.Run` at the start of pytest's session
and closes it at the end, and runs every collected benchmark's samples through
:meth:`Run.sample <pbench_runner.run.Run.sample>`, as ``pbench user-benchmark``
does.  The result layout is :mod:`pbench_runner.records`'.
"""

from __future__ import annotations

import contextlib
import math
import re
import resource
import signal
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from pbench_runner.bench import Sample, SampleHandle
from pbench_runner.benchfixture import BenchmarkFixture, BenchmarkOptions
from pbench_runner.errors import Interrupted, PbenchError, UsageError
from pbench_runner.exitcodes import ExitCode
from pbench_runner.progress import RunProgress
from pbench_runner.pytest_plugin import handle_of, marker_keywords
from pbench_runner.records import Iteration, SampleRecord
from pbench_runner.run import Run, RunOptions
from pbench_runner.timing import MIN_TIME

SCRIPT = "pbench-run"


class SampleTimeout(PbenchError):
    """A sample ran past its timeout."""


class Regression(PbenchError):
    """A benchmark's metric changed past a ``--fail-on`` rule against the baseline."""


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_")[:100] or "benchmark"


def _children_cpu() -> float:
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return kids.ru_utime + kids.ru_stime


#: pytest's exit status -> ours
PYTEST_STATUS: dict[int, int] = {
    pytest.ExitCode.OK: ExitCode.OK,
    pytest.ExitCode.TESTS_FAILED: ExitCode.BENCHMARK_FAILED,
    pytest.ExitCode.INTERRUPTED: ExitCode.INTERRUPTED,
    pytest.ExitCode.INTERNAL_ERROR: ExitCode.INFRASTRUCTURE_ERROR,
    pytest.ExitCode.USAGE_ERROR: ExitCode.USAGE_ERROR,
    pytest.ExitCode.NO_TESTS_COLLECTED: ExitCode.NO_BENCHMARKS,
}


@dataclass
class BenchOptions:
    """What ``pbench run`` asks of the session, besides the run's own options."""

    run: RunOptions
    samples: int = 3
    warmup: int = 0
    timeout: float | None = None
    progress: bool = True
    #: seconds a ``benchmark`` fixture's round lasts at least
    min_time: float = MIN_TIME
    #: run a pytest-benchmark suite: only the tests that use ``benchmark``
    pytest_benchmark: bool = False
    #: the baseline (as :func:`pbench_runner.compare.load` reads it) and the rules
    #: each benchmark is held to as soon as it has run
    baseline: dict[str, Any] | None = None
    fail_on: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class BenchSession:
    """The pytest plugin object of one ``pbench run``."""

    def __init__(self, opts: BenchOptions) -> None:
        #: its name in pytest's plugin manager (pluggy names a plugin by ``__name__``):
        #: ``request.config.pluginmanager.get_plugin("pbench-session").run``
        self.__name__ = "pbench-session"
        self.opts = opts
        self.run = Run(opts.run)
        self.progress = RunProgress(enabled=False)
        #: pytest could not even start the run
        self.failed_to_start = False
        #: what interrupts the run (pytest turns it into KeyboardInterrupt)
        self.signum: int = signal.SIGINT
        #: the regressions found, and the benchmarks that failed otherwise
        self.regressions: list[str] = []
        self.failures: set[str] = set()
        self._iterations: dict[str, Iteration] = {}

    @property
    def result_dir(self) -> Path:
        return self.run.result_dir

    # --- the session --------------------------------------------------------------

    def pytest_configure(self, config: pytest.Config) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")

        def line(text: str) -> None:
            # pytest's reporter (registered after this plugin is configured)
            reporter = config.pluginmanager.getplugin("terminalreporter")
            if reporter is None:
                print(text, file=sys.stderr, flush=True)
                return
            reporter.ensure_newline()
            if text:  # "" only ends pytest's current line
                reporter.write_line(text)

        self.progress = RunProgress(
            enabled=self.opts.progress,
            suspend=capman.global_and_fixture_disabled if capman else contextlib.nullcontext,
            line=line,
        )
        self.run.on_phase = self.progress.phase
        config.addinivalue_line(
            "markers",
            "benchmark(group=None, min_rounds=None, min_time=None, disable_gc=False, ...): "
            "pytest-benchmark's options for a benchmark using the benchmark fixture",
        )

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Checked, then started: the run (Redis, the sink, the meisters, the
        result directory) starts only once there is something valid to run."""
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
            total += samples if samples is not None else self.opts.samples
        if not session.items or session.config.option.collectonly:
            return  # nothing to run: nothing is started, nothing is left behind
        try:
            self.run.open()
        except PbenchError as exc:
            self.failed_to_start = True  # open() closed the run: its records say why
            pytest.exit(f"pbench: {exc}", returncode=pytest.ExitCode.INTERNAL_ERROR)
        self.progress.begin(total)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.progress.end()
        if self.failed_to_start or not self.run.opened:
            return
        status = PYTEST_STATUS.get(exitstatus, ExitCode.INFRASTRUCTURE_ERROR)
        if status == ExitCode.BENCHMARK_FAILED and self.regressions and not self.failures:
            status = ExitCode.REGRESSION  # every failure is a regression
        self.run.workload_status = status
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        self.run.close(Interrupted(self.signum) if interrupted else None)

    # --- one benchmark ----------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool:
        mk = _marker_options(pyfuncitem)
        samples = int(mk["samples"]) if mk.get("samples") is not None else self.opts.samples
        warmup = int(mk["warmup"]) if mk.get("warmup") is not None else self.opts.warmup
        timeout = mk.get("timeout") or self.opts.timeout
        group = mk.get("tool_group") or None
        tools = bool(mk.get("tools", True))
        handle = handle_of(pyfuncitem) or SampleHandle()
        names = pyfuncitem._fixtureinfo.argnames
        kwargs = {name: pyfuncitem.funcargs[name] for name in names}
        run = self.run
        index = len(run.iterations) + 1
        iteration = run.iteration(f"{index}-{_safe(pyfuncitem.name)}", nodeid=pyfuncitem.nodeid)
        sysinfo = str(mk.get("sysinfo") or "none")  # this benchmark's own, around its samples
        run.collect_sysinfo("beg", sysinfo, base=iteration.directory, group=group)
        failure: BaseException | None = None
        bench = kwargs.get("benchmark")
        if not isinstance(bench, BenchmarkFixture):
            bench = None
        else:  # a round of calibrated loops per sample, calibrated in a warm-up run
            samples = max(samples, bench.options.min_rounds or 1)
            warmup = max(warmup, 1)
            iteration.benchmark = bench.meta()
        plan = [("warmup", w, warmup) for w in range(1, warmup + 1)]
        plan += [("sample", n, samples) for n in range(1, samples + 1)]
        for kind, number, of in plan:
            if failure is not None or (kind == "sample" and pyfuncitem.session.shouldstop):
                break
            self.progress.sample(pyfuncitem.name, kind.replace("warmup", "warm-up"), number, of)
            rec: SampleRecord | None = None
            try:
                with run.sample(iteration, number, group=group, tools=tools, kind=kind) as rec:
                    sample = Sample(number, rec.directory)
                    handle.current = sample
                    if bench is not None:
                        bench.begin(calibrating=kind == "warmup")
                    try:
                        self._call(pyfuncitem, kwargs, timeout, rec, bench)
                    finally:
                        handle.current = None
                        rec.metrics = {k: m.value for k, m in sample.metrics.items()}
                        rec.units = {
                            k: [m.unit, m.higher_is_better] for k, m in sample.metrics.items()
                        }
                        rec.commands = sample.commands
            except BaseException as exc:  # raised below, once the benchmark is wrapped up
                failure = exc
                if rec is not None and isinstance(exc, pytest.skip.Exception):
                    rec.status = "skipped"
            ok = rec is not None and rec.ok and failure is None
            wall = rec.wall_s if rec is not None else math.nan
            self.progress.sample_done("ok" if ok else "failed", wall, counted=kind == "sample")
            if run.host_lost:
                lost = ", ".join(sorted(h for c in run.controllers() for h in c.missing))
                pyfuncitem.session.shouldstop = f"pbench: host {lost} lost; run stopped"
        self.progress.pause()
        if bench is not None:
            iteration.benchmark = bench.meta()  # its loops, and the extra_info it was given
        if not isinstance(failure, KeyboardInterrupt):
            run.collect_sysinfo("end", sysinfo, base=iteration.directory, group=group)
        skipped = isinstance(failure, pytest.skip.Exception)
        iteration.finish("skipped" if skipped else "failed" if failure is not None else None)
        self._iterations[pyfuncitem.nodeid] = iteration
        if failure is not None:
            raise failure
        self._gate(iteration)
        return True

    def _gate(self, iteration: Iteration) -> None:
        """Hold the benchmark to ``--fail-on`` against the baseline now, so a
        regression fails it where CI reports look: pytest's report and JUnit."""
        if self.opts.baseline is None:
            return
        from pbench_runner import compare

        found = compare.changes(
            self.opts.baseline, {"run": {}, "iterations": [iteration.to_json()]}
        )
        iteration.verdict = {
            ch.metric: {"change_pct": ch.pct, "verdict": compare.verdict(ch)} for ch in found
        }
        messages = compare.regressions(found, self.opts.fail_on)
        if messages:
            self.regressions.extend(messages)
            iteration.restate("regressed")
            raise Regression("; ".join(messages))
        iteration.restate(iteration.status)

    # --- what pytest says of each benchmark ---------------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """A failure of ours (a failed command, a timeout, a regression) is one
        paragraph; pytest's traceback with ``-v``."""
        report: pytest.TestReport = yield
        error = call.excinfo.value if call.excinfo is not None else None
        if isinstance(error, PbenchError) and item.config.get_verbosity() < 1:
            text = str(error)
            report.longrepr = text if text.startswith(item.nodeid) else f"{item.nodeid}: {text}"
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Set-up and tear-down errors and xfail, as pytest reports them, in the results."""
        if not self.run.opened:
            return
        iteration = self._iterations.get(report.nodeid)
        crash = getattr(report.longrepr, "reprcrash", None)  # "RuntimeError: why"
        why = [crash.message] if crash else report.longreprtext.strip().splitlines()[-1:]
        if report.when == "setup" and report.failed:
            iteration = self.run.iteration(
                f"{len(self.run.iterations) + 1}-{_safe(report.nodeid.rpartition('::')[2])}",
                nodeid=report.nodeid,
            )
            iteration.finish("error")
            iteration.restate("error", f"set-up failed: {why[0] if why else ''}")
        elif iteration is None:
            return
        elif report.when == "call" and hasattr(report, "wasxfail"):
            iteration.restate("xfailed" if report.skipped else "xpassed")
        elif report.when == "call" and report.failed and iteration.status != "regressed":
            self.failures.add(report.nodeid)
        elif report.when == "teardown" and report.failed:
            iteration.restate("error", f"tear-down failed: {why[0] if why else ''}")
        if report.failed and report.when != "call":
            self.failures.add(report.nodeid)

    @staticmethod
    def _call(
        item: pytest.Function,
        kwargs: dict[str, Any],
        timeout: float | None,
        rec: SampleRecord,
        bench: BenchmarkFixture | None,
    ) -> None:
        """One call of the benchmark function, timed: only the call is between
        the clock's reads (the timeout is armed and CPU clocks read outside).
        With the ``benchmark`` fixture, the fixture's round is the timing."""
        kids0 = _children_cpu()
        with _deadline(timeout, item.name):
            cpu0 = time.thread_time_ns()
            began = time.perf_counter_ns()
            try:
                item.obj(**kwargs)
            finally:
                wall = time.perf_counter_ns() - began
                cpu = time.thread_time_ns() - cpu0
                rec.children_cpu_s = _children_cpu() - kids0
                rec.wall_s, rec.cpu_s = wall / 1e9, cpu / 1e9
        if bench is not None:
            if bench.last is None and not bench.calibrating:
                raise UsageError(f"{item.nodeid} asks for the benchmark fixture but never calls it")
            if bench.last is not None:
                rec.wall_s, rec.cpu_s = bench.last.per_call_s, bench.last.cpu_per_call_s
                rec.loops = bench.last.loops

    @pytest.fixture
    def benchmark(self, request: pytest.FixtureRequest) -> BenchmarkFixture:
        """pytest-benchmark's ``benchmark``: ``benchmark(fn, *args)`` times ``fn``
        in calibrated loops, one round per sample (:mod:`pbench_runner.benchfixture`)."""
        try:
            options = BenchmarkOptions.of(request.node, self.opts.min_time)
        except UsageError as exc:
            raise pytest.UsageError(str(exc)) from exc
        return BenchmarkFixture(request.node, options)

    def pytest_collection_modifyitems(
        self, session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        """In a pytest-benchmark suite (``--pytest-benchmark``), the tests that
        benchmark nothing are left to pytest."""
        if not self.opts.pytest_benchmark:
            return
        keep = [i for i in items if "benchmark" in getattr(i, "fixturenames", ())]
        dropped = [i for i in items if i not in keep]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep

    # --- the report --------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from pbench_runner.benchreport import summary_lines

        if not self.run.opened:
            return  # nothing ran
        tr = terminalreporter
        tr.section("pbench results")
        for line in summary_lines(it.to_json() for it in self.run.iterations):
            tr.write_line(line)
        for problem in self.run.problems:
            tr.write_line(f"problem: {problem}", red=True)
        tr.write_line(f"Result directory: {self.run.result_dir}")


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
    options = marker_keywords(item, "pbench", MARKER_KEYS)
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
