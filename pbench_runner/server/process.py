"""``pbench server`` as a child process: for tests, benchmarks and scripts."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pbench_runner import procs
from pbench_runner.errors import StartupError


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def running_server(
    data_dir: Path, log: Path, *options: str, timeout: float = 20.0
) -> Iterator[ServerProcess]:
    """Start ``pbench server --port 0`` on 127.0.0.1; stop it (and all it started) at the end."""
    with open(log, "wb") as fh:
        proc = procs.spawn(
            [
                sys.executable,
                "-m",
                "pbench_runner",
                "server",
                "--port",
                "0",
                "--data-dir",
                str(data_dir),
                *options,
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        found: list[str] = []

        def listening() -> bool:
            found[:] = re.findall(r"listening on (http://\S+)", log.read_text())
            return bool(found) or proc.poll() is not None

        if not procs.wait_until(listening, timeout) or not found:
            raise StartupError(
                f"pbench server did not start within {timeout:g} s "
                f"(exit status {proc.poll()}); its log {log} ends with:\n{procs.tail(log, 20)}"
            )
        yield ServerProcess(found[0], proc, log)
    finally:
        procs.stop(proc, timeout=10)
