"""``node_exporter`` (alias ``node-exporter``): a persistent tool with Prometheus.

Life cycle: as in pbench's Tool Meister, the exporters and Prometheus run for
the whole session, not around each sample.  Each host's meister starts
``prometheus-node-exporter`` on a free port, with the collectors chosen by
``--collectors``, when the meisters start and stops it when they stop;
:meth:`NodeExporterTool.check` says, as each sample stops, whether it died
meanwhile.  On the Tool Data Sink one ``prometheus`` scrapes every host's
exporter at the tool's interval (each series labelled ``host=<name>``) for
the whole run.  :meth:`PrometheusCollector.start` returns once every host has
been scraped (Prometheus hands new targets to its scrapers only every 5 s, a
cost now paid once per run).  After every sample
:meth:`PrometheusCollector.slice` exports the raw samples of each host's
series over the sample's window and writes ``activity.csv`` from them.
:meth:`PrometheusCollector.stop` has Prometheus snapshot its whole TSDB
(head included) into blocks, then stops it.

Layout::

    <result>/tools-<group>/_prometheus/       the whole run, every host
        prometheus.yml prometheus.log
        tsdb/                                 the snapshot: TSDB blocks
    <sample>/tools-<group>/<host>/node_exporter/   one sample
        node_exporter.log node_exporter.cmd   the host's own, as they were at its end
        series.json    every series of the host, as /api/v1/query answers a
                       range selector: its samples from the last one at or
                       before the sample's start to its stop
        activity.csv   one row per interval between two scrapes

Read the TSDB with ``promtool tsdb list|dump <...>/_prometheus/tsdb``, or
serve it: ``prometheus --storage.tsdb.path=<copy of tsdb> --config.file=/dev/null``.
Prometheus works in ``_prometheus/data`` while it runs; that directory is
removed once the snapshot is in ``tsdb/``, which then holds every sample
(``data/`` would only repeat them as a write-ahead log that only a Prometheus
started on it reads, at twice the disk space).  When the snapshot fails,
``data/`` is kept and the failure reported.

Scrapes are stamped by Prometheus, on the sink's clock, so a sample's window
is taken as the controller read it (``window.start``, ``window.stop``).
``activity.csv`` holds CPU busy %, memory used (MemTotal - MemAvailable),
disk and network throughput and load; each row is the rate between two
consecutive scrapes, as PCP's ``activity.csv`` is between two records.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pbench_runner import hookimpl
from pbench_runner.bus import SINK
from pbench_runner.commandtool import ToolFailed
from pbench_runner.daemon import Daemon
from pbench_runner.hostsummary import write_activity
from pbench_runner.tools import (
    CollectorContext,
    SampleWindow,
    ToolContext,
    ToolOption,
    ToolSpec,
    positive_int,
)

EXPORTER = "prometheus-node-exporter"
#: where the one Prometheus of a group keeps its data, beside the hosts' directories
SHARED_DIR = "_prometheus"
#: seconds Prometheus may take to hand its targets to the scrapers
DISCOVERY_DELAY = 5
DEFAULT_COLLECTORS = "cpu,meminfo,diskstats,netdev,loadavg,stat,vmstat,filesystem"
#: seconds the snapshot of the TSDB may take at the end of a run
SNAPSHOT_TIMEOUT = 60.0


def collector_list(text: str) -> str:
    """Option converter: ``cpu,meminfo`` (node_exporter collector names)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not n.replace("_", "").isalnum()]
    if not names or bad:
        raise ValueError(f"expected collector names like {DEFAULT_COLLECTORS}, not {text!r}")
    return ",".join(names)


