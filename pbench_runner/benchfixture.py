"""The ``benchmark`` fixture of pytest-benchmark, under ``pbench run``.

The same API -- ``benchmark(fn, *args, **kwargs)``, ``benchmark.pedantic(...)``,
``extra_info``, ``group``, ``name``, the ``benchmark`` marker -- so that a
pytest-benchmark suite runs unchanged, with every host's tools around it.
The model is pbench's: each *sample* is one round of ``loops`` calls, with
the tools started before it and stopped after it; ``loops`` is calibrated
once, before the first sample (see :mod:`pbench_runner.timing`), so a round
lasts at least ``min_time``.  A sample's ``wall_s`` and ``cpu_s`` are then
per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pytest

from pbench_runner.errors import UsageError
from pbench_runner.pytest_plugin import marker_keywords
from pbench_runner.timing import MIN_TIME, Round, calibrate, time_round

#: the keywords of pytest-benchmark's ``benchmark`` marker that pbench honours
MARKER_KEYS: Final = frozenset(
    {"group", "min_rounds", "max_time", "min_time", "timer", "disable_gc", "warmup",
     "warmup_iterations", "calibration_precision"}
)  # fmt: skip


class FixtureAlreadyUsed(UsageError):
    """``benchmark`` was called twice in one sample (pytest-benchmark refuses it too)."""


@dataclass
class BenchmarkOptions:
    """The ``benchmark`` marker's keywords, as pbench uses them."""

    group: str | None = None
    min_rounds: int | None = None
    min_time: float = MIN_TIME
    disable_gc: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, item: pytest.Item, min_time: float) -> BenchmarkOptions:
        raw = marker_keywords(item, "benchmark", MARKER_KEYS)
        rounds = raw.get("min_rounds")
        if rounds is not None and (not isinstance(rounds, int) or rounds < 1):
            raise UsageError(f"{item.nodeid}: benchmark marker min_rounds={rounds!r}: 1 or more")
        # a round of pbench's is a sample with tools around it: never shorter
        # than the run's --min-time, longer if the marker asks
        wanted = float(raw.get("min_time") or 0.0)
        return cls(
            group=raw.get("group"),
            min_rounds=rounds,
            min_time=max(min_time, wanted),
            disable_gc=bool(raw.get("disable_gc", False)),
            raw=raw,
        )


class BenchmarkFixture:
    """What a benchmark function gets as ``benchmark``."""

    def __init__(self, item: pytest.Item, options: BenchmarkOptions) -> None:
        self.name: str = item.name
        self.fullname: str = item.nodeid
        callspec = getattr(item, "callspec", None)
        self.params: dict[str, Any] | None = dict(callspec.params) if callspec else None
        self.param: str | None = callspec.id if callspec else None
        self.group: str | None = options.group
        self.extra_info: dict[str, Any] = {}
        self.options = options
        #: calls per round, once calibrated
        self.loops: int | None = None
        #: the round of the sample being run; None until the function times one
        self.last: Round | None = None
        self.calibrating = False
        self._used = False

    # --- driven by pbench run -----------------------------------------------------

    def begin(self, calibrating: bool = False) -> None:
        """A sample (or the calibration run) begins."""
        self.calibrating = calibrating
        self.last = None
        self._used = False

    def meta(self) -> dict[str, Any]:
        """What an iteration records of it (pytest-benchmark's names)."""
        return {
            "name": self.name,
            "fullname": self.fullname,
            "group": self.group,
            "params": self.params,
            "param": self.param,
            "extra_info": self.extra_info,
            "options": {
                "min_rounds": self.options.min_rounds,
                "min_time": self.options.min_time,
                "max_time": self.options.raw.get("max_time"),
                "timer": "perf_counter",
                "disable_gc": self.options.disable_gc,
                "warmup": self.options.raw.get("warmup", True),
            },
            "loops": self.loops,
        }

    # --- pytest-benchmark's API ---------------------------------------------------

    def _use(self) -> None:
        if self._used:
            raise FixtureAlreadyUsed(
                f"{self.fullname}: the benchmark fixture can be used only once per test"
            )
        self._used = True

    def __call__(self, function_to_benchmark: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Time ``function_to_benchmark(*args, **kwargs)``; return what it returns."""
        self._use()
        result = function_to_benchmark(*args, **kwargs)  # its answer, and a first call
        if self.loops is None or self.calibrating:
            self.loops = calibrate(
                function_to_benchmark, args, kwargs, self.options.min_time, self.options.disable_gc
            )
            if self.calibrating:
                return result
        self.last = time_round(
            function_to_benchmark, args, kwargs, self.loops, self.options.disable_gc
        )
        return result

    def pedantic(
        self,
        target: Callable[..., Any],
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        setup: Callable[[], Any] | None = None,
        teardown: Callable[..., Any] | None = None,
        rounds: int = 1,
        warmup_rounds: int = 0,
        iterations: int = 1,
    ) -> Any:
        """Time ``rounds`` rounds of ``iterations`` calls, exactly as asked (no
        calibration); ``setup`` runs before each round and may return the
        ``(args, kwargs)``, ``teardown`` after it.  One pbench sample holds
        them all: its time per call is their mean."""
        self._use()
        for name, value, least in (("iterations", iterations, 1), ("rounds", rounds, 1),
                                   ("warmup_rounds", warmup_rounds, 0)):  # fmt: skip
            if not isinstance(value, int) or value < least:
                raise ValueError(f"pedantic: {name} must be a whole number >= {least}")
        if iterations > 1 and setup is not None:
            raise ValueError("pedantic: a setup function allows only 1 iteration")
        has_args = bool(args or kwargs)

        def arguments() -> tuple[Sequence[Any], Mapping[str, Any]]:
            found = setup() if setup is not None else None
            if found:
                if has_args:
                    raise TypeError("pedantic: setup returned arguments, and args/kwargs are given")
                return found[0], found[1]
            return args, kwargs or {}

        result: Any = None
        wall = cpu = 0
        timed = warmup_rounds + (0 if self.calibrating else rounds)
        for n in range(max(timed, 1)):
            call_args, call_kwargs = arguments()
            cpu0 = time.thread_time_ns()
            t0 = time.perf_counter_ns()
            for _ in range(iterations):
                result = target(*call_args, **call_kwargs)
            t1 = time.perf_counter_ns()
            cpu1 = time.thread_time_ns()
            if teardown is not None:
                teardown(*call_args, **call_kwargs)
            if n >= warmup_rounds:
                wall, cpu = wall + t1 - t0, cpu + cpu1 - cpu0
        self.loops = rounds * iterations
        if not self.calibrating:
            self.last = Round(self.loops, wall, cpu)
        return result

    def weave(self, target: Any, **kwargs: Any) -> None:
        raise UsageError(f"{self.fullname}: benchmark.weave (aspect patching) is not supported")
