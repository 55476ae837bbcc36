"""The comparison's noise rule, intervals, gates, comparability and formats, on hand-made runs."""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
import time
from dataclasses import fields, replace
from statistics import mean, variance
from typing import Any

import pytest

from pbench_runner import compare, noise, pbjson
from pbench_runner.compare import (
    Change,
    changes,
    check_comparable,
    comparability,
    parse_rule,
    past_limit,
    regressions,
    tool_differences,
    unknown_metrics,
    verdict,
)
from pbench_runner.compare_report import render, table
from pbench_runner.errors import UsageError
from pbench_runner.noise import (
    assess,
    bootstrap_interval,
    mann_whitney,
    t_critical,
    t_p_value,
    t_quantile,
)


def run(values: list[float], higher: bool = True, metric: str = "score") -> dict[str, Any]:
    unit = "s" if metric == "wall_s" else "pts"
    entry = {"unit": unit, "higher_is_better": higher, "values": values}
    return {"iterations": [{"nodeid": "b.py::bench_x", "metrics": {metric: entry}}]}


def one(base: list[float], new: list[float], higher: bool = True, metric: str = "score") -> Change:
    (found,) = changes(run(base, higher, metric), run(new, higher, metric))
    return found


# --- issue 13, item 1: a steady slowdown with one outlier -----------------------------

ITEM_1_BASE = [1.0, 1.01, 0.99, 1.005, 0.995]
ITEM_1_NEW = [1.3, 1.29, 1.31, 1.32, 3.0]  # every one past the base's max; one far past


def test_a_steady_slowdown_with_one_outlier_is_outside_the_noise() -> None:
    # the premise: Welch's t on the means (the rule before) saw noise in the outlier
    a, b = ITEM_1_BASE, ITEM_1_NEW
    va, vb = variance(a) / len(a), variance(b) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    assert (mean(b) - mean(a)) / math.sqrt(va + vb) < t_critical(df)
    assert (mean(b) / mean(a) - 1) * 100 > 50
    ch = one(a, b, higher=False, metric="wall_s")
    assert ch.significant and verdict(ch) == "worse"
    assert ch.method == "mann-whitney exact" and ch.p_value == pytest.approx(2 / 252)
    assert (ch.base, ch.new) == (1.0, 1.31)  # medians
    assert ch.pct == pytest.approx(31.0)
    assert 0.10 < ch.ci_low <= 0.31 <= ch.ci_high
    [message] = regressions([ch], ["wall_s:+10%"])
    assert message.startswith("b.py::bench_x: wall_s changed +31.0% [+")
    assert "lower edge past the limit of +10%" in message
    assert regressions([ch], ["wall_s:-10%"]) == []


# --- unchanged runs: false alarms -------------------------------------------------------


@pytest.mark.parametrize(("m", "n"), [(3, 3), (5, 5), (3, 5)])
def test_unchanged_runs_rarely_raise_a_false_alarm(m: int, n: int) -> None:
    # repeated runs of one unchanged benchmark: 3 % lognormal noise around 1 s
    # (at 5 against 5 the rate is about 3.3 %: 200 pairs see more than 5 % for ~3 % of seeds)
    rng = random.Random(m * 100 + n)
    alarms = 0
    for _ in range(200):
        base = [rng.lognormvariate(0, 0.03) for _ in range(m)]
        new = [rng.lognormvariate(0, 0.03) for _ in range(n)]
        alarms += assess(base, new).significant
    assert alarms / 200 <= 0.05, alarms


@pytest.mark.parametrize(("m", "n", "most"), [(3, 3, 0), (4, 4, 2), (5, 5, 8), (3, 5, 2)])
def test_every_order_of_unchanged_samples_is_equally_likely(m: int, n: int, most: int) -> None:
    # unchanged runs: each of the C(m+n, m) orders of their samples has the same chance,
    # so the false-alarm rate is the share of orders found outside the noise
    # (evenly spaced samples: the rank test at 5 % picks 2 of 70 orders at 4 against 4,
    # 8 of 252 at 5 against 5; the interval can only veto)
    pooled = [1 + 0.01 * i for i in range(m + n)]
    alarms = 0
    for chosen in itertools.combinations(range(m + n), m):
        base = [pooled[i] for i in chosen]
        new = [v for i, v in enumerate(pooled) if i not in chosen]
        alarms += assess(base, new).significant
    assert alarms == most
    assert alarms / math.comb(m + n, m) <= 0.05


