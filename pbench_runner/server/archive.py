"""What the index keeps of a result tarball, read in one pass over it.

A result tarball holds one directory, named like the tarball, with the
layout of :mod:`pbench_runner.resultdir`.  Only small files are unpacked
(into a staging directory the caller removes): ``metadata.json``, the
``result.json`` files, a few sysinfo files per host, and the tools' CSV
files.  From them come the dataset's index row and its document: metadata,
iterations with their statistics and per-host summaries, sysinfo, and the
tool data over time per host.  Every member is checked with ``tarfile``'s
data filter first; one unsafe member (or one with a ``..`` component)
refuses the whole tarball.

What is unpacked is capped: a wanted member past :data:`MAX_MEMBER` is
listed but not unpacked, and once ``max_unpacked`` bytes are unpacked
the tarball is refused (413), so that a small, highly compressed upload
cannot fill the disk.  CSV files are read row by row, once each, and
:mod:`pbench_runner.hostsummary` keeps at most ``MAX_TIMES`` timestamps of
each, so the memory an upload takes stays bounded.
"""

from __future__ import annotations

import json
import lzma
import re
import tarfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from pbench_runner.hostsummary import Series, activity, combine, host_series, is_host_dir
from pbench_runner.stats import summarize
from pbench_runner.tarballs import CHUNK, UnsafeTarball, check_member

#: the members unpacked for the index (paths inside the result directory)
WANTED: Final = re.compile(
    r"^(metadata\.json|result\.json"
    r"|[^/]+/result\.json"
    r"|[^/]+/sample\d+/result\.json"
    r"|sysinfo/[^/]+/[^/]+/(sysinfo\.json|kernel/uname\.txt|kernel/os-release"
    r"|cpu/lscpu\.txt|memory/free\.txt)"
    r"|[^/]+/sample\d+/tools-[^/]+/[^/]+/[^/]+/[^/]+\.csv)$"
)
#: a wanted member larger than this is listed but not unpacked
MAX_MEMBER: Final = 64 << 20
#: the most bytes unpacked from one upload by default (beyond it: refused with 413)
MAX_UNPACKED: Final = 256 << 20
#: points per plotted series; longer series are thinned evenly
MAX_POINTS: Final = 400


class NotAResult(Exception):
    """The tarball is unreadable, unsafe, or not a pbench result (answered with 400)."""

    status = 400


class TooMuchToUnpack(NotAResult):
    """The files the index reads would unpack to more than the server takes (413)."""

    status = 413


@dataclass
class Contents:
    """A dataset as read from its tarball."""

    metadata: dict[str, Any]
    #: the index's document: metadata, iterations, sysinfo, series, files
    doc: dict[str, Any]

    def column(self, *path: str) -> str:
        node: Any = self.metadata
        for key in path:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        return node if isinstance(node, str) else ""


def read(stream: IO[bytes], name: str, staging: Path, max_unpacked: int = MAX_UNPACKED) -> Contents:
    """Check every member of the ``.tar.xz`` in ``stream`` and read what the index needs."""
    files = _unpack_wanted(stream, name, staging, max_unpacked)
    root = staging / name
    try:
        metadata = json.loads((root / "metadata.json").read_text())
    except FileNotFoundError:
        raise NotAResult(
            f"{name}/metadata.json is missing: this is not a pbench result directory"
        ) from None
    except (OSError, ValueError) as exc:
        raise NotAResult(f"{name}/metadata.json cannot be read: {exc}") from exc
    check_metadata(metadata, name)
    measured = {
        d: host_series(d) for d in sorted(root.glob("*/sample*/tools-*/*")) if is_host_dir(d)
    }
    doc = {
        "metadata": metadata,
        "iterations": iterations(root, metadata, measured),
        "sysinfo": sysinfo(root),
        "series": series(measured),
        "files": files,
    }
    return Contents(metadata, doc)


