"""pbench results as pytest-benchmark JSON, and pytest-benchmark JSON as pbench results.

:func:`to_pytest_benchmark` turns a run's ``result.json`` into the document
``pytest --benchmark-json`` writes, so that ``pytest-benchmark compare`` and
the tools that read its files can read a pbench run.  Each benchmark's
``stats`` are those of its rounds' times per call (``metrics.wall_s``), with
the statistics pytest-benchmark computes.  A benchmark using the
``benchmark`` fixture records its own name, group, params, options and loops
(the iteration's ``benchmark``); any other benchmark is one call per round.

:func:`from_pytest_benchmark` goes the other way, so that a pytest-benchmark
file can be the baseline of ``pbench compare`` and ``pbench run --compare``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pbench_runner import strictjson
from pbench_runner.machine import commit_info, machine_info
from pbench_runner.stats import summarize

#: the layout written, as the ``version`` of pytest-benchmark that writes it
FORMAT_VERSION = "5.3.1"
#: ``run.source.format`` of a run read from a pytest-benchmark file
SOURCE_FORMAT = "pytest-benchmark"


# --- pytest-benchmark's statistics ------------------------------------------------


def _quartiles(ordered: Sequence[float]) -> tuple[float, float]:
    """Q1 and Q3 as pytest-benchmark computes them: for an even count the
    medians of the lower and upper halves, for an odd count a weighted mean
    of the two values around each quarter (Wikipedia's "method 3")."""
    n = len(ordered)
    if n == 1:
        return ordered[0], ordered[0]
    if n % 2 == 0:
        half = n // 2
        return statistics.median(ordered[:half]), statistics.median(ordered[half:])
    m = n // 4
    if n % 4 == 1:  # n = 4m + 1
        low = (ordered[m - 1], ordered[m], 0.25)
        high = (ordered[3 * m], ordered[3 * m + 1], 0.75)
    else:  # n = 4m + 3
        low = (ordered[m], ordered[m + 1], 0.75)
        high = (ordered[3 * m + 1], ordered[3 * m + 2], 0.25)
    q1 = low[2] * low[0] + (1 - low[2]) * low[1]
    q3 = high[2] * high[0] + (1 - high[2]) * high[1]
    return q1, q3


def benchmark_stats(data: Sequence[float], loops: int = 1) -> dict[str, Any]:
    """pytest-benchmark's ``stats`` of per-call times ``data`` (one per round).

    The same fields in the same order as pytest-benchmark writes them, ``data``
    and ``iterations`` (the loops of each round) included.
    """
    if not data:
        raise ValueError("no rounds to summarize")
    values = [float(v) for v in data]
    ordered = sorted(values)
    n = len(values)
    mean = statistics.mean(values)
    stddev = statistics.stdev(values) if n > 1 else 0.0
    q1, q3 = _quartiles(ordered)
    iqr = q3 - q1
    low_fence, high_fence = q1 - 1.5 * iqr, q3 + 1.5 * iqr
    if n == 1:
        ld15iqr = hd15iqr = values[0]
    else:
        ld15iqr = ordered[bisect.bisect_left(ordered, low_fence)]
        hd15iqr = ordered[bisect.bisect_right(ordered, high_fence) - 1]
    iqr_outliers = sum(1 for v in values if v < low_fence or v > high_fence)
    stddev_outliers = sum(1 for v in values if v < mean - stddev or v > mean + stddev)
    total = sum(values)
    return {
        "min": ordered[0],
        "max": ordered[-1],
        "mean": mean,
        "stddev": stddev,
        "rounds": n,
        "median": statistics.median(values),
        "iqr": iqr,
        "q1": q1,
        "q3": q3,
        "iqr_outliers": iqr_outliers,
        "stddev_outliers": stddev_outliers,
        "outliers": f"{stddev_outliers};{iqr_outliers}",
        "ld15iqr": ld15iqr,
        "hd15iqr": hd15iqr,
        "ops": n / total if total else 0,
        "total": total,
        "data": values,
        "iterations": loops,
    }


# --- pbench -> pytest-benchmark ---------------------------------------------------


def _finite(values: Any) -> list[float]:
    return [
        float(v)
        for v in values or []
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]


def benchmark_name(iteration: Mapping[str, Any]) -> str:
    """The test's own name: the ``benchmark`` fixture's, else the node id's last part."""
    bench = iteration.get("benchmark") or {}
    if bench.get("name"):
        return str(bench["name"])
    nodeid = str(iteration.get("nodeid") or "")
    return nodeid.rsplit("::", 1)[-1] if nodeid else str(iteration.get("name", ""))


def _param(name: str) -> str | None:
    match = re.search(r"\[(.*)\]$", name)
    return match[1] if match else None


def _run_datetime(run: Mapping[str, Any]) -> str:
    """When the run ended (else began), in UTC as pytest-benchmark writes it; else now."""
    times = run.get("run") or {}
    for text in (
        times.get("end_run"),
        times.get("start_run"),
        (run.get("pbench") or {}).get("date"),
    ):
        if not text:
            continue
        try:
            when = dt.datetime.fromisoformat(str(text))
        except ValueError:
            continue
        return when.astimezone(dt.timezone.utc).isoformat()  # a naive time is local
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _benchmark(iteration: Mapping[str, Any]) -> dict[str, Any] | None:
    if iteration.get("status", "ok") != "ok":
        return None  # pytest-benchmark leaves out a benchmark that failed
    wall = (iteration.get("metrics") or {}).get("wall_s") or {}
    data = _finite(wall.get("values"))
    if not data:
        return None
    bench = iteration.get("benchmark") or {}
    name = benchmark_name(iteration)
    loops = bench.get("loops") or 1
    options = bench.get("options") or {
        # a plain pbench benchmark: each sample is one call, timed with perf_counter
        "disable_gc": False,
        "timer": "perf_counter",
        "min_rounds": len(data),
        "max_time": None,
        "min_time": None,
        "warmup": False,
    }
    return {
        "group": bench.get("group"),
        "name": name,
        "fullname": bench.get("fullname") or iteration.get("nodeid") or name,
        "params": bench.get("params"),
        "param": bench.get("param") if "param" in bench else _param(name),
        "extra_info": dict(bench.get("extra_info") or {}),
        "options": dict(options),
        "stats": benchmark_stats(data, int(loops)),
    }


def to_pytest_benchmark(result: Mapping[str, Any], project: Path | None = None) -> dict[str, Any]:
    """The pytest-benchmark JSON document of a run's ``result.json``.

    ``machine_info`` and ``commit_info`` are the run's own when it recorded
    them, else this machine's and the commit of ``project`` (the current
    directory by default).  Failed benchmarks, and those without a wall time,
    are left out, as pytest-benchmark leaves out the ones that raised.
    """
    run = result.get("run") or {}
    benchmarks = [
        b for b in (_benchmark(it) for it in result.get("iterations") or []) if b is not None
    ]
    meta = run.get("pbench") or {}
    return {
        "machine_info": run.get("machine_info") or machine_info(),
        "commit_info": run.get("commit_info") or commit_info(project or Path.cwd()),
        "benchmarks": benchmarks,
        "datetime": _run_datetime(run),
        "version": FORMAT_VERSION,
        "pbench": {
            "name": meta.get("name"),
            "run_id": meta.get("run_id"),
            "version": meta.get("version"),
        },
    }


def dumps(document: Mapping[str, Any]) -> str:
    """JSON text as pytest-benchmark writes it (4 spaces, ASCII), strict: NaN is null."""
    return strictjson.dumps(document, indent=4, ensure_ascii=True) + "\n"


def write(path: Path, result: Mapping[str, Any], project: Path | None = None) -> dict[str, Any]:
    """Write :func:`to_pytest_benchmark` of ``result`` to ``path``; return the document."""
    document = to_pytest_benchmark(result, project)
    Path(path).write_text(dumps(document))
    return document


# --- pytest-benchmark -> pbench ---------------------------------------------------

SUMMARY_ONLY_NOTE = (
    "pytest-benchmark kept only the summary of its rounds (the file was saved without "
    "--benchmark-save-data): values holds the mean alone, summary its statistics"
)


def _summary_from_stats(stats: Mapping[str, Any], value: float) -> dict[str, Any]:
    """pbench's summary of a benchmark known only by pytest-benchmark's statistics."""
    mean = float(stats.get("mean", value))
    stddev = float(stats.get("stddev") or 0.0)
    q1 = stats.get("q1", stats.get("median", mean))
    q3 = stats.get("q3", stats.get("median", mean))
    return {
        "n": int(stats.get("rounds") or 1),
        "mean": mean,
        "stddev": stddev,
        "stddev_pct": 100.0 * stddev / abs(mean) if mean else math.nan,
        "median": float(stats.get("median", mean)),
        "min": float(stats.get("min", mean)),
        "max": float(stats.get("max", mean)),
        "q1": float(q1),
        "q3": float(q3),
        "outliers": [],
        "closest": 1,
    }


def from_pytest_benchmark(data: Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    """A pbench ``result.json``-shaped run from a pytest-benchmark JSON document.

    Each benchmark becomes an iteration whose ``nodeid`` is its ``fullname`` and
    whose ``metrics.wall_s.values`` are its rounds' times per call (``stats.data``).
    When the file has no ``data``, the one value is the mean; the metric is then
    marked ``summary_only``, its ``summary`` holds pytest-benchmark's statistics
    (``n`` is its rounds), and the iteration and the run carry a ``note``.
    """
    iterations = []
    summary_only = []
    for number, bench in enumerate(data.get("benchmarks") or [], 1):
        stats = bench.get("stats") or bench  # as written, or flattened as its loader does
        name = str(bench.get("name") or bench.get("fullname") or f"benchmark{number}")
        fullname = str(bench.get("fullname") or name)
        values = _finite(stats.get("data"))
        wall: dict[str, Any] = {"unit": "s", "higher_is_better": False}
        iteration: dict[str, Any] = {"name": f"{number}-{name}", "nodeid": fullname}
        if values:
            wall.update(values=values, summary=summarize(values))
        elif isinstance(stats.get("mean"), (int, float)):
            mean = float(stats["mean"])
            wall.update(values=[mean], summary_only=True, summary=_summary_from_stats(stats, mean))
            iteration["note"] = SUMMARY_ONLY_NOTE
            summary_only.append(fullname)
        else:
            continue
        iteration.update(
            status="ok",
            samples=[],
            metrics={"wall_s": wall},
            hosts={},
            benchmark={
                "name": name,
                "fullname": fullname,
                "group": bench.get("group"),
                "params": bench.get("params"),
                "param": bench.get("param"),
                "extra_info": bench.get("extra_info") or {},
                "options": bench.get("options") or {},
                "loops": stats.get("iterations") or 1,
            },
        )
        iterations.append(iteration)
    label = Path(source).stem if source else "pytest-benchmark"
    run: dict[str, Any] = {
        "pbench": {
            "name": label,
            "script": SOURCE_FORMAT,
            "config": "",
            "date": data.get("datetime"),
            "version": data.get("version"),
            "run_id": "",
        },
        "run": {"start_run": data.get("datetime"), "end_run": data.get("datetime"), "status": "ok"},
        "source": {"format": SOURCE_FORMAT, "version": data.get("version"), "path": source},
        "machine_info": data.get("machine_info") or {},
        "commit_info": data.get("commit_info") or {},
        "notes": [],
    }
    if summary_only:
        run["notes"].append(f"{SUMMARY_ONLY_NOTE}: {', '.join(summary_only)}")
    return {"run": run, "iterations": iterations}


def read(path: Path) -> dict[str, Any]:
    """:func:`from_pytest_benchmark` of the pytest-benchmark file at ``path``."""
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return from_pytest_benchmark(document, source=str(path))


def is_pytest_benchmark(document: Any) -> bool:
    """Whether ``document`` looks like pytest-benchmark's JSON (not a pbench result)."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("benchmarks"), list)
        and "iterations" not in document
    )
