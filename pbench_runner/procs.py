"""Starting and stopping child processes so that none is ever left behind.

Every child runs in its own session (its own process group), so stopping it
stops everything it started.  By default a child also gets the kernel's
parent-death signal: if the process that started it dies, even by SIGKILL,
the child gets SIGTERM.  Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

_PR_SET_PDEATHSIG = 1
_libc: Any = None


def _prctl_pdeathsig(sig: int) -> None:
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util

        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    _libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def die_with_parent(parent_pid: int) -> None:
    """In a freshly forked child: get SIGTERM when the parent dies."""
    _prctl_pdeathsig(signal.SIGTERM)
    # The parent may have died between fork and prctl.
    if os.getppid() != parent_pid:
        os._exit(1)


#: signals held back while forking, so that their Python handlers never run
#: inside fork bookkeeping (where an exception would be swallowed)
_HELD = frozenset({signal.SIGINT, signal.SIGTERM})


def _child_setup(die: bool, parent_pid: int, mask: Iterable[int]) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    os.setsid()
    if die:
        die_with_parent(parent_pid)


def spawn(
    argv: Sequence[str],
    *,
    stdout: IO[Any] | int | None = subprocess.DEVNULL,
    stderr: IO[Any] | int | None = subprocess.DEVNULL,
    stdin: IO[Any] | int | None = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    die_with_parent: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new process group.

    With ``die_with_parent`` the child is sent SIGTERM when this process
    (strictly: the thread that called ``spawn``) exits.  util-linux's
    ``setpriv --pdeathsig`` arranges that, which keeps Popen on its fast
    path (no Python code between fork and exec: 0.3 ms, not 11 ms).
    """
    common: dict[str, Any] = {
        "stdin": stdin,
        "stdout": stdout,
        "stderr": stderr,
        "env": dict(env) if env is not None else None,
        "cwd": cwd,
        "close_fds": True,
    }
    if not die_with_parent:
        return subprocess.Popen(list(argv), start_new_session=True, **common)
    setpriv = _setpriv()
    if setpriv:
        _check_runnable(argv[0], common["env"], cwd)
        # setpriv sets the parent-death signal and execs; if this process
        # died before that, the child was already re-parented and would never
        # get the signal.  The shell, exec'd after prctl, checks its parent.
        argv = [
            setpriv,
            "--pdeathsig",
            "TERM",
            "--",
            "/bin/sh",
            "-c",
            _PARENT_CHECK,
            str(os.getpid()),
            *argv,
        ]
        return subprocess.Popen(argv, start_new_session=True, **common)
    # No setpriv: prctl in the child.  Signals are held meanwhile, so that a
    # Python handler never runs inside fork bookkeeping and gets swallowed.
    parent = os.getpid()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        return subprocess.Popen(
            list(argv), preexec_fn=lambda: _child_setup(True, parent, mask), **common
        )
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


#: run by ``/bin/sh -c`` with the parent's pid as ``$0``: exec the command
#: only if that parent is still alive (``$PPID`` is read at shell start)
_PARENT_CHECK = '[ "$PPID" = "$0" ] || exit 1; exec "$@"'


def _check_runnable(program: str, env: Mapping[str, str] | None, cwd: Path | str | None) -> None:
    """Raise the error ``exec`` would for a program that cannot be run.

    Behind setpriv and the shell, a program that cannot be run is only an
    exit status of 127; callers get the OSError that Popen would raise.
    """
    if "/" in program:
        path = os.path.join(cwd or "", program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return
        if os.path.exists(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), program)
    elif shutil.which(program, path=os.pathsep.join(os.get_exec_path(env))) is not None:
        return
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


@functools.cache
def _setpriv() -> str | None:
    path = shutil.which("setpriv")
    if path is None:
        return None
    probe = subprocess.run([path, "--help"], capture_output=True, text=True, check=False)
    return path if "--pdeathsig" in probe.stdout else None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            state = fh.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False if it no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while any process of group ``pgid`` exists (zombies excluded)."""
    return any(pid_alive(pid) for pid in pids_in_group(pgid))


def _stats() -> Iterator[tuple[int, list[str]]]:
    """Every process's ``/proc/<pid>/stat`` fields after its name: state, ppid, pgrp, ..."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        if len(fields) > 12:
            yield int(entry), fields


