"""The Tool Data Sink: a CherryPy process that gathers every host's answers.

It fetches its configuration from Redis (key ``tds``), serves
``PUT /api/v1/data/<action-id>/<host>`` for the meisters' tarballs, and for
every action counts the answers *by host*: it publishes one result for the
controller when every registered host has answered, when a host's heartbeat
stops, or when the action's deadline passes, naming the hosts that did not
answer.

Run as ``python -m pbench_runner.sink --redis URL --run-id ID`` with the
password in ``$PBENCH_REDIS_PASSWORD``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import tarfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

import cherrypy
import redis

from pbench_runner import bus, cpserver, procs
from pbench_runner.collectors import Collectors
from pbench_runner.commandtool import ToolFailed
from pbench_runner.heartbeat import Heartbeat
from pbench_runner.pluginmanager import broadcast, get_plugin_manager, tool_registry
from pbench_runner.sinkhttp import DataAPI, Upload
from pbench_runner.tools import SampleWindow

log = logging.getLogger("pbench.sink")

HEARTBEAT_CHECK = 0.5


#: seconds an action that is over waits for its slicing to finish
SLICE_WAIT = 30.0


class Slicing:
    """A sample's slice of the persistent tools' data, cut in its own thread."""

    def __init__(self, work: Callable[[], dict[str, list[str]]]) -> None:
        self._found: dict[str, list[str]] = {}
        self._thread = threading.Thread(target=self._run, args=(work,), name="slice", daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], dict[str, list[str]]]) -> None:
        self._found = work()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def errors(self, timeout: float) -> dict[str, list[str]]:
        """The slice's errors by host, once it is done (or a timeout error)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return {
                bus.SINK: [
                    f"the sample's slice of the persistent tools' data took over {timeout:g} s"
                ]
            }
        return self._found


@dataclass
class Tracker:
    """One action in progress: who has answered, and by when all must."""

    action: bus.Action
    expected: frozenset[str]
    deadline: float
    reports: dict[str, bus.Report] = field(default_factory=dict)
    lost: dict[str, str] = field(default_factory=dict)
    #: the sink's own errors (its collectors), by host or ``bus.SINK``
    sink_errors: dict[str, list[str]] = field(default_factory=dict)
    #: an init action's collectors have been started
    collecting: bool = False
    #: a send action's slicing of the persistent tools' data
    slicing: Slicing | None = None

    def add(self, report: bus.Report) -> None:
        if report.host in self.expected:
            self.reports[report.host] = report
            self.lost.pop(report.host, None)

    def outstanding(self) -> list[str]:
        return sorted(self.expected - self.reports.keys() - self.lost.keys())

    def done(self) -> bool:
        slicing = self.slicing is not None and self.slicing.is_alive()
        return not slicing and not self.outstanding()

    def settle(self) -> None:
        """Wait (bounded) for the slicing; its errors join the sink's own."""
        if self.slicing is not None:
            for host, errs in self.slicing.errors(SLICE_WAIT).items():
                self.sink_errors.setdefault(host, []).extend(errs)
            self.slicing = None

    def result(self, timed_out: bool = False) -> bus.Result:
        hosts = {host: list(rep.errors) for host, rep in self.reports.items()}
        for host, why in self.lost.items():
            hosts[host] = [why]
        for host, errs in self.sink_errors.items():
            hosts.setdefault(host, []).extend(errs)
        missing = self.outstanding() if timed_out else []
        info = {host: rep.info for host, rep in self.reports.items()}
        ok = not missing and all(not errs for errs in hosts.values())
        return bus.Result(
            id=self.action.id,
            action=self.action.action,
            ok=ok,
            hosts=hosts,
            missing=missing,
            info=info,
            lost=sorted(self.lost),
        )


