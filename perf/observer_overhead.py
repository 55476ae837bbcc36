"""Observer overhead: what the meister and its tools cost a host while idle.

    python perf/observer_overhead.py [--seconds 60] [--sets light,pcp,node_exporter]

For each tool set, one local session is started, the tools are started, and
for ``--seconds`` nothing else happens (an idle sample).  Meanwhile the CPU
time and resident memory of the meister alone, and of the meister plus every
process it started (the host's tools: vmstat, pmcd, node_exporter), are read
from /proc every second.  The sink's collectors (pmlogger, Prometheus) run on
the controller and are reported apart.  CPU is given in % of one core.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from pbench_runner.controller import Controller
from pbench_runner.toolstore import HostTools, ToolGroup, local_hostname

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
SETS = {
    "light": {"vmstat": {"interval": 3}},
    "pcp": {"pcp": {"interval": 3}},
    "node_exporter": {"node_exporter": {"interval": 3}},
}


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cpu_rss(pid: int) -> tuple[float, int]:
    """CPU seconds (user + system) and resident bytes of one process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0
    return (int(fields[11]) + int(fields[12])) / TICK, int(fields[21]) * PAGE


class Watch(threading.Thread):
    """Samples a process tree every second: CPU seconds used, peak RSS."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.stop_event = threading.Event()
        self.cpu: dict[int, float] = {}
        self.peak_root = self.peak_tree = 0
        self.first: dict[int, float] = {}

    def run(self) -> None:
        while not self.stop_event.wait(1.0):
            self.sample()

    def sample(self) -> None:
        tree_rss = 0
        for pid in [self.root, *_children(self.root)]:
            cpu, rss = _cpu_rss(pid)
            self.first.setdefault(pid, cpu)
            self.cpu[pid] = cpu
            tree_rss += rss
            if pid == self.root:
                self.peak_root = max(self.peak_root, rss)
        self.peak_tree = max(self.peak_tree, tree_rss)

    def used(self, root_only: bool) -> float:
        pids = [self.root] if root_only else list(self.cpu)
        return sum(self.cpu[p] - self.first[p] for p in pids if p in self.cpu)


def measure(name: str, seconds: float) -> dict[str, float]:
    host = local_hostname()
    group = ToolGroup("default", {host: HostTools(tools=SETS[name])})
    tmp = tempfile.mkdtemp(prefix="pbench-overhead-")
    try:
        with Controller(group, Path(tmp) / "tm") as ctl:
            sample = Path(tmp) / "sample1"
            ctl.run_action("start", sample)
            meister, sink = Watch(ctl.pids[host]), Watch(ctl.pids["tds"])
            for watch in (meister, sink):
                watch.sample()
                watch.start()
            began = time.monotonic()
            time.sleep(seconds)
            for watch in (meister, sink):
                watch.sample()
                watch.stop_event.set()
            elapsed = time.monotonic() - began
            ctl.run_action("stop", sample)
            ctl.run_action("send", sample)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # made by mkdtemp above: never anything else
    return {
        "meister_cpu_pct": 100 * meister.used(True) / elapsed,
        "meister_rss_mib": meister.peak_root / 2**20,
        "host_cpu_pct": 100 * meister.used(False) / elapsed,
        "host_rss_mib": meister.peak_tree / 2**20,
        "collectors_cpu_pct": 100 * (sink.used(False) - sink.used(True)) / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sets", default=",".join(SETS))
    args = parser.parse_args()
    print(f"idle sample of {args.seconds:g} s; CPU in % of one core")
    print(
        f"{'tool set':<14} {'meister CPU':>11} {'meister RSS':>12} "
        f"{'host CPU':>9} {'host RSS':>9} {'sink collectors CPU':>20}"
    )
    for name in args.sets.split(","):
        r = measure(name, args.seconds)
        print(
            f"{name:<14} {r['meister_cpu_pct']:>10.2f}% {r['meister_rss_mib']:>8.1f} MiB "
            f"{r['host_cpu_pct']:>8.2f}% {r['host_rss_mib']:>5.1f} MiB "
            f"{r['collectors_cpu_pct']:>19.2f}%",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
