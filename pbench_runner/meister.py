"""The Tool Meister: one process per host that runs that host's tools.

It fetches its configuration from Redis (key ``tm:<host>``), checks that every
tool's programs are present, reports ready, then follows the actions the
controller publishes, answering each with one report for this host:

- ``init``: the persistent tools (pmcd, node_exporter) start, once;
- ``start``: the transient tools (sar, vmstat, ...) start, then a snapshot of
  the kernel's counters opens the sample's window;
- ``stop``: a second snapshot closes it, the transient tools stop, and a
  persistent tool that died is reported against this sample;
- ``send``: the sample's data (tools, ``counters.json``) is tarred and PUT to
  the Tool Data Sink;
- ``sysinfo``, and ``terminate``: everything stops (the persistent tools once
  the sink's recorders have their last records).

If the connection to Redis drops, the meister reconnects and reads the
``action`` key, so an action published while it was away is not missed.  If
Redis stays away past the reconnect deadline, it stops its tools and exits.

Run as ``python -m pbench_runner.meister --redis URL --run-id ID --host NAME``
with the password in ``$PBENCH_REDIS_PASSWORD``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import redis

from pbench_runner import __version__, bus, counters, procs
from pbench_runner.errors import PbenchError, ProgramMissing, StartupError
from pbench_runner.heartbeat import Heartbeat
from pbench_runner.pluginmanager import ToolRegistry, get_plugin_manager, tool_registry
from pbench_runner.sysinfo import SysinfoItem, collect, select_items
from pbench_runner.tarballs import pack
from pbench_runner.tools import Tool, ToolContext, ToolSpec

log = logging.getLogger("pbench.meister")

#: seconds a sample's start waits at most for its transient tools to settle
SETTLE = 0.5


class Terminate(Exception):
    """Raised by the signal handler to leave the main loop."""


def _dir_key(directory: str) -> str:
    return hashlib.sha1(directory.encode()).hexdigest()[:16]


class ToolMeister:
    """Context manager: set up on enter (config, checks, ready), clean up on exit."""

    def __init__(self, url: str, run_id: str, host: str, password: str | None = None) -> None:
        self.url = url
        self.keys = bus.Keys(run_id)
        self.host = host
        self.password = password
        self.client = bus.connect(url, password, name=f"tm-{host}")
        self.config: dict[str, Any] = {}
        self.specs: dict[str, ToolSpec] = {}
        self.sysinfo_items: list[SysinfoItem] = []
        #: directory -> tool name -> running tool
        self.running: dict[str, dict[str, Tool]] = {}
        #: directory -> tools stopped and waiting for ``send``
        self.stopped: dict[str, dict[str, Tool]] = {}
        #: persistent tools (pmcd, node_exporter): from ``init`` to ``terminate``
        self.persistent: dict[str, Tool] = {}
        #: the uploader's import, started at init
        self._warming: threading.Thread | None = None
        #: directory -> the counter snapshot that opened its sample
        self.windows: dict[str, dict[str, Any]] = {}
        self.last_seq = 0
        #: this meister's own scratch directory; None until it exists
        self._workdir: Path | None = None
        self._heartbeat: Heartbeat | None = None

    # --- setup -------------------------------------------------------------

    def __enter__(self) -> ToolMeister:
        try:
            return self._setup()
        except BaseException as exc:
            # Tell the controller now rather than let it wait for its deadline.
            if not isinstance(exc, StartupError) or "no configuration" in str(exc):
                with contextlib.suppress(redis.exceptions.RedisError):
                    why = f"host {self.host}: the tool meister failed to start: {exc}"
                    bus.mark_ready(self.client, self.keys, self.host, False, {}, [why])
            self.__exit__(None, None, None)
            raise

    def _setup(self) -> ToolMeister:
        raw = self.client.get(self.keys.meister_config(self.host))
        if raw is None:
            raise StartupError(f"host {self.host}: no configuration in Redis for this run")
        self.config = json.loads(raw)
        base = Path(self.config.get("workdir") or tempfile.gettempdir())
        workdir = base / f"pbench-tm-{self.keys.run_id}-{self.host}"
        workdir.mkdir(parents=True, exist_ok=True)
        self._workdir = workdir
        self._heartbeat = Heartbeat(self.client, self.keys.alive(self.host)).__enter__()
        errors = self._load_tools()
        info = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "version": __version__,
            "tools": sorted(self.specs),
            # this host's clock minus Redis's: the controller derives the offset
            "clock_offset": bus.clock_offset(self.client),
        }
        bus.mark_ready(self.client, self.keys, self.host, not errors, info, errors)
        if errors:
            raise StartupError("\n".join(errors))
        return self

    def _load_tools(self) -> list[str]:
        try:
            pm = get_plugin_manager(self.config.get("plugins", ()))
            registry: ToolRegistry = tool_registry(pm)
        except PbenchError as exc:
            return [f"host {self.host}: {exc}"]
        errors = []
        for name in self.config.get("tools", {}):
            try:
                spec = registry.get(name)
            except PbenchError as exc:
                errors.append(f"host {self.host}: {exc}")
                continue
            for program, package in spec.missing_programs().items():
                errors.append(str(ProgramMissing(self.host, name, program, package)))
            self.specs[spec.name] = spec
        for items in pm.hook.pbench_sysinfo_items():
            self.sysinfo_items.extend(items or ())
        return errors

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop_all()
        self._stop_persistent()
        if self._heartbeat is not None:
            self._heartbeat.__exit__(None, None, None)
        if self._workdir is not None:  # never anything but the directory we made
            shutil.rmtree(self._workdir, ignore_errors=True)
        self.client.close()

    # --- main loop -----------------------------------------------------------

    def serve(self) -> None:
        """Follow actions until ``terminate`` or until Redis is gone for good."""
        reconnect = float(self.config.get("deadlines", {}).get("reconnect", 30.0))
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.keys.action)
                # An action published while we were not subscribed is in the key.
                if self._maybe_handle(self.client.get(self.keys.action)):
                    return
                while True:
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is None:
                        # redis-py may have reconnected the subscription by
                        # itself, losing what was published meanwhile: the
                        # action key tells.
                        if self._maybe_handle(self.client.get(self.keys.action)):
                            return
                    elif msg["type"] == "message" and self._maybe_handle(msg["data"]):
                        return
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("lost Redis (%s); reconnecting for up to %g s", exc, reconnect)
                if not bus.wait_for_redis(self.client, reconnect):
                    log.error("Redis did not come back within %g s; stopping tools", reconnect)
                    return
            finally:
                pubsub.close()

    def _maybe_handle(self, data: bytes | str | None) -> bool:
        """Handle a new action; True when the meister should exit."""
        if data is None:
            return False
        action = bus.Action.loads(data)
        if action.seq <= self.last_seq:
            return False
        self.last_seq = action.seq
        report = self.handle(action)
        bus.publish_report(self.client, self.keys, report)
        return action.action == "terminate"

    # --- actions ---------------------------------------------------------------

    def handle(self, action: bus.Action) -> bus.Report:
        began = time.monotonic()
        errors: list[str] = []
        info: dict[str, Any] = {}
        handler = getattr(self, f"_do_{action.action}", None)
        if handler is None:
            errors.append(f"host {self.host}: unknown action {action.action!r}")
        elif action.group != self.config.get("group") and action.action != "terminate":
            errors.append(
                f"host {self.host}: action for tool group {action.group!r}, but this meister "
                f"runs group {self.config.get('group')!r}"
            )
        else:
            try:
                handler(action, errors, info)
            except PbenchError as exc:
                errors.append(str(exc))
            except OSError as exc:
                errors.append(f"host {self.host}: {action.action}: {exc}")
        info["seconds"] = round(time.monotonic() - began, 4)
        return bus.Report(
            id=action.id,
            host=self.host,
            action=action.action,
            ok=not errors,
            errors=errors,
            info=info,
        )

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise StartupError(f"host {self.host}: the tool meister is not set up")
        return self._workdir

    def _tool_dir(self, directory: str) -> Path:
        return self.workdir / _dir_key(directory)

    def _context(self, name: str, group: str, outdir: Path) -> ToolContext:
        return ToolContext(
            host=self.host,
            tool=name,
            group=group,
            options=self.config.get("tools", {})[name],
            outdir=outdir,
            address=str(self.config.get("tool_address", "127.0.0.1")),
        )

    def _is_persistent(self, name: str) -> bool:
        return self.specs[name].collector is not None

    def _start_tools(
        self, names: list[str], group: str, base: Path, errors: list[str], info: dict[str, Any]
    ) -> dict[str, Tool]:
        started: dict[str, Tool] = {}
        for name in names:
            try:
                tool = self.specs[name].factory(self._context(name, group, base / name))
                facts = tool.start()
            except Exception as exc:  # a plugin's failure is reported, never fatal
                errors.append(_tool_error(self.host, name, "start", exc))
                continue
            started[name] = tool
            if facts:
                info[name] = dict(facts)
        return started

    def _do_init(self, action: bus.Action, errors: list[str], info: dict[str, Any]) -> None:
        """Persistent tools start once, for the whole session (pbench's ``init``)."""
        if self.persistent:
            errors.append(f"host {self.host}: the persistent tools are already running")
            return
        # Import the uploader now, while the session starts: neither inside the
        # first sample's window nor during the first send.
        self._warming = threading.Thread(target=_warm_up, name="warm-up", daemon=True)
        self._warming.start()
        names = [n for n in self.config.get("tools", {}) if self._is_persistent(n)]
        self.persistent = self._start_tools(
            names, action.group, self.workdir / "persistent", errors, info
        )

    def _do_start(self, action: bus.Action, errors: list[str], info: dict[str, Any]) -> None:
        """Transient tools start; the sample's window opens with a counter snapshot."""
        if action.directory in self.running:
            errors.append(f"host {self.host}: tools already started for {action.directory}")
            return
        names = [n for n in self.config.get("tools", {}) if not self._is_persistent(n)]
        base = self._tool_dir(action.directory)
        base.mkdir(parents=True, exist_ok=True)
        self.running[action.directory] = self._start_tools(names, action.group, base, errors, info)
        # The tools' own start-up (execs, first readings) is not the workload's:
        # the window opens once they have settled (bounded, so a busy tool
        # cannot hold the sample).
        pids = [f["pid"] for n in names if isinstance(f := info.get(n), dict) and "pid" in f]
        if not procs.wait_quiet(pids, SETTLE):
            log.info("the tools of %s were still busy after %g s", action.directory, SETTLE)
        if self._warming is not None:  # nor the uploader's import
            self._warming.join(timeout=SETTLE)
            self._warming = None
        # Last, so that the window holds the workload and not the tools' start.
        snap = counters.snapshot()
        self.windows[action.directory] = snap
        info["window_start"] = snap["time"]

    def _do_stop(self, action: bus.Action, errors: list[str], info: dict[str, Any]) -> None:
        tools = self.running.pop(action.directory, None)
        if tools is None:
            errors.append(f"host {self.host}: no tools were started for {action.directory}")
            return
        # First, so that the window holds the workload and not the tools' stop.
        snap = counters.snapshot()
        info["window_stop"] = snap["time"]
        start = self.windows.pop(action.directory, None)
        if start is not None:
            path = self._tool_dir(action.directory) / counters.COUNTERS_FILE
            path.write_text(json.dumps({"start": start, "stop": snap}))
        for name, tool in tools.items():  # every tool is reached even if one fails
            try:
                tool.stop()
            except Exception as exc:
                errors.append(_tool_error(self.host, name, "stop", exc))
        for name, tool in self.persistent.items():  # one that died marks this sample
            check = getattr(tool, "check", None)
            try:
                if check is not None:
                    check()
            except Exception as exc:
                errors.append(_tool_error(self.host, name, "run", exc))
        self.stopped[action.directory] = tools

    def _do_send(self, action: bus.Action, errors: list[str], info: dict[str, Any]) -> None:
        if action.directory in self.running:
            errors.append(
                f"host {self.host}: the tools for {action.directory} are still running; "
                "stop them (stop-tools) before sending"
            )
            return
        if action.directory not in self.stopped:
            errors.append(
                f"host {self.host}: no tool data for {action.directory}: its tools were not "
                "started and stopped there, or its data was already sent"
            )
            return
        tools = self.stopped[action.directory]
        for name, tool in tools.items():
            try:
                tool.postprocess()
            except Exception as exc:
                errors.append(_tool_error(self.host, name, "postprocess", exc))
        source = self._tool_dir(action.directory)
        # The host side of persistent tools (their logs) goes with every sample.
        for name in self.persistent:
            own = self.workdir / "persistent" / name
            if own.is_dir():
                shutil.copytree(own, source / name, dirs_exist_ok=True)
        # The data is dropped only once the sink has it; a failed send can be retried.
        info.update(self._upload(action, source))
        del self.stopped[action.directory]
        shutil.rmtree(source, ignore_errors=True)

    def _do_sysinfo(self, action: bus.Action, errors: list[str], info: dict[str, Any]) -> None:
        items = select_items(self.sysinfo_items, str(action.args.get("sysinfo", "default")))
        source = self.workdir / f"sysinfo-{action.seq}"
        try:
            status = collect(items, source)
            info["failed_items"] = sorted(n for n, s in status.items() if not s["ok"])
            info.update(self._upload(action, source))
        finally:
            shutil.rmtree(source, ignore_errors=True)

    def _do_terminate(self, action: bus.Action, errors: list[str], info: dict[str, Any]) -> None:
        errors.extend(self._stop_all())
        if self.persistent:
            # The sink's recorders take their last records before the tools go.
            self._wait_for_collectors(action, errors)
            errors.extend(self._stop_persistent())

    def _wait_for_collectors(self, action: bus.Action, errors: list[str]) -> None:
        # the sink's answer is due within the action's deadline: leave it room
        key = self.keys.collected(action.id)
        timeout = max(float(action.args.get("timeout", 60.0)) - 2, 1)
        # a hundred hosts ask; Redis is not to be flooded
        if not procs.wait_until(lambda: bool(self.client.exists(key)), timeout, interval=0.05):
            errors.append(
                f"host {self.host}: the Tool Data Sink did not stop its collectors in time; "
                "stopping this host's persistent tools anyway"
            )

    def _upload(self, action: bus.Action, source: Path) -> dict[str, Any]:
        from pbench_runner.upload import put_tarball  # requests is slow to import

        tarball = self.workdir / f"{action.id}.tar"
        try:
            md5, size = pack(source, tarball)
            url = f"{self._sink_url()}/api/v1/data/{action.id}/{self.host}"
            deadline = float(action.args.get("timeout", 600.0))
            put_tarball(url, tarball, md5, self.config["token"], timeout=deadline)
        finally:
            tarball.unlink(missing_ok=True)
        return {"bytes": size, "md5": md5}

    def _sink_url(self) -> str:
        if self.config.get("sink_url"):  # a remote host reaches the sink through its tunnel
            return str(self.config["sink_url"])
        raw = self.client.hget(self.keys.ready, bus.SINK)
        if raw is None:
            raise StartupError(f"host {self.host}: the Tool Data Sink has not reported its address")
        return str(json.loads(raw)["info"]["url"])

    def _stop_all(self) -> list[str]:
        """Stop the transient tools of every sample still running."""
        errors = []
        for directory in list(self.running):
            for name, tool in self.running.pop(directory).items():
                try:
                    tool.stop()
                except Exception as exc:
                    errors.append(_tool_error(self.host, name, "stop", exc))
        return errors

    def _stop_persistent(self) -> list[str]:
        errors = []
        tools, self.persistent = self.persistent, {}
        for name, tool in tools.items():
            try:
                tool.stop()
            except Exception as exc:
                errors.append(_tool_error(self.host, name, "stop", exc))
        return errors


def _tool_error(host: str, tool: str, step: str, exc: BaseException) -> str:
    text = str(exc)
    if f"tool {tool!r} on host {host}" in text:
        return text
    return f"tool {tool!r} on host {host}: {step} failed: {type(exc).__name__}: {text}"


def _warm_up() -> None:
    import pbench_runner.upload  # noqa: F401


def _raise_terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminate(signal.Signals(signum).name)


def serve_host(url: str, run_id: str, host: str, password: str | None = None) -> int:
    """Run one host's meister until it is told to stop; returns the exit status.

    ``password`` is Redis's; by default it comes from the environment.
    """
    signal.signal(signal.SIGTERM, _raise_terminate)
    signal.signal(signal.SIGINT, _raise_terminate)
    try:
        with ToolMeister(url, run_id, host, password) as meister:
            meister.serve()
    except Terminate as exc:
        log.info("stopped by %s", exc)
        return 0
    except PbenchError as exc:
        log.error("%s", exc)
        return 2
    except redis.exceptions.RedisError as exc:
        log.error("Redis: %s", exc)
        return 3
    return 0


def _report_failed_start(
    url: str, run_id: str, host: str, exc: BaseException, password: str | None
) -> None:
    """Tell the controller that this host's meister could not even start."""
    with contextlib.suppress(redis.exceptions.RedisError):
        client = bus.connect(url, password, timeout=5)
        keys = bus.Keys(run_id)
        if not client.hexists(keys.ready, host):
            why = f"host {host}: the tool meister failed to start: {type(exc).__name__}: {exc}"
            bus.mark_ready(client, keys, host, False, {}, [why])
        client.close()


def _log_to(host: str, log_dir: Path | None) -> None:
    if log_dir is not None:
        fd = os.open(log_dir / f"tm-{host}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    logging.basicConfig(
        level=logging.INFO,
        force=True,
        format=f"%(asctime)s tm[{host}] %(levelname)s %(message)s",
    )


def launch(
    url: str, run_id: str, hosts: list[str], log_dir: Path | None, password: str | None = None
) -> int:
    """Serve several hosts from this machine: import once, then fork a meister each.

    Used when many host names run on the controller's own machine (tests and
    benchmarks); each child is a full meister with its own Redis connection.
    Children die with the launcher, and the launcher forwards SIGTERM/SIGINT.
    """
    import pbench_runner.upload  # noqa: F401  (shared by every child)

    get_plugin_manager()  # imports the installed plugins once
    launcher = os.getpid()
    children: dict[int, str] = {}
    for host in hosts:
        pid = os.fork()
        if pid == 0:
            procs.die_with_parent(launcher)
            try:
                _log_to(host, log_dir)
                status = serve_host(url, run_id, host, password)
            except BaseException as exc:  # the launcher's log is the last resort
                print(f"tm[{host}]: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                _report_failed_start(url, run_id, host, exc, password)
                status = 1
            procs.fast_exit(status)
        children[pid] = host

    def forward(signum: int, frame: FrameType | None) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    while children:
        pid, code = os.wait()
        children.pop(pid, None)
        status = status or os.waitstatus_to_exitcode(code)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pbench-tool-meister")
    parser.add_argument("--redis", required=True, help="redis://HOST:PORT/0")
    parser.add_argument("--run-id", required=True)
    parser.add_argument(
        "--host",
        required=True,
        action="append",
        help="the host name this meister serves (repeat: fork one per host)",
    )
    parser.add_argument("--log-dir", type=Path, help="with several hosts: tm-<host>.log here")
    args = parser.parse_args(argv)
    password = bus.take_password()  # the meister's own, not its tools'
    if len(args.host) > 1:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s tm-launcher %(message)s")
        return launch(args.redis, args.run_id, args.host, args.log_dir, password)
    _log_to(args.host[0], None)
    return serve_host(args.redis, args.run_id, args.host[0], password)


if __name__ == "__main__":
    procs.fast_exit(main())
