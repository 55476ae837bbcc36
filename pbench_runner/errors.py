"""Every error pbench_runner raises on purpose.

::

    PbenchError                     base; ``str(exc)`` is a message for a person
    ├── UsageError                  bad command line or configuration
    │   ├── ToolStoreError          unknown tool, bad option, bad host, corrupt store
    │   └── SessionError            no tool meister session, or an ambiguous one
    ├── InfrastructureError         a part of the run failed
    │   ├── ProgramMissing          a tool's program is not installed on a host
    │   ├── RedisError              redis-server would not start or answer
    │   ├── StartupError            the sink or a meister did not come up
    │   │   └── RemoteHostError     a remote host could not be reached or prepared
    │   ├── ActionError             start/stop/send failed on one or more hosts
    │   ├── DeadlineExceeded        a wait ran out; names who did not answer
    │   └── UploadError             a result did not reach the results server
    ├── TransferError               tool data could not be delivered to the sink
    └── Interrupted                 SIGINT or SIGTERM arrived; the run cleans up

Low-level exceptions are always chained (``raise ... from exc``) so the user
sees both what failed and why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class PbenchError(Exception):
    """Base of every error pbench_runner raises on purpose."""


class UsageError(PbenchError):
    """The command line, the configuration or an input file is wrong."""


class ToolStoreError(UsageError):
    """A registration was refused or the tool store cannot be read."""


class SessionError(UsageError):
    """No running tool meister session matches what was asked."""


class InfrastructureError(PbenchError):
    """A part of the run (Redis, the sink, a meister, a tool) failed."""


class ProgramMissing(InfrastructureError):
    """A registered tool cannot run because its program is missing."""

    def __init__(self, host: str, tool: str, program: str, package: str) -> None:
        self.host, self.tool, self.program, self.package = host, tool, program, package
        super().__init__(
            f"host {host}: tool {tool!r} needs the program {program!r}, which is not "
            f"installed; install the package {package!r} on {host}"
        )


class RedisError(InfrastructureError):
    """The private redis-server could not be started or reached."""


class StartupError(InfrastructureError):
    """The Tool Data Sink or a Tool Meister did not report ready."""


class RemoteHostError(StartupError):
    """One remote host failed a step (SSH, Python, the bundle); names the host and why."""

    def __init__(self, host: str, reason: str) -> None:
        self.host, self.reason = host, reason
        super().__init__(f"host {host}: {reason}")


class ActionError(InfrastructureError):
    """An action (start, stop, send, sysinfo) failed on one or more hosts.

    ``failures`` maps a host to the messages it reported (tool name first).
    """

    def __init__(self, action: str, failures: Mapping[str, Sequence[str]]) -> None:
        self.action = action
        self.failures = {host: list(msgs) for host, msgs in failures.items()}
        lines = [f"{action} failed on {len(self.failures)} host(s):"]
        for host, msgs in sorted(self.failures.items()):
            for msg in msgs or ["(no detail)"]:
                named = msg.startswith(f"host {host}:") or f"on host {host}:" in msg
                lines.append(f"  {msg}" if named else f"  host {host}: {msg}")
        super().__init__("\n".join(lines))


class DeadlineExceeded(InfrastructureError):
    """A wait ran out of time; ``missing`` names who did not answer."""

    def __init__(self, what: str, seconds: float, missing: Sequence[str]) -> None:
        self.what, self.seconds, self.missing = what, seconds, list(missing)
        who = ", ".join(self.missing) if self.missing else "nobody identified"
        super().__init__(f"{what}: no answer within {seconds:g} s from: {who}")


class UploadError(InfrastructureError):
    """``move-results`` / ``copy-results``: a result could not be uploaded."""


class TransferError(PbenchError):
    """Tool data could not be delivered to the Tool Data Sink."""


class Interrupted(PbenchError):
    """The run got SIGINT or SIGTERM; it stops its tools and keeps what it has."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
