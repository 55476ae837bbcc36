"""Helpers shared by the benchmark scripts in perf/."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pbench_runner import bus, procs


def timed_pbench(env: dict[str, str], *args: str, cwd: Path | None = None) -> float:
    """Wall seconds of one ``pbench`` command (its output discarded; it must succeed)."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pbench_runner", *args],
        env=env,
        cwd=cwd,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - t0


def peak_rss_mib(pid: int) -> float:
    """A live process's peak resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def md5sum_seconds(path: Path, repeat: int) -> list[float]:
    """Wall seconds of ``md5sum`` reading ``path``, ``repeat`` times: the yardstick."""
    seconds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(["md5sum", str(path)], check=True, capture_output=True)
        seconds.append(time.perf_counter() - t0)
    return seconds


def against_md5sum(
    size: int, md5sum_s: list[float], took_s: list[float], what: str
) -> dict[str, Any]:
    """Medians of a transfer of ``size`` bytes, and its ratio to md5sum of the same file."""
    md5_med, med = statistics.median(md5sum_s), statistics.median(took_s)
    return {
        "bytes": size,
        "md5sum_median_s": round(md5_med, 3),
        f"{what}_median_s": round(med, 3),
        f"{what}_MiB_per_s": round(size / med / 2**20, 1),
        "ratio_to_md5sum": round(md5_med / med, 3),
    }


#: the per-run token a StandaloneSink accepts
TOKEN = "t"


class StandaloneSink:
    """A real Tool Data Sink for one pretend host and no meister.

    A benchmark plays the host: :meth:`send` publishes a send action and
    returns the URL to PUT to; :meth:`answered` reports the host done.
    """

    def __init__(self, server: Any, host: str, bind: str = "127.0.0.1") -> None:
        self.host = host
        self.keys = bus.Keys(bus.new_run_id())
        self.client = server.client()
        self.client.set(
            self.keys.sink_config,
            json.dumps({"run_id": self.keys.run_id, "hosts": [host], "token": TOKEN, "bind": bind}),
        )
        self.client.set(self.keys.alive(host), "1", ex=3600)
        env = {**os.environ, bus.PASSWORD_ENV: server.password, bus.RUN_ID_ENV: self.keys.run_id}
        argv = ["-m", "pbench_runner.sink", "--redis", server.url, "--run-id", self.keys.run_id]
        self.proc = procs.spawn([sys.executable, *argv], env=env)
        self.seq = 0
        self.url = ""

    def __enter__(self) -> StandaloneSink:
        try:
            if not procs.wait_until(lambda: self.client.hexists(self.keys.ready, bus.SINK), 20):
                raise RuntimeError("the sink did not report ready within 20 s")
            ready = json.loads(self.client.hget(self.keys.ready, bus.SINK))
            self.url = str(ready["info"]["url"])
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        procs.stop(self.proc)
        self.client.close()

    def send(self, directory: Path, base_url: str = "") -> tuple[Any, str]:
        """Publish a send action into ``directory``; (the action, the URL to PUT to)."""
        self.seq += 1
        action = bus.Action(
            id=f"{self.seq}-{secrets.token_hex(3)}",
            seq=self.seq,
            action="send",
            group="g",
            directory=str(directory),
            args={"timeout": 600},
        )
        self.client.set(self.keys.action, action.dumps())
        self.client.publish(self.keys.action, action.dumps())
        return action, f"{base_url or self.url}/api/v1/data/{action.id}/{self.host}"

    def answered(self, action: Any) -> None:
        """The pretend host reports the send done; wait for the sink's result."""
        report = bus.Report(action.id, self.host, "send", True)
        bus.publish_report(self.client, self.keys, report)
        procs.wait_until(lambda: self.client.exists(self.keys.result(action.id)), 30)
