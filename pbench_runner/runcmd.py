"""``pbench run``: pytest, with the pbench plugin on and benchmark discovery."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbench_runner.config import check_settings, find_settings, project_settings, run_dir
from pbench_runner.errors import UsageError
from pbench_runner.exitcodes import ExitCode

if TYPE_CHECKING:
    from pbench_runner.benchsession import BenchOptions

#: discovery defaults, overridable in [tool.pbench] or pbench.toml
DISCOVERY = {"files": "bench_*.py", "functions": "bench_*", "classes": "Bench*"}
#: run options whose defaults [tool.pbench] or pbench.toml may set: name -> (type, default)
RUN_DEFAULTS: dict[str, tuple[type, Any]] = {
    "samples": (int, 3),
    "warmup": (int, 0),
    "tool_group": (str, "default"),
    "sysinfo": (str, "default"),
    "timeout": (float, None),
    "fail_on": (list, []),
    "on_host_failure": (str, "abort"),
    "min_time": (float, 0.1),
    "pytest_benchmark": (bool, False),
}
#: what pytest-benchmark suites are named like (pytest's own defaults)
PYTEST_DISCOVERY = {"files": "test_*.py *_test.py", "functions": "test", "classes": "Test"}


def add_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``run`` and ``compare``; ``common`` adds --run-dir and -p as for every verb."""
    p = sub.add_parser(
        "run",
        help="run benchmark files like tests, tools around every sample",
        epilog="Any pytest option goes after --, e.g. `pbench run -- --junitxml=out.xml "
        "--tb=long`; -k, -m, -x and -v work directly.",
    )
    p.add_argument("paths", nargs="*", help="files or directories (default: benchmarks/)")
    common(p)
    # pytest's most used options, passed on as they are
    p.add_argument("-k", dest="pytest_k", metavar="EXPRESSION", help="pytest's -k: select by name")
    p.add_argument("-m", dest="pytest_m", metavar="MARKEXPR", help="pytest's -m: select by marker")
    p.add_argument("-x", dest="pytest_x", action="store_true", help="stop at the first failure")
    p.add_argument(
        "-v", dest="pytest_v", action="count", default=0, help="more detail (tracebacks)"
    )
    p.add_argument(
        "--no-tools", action="store_true", help="run without tools, on purpose (no tool group)"
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse to compare runs of other tool groups, hosts or machines",
    )
    p.add_argument("--markdown", metavar="PATH", help="write the comparison as Markdown here")
    # Defaults of None are filled from [tool.pbench] / pbench.toml, then RUN_DEFAULTS.
    p.add_argument("--samples", type=int, help="samples per benchmark (default 3)")
    p.add_argument("--warmup", type=int, help="unrecorded runs before the samples (default 0)")
    p.add_argument("--tool-group", help="tools to run around every sample (default: default)")
    p.add_argument("--config", default="", help="a name for this configuration")
    p.add_argument("--sysinfo", help="default, all, none or item,item (default: default)")
    p.add_argument("--timeout", type=float, help="seconds a sample may take")
    p.add_argument(
        "--min-time",
        type=float,
        help="seconds a round of a benchmark fixture's calibrated loop lasts at least (0.1)",
    )
    p.add_argument(
        "--pytest-benchmark",
        action="store_true",
        default=None,
        help="run a pytest-benchmark suite (test_*.py, test_* using the benchmark fixture)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress display")
    p.add_argument(
        "--on-host-failure",
        choices=("abort", "continue"),
        help="a host lost mid-run: stop the run cleanly (default) or go on without it",
    )
    p.add_argument("--json", dest="json_path", help="also write the results to this file")
    p.add_argument(
        "--benchmark-json",
        metavar="PATH",
        help="also write the results as pytest-benchmark's JSON (its compare command reads it)",
    )
    p.add_argument("--save", help="remember this run under a name (and as 'latest')")
    p.add_argument("--compare", help="a baseline: result directory, saved name, or latest")
    p.add_argument(
        "--upload",
        action="store_true",
        help="copy the result to the results server at the end ($PBENCH_SERVER, see copy-results)",
    )
    _fail_on(p)

    c = sub.add_parser("compare", help="compare runs of `pbench run`, metric by metric")
    c.add_argument(
        "runs",
        nargs="*",
        help="result directories, saved names or pytest-benchmark files; the first is the base",
    )
    c.add_argument("--list", action="store_true", help="list the saved runs: name, date, commit")
    c.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="text (a table), markdown (for a pull-request comment) or json",
    )
    c.add_argument(
        "--strict", action="store_true", help="refuse runs of other tool groups, hosts or machines"
    )
    c.add_argument("--run-dir", help="where saved runs live")
    _fail_on(c)


