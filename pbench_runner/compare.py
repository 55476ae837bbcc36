"""Comparing runs of ``pbench run``: change per benchmark and metric, noise, gates.

A run is named by its result directory, a name saved with ``--save``, or
``latest`` (the newest saved run).

For each benchmark and metric the change is the relative change in medians,
``new median / base median - 1`` (``(new - base) / |base|``), with its 95 %
interval: the percentile bootstrap of that change, each run's samples
resampled with replacement 2000 times with a fixed seed (the same runs give
the same interval).  A change is *outside the noise* when both

* the rank test says the runs' samples differ at 5 %: Mann-Whitney U,
  two-sided; the exact distribution without ties (up to 50 samples a side),
  else the normal approximation with tie and continuity correction; and
* the interval excludes 0.

Ranks and medians are what one outlier cannot drag: five samples all 30 %
slower and one of them 3x are a clear slowdown, where Welch's t on the means
(this module's rule before) saw noise in the outlier's variance.

Runs too small for the rank test.  Its smallest two-sided p, with every new
sample beyond every base sample, is 2 / C(m+n, m): 0.1 for 3 samples against
3, 0.057 for 3 against 4 (and 2 against fewer than 8, 1 against fewer than
39), so at these sizes it can never reach 5 %.  Complete separation alone would
be a false alarm in 2 of the 20 equally likely orders of 3 + 3 unchanged
samples (10 %), and the bootstrap interval of 3 against 3 excludes 0 exactly
when the runs are separated, so it adds nothing.  There a change is outside
the noise when the runs are separated *and* the gap between them is wider
than either run's own spread (max - min), and the interval excludes 0: for
normal noise about 1 % false alarms at 3 against 3, 0.2 % at 3 against 4, 3 %
at 1 against 5; 2 against 2 (9 %) and 1 against 3 (14 %) stay weak.  One
sample against one says nothing of the noise: any difference counts.  Use
``--samples=5`` or more (the rank test decides from 4 against 4).

A run known only by its summary (a pytest-benchmark file saved without
``--benchmark-save-data``: mean, standard deviation and round count) is
compared by means: Welch's t, its p from Student's t at the
Welch-Satterthwaite degrees of freedom, and the t interval of the difference
relative to the base mean.

``--fail-on`` rules apply to the interval's near edge: ``wall_s:+10%`` fails
when the whole interval lies above +10 %, ``throughput:-5%`` when it lies
below -5 % (and only changes outside the noise count).

A baseline can also be a pytest-benchmark file (``--benchmark-json`` or a
file of its storage), or its storage directory (``.benchmarks``, or one
machine's directory in it: the newest file there).  Its benchmarks are
matched by ``fullname`` against the node ids, and failing that by test name.

:func:`comparability` names what makes two runs hard to compare: machine,
commit, tool group, tool hosts and their tools.  :func:`render` writes a
comparison as text, GitHub-flavoured markdown or JSON.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pbench_runner import pbjson, strictjson
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


#: the level of the noise tests: a change is outside the noise at 5 % two-sided
ALPHA = 0.05
#: the bootstrap interval: its coverage, resamples and (fixed) seed
CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 13
#: the largest sample count (per run) whose exact Mann-Whitney distribution is used
EXACT_MAX = 50
#: above this many samples, the bootstrap draws the median through its order statistic
_RESAMPLE_MAX = 64


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


@dataclass(frozen=True)
class Assessment:
    """What the noise rule says of two runs' samples of one metric."""

    base: float
    new: float
    #: relative change (new - base) / |base|, a fraction
    change: float
    ci_low: float
    ci_high: float
    p_value: float
    significant: bool
    method: str


def relative(base: float, new: float) -> float:
    """(new - base) / |base|: ``new / base - 1`` for a positive base; from a base
    of 0, infinite in the direction of ``new`` (0 when both are 0)."""
    diff = new - base
    if base:
        return diff / abs(base)
    return math.copysign(math.inf, diff) if diff else 0.0


def _excludes_zero(low: float, high: float) -> bool:
    return low > 0 or high < 0


