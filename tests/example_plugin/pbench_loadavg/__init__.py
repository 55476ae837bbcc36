"""``loadavg``: records /proc/loadavg at an interval, and writes a CSV.

The smallest useful tool plugin: one :class:`~pbench_runner.commandtool.CommandTool`
(a shell loop, started at start-tools and stopped by a signal at stop-tools),
a ``postprocess`` that turns its raw output into ``loadavg.csv``, and the
``pbench_tool_specs`` hook that declares it.  Its entry point in
``pyproject.toml`` is all pbench_runner needs to find it.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import datetime, timezone

from pbench_runner import hookimpl
from pbench_runner.commandtool import CommandTool
from pbench_runner.tools import ToolOption, ToolSpec, positive_int


class LoadAvg(CommandTool):
    def argv(self) -> Sequence[str]:
        # one line per interval: "<epoch seconds> <1 min> <5 min> <15 min> ..."
        loop = f'while :; do echo "$(date +%s) $(cat /proc/loadavg)"; sleep {self.interval()}; done'
        return ["sh", "-c", loop]

    def postprocess(self) -> None:
        csv_path = self.ctx.outdir / "loadavg.csv"
        with open(self.stdout_path) as raw, open(csv_path, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["timestamp", "load1", "load5", "load15"])  # as every tool's CSV
            for line in raw:
                words = line.split()
                if line.endswith("\n") and len(words) >= 4:  # a last line cut short is dropped
                    when = datetime.fromtimestamp(int(words[0]), timezone.utc)
                    writer.writerow([when.isoformat(), *words[1:4]])


@hookimpl
def pbench_tool_specs() -> Sequence[ToolSpec]:
    return [
        ToolSpec(
            name="loadavg",
            kind="transient",
            summary="the load averages of /proc/loadavg (example plugin)",
            factory=LoadAvg,
            programs={"sh": "dash"},
            options=[ToolOption("interval", positive_int, 1, "seconds between records")],
        )
    ]
