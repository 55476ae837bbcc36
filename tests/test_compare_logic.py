"""The comparison's noise rule and gates, on hand-made runs."""

from __future__ import annotations

from typing import Any

import pytest

from pbench_runner.compare import changes, parse_rule, regressions
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
