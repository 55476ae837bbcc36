"""A background thread that keeps a participant's ``alive`` key fresh."""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType

import redis

from pbench_runner.bus import ALIVE_TTL, HEARTBEAT


class Heartbeat:
    """``with Heartbeat(client, key):`` sets ``key`` with a TTL every second."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            # A lost Redis is noticed, and dealt with, by the main loop.
            with contextlib.suppress(redis.exceptions.RedisError):
                self.client.set(self.key, "1", ex=ALIVE_TTL)
            self._stop.wait(HEARTBEAT)

    def __enter__(self) -> Heartbeat:
        with contextlib.suppress(redis.exceptions.RedisError):
            self.client.set(self.key, "1", ex=ALIVE_TTL)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(redis.exceptions.RedisError):
            self.client.delete(self.key)
