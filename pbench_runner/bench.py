"""What a benchmark function works with: the ``sample`` fixture.

::

    @pytest.mark.parametrize("block_size", ["4k", "1m"])
    def bench_dd(sample, block_size):
        out = sample.run(["dd", "if=/dev/zero", "of=/tmp/x", f"bs={block_size}", "count=256"])
        sample.record("throughput", parse(out), unit="MB/s", higher_is_better=True)

The function is called once per sample; ``sample`` always refers to the
sample being run.  Every sample is timed (wall and CPU seconds) whatever the
function records.
"""

from __future__ import annotations

import locale
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbench_runner import procs
from pbench_runner.errors import PbenchError


class CommandFailed(PbenchError):
    """A command run with ``sample.run`` exited non-zero or timed out."""


@dataclass
class Metric:
    value: float
    unit: str = ""
    higher_is_better: bool = False


@dataclass
class Sample:
    """One run of a benchmark function, with its own directory."""

    number: int
    directory: Path
    metrics: dict[str, Metric] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self, name: str, value: float, unit: str = "", higher_is_better: bool = False
    ) -> None:
        """Record a metric of this sample (one value per name and sample)."""
        if not name or "/" in name:
            raise ValueError(f"bad metric name {name!r}")
        self.metrics[name] = Metric(float(value), unit, higher_is_better)

    def run(
        self,
        command: Sequence[str] | str,
        *,
        timeout: float | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run a command (a list, or a string for the shell); return its stdout.

        Its output is kept in the sample directory.  A non-zero exit status or
        a timeout raises :class:`CommandFailed` unless ``check`` is false.
        """
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        n = len(self.commands) + 1
        self.directory.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **(env or {})}
        try:
            # its own process group: a shell's children go with it on a timeout
            proc = procs.spawn(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=None,
                env=full_env,
            )
        except OSError as exc:
            raise CommandFailed(f"cannot run {_show(command)}: {exc}") from exc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            procs.stop(proc, sig=signal.SIGKILL)
            proc.communicate()
            raise CommandFailed(f"{_show(command)} did not finish within {timeout:g} s") from exc
        except BaseException:  # the sample's own timeout, ^C: nothing is left running
            procs.stop(proc, sig=signal.SIGKILL)
            proc.communicate()
            raise
        finally:
            procs.stop(proc, timeout=3)  # what it left in the background
        stdout, stderr = _text(out), _text(err)
        (self.directory / f"command{n}.stdout").write_text(stdout)
        (self.directory / f"command{n}.stderr").write_text(stderr)
        self.commands.append({"command": _show(command), "exit_status": proc.returncode})
        if check and proc.returncode != 0:
            tail = "\n".join(stderr.strip().splitlines()[-5:])
            raise CommandFailed(
                f"{_show(command)} exited with status {proc.returncode}"
                + (f"; its stderr ends with:\n{tail}" if tail else "")
            )
        return stdout


def _text(data: bytes) -> str:
    """Output as ``Popen(text=True)`` gives it: locale-decoded, universal newlines."""
    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _show(command: Sequence[str] | str) -> str:
    return command if isinstance(command, str) else shlex.join(command)


class SampleHandle:
    """The ``sample`` fixture: stands for whichever sample is running."""

    def __init__(self) -> None:
        self.current: Sample | None = None

    def _sample(self) -> Sample:
        if self.current is None:
            raise RuntimeError("the sample fixture is only usable inside a benchmark function")
        return self.current

    @property
    def number(self) -> int:
        return self._sample().number

    @property
    def directory(self) -> Path:
        return self._sample().directory

    def record(
        self, name: str, value: float, unit: str = "", higher_is_better: bool = False
    ) -> None:
        self._sample().record(name, value, unit, higher_is_better)

    def run(self, command: Sequence[str] | str, **kwargs: Any) -> str:
        return self._sample().run(command, **kwargs)
