"""A base for tools that are one long-running command (the sysstat tools)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import IO, Any

from pbench_runner import procs
from pbench_runner.errors import InfrastructureError
from pbench_runner.tools import ToolContext


class ToolFailed(InfrastructureError):
    """A tool could not start, or died while it should have been running."""

    def __init__(self, host: str, tool: str, what: str, stderr_tail: str = "") -> None:
        self.host, self.tool = host, tool
        msg = f"tool {tool!r} on host {host}: {what}"
        if stderr_tail.strip():
            msg += "\n    last lines of its stderr:\n" + "\n".join(
                "      " + line for line in stderr_tail.splitlines()
            )
        super().__init__(msg)


class CommandTool:
    """Runs ``argv()`` from start to stop, its output in ``ctx.outdir``.

    ``<tool>-stdout.txt`` holds the raw output and ``<tool>-stderr.txt`` the
    errors.  Subclasses set :meth:`argv` and usually :meth:`postprocess`.
    """

    #: environment for every command tool: stable number and time formats
    ENV: Mapping[str, str] = {"LC_ALL": "C", "S_TIME_FORMAT": "ISO"}
    #: signal that makes the program flush and exit
    stop_signal: int = 15

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._err: IO[bytes] | None = None

    @property
    def stdout_path(self) -> os.PathLike[str]:
        return self.ctx.outdir / f"{self.ctx.tool}-stdout.txt"

    @property
    def stderr_path(self) -> os.PathLike[str]:
        return self.ctx.outdir / f"{self.ctx.tool}-stderr.txt"

    def argv(self) -> Sequence[str]:
        raise NotImplementedError

    def interval(self) -> int:
        return int(self.ctx.options.get("interval", 3))

    def start(self) -> Mapping[str, Any] | None:
        self.ctx.outdir.mkdir(parents=True, exist_ok=True)
        argv = list(self.argv())
        (self.ctx.outdir / f"{self.ctx.tool}.cmd").write_text(" ".join(argv) + "\n")
        # Held open from start to stop; closed by _close() on every path.
        self._out = open(self.stdout_path, "wb")  # noqa: SIM115
        self._err = open(self.stderr_path, "wb")  # noqa: SIM115
        env = {**os.environ, **self.ENV}
        try:
            self.proc = procs.spawn(argv, stdout=self._out, stderr=self._err, env=env)
        except OSError as exc:
            self._close()
            raise ToolFailed(self.ctx.host, self.ctx.tool, f"cannot run {argv[0]}: {exc}") from exc
        status = self.proc.poll()
        if status is not None:
            self._close()
            raise ToolFailed(
                self.ctx.host,
                self.ctx.tool,
                f"exited at start with status {status}",
                procs.tail(self.ctx.outdir / f"{self.ctx.tool}-stderr.txt"),
            )
        return {"pid": self.proc.pid}

    def stop(self) -> None:
        if self.proc is None:
            return
        died = self.proc.poll()
        procs.stop(self.proc, sig=self.stop_signal)
        self._close()
        if died is not None and died != 0:
            raise ToolFailed(
                self.ctx.host,
                self.ctx.tool,
                f"died during the sample with exit status {died}",
                procs.tail(self.ctx.outdir / f"{self.ctx.tool}-stderr.txt"),
            )

    def postprocess(self) -> None:
        """Nothing beyond the raw output by default."""

    def _close(self) -> None:
        for fh in (self._out, self._err):
            if fh is not None:
                fh.close()
        self._out = self._err = None
