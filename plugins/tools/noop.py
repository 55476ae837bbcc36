"""``noop``: a tool that does nothing; for measuring the lifecycle's own cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pbench_runner import hookimpl
from pbench_runner.tools import ToolContext, ToolSpec


class NoopTool:
    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def start(self) -> Mapping[str, Any] | None:
        return None

    def stop(self) -> None:
        return None

    def postprocess(self) -> None:
        return None


@hookimpl
def pbench_tool_specs() -> Sequence[ToolSpec]:
    return [
        ToolSpec(
            name="noop",
            kind="transient",
            summary="does nothing; measures the cost of the tool lifecycle itself",
            factory=NoopTool,
        )
    ]
