"""``node_exporter`` (alias ``node-exporter``): a persistent tool with Prometheus.

On each host the meister starts ``prometheus-node-exporter`` on a free port
with the collectors chosen by ``--collectors``; the port reaches the sink in
the meister's start report.  On the Tool Data Sink one ``prometheus``
scrapes every host's exporter at the tool's interval (each series labelled
``host=<name>``) and keeps its TSDB in ``tools-<group>/_prometheus/data``.
Before Prometheus is shut down, the collector asks it for each host's CPU,
memory, disk and network activity over the sample and writes
``tools-<group>/<host>/node_exporter/activity.csv``.
"""

from __future__ import annotations

import json
import logging
import signal
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from pbench_runner import hookimpl, procs
from pbench_runner.bus import SINK
from pbench_runner.daemon import Daemon
from pbench_runner.hostsummary import write_activity
from pbench_runner.tools import CollectorContext, ToolContext, ToolOption, ToolSpec, positive_int

log = logging.getLogger(__name__)

EXPORTER = "prometheus-node-exporter"
#: where the one Prometheus of a group keeps its data, beside the hosts' directories
SHARED_DIR = "_prometheus"
#: seconds Prometheus may take to hand its targets to the scrapers
DISCOVERY_DELAY = 5
DEFAULT_COLLECTORS = "cpu,meminfo,diskstats,netdev,loadavg,stat,vmstat,filesystem"
#: activity.csv column -> PromQL, by host; ``{w}`` is the rate window
_ACTIVITY_QUERIES: Mapping[str, str] = {
    "cpu_busy_pct": '100 * (1 - avg by (host) (rate(node_cpu_seconds_total{{mode="idle"}}[{w}])))',
    "mem_used_mib": "(node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes) / 1048576",
    "disk_kib_s": "sum by (host) (rate(node_disk_read_bytes_total[{w}])"
    " + rate(node_disk_written_bytes_total[{w}])) / 1024",
    "net_kib_s": 'sum by (host) (rate(node_network_receive_bytes_total{{device!="lo"}}[{w}])'
    ' + rate(node_network_transmit_bytes_total{{device!="lo"}}[{w}])) / 1024',
    "load1": "node_load1",
}


def collector_list(text: str) -> str:
    """Option converter: ``cpu,meminfo`` (node_exporter collector names)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if not n.replace("_", "").isalnum()]
    if not names or bad:
        raise ValueError(f"expected collector names like {DEFAULT_COLLECTORS}, not {text!r}")
    return ",".join(names)


class NodeExporterTool:
    """The host side: node_exporter from start to stop."""

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

    def postprocess(self) -> None:
        """The exporter keeps nothing; Prometheus on the sink holds the data."""


class PrometheusCollector:
    """The sink side: one Prometheus that scrapes every host's node_exporter."""

    def __init__(self, ctx: CollectorContext) -> None:
        self.ctx = ctx
        # "_" is in no host name, so this never meets a host's directory
        self.dir = ctx.tool_dir / SHARED_DIR
        self.interval = min(int(t.options.get("interval", 3)) for t in ctx.targets)
        # Errors of the one Prometheus are the sink's, not one host's.
        self.daemon = Daemon(SINK, ctx.tool, "prometheus", self.dir / "prometheus.log")
        self.began = 0.0

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self.dir / "prometheus.yml"
        config.write_text(json.dumps(self._config(), indent=2) + "\n")  # JSON is YAML

        def argv(port: int) -> list[str]:
            return [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=100y",
                "--log.level=warn",
            ]

        self.began = time.time()
        self.daemon.start(
            argv, ready=lambda port: _get(f"http://127.0.0.1:{port}/-/ready") is not None
        )

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

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.daemon.port}{path}"

    def stop(self) -> None:
        try:
            if self.daemon.alive():
                self._wait_for_scrapes()
                self._write_activity()
        finally:
            self.daemon.stop(sig=signal.SIGTERM, timeout=30.0)  # SIGTERM: a clean shutdown

    def _wait_for_scrapes(self) -> None:
        """Wait (bounded) until every host was scraped 3 times: 2 rates at least.

        Prometheus hands new targets to its scrapers only every 5 s, so a
        sample shorter than that would otherwise have no data at all.
        """
        # Generous, as a loaded machine delays the first scrapes well past
        # DISCOVERY_DELAY, but within the hosts' wait for the collectors.
        timeout = min(DISCOVERY_DELAY + 3 * self.interval + 15, 45)
        query = urllib.parse.urlencode({"query": 'count_over_time(up{job="node"}[1d])'})

        def scraped() -> bool:
            answer = _get(self._url(f"/api/v1/query?{query}")) or {}
            counts = {
                item["metric"].get("host"): float(item["value"][1])
                for item in answer.get("data", {}).get("result", [])
            }
            return all(counts.get(t.host, 0) >= 3 for t in self.ctx.targets)

        if not procs.wait_until(scraped, timeout, interval=0.1):
            log.warning("not every host was scraped 3 times before the deadline")

    def _write_activity(self) -> None:
        """Ask Prometheus for every host's activity over the sample."""
        end = time.time() + self.interval  # the last step must follow the last scrape
        window = f"{3 * self.interval}s"
        series: dict[str, dict[float, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
        for column, query in _ACTIVITY_QUERIES.items():
            params = urllib.parse.urlencode(
                {
                    "query": query.format(w=window),
                    "start": f"{self.began:.3f}",
                    "end": f"{end:.3f}",
                    "step": f"{self.interval}s",
                }
            )
            answer = _get(self._url(f"/api/v1/query_range?{params}"))
            if not answer:
                continue
            for item in answer.get("data", {}).get("result", []):
                host = item.get("metric", {}).get("host")
                for stamp, value in item.get("values", []):
                    if host:
                        series[host][float(stamp)][column] = float(value)
        for target in self.ctx.targets:
            rows = [
                {"timestamp": _iso(stamp), **values}
                for stamp, values in sorted(series.get(target.host, {}).items())
            ]
            write_activity(self.ctx.tool_dir / target.host / self.ctx.tool / "activity.csv", rows)


def _get(url: str) -> dict[str, Any] | None:
    """GET a Prometheus URL on loopback; None when it does not answer 200."""
    try:
        with urllib.request.urlopen(url, timeout=5.0) as resp:
            body = resp.read()
    except OSError:
        return None
    try:
        answer = json.loads(body)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")


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
