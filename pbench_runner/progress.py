"""What ``pbench run`` shows while it runs: benchmark, sample, tool phase.

On a terminal, a rich progress bar on stderr counts the samples of the whole
run and names the benchmark, the sample and what is happening now
(start-tools, running, stop-tools, send-tools); it disappears at the end,
leaving pytest's report and pbench's summary.  Elsewhere (CI logs), one
plain line per finished sample is written instead, with its wall time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from pbench_runner.timing import fmt_time


class RunProgress:
    """Progress of one run; every method is cheap and safe to call when disabled.

    ``suspend`` gives a context in which the real stderr is reachable (pytest
    captures it while a benchmark runs); all output happens inside it, and the
    display is refreshed by hand rather than from a thread of rich's.
    """

    def __init__(
        self,
        enabled: bool = True,
        stream: IO[str] | None = None,
        suspend: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        line: Callable[[str], None] | None = None,
    ) -> None:
        """``line`` writes one line of its own off a terminal (pytest's reporter,
        so that a CI log never has a sample's line in the middle of pytest's dots)."""
        self.line = line
        # With no stream, rich looks sys.stderr up at every write: inside
        # ``suspend`` that is the real one.
        self.console = Console(file=stream) if stream else Console(stderr=True)
        self.enabled = enabled
        self.suspend = suspend
        self.progress: Progress | None = None
        self.task: Any = None
        self.label = ""
        self.live = False

    def begin(self, total_samples: int) -> None:
        if not self.enabled:
            return
        with self.suspend():
            if not self.console.is_terminal:
                return
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
            auto_refresh=False,
        )
        self.task = self.progress.add_task("", total=total_samples)

    def sample(self, benchmark: str, kind: str, number: int, of: int) -> None:
        """A sample (or warm-up run) of ``benchmark`` begins; on a terminal the bar
        shows from a benchmark's first sample to its last (see :meth:`pause`)."""
        self.label = f"{benchmark} {kind} {number}/{of}"
        if self.progress is not None and not self.live:
            with self.suspend():
                if self.line is not None:
                    self.line("")  # ends pytest's line of the file, which stays whole
                self.progress.start()
            self.live = True
        self.phase("start-tools")

    def pause(self) -> None:
        """A benchmark is done: the bar goes (its line cleared) until the next one,
        so that pytest's own progress is written where pytest expects it."""
        if self.progress is not None and self.live:
            with self.suspend():
                self.progress.stop()
            self.live = False

    def phase(self, what: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, description=f"{self.label} · {what}")
            with self.suspend():
                self.progress.refresh()

    def sample_done(self, status: str, wall_s: float, counted: bool = True) -> None:
        if self.progress is not None:
            if counted:
                self.progress.advance(self.task)
            with self.suspend():
                self.progress.refresh()
        elif self.enabled:
            text = f"pbench: {self.label}: {status}, {fmt_time(wall_s)}"
            if self.line is not None:  # a line of its own among pytest's output
                with self.suspend():
                    self.line(text)
                return
            with self.suspend():
                self.console.print(text, highlight=False, soft_wrap=True)

    def end(self) -> None:
        self.pause()
        self.progress = None
