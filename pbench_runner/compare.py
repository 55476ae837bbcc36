"""Comparing runs of ``pbench run``: change per benchmark and metric, noise, gates.

A run is named by its result directory, a name saved with ``--save``, or
``latest`` (the newest saved run).  A change is *outside the noise* when
Welch's t statistic of the two sets of samples exceeds Student's t for 95 %
(two-sided) at the Welch-Satterthwaite degrees of freedom, so that a
handful of samples needs a clear difference.  With a single sample on one
side, the change is outside the noise when that sample lies outside the
other side's min..max; with one sample on each side, when they differ.

A baseline can also be a pytest-benchmark file (``--benchmark-json`` or a
file of its storage), or its storage directory (``.benchmarks``, or one
machine's directory in it: the newest file there).  Its benchmarks are
matched by ``fullname`` against the node ids, and failing that by test name.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbench_runner import pbjson
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
    benchmark: str
    metric: str
    unit: str
    higher_is_better: bool
    base: float
    new: float
    pct: float
    significant: bool


#: Student's t, two-sided 95 %, by degrees of freedom (the next lower row is used)
_T95 = (
    (1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (6, 2.447), (7, 2.365),
    (8, 2.306), (9, 2.262), (10, 2.228), (12, 2.179), (15, 2.131), (20, 2.086),
    (30, 2.042), (60, 2.000), (120, 1.980),
)  # fmt: skip


def t_critical(df: float) -> float:
    """Student's t for 95 % two-sided at ``df`` degrees of freedom (rounded down)."""
    for rows, t in reversed(_T95):
        if df >= rows:
            return t
    return _T95[0][1]


@dataclass(frozen=True)
class _Side:
    """What the noise rule needs of one run's values of a metric."""

    n: int
    mean: float
    variance: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> _Side:
        n = len(values)
        variance = statistics.variance(values) if n >= 2 else 0.0
        return cls(n, statistics.fmean(values), variance, min(values), max(values))

    @classmethod
    def of_entry(cls, entry: dict[str, Any]) -> _Side:
        """From a metric's values, or from its summary when only that is known
        (a pytest-benchmark file saved without its rounds' data)."""
        summary = entry.get("summary") or {}
        if entry.get("summary_only") and summary.get("n", 0) >= 2:
            return cls(
                int(summary["n"]),
                float(summary["mean"]),
                float(summary["stddev"]) ** 2,
                float(summary["min"]),
                float(summary["max"]),
            )
        return cls.of(entry["values"])


def _significant_sides(a: _Side, b: _Side) -> bool:
    if a.n >= 2 and b.n >= 2:
        va, vb = a.variance / a.n, b.variance / b.n
        diff = b.mean - a.mean
        if va + vb == 0:
            return diff != 0
        # Welch-Satterthwaite degrees of freedom
        df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
        return abs(diff) / math.sqrt(va + vb) > t_critical(df)
    if a.n == 1 and b.n >= 2:
        return not b.low <= a.mean <= b.high
    if b.n == 1 and a.n >= 2:
        return not a.low <= b.mean <= a.high
    return a.mean != b.mean


def _significant(a: Sequence[float], b: Sequence[float]) -> bool:
    return _significant_sides(_Side.of(a), _Side.of(b))


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
            a, b = other["values"], entry["values"]
            ma, mb = statistics.fmean(a), statistics.fmean(b)
            # from a mean of 0 any change is infinite, in the direction of the new mean
            pct = (mb - ma) / abs(ma) * 100 if ma else math.copysign(math.inf, mb) if mb else 0.0
            found.append(
                Change(
                    it["nodeid"],
                    metric,
                    entry.get("unit", ""),
                    bool(entry.get("higher_is_better")),
                    ma,
                    mb,
                    pct,
                    _significant_sides(_Side.of_entry(other), _Side.of_entry(entry)),
                )
            )
    return found


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


def regressions(found: Sequence[Change], rules: Sequence[str]) -> list[str]:
    """A message for each change past its rule's threshold (and outside the noise)."""
    messages = []
    for metric, limit in (parse_rule(r) for r in rules):
        for ch in found:
            if ch.metric != metric or not ch.significant:
                continue
            if (limit < 0 and ch.pct < limit) or (limit > 0 and ch.pct > limit):
                messages.append(
                    f"{ch.benchmark}: {metric} changed {ch.pct:+.1f}% "
                    f"({ch.base:.4g} -> {ch.new:.4g}{' ' + ch.unit if ch.unit else ''}), "
                    f"past the limit of {limit:+g}%"
                )
    return messages


def verdict(ch: Change) -> str:
    """``"better"``, ``"worse"`` or ``"within noise"``, from the direction of the means."""
    if not ch.significant:
        return "within noise"
    return "better" if (ch.new > ch.base) == ch.higher_is_better else "worse"


def pct_text(pct: float) -> str:
    """``"+12.3%"``, or ``"n/a"`` for a change from a mean of 0."""
    return f"{pct:+.1f}%" if math.isfinite(pct) else "n/a"


def table(found: Sequence[Change]) -> list[str]:
    lines = [f"{'benchmark':<48} {'metric':<14} {'base':>12} {'new':>12} {'change':>9}  noise"]
    for ch in found:
        lines.append(
            f"{ch.benchmark[-48:]:<48} {ch.metric:<14} {ch.base:>12.4g} {ch.new:>12.4g} "
            f"{pct_text(ch.pct):>9}  {verdict(ch)}"
        )
    return lines
