"""Comparing runs of ``pbench run``: loading the runs, a change per benchmark and metric, gates.

A run is named by its result directory, a name saved with ``--save``, or
``latest`` (the newest saved run).

For each benchmark and metric both runs have, :func:`changes` gives the relative
change in medians with its 95 % interval, and whether it is outside the noise,
as :mod:`pbench_runner.noise` decides (a run known only by its summary is
compared by means).

``--fail-on`` rules apply to the interval's near edge: ``wall_s:+10%`` fails
when the whole interval lies above +10 %, ``throughput:-5%`` when it lies
below -5 % (and only changes outside the noise count).

A baseline can also be a pytest-benchmark file (``--benchmark-json`` or a
file of its storage), or its storage directory (``.benchmarks``, or one
machine's directory in it: the newest file there).  Its benchmarks are
matched by ``fullname`` against the node ids, and failing that by test name.

:func:`comparability` names what makes two runs hard to compare: machine,
commit, tool group, tool hosts and their tools.
:func:`pbench_runner.compare_report.render` writes a comparison as text,
GitHub-flavoured markdown or JSON.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbench_runner import noise, pbjson
from pbench_runner.errors import UsageError
from pbench_runner.machine import machine_id

_RULE = re.compile(r"^(?P<metric>[^:]+):(?P<sign>[+-])(?P<pct>\d+(?:\.\d+)?)%$")


def saved_dir(run_dir: Path) -> Path:
    return run_dir / "saved"


def check_save_name(name: str) -> str:
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", name) or name == "latest":
        raise UsageError(
            f"bad --save name {name!r}: letters, digits, '.', '_' or '-', and not 'latest'"
        )
    return name


def save(run_dir: Path, name: str, result_dir: Path) -> None:
    """Remember ``result_dir`` as ``name`` (and as ``latest``)."""
    check_save_name(name)
    directory = saved_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    for link in (directory / name, directory / "latest"):
        link.unlink(missing_ok=True)
        link.symlink_to(result_dir)


#: a file of pytest-benchmark's storage: ``0001_<commit>_<date>.json``
_STORED = re.compile(r"^(?P<number>\d{4})_.*\.json$")


def _stored_files(directory: Path) -> list[Path]:
    try:
        return [p for p in directory.iterdir() if _STORED.match(p.name) and p.is_file()]
    except OSError:
        return []


def newest_stored(directory: Path) -> Path | None:
    """The newest file of a pytest-benchmark storage directory, or None when it has none.

    ``directory`` is one machine's directory (``.benchmarks/Linux-CPython-3.11-64bit``)
    or the storage itself (``.benchmarks``): then this machine's directory, or
    the only one there is.  Newest is the highest run number, as pytest-benchmark
    numbers its runs (then the latest modified).
    """
    files = _stored_files(directory)
    if not files:
        machines = {
            p.name: found
            for p in (sorted(directory.iterdir()) if directory.is_dir() else [])
            if p.is_dir() and (found := _stored_files(p))
        }
        if machine_id() in machines:
            files = machines[machine_id()]
        elif len(machines) == 1:
            (files,) = machines.values()
        elif machines:
            raise UsageError(
                f"{directory} holds the pytest-benchmark runs of several machines "
                f"({', '.join(machines)}): name one, e.g. {directory / next(iter(machines))}"
            )
    if not files:
        return None

    def age(path: Path) -> tuple[int, float]:
        match = _STORED.match(path.name)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = 0.0
        return (int(match["number"]) if match else -1, mtime)

    return max(files, key=age)


def resolve(run_dir: Path, ref: str) -> Path:
    """A run from a path, a saved name, or ``latest``: a result directory, or a
    pytest-benchmark JSON file (a storage directory gives its newest file)."""
    path = Path(ref)
    if (path / "result.json").exists():
        return path
    saved = saved_dir(run_dir) / ref
    if (saved / "result.json").exists():
        return saved.resolve()
    if path.is_file():
        return path
    if path.is_dir() and (stored := newest_stored(path)) is not None:
        return stored
    names = (
        sorted(p.name for p in saved_dir(run_dir).glob("*")) if saved_dir(run_dir).exists() else []
    )
    raise UsageError(
        f"no run {ref!r}: not a result directory with a result.json, a pytest-benchmark "
        f"JSON file or storage directory, nor a saved run (saved: {', '.join(names) or 'none'})"
    )


def load(result_dir: Path) -> dict[str, Any]:
    """A run as ``result.json`` holds it, from a result directory, a pbench
    ``result.json``, or a pytest-benchmark file or storage directory (converted
    by :func:`pbench_runner.pbjson.from_pytest_benchmark`)."""
    path = Path(result_dir)
    if path.is_dir():
        if (path / "result.json").exists() or (stored := newest_stored(path)) is None:
            path = path / "result.json"
        else:
            path = stored
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    if pbjson.is_pytest_benchmark(data):
        return pbjson.from_pytest_benchmark(data, source=str(path))
    if not isinstance(data, dict):
        raise UsageError(f"{path} is neither a pbench result nor a pytest-benchmark file")
    return data


def is_pytest_benchmark(run: dict[str, Any]) -> bool:
    """Whether a loaded run came from a pytest-benchmark file."""
    source = (run.get("run") or {}).get("source") or {}
    return isinstance(source, dict) and source.get("format") == pbjson.SOURCE_FORMAT


@dataclass(frozen=True)
class Change:
    """A benchmark's metric in the base and new runs.

    ``base`` and ``new`` are the runs' medians (means when a run is known only by
    its summary: ``method`` says ``welch``); ``pct`` is the relative change in
    percent, ``ci_low``..``ci_high`` its 95 % interval as fractions (``-0.05`` is
    -5 %; infinite from a base of 0), ``p_value`` the test's two-sided p.
    ``method`` names the rule that decided ``significant``: ``mann-whitney``
    (exact or normal), ``separation`` (runs too small for the rank test),
    ``welch`` (a summary-only run) or ``single`` (one sample a side).
    """

    benchmark: str
    metric: str
    unit: str
    higher_is_better: bool
    base: float
    new: float
    pct: float
    significant: bool
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan
    n_base: int = 0
    n_new: int = 0
    method: str = ""


def _name(it: dict[str, Any]) -> str:
    return pbjson.benchmark_name(it)


def pairs(base: dict[str, Any], new: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(base iteration, new iteration) of each benchmark both runs have, in the new
    run's order.  Matched by node id (pytest-benchmark's ``fullname``); when one run
    came from pytest-benchmark, those left are matched by test name where the name
    is unique in both runs."""
    base_its = list(base.get("iterations", []))
    new_its = list(new.get("iterations", []))
    by_id = {it["nodeid"]: it for it in base_its}
    matched: dict[int, dict[str, Any]] = {}
    for index, it in enumerate(new_its):
        old = by_id.get(it["nodeid"])
        if old is not None:
            matched[index] = old
    if is_pytest_benchmark(base) or is_pytest_benchmark(new):
        taken = {id(old) for old in matched.values()}
        base_names = [_name(it) for it in base_its]
        new_names = [_name(it) for it in new_its]
        by_name = {
            name: it
            for name, it in zip(base_names, base_its)
            if name and id(it) not in taken and base_names.count(name) == 1
        }
        for index, name in enumerate(new_names):
            if index not in matched and name in by_name and new_names.count(name) == 1:
                matched[index] = by_name.pop(name)
    return [(matched[index], it) for index, it in enumerate(new_its) if index in matched]


