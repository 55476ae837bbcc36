"""What a run records: one typed record per sample, and each benchmark's summary.

The same records and the same layout under every verb::

    <result>/<N>-<benchmark>/sample<K>/result.json     one SampleRecord
    <result>/<N>-<benchmark>/result.json               the Iteration: every sample,
                                                       statistics per metric, per-host summary
    <result>/<N>-<benchmark>/reference-result -> sample<K>
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbench_runner import strictjson
from pbench_runner.hostsummary import combine
from pbench_runner.stats import summarize

#: the metrics every sample has, whatever the benchmark records
TIMINGS = ("wall_s", "cpu_s")


@dataclass
class SampleRecord:
    """One sample: its timing, outcome, metrics, tools and per-host summary."""

    sample: int
    directory: Path
    #: "sample", or "warmup" for an unrecorded run
    kind: str = "sample"
    #: "ok", or "failed: <why>"
    status: str = "ok"
    #: the sample's window on the controller's clock, ISO 8601
    start: str = ""
    end: str = ""
    #: the workload's own time, as its runner measured it: per call when the
    #: benchmark times a callable in ``loops`` calls (the ``benchmark`` fixture)
    wall_s: float = math.nan
    #: the calling thread's CPU time (user-benchmark: its command's)
    cpu_s: float = math.nan
    #: CPU time of the child processes the benchmark ran (``sample.run``)
    children_cpu_s: float | None = None
    loops: int | None = None
    #: ``pbench user-benchmark``: the command and its exit status
    command: list[str] | None = None
    exit_status: int | None = None
    #: ``sample.record(...)``: name -> value, and name -> [unit, higher_is_better]
    metrics: dict[str, float] = field(default_factory=dict)
    units: dict[str, list[Any]] = field(default_factory=dict)
    #: ``sample.run(...)``: each command and its exit status
    commands: list[dict[str, Any]] = field(default_factory=list)
    #: the tool group around the sample, None when it ran without tools
    tools: str | None = None
    tool_problems: list[str] = field(default_factory=list)
    #: :class:`~pbench_runner.tools.SampleWindow` as JSON: every host's instants
    window: dict[str, Any] | None = None
    #: host -> what it did during the sample (:mod:`pbench_runner.hostsummary`)
    hosts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fail(self, exc: BaseException) -> None:
        if self.ok:
            self.status = f"failed: {type(exc).__name__}: {exc}"

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in vars(self).items() if k != "directory"}
        if self.command is None:
            del data["command"], data["exit_status"]
        if not self.tool_problems:
            del data["tool_problems"]
        for key in ("children_cpu_s", "loops"):
            if data[key] is None:
                del data[key]
        return data

    def write(self) -> None:
        """``result.json`` in the sample's directory (strict JSON: NaN is null)."""
        text = strictjson.dumps(self.to_json(), indent=2)
        (self.directory / "result.json").write_text(text + "\n")


@dataclass
class Iteration:
    """One benchmark (one parameter set): its samples and their summary."""

    name: str
    directory: Path
    #: pytest's node id (``pbench run``)
    nodeid: str = ""
    #: the command (``pbench user-benchmark``)
    command: list[str] | None = None
    status: str = "running"
    samples: list[SampleRecord] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, Any] = field(default_factory=dict)
    primary_metric: str = ""
    reference: str = ""
    finished: bool = False
    #: a ``benchmark`` fixture's facts (:meth:`BenchmarkFixture.meta`): wall_s is per call
    benchmark: dict[str, Any] | None = None
    #: against a baseline: metric -> its change and verdict
    verdict: dict[str, Any] | None = None
    #: why its status is what it is, when pytest says more (set-up, tear-down errors)
    note: str = ""

    def finish(self, status: str | None = None) -> None:
        """Summarize the samples; write ``result.json`` and ``reference-result``."""
        if self.finished:
            return
        self.finished = True
        failed = any(not s.ok for s in self.samples)
        self.status = status or ("failed" if failed or self.status == "failed" else "ok")
        ok = [s for s in self.samples if s.ok]
        self.metrics = metric_series(ok)
        timing = self.metrics["wall_s"].get("summary")
        if timing:  # as pyperf and pytest-benchmark report a timing
            timing["iqr"] = timing["q3"] - timing["q1"]
            timing["ops"] = 1 / timing["mean"] if timing["mean"] > 0 else None
            timing["rounds"] = timing["n"]
            timing["loops"] = self.benchmark["loops"] if self.benchmark else 1
        self.hosts = combine(s.hosts for s in self.samples if s.hosts)
        if ok:
            # pbench's reference is the sample closest to the mean of the primary
            # metric: the first one the benchmark records, else its wall time
            primary = next((m for m in self.metrics if m not in TIMINGS), "wall_s")
            closest = self.metrics[primary]["summary"]["closest"]
            self.primary_metric = primary
            self.reference = f"sample{ok[closest - 1].sample}"
            self.directory.mkdir(parents=True, exist_ok=True)
            link = self.directory / "reference-result"
            link.unlink(missing_ok=True)
            os.symlink(self.reference, link)
        self._write()

    def _write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        text = strictjson.dumps(self.to_json(), indent=2)
        (self.directory / "result.json").write_text(text + "\n")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "nodeid": self.nodeid}
        if self.command is not None:
            data["command"] = self.command
        data.update(
            status=self.status,
            samples=[s.to_json() for s in self.samples],
            metrics=self.metrics,
            hosts=self.hosts,
        )
        if self.reference:
            data.update(primary_metric=self.primary_metric, reference=self.reference)
        if self.benchmark is not None:
            data["benchmark"] = self.benchmark
        if self.verdict is not None:
            data["verdict"] = self.verdict
        if self.note:
            data["note"] = self.note
        return data

    def restate(self, status: str, note: str = "") -> None:
        """A status known only after it finished (a regression, pytest's
        xfail or tear-down error): ``result.json`` is written again."""
        self.status = status
        self.note = note or self.note
        self._write()

    def meta(self) -> dict[str, Any]:
        """What ``metadata.log`` keeps of it."""
        data: dict[str, Any] = {"name": self.name, "status": self.status}
        if self.nodeid:
            data["nodeid"] = self.nodeid
        if self.command is not None:
            data["user_script"] = " ".join(self.command)
        data["samples"] = [
            {
                "sample": s.sample,
                "status": s.status,
                "exit_status": s.exit_status,
                "wall_s": s.wall_s,
                "cpu_s": s.cpu_s,
            }
            for s in self.samples
        ]
        return data


def metric_series(samples: Iterable[SampleRecord]) -> dict[str, Any]:
    """Per metric: unit, direction, every sample's value and their statistics."""
    samples = list(samples)
    series: dict[str, dict[str, Any]] = {
        name: {
            "unit": "s",
            "higher_is_better": False,
            "values": [getattr(s, name) for s in samples],
        }
        for name in TIMINGS
    }
    for s in samples:
        for name, value in s.metrics.items():
            unit, better = s.units.get(name, ["", False])
            entry = series.setdefault(
                name, {"unit": unit, "higher_is_better": better, "values": []}
            )
            entry["values"].append(value)
    for entry in series.values():
        values = [v for v in entry["values"] if not math.isnan(v)]
        if values:
            entry["summary"] = summarize(values)
    return series


def group_intervals(
    tools: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> dict[str, dict[str, float]]:
    """host -> tool -> its sampling interval in seconds, from the registered options."""
    return {
        host: {
            tool: float(options["interval"])
            for tool, options in per_host.items()
            if isinstance(options.get("interval"), (int, float))
        }
        for host, per_host in tools.items()
    }