class NodeExporterTool:
    """The host side: node_exporter, from ``tool-meister-start`` to ``tool-meister-stop``."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.daemon: Daemon | None = None

    def start(self) -> Mapping[str, Any] | None:
        self.ctx.outdir.mkdir(parents=True, exist_ok=True)
        collectors = str(self.ctx.options.get("collectors", DEFAULT_COLLECTORS)).split(",")
        self.daemon = Daemon(
            self.ctx.host, self.ctx.tool, EXPORTER, self.ctx.outdir / "node_exporter.log"
        )

        def argv(port: int) -> list[str]:
            return [
                EXPORTER,
                f"--web.listen-address={self.ctx.address}:{port}",
                "--collector.disable-defaults",
                *(f"--collector.{name}" for name in collectors),
            ]

        port = self.daemon.start(argv, self.ctx.address)
        (self.ctx.outdir / "node_exporter.cmd").write_text(" ".join(argv(port)) + "\n")
        assert self.daemon.proc is not None
        return {"address": self.ctx.address, "port": port, "pid": self.daemon.proc.pid}

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def check(self) -> None:
        """Raise :class:`ToolFailed` (naming the host and the tool) if the exporter has died."""
        if self.daemon is not None:
            self.daemon.check()

    def postprocess(self) -> None:
        """The exporter keeps nothing; Prometheus on the sink holds the data."""


class PrometheusCollector:
    """The sink side: one Prometheus that scrapes every host's node_exporter for the whole run."""

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx
        # "_" is in no host name, so this never meets a host's directory
        self.dir = ctx.tool_dir / SHARED_DIR
        self.interval = min(int(t.options.get("interval", 3)) for t in ctx.targets)
        # Errors of the one Prometheus are the sink's, not one host's.
        self.daemon = Daemon(SINK, ctx.tool, "prometheus", self.dir / "prometheus.log")

    def start(self) -> list[Exception]:
        """Start Prometheus; return once every host is scraped, or its error when it is not.

        The wait is bounded (DISCOVERY_DELAY + 3 intervals + 10 s, at most
        45 s); a host that is not scraped by then is reported, and Prometheus
        keeps trying it.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps(self._config(), indent=2) + "\n")  # JSON is YAML

        def argv(port: int) -> list[str]:
            return [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-admin-api",  # for the snapshot at stop
                "--storage.tsdb.retention.time=100y",
                "--log.level=warn",
            ]

        self.daemon.start(
            argv, ready=lambda port: _get(f"http://127.0.0.1:{port}/-/ready") is not None
        )
        timeout = min(DISCOVERY_DELAY + 3 * self.interval + 10, 45)
        deadline = time.monotonic() + timeout
        waiting = {t.host for t in self.ctx.targets}
        while waiting and self.daemon.alive() and time.monotonic() < deadline:
            waiting -= self._scraped()
            if waiting:
                time.sleep(0.1)
        if not self.daemon.alive():
            self.daemon.stop()  # raises: Prometheus itself died, so nothing was started
        return [
            ToolFailed(
                t.host,
                self.ctx.tool,
                f"Prometheus did not scrape its node_exporter at {t.endpoint} within {timeout:g} s",
            )
            for t in self.ctx.targets
            if t.host in waiting
        ]

    def _config(self) -> dict[str, Any]:
        return {
            "global": {
                "scrape_interval": f"{self.interval}s",
                "scrape_timeout": f"{self.interval}s",
            },
            "scrape_configs": [
                {
                    "job_name": "node",
                    "static_configs": [
                        {"targets": [t.endpoint], "labels": {"host": t.host}}
                        for t in self.ctx.targets
                    ],
                }
            ],
        }

    def _url(self, path: str, **params: str) -> str:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"http://127.0.0.1:{self.daemon.port}{path}{query}"

    def _scraped(self) -> set[str]:
        """The hosts Prometheus has scraped successfully at least once."""
        answer = _get(self._url("/api/v1/query", query='max_over_time(up{job="node"}[1d]) == 1'))
        return {
            item["metric"].get("host") for item in (answer or {}).get("data", {}).get("result", [])
        }

    def slice(self, window: SampleWindow, tool_dir: Path) -> list[Exception]:
        """Each host's series over ``window`` and its activity, into ``tool_dir/<host>/node_exporter/``.

        One query for every host: the raw samples of every series from two
        intervals before the start to the stop, cut at the last sample at or
        before the start.
        """
        try:
            self.daemon.check()
            self._slice(window, tool_dir)
        except ToolFailed as exc:
            return [exc]
        except Exception as exc:
            return [ToolFailed(SINK, self.ctx.tool, f"cannot export the sample's series: {exc}")]
        return []

    def _slice(self, window: SampleWindow, tool_dir: Path) -> None:
        start, stop = window.start, window.stop  # Prometheus stamps scrapes on the sink's clock
        reach = max(stop - start, 0.0) + 2 * self.interval + 1
        query = f'{{job="node"}}[{int(reach * 1000)}ms]'
        answer = _get(self._url("/api/v1/query", query=query, time=f"{stop:.3f}"), timeout=30.0)
        if not answer or answer.get("status") != "success":
            raise ToolFailed(SINK, self.ctx.tool, f"Prometheus did not answer {query}: {answer}")
        by_host: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for series in answer.get("data", {}).get("result", []):
            values = series.get("values", [])
            # from the last sample at or before the start
            first = max((i for i, (t, _) in enumerate(values) if t <= start), default=0)
            by_host[series["metric"].get("host", "")].append(
                {"metric": series["metric"], "values": values[first:]}
            )
        for target in self.ctx.targets:
            outdir = tool_dir / target.host / self.ctx.tool
            outdir.mkdir(parents=True, exist_ok=True)
            series = by_host.get(target.host, [])
            export = {
                "status": "success",
                "data": {"resultType": "matrix", "result": series},
                # what was asked (the series of this host, cut at the start)
                "query": query,
                "time": stop,
                "host": target.host,
                "window": {"start": start, "stop": stop},
            }
            # dumps, not dump: only dumps uses the C encoder (ten times faster)
            (outdir / "series.json").write_text(json.dumps(export, separators=(",", ":")))
            write_activity(outdir / "activity.csv", _activity_rows(series))

    def stop(self) -> list[Exception]:
        """Snapshot the whole TSDB into ``_prometheus/tsdb``, then stop Prometheus."""
        errors: list[Exception] = []
        snapshot: Path | None = None
        if self.daemon.alive():
            try:
                snapshot = self._snapshot()
            except (OSError, ValueError, KeyError) as exc:
                errors.append(
                    ToolFailed(
                        SINK,
                        self.ctx.tool,
                        f"Prometheus could not snapshot its TSDB ({exc}); it is kept in {self.dir / 'data'}",
                    )
                )
        try:
            self.daemon.stop(sig=signal.SIGTERM, timeout=30.0)  # SIGTERM: a clean shutdown
        except ToolFailed as exc:
            errors.append(exc)
        if snapshot is not None:
            try:
                snapshot.rename(self.dir / "tsdb")
            except OSError as exc:
                errors.append(
                    ToolFailed(SINK, self.ctx.tool, f"cannot keep the snapshot {snapshot}: {exc}")
                )
            else:
                shutil.rmtree(self.dir / "data", ignore_errors=True)
        return errors

    def _snapshot(self) -> Path:
        """Have Prometheus write every sample (its head too) as blocks; return their directory."""
        request = urllib.request.Request(
            self._url("/api/v1/admin/tsdb/snapshot", skip_head="false"), method="POST"
        )
        with urllib.request.urlopen(request, timeout=SNAPSHOT_TIMEOUT) as resp:
            answer = json.loads(resp.read())
        return self.dir / "data" / "snapshots" / str(answer["data"]["name"])


def _activity_rows(series: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per interval between two scrapes of a host, stamped with the later one.

    The same measures as the PromQL ``100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle"})))``,
    ``node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes``, the rates
    of the disks' read and written bytes, of every interface's but lo's
    received and transmitted bytes, and ``node_load1``.
    """
    #: scrape time -> measure -> summed rates (or a gauge's value)
    rows: dict[float, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for item in series:
        labels = item["metric"]
        name = labels.get("__name__", "")
        if name == "node_cpu_seconds_total" and labels.get("mode") == "idle":
            measure = "idle"
        elif name in ("node_disk_read_bytes_total", "node_disk_written_bytes_total"):
            measure = "disk"
        elif (
            name in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total")
            and labels.get("device") != "lo"
        ):
            measure = "net"
        elif name in ("node_memory_MemTotal_bytes", "node_memory_MemAvailable_bytes", "node_load1"):
            for stamp, value in item["values"][1:]:
                rows[float(stamp)][name] = float(value)
            continue
        else:
            continue
        points = [(float(t), float(v)) for t, v in item["values"]]
        for (then, old), (now, new) in zip(points, points[1:]):
            if now > then:
                # a counter that went back was reset: it counted ``new`` since
                rows[now][measure] += (new - old if new >= old else new) / (now - then)
                rows[now][f"{measure}_n"] += 1
    out = []
    for stamp, row in sorted(rows.items()):
        total, available = (
            row.get("node_memory_MemTotal_bytes"),
            row.get("node_memory_MemAvailable_bytes"),
        )
        out.append(
            {
                "timestamp": datetime.fromtimestamp(stamp, timezone.utc).isoformat(
                    timespec="seconds"
                ),
                "cpu_busy_pct": min(100.0, max(0.0, 100.0 * (1 - row["idle"] / row["idle_n"])))
                if row.get("idle_n")
                else None,
                "mem_used_mib": None
                if total is None or available is None
                else (total - available) / 1048576,
                "disk_kib_s": row["disk"] / 1024 if row.get("disk_n") else None,
                "net_kib_s": row["net"] / 1024 if row.get("net_n") else None,
                "load1": row.get("node_load1"),
            }
        )
    return out


def _get(url: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """GET a Prometheus URL on loopback; None when it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = resp.read()
    except OSError:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


@hookimpl
def pbench_tool_specs() -> Sequence[ToolSpec]:
    return [
        ToolSpec(
            name="node_exporter",
            aliases=("node-exporter",),
            kind="persistent",
            summary="Prometheus node_exporter on each host, scraped by Prometheus on the sink",
            factory=NodeExporterTool,
            collector=PrometheusCollector,
            programs={EXPORTER: "prometheus-node-exporter"},
            collector_programs={"prometheus": "prometheus"},
            options=[
                ToolOption("interval", positive_int, 3, "seconds between scrapes"),
                ToolOption(
                    "collectors",
                    collector_list,
                    DEFAULT_COLLECTORS,
                    "node_exporter collectors to enable",
                ),
            ],
        )
    ]
