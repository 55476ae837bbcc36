"""A run's result directory and its ``metadata.log`` / ``metadata.json``.

Layout (the one pbench users know)::

    pbench-user-benchmark_<config>_<YYYY.MM.DDTHH.MM.SS>/
        metadata.log            INI: [pbench] [controller] [run] [tools] [tools/<host>] [iterations/...]
        metadata.json           the same facts, structured
        tool-registration/<group>.json
        tm/                     redis, sink and meister logs
        sysinfo/{beg,end}/<host>/<item>/...
        1-default/sample<N>/    command.txt output.txt result.json tools-<group>/<host>/<tool>/
"""

from __future__ import annotations

import configparser
import datetime as dt
import json
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbench_runner import __version__
from pbench_runner.errors import UsageError
from pbench_runner.toolstore import ToolGroup

_CONFIG = re.compile(r"^[A-Za-z0-9_.+-]{0,64}$")


def timestamp(when: dt.datetime | None = None) -> str:
    return (when or dt.datetime.now()).strftime("%Y.%m.%dT%H.%M.%S")


def make_result_dir(results: Path, script: str, config: str) -> Path:
    """A new, unique result directory under ``results``."""
    if not _CONFIG.match(config):
        raise UsageError(
            f"bad --config {config!r}: letters, digits, '.', '_', '+' or '-' (64 at most)"
        )
    base = f"{script}_{config}_{timestamp()}" if config else f"{script}_{timestamp()}"
    results.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = results / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise UsageError(f"cannot create a result directory under {results}")


def missing_samples(
    result_dir: Path, *missing: Mapping[str, Iterable[str]]
) -> dict[str, list[str]]:
    """Host -> the sample directories whose data it never sent, from one or more
    controllers' ``missing``: each relative to ``result_dir`` when inside it,
    hosts and directories sorted."""
    found: dict[str, set[str]] = {}
    for each in missing:
        for host, dirs in each.items():
            found.setdefault(host, set()).update(
                str(Path(d).relative_to(result_dir)) if Path(d).is_relative_to(result_dir) else d
                for d in dirs
            )
    return {host: sorted(found[host]) for host in sorted(found)}


def _iso(when: dt.datetime | None) -> str:
    return when.isoformat(timespec="microseconds") if when else ""


@dataclass
class RunMetadata:
    """Facts about one run, written as metadata.log and metadata.json."""

    name: str
    script: str
    config: str
    group: ToolGroup
    run_id: str = ""
    start: dt.datetime = field(default_factory=dt.datetime.now)
    end: dt.datetime | None = None
    status: str = "running"
    iterations: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "pbench": {
                "name": self.name,
                "script": self.script,
                "config": self.config,
                "date": _iso(self.start),
                "version": __version__,
                "run_id": self.run_id,
            },
            "controller": {"hostname": socket.gethostname(), "fqdn": socket.getfqdn()},
            "run": {
                "start_run": _iso(self.start),
                "end_run": _iso(self.end),
                "status": self.status,
            },
            "tools": {
                "group": self.group.name,
                "hosts": {
                    host: {"labels": ht.labels, "tools": ht.tools}
                    for host, ht in sorted(self.group.hosts.items())
                },
            },
            "iterations": self.iterations,
            **self.extra,
        }

    def write(self, result_dir: Path) -> None:
        data = self.to_json()
        (result_dir / "metadata.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
        ini = configparser.ConfigParser(interpolation=None)
        ini["pbench"] = {k: str(v) for k, v in data["pbench"].items()}
        ini["controller"] = data["controller"]
        ini["run"] = {k: str(v) for k, v in data["run"].items()}
        hosts = sorted(self.group.hosts)
        ini["tools"] = {"group": self.group.name, "hosts": " ".join(hosts)}
        for host in hosts:
            entry = self.group.hosts[host]
            section: dict[str, str] = {
                "label": ",".join(entry.labels),
                "tools": ",".join(sorted(entry.tools)),
            }
            for tool, options in sorted(entry.tools.items()):
                section[tool] = " ".join(f"--{k}={v}" for k, v in sorted(options.items()))
            ini[f"tools/{host}"] = section
        for it in self.iterations:
            section = {}
            for key, value in it.items():
                if key == "samples":
                    section["samples"] = str(len(value))
                    section["exit_statuses"] = " ".join(
                        str(s.get("exit_status", "")) for s in value
                    )
                elif isinstance(value, (str, int, float)):
                    section[key] = str(value)
            ini[f"iterations/{it['name']}"] = section
        with open(result_dir / "metadata.log", "w") as fh:
            ini.write(fh)