def test_three_against_three_needs_more_than_separation() -> None:
    # the rank test cannot reach 5 % here: 2 / C(6, 3) = 0.1 at best
    assert not noise.rank_test_can_decide(3, 3) and not noise.rank_test_can_decide(3, 4)
    assert noise.rank_test_can_decide(4, 4) and noise.rank_test_can_decide(3, 5)
    # separated but no further apart than each run spreads: 1 in 10 unchanged runs do that
    ch = one([1.00, 1.01, 1.02], [1.03, 1.04, 1.05])
    assert ch.method == "separation" and ch.p_value == pytest.approx(0.1)
    assert not ch.significant and ch.ci_low > 0  # the interval alone would have fired
    # apart by more than the spread: a clear change
    ch = one([100.0, 101.0, 99.0], [90.0, 91.0, 89.0])
    assert ch.significant and verdict(ch) == "worse" and ch.pct == pytest.approx(-10.0)
    [message] = regressions([ch], ["score:-5%"])
    assert "b.py::bench_x: score changed -10.0% [" in message
    assert regressions([ch], ["score:-15%"]) == regressions([ch], ["score:+5%"]) == []
    # overlapping runs
    assert not one([10.0, 11.0, 12.0], [12.0, 13.0, 14.0]).significant
    assert not one([100.0, 120.0, 80.0], [95.0, 115.0, 75.0]).significant
    # an outlier in the new run widens its spread: 3 samples cannot tell it apart
    assert not one([1.0, 1.01, 0.99], [1.3, 1.31, 3.0]).significant
    assert one([1.0, 1.01, 0.99], [1.3, 1.31, 1.32]).significant


def test_four_against_four_is_the_rank_tests() -> None:
    ch = one([1.0, 1.01, 0.99, 1.02], [1.03, 1.04, 1.05, 1.06])
    assert ch.method == "mann-whitney exact" and ch.p_value == pytest.approx(2 / 70)
    assert ch.significant
    ch = one([1.0, 1.01, 0.99, 1.035], [1.03, 1.04, 1.05, 1.06])  # one pair crosses
    assert ch.p_value == pytest.approx(4 / 70) and not ch.significant


def test_single_samples() -> None:
    # one against one: nothing tells the noise, any difference counts
    assert one([100.0], [105.0]).significant and one([100.0], [105.0]).method == "single"
    assert not one([100.0], [100.0]).significant
    assert not one([100.0, 110.0], [105.0]).significant
    # one against several: beyond the other run by more than its spread
    assert not one([100.0], [99.9, 95.0, 104.0]).significant
    assert one([100.0], [110.0, 111.0, 112.0]).significant
    assert not one([100.0], [103.0, 106.0, 109.0]).significant


# --- the rank test ----------------------------------------------------------------------


def brute_force_p(base: list[float], new: list[float]) -> float:
    """The exact two-sided p by every assignment of the pooled samples to the runs."""
    pooled, m = [*base, *new], len(base)

    def u_of(chosen: tuple[int, ...]) -> int:
        b = [v for i, v in enumerate(pooled) if i not in chosen]
        a = [pooled[i] for i in chosen]
        return sum(y > x for x in a for y in b)

    u = u_of(tuple(range(m)))
    us = [u_of(c) for c in itertools.combinations(range(len(pooled)), m)]
    extreme = min(u, m * len(new) - u)
    return min(1.0, 2 * sum(v <= extreme for v in us) / len(us))


def test_the_exact_distribution_is_every_order_counted() -> None:
    assert noise._u_counts(3, 3) == (1, 1, 2, 3, 3, 3, 3, 2, 1, 1)
    for m, n in [(1, 4), (2, 5), (4, 6), (7, 7), (20, 20)]:
        counts = noise._u_counts(m, n)
        assert sum(counts) == math.comb(m + n, m) and len(counts) == m * n + 1
        assert counts == counts[::-1]
    rng = random.Random(3)
    for m, n in [(3, 4), (4, 4), (5, 3), (5, 5)]:
        for _ in range(5):
            base = [rng.random() for _ in range(m)]
            new = [rng.random() + 0.3 for _ in range(n)]
            u, p, exact = mann_whitney(base, new)
            assert exact and u == sum(y > x for x in base for y in new)
            assert p == pytest.approx(brute_force_p(base, new))


