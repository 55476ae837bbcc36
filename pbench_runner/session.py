"""A running tool meister session, saved so that later commands can reach it.

``pbench tool-meister-start`` starts a session agent (:mod:`pbench_runner.agent`)
that writes ``<run-dir>/sessions/<run-id>.json`` (mode 0600) and listens on ``<run-id>.sock`` beside it.  ``start-tools``,
``stop-tools``, ``send-tools`` and ``tool-meister-stop`` send it requests
through :func:`request`; ``kill`` uses the pids in the file.  This module is
kept light: those commands import nothing else of weight.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pbench_runner.errors import SessionError


@dataclass
class SessionInfo:
    run_id: str
    group: str
    redis_url: str
    hosts: list[str]
    tm_dir: str
    result_dir: str
    deadlines: dict[str, float]
    pids: dict[str, int] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    #: the session agent's Unix socket
    socket: str = ""
    #: remote hosts: how to reach them again (``pbench kill``)
    remotes: dict[str, Any] = field(default_factory=dict)


def sessions_dir(run_dir: Path) -> Path:
    return run_dir / "sessions"


def save(run_dir: Path, info: SessionInfo) -> Path:
    directory = sessions_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{info.run_id}.json"
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(info), fh, indent=2)
    os.replace(path.with_suffix(".tmp"), path)
    return path


def remove(run_dir: Path, run_id: str) -> None:
    """Forget a session: its file and its agent's socket."""
    path = sessions_dir(run_dir) / f"{run_id}.json"
    try:
        sock = json.loads(path.read_text()).get("socket", "")
    except (OSError, ValueError):
        sock = ""
    if sock:
        Path(sock).unlink(missing_ok=True)
    path.unlink(missing_ok=True)


def all_sessions(run_dir: Path) -> list[SessionInfo]:
    found = []
    for path in sorted(sessions_dir(run_dir).glob("*.json")):
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            found.append(SessionInfo(**data))
        except (OSError, ValueError, TypeError) as exc:
            raise SessionError(f"session file {path} is unreadable ({exc}); remove it") from exc
    return found


def find(run_dir: Path, run_id: str | None = None, group: str | None = None) -> SessionInfo:
    """The one session matching ``run_id`` / ``group``; an error names the choices."""
    sessions = all_sessions(run_dir)
    matches = [
        s
        for s in sessions
        if (run_id is None or s.run_id == run_id) and (group is None or s.group == group)
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        what = f"run id {run_id}" if run_id else f"tool group {group}" if group else "any"
        raise SessionError(
            f"no tool meister session for {what} in {run_dir}; "
            "start one with `pbench tool-meister-start`"
        )
    listed = ", ".join(f"{s.run_id} (group {s.group})" for s in matches)
    raise SessionError(f"several tool meister sessions are running: {listed}; choose with --run-id")


def request(info: SessionInfo, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one request to the session's agent and return its answer."""
    import socket as _socket

    with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        try:
            conn.connect(info.socket)
            conn.sendall(json.dumps(payload).encode() + b"\n")
            data = read_line(conn)
        except _socket.timeout as exc:
            raise SessionError(
                f"the session agent of run {info.run_id} did not answer within {timeout:g} s"
            ) from exc
        except OSError as exc:
            raise SessionError(
                f"the session agent of run {info.run_id} is not running ({exc}); "
                "`pbench kill` cleans up what is left"
            ) from exc
    if not data:
        raise SessionError(
            f"the session agent of run {info.run_id} ended without answering; see "
            f"{Path(info.tm_dir) / 'agent.log'}; `pbench kill` cleans up what is left"
        )
    answer: dict[str, Any] = json.loads(data)
    return answer


def read_line(conn: Any) -> bytes:
    """One newline-terminated message from a socket (less if it closes first)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
