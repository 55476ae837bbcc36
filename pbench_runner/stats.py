"""Statistics of a benchmark's samples: what users of pyperf and pbench expect."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """First and third quartiles (the inclusive method, as spreadsheets use)."""
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Mean, stddev, %stddev, median, min, max, IQR outliers, and the sample closest to the mean.

    ``outliers`` and ``closest`` are 1-based sample numbers.  The standard
    deviation is the sample one (n - 1); with one value it is 0.
    """
    if not values:
        raise ValueError("no values to summarize")
    n = len(values)
    mean = statistics.fmean(values)
    stddev = statistics.stdev(values) if n > 1 else 0.0
    q1, q3 = quartiles(values)
    iqr = q3 - q1
    low, high = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    closest = min(range(n), key=lambda i: (abs(values[i] - mean), i)) + 1
    return {
        "n": n,
        "mean": mean,
        "stddev": stddev,
        "stddev_pct": (100.0 * stddev / abs(mean)) if mean else math.nan,
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "q1": q1,
        "q3": q3,
        "outliers": [i + 1 for i, v in enumerate(values) if v < low or v > high],
        "closest": closest,
    }