def test_ties_use_the_normal_approximation() -> None:
    u, p, exact = mann_whitney([1.0, 2.0, 2.0, 3.0], [2.0, 3.0, 4.0, 5.0])
    assert not exact and u == 13.5
    # with ties the variance shrinks: mn/12 * (N + 1 - sum(t^3 - t) / (N (N - 1)))
    var = 16 / 12 * (9 - (24 + 6) / 56)
    assert p == pytest.approx(math.erfc((13.5 - 8 - 0.5) / math.sqrt(var) / math.sqrt(2)))
    assert mann_whitney([1.0, 1.0], [1.0, 1.0])[1] == 1.0
    # without ties, for many samples, the approximation is near the exact p
    rng = random.Random(5)
    base = [rng.gauss(0, 1) for _ in range(20)]
    new = [rng.gauss(0.6, 1) for _ in range(20)]
    _, exact_p, _ = mann_whitney(base, new)
    tied = [round(v, 1) for v in base], [round(v, 1) for v in new]
    _, approx_p, exact = mann_whitney(*tied)
    assert not exact and approx_p == pytest.approx(exact_p, abs=0.02)


def test_students_t() -> None:
    assert t_quantile(0.05, 4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(0.05, 1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(0.05, 1e6) == pytest.approx(1.960, abs=1e-3)
    assert t_p_value(2.306, 8) == pytest.approx(0.05, abs=1e-4)
    assert t_p_value(0.0, 3) == pytest.approx(1.0)
    assert t_critical(4) == pytest.approx(2.776) and t_critical(1000) == pytest.approx(1.98)


# --- the bootstrap interval ---------------------------------------------------------------


def test_the_interval_is_reproducible_and_fast() -> None:
    rng = random.Random(9)
    base = [rng.lognormvariate(0, 0.03) for _ in range(20)]
    new = [1.05 * rng.lognormvariate(0, 0.03) for _ in range(20)]
    first = bootstrap_interval(base, new)
    assert bootstrap_interval(base, new) == first
    assert first[0] < 0.05 < first[1]
    spent = []
    for _ in range(5):
        began = time.perf_counter()
        bootstrap_interval(base, new)
        spent.append(time.perf_counter() - began)
    assert min(spent) < 0.020, spent
    # a wider interval at a higher confidence
    low, high = bootstrap_interval(base, new, confidence=0.99)
    assert low <= first[0] and high >= first[1]


def test_many_samples_draw_the_median_by_its_order_statistic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(4)
    for n in (101, 100):  # odd and even
        base = [rng.lognormvariate(0, 0.1) for _ in range(n)]
        new = [1.05 * rng.lognormvariate(0, 0.1) for _ in range(n)]
        by_order = bootstrap_interval(base, new, resamples=4000)
        monkeypatch.setattr(noise, "_RESAMPLE_MAX", 10**6)
        by_resampling = bootstrap_interval(base, new, resamples=4000)
        monkeypatch.undo()
        assert by_order != by_resampling
        for a, b in zip(by_order, by_resampling):
            assert a == pytest.approx(b, abs=0.01)
    began = time.perf_counter()
    bootstrap_interval([rng.random() for _ in range(100_000)], [1.0, 1.1, 1.2])
    assert time.perf_counter() - began < 1.0


def test_interval_edges_and_fail_on_rules() -> None:
    ch = Change("b::x", "wall_s", "s", False, 1.0, 1.14, 14.0, True, ci_low=0.08, ci_high=0.2)
    assert compare.change_text(ch) == "+14.0% [+8.0%, +20.0%]"
    assert not past_limit(ch, 10) and past_limit(ch, 5)  # the near (lower) edge counts
    assert regressions([ch], ["wall_s:+10%"]) == []
    assert len(regressions([ch], ["wall_s:+5%"])) == 1
    drop = replace(ch, metric="ops", pct=-8.0, ci_low=-0.12, ci_high=-0.04)
    assert not past_limit(drop, -5) and past_limit(drop, -3)  # the upper edge
    assert not past_limit(drop, 5)
    assert not past_limit(replace(ch, significant=False), 1)
    # a change made without an interval is gated by its point
    assert past_limit(Change("b::x", "wall_s", "s", False, 1.0, 1.14, 14.0, True), 10)


def test_a_zero_base_has_no_percentage_in_the_table() -> None:
    found = one([0.0, 0.0], [1.0, 1.0])
    assert "n/a" in table([found])[1] and "n/a" in table([found], intervals=True)[1]


def test_a_change_from_a_zero_base_is_gated_in_its_direction() -> None:
    drop = one([0.0, 0.0], [-1.0, -1.0])
    assert drop.pct < 0 and drop.significant and drop.ci_high == -math.inf
    assert verdict(drop) == "worse"
    assert len(regressions([drop], ["score:-5%"])) == 1
    assert regressions([drop], ["score:+5%"]) == []
    rise = one([0.0, 0.0], [1.0, 1.0])
    assert verdict(rise) == "better"
    assert regressions([rise], ["score:-5%"]) == []
    assert len(regressions([rise], ["score:+5%"])) == 1


def test_rules_are_checked() -> None:
    assert parse_rule("duration:+10%") == ("duration", 10.0)
    assert parse_rule("throughput:-2.5%") == ("throughput", -2.5)
    for bad in ("throughput", "throughput:5%", "x:-5", ":-5%"):
        with pytest.raises(UsageError):
            parse_rule(bad)


def test_a_rule_for_a_metric_no_benchmark_has_is_named() -> None:
    found = changes(run([1.0, 1.1]), run([1.0, 1.2]))
    assert unknown_metrics(found, ["score:-5%", "duration:+10%"]) == ["duration"]


# --- summary-only baselines ----------------------------------------------------------------


def summary_only_base(rounds: list[float]) -> dict[str, Any]:
    stats = pbjson.benchmark_stats(rounds)
    del stats["data"]
    doc = {"benchmarks": [{"name": "test_a", "fullname": "t.py::test_a", "stats": stats}]}
    return pbjson.from_pytest_benchmark(doc)


def wall(values: list[float]) -> dict[str, Any]:
    entry = {"unit": "s", "higher_is_better": False, "values": values}
    return {"iterations": [{"nodeid": "t.py::test_a", "metrics": {"wall_s": entry}}]}


def test_a_summary_only_baseline_is_compared_by_its_mean_and_spread() -> None:
    base = summary_only_base([1.0, 1.2, 0.8, 1.1, 0.9] * 20)
    (near,) = changes(base, wall([1.02, 1.01, 1.0]))
    assert near.method == "welch" and not near.significant and near.p_value > 0.05
    assert near.ci_low < 0 < near.ci_high and near.n_base == 100 and near.n_new == 3
    (far,) = changes(base, wall([1.5, 1.52, 1.49]))
    assert far.significant and verdict(far) == "worse" and far.p_value < 1e-6
    assert far.pct == pytest.approx(50.33, abs=0.01)  # of the means
    assert 0.45 < far.ci_low < far.pct / 100 < far.ci_high < 0.56
    assert regressions([far], ["wall_s:+40%"]) and not regressions([far], ["wall_s:+48%"])
    # a single new sample takes the summary's spread
    (single,) = changes(base, wall([1.05]))
    assert single.method == "welch" and not single.significant
    (single,) = changes(base, wall([2.0]))
    assert single.significant


# --- comparability ------------------------------------------------------------------------


def tooled(group: str = "default", hosts: dict[str, Any] | None = None) -> dict[str, Any]:
    if hosts is None:
        hosts = {"ci-1": {"labels": [], "tools": {"vmstat": {"interval": 3}}}}
    return {
        "run": {
            "controller": {"hostname": "ci-1", "fqdn": "ci-1.example.org"},
            "tools": {"group": group, "hosts": hosts},
        },
        "iterations": [],
    }


def test_runs_with_other_tools_are_named() -> None:
    base = tooled()
    assert tool_differences(base, copy.deepcopy(base)) == []
    # another CI runner, the same tools on its own host: comparable
    other_runner = copy.deepcopy(base)
    other_runner["run"]["controller"] = {"hostname": "ci-2", "fqdn": "ci-2.example.org"}
    other_runner["run"]["tools"]["hosts"] = {
        "ci-2.example.org": base["run"]["tools"]["hosts"]["ci-1"]
    }
    assert tool_differences(base, other_runner) == []
    new = tooled(
        "heavy",
        {
            "ci-1": {"labels": [], "tools": {"vmstat": {"interval": 1}, "pidstat": {}}},
            "db-1": {"labels": ["db"], "tools": {"iostat": {}}},
            "idle": {"labels": [], "tools": {}},
        },
    )
    assert tool_differences(base, new) == [
        "tool group differs: 'default' in base, 'heavy' in new",
        "tool hosts differ: only in new: db-1",
        "tools on the controller differ: only in new: pidstat",
        "options of vmstat on the controller differ: --interval=3 in base, --interval=1 in new",
    ]
    assert tool_differences(tooled(hosts={}), base) == [
        "tools ran only in the new run: vmstat on the controller"
    ]


def test_a_pytest_benchmark_baseline_ran_no_tools() -> None:
    base = summary_only_base([1.0, 1.1, 0.9])
    assert tool_differences(base, tooled(hosts={})) == []
    assert tool_differences(base, tooled()) == [
        "tools ran only in the new run: vmstat on the controller"
    ]
    assert tool_differences(base, {"run": {}}) == ["tools not checked: the new run recorded none"]


def test_comparability_adds_the_tools_to_machine_and_commit() -> None:
    base, new = tooled(), tooled("disks")
    base["run"]["machine_info"] = {"cpu": {"brand_raw": "A", "count": 4}}
    new["run"]["machine_info"] = {"cpu": {"brand_raw": "B", "count": 4}}
    warnings = comparability(base, new)
    assert warnings == [
        "CPU model differs: 'A' in base, 'B' in new",
        "tool group differs: 'default' in base, 'disks' in new",
    ]
    assert check_comparable(base, new) == warnings
    with pytest.raises(compare.NotComparable) as raised:
        check_comparable(base, new, strict=True)
    assert raised.value.warnings == warnings and isinstance(raised.value, UsageError)
    assert "CPU model differs" in str(raised.value) and "tool group differs" in str(raised.value)
    new["run"]["machine_info"] = base["run"]["machine_info"]
    new["run"]["tools"]["group"] = "default"
    assert check_comparable(base, new, strict=True) == []


# --- formats -------------------------------------------------------------------------------


def some_changes() -> list[Change]:
    worse = one(ITEM_1_BASE, ITEM_1_NEW, higher=False, metric="wall_s")
    same = replace(
        one([1.0, 1.1, 0.9, 1.05, 0.95], [1.01, 1.09, 0.92, 1.04, 0.96], metric="ops"),
        benchmark="b.py::bench_y[a|b]",
    )
    return [worse, same]


def cells(line: str) -> list[str]:
    assert line.startswith("| ") and line.endswith(" |")
    return [c.strip() for c in line[2:-2].replace("\\|", "\0").split(" | ")]


def test_markdown_is_a_table_for_a_pull_request() -> None:
    found = some_changes()
    text = render(found, "markdown", warnings=["tool group differs: 'a' in base, 'b' in new"])
    lines = text.splitlines()
    assert lines[0].startswith("**pbench compare: worse** (1 worse, 0 better, 1 within noise")
    assert "- **warning:** tool group differs: 'a' in base, 'b' in new" in lines
    start = lines.index("| benchmark | metric | base | new | change [95 % interval] | verdict |")
    assert cells(lines[start + 1]) == ["---", "---", "---:", "---:", "---:", "---"]
    rows = [cells(line) for line in lines[start + 2 :]]
    assert len(rows) == 2 and all(len(row) == 6 for row in rows)
    assert rows[0][:4] == ["`b.py::bench_x`", "wall_s", "1 s", "1.31 s"]
    assert rows[0][4] == compare.change_text(found[0]) and rows[0][4].startswith("+31.0% [+")
    assert rows[0][5] == "**worse**"
    assert rows[1][0] == "`b.py::bench_y[a\0b]`" and rows[1][5] == "within noise"
    # a gate's failure heads it
    failed = render(found, "markdown", rules=["wall_s:+10%"]).splitlines()
    assert failed[0].startswith("**pbench compare: regression**")
    assert failed[2].startswith("- **regression:** b.py::bench_x: wall_s changed +31.0%")
    assert render([], "markdown").splitlines()[0].startswith("**pbench compare: nothing compared**")


def test_json_is_every_field_strictly() -> None:
    found = some_changes()
    back = json.loads(render(found, "json"))
    assert isinstance(back, list) and len(back) == 2
    assert [item.pop("verdict") for item in back] == ["worse", "within noise"]
    assert [Change(**item) for item in back] == found
    names = {f.name for f in fields(Change)}
    assert {"ci_low", "ci_high", "p_value", "method"} <= names
    # an infinity (from a base of 0) is null: strict JSON
    zero = render([one([0.0, 0.0], [1.0, 1.0])], "json")
    assert "Infinity" not in zero and json.loads(zero)[0]["pct"] is None


def test_text_is_the_table_with_intervals() -> None:
    found = some_changes()
    lines = render(found, "text", warnings=["commit differs"]).splitlines()
    assert lines[0] == "warning: commit differs"
    assert lines[1].split() == [
        "benchmark", "metric", "base", "new", "change", "[95%", "interval]", "noise"
    ]  # fmt: skip
    assert lines[2].split()[1:] == [
        "wall_s",
        "1",
        "1.31",
        *compare.change_text(found[0]).split(),
        "worse",
    ]
    assert len(lines) == 4
    # the results server's layout: the point alone
    assert table(found)[1].split()[1:] == ["wall_s", "1", "1.31", "+31.0%", "worse"]
    with pytest.raises(UsageError, match="bad format"):
        render(found, "html")
