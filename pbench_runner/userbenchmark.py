"""``pbench user-benchmark``: the whole sequence diagram around one command.

tool-meister-start → sysinfo (beg) → for every sample: start-tools → the
command → stop-tools → send-tools → sysinfo (end) → tool-meister-stop, all
through the one run protocol (:mod:`pbench_runner.run`) that ``pbench run``
follows too.  Tools are always stopped and their data sent, whatever happened
to the command; an interrupted run keeps what it collected.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from pbench_runner import procs
from pbench_runner.benchreport import summary_lines
from pbench_runner.errors import PbenchError, UsageError
from pbench_runner.interrupts import interruptible
from pbench_runner.records import SampleRecord
from pbench_runner.run import Run, RunOptions

SCRIPT = "pbench-user-benchmark"
ITERATION = "1-default"


@dataclass
class Options:
    """The run (as every verb sets one up), the command, and how many samples."""

    run: RunOptions
    command: Sequence[str]
    samples: int = 1


def run_command(command: Sequence[str], record: SampleRecord, echo: IO[str]) -> None:
    """Run the user's command as one sample; its output is kept and echoed.

    The sample ends when the command exits; whatever it left running in its
    process group (background children) is stopped then, so that it neither
    outlives the run nor stretches the sample.
    """
    sample_dir = record.directory
    (sample_dir / "command.txt").write_text(" ".join(command) + "\n")
    record.command = list(command)
    cpu0 = _children_cpu()
    out = open(sample_dir / "output.txt", "wb")  # noqa: SIM115  (closed below on every path)
    try:
        began = time.perf_counter()
        try:
            proc = procs.spawn(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=None
            )
        except OSError as exc:
            raise UsageError(f"cannot run the benchmark command {command[0]!r}: {exc}") from exc
        assert proc.stdout is not None
        tee = threading.Thread(target=_tee, args=(proc.stdout, out, echo), daemon=True)
        tee.start()
        try:
            status = proc.wait()
            record.wall_s = round(time.perf_counter() - began, 9)
        finally:
            procs.stop(proc, timeout=3)  # its leftovers, or itself when interrupted
            tee.join(timeout=5)
    finally:
        out.close()
    record.exit_status = status
    # the command is the workload: its CPU time is the sample's, and its children's
    record.cpu_s = record.children_cpu_s = round(_children_cpu() - cpu0, 6)
    if status != 0:
        record.status = f"failed: the command exited with status {status}"
    record.write()  # now: kept even if stopping the tools is interrupted


def _tee(source: IO[bytes], out: IO[bytes], echo: IO[str]) -> None:
    for line in iter(source.readline, b""):
        out.write(line)
        echo.write(line.decode(errors="replace"))
        echo.flush()


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class UserBenchmark:
    """One run of ``pbench user-benchmark``."""

    def __init__(self, opts: Options, err: IO[str] = sys.stderr, out: IO[str] = sys.stdout) -> None:
        self.opts = opts
        self.err, self.out = err, out
        self.run_ = Run(opts.run, say=self.say)

    def _samples(self, run: Run) -> None:
        iteration = run.iteration(ITERATION, command=list(self.opts.command))
        for n in range(1, self.opts.samples + 1):
            self.say(f"sample {n}/{self.opts.samples}")
            with run.sample(iteration, n) as record:
                run_command(self.opts.command, record, self.out)
            if record.exit_status:
                run.workload_status = record.exit_status
                self.say(f"sample {n}: the command exited with status {record.exit_status}")
            if run.host_lost:  # --on-host-failure=abort: no sample runs without it
                self.say("a host was lost: the run stops")
                return

    def say(self, text: str) -> None:
        print(f"pbench: {text}", file=self.err, flush=True)

    def run(self) -> int:
        run = self.run_
        with interruptible():
            try:
                run.open()  # a failure here closes the run, its records saying why
            except PbenchError:
                pass
            else:
                with run:
                    self._samples(run)

        for line in summary_lines(it.to_json() for it in run.iterations):
            self.say(line)
        for problem in run.problems:
            self.say(problem)
        if run.meta is not None:  # it was made
            print(f"Result directory: {run.result_dir}", file=self.out, flush=True)
        return run.exit_status