def check_metadata(metadata: Any, name: str) -> None:
    """Refuse (400) a ``metadata.json`` whose tools or iterations are not shaped as
    ``pbench`` writes them, naming what is wrong."""
    where = f"{name}/metadata.json"
    if not isinstance(metadata, dict):
        raise NotAResult(f"{where} is not a JSON object")
    tools = metadata.get("tools", {})
    if not isinstance(tools, dict):
        raise NotAResult(f"{where}: 'tools' is not an object")
    hosts = tools.get("hosts", {}) or {}
    if not isinstance(hosts, dict):
        raise NotAResult(f"{where}: 'tools.hosts' is not an object of host names")
    for host, entry in hosts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("tools", {}), (dict, list)):
            raise NotAResult(f"{where}: host {host!r} has no object of 'tools'")
    runs = metadata.get("iterations", []) or []
    if not isinstance(runs, list):
        raise NotAResult(f"{where}: 'iterations' is not a list")
    for it in runs:
        samples = it.get("samples", []) if isinstance(it, dict) else []
        if not isinstance(samples, list):
            raise NotAResult(f"{where}: the samples of iteration {it.get('name')!r} are not a list")
        for sample in samples:
            if not isinstance(sample, dict) or sample.get("exit_status") != 0:
                continue
            # wall_s since the one run protocol; duration_s in older results
            for key in ("wall_s" if "wall_s" in sample else "duration_s", "cpu_s"):
                value = sample.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise NotAResult(
                        f"{where}: sample {sample.get('sample')!r} of iteration "
                        f"{it.get('name')!r} has no number {key!r}"
                    )


def _unpack_wanted(
    stream: IO[bytes], name: str, staging: Path, max_unpacked: int
) -> list[list[Any]]:
    files: list[list[Any]] = []
    unpacked = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|xz", bufsize=CHUNK) as tar:
            for member in tar:
                try:
                    check_member(member, staging)
                except UnsafeTarball as exc:
                    raise NotAResult(f"refused: {exc}") from exc
                if ".." in member.name.split("/"):
                    raise NotAResult(f"refused: member {member.name!r} has a '..' component")
                top, _, inner = member.name.rstrip("/").partition("/")
                if top != name:
                    raise NotAResult(
                        f"member {member.name!r} is not inside the directory {name}/; a result "
                        "tarball holds one directory named like the tarball"
                    )
                if member.isfile():
                    files.append([inner, member.size])
                    if member.size <= MAX_MEMBER and WANTED.match(inner):
                        unpacked += member.size
                        if unpacked > max_unpacked:
                            raise TooMuchToUnpack(
                                f"{name}: its metadata, results, sysinfo and tool CSV files "
                                f"unpack to more than {max_unpacked} bytes (at {inner}); "
                                "this server indexes at most that much per upload"
                            )
                        tar.extract(member, staging, filter="data")
    except (tarfile.TarError, lzma.LZMAError, EOFError) as exc:
        raise NotAResult(f"not a readable .tar.xz: {exc}") from exc
    return files


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _metric(unit: str, higher_is_better: bool, values: list[float]) -> dict[str, Any]:
    entry: dict[str, Any] = {"unit": unit, "higher_is_better": higher_is_better, "values": values}
    if values:
        entry["summary"] = summarize(values)
    return entry


