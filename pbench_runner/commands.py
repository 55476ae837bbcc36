"""The handlers of ``pbench`` verbs other than user-benchmark."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pbench_runner import procs, session
from pbench_runner.config import Deadlines, toolsets
from pbench_runner.errors import InfrastructureError, SessionError, ToolStoreError, UsageError
from pbench_runner.exitcodes import ExitCode
from pbench_runner.interrupts import interruptible
from pbench_runner.toolstore import ToolStore, parse_labels, parse_remotes


def _registry(args: argparse.Namespace) -> Any:
    from pbench_runner.pluginmanager import get_plugin_manager, tool_registry

    return tool_registry(get_plugin_manager(args.plugins))


def register_tool(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    from pbench_runner.tools import parse_tool_options

    hosts = parse_remotes(args.remotes)
    labels = parse_labels(args.labels)
    registry = _registry(args)
    name = registry.canonical(args.name) if args.name in registry.aliases else args.name
    ToolStore(rdir).register(registry, args.group, {name: parse_tool_options(tail)}, hosts, labels)
    for host in hosts:
        print(f"{name} registered on {host} in group {args.group}")
    return ExitCode.OK


def register_tool_set(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    sets = toolsets(rdir)
    if args.toolset not in sets:
        raise ToolStoreError(
            f"unknown tool set {args.toolset!r}; tool sets: {', '.join(sorted(sets))}"
        )
    registry = _registry(args)
    tools: dict[str, dict[str, str]] = {}
    for name, options in sets[args.toolset].items():
        if not isinstance(options, dict):
            raise ToolStoreError(f"tool set {args.toolset!r}: entry {name!r} must be a table")
        raw = {str(k): str(v) for k, v in options.items()}
        spec = registry.get(name)
        if args.interval is not None and spec.option("interval") is not None:
            raw["interval"] = args.interval
        tools[spec.name] = raw
    hosts = parse_remotes(args.remotes)
    ToolStore(rdir).register(registry, args.group, tools, hosts, parse_labels(args.labels))
    print(
        f"tool set {args.toolset} ({', '.join(tools)}) registered on "
        f"{', '.join(hosts)} in group {args.group}"
    )
    return ExitCode.OK


def list_tools(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    if args.available:
        registry = _registry(args)
        for name, spec in sorted(registry.specs.items()):
            if args.name and args.name != name:
                continue
            missing = spec.missing_programs()
            state = (
                "ready"
                if not missing
                else "missing "
                + ", ".join(f"{prog} (package {pkg})" for prog, pkg in missing.items())
            )
            aliases = f" (alias {', '.join(spec.aliases)})" if spec.aliases else ""
            print(f"{name}{aliases}  [{spec.kind}]  {spec.summary}  -- {state}")
            for opt in spec.options:
                default = f" (default {opt.default})" if opt.default is not None else ""
                print(f"    --{opt.name}{default}  {opt.help}")
        return ExitCode.OK
    store = ToolStore(rdir)
    groups = [args.group] if args.group else store.groups()
    found = False
    for group in groups:
        tg = store.load(group)
        for host, entry in sorted(tg.hosts.items()):
            for tool, options in sorted(entry.tools.items()):
                if args.name and tool != args.name:
                    continue
                found = True
                opts = " ".join(f"--{k}={v}" for k, v in sorted(options.items()))
                labels = f" [{','.join(entry.labels)}]" if entry.labels else ""
                print(f"group: {group}; host: {host}{labels}; tool: {tool} {opts}".rstrip())
    if not found:
        what = f" named {args.name}" if args.name else ""
        where = f" in group {args.group}" if args.group else ""
        print(f"no tools{what} registered{where} (run dir {rdir})", file=sys.stderr)
    return ExitCode.OK


def clear_tools(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    hosts = parse_remotes(args.remotes) if args.remotes else None
    removed = ToolStore(rdir).clear(args.group, args.name, hosts)
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print("nothing to remove", file=sys.stderr)
    return ExitCode.OK


def tool_meister_start(
    rdir: Path, args: argparse.Namespace, tail: list[str], deadlines: Deadlines
) -> int:
    """Start a session agent, which starts Redis, the sink and the meisters."""
    import json
    import subprocess
    import sys as _sys

    from pbench_runner.bus import RUN_ID_ENV, new_run_id
    from pbench_runner.resultdir import make_result_dir

    group = ToolStore(rdir).load(args.group)
    if group.empty:
        raise UsageError(f"no tools are registered in group {args.group!r} (run dir {rdir})")
    if args.dir:
        result_dir = Path(args.dir).absolute()
        result_dir.mkdir(parents=True, exist_ok=True)
    else:
        result_dir = make_result_dir(rdir / "results", "pbench-session", "")
    run_id = new_run_id()
    argv = [
        _sys.executable,
        "-m",
        "pbench_runner.agent",
        "--run-dir",
        str(rdir),
        "--run-id",
        run_id,
        "--group",
        args.group,
        "--dir",
        str(result_dir),
        "--sysinfo",
        args.sysinfo,
        "--deadlines",
        json.dumps(deadlines.as_dict()),
    ]
    for plugin in args.plugins:
        argv += ["-p", plugin]
    agent = procs.spawn(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, RUN_ID_ENV: run_id},
        die_with_parent=False,
    )
    assert agent.stdout is not None
    try:
        with interruptible():
            line = agent.stdout.readline()  # the agent's own deadlines bound this wait
    except BaseException:
        procs.kill_run(run_id)
        session.remove(rdir, run_id)
        raise
    answer = json.loads(line) if line.strip() else {}
    if "ready" not in answer:
        procs.kill_run(run_id)
        session.remove(rdir, run_id)
        why = answer.get("error") or (
            f"the session agent exited ({agent.poll()}) before it was ready; see "
            f"{result_dir / 'tm' / 'agent.log'}"
        )
        if answer.get("exit") == ExitCode.USAGE_ERROR:
            raise UsageError(why)
        raise InfrastructureError(why)
    print(f"run id: {run_id}")
    print(f"result directory: {result_dir}")
    return ExitCode.OK


def _ask(rdir: Path, args: argparse.Namespace, payload: dict[str, Any]) -> tuple[Any, Any]:
    info = session.find(rdir, getattr(args, "run_id", None), getattr(args, "group", None))
    deadlines = info.deadlines
    timeout = max(deadlines.values()) + deadlines.get("shutdown", 5.0) + 10.0
    return info, session.request(info, payload, timeout)


def _check(answer: dict[str, Any]) -> None:
    if not answer.get("ok"):
        if answer.get("exit") == ExitCode.USAGE_ERROR:
            raise UsageError(answer.get("error", "refused"))
        raise InfrastructureError(answer.get("error", "failed"))


def _action(rdir: Path, args: argparse.Namespace, name: str) -> int:
    directory = Path(args.dir).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    _, answer = _ask(rdir, args, {"verb": name, "directory": str(directory)})
    _check(answer)
    return ExitCode.OK


def start_tools(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    return _action(rdir, args, "start")


def stop_tools(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    return _action(rdir, args, "stop")


def send_tools(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    return _action(rdir, args, "send")


def tool_meister_stop(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    info, answer = _ask(rdir, args, {"verb": "terminate", "sysinfo": args.sysinfo})
    # the agent answers just before it exits: wait for it, so nothing is left
    agent = info.pids.get("agent", 0)
    procs.wait_until(lambda: not procs.pid_alive(agent), info.deadlines.get("shutdown", 5.0))
    _check(answer)
    problems = answer.get("problems", [])
    for problem in problems:
        print(f"pbench: {problem}", file=sys.stderr)
    return ExitCode.INFRASTRUCTURE_ERROR if problems else ExitCode.OK


def kill(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    try:
        sessions = session.all_sessions(rdir)
    except SessionError as exc:
        print(f"pbench: {exc}", file=sys.stderr)
        sessions = []
    run_ids = [args.run_id] if args.run_id else [s.run_id for s in sessions]
    if not run_ids:
        print(f"no tool meister sessions in {rdir}", file=sys.stderr)
        return ExitCode.OK
    for run_id in run_ids:
        pids = procs.kill_run(run_id)
        session.remove(rdir, run_id)
        print(f"run {run_id}: stopped {len(pids)} process(es)" + (f": {pids}" if pids else ""))
    return ExitCode.OK