# --- Mann-Whitney U ---------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _u_counts(m: int, n: int) -> tuple[int, ...]:
    """How many of the C(m+n, m) orders of m and n samples give U = 0, 1, .., m*n:
    the coefficients of the Gaussian binomial [m+n, m]_q."""
    poly = [1]
    for i in range(1, m + 1):
        # times (1 - q^(n+i)) ...
        grown = poly + [0] * (n + i)
        for k in range(len(poly)):
            grown[k + n + i] -= poly[k]
        # ... over (1 - q^i), which divides exactly
        for k in range(i, len(grown)):
            grown[k] += grown[k - i]
        poly = grown[: len(grown) - i]
    return tuple(poly)


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Mid-ranks (1-based) of ``values``, and the sizes of their groups of ties."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def mann_whitney(base: Sequence[float], new: Sequence[float]) -> tuple[float, float, bool]:
    """Mann-Whitney U of ``new`` against ``base`` (pairs where new is larger, ties
    half), its two-sided p, and whether p is exact: the exact distribution without
    ties and up to :data:`EXACT_MAX` samples a side, else the normal approximation
    with tie and continuity correction."""
    m, n = len(base), len(new)
    if not m or not n:
        return 0.0, 1.0, True
    ranks, ties = _ranks([*base, *new])
    u = sum(ranks[m:]) - n * (n + 1) / 2
    if not ties and max(m, n) <= EXACT_MAX:
        counts = _u_counts(m, n)
        tail = sum(counts[: int(min(u, m * n - u)) + 1])
        return u, min(1.0, 2 * tail / math.comb(m + n, m)), True
    total = m + n
    variance = m * n / 12 * ((total + 1) - sum(t**3 - t for t in ties) / (total * (total - 1)))
    if variance <= 0:
        return u, 1.0, False  # every sample the same
    z = max(0.0, abs(u - m * n / 2) - 0.5) / math.sqrt(variance)
    return u, math.erfc(z / math.sqrt(2)), False


def rank_test_can_decide(m: int, n: int, alpha: float = ALPHA) -> bool:
    """Whether m against n samples can reach ``alpha`` in the rank test at all: its
    smallest two-sided p, of runs apart, is 2 / C(m+n, m) (0.1 for 3 against 3)."""
    return m >= 1 and n >= 1 and 2 / math.comb(m + n, m) <= alpha


def separated(base: Sequence[float], new: Sequence[float]) -> bool:
    """Every new sample beyond every base sample (either way), and the gap between
    the runs wider than either run's own spread (max - min).  The rule for runs
    too small for the rank test; with one sample a side, any difference."""
    lo_a, hi_a, lo_b, hi_b = min(base), max(base), min(new), max(new)
    if lo_b > hi_a:
        gap = lo_b - hi_a
    elif lo_a > hi_b:
        gap = lo_a - hi_b
    else:
        return False
    return gap > max(hi_a - lo_a, hi_b - lo_b)


# --- the bootstrap interval ----------------------------------------------------------


def _median_sorted(s: Sequence[float]) -> float:
    n, h = len(s), len(s) // 2
    return s[h] if n % 2 else (s[h - 1] + s[h]) / 2


def _boot_medians(rng: random.Random, values: Sequence[float], resamples: int) -> list[float]:
    """The medians of ``resamples`` resamples (with replacement) of ``values``."""
    n = len(values)
    if n == 1 or min(values) == max(values):
        return [values[0]] * resamples
    if n <= _RESAMPLE_MAX:
        drawn = rng.choices(values, k=n * resamples)
        return [_median_sorted(sorted(drawn[i : i + n])) for i in range(0, n * resamples, n)]
    # Many samples: the k-th smallest of n draws is the sample at floor(n * U(k)),
    # U(k) the k-th smallest of n uniforms, a Beta(k, n-k+1) variable; the (k+1)-th
    # then lies a Beta(1, n-k) of the way from U(k) to 1.  The same distribution
    # as resampling, at a cost that does not grow with n.
    s = sorted(values)
    k = (n + 1) // 2 if n % 2 else n // 2
    out = []
    for _ in range(resamples):
        u = rng.betavariate(k, n - k + 1)
        low = s[min(n - 1, int(n * u))]
        if n % 2:
            out.append(low)
        else:
            v = u + (1 - u) * (1 - rng.random() ** (1 / (n - k)))
            out.append((low + s[min(n - 1, int(n * v))]) / 2)
    return out


def bootstrap_interval(
    base: Sequence[float],
    new: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float]:
    """The percentile bootstrap interval of the relative change in medians
    (:func:`relative` of the medians): each run resampled with replacement
    ``resamples`` times, with a fixed ``seed`` so that the same samples give the
    same interval.  About 7 ms for 20 samples a side."""
    rng = random.Random(seed)
    a = _boot_medians(rng, base, resamples)
    b = _boot_medians(rng, new, resamples)
    found = sorted(relative(x, y) for x, y in zip(a, b))
    tail = (1 - confidence) / 2
    low = found[int(tail * resamples)]
    high = found[max(0, math.ceil((1 - tail) * resamples) - 1)]
    return low, high


