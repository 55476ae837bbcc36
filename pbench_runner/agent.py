"""The session agent: keeps a tool meister session alive between pbench commands.

``pbench tool-meister-start`` starts one agent per session, in its own
process session.  The agent runs the :class:`~pbench_runner.controller.Controller`
(Redis, the sink and the meisters die with it, even on SIGKILL) and serves the
later lifecycle verbs over a Unix socket next to the session file, one JSON
line per request and per answer::

    -> {"verb": "start", "directory": "/abs/dir", "args": {}}
    <- {"ok": true, "result": {...}}            or {"ok": false, "error": "...", "exit": 4}

Requests are served one at a time, so two commands never race for a session.
``terminate`` stops everything, answers, and ends the agent.

Run as ``python -m pbench_runner.agent`` by tool-meister-start only: its first
line on stdout is ``{"ready": RUN_ID}`` or ``{"error": MESSAGE}``; after that
it writes to ``tm/agent.log``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from pbench_runner import procs, session
from pbench_runner.config import Deadlines
from pbench_runner.controller import Controller
from pbench_runner.errors import InfrastructureError, Interrupted, PbenchError
from pbench_runner.exitcodes import ExitCode
from pbench_runner.interrupts import interruptible
from pbench_runner.remote.options import RemoteOptions
from pbench_runner.toolstore import ToolStore

log = logging.getLogger("pbench.agent")


class Agent:
    """Owns one session's controller and answers the lifecycle verbs."""

    def __init__(self, rdir: Path, ctl: Controller) -> None:
        self.rdir = rdir
        self.ctl = ctl
        self.socket_path = _socket_path(session.sessions_dir(rdir), ctl.run_id)
        self.listener: socket.socket | None = None

    def save(self, info: session.SessionInfo | None = None) -> None:
        info = info or self.ctl.session_info()
        info.pids["agent"] = os.getpid()
        info.socket = str(self.socket_path)
        session.save(self.rdir, info)

    def listen(self) -> None:
        self.socket_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        self.listener.listen(16)

    def serve(self) -> None:
        """Answer requests until ``terminate``."""
        assert self.listener is not None
        while True:
            conn, _ = self.listener.accept()
            with conn:
                try:
                    request = json.loads(session.read_line(conn))
                except (OSError, ValueError) as exc:
                    log.warning("bad request: %s", exc)
                    continue
                answer = self.handle(request)
                try:
                    conn.sendall(json.dumps(answer).encode() + b"\n")
                except OSError as exc:  # the command went away (Ctrl-C); its action is done
                    log.warning("could not answer %s: %s", request.get("verb"), exc)
            if request.get("verb") == "terminate":
                return

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        verb = str(request.get("verb"))
        try:
            if verb == "terminate":
                return {"ok": True, "problems": self.terminate(request.get("sysinfo", "none"))}
            result = self.ctl.run_action(verb, request["directory"], request.get("args"))
            return {"ok": True, "result": json.loads(result.dumps())}
        except PbenchError as exc:
            return {"ok": False, "error": str(exc), "exit": _exit_for(exc)}

    def terminate(self, sysinfo: str) -> list[str]:
        problems: list[str] = []
        try:
            problems.extend(self.ctl.collect_sysinfo("end", sysinfo))
        except PbenchError as exc:
            problems.append(str(exc))  # stopping comes first
        problems.extend(self.ctl.stop())
        return problems

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self.socket_path.unlink(missing_ok=True)
        session.remove(self.rdir, self.ctl.run_id)


def _socket_path(sessions: Path, run_id: str) -> Path:
    """Beside the session file, unless that path is too long for a Unix socket."""
    path = sessions / f"{run_id}.sock"
    if len(str(path)) < 100:
        return path
    return Path(tempfile.gettempdir()) / f"pbench-{os.getuid()}" / f"{run_id}.sock"


def _announce(message: dict[str, Any]) -> None:
    """The one line tool-meister-start waits for; then stdout goes to the log."""
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pbench-session-agent")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--sysinfo", default="none")
    parser.add_argument("--deadlines", required=True, help="JSON of Deadlines")
    parser.add_argument("-p", dest="plugins", action="append", default=[])
    parser.add_argument("--remote", default="{}", help="JSON of RemoteOptions")
    parser.add_argument("--on-host-failure", default="abort")
    args = parser.parse_args(argv)
    tm_dir = args.dir / "tm"
    tm_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s agent %(levelname)s %(message)s",
        filename=tm_dir / "agent.log",
    )
    group = ToolStore(args.run_dir).load(args.group)
    ctl = Controller(
        group,
        tm_dir,
        deadlines=Deadlines(**json.loads(args.deadlines)),
        plugins=args.plugins,
        result_dir=args.dir,
        run_id=args.run_id,
        remote=RemoteOptions.from_dict(json.loads(args.remote)),
        on_host_failure=args.on_host_failure,
    )
    agent = Agent(args.run_dir, ctl)
    ctl.on_spawn = agent.save  # on disk from the first process on, for `pbench kill`
    try:
        with interruptible():
            agent.listen()
            ctl.start()
            problems = ctl.collect_sysinfo("beg", args.sysinfo)
            agent.save()
            _announce({"ready": ctl.run_id, "problems": problems})
            _redirect_output(tm_dir / "agent.log")
            agent.serve()
    except Interrupted as exc:
        log.info("%s: stopping the session", exc)
        ctl.stop(quiet=True)
    except BaseException as exc:
        ctl.stop(quiet=True)
        agent.close()
        _announce({"error": str(exc), "exit": _exit_for(exc)})
        return _exit_for(exc)
    agent.close()
    return 0


def _exit_for(exc: BaseException) -> int:
    if isinstance(exc, InfrastructureError):
        return int(ExitCode.INFRASTRUCTURE_ERROR)
    if isinstance(exc, PbenchError):
        return int(ExitCode.USAGE_ERROR)
    return 1


def _redirect_output(log_file: Path) -> None:
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


if __name__ == "__main__":
    procs.fast_exit(main())