def pids_in_group(pgid: int) -> list[int]:
    return [pid for pid, fields in _stats() if int(fields[2]) == pgid]


def wait_quiet(pgids: Iterable[int], timeout: float, interval: float = 0.005) -> bool:
    """Wait until every process of the groups ``pgids`` sleeps and has stopped
    using CPU (the same CPU time at two polls in a row); False past ``timeout``.

    A tool just started (a fork and a few execs, its first reading) would
    otherwise spend its start-up inside the sample it is to watch.
    """
    groups = {str(g) for g in pgids}
    if not groups:
        return True
    last = -1

    def quiet() -> bool:
        nonlocal last
        busy, ticks = False, 0
        for _, fields in _stats():
            if fields[2] in groups:
                ticks += int(fields[11]) + int(fields[12])
                busy = busy or fields[0] in ("R", "D")
        settled = not busy and ticks == last
        last = ticks
        return settled

    return wait_until(quiet, timeout, interval)


def stop(
    proc: subprocess.Popen[Any],
    *,
    sig: int = signal.SIGTERM,
    timeout: float = 5.0,
) -> int | None:
    """Stop ``proc`` and its whole process group; return its exit status.

    Sends ``sig`` to the group, waits up to ``timeout`` seconds, then sends
    SIGKILL to whatever of the group is left.  Never raises for a process
    that is already gone.
    """
    pgid = proc.pid
    if proc.poll() is None or group_alive(pgid):
        signal_group(pgid, sig)
    deadline = time.monotonic() + timeout
    wait_all([proc], timeout)
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)
    if proc.poll() is None or group_alive(pgid):
        signal_group(pgid, signal.SIGKILL)
        try:
            proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            return None
    return proc.returncode


def wait_until(predicate: Any, timeout: float, interval: float = 0.01) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def tail(path: Path, lines: int = 10) -> str:
    """The last ``lines`` lines of a log file, or '' when it does not exist."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _environ_has(pid: int, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return needle in fh.read().split(b"\0")
    except OSError:
        return False


def run_pids(run_id: str, env_name: str = "PBENCH_RUN_ID") -> list[int]:
    """Every live process of run ``run_id``: by its environment, or by its title.

    (redis-server overwrites its environment; its title carries ``pbench-run=ID``.)
    """
    needle = f"{env_name}={run_id}".encode()
    title = f"pbench-run={run_id}"
    me = os.getpid()
    ancestors = {me, os.getppid()}
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit()
        and int(entry) not in ancestors
        and pid_alive(int(entry))
        and (_environ_has(int(entry), needle) or cmdline(int(entry)).endswith(title))
    ]


def kill_run(run_id: str, timeout: float = 5.0, env_name: str = "PBENCH_RUN_ID") -> list[int]:
    """SIGTERM, then SIGKILL, every process of run ``run_id``; returns their pids."""
    pids = run_pids(run_id, env_name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout)
    for pid in pids:
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(pid_alive(p) for p in pids), 2.0)
    return pids


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def wait_all(children: Sequence[subprocess.Popen[Any]], timeout: float) -> bool:
    """Wait until every child has exited or ``timeout`` passes; True if all exited.

    Uses pidfds, so it wakes the moment a child exits instead of polling.
    """
    import select

    deadline = time.monotonic() + timeout
    pending = [p for p in children if p.poll() is None]
    fds: dict[int, subprocess.Popen[Any]] = {}
    try:
        for proc in pending:
            # Already reaped, or no pidfd support: the loop below polls instead.
            with contextlib.suppress(OSError, AttributeError):
                fds[os.pidfd_open(proc.pid)] = proc
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        while any(p.poll() is None for p in pending):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if fds:
                for fd, _ in poller.poll(min(remaining, 0.05) * 1000):
                    poller.unregister(fd)
                    fds[fd].poll()
            else:
                time.sleep(min(remaining, 0.01))
        return True
    finally:
        for fd in fds:
            os.close(fd)


def fast_exit(status: int) -> None:
    """Exit without the interpreter's teardown, once every resource is released.

    Tearing down CherryPy's and redis-py's modules costs a tenth of a second,
    which every run would otherwise pay at tool-meister-stop.
    """
    import logging
    import sys

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
