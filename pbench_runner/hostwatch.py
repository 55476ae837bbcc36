"""Noticing, between actions, a meister that stopped answering.

The sink checks the meisters' heartbeats only while an action is pending, so
a host lost during a long benchmark would be noticed at the next action.
:class:`HeartbeatWatcher` runs in the controller while the session is up and
says once, within about a second of its heartbeat key expiring, which host's
meister went silent.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence

import redis

from pbench_runner import bus

log = logging.getLogger("pbench.hostwatch")


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class HeartbeatWatcher(threading.Thread):
    """``HeartbeatWatcher(client, keys, hosts).start()``; ``close()`` ends it."""

    def __init__(
        self,
        client: redis.Redis,
        keys: bus.Keys,
        hosts: Sequence[str],
        say: Callable[[str], None] = _to_stderr,
        every: float = 1.0,
    ) -> None:
        super().__init__(name="heartbeat-watcher", daemon=True)
        self.client, self.keys, self.hosts = client, keys, sorted(hosts)
        self.say, self.every = say, every
        #: the hosts already reported, each only once
        self.lost: set[str] = set()
        self._closing = threading.Event()

    def run(self) -> None:
        while not self._closing.wait(self.every):
            try:
                beats = self.client.mget([self.keys.alive(h) for h in self.hosts])
            except redis.exceptions.RedisError as exc:
                log.debug("heartbeats: %s", exc)
                continue
            for host, beat in zip(self.hosts, beats):
                if beat is None and host not in self.lost and not self._closing.is_set():
                    self.lost.add(host)
                    line = (
                        f"host {host}: {bus.MEISTER_SILENT}; its data from now on will be "
                        f"missing (see tm/tm-{host}.log)"
                    )
                    log.warning("%s", line)
                    self.say(line)

    def close(self) -> None:
        self._closing.set()
        if self.is_alive():
            self.join(timeout=2.0)
