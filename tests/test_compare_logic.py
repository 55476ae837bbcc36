"""The comparison's noise rule and gates, on hand-made runs."""

from __future__ import annotations

from statistics import mean, variance
from typing import Any

import pytest

from pbench_runner.compare import (
    changes,
    parse_rule,
    regressions,
    t_critical,
    table,
    unknown_metrics,
)
from pbench_runner.errors import UsageError


def run(values: list[float], higher: bool = True) -> dict[str, Any]:
    return {
        "iterations": [
            {
                "nodeid": "b.py::bench_x",
                "metrics": {"score": {"unit": "pts", "higher_is_better": higher, "values": values}},
            }
        ]
    }


def test_a_change_inside_the_noise_is_not_a_regression() -> None:
    found = changes(run([100.0, 120.0, 80.0]), run([95.0, 115.0, 75.0]))  # -5 %, stddev 20
    assert found[0].pct == pytest.approx(-5.0)
    assert not found[0].significant
    assert regressions(found, ["score:-2%"]) == []


def test_a_clear_change_past_the_limit_is() -> None:
    found = changes(run([100.0, 101.0, 99.0]), run([90.0, 91.0, 89.0]))
    assert found[0].significant
    [message] = regressions(found, ["score:-5%"])
    assert "b.py::bench_x: score changed -10.0%" in message
    assert regressions(found, ["score:-15%"]) == []
    assert regressions(found, ["score:+5%"]) == []


def test_single_samples_use_the_range() -> None:
    assert not changes(run([100.0, 110.0]), run([105.0]))[0].significant
    assert changes(run([100.0]), run([105.0]))[0].significant


def test_rules_are_checked() -> None:
    assert parse_rule("duration:+10%") == ("duration", 10.0)
    assert parse_rule("throughput:-2.5%") == ("throughput", -2.5)
    for bad in ("throughput", "throughput:5%", "x:-5", ":-5%"):
        with pytest.raises(UsageError):
            parse_rule(bad)


def test_a_single_sample_base_is_checked_against_the_new_runs_range() -> None:
    # -0.37 % on average, and the base's one value lies inside the new run's spread
    (found,) = changes(run([100.0]), run([99.9, 95.0, 104.0]))
    assert not found.significant
    (found,) = changes(run([100.0]), run([110.0, 111.0, 112.0]))
    assert found.significant


def test_few_samples_need_students_t_not_2() -> None:
    # 3 against 3: Welch's t is 2.45 here, past 2 but not past t(95 %, df 4) = 2.78
    a, b = [10.0, 11.0, 12.0], [12.0, 13.0, 14.0]
    # the premise, on these samples: Welch's t past 2, short of the module's t(95 %, df 4)
    welch_t = (mean(b) - mean(a)) / ((variance(a) / len(a) + variance(b) / len(b)) ** 0.5)
    assert 2.0 < welch_t < t_critical(4)
    (found,) = changes(run(a), run(b))
    assert not found.significant
    assert t_critical(4) == pytest.approx(2.776) and t_critical(1000) == pytest.approx(1.98)
    (found,) = changes(run([10.0, 11.0, 12.0]), run([13.5, 14.5, 15.5]))  # t = 4.3
    assert found.significant


def test_a_rule_for_a_metric_no_benchmark_has_is_named() -> None:
    found = changes(run([1.0, 1.1]), run([1.0, 1.2]))
    assert unknown_metrics(found, ["score:-5%", "duration:+10%"]) == ["duration"]


def test_a_zero_base_has_no_percentage_in_the_table() -> None:
    (found,) = changes(run([0.0, 0.0]), run([1.0, 1.0]))
    assert "n/a" in table([found])[1]


def test_a_change_from_a_zero_base_is_gated_in_its_direction() -> None:
    (drop,) = changes(run([0.0, 0.0]), run([-1.0, -1.0]))
    assert drop.pct < 0 and drop.significant
    assert len(regressions([drop], ["score:-5%"])) == 1
    assert regressions([drop], ["score:+5%"]) == []
    (rise,) = changes(run([0.0, 0.0]), run([1.0, 1.0]))
    assert regressions([rise], ["score:-5%"]) == []
    assert len(regressions([rise], ["score:+5%"])) == 1
