"""The controller: sets up Redis, the sink and the meisters, then drives actions.

``Controller`` is a context manager for a whole session.  ``user-benchmark``
uses it in-process; for the low-level verbs a session agent
(:mod:`pbench_runner.agent`) holds it between commands.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import redis

from pbench_runner import __version__, bus, procs
from pbench_runner.config import Deadlines
from pbench_runner.errors import (
    ActionError,
    DeadlineExceeded,
    InfrastructureError,
    StartupError,
    UsageError,
)
from pbench_runner.hostwatch import HeartbeatWatcher
from pbench_runner.redisserver import RedisServer
from pbench_runner.remote.options import ON_HOST_FAILURE, RemoteOptions
from pbench_runner.session import SessionInfo
from pbench_runner.toolstore import ToolGroup, is_local

if TYPE_CHECKING:
    from pbench_runner.remote.hosts import RemoteHosts

ACTION_VERBS = {
    "init": "tool-meister-start",
    "start": "start-tools",
    "stop": "stop-tools",
    "send": "send-tools",
    "sysinfo": "collect-sysinfo",
    "terminate": "tool-meister-stop",
}


class Controller:
    """Starts and drives one tool meister session for one tool group."""

    def __init__(
        self,
        group: ToolGroup,
        tm_dir: Path,
        *,
        deadlines: Deadlines | None = None,
        plugins: Sequence[str] = (),
        die_with_parent: bool = True,
        local_hosts: Iterable[str] = (),
        result_dir: Path | None = None,
        on_spawn: Callable[[SessionInfo], object] | None = None,
        run_id: str | None = None,
        remote: RemoteOptions | None = None,
        on_host_failure: str = "abort",
    ) -> None:
        """``on_spawn`` is called with the session as it grows (after Redis and
        each process start), so that a crash mid-start can still be cleaned up."""
        self.group = group
        self.on_spawn = on_spawn
        self.tm_dir = tm_dir
        self.deadlines = deadlines or Deadlines()
        self.plugins = list(plugins)
        self.die_with_parent = die_with_parent
        self.local_hosts = set(local_hosts)
        self.result_dir = result_dir or tm_dir.parent
        self.run_id = run_id or bus.new_run_id()
        self.keys = bus.Keys(self.run_id)
        self.redis: RedisServer | None = None
        self.client: redis.Redis | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.pids: dict[str, int] = {}
        self.password = ""
        self.watcher: HeartbeatWatcher | None = None
        self.redis_url = ""
        self._pubsub: Any = None
        self._stopped = False
        if on_host_failure not in ON_HOST_FAILURE:
            raise UsageError(f"--on-host-failure={on_host_failure}: choose abort or continue")
        self.remote_options = remote or RemoteOptions()
        self.on_host_failure = on_host_failure
        self.remotes: RemoteHosts | None = None
        #: host -> the directories (samples) for which its data is missing
        self.missing: dict[str, list[str]] = {}
        #: host -> its clock minus the controller's, in seconds (measured at start)
        self.clock_offsets: dict[str, float] = {}

    @property
    def hosts(self) -> list[str]:
        return sorted(h for h, ht in self.group.hosts.items() if ht.tools)

    @property
    def remote_hosts(self) -> list[str]:
        """Hosts whose meister runs elsewhere, started over SSH."""
        return [h for h in self.hosts if not (is_local(h) or h in self.local_hosts)]

    # --- set up ---------------------------------------------------------------

    def start(self) -> Controller:
        """Redis, then the sink and every meister, then the persistent tools
        (``init``: they run until :meth:`stop`); returns when all are ready."""
        self.tm_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
            # pbench's init: persistent tools start once, and the sink records
            # them from here on; each sample takes its window of their data
            self.run_action("init", self.result_dir)
        except BaseException:
            self.stop(quiet=True)
            raise
        return self

    def _start(self) -> None:
        address = ""  # the controller's address for remote meisters in direct mode
        connecting: Future[None] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ssh") as pool:
            if self.remote_hosts:
                from pbench_runner.remote.hosts import RemoteHosts

                self.remotes = RemoteHosts(
                    self.remote_hosts, self.remote_options, self.run_id, self.tm_dir, self.deadlines
                )
                if self.remote_options.mode == "direct":  # Redis binds the address SSH tells
                    self.remotes.connect()
                    address = self.remotes.controller_address()
                else:  # the hosts are contacted while Redis starts
                    connecting = pool.submit(self.remotes.connect)
            self.redis = RedisServer(
                self.tm_dir,
                extra_binds=[address] if address else [],
                timeout=self.deadlines.startup,
                die_with_parent=self.die_with_parent,
                run_id=self.run_id,
            )
            self.redis.start()
        if connecting is not None:
            connecting.result()
        assert self.redis.proc is not None
        self.pids["redis"] = self.redis.proc.pid
        self.password, self.redis_url = self.redis.password, self.redis.url
        self._spawned()
        self.client = bus.connect(self.redis_url, self.password)
        urls = self._remote_urls()
        token = secrets.token_urlsafe(24)
        deadlines = self.deadlines.as_dict()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(
            self.keys.sink_config,
            json.dumps(
                {
                    "run_id": self.run_id,
                    "hosts": self.hosts,
                    "tools": {h: self.group.hosts[h].tools for h in self.hosts},
                    "token": token,
                    "bind": address or "127.0.0.1",
                    # remote hosts whose tools the sink reaches through their SSH tunnel
                    "tunneled": sorted(urls) if self.remote_options.mode == "tunnel" else [],
                    "deadlines": deadlines,
                    "plugins": self.plugins,
                }
            ),
        )
        for host in self.hosts:
            pipe.set(
                self.keys.meister_config(host),
                json.dumps(
                    {
                        "run_id": self.run_id,
                        "host": host,
                        "group": self.group.name,
                        "tools": self.group.hosts[host].tools,
                        "token": token,
                        "deadlines": deadlines,
                        "plugins": self.plugins,
                        # a local meister keeps unsent data in the run's tm/ directory
                        "workdir": self.remotes.workdir(host)
                        if host in urls and self.remotes
                        else str(self.tm_dir),
                        "sink_url": urls[host][1] if host in urls else "",
                        **self._tool_address(host),
                    }
                ),
            )
        pipe.execute()
        ready = self.client.pubsub(ignore_subscribe_messages=True)
        ready.subscribe(self.keys.ready)
        try:
            self._spawn("tds", [sys.executable, "-m", "pbench_runner.sink"])
            meister = [sys.executable, "-m", "pbench_runner.meister"]
            local = [h for h in self.hosts if h not in urls]
            if len(local) == 1:
                self._spawn(local[0], [*meister, "--host", local[0]])
            elif local:
                # One process imports everything once and forks a meister per host.
                hosts = [arg for host in local for arg in ("--host", host)]
                self._spawn("meisters", [*meister, *hosts, "--log-dir", str(self.tm_dir)])
            if self.remotes is not None:
                self.remotes.start_meisters({h: u[0] for h, u in urls.items()}, self.password)
                self._spawned()
            self._wait_ready(ready)
        finally:
            ready.close()
        if self.remote_hosts:  # a remote host lost between actions is told at once
            self.watcher = HeartbeatWatcher(self.client, self.keys, self.remote_hosts)
            self.watcher.start()

    def _remote_urls(self) -> dict[str, tuple[str, str]]:
        """Remote host -> the Redis URL and sink URL its meister uses."""
        if self.remotes is None:
            return {}
        assert self.redis is not None and self.client is not None
        redis_port = self.redis.port
        direct = ""
        if self.remote_options.mode == "tunnel":
            self.remotes.expose(redis=lambda: ("127.0.0.1", redis_port), sink=self._sink_address)
            self.remotes.serve_forwards(self.client, self.keys)
        else:
            direct = f"redis://{self.remotes.controller_address()}:{redis_port}/0"
        return {h: self.remotes.urls(h, direct) for h in self.remote_hosts}

    def _tool_address(self, host: str) -> dict[str, str]:
        """Direct mode: a remote host's persistent tools listen where the sink reaches them."""
        if self.remotes is None or host not in self.remotes.hosts:
            return {}
        if self.remote_options.mode != "direct":  # tunnel: loopback, reached by a forward
            return {}
        return {"tool_address": self.remotes.hosts[host].peer}

    def _sink_address(self) -> tuple[str, int]:
        assert self.client is not None
        raw = self.client.hget(self.keys.ready, bus.SINK)
        if raw is None:
            raise LookupError("the Tool Data Sink has not reported its address yet")
        host, _, port = json.loads(raw)["info"]["url"].rpartition("//")[2].partition(":")
        return host, int(port)

    def _spawn(self, name: str, argv: list[str]) -> None:
        env = {**os.environ, bus.PASSWORD_ENV: self.password, bus.RUN_ID_ENV: self.run_id}
        log_name = {"tds": "tds.log", "meisters": "tm-launcher.log"}.get(name, f"tm-{name}.log")
        with open(self.tm_dir / log_name, "ab") as logf:
            proc = procs.spawn(
                [*argv, "--redis", self.redis_url, "--run-id", self.run_id],
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                die_with_parent=self.die_with_parent,
            )
        self.procs[name] = proc
        self.pids[name] = proc.pid
        self._spawned()

    def _spawned(self) -> None:
        if self.on_spawn is not None:
            self.on_spawn(self.session_info())

    def _wait_ready(self, ready: Any) -> None:
        assert self.client is not None
        names = {bus.SINK: "tds", **{h: h for h in self.hosts}}
        deadline = time.monotonic() + self.deadlines.startup
        seen: dict[str, dict[str, Any]] = {}
        while True:
            for raw in self.client.hvals(self.keys.ready) if len(seen) < len(names) else ():
                entry = json.loads(raw)
                seen[entry["name"]] = entry
            failed = {n: e["errors"] for n, e in seen.items() if not e["ok"]}
            for name, entry in seen.items():
                theirs = entry["info"].get("version", __version__)
                if theirs != __version__:
                    failed[name] = [
                        f"its tool meister is version {theirs}, the controller {__version__}; "
                        "install the same version on both, or let the controller ship its own"
                    ]
            if failed:
                raise ActionError("tool-meister-start", failed)
            waiting = [n for n in names if n not in seen]
            if not waiting:
                mine = bus.clock_offset(self.client)
                for name, entry in seen.items():  # the meisters' own pids and clocks
                    if name != bus.SINK and "pid" in entry["info"]:
                        self.pids[name] = int(entry["info"]["pid"])
                    if name != bus.SINK and "clock_offset" in entry["info"]:
                        self.clock_offsets[name] = float(entry["info"]["clock_offset"]) - mine
                self._spawned()
                return
            for name in waiting:
                if self.remotes is not None and name in self.remotes.hosts:
                    status = self.remotes.exited(name)
                    if status is not None:
                        raise StartupError(
                            f"host {name}: the remote tool meister exited with status {status} "
                            f"before it was ready; {self.remotes.log_path(name)} ends with:\n"
                            f"{procs.tail(self.remotes.log_path(name))}"
                        )
                    continue
                proc = self.procs.get(names[name]) or self.procs["meisters"]
                if proc.poll() is not None:
                    log = self.tm_dir / ("tds.log" if name == bus.SINK else f"tm-{name}.log")
                    who = "the Tool Data Sink" if name == bus.SINK else f"host {name}: tool meister"
                    raise StartupError(
                        f"{who} exited with status {proc.returncode} before it was ready; "
                        f"{log} ends with:\n{procs.tail(log)}"
                    )
            if time.monotonic() >= deadline:
                raise DeadlineExceeded(
                    "tool-meister-start",
                    self.deadlines.startup,
                    ["tool data sink" if n == bus.SINK else n for n in waiting],
                )
            ready.get_message(timeout=0.05)

    # --- the session as a file (for the session agent and `pbench kill`) --------

    def session_info(self) -> SessionInfo:
        return SessionInfo(
            run_id=self.run_id,
            group=self.group.name,
            redis_url=self.redis_url,
            hosts=self.hosts,
            tm_dir=str(self.tm_dir),
            result_dir=str(self.result_dir),
            deadlines=self.deadlines.as_dict(),
            pids=self.pids,
            remotes=self.remotes.describe() if self.remotes is not None else {},
        )

    # --- actions ------------------------------------------------------------------

    def _sysinfo_timeout(self, selection: str) -> float:
        """The action deadline, or longer when a chosen item may take longer (sos)."""
        from pbench_runner.pluginmanager import get_plugin_manager
        from pbench_runner.sysinfo import select_items

        pm = get_plugin_manager(self.plugins)
        items = [item for found in pm.hook.pbench_sysinfo_items() for item in found or ()]
        try:
            chosen = select_items(items, selection)
        except UsageError:
            return self.deadlines.action  # the hosts name the bad item
        # the items' deadlines, then packing and sending what they wrote
        longest = max((item.timeout for item in chosen), default=0.0) + 30
        return max(self.deadlines.action, longest)

    def _timeout(self, name: str) -> float:
        if name == "init":  # a recorder's first records (Prometheus: its first scrapes)
            return max(self.deadlines.action, self.deadlines.startup)
        if name == "send":
            return self.deadlines.send
        if name == "terminate":
            return self.deadlines.shutdown
        return self.deadlines.action

    def publish(
        self,
        name: str,
        directory: Path | str,
        args: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> bus.Result:
        """Publish one action and wait for the sink's single result for it."""
        verb = ACTION_VERBS.get(name, name)
        try:
            return self._publish(name, directory, args, timeout)
        except redis.exceptions.AuthenticationError as exc:
            raise InfrastructureError(
                f"{verb}: Redis at {self.redis_url} refused the session's password ({exc})"
            ) from exc
        except redis.exceptions.RedisError as exc:
            raise InfrastructureError(
                f"{verb}: the session's Redis at {self.redis_url} is not answering ({exc}); "
                f"see {self.tm_dir / 'redis.log'}; `pbench kill` cleans up what is left"
            ) from exc

    def _publish(
        self,
        name: str,
        directory: Path | str,
        args: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> bus.Result:
        if self.client is None:
            raise InfrastructureError("the tool meister session is not running")
        timeout = timeout or self._timeout(name)
        if self._pubsub is None:
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(self.keys.result_channel)
        seq = int(self.client.incr(self.keys.seq))
        action = bus.Action(
            id=f"{seq}-{secrets.token_hex(3)}",
            seq=seq,
            action=name,
            group=self.group.name,
            directory=str(directory),
            args={**(args or {}), "timeout": timeout},
        )
        payload = action.dumps()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.action, payload)
        pipe.publish(self.keys.action, payload)
        pipe.execute()
        return self._wait_result(action, timeout)

    def _wait_result(self, action: bus.Action, timeout: float) -> bus.Result:
        assert self.client is not None
        verb = ACTION_VERBS.get(action.action, action.action)
        # The sink enforces the deadline per host; ours only catches a dead sink.
        deadline = time.monotonic() + timeout + 2.0
        next_check = time.monotonic() + 0.5
        while True:
            msg = self._pubsub.get_message(timeout=0.1)
            if msg and msg["type"] == "message":
                result = bus.Result.loads(msg["data"])
                if result.id == action.id:
                    return result
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 0.5
                raw = self.client.get(self.keys.result(action.id))
                if raw is not None:
                    return bus.Result.loads(raw)
                if not self.client.exists(self.keys.alive(bus.SINK)):
                    raise InfrastructureError(
                        f"{verb}: the Tool Data Sink stopped answering; "
                        f"see {self.tm_dir / 'tds.log'}"
                    )
            if now >= deadline:
                answered = {
                    r.decode() if isinstance(r, bytes) else r
                    for r in self.client.hkeys(self.keys.reports(action.id))
                }
                missing = [h for h in self.hosts if h not in answered]
                raise DeadlineExceeded(verb, timeout, missing)

    def collect_sysinfo(self, when: str, selection: str, base: Path | None = None) -> list[str]:
        """Sysinfo into ``<base>/sysinfo/<when>/<host>/``; the problems seen.

        ``base`` is the result directory unless given (one benchmark's
        directory).  ``selection`` is a ``--sysinfo`` value; ``none`` collects
        nothing.  A host's failure is reported, never raised: sysinfo never
        fails a run.
        """
        if selection == "none":
            return []
        directory = (base or self.result_dir) / "sysinfo" / when
        result = self.publish(
            "sysinfo", directory, {"sysinfo": selection}, self._sysinfo_timeout(selection)
        )
        return [
            f"sysinfo ({when}) on host {host}: {'; '.join(errors)}"
            for host, errors in result.failures().items()
        ]

    def run_action(
        self, name: str, directory: Path | str, args: Mapping[str, Any] | None = None
    ) -> bus.Result:
        """Like :meth:`publish`, but raise :class:`ActionError` unless every host succeeded.

        A host that is gone (no heartbeat) is recorded in :attr:`missing` for
        ``directory``; with ``on_host_failure="continue"`` the run goes on
        without it as long as one host is left and no other host failed.
        """
        result = self.publish(name, directory, args)
        if result.ok:
            return result
        failures = result.failures()
        lost = result.lost
        for host in lost:
            dirs = self.missing.setdefault(host, [])
            if str(directory) not in dirs:
                dirs.append(str(directory))
        others = {h: e for h, e in failures.items() if h not in lost}
        if self.on_host_failure == "continue" and not others and len(lost) < len(self.hosts):
            return result
        raise ActionError(ACTION_VERBS.get(name, name), failures)

    # --- tear down -------------------------------------------------------------------

    def stop(self, quiet: bool = False) -> list[str]:
        """Terminate every meister and the sink, then Redis; returns problems seen.

        Whatever happens, no process of this run is left: stragglers are killed.
        """
        if self._stopped:
            return []
        self._stopped = True
        if self.watcher is not None:  # meisters that are told to exit are not lost
            self.watcher.close()
        problems: list[str] = []
        if self.client is not None and self.pids:
            try:
                result = self.publish("terminate", "", timeout=self.deadlines.shutdown)
                problems.extend(f"host {h}: {'; '.join(e)}" for h, e in result.failures().items())
            except (InfrastructureError, redis.exceptions.RedisError) as exc:
                problems.append(str(exc))
        self._wait_exit()
        if self.remotes is not None:
            problems.extend(self.remotes.close())
        if self.redis is not None:
            self.redis.stop()
        leftovers = procs.kill_run(self.run_id, timeout=2.0)
        if leftovers and not quiet:
            problems.append(f"killed {len(leftovers)} process(es) that did not exit: {leftovers}")
        if self._pubsub is not None:
            self._pubsub.close()
        if self.client is not None:
            self.client.close()
        return problems

    def _wait_exit(self) -> None:
        if not procs.wait_all(list(self.procs.values()), self.deadlines.shutdown):
            for proc in self.procs.values():
                if proc.poll() is None:
                    procs.stop(proc, timeout=1.0)

    def __enter__(self) -> Controller:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(quiet=exc is not None)
