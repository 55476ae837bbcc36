"""Answers the sink's requests for a way to a remote host's tool.

The sink's collectors (pmlogger, Prometheus) record a remote host's pmcd or
node_exporter, which listens on that host's loopback.  In tunnel mode the
sink asks, over Redis (:func:`pbench_runner.bus.request_forward`); this
thread, in the controller that holds the SSH connections, opens a local
forward with :meth:`~pbench_runner.remote.tunnel.Tunnel.forward_to` and
writes its port back.  A tool's remote port changes from one sample to the
next (pmcd and node_exporter start anew), so a new forward for the same host
and tool closes the one before it: a long run holds one forward per host and
tool, not one per sample.  A request that cannot be met is answered with
``error: <why>``, so the sink fails that host's collector at once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping

import paramiko
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
        #: (host, tool) -> (local port, its forward: key) of the latest forward
        self._latest: dict[tuple[str, str], tuple[int, str]] = {}
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
                self._serve_one(msg["data"])

    def _serve_one(self, data: bytes) -> None:
        """Answer one request; whatever goes wrong is answered too, never fatal to the thread."""
        try:
            request = json.loads(data)
            host, address, port = (
                str(request["host"]),
                str(request["address"]),
                int(str(request["port"])),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.error("a malformed forward request %r: %s", data[:200], exc)
            return
        key = self.keys.forward(host, address, port)
        try:
            self._answer(host, address, port, str(request.get("tool", "")), key)
        except (paramiko.SSHException, OSError, EOFError, redis.exceptions.RedisError) as exc:
            self._refuse(host, key, f"the controller cannot open a forward: {exc}")
        except Exception as exc:  # a bug here must not end the thread unseen
            log.exception("host %s: forward request failed", host)
            self._refuse(host, key, f"{type(exc).__name__}: {exc}")

    def _answer(self, host: str, address: str, port: int, tool: str, key: str) -> None:
        tunnel = self.tunnels.get(host)
        if tunnel is None:
            self._refuse(host, key, "it is not a tunneled host of this session")
            return
        if self.client.exists(key):
            return
        local = tunnel.forward_to(port, address)
        log.info("host %s: %s:%d there is 127.0.0.1:%d here", host, address, port, local)
        if tool:
            # the tool's previous forward goes before the answer: whoever reads
            # the answer finds the old one closed
            previous = self._latest.get((host, tool))
            self._latest[(host, tool)] = (local, key)
            if previous is not None:
                tunnel.close_forward(previous[0])
                self.client.delete(previous[1])
                log.info("host %s: closed %s's forward 127.0.0.1:%d", host, tool, previous[0])
        self.client.set(key, local, ex=24 * 3600)

    def _refuse(self, host: str, key: str, why: str) -> None:
        log.error("host %s: forward request refused: %s", host, why)
        try:
            self.client.set(key, f"error: host {host}: {why}", ex=60)
        except redis.exceptions.RedisError as exc:
            log.error("host %s: cannot answer the forward request: %s", host, exc)

    def close(self) -> None:
        self._closing.set()
        self.join(timeout=1.0)
        self._pubsub.close()