# --- Welch's t, for a run known only by its summary --------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for aa in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_p_value(t: float, df: float) -> float:
    """Two-sided p of Student's t at ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2, 0.5, df / (df + t * t))


def t_quantile(p_two_sided: float, df: float) -> float:
    """The t past which a two-sided p of ``p_two_sided`` lies (2.776 for 5 %, df 4)."""
    low, high = 0.0, 1.0
    while t_p_value(high, df) > p_two_sided:
        high *= 2
    for _ in range(100):
        mid = (low + high) / 2
        low, high = (mid, high) if t_p_value(mid, df) > p_two_sided else (low, mid)
    return (low + high) / 2


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
    """What Welch's test needs of one run's values of a metric."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: Sequence[float]) -> _Side:
        n = len(values)
        variance = statistics.variance(values) if n >= 2 else 0.0
        return cls(n, statistics.fmean(values), variance)

    @classmethod
    def of_entry(cls, entry: dict[str, Any]) -> _Side:
        """From a metric's values, or from its summary when only that is known
        (a pytest-benchmark file saved without its rounds' data)."""
        summary = entry.get("summary") or {}
        if _summary_only(entry):
            return cls(int(summary["n"]), float(summary["mean"]), float(summary["stddev"]) ** 2)
        return cls.of(entry["values"])


def _summary_only(entry: dict[str, Any]) -> bool:
    summary = entry.get("summary") or {}
    return bool(entry.get("summary_only")) and int(summary.get("n") or 0) >= 2


def welch(a: _Side, b: _Side, alpha: float = ALPHA) -> Assessment:
    """Welch's t on the means, its p at the Welch-Satterthwaite degrees of freedom,
    and the t interval of the difference relative to the base mean.  A side of one
    sample takes the other's variance (a pooled test)."""
    diff = b.mean - a.mean
    change = relative(a.mean, b.mean)
    var_a = a.variance if a.n >= 2 else b.variance
    var_b = b.variance if b.n >= 2 else a.variance
    va, vb = var_a / a.n, var_b / b.n
    if va + vb == 0:  # one sample a side, or every sample the same
        method = "single" if a.n < 2 and b.n < 2 else "welch"
        return Assessment(
            a.mean, b.mean, change, change, change, float(not diff), bool(diff), method
        )
    if a.n >= 2 and b.n >= 2:
        df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    else:
        df = max(a.n, b.n) - 1
    se = math.sqrt(va + vb)
    p = t_p_value(diff / se, df)
    half = t_quantile(alpha, df) * se
    low, high = relative(a.mean, a.mean + diff - half), relative(a.mean, a.mean + diff + half)
    return Assessment(
        a.mean, b.mean, change, low, high, p, p <= alpha and _excludes_zero(low, high), "welch"
    )


# --- the noise rule ---------------------------------------------------------------------


def assess(base: Sequence[float], new: Sequence[float], alpha: float = ALPHA) -> Assessment:
    """Whether ``new`` differs from ``base`` beyond the noise (see the module's text):
    the rank test at ``alpha`` and the bootstrap interval of the change in medians
    clear of 0; for runs too small for the rank test, :func:`separated` and the interval."""
    if not base or not new:
        raise ValueError("assess needs a sample or more on each side")
    med_a, med_b = statistics.median(base), statistics.median(new)
    change = relative(med_a, med_b)
    low, high = bootstrap_interval(base, new)
    _, p, exact = mann_whitney(base, new)
    clear = _excludes_zero(low, high)
    if len(base) == 1 and len(new) == 1:
        return Assessment(med_a, med_b, change, low, high, p, med_a != med_b, "single")
    if rank_test_can_decide(len(base), len(new), alpha):
        method = "mann-whitney " + ("exact" if exact else "normal")
        return Assessment(med_a, med_b, change, low, high, p, p <= alpha and clear, method)
    return Assessment(
        med_a, med_b, change, low, high, p, separated(base, new) and clear, "separation"
    )


def _assess_entries(base: dict[str, Any], new: dict[str, Any]) -> Assessment:
    if _summary_only(base) or _summary_only(new):
        return welch(_Side.of_entry(base), _Side.of_entry(new))
    return assess(base["values"], new["values"])


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
            got = _assess_entries(other, entry)
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
    if _summary_only(entry):
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


