"""Comparing runs of ``pbench run``: change per benchmark and metric, noise, gates.

A run is named by its result directory, a name saved with ``--save``, or
``latest`` (the newest saved run).  A change is *outside the noise* when
Welch's t statistic of the two sets of samples exceeds Student's t for 95 %
(two-sided) at the Welch-Satterthwaite degrees of freedom, so that a
handful of samples needs a clear difference.  With a single sample on one
side, the change is outside the noise when that sample lies outside the
other side's min..max; with one sample on each side, when they differ.
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

from pbench_runner.errors import UsageError

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


def resolve(run_dir: Path, ref: str) -> Path:
    """A result directory from a path, a saved name, or ``latest``."""
    path = Path(ref)
    if (path / "result.json").exists():
        return path
    saved = saved_dir(run_dir) / ref
    if (saved / "result.json").exists():
        return saved.resolve()
    names = (
        sorted(p.name for p in saved_dir(run_dir).glob("*")) if saved_dir(run_dir).exists() else []
    )
    raise UsageError(
        f"no run {ref!r}: not a result directory with a result.json, nor a saved run "
        f"(saved: {', '.join(names) or 'none'})"
    )


def load(result_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((result_dir / "result.json").read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read {result_dir / 'result.json'}: {exc}") from exc
    return data


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


def _significant(a: Sequence[float], b: Sequence[float]) -> bool:
    if len(a) >= 2 and len(b) >= 2:
        va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
        diff = statistics.fmean(b) - statistics.fmean(a)
        if va + vb == 0:
            return diff != 0
        # Welch-Satterthwaite degrees of freedom
        df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
        return abs(diff) / math.sqrt(va + vb) > t_critical(df)
    if len(a) == 1 and len(b) >= 2:
        return not min(b) <= a[0] <= max(b)
    if len(b) == 1 and len(a) >= 2:
        return not min(a) <= b[0] <= max(a)
    return a[0] != b[0]


def changes(base: dict[str, Any], new: dict[str, Any]) -> list[Change]:
    """One :class:`Change` per benchmark and metric present in both runs."""
    by_id = {it["nodeid"]: it for it in base.get("iterations", [])}
    found = []
    for it in new.get("iterations", []):
        old = by_id.get(it["nodeid"])
        if old is None:
            continue
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
                    _significant(a, b),
                )
            )
    return found


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
