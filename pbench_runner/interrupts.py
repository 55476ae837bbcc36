"""SIGINT and SIGTERM as an exception, so that cleanup runs on every path."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

from pbench_runner.errors import Interrupted


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM into :class:`Interrupted`; ignore later ones."""
    state = {"hit": False}

    def handler(signum: int, frame: FrameType | None) -> None:
        if state["hit"]:
            print("pbench: still cleaning up, please wait", file=sys.stderr)
            return
        state["hit"] = True
        raise Interrupted(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)
