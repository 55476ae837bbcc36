"""Calibrated timing of a Python callable, as pyperf and pytest-benchmark time one.

A call of a few nanoseconds cannot be timed on its own: the clock's reads
cost more.  So a round calls it ``loops`` times in a row and the time per
call is the round's time divided by ``loops``; calibration picks ``loops``
so that a round lasts at least ``min_time`` (100 ms by default, as pyperf).
The timed region is only the loop between two ``time.perf_counter_ns()``
reads: the thread's CPU clock is read just outside it, and everything else
(the timeout, the tools' actions, the bookkeeping) happens before or after.
"""

from __future__ import annotations

import gc
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

#: seconds a round lasts at least, unless the benchmark says otherwise
MIN_TIME: Final = 0.1
#: loops are never more than this (a call that takes no time at all)
MAX_LOOPS: Final = 1 << 40


@dataclass(frozen=True)
class Round:
    """One timed round: ``loops`` calls."""

    loops: int
    #: wall and the calling thread's CPU time of the whole round, in ns
    wall_ns: int
    cpu_ns: int

    @property
    def per_call_s(self) -> float:
        return self.wall_ns / self.loops / 1e9

    @property
    def cpu_per_call_s(self) -> float:
        return self.cpu_ns / self.loops / 1e9


def time_round(
    fn: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    loops: int = 1,
    disable_gc: bool = False,
) -> Round:
    """Call ``fn(*args, **kwargs)`` ``loops`` times; only the loop is timed."""
    repeat = itertools.repeat(None, loops)
    collecting = gc.isenabled()
    if disable_gc:
        gc.disable()
    try:
        cpu0 = time.thread_time_ns()
        if args or kwargs:
            kw = dict(kwargs or {})
            t0 = time.perf_counter_ns()
            for _ in repeat:
                fn(*args, **kw)
            t1 = time.perf_counter_ns()
        else:
            t0 = time.perf_counter_ns()
            for _ in repeat:
                fn()
            t1 = time.perf_counter_ns()
        cpu1 = time.thread_time_ns()
    finally:
        if disable_gc and collecting:
            gc.enable()
    return Round(loops, t1 - t0, cpu1 - cpu0)


def calibrate(
    fn: Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    min_time: float = MIN_TIME,
    disable_gc: bool = False,
) -> int:
    """The loops a round needs to last ``min_time`` (with the calls it takes
    to find out as the warm-up)."""
    loops = 1
    target = int(min_time * 1e9)
    while loops < MAX_LOOPS:
        spent = time_round(fn, args, kwargs, loops, disable_gc).wall_ns
        if spent >= target:
            return loops
        # aim a little past the target, but never grow more than 10x at once
        wanted = loops * target * 1.2 / max(spent, 1)
        loops = int(min(max(wanted, loops * 2), loops * 10))
    return MAX_LOOPS


def fmt_time(seconds: float) -> str:
    """``42.1 ns``, ``3.20 µs``, ``15.0 ms``, ``1.25 s``: the unit that fits."""
    magnitude = abs(seconds)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if magnitude >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"