def changes(base: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """One :class:`Change` per benchmark and metric present in both runs."""
    found = []
    for old, it in pairs(base, new):
        for metric, entry in it.get("metrics", {}).items():
            other = old.get("metrics", {}).get(metric)
            if not other or not entry.get("values") or not other.get("values"):
                continue
            got = noise.assess_entries(other, entry)
            found.append(
                Change(
                    it["nodeid"],
                    metric,
                    entry.get("unit", ""),
                    bool(entry.get("higher_is_better")),
                    got.base,
                    got.new,
                    got.change * 100,
                    got.significant,
                    ci_low=got.ci_low,
                    ci_high=got.ci_high,
                    p_value=got.p_value,
                    n_base=_count(other),
                    n_new=_count(entry),
                    method=got.method,
                )
            )
    return found


def _count(entry: dict[str, Any]) -> int:
    if noise.summary_only(entry):
        return int(entry["summary"]["n"])
    return len(entry["values"])


# --- what differs between the runs' machines and commits ------------------------------

_MACHINE_CHECKS = (
    ("CPU model", ("cpu", "brand_raw")),
    ("CPU count", ("cpu", "count")),
    ("CPU governor", ("cpu_governor",)),
    ("Python implementation", ("python_implementation",)),
    ("Python version", ("python_version",)),
)
_MISSING = object()


def _dig(data: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _commit(info: dict[str, Any]) -> str | None:
    """The commit's id, when it is known."""
    commit = info.get("id")
    if not commit or info.get("error") or commit in ("unknown", "unversioned"):
        return None
    return str(commit)


def differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Warnings naming what differs between the machines and commits of two loaded runs:
    CPU model, CPU count, CPU governor, Python implementation and version, the
    commit, and uncommitted changes.  What a run did not record is not compared
    (a run without any ``machine_info`` or ``commit_info`` is named)."""
    runs = {"base": base.get("run") or {}, "new": new.get("run") or {}}
    warnings = []
    machines = {side: run.get("machine_info") for side, run in runs.items()}
    missing = [side for side, info in machines.items() if not info]
    if missing:
        warnings.append(
            f"machine not checked: no machine_info in the {' and '.join(missing)} run"
            f"{'s' if len(missing) > 1 else ''}"
        )
    else:
        for label, keys in _MACHINE_CHECKS:
            a, b = (_dig(machines[side], keys) for side in ("base", "new"))
            if a is not _MISSING and b is not _MISSING and a != b:
                warnings.append(f"{label} differs: {a!r} in base, {b!r} in new")
    commits = {side: run.get("commit_info") or {} for side, run in runs.items()}
    ids = {side: _commit(info) for side, info in commits.items()}
    if ids["base"] and ids["new"] and ids["base"] != ids["new"]:
        warnings.append(f"commit differs: {ids['base'][:12]} in base, {ids['new'][:12]} in new")
    for side, info in commits.items():
        if info.get("dirty"):
            commit = ids[side]
            at = f" (on {commit[:12]})" if commit else ""
            warnings.append(f"the {side} run's checkout had uncommitted changes{at}")
    return warnings


# --- what differs between the runs' tools ---------------------------------------------

#: how the tool hosts name the controller itself
_THIS_HOST = "the controller"


def _tools(run: dict[str, Any]) -> tuple[str | None, dict[str, dict[str, Any]]] | None:
    """A run's tool group and its hosts' tools (hosts without tools left out, the
    controller named as such), or None when the run did not record them.  A run
    from pytest-benchmark ran no tools."""
    meta = run.get("run") or {}
    if is_pytest_benchmark(run):
        return None, {}
    tools = meta.get("tools")
    if not isinstance(tools, dict):
        return None
    controller = meta.get("controller") or {}
    local = {"localhost", "127.0.0.1", controller.get("hostname"), controller.get("fqdn")}
    hosts: dict[str, dict[str, Any]] = {}
    for host, entry in (tools.get("hosts") or {}).items():
        found = (entry or {}).get("tools") or {}
        if found:
            hosts[_THIS_HOST if host in local else str(host)] = dict(found)
    group = tools.get("group")
    return (str(group) if group is not None else None), hosts


def _only(a: Any, b: Any) -> str:
    parts = []
    if only := sorted(set(a) - set(b)):
        parts.append(f"only in base: {', '.join(only)}")
    if only := sorted(set(b) - set(a)):
        parts.append(f"only in new: {', '.join(only)}")
    return "; ".join(parts)


def _options(options: Any) -> str:
    if not isinstance(options, dict) or not options:
        return "no options"
    return " ".join(f"--{k}={v}" for k, v in sorted(options.items()))


def tool_differences(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Warnings naming what differs between the tools of two loaded runs: the tool
    group, the hosts that ran tools, and each host's tools and their options.  Tools
    cost time on the host they watch, so runs with other tools are not comparable
    as they stand.  The controller's own name is not compared (a CI runner's
    changes): its hardware is what :func:`differences` checks."""
    found = {"base": _tools(base), "new": _tools(new)}
    missing = [side for side, got in found.items() if got is None]
    if missing:
        return [
            f"tools not checked: the {' and '.join(missing)} run"
            f"{'s' if len(missing) > 1 else ''} recorded none"
        ]
    (group_a, hosts_a), (group_b, hosts_b) = found["base"] or (None, {}), found["new"] or (None, {})
    warnings = []
    if group_a and group_b and group_a != group_b:
        warnings.append(f"tool group differs: {group_a!r} in base, {group_b!r} in new")
    if bool(hosts_a) != bool(hosts_b):
        side, hosts = ("new", hosts_b) if hosts_b else ("base", hosts_a)
        ran = "; ".join(f"{', '.join(sorted(t))} on {h}" for h, t in sorted(hosts.items()))
        warnings.append(f"tools ran only in the {side} run: {ran}")
        return warnings
    if which := _only(hosts_a, hosts_b):
        warnings.append(f"tool hosts differ: {which}")
    for host in sorted(set(hosts_a) & set(hosts_b)):
        a, b = hosts_a[host], hosts_b[host]
        if which := _only(a, b):
            warnings.append(f"tools on {host} differ: {which}")
        for tool in sorted(set(a) & set(b)):
            if a[tool] != b[tool]:
                warnings.append(
                    f"options of {tool} on {host} differ: {_options(a[tool])} in base, "
                    f"{_options(b[tool])} in new"
                )
    return warnings


class NotComparable(UsageError):
    """Two runs differ in their machine, commit or tools (``--strict``)."""

    def __init__(self, warnings: Sequence[str]) -> None:
        self.warnings = list(warnings)
        super().__init__(
            "the runs are not comparable: " + "; ".join(self.warnings)
            if self.warnings
            else "the runs are not comparable"
        )


def comparability(base: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Every warning about comparing two loaded runs: :func:`differences` (machine,
    commit) then :func:`tool_differences` (tool group, hosts, tools).  Empty when
    nothing stands in the way of comparing them."""
    return differences(base, new) + tool_differences(base, new)


def check_comparable(base: dict[str, Any], new: dict[str, Any], strict: bool = False) -> list[str]:
    """:func:`comparability`'s warnings; with ``strict``, raise :class:`NotComparable`
    (a :class:`UsageError`) naming them all instead, when there are any."""
    warnings = comparability(base, new)
    if strict and warnings:
        raise NotComparable(warnings)
    return warnings


def parse_rule(text: str) -> tuple[str, float]:
    """``"throughput:-5%"`` -> ("throughput", -5.0)."""
    match = _RULE.match(text.strip())
    if not match:
        raise UsageError(
            f"bad --fail-on {text!r}: use METRIC:-N% (fail when it drops more than N %) "
            "or METRIC:+N% (fail when it grows more than N %)"
        )
    pct = float(match["pct"]) * (-1 if match["sign"] == "-" else 1)
    return match["metric"], pct


def unknown_metrics(found: Sequence[Change], rules: Sequence[str]) -> list[str]:
    """The metrics of ``rules`` that no benchmark of both runs has (a typo?)."""
    known = {ch.metric for ch in found}
    return [metric for metric, _ in (parse_rule(r) for r in rules) if metric not in known]


def interval_pct(ch: Change) -> tuple[float, float]:
    """The change's interval in percent (the point twice when it has none)."""
    if math.isnan(ch.ci_low) or math.isnan(ch.ci_high):
        return ch.pct, ch.pct
    return ch.ci_low * 100, ch.ci_high * 100


def past_limit(ch: Change, limit: float) -> bool:
    """Whether a change outside the noise is past a ``--fail-on`` limit in percent,
    by the interval's near edge: ``+10`` when its lower edge is above +10 %, ``-5``
    when its upper edge is below -5 %."""
    if not ch.significant:
        return False
    low, high = interval_pct(ch)
    return (limit < 0 and high < limit) or (limit > 0 and low > limit)


def regressions(found: Sequence[Change], rules: Sequence[str]) -> list[str]:
    """A message for each change past its rule's threshold (see :func:`past_limit`)."""
    messages = []
    for metric, limit in (parse_rule(r) for r in rules):
        for ch in found:
            if ch.metric == metric and past_limit(ch, limit):
                edge = "lower" if limit > 0 else "upper"
                messages.append(
                    f"{ch.benchmark}: {metric} changed {change_text(ch)} "
                    f"({ch.base:.4g} -> {ch.new:.4g}{' ' + ch.unit if ch.unit else ''}), "
                    f"the interval's {edge} edge past the limit of {limit:+g}%"
                )
    return messages


def verdict(ch: Change) -> str:
    """``"better"``, ``"worse"`` or ``"within noise"``: the direction of a change
    outside the noise, by its interval (by the medians when it has none)."""
    if not ch.significant:
        return "within noise"
    up = ch.ci_low > 0 if ch.ci_low > 0 or ch.ci_high < 0 else ch.new > ch.base
    return "better" if up == ch.higher_is_better else "worse"


def pct_text(pct: float) -> str:
    """``"+12.3%"``, or ``"n/a"`` for a change from a mean of 0."""
    return f"{pct:+.1f}%" if math.isfinite(pct) else "n/a"


def _edge_text(pct: float) -> str:
    return f"{pct:+.1f}%" if math.isfinite(pct) else ("+inf%" if pct > 0 else "-inf%")


def change_text(ch: Change) -> str:
    """``"+31.2% [+28.0%, +35.1%]"``: the change and its interval (``"n/a"`` from 0)."""
    if not math.isfinite(ch.pct):
        return "n/a"
    low, high = interval_pct(ch)
    if math.isnan(ch.ci_low) or math.isnan(ch.ci_high):
        return pct_text(ch.pct)
    return f"{pct_text(ch.pct)} [{_edge_text(low)}, {_edge_text(high)}]"
