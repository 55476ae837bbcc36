"""The real results server as its own process, and result directories to upload to it."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from pbench_runner import results
from pbench_runner.server.process import running_server


@dataclass
class ResultsServer:
    url: str
    data_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def token(self, user: str) -> str:
        return make_token(self.data_dir, user)

    def put(
        self,
        tarball: Path,
        token: str | None,
        md5: str | None = None,
        name: str | None = None,
        **params: str,
    ) -> requests.Response:
        headers = {"Content-MD5": md5 or results_md5(tarball)}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        with open(tarball, "rb") as body:
            return requests.put(
                f"{self.url}/api/v1/upload/{name or tarball.name}",
                data=body,
                headers=headers,
                params=params,
                timeout=60,
            )

    def get(self, path: str, token: str | None = None, **params: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.get(f"{self.url}{path}", headers=headers, params=params, timeout=30)

    def leftovers(self) -> list[Path]:
        """Files an upload left in ``incoming/`` (there should be none between uploads)."""
        found: list[Path] = []
        for top, dirs, files in os.walk(self.data_dir / "incoming"):  # tolerates removals
            found += [Path(top, name) for name in dirs + files]
        return sorted(found)


def make_token(data_dir: Path, user: str) -> str:
    """A new token from ``pbench server token create`` (its last line)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pbench_runner",
            "server",
            "token",
            "create",
            "--user",
            user,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def results_md5(path: Path) -> str:
    from pbench_runner.tarballs import md5_file

    return md5_file(path)


@contextlib.contextmanager
def results_server(base: Path, *options: str) -> Iterator[ResultsServer]:
    """``pbench server --port 0`` on 127.0.0.1; stopped (and checked gone) at the end."""
    data_dir = base / "server-data"
    with running_server(data_dir, base / "server.log", *options) as srv:
        yield ResultsServer(srv.url, data_dir, srv.log, srv.proc)


def make_result(
    parent: Path,
    name: str,
    *,
    config: str = "cfg",
    script: str = "pbench-user-benchmark",
    durations: tuple[float, ...] = (1.0, 1.1, 0.9),
    host: str = "node1",
    date: str = "2026-11-20T10:00:00",
    with_metadata: bool = True,
) -> Path:
    """A result directory laid out as ``pbench user-benchmark`` writes it, with vmstat data."""
    root = parent / name
    start = dt.datetime.fromisoformat(date)
    samples = []
    for n, seconds in enumerate(durations, 1):
        sample = root / "1-default" / f"sample{n}"
        vmstat = sample / "tools-default" / host / "vmstat"
        vmstat.mkdir(parents=True)
        rows = ["timestamp,r,b,free,us,sy,id,wa"]
        for k in range(5):
            when = start + dt.timedelta(seconds=10 * n + k)
            rows.append(f"{when.isoformat()}+00:00,1,0,1000,{10 + 5 * k},{k},{88 - 6 * k},0")
        (vmstat / "vmstat.csv").write_text("\n".join(rows) + "\n")
        result = {"exit_status": 0, "wall_s": seconds, "cpu_s": seconds / 10}
        (sample / "result.json").write_text(json.dumps(result))
        samples.append({"sample": n, **result})
    sysinfo = root / "sysinfo" / "beg" / host
    (sysinfo / "kernel").mkdir(parents=True)
    (sysinfo / "kernel" / "uname.txt").write_text("Linux node1 6.1.0 x86_64\n")
    (sysinfo / "sysinfo.json").write_text(json.dumps({"kernel": {"ok": True, "seconds": 0.01}}))
    if with_metadata:
        meta = {
            "pbench": {"name": name, "script": script, "config": config, "date": date},
            "controller": {"hostname": "ctl1"},
            "run": {"start_run": date, "end_run": date, "status": "ok"},
            "tools": {"group": "default", "hosts": {host: {"labels": [], "tools": {"vmstat": {}}}}},
            "iterations": [{"name": "1-default", "user_script": "sleep 1", "samples": samples}],
        }
        (root / "metadata.json").write_text(json.dumps(meta))
        (root / "metadata.log").write_text(f"[pbench]\nname = {name}\n")
    return root


def tarball_of(result_dir: Path, where: Path) -> Path:
    """``<name>.tar.xz`` made by the client's own packer."""
    target = where / f"{result_dir.name}.tar.xz"
    results.pack(result_dir, target)
    return target
