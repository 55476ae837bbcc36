"""A background thread that keeps a participant's ``alive`` key fresh."""

from __future__ import annotations

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
            try:
                self.client.set(self.key, "1", ex=ALIVE_TTL)
            except redis.exceptions.RedisError:
                pass  # the main loop notices a lost Redis and decides what to do
            self._stop.wait(HEARTBEAT)

    def __enter__(self) -> Heartbeat:
        try:
            self.client.set(self.key, "1", ex=ALIVE_TTL)
        except redis.exceptions.RedisError:
            pass
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
        try:
            self.client.delete(self.key)
        except redis.exceptions.RedisError:
            pass
