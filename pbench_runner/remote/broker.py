"""Answers the sink's requests for a way to a remote host's tool.

The sink's collectors (pmlogger, Prometheus) record a remote host's pmcd or
node_exporter, which listens on that host's loopback.  In tunnel mode the
sink asks, over Redis (:func:`pbench_runner.bus.request_forward`); this
thread, in the controller that holds the SSH connections, opens a local
forward with :meth:`~pbench_runner.remote.tunnel.Tunnel.forward_to` and
writes its port back.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping

import redis

from pbench_runner import bus
from pbench_runner.remote.tunnel import Tunnel

log = logging.getLogger("pbench.remote.broker")


class ForwardBroker(threading.Thread):
    """``ForwardBroker(client, keys, tunnels).start()``; ``close()`` ends it."""

    def __init__(self, client: redis.Redis, keys: bus.Keys, tunnels: Mapping[str, Tunnel]) -> None:
        super().__init__(name="forward-broker", daemon=True)
        self.client = client
        self.keys = keys
        self.tunnels = tunnels
        self._closing = threading.Event()
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        # Subscribed before any meister starts, so no request can be missed.
        self._pubsub.subscribe(keys.forward_requests)

    def run(self) -> None:
        while not self._closing.is_set():
            try:
                msg = self._pubsub.get_message(timeout=0.2)
            except redis.exceptions.RedisError as exc:
                log.warning("forward requests: %s", exc)
                self._closing.wait(0.5)
                continue
            if msg and msg["type"] == "message":
                self._answer(json.loads(msg["data"]))

    def _answer(self, request: dict[str, object]) -> None:
        host, address, port = (
            str(request["host"]),
            str(request["address"]),
            int(str(request["port"])),
        )
        tunnel = self.tunnels.get(host)
        if tunnel is None:
            log.warning("forward request for %s, which is not a tunneled host", host)
            return
        key = self.keys.forward(host, address, port)
        if self.client.exists(key):
            return
        local = tunnel.forward_to(port, address)
        self.client.set(key, local, ex=24 * 3600)
        log.info("host %s: %s:%d there is 127.0.0.1:%d here", host, address, port, local)

    def close(self) -> None:
        self._closing.set()
        self.join(timeout=1.0)
        self._pubsub.close()
