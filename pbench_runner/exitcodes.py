"""The exit statuses of the ``pbench`` command."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """What ``pbench`` exits with (``user-benchmark`` passes its command's status on)."""

    #: everything worked
    OK = 0
    #: a benchmark failed (for user-benchmark: the command's own status is used)
    BENCHMARK_FAILED = 1
    #: bad command line, configuration or input file
    USAGE_ERROR = 2
    #: a metric regressed past its threshold
    REGRESSION = 3
    #: a host, a tool, Redis or the sink failed
    INFRASTRUCTURE_ERROR = 4
    #: no benchmark was collected (pytest's own status for no tests)
    NO_BENCHMARKS = 5
    #: SIGINT (128 + 2), after cleaning up
    INTERRUPTED = 130
    #: SIGTERM (128 + 15), after cleaning up
    TERMINATED = 143


def for_error(exc: BaseException) -> ExitCode:
    """The exit status an error ends a run with: an interruption by its signal,
    one of ours by its kind (usage or infrastructure), anything else 4."""
    import signal

    from pbench_runner.errors import InfrastructureError, Interrupted, PbenchError

    if isinstance(exc, Interrupted):
        return ExitCode.TERMINATED if exc.signum == signal.SIGTERM else ExitCode.INTERRUPTED
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, PbenchError) and not isinstance(exc, InfrastructureError):
        return ExitCode.USAGE_ERROR
    return ExitCode.INFRASTRUCTURE_ERROR
