"""The Tool Data Sink's side of persistent tools: pmlogger, Prometheus.

A persistent tool runs on every host (pmcd, node_exporter) for the whole
session and is recorded on the sink by the tool's *collector*.  As pbench's
Tool Meister does, they start once, at ``init`` (tool-meister-start: each
host's answer carries the address and port its tool listens on), and stop
once, at ``terminate``.  The whole run's data lands in
``<result>/tools-<group>/<host>/<tool>/``; after every sample, each collector
writes that sample's window of it into the sample's own
``tools-<group>/<host>/<tool>/``, beside the hosts' transient tools' data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pbench_runner import bus
from pbench_runner.errors import ProgramMissing
from pbench_runner.pluginmanager import ToolRegistry
from pbench_runner.tools import Collector, CollectorContext, OptionValue, SampleWindow, Target

log = logging.getLogger("pbench.sink.collectors")

_T = TypeVar("_T")
_R = TypeVar("_R")

#: host -> tool -> options, as registered in the tool store
HostTools = Mapping[str, Mapping[str, Mapping[str, OptionValue]]]


class Collectors:
    """Every collector the sink runs for the session."""

    def __init__(
        self,
        registry: ToolRegistry,
        host_tools: HostTools,
        reach: Callable[[str, Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ) -> None:
        self.registry = registry
        self.host_tools = host_tools
        #: (host, facts) -> the facts as the sink reaches the tool (through a tunnel)
        self.reach = reach or (lambda host, facts: facts)
        self.running: list[tuple[str, Collector]] = []
        self.started = False

    def tools(self) -> list[str]:
        """The registered tools that have a collector."""
        names = {t for tools in self.host_tools.values() for t in tools}
        return sorted(n for n in names if self.registry.get(n).collector is not None)

    def missing_programs(self, controller: str) -> list[str]:
        """What this machine lacks to run the collectors, one message each."""
        return [
            str(ProgramMissing(controller, name, program, package))
            for name in self.tools()
            for program, package in self.registry.get(name).missing_collector_programs().items()
        ]

    def start(
        self, directory: str, group: str, reports: Mapping[str, bus.Report]
    ) -> dict[str, list[str]]:
        """Start the collectors for the session (``directory`` is the result
        directory); returns errors by host (or the sink).

        A collector may start for some hosts and not others: ``start`` returns
        the failures of the hosts it could not record, and it keeps running
        for the rest.  If it raises, it started nothing.
        """
        errors: dict[str, list[str]] = {}
        if self.started:
            return errors  # the recorders already running are not to be lost
        self.started = True
        for name in self.tools():
            spec = self.registry.get(name)
            assert spec.collector is not None
            targets = [
                Target(
                    host=host, options=tools[name], facts=self.reach(host, reports[host].info[name])
                )
                for host, tools in sorted(self.host_tools.items())
                if name in tools and host in reports and _has_port(reports[host].info.get(name))
            ]
            if not targets:
                continue  # no host could start the tool; the hosts said why
            ctx = CollectorContext(
                tool=name,
                group=group,
                tool_dir=Path(directory) / f"tools-{group}",
                targets=targets,
            )
            what = f"tool {name!r}: its collector on the Tool Data Sink"
            try:
                collector = spec.collector(ctx)
                failed = collector.start() or ()
            except Exception as exc:  # a plugin's failure is reported, never fatal
                _add(errors, exc, what, "start")
                continue
            for problem in failed:
                _add(errors, problem, what, "start")
            self.running.append((name, collector))
            log.info("collector %s started for %d host(s)", name, len(targets))
        return errors

    def slice(self, window: SampleWindow, tool_dir: Path) -> dict[str, list[str]]:
        """Every collector writes its data of ``window`` into a sample's ``tool_dir``."""

        def cut(pair: tuple[str, Collector]) -> Sequence[Exception]:
            began = time.perf_counter()
            try:
                return pair[1].slice(window, tool_dir) or ()
            except Exception as exc:  # a plugin's bug: reported against the sample
                return (exc,)
            finally:
                spent = (time.perf_counter() - began) * 1e3
                log.info("collector %s: %s sliced in %.1f ms", pair[0], tool_dir.parent.name, spent)

        return self._each(cut, "slice")

    def stop_all(self) -> dict[str, list[str]]:
        """Stop every collector, all at once; every one is reached."""

        def stop(pair: tuple[str, Collector]) -> Sequence[Exception]:
            try:
                return pair[1].stop() or ()
            except Exception as exc:
                return (exc,)

        errors = self._each(stop, "stop")
        self.running = []
        return errors

    def _each(
        self, work: Callable[[tuple[str, Collector]], Sequence[Exception]], step: str
    ) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}
        running = list(self.running)
        # each collector bounds its own work
        outcomes = in_threads(work, running, name=lambda pair: f"{step}-{pair[0]}")
        for (name, _), failed in zip(running, outcomes, strict=True):
            what = f"tool {name!r}: its collector on the Tool Data Sink"
            for problem in failed:
                _add(errors, problem, what, step)
        return errors


def in_threads(
    work: Callable[[_T], _R],
    items: Sequence[_T],
    name: Callable[[_T], str] | None = None,
) -> list[_R]:
    """``work(item)`` for every item, each in its own thread, all at once.

    Returns when every one is done, with what each returned, in the order of
    ``items``.  ``work`` must not raise (an exception would leave its result
    ``None``).  A process a thread spawns with ``procs.spawn`` dies with that
    thread: start long-lived programs elsewhere.
    """
    results: list[Any] = [None] * len(items)

    def run(index: int, item: _T) -> None:
        results[index] = work(item)

    threads = [
        threading.Thread(target=run, args=(i, item), name=name(item) if name else None)
        for i, item in enumerate(items)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _has_port(facts: Any) -> bool:
    return isinstance(facts, Mapping) and "port" in facts


def _add(errors: dict[str, list[str]], exc: Exception, what: str, step: str) -> None:
    """File an error under the host it names (a ToolFailed has one), else the sink."""
    host = getattr(exc, "host", None) or bus.SINK
    text = str(exc) if getattr(exc, "host", None) else f"{what}: {step} failed: {exc}"
    errors.setdefault(host, []).append(text)