def overall(found: Sequence[Change]) -> str:
    """One verdict for a comparison: ``"worse"`` when any change is worse, else
    ``"better"`` when any is better, else ``"within noise"`` (``"nothing compared"``
    without a benchmark and metric in common)."""
    verdicts = {verdict(ch) for ch in found}
    if not found:
        return "nothing compared"
    for word in ("worse", "better"):
        if word in verdicts:
            return word
    return "within noise"


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


def table(found: Sequence[Change], intervals: bool = False) -> list[str]:
    """The comparison as lines of text: a header, then a line per change.  The
    change column holds the point alone (the results server's layout), or with
    ``intervals`` its interval too (``pbench compare``'s, see :func:`render`)."""
    if not intervals:
        lines = [f"{'benchmark':<48} {'metric':<14} {'base':>12} {'new':>12} {'change':>9}  noise"]
        for ch in found:
            lines.append(
                f"{ch.benchmark[-48:]:<48} {ch.metric:<14} {ch.base:>12.4g} {ch.new:>12.4g} "
                f"{pct_text(ch.pct):>9}  {verdict(ch)}"
            )
        return lines
    shown = [change_text(ch) for ch in found]
    width = max([len("change [95% interval]"), *(len(s) for s in shown)])
    lines = [
        f"{'benchmark':<48} {'metric':<14} {'base':>12} {'new':>12} "
        f"{'change [95% interval]':>{width}}  noise"
    ]
    for ch, text in zip(found, shown):
        lines.append(
            f"{ch.benchmark[-48:]:<48} {ch.metric:<14} {ch.base:>12.4g} {ch.new:>12.4g} "
            f"{text:>{width}}  {verdict(ch)}"
        )
    return lines


FORMATS = ("text", "markdown", "json")


def _md_cell(text: str, code: bool = False) -> str:
    text = text.replace("|", "\\|")
    if code:
        fence = "``" if "`" in text else "`"
        pad = " " if "`" in text else ""
        return f"{fence}{pad}{text}{pad}{fence}"
    return text


def _md_number(value: float, unit: str) -> str:
    return f"{value:.4g}{' ' + unit if unit else ''}"


def _markdown(found: Sequence[Change], warnings: Sequence[str], failed: Sequence[str]) -> str:
    counts = {word: sum(verdict(ch) == word for ch in found) for word in _VERDICTS}
    word = "regression" if failed else overall(found)
    summary = ", ".join(f"{counts[w]} {w}" for w in _VERDICTS)
    lines = [f"**pbench compare: {word}** ({summary}; change in medians, 95 % interval)", ""]
    for message in failed:
        lines.append(f"- **regression:** {_md_cell(message)}")
    for warning in warnings:
        lines.append(f"- **warning:** {_md_cell(warning)}")
    if failed or warnings:
        lines.append("")
    if not found:
        lines.append("No benchmark and metric in common.")
        return "\n".join(lines) + "\n"
    lines += [
        "| benchmark | metric | base | new | change [95 % interval] | verdict |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for ch in found:
        said = verdict(ch)
        cells = (
            _md_cell(ch.benchmark, code=True),
            _md_cell(ch.metric),
            _md_number(ch.base, ch.unit),
            _md_number(ch.new, ch.unit),
            change_text(ch),
            f"**{said}**" if said != "within noise" else said,
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


_VERDICTS = ("worse", "better", "within noise")


def as_dicts(found: Sequence[Change]) -> list[dict[str, Any]]:
    """Each change's fields and its :func:`verdict`, as the results server's API has them."""
    return [{**asdict(ch), "verdict": verdict(ch)} for ch in found]


def render(
    found: Sequence[Change],
    fmt: str = "text",
    warnings: Sequence[str] = (),
    rules: Sequence[str] = (),
) -> str:
    """The comparison in ``fmt``, ending with a newline:

    ``text``
        ``warning: ...`` lines, then :func:`table` with intervals.
    ``markdown``
        a GitHub-flavoured table for a pull-request comment: a one-line overall
        verdict in bold (``regression`` when a ``rules`` limit is passed, else
        :func:`overall`), the regressions and ``warnings`` as a list, then a row per change.
    ``json``
        strict JSON (a NaN or an infinity is ``null``): a list of every change's
        fields and its verdict (``warnings`` are not in it).
    """
    if fmt == "text":
        lines = [f"warning: {w}" for w in warnings] + table(found, intervals=True)
        return "\n".join(lines) + "\n"
    if fmt == "markdown":
        return _markdown(found, warnings, regressions(found, rules) if rules else [])
    if fmt == "json":
        return strictjson.dumps(as_dicts(found), indent=2) + "\n"
    raise UsageError(f"bad format {fmt!r}: use one of {', '.join(FORMATS)}")
