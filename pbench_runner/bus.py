"""The Redis conventions every participant follows: keys, channels, messages.

One run owns every key under ``pbench:<run-id>:``.  Data flows one way: the
controller writes configuration and publishes actions; meisters and the sink
act and report.

====================================  =========================================
key / channel                          written by → read by
====================================  =========================================
``tm:<host>`` (key, JSON)              controller → that host's meister
``tds`` (key, JSON)                    controller → sink
``ready`` (hash) + channel             sink, meisters → controller
``action`` (key + channel, JSON)       controller → sink, meisters
``report:<id>`` (hash) + ``report``    meisters → sink (one field per host)
``result:<id>`` (key) + ``result``     sink → controller
``alive:<name>`` (key with TTL)        sink, meisters → sink, controller
``collected:<id>`` (key)               sink → meisters (collectors stopped)
``forward`` (channel) + ``forward:*``  sink → controller → sink (a local port
                                       leading to a remote host's tool)
====================================  =========================================

The ``action`` key holds the latest action as well as being published, so a
participant that was disconnected when it was published finds it when it
reconnects.  Every action has a sequence number and an id; reports and
results carry the id, so late or duplicate answers are never mistaken for
the current one.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from pbench_runner import procs

#: the name the sink uses where a host name is expected (ready, alive keys)
SINK: Final = "__sink__"
#: seconds a heartbeat key lives; participants refresh it every HEARTBEAT s,
#: so a part stalled for up to 4 s (a busy host) is not taken for lost
ALIVE_TTL: Final = 5
HEARTBEAT: Final = 1.0
PASSWORD_ENV: Final = "PBENCH_REDIS_PASSWORD"
RUN_ID_ENV: Final = "PBENCH_RUN_ID"


#: why a host whose heartbeat key expired is taken for lost
MEISTER_SILENT: Final = f"the tool meister stopped answering (no heartbeat for {ALIVE_TTL} s)"


class Keys:
    """Names of the keys and channels of one run."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.prefix = f"pbench:{run_id}:"

    def meister_config(self, host: str) -> str:
        return f"{self.prefix}tm:{host}"

    @property
    def sink_config(self) -> str:
        return f"{self.prefix}tds"

    @property
    def ready(self) -> str:
        return f"{self.prefix}ready"

    @property
    def action(self) -> str:
        return f"{self.prefix}action"

    @property
    def seq(self) -> str:
        return f"{self.prefix}seq"

    def reports(self, action_id: str) -> str:
        return f"{self.prefix}report:{action_id}"

    @property
    def report_channel(self) -> str:
        return f"{self.prefix}report"

    def result(self, action_id: str) -> str:
        return f"{self.prefix}result:{action_id}"

    def collected(self, action_id: str) -> str:
        """Set by the sink once its collectors have stopped for a stop action."""
        return f"{self.prefix}collected:{action_id}"

    @property
    def forward_requests(self) -> str:
        return f"{self.prefix}forward"

    def forward(self, host: str, address: str, port: int) -> str:
        """Holds the controller's local port that leads to ``address:port`` on ``host``."""
        return f"{self.prefix}forward:{host}:{address}:{port}"

    @property
    def result_channel(self) -> str:
        return f"{self.prefix}result"

    def alive(self, name: str) -> str:
        return f"{self.prefix}alive:{name}"


def new_run_id() -> str:
    """A short unique id for a run (also in every process's environment)."""
    return secrets.token_hex(6)


@dataclass
class Action:
    """An action for a tool group.

    ``init`` (once, at tool-meister-start: persistent tools start), then per
    sample ``start`` / ``stop`` / ``send``; ``sysinfo`` at any time; and
    ``terminate`` (once: persistent tools stop, every process exits).
    """

    id: str
    seq: int
    action: str
    group: str
    directory: str
    #: per-action parameters: the sysinfo selection, the deadline
    args: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, data: str | bytes) -> Action:
        return cls(**json.loads(data))


@dataclass
class Report:
    """One host's answer to one action."""

    id: str
    host: str
    action: str
    ok: bool
    errors: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, data: str | bytes) -> Report:
        return cls(**json.loads(data))