def _fail_on(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--fail-on",
        action="append",
        metavar="METRIC:±N%",
        help="exit 3 when METRIC changes past N %% against the baseline (repeatable)",
    )


def apply_defaults(args: argparse.Namespace, settings: dict[str, Any], source: str) -> None:
    """Fill options not given on the command line from the project's settings.

    Keys may be spelled ``tool_group`` or ``tool-group``; a value of the wrong
    type is refused with the file and the key.
    """
    for name, (kind, default) in RUN_DEFAULTS.items():
        if getattr(args, name, None) not in (None, []):
            continue
        value = settings.get(name, settings.get(name.replace("_", "-"), default))
        if kind is list and isinstance(value, str):
            value = [value]
        if value is not None and not _is(value, kind):
            raise UsageError(
                f"{source}: {name.replace('_', '-')} = {value!r} must be "
                f"{'a list of strings' if kind is list else 'a ' + kind.__name__}"
            )
        setattr(args, name, kind(value) if kind is float and value is not None else value)


def _is(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


def pytest_args(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """pytest's command line: discovery patterns, then the user's own arguments."""
    settings = project_settings()
    defaults = PYTEST_DISCOVERY if args.pytest_benchmark else DISCOVERY
    found = {key: str(settings.get(key, default)) for key, default in defaults.items()}
    argv = [
        # pbench's own benchmark fixture, not pytest-benchmark's, when both are installed
        "-p",
        "no:benchmark",
        # pbench itself is imported before pytest starts: nothing of it is for rewriting
        "-W",
        "ignore:Module already imported so cannot be rewritten:pytest.PytestAssertRewriteWarning",
        "-o",
        f"python_files={found['files']}",
        "-o",
        f"python_functions={found['functions']}",
        "-o",
        f"python_classes={found['classes']}",
    ]
    for plugin in args.plugins:
        argv += ["-p", plugin]
    for flag, value in (("-k", args.pytest_k), ("-m", args.pytest_m)):
        if value:
            argv += [flag, value]
    argv += ["-x"] * bool(args.pytest_x) + ["-v"] * args.pytest_v
    default_paths = ["."] if args.pytest_benchmark else ["benchmarks"]
    return [*argv, *extra, *(args.paths or default_paths)]


def session_options(
    args: argparse.Namespace, baseline: dict[str, Any] | None = None
) -> BenchOptions:
    from pbench_runner.benchsession import SCRIPT, BenchOptions
    from pbench_runner.config import find_settings, load_deadlines, load_remote
    from pbench_runner.run import RunOptions

    settings = find_settings()

    return BenchOptions(
        run=RunOptions(
            script=SCRIPT,
            run_dir=run_dir(args.run_dir),
            group=NO_TOOLS if args.no_tools else args.tool_group,
            config=args.config,
            sysinfo=args.sysinfo,
            plugins=list(args.plugins),
            remote=load_remote(settings),
            deadlines=load_deadlines(settings),
            on_host_failure=args.on_host_failure,
            json_path=Path(args.json_path).absolute() if args.json_path else None,
        ),
        samples=args.samples,
        warmup=args.warmup,
        timeout=args.timeout,
        progress=not args.no_progress,
        min_time=args.min_time,
        pytest_benchmark=bool(args.pytest_benchmark),
        baseline=baseline,
        fail_on=list(args.fail_on),
    )


def run(args: argparse.Namespace, extra: list[str]) -> int:
    import pytest

    from pbench_runner import compare
    from pbench_runner.benchsession import PYTEST_STATUS, BenchSession

    if args.fail_on and not args.compare:
        raise UsageError("--fail-on needs a baseline to compare with: --compare=BASELINE")
    settings = find_settings()  # from here upward, as pytest finds its rootdir
    check_settings(settings)  # an unknown key or a bad value names the file and the key
    where = ", ".join(str(f) for f in settings.files) or "[tool.pbench] or pbench.toml"
    apply_defaults(args, settings.values, where)
    if not args.compare:
        args.fail_on = []  # rules from the settings apply when there is a baseline
    if args.samples < 1:
        raise UsageError("--samples must be 1 or more")
    if args.warmup < 0:
        raise UsageError("--warmup must be 0 or more")
    if args.timeout is not None and args.timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    if args.min_time <= 0:
        raise UsageError("--min-time must be more than 0 seconds")
    if args.save:
        compare.check_save_name(args.save)  # before the run, not after it
    for path in (args.json_path, args.benchmark_json, args.markdown, _junitxml(extra)):
        if path and not os.access(Path(path).absolute().parent, os.W_OK):
            raise UsageError(f"cannot write {path}: its directory is missing or not writable")
    rdir = run_dir(args.run_dir)
    _check_tool_group(rdir, args)
    if os.getcwd() not in sys.path:  # -p MODULE imports from here, as pytest's own -p does
        sys.path.insert(0, os.getcwd())
    baseline = compare.resolve(rdir, args.compare) if args.compare else None
    base_run = compare.load(baseline) if baseline is not None else None
    for rule in args.fail_on:
        compare.parse_rule(rule)  # refuse a bad rule before running anything
    if args.upload:
        from pbench_runner.results import server_settings

        server_settings(None, None)  # no server or token: say so before running anything
    session = BenchSession(session_options(args, base_run))
    terminated = []

    def on_sigterm(signum: int, frame: object) -> None:
        # pytest cleans up on KeyboardInterrupt: tools stopped, data sent, results written
        terminated.append(signum)
        session.signum = signum
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        status = int(pytest.main(pytest_args(args, extra), plugins=[session]))
    finally:
        signal.signal(signal.SIGTERM, previous)
    result_dir = session.result_dir
    infrastructure = session.run.infrastructure
    host_lost = session.run.host_lost  # the run stopped itself: a host was lost
    if terminated:
        return ExitCode.TERMINATED
    uploaded: int = ExitCode.OK
    if args.upload and (result_dir / "metadata.json").exists():
        from pbench_runner.resultscmd import upload_after_run

        uploaded = upload_after_run(rdir, result_dir)
    final = PYTEST_STATUS.get(status, ExitCode.INFRASTRUCTURE_ERROR)
    if final == ExitCode.BENCHMARK_FAILED and session.regressions and not session.failures:
        final = ExitCode.REGRESSION  # every failure is a regression
    if (result_dir / "result.json").exists():
        if args.benchmark_json:
            from pbench_runner import pbjson

            pbjson.write(
                Path(args.benchmark_json), json.loads((result_dir / "result.json").read_text())
            )
        if base_run is not None:
            assert baseline is not None
            refused = _report_comparison(args, baseline, base_run, compare.load(result_dir))
            if refused and final == ExitCode.OK:
                final = refused
        # a baseline is replaced only by a run that passed, its gate included
        if args.save and final == ExitCode.OK and not infrastructure:
            compare.save(rdir, args.save, result_dir)
        elif args.save:
            print(
                f"pbench: not saved as {args.save!r}: the run did not pass; the saved run is kept",
                file=sys.stderr,
            )
    if (infrastructure and final in (ExitCode.OK, ExitCode.USAGE_ERROR)) or (
        host_lost and final == ExitCode.INTERRUPTED
    ):
        final = ExitCode.INFRASTRUCTURE_ERROR  # a host or tool failed
    return uploaded if final == ExitCode.OK else final


#: ``--no-tools``: a run without tools, on purpose
NO_TOOLS = "none"


def _check_tool_group(rdir: Path, args: argparse.Namespace) -> None:
    """A tool group that has no tools is refused unless it is the default one
    (a first run) or ``--no-tools`` says so."""
    from pbench_runner.toolstore import ToolStore

    if args.no_tools or args.tool_group == "default":
        return
    store = ToolStore(rdir)
    if store.load(args.tool_group).empty:
        known = ", ".join(store.groups()) or "none"
        raise UsageError(
            f"tool group {args.tool_group!r} has no tools registered (groups with tools: "
            f"{known}); register some, or use --no-tools to run without tools"
        )


def _junitxml(extra: list[str]) -> str | None:
    """The path of pytest's ``--junitxml`` among the arguments after ``--``."""
    for i, arg in enumerate(extra):
        if arg.startswith("--junitxml="):
            return arg.partition("=")[2]
        if arg == "--junitxml" and i + 1 < len(extra):
            return extra[i + 1]
    return None


def _report_comparison(
    args: argparse.Namespace, baseline: Path, base_run: dict[str, Any], new_run: dict[str, Any]
) -> int:
    """The comparison's table (and Markdown); the gate itself ran with each benchmark.
    Returns 2 when ``--strict`` finds the runs not comparable."""
    from pbench_runner import compare, compare_report

    found = compare.changes(base_run, new_run)
    print(f"\ncompared with {baseline}:")
    try:
        warnings = compare.check_comparable(base_run, new_run, strict=args.strict)
    except compare.NotComparable as exc:
        print(f"pbench: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE_ERROR
    sys.stdout.write(compare_report.render(found, "text", warnings))
    if args.markdown:
        text = compare_report.render(found, "markdown", warnings, args.fail_on)
        Path(args.markdown).write_text(text)
    for metric in compare.unknown_metrics(found, args.fail_on):
        print(
            f"pbench: warning: --fail-on names {metric!r}, which no benchmark of both "
            "runs recorded",
            file=sys.stderr,
        )
    for message in compare.regressions(found, args.fail_on):
        print(f"pbench: regression: {message}", file=sys.stderr)
    return ExitCode.OK


def compare_runs(args: argparse.Namespace) -> int:
    """``pbench compare BASE OTHER...``: a table per pair; exit 3 past a --fail-on rule."""
    from pbench_runner import compare, compare_report

    rdir = run_dir(args.run_dir)
    if args.list:
        for line in _saved_lines(rdir):
            print(line)
        return ExitCode.OK
    runs = [compare.resolve(rdir, ref) for ref in args.runs]
    if len(runs) < 2:
        print("pbench: error: compare needs two runs or more", file=sys.stderr)
        return ExitCode.USAGE_ERROR
    base = compare.load(runs[0])
    status: int = ExitCode.OK
    for other in runs[1:]:
        new = compare.load(other)
        found = compare.changes(base, new)
        warnings = compare.check_comparable(base, new, strict=args.strict)
        if args.format == "text":
            print(f"{runs[0].name} -> {other.name}")
        sys.stdout.write(compare_report.render(found, args.format, warnings, args.fail_on or []))
        for metric in compare.unknown_metrics(found, args.fail_on or []):
            print(
                f"pbench: warning: --fail-on names {metric!r}, which neither run has",
                file=sys.stderr,
            )
        for message in compare.regressions(found, args.fail_on or []):
            print(f"pbench: regression: {message}", file=sys.stderr)
            status = ExitCode.REGRESSION
    return status


def _saved_lines(rdir: Path) -> list[str]:
    """One line per saved run: its name, the run's date, commit and result directory."""
    from pbench_runner import compare

    directory = compare.saved_dir(rdir)
    if not directory.is_dir():
        return [f"no saved runs in {directory}"]
    lines = []
    for link in sorted(directory.iterdir()):
        target = link.resolve()
        try:
            run = json.loads((target / "result.json").read_text()).get("run", {})
        except (OSError, ValueError):
            lines.append(f"{link.name:<20} (missing: {target})")
            continue
        commit = run.get("commit_info", {})
        when = run.get("pbench", {}).get("date", "")[:19]
        dirty = "+" if commit.get("dirty") else ""
        lines.append(
            f"{link.name:<20} {when:<20} {str(commit.get('id', ''))[:12] + dirty:<14} {target.name}"
        )
    return lines
