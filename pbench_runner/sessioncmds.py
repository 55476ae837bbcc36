"""The handlers of the session verbs: tool-meister-start and -stop, the
start/stop/send verbs, and kill.

Kept light on imports: every verb but tool-meister-start only talks to the
session agent over its socket.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pbench_runner import procs, session
from pbench_runner.config import Deadlines
from pbench_runner.errors import InfrastructureError, SessionError, UsageError
from pbench_runner.exitcodes import ExitCode
from pbench_runner.interrupts import interruptible


def tool_meister_start(
    rdir: Path, args: argparse.Namespace, tail: list[str], deadlines: Deadlines
) -> int:
    """Start a session agent, which starts Redis, the sink and the meisters."""
    import json
    import subprocess
    import sys as _sys

    from pbench_runner.bus import RUN_ID_ENV, new_run_id
    from pbench_runner.cli import remote_options
    from pbench_runner.resultdir import make_result_dir
    from pbench_runner.toolstore import ToolStore

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
        "--remote",
        json.dumps(remote_options(args).to_dict()),
        "--on-host-failure",
        args.on_host_failure,
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
        answer.setdefault(
            "error",
            f"the session agent exited ({agent.poll()}) before it was ready; see "
            f"{result_dir / 'tm' / 'agent.log'}",
        )
        _check(answer)
    for problem in answer.get("problems", []):
        print(f"pbench: {problem}", file=sys.stderr)
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
    if name == "send":  # what every host did during the sample
        from pbench_runner.benchreport import host_lines

        for line in host_lines(answer.get("result", {}).get("hosts", {})):
            print(line)
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
    remotes = {s.run_id: s.remotes for s in sessions if s.remotes}
    for run_id in run_ids:
        if run_id in remotes:  # first, while the session's own SSH connections may hang
            from pbench_runner.remote.hosts import kill_run as kill_remote

            for line in kill_remote(run_id, remotes[run_id]):
                print(f"run {run_id}: {line}")
        pids = procs.kill_run(run_id)
        print(f"run {run_id}: stopped {len(pids)} process(es)" + (f": {pids}" if pids else ""))
        session.remove(rdir, run_id)
    return ExitCode.OK
