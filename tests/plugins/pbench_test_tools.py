"""Tools that misbehave on purpose, loaded with ``pbench -p pbench_test_tools``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pbench_runner import hookimpl
from pbench_runner.commandtool import CommandTool
from pbench_runner.tools import ToolContext, ToolSpec


class FailsToStart:
    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def start(self) -> Mapping[str, Any] | None:
        raise RuntimeError("cannot open /dev/imaginary-counter")

    def stop(self) -> None:
        return None

    def postprocess(self) -> None:
        return None


class DiesMidSample(CommandTool):
    def argv(self) -> Sequence[str]:
        return ["sh", "-c", "echo collecting; sleep 0.3; echo 'counter vanished' >&2; exit 7"]


@hookimpl
def pbench_tool_specs() -> Sequence[ToolSpec]:
    return [
        ToolSpec(
            name="failstart", kind="transient", summary="fails at start", factory=FailsToStart
        ),
        ToolSpec(
            name="dies", kind="transient", summary="dies during the sample", factory=DiesMidSample
        ),
        ToolSpec(
            name="needsmissing",
            kind="transient",
            summary="needs a missing program",
            factory=FailsToStart,
            programs={"pbench-no-such-program": "pbench-imaginary-package"},
        ),
    ]