def iterations(
    root: Path, metadata: dict[str, Any], measured: dict[Path, dict[str, Series]]
) -> list[dict[str, Any]]:
    """Each iteration's statistics and per-host summary, shaped like ``pbench run``'s
    ``result.json`` so that :mod:`pbench_runner.compare` reads them as they are.

    ``measured`` is each host directory's :func:`host_series`, read once.
    """
    result = _json(root / "result.json")
    if isinstance(result, dict) and isinstance(result.get("iterations"), list):
        return [
            {
                "name": str(it.get("name", "")),
                "nodeid": str(it.get("nodeid") or it.get("name", "")),
                # user-benchmark's command (a list since the one run protocol)
                **(
                    {"command": " ".join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)}
                    if (cmd := it.get("command")) is not None
                    else {}
                ),
                "status": str(it.get("status", "")),
                "metrics": _metrics(it.get("metrics")),
                "hosts": _hosts(it.get("hosts")),
            }
            for it in result["iterations"]
            if isinstance(it, dict)
        ]
    # pbench user-benchmark: each sample's duration and CPU time are the metrics
    group = str(metadata.get("tools", {}).get("group", "default"))
    found = []
    for it in metadata.get("iterations", []) or []:
        if not isinstance(it, dict) or "name" not in it:
            continue
        samples = [s for s in it.get("samples", []) if isinstance(s, dict)]
        ok = [s for s in samples if s.get("exit_status") == 0]
        name = str(it["name"])
        found.append(
            {
                "name": name,
                "nodeid": name,
                "command": it.get("user_script", ""),
                "status": "ok" if samples and len(ok) == len(samples) else "failed",
                "metrics": {
                    "wall_s": _metric(
                        "s",
                        False,
                        [float(s["wall_s"] if "wall_s" in s else s["duration_s"]) for s in ok],
                    ),
                    "cpu_s": _metric("s", False, [float(s["cpu_s"]) for s in ok]),
                },
                "hosts": combine(
                    _sample_hosts(
                        root / name / f"sample{s.get('sample')}" / f"tools-{group}", measured
                    )
                    for s in samples
                ),
            }
        )
    return found


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _metrics(value: Any) -> dict[str, Any]:
    """A ``result.json``'s metrics, keeping only numbers where numbers belong."""
    found: dict[str, Any] = {}
    for name, entry in (value if isinstance(value, dict) else {}).items():
        if not isinstance(entry, dict):
            continue
        values = entry.get("values")
        summary = entry.get("summary")
        kept: dict[str, Any] = {
            "unit": str(entry.get("unit", "")),
            "higher_is_better": bool(entry.get("higher_is_better")),
            "values": [v for v in values if _number(v)] if isinstance(values, list) else [],
        }
        if isinstance(summary, dict):
            kept["summary"] = {str(k): v for k, v in summary.items() if _number(v)}
        found[str(name)] = kept
    return found


def _hosts(value: Any) -> dict[str, dict[str, dict[str, float | None]]]:
    """A ``result.json``'s per-host summary, keeping only measures with a number
    mean; a peak is a number or None (a sample too short for one)."""
    return {
        str(host): {
            str(m): {
                "mean": stat["mean"],
                "peak": stat["peak"] if _number(stat.get("peak")) else None,
            }
            for m, stat in measures.items()
            if isinstance(stat, dict) and _number(stat.get("mean"))
        }
        for host, measures in (value if isinstance(value, dict) else {}).items()
        if isinstance(measures, dict)
    }


def _sample_hosts(
    base: Path, measured: dict[Path, dict[str, Series]]
) -> dict[str, dict[str, dict[str, float]]]:
    """As :func:`pbench_runner.hostsummary.sample_hosts`, from the series read already."""
    return {d.name: activity(m) for d, m in measured.items() if d.parent == base}


def sysinfo(root: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``{when: {host: {"items": sysinfo.json, "facts": {file: text}}}}``."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    base = root / "sysinfo"
    if not base.is_dir():
        return found
    for when_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for host_dir in sorted(p for p in when_dir.iterdir() if p.is_dir()):
            facts = {
                str(f.relative_to(host_dir)): f.read_text(errors="replace")[:20000]
                for f in sorted(host_dir.rglob("*"))
                if f.is_file() and f.name != "sysinfo.json"
            }
            found.setdefault(when_dir.name, {})[host_dir.name] = {
                "items": _json(host_dir / "sysinfo.json") or {},
                "facts": facts,
            }
    return found


def series(measured: dict[Path, dict[str, Series]]) -> dict[str, dict[str, list[list[Any]]]]:
    """Each host's measures over the whole run: ``{host: {measure: [[time, value], ...]}}``."""
    gathered: dict[str, dict[str, list[tuple[str, float]]]] = defaultdict(lambda: defaultdict(list))
    for host_dir, measures in measured.items():
        for measure, points in measures.items():
            gathered[host_dir.name][measure].extend(points)
    return {
        host: {measure: _thin(sorted(points)) for measure, points in measures.items()}
        for host, measures in gathered.items()
    }


def _thin(points: list[tuple[str, float]]) -> list[list[Any]]:
    step = max(1, -(-len(points) // MAX_POINTS))
    return [[t, round(v, 3)] for t, v in points[::step]]
