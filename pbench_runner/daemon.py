"""A tool's server program: pmcd, node_exporter, Prometheus, pmlogger.

:class:`Daemon` starts the program in its own process group (it dies with
its parent), on a free port when it serves one, and waits until it is ready:
until it accepts TCP connections, or until a check of the caller's says so.
A program that exits while starting, or that loses the race for its port, is
tried again on another port; otherwise it is reported with the last lines of
its log.  ``stop`` signals it and says whether it had died on its own.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from pbench_runner import procs
from pbench_runner.commandtool import ToolFailed
from pbench_runner.netutil import free_port

#: words in a log that mean the port was taken between our check and its bind
_PORT_TAKEN = ("address already in use", "eaddrinuse", "can't open any request ports")


def accepts(address: str, port: int) -> bool:
    """True when something accepts TCP connections on ``address:port``."""
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


class Daemon:
    """One server program of one tool on one host."""

    def __init__(
        self,
        host: str,
        tool: str,
        program: str,
        log_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.host, self.tool, self.program = host, tool, program
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self._log: IO[bytes] | None = None

    def start(
        self,
        argv: Callable[[int], Sequence[str]],
        address: str = "127.0.0.1",
        timeout: float = 15.0,
        attempts: int = 3,
        ready: Callable[[int], bool] | None = None,
    ) -> int:
        """Start ``argv(port)`` on a free port of ``address``; return the port.

        With ``ready``, ``ready(port)`` decides when the program is up instead
        of a TCP connection to the port.
        """
        for attempt in range(1, attempts + 1):
            port = free_port(address)
            self._spawn(argv(port))
            assert self.proc is not None
            is_up = ready or (lambda p: accepts(address, p))
            if self._wait_up(port, is_up, timeout):
                self.port = port
                return port
            status = self.proc.poll()
            procs.stop(self.proc)
            self._close()
            log = procs.tail(self.log_path)
            if status is None:
                raise ToolFailed(
                    self.host, self.tool, f"{self.program} was not ready within {timeout:g} s", log
                )
            if attempt < attempts and any(w in log.lower() for w in _PORT_TAKEN):
                continue  # lost the race for the port: another one
            raise ToolFailed(
                self.host, self.tool, f"{self.program} exited at start with status {status}", log
            )
        raise AssertionError("unreachable")

    def _wait_up(self, port: int, is_up: Callable[[int], bool], timeout: float) -> bool:
        """True once ``is_up(port)``; False if the program exits or ``timeout`` passes first."""
        proc = self.proc
        assert proc is not None
        # poll() sets returncode once the program has exited
        settled = procs.wait_until(lambda: proc.poll() is not None or is_up(port), timeout, 0.02)
        return settled and proc.returncode is None

    def _spawn(self, argv: Sequence[str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed by _close)
        env = {**os.environ, "LC_ALL": "C", **(self.env or {})}
        try:
            self.proc = procs.spawn(argv, stdout=self._log, stderr=self._log, env=env)
        except OSError as exc:
            self._close()
            raise ToolFailed(self.host, self.tool, f"cannot run {argv[0]}: {exc}") from exc

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check(self) -> None:
        """Raise :class:`ToolFailed` if the program has died by itself (it stays stopped)."""
        if self.proc is not None:
            self._raise_if_died(self.proc.poll())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Stop the program; raise :class:`ToolFailed` if it had died by itself."""
        if self.proc is None:
            return
        died = self.proc.poll()
        procs.stop(self.proc, sig=sig, timeout=timeout)
        self._close()
        self.proc = None
        self._raise_if_died(died)

    def _raise_if_died(self, status: int | None) -> None:
        if status is not None:
            raise ToolFailed(
                self.host,
                self.tool,
                f"{self.program} died while it should have been running (exit status {status})",
                procs.tail(self.log_path),
            )

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