class ToolDataSink:
    """The sink's Redis side: actions in, one result per action out."""

    def __init__(self, url: str, run_id: str, password: str | None = None) -> None:
        self.keys = bus.Keys(run_id)
        self.client = bus.connect(url, password, name="tds")
        raw = self.client.get(self.keys.sink_config)
        if raw is None:
            raise SystemExit(f"no Tool Data Sink configuration in Redis for run {run_id}")
        self.config: dict[str, Any] = json.loads(raw)
        self.hosts = frozenset(self.config["hosts"])
        self.pm = get_plugin_manager(self.config.get("plugins", ()))
        self.collectors = Collectors(tool_registry(self.pm), self.config.get("tools", {}))
        self.tracker: Tracker | None = None
        self.last_seq = 0
        #: reports that arrived before the sink saw their action
        self.early: OrderedDict[str, list[bus.Report]] = OrderedDict()
        self.uploads: dict[str, Upload] = {}
        self.finished: set[str] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def _through_tunnels(
        self, reports: Mapping[str, bus.Report]
    ) -> tuple[dict[str, bus.Report], dict[str, list[str]]]:
        """The reports with each tunneled host's tools reached at a local forward.

        A tool whose forward cannot be had is left out of its host's report
        (its collector then does not record that host) and its error is filed
        under that host: the collector never records the controller's own
        service, at the remote port, under the remote host's name.
        """
        tunneled = set(self.config.get("tunneled", ())) & reports.keys()
        wanted = [
            (host, tool, facts)
            for host in sorted(tunneled)
            for tool in self.collectors.tools()
            if tool in self.collectors.host_tools.get(host, {})
            and isinstance(facts := reports[host].info.get(tool), Mapping)
            and "port" in facts
        ]
        out = dict(reports)
        errors: dict[str, list[str]] = {}
        if not wanted:
            return out, errors
        with ThreadPoolExecutor(min(32, len(wanted)), thread_name_prefix="forward") as pool:
            answers = list(pool.map(lambda w: self._forward(*w), wanted))
        for (host, tool, facts), (local, why) in zip(wanted, answers):
            report = out[host] = replace(out[host], info=dict(out[host].info))
            if local is None:
                del report.info[tool]
                errors.setdefault(host, []).append(str(ToolFailed(host, tool, why)))
            else:
                report.info[tool] = {**facts, "address": "127.0.0.1", "port": local}
        return out, errors

    def _forward(self, host: str, tool: str, facts: Mapping[str, Any]) -> tuple[int | None, str]:
        """A local port leading to ``facts``' port on ``host``, or None and why not."""
        address, port = str(facts.get("address", "127.0.0.1")), int(facts["port"])
        try:
            return bus.request_forward(self.client, self.keys, host, address, port, 10.0, tool), ""
        except (TimeoutError, bus.ForwardRefused) as exc:
            log.error("host %s: tool %s: %s", host, tool, exc)
            return None, (
                f"the sink cannot reach its port {port} on the host ({exc}); "
                f"check the host's SSH connection and tm/tm-{host}.log"
            )

    # --- called from HTTP threads ------------------------------------------

    def upload_for(self, action_id: str) -> Upload | bool | None:
        """The upload target of a send/sysinfo action; False once it is over."""
        with self.lock:
            if action_id in self.finished:
                return False
            return self.uploads.get(action_id)

    def data_received(self, host: str, directory: Path, kind: str) -> None:
        broadcast(self.pm, "pbench_tool_data_received", host=host, directory=directory, kind=kind)

    # --- the Redis loop ----------------------------------------------------------

    def serve(self) -> None:
        reconnect = float(self.config.get("deadlines", {}).get("reconnect", 30.0))
        while not self.stopping.is_set():
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.keys.action, self.keys.report_channel)
                self._catch_up()
                next_check = 0.0
                while not self.stopping.is_set():
                    msg = pubsub.get_message(timeout=self._poll())
                    if msg and msg["type"] == "message":
                        if msg["channel"].decode() == self.keys.action:
                            self._on_action(msg["data"])
                        else:
                            self._on_report(bus.Report.loads(msg["data"]))
                    now = time.monotonic()
                    if now >= next_check:
                        # redis-py may have re-subscribed by itself, losing what
                        # was published meanwhile: the keys hold it all.
                        self._catch_up()
                        if self.tracker is not None:
                            self._check_liveness()
                        next_check = now + HEARTBEAT_CHECK
                    self._maybe_finish()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                log.warning("lost Redis (%s); reconnecting for up to %g s", exc, reconnect)
                if not bus.wait_for_redis(self.client, reconnect, self.stopping):
                    log.error("Redis did not come back; the sink exits")
                    return
            finally:
                pubsub.close()

    def _poll(self) -> float:
        """Seconds to wait for the next message: short while a slice is being
        cut, whose end no message announces."""
        tracker = self.tracker
        if tracker is not None and tracker.slicing is not None and tracker.slicing.is_alive():
            return 0.002
        return 0.05

    def _catch_up(self) -> None:
        """Read the latest action and the current action's reports from their keys."""
        self._on_action(self.client.get(self.keys.action))
        if self.tracker is not None:
            for raw in self.client.hvals(self.keys.reports(self.tracker.action.id)):
                self.tracker.add(bus.Report.loads(raw))

    def _on_action(self, data: bytes | str | None) -> None:
        if data is None:
            return
        action = bus.Action.loads(data)
        if action.seq <= self.last_seq:
            return
        self.last_seq = action.seq
        if self.tracker is not None:
            log.warning("action %s superseded by %s", self.tracker.action.id, action.id)
            self._finish(
                timed_out=True,
                reason=f"superseded by a newer action ({action.action} {action.directory}) "
                "before it answered: is another pbench command using this session?",
            )
        timeout = float(action.args.get("timeout", 60.0))
        self.tracker = Tracker(action, self.hosts, time.monotonic() + timeout)
        if action.action == "terminate":
            # The hosts stop their persistent tools only once this key says
            # that recording is over, so the last records are not lost.
            self.tracker.sink_errors.update(self.collectors.stop_all())
            self.client.set(self.keys.collected(action.id), "1", ex=3600)
        elif action.action == "send" and "window" in action.args and self.collectors.running:
            # The sample's window of the persistent tools' data is cut while
            # the hosts pack and send theirs.
            self.tracker.slicing = self._slice(action)
        for report in self.early.pop(action.id, []):
            self.tracker.add(report)
        if action.action in ("send", "sysinfo"):
            directory = Path(action.directory)
            with self.lock:
                self.uploads[action.id] = Upload(
                    action=action,
                    directory=directory,
                    hosts=self.hosts,
                )
        log.info("action %s %s %s", action.action, action.group, action.directory)

    def _slice(self, action: bus.Action) -> Slicing:
        """Cut the sample's window of every collector's data, in a thread."""
        window = SampleWindow.from_json(action.args["window"])
        tool_dir = Path(action.directory) / f"tools-{action.group}"
        return Slicing(lambda: self.collectors.slice(window, tool_dir))

    def _on_report(self, report: bus.Report) -> None:
        if self.tracker is not None and report.id == self.tracker.action.id:
            self.tracker.add(report)
            return
        if report.id in self.finished:
            return
        self.early.setdefault(report.id, []).append(report)
        while len(self.early) > 64:
            self.early.popitem(last=False)

    def _check_liveness(self) -> None:
        assert self.tracker is not None
        waiting = self.tracker.outstanding()
        if not waiting:
            return
        alive = self.client.mget([self.keys.alive(h) for h in waiting])
        for host, beat in zip(waiting, alive):
            if beat is None:
                self.tracker.lost[host] = bus.MEISTER_SILENT

    def _maybe_finish(self) -> None:
        tracker = self.tracker
        if tracker is None:
            return
        if tracker.done():
            self._finish(timed_out=False)
        elif time.monotonic() >= tracker.deadline:
            self._finish(timed_out=True)

    def _finish(self, timed_out: bool, reason: str = "") -> None:
        assert self.tracker is not None
        self.tracker.settle()  # nothing writes into the sample after its answer
        action = self.tracker.action
        if action.action == "init" and not self.tracker.collecting:
            # Every host that answered has its persistent tools up: record them.
            self.tracker.collecting = True
            reports, unreachable = self._through_tunnels(self.tracker.reports)
            errors = self.collectors.start(action.directory, action.group, reports)
            for host, errs in unreachable.items():
                errors.setdefault(host, []).extend(errs)
            self.tracker.sink_errors.update(errors)
        result = self.tracker.result(timed_out)
        result.reason = reason
        payload = result.dumps()
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self.keys.result(action.id), payload, ex=24 * 3600)
        pipe.publish(self.keys.result_channel, payload)
        pipe.execute()  # if Redis is away, the tracker stays and this is tried again
        self.tracker = None
        with self.lock:
            upload = self.uploads.pop(action.id, None)
            self.finished.add(action.id)
        if upload is not None:
            upload.cleanup()
        if action.action == "terminate":
            self.stopping.set()


