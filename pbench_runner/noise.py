"""The noise rule: whether two runs' samples of a metric differ beyond the noise.

The change is the relative change in medians, ``new median / base median - 1``
(``(new - base) / |base|``), with its 95 % interval: the percentile bootstrap
of that change, each run's samples resampled with replacement 2000 times with
a fixed seed (the same runs give the same interval).  A change is *outside the
noise* when both

* the rank test says the runs' samples differ at 5 %: Mann-Whitney U,
  two-sided; the exact distribution without ties (up to 50 samples a side),
  else the normal approximation with tie and continuity correction; and
* the interval excludes 0.

Ranks and medians are what one outlier cannot drag: five samples all 30 %
slower and one of them 3x are a clear slowdown, where Welch's t on the means
(the comparison's rule before) saw noise in the outlier's variance.

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

This module knows samples and a metric's entry in ``result.json``, not runs:
:mod:`pbench_runner.compare` pairs the runs' benchmarks and asks it.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
        if summary_only(entry):
            return cls(int(summary["n"]), float(summary["mean"]), float(summary["stddev"]) ** 2)
        return cls.of(entry["values"])


def summary_only(entry: dict[str, Any]) -> bool:
    """Whether a metric's entry is known only by its summary (mean, standard
    deviation and a count of 2 or more), not by its samples."""
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


def assess_entries(base: dict[str, Any], new: dict[str, Any]) -> Assessment:
    """:func:`assess` of two runs' entries of a metric (``values``, and ``summary``
    when only that is known); by :func:`welch` when either is known only by its summary."""
    if summary_only(base) or summary_only(new):
        return welch(_Side.of_entry(base), _Side.of_entry(new))
    return assess(base["values"], new["values"])