@dataclass
class Result:
    """The sink's single answer to the controller for one action."""

    id: str
    action: str
    ok: bool
    #: host -> its errors (empty list for a host that succeeded)
    hosts: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    #: why the missing hosts are missing, when it is not the deadline
    reason: str = ""
    #: the failing hosts whose meister is gone (its heartbeat stopped)
    lost: list[str] = field(default_factory=list)

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, data: str | bytes) -> Result:
        return cls(**json.loads(data))

    def failures(self) -> dict[str, list[str]]:
        failed = {host: errs for host, errs in self.hosts.items() if errs}
        for host in self.missing:
            failed.setdefault(host, [self.reason or "did not answer before the deadline"])
        return failed


def take_password() -> str | None:
    """Redis's password from the environment, removed from it: the tools a
    meister or the sink starts inherit the environment, and must not see it."""
    return os.environ.pop(PASSWORD_ENV, None)


def connect(
    url: str, password: str | None = None, *, timeout: float = 10.0, name: str | None = None
) -> redis.Redis:
    """A client for the run's Redis; the password comes from the environment by default.

    ``name`` is set as the connections' client name (``CLIENT LIST`` shows it).
    """
    if password is None:
        password = os.environ.get(PASSWORD_ENV)
    return redis.Redis.from_url(
        url,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=0,
        client_name=name,
        # A few quick retries for a blip; the callers own the longer waits.
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), retries=3),
    )


def publish_report(client: redis.Redis, keys: Keys, report: Report) -> None:
    """Record ``report`` in the action's hash and tell the sink."""
    payload = report.dumps()
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.reports(report.id), report.host, payload)
    pipe.expire(keys.reports(report.id), 24 * 3600)
    pipe.publish(keys.report_channel, payload)
    pipe.execute()


def mark_ready(
    client: redis.Redis,
    keys: Keys,
    name: str,
    ok: bool,
    info: Mapping[str, Any],
    errors: Sequence[str] = (),
) -> None:
    payload = json.dumps({"name": name, "ok": ok, "info": dict(info), "errors": list(errors)})
    pipe = client.pipeline(transaction=False)
    pipe.hset(keys.ready, name, payload)
    pipe.publish(keys.ready, payload)
    pipe.execute()


class ForwardRefused(Exception):
    """The controller answered a forward request with why it cannot open it."""


def request_forward(
    client: redis.Redis,
    keys: Keys,
    host: str,
    address: str,
    port: int,
    timeout: float,
    tool: str = "",
) -> int:
    """Ask the controller for a local port leading to ``address:port`` on remote ``host``.

    The controller holds the host's SSH connection and answers in the
    ``forward:`` key; raises TimeoutError when no answer comes in time and
    :class:`ForwardRefused` when the controller says it cannot.
    """
    key = keys.forward(host, address, port)
    client.publish(
        keys.forward_requests,
        json.dumps({"host": host, "address": address, "port": port, "tool": tool}),
    )
    local: Any = None

    def answered() -> bool:
        nonlocal local
        local = client.get(key)
        return local is not None

    if not procs.wait_until(answered, timeout):
        raise TimeoutError(f"no forward to {address}:{port} on host {host} within {timeout:g} s")
    text = local.decode(errors="replace") if isinstance(local, bytes) else str(local)
    if text.startswith("error:"):
        client.delete(key)  # a later request asks again
        raise ForwardRefused(text[len("error:") :].strip())
    return int(text)


def clock_offset(client: redis.Redis, tries: int = 5) -> float:
    """This machine's clock minus Redis's, in seconds (``TIME``, best of ``tries``).

    Every participant measures its own against the one Redis of the run, so
    a host's clock offset from the controller is the difference of theirs;
    the round trip with the least delay wins, its midpoint taken.
    """
    best: tuple[float, float] | None = None
    for _ in range(tries):
        before = time.time()
        seconds, micros = client.time()
        after = time.time()
        spent = after - before
        if best is None or spent < best[0]:
            best = (spent, (before + after) / 2 - (seconds + micros / 1e6))
    assert best is not None
    return best[1]


def wait_for_redis(
    client: redis.Redis, seconds: float, stop: threading.Event | None = None
) -> bool:
    """Ping until Redis answers (True), or ``seconds`` pass or ``stop`` is set (False).

    For a meister or the sink that lost its connection; the pause between
    tries grows from 0.05 s to 1 s.
    """
    stop = stop or threading.Event()
    deadline = time.monotonic() + seconds
    delay = 0.05
    while time.monotonic() < deadline and not stop.is_set():
        try:
            client.ping()
            return True
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            stop.wait(delay)
            delay = min(delay * 2, 1.0)
    return False