def _stop_on_signal(sink: ToolDataSink) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        sink.stopping.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pbench-tool-data-sink")
    parser.add_argument("--redis", required=True)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s tds %(levelname)s %(message)s")
    if not hasattr(tarfile, "data_filter"):
        log.error(
            "Python %s lacks tarfile's data filter; the sink needs 3.9.17, 3.10.12, "
            "3.11.4 or newer",
            sys.version.split()[0],
        )
        return 2
    sink = ToolDataSink(args.redis, args.run_id, bus.take_password())  # not its collectors'
    missing = sink.collectors.missing_programs(f"{socket.gethostname()} (the controller)")
    if missing:
        bus.mark_ready(sink.client, sink.keys, bus.SINK, False, {}, missing)
        log.error("%s", "; ".join(missing))
        return 2
    _stop_on_signal(sink)
    bind = sink.config.get("bind", "127.0.0.1")
    threads = max(10, min(64, len(sink.hosts) + 4))
    cpserver.configure(bind, 0, threads, 512, **{"error_page.default": cpserver.json_error_page})
    cherrypy.tree.mount(DataAPI(sink, sink.config["token"]), "/api/v1", {"/": {}})
    url = cpserver.start()
    try:
        with Heartbeat(sink.client, sink.keys.alive(bus.SINK)):
            bus.mark_ready(sink.client, sink.keys, bus.SINK, True, {"url": url, "pid": os.getpid()})
            log.info("listening on %s", url)
            sink.serve()
    finally:
        for who, errs in sink.collectors.stop_all().items():
            log.error("%s: %s", who, "; ".join(errs))
        cherrypy.engine.exit()
    return 0


if __name__ == "__main__":
    procs.fast_exit(main())
