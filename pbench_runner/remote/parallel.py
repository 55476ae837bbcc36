"""Doing one step on every remote host at once, under one deadline."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TypeVar

from pbench_runner.errors import PbenchError, RemoteHostError, StartupError

T = TypeVar("T")

log = logging.getLogger("pbench.remote")

#: threads used at most, whatever the number of hosts
MAX_WORKERS = 32


def on_every_host(
    hosts: list[str],
    work: Callable[[str], T],
    timeout: float,
    what: str,
    undo: Callable[[T], object],
) -> dict[str, T]:
    """``work(host)`` for every host in parallel: every result, or one error naming each failure.

    A host that fails (``work`` raises :class:`RemoteHostError` or another
    :class:`PbenchError`) or is still busy at the deadline makes the whole
    step fail; ``undo`` is then applied to every result, including those that
    arrive after the deadline, so that nothing is left on the hosts that did
    succeed.
    """
    if not hosts:
        return {}
    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(hosts)), thread_name_prefix=what)
    futures = {host: pool.submit(work, host) for host in hosts}
    _, pending = wait(futures.values(), timeout=timeout)
    # Hosts not yet begun are dropped: a late start would only be undone.
    pool.shutdown(wait=False, cancel_futures=True)
    workers = min(MAX_WORKERS, len(hosts))
    results: dict[str, T] = {}
    failures: dict[str, str] = {}
    for host, future in futures.items():
        if future.cancelled():
            failures[host] = (
                f"host {host}: {what}: not contacted before the deadline of {timeout:g} s "
                f"({workers} hosts at once); raise the deadline or reach fewer hosts"
            )
            continue
        if future in pending:
            failures[host] = f"host {host}: {what}: not done within {timeout:g} s"
            future.add_done_callback(lambda f: _undo_late(f, undo))
            continue
        exc = future.exception()
        if exc is None:
            results[host] = future.result()
        elif isinstance(exc, RemoteHostError):
            failures[host] = str(exc)
        elif isinstance(exc, PbenchError):
            failures[host] = f"host {host}: {exc}"
        else:
            failures[host] = f"host {host}: {what}: {type(exc).__name__}: {exc}"
    if failures:
        for result in results.values():
            undo(result)
        lines = [failures[h] for h in sorted(failures)]
        raise StartupError(
            f"{what} failed on {len(failures)} of {len(hosts)} host(s):\n  " + "\n  ".join(lines)
        )
    return results


def _undo_late(future: Future[T], undo: Callable[[T], object]) -> None:
    """A host that answered after the deadline: close what it opened."""
    if future.exception() is None:
        try:
            undo(future.result())
        except (OSError, PbenchError) as exc:
            log.warning("cleaning up after a late host: %s", exc)
