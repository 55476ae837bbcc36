"""The session agent: keeps a tool meister session alive between pbench commands.

``pbench tool-meister-start`` starts one agent per session, in its own
process session.  The agent holds the session's :class:`~pbench_runner.run.Run` and its
controller (Redis, the sink and the meisters die with it, even on SIGKILL) and serves the
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
from pbench_runner.errors import Interrupted, PbenchError, UsageError
from pbench_runner.exitcodes import ExitCode, for_error
from pbench_runner.interrupts import interruptible
from pbench_runner.remote.options import RemoteOptions
from pbench_runner.run import Run, RunOptions, SampleActions

log = logging.getLogger("pbench.agent")


class Agent:
    """Owns one session's run and answers the lifecycle verbs, each through
    the run protocol's sample actions (:class:`~pbench_runner.run.SampleActions`)."""

    def __init__(self, rdir: Path, run: Run) -> None:
        self.rdir = rdir
        self.run = run
        self.socket_path = _socket_path(session.sessions_dir(rdir), run.run_id)
        self.listener: socket.socket | None = None
        #: directory -> its sample, from start-tools to send-tools
        self.samples: dict[str, SampleActions] = {}
        self.started = 0
        #: problems already told (in the ready answer)
        self.told = 0

    def save(self, info: session.SessionInfo | None = None) -> None:
        if info is None:
            assert self.run.ctl is not None
            info = self.run.ctl.session_info()
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
            if verb not in ("start", "stop", "send"):
                raise UsageError(f"the session agent has no verb {verb!r}")
            return self.act(verb, str(request["directory"]))
        except PbenchError as exc:
            return {"ok": False, "error": str(exc), "exit": int(for_error(exc))}
        except Exception as exc:  # a bug answers this request; the session goes on
            log.exception("%s failed", verb)
            return {"ok": False, "error": f"{verb}: {type(exc).__name__}: {exc}", "exit": 4}

    def act(self, verb: str, directory: str) -> dict[str, Any]:
        """start-tools, stop-tools or send-tools for one sample directory."""
        sample = self.samples.get(directory)
        if sample is None:
            if verb == "start":
                self.started += 1
            sample = self.run.actions(Path(directory), self.started)
            self.samples[directory] = sample
        problems = len(sample.record.tool_problems)
        if verb == "start":
            sample.start()
        elif verb == "stop":
            sample.stop()
        else:
            sample.send()
        new = sample.record.tool_problems[problems:]
        if verb == "send" and not new:  # sent: the sample is done (a failed send may be retried)
            sample.finish()
            del self.samples[directory]
        if new:  # the sample is marked; the verb says so
            return {
                "ok": False,
                "error": "\n".join(new),
                "exit": int(ExitCode.INFRASTRUCTURE_ERROR),
            }
        return {"ok": True, "result": {"hosts": sample.record.hosts} if verb == "send" else {}}

    def terminate(self, sysinfo: str) -> list[str]:
        """What the end of the session found (the verbs told their own problems)."""
        self.told = len(self.run.problems)
        for sample in self.samples.values():  # never sent: their records end here
            sample.finish()
        self.samples.clear()
        self.run.opts.sysinfo = sysinfo
        self.run.close()
        return self.run.problems[self.told :]

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self.socket_path.unlink(missing_ok=True)
        session.remove(self.rdir, self.run.run_id)


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
    opts = RunOptions(
        script="pbench-session",
        run_dir=args.run_dir,
        group=args.group,
        sysinfo=args.sysinfo,
        plugins=args.plugins,
        deadlines=Deadlines(**json.loads(args.deadlines)),
        remote=RemoteOptions.from_dict(json.loads(args.remote)),
        on_host_failure=args.on_host_failure,
        result_dir=args.dir,
        records=False,
        run_id=args.run_id,
    )
    run = Run(opts, say=log.info)
    agent = Agent(args.run_dir, run)
    opts.on_spawn = agent.save  # on disk from the first process on, for `pbench kill`
    try:
        with interruptible():
            agent.listen()
            run.open()
            agent.save()
            agent.told = len(run.problems)
            _announce({"ready": run.run_id, "problems": run.problems})
            _redirect_output(tm_dir / "agent.log")
            agent.serve()
    except Interrupted as exc:
        log.info("%s: stopping the session", exc)
        run.close(exc)
    except BaseException as exc:
        run.close(exc)
        agent.close()
        _announce({"error": str(exc), "exit": int(for_error(exc))})
        return int(for_error(exc))
    agent.close()
    return 0


def _redirect_output(log_file: Path) -> None:
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


if __name__ == "__main__":
    procs.fast_exit(main())
