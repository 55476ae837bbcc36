"""Many hosts: local meisters at lab scale, remote meisters over real SSH, PUT throughput.

1. 16, 64 and 100 meisters on this machine under distinct host names (each
   connects straight to Redis and the sink): tool-meister-start and the
   start / stop / send round trips (``noop`` tool).
2. A handful of real remote hosts (network namespaces running sshd, see
   tests/sshlab.py): tool-meister-start with the bundle copied (first run)
   and cached (later runs), the round trips, tool-meister-stop; in tunnel
   mode and in direct mode.
3. A 1 GiB tarball PUT from a remote host to the sink through the SSH tunnel,
   and directly over the lab's network.

Prints one JSON line per measurement (medians in ms, or MiB/s).  Needs root.

    python perf/remote_scale.py [--local 16,64,100] [--ssh 4,16] [--rounds 20] [--put-mib 1024]
"""

from __future__ import annotations

import argparse
import json
import secrets
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _common import TOKEN, StandaloneSink  # noqa: E402
from lifecycle import measure  # noqa: E402
from sink_ingest import make_tarball  # noqa: E402

from pbench_runner.config import Deadlines  # noqa: E402
from pbench_runner.controller import Controller  # noqa: E402
from pbench_runner.redisserver import RedisServer  # noqa: E402
from pbench_runner.remote.hosts import RemoteHosts, run  # noqa: E402
from pbench_runner.tarballs import md5_file  # noqa: E402
from pbench_runner.toolstore import HostTools, ToolGroup  # noqa: E402
from tests.sshlab import SSHLab, available  # noqa: E402


def emit(row: dict[str, object]) -> None:
    print(json.dumps(row), flush=True)


def ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1e3, 2)


def ssh_session(lab: SSHLab, mode: str, rounds: int, base: Path) -> dict[str, object]:
    hosts = list(lab.hosts)
    group = ToolGroup("default", {h: HostTools(tools={"noop": {}}) for h in hosts})
    times: dict[str, list[float]] = {"start": [], "stop": [], "send": []}
    began, cpu0 = time.perf_counter(), time.process_time()
    ctl = Controller(group, base / "tm", remote=lab.options(mode=mode)).start()
    tm_start = time.perf_counter() - began
    # the controller's own share (SSH handshakes, copies, forwards), all threads
    controller_cpu = time.process_time() - cpu0
    assert ctl.remotes is not None
    copied = sum(h.copied for h in ctl.remotes.hosts.values())
    try:
        for n in range(rounds):
            for verb in ("start", "stop", "send"):
                t0 = time.perf_counter()
                ctl.run_action(verb, base / f"sample{n}")
                times[verb].append(time.perf_counter() - t0)
    finally:
        t0 = time.perf_counter()
        ctl.stop()
        tm_stop = time.perf_counter() - t0
    return {
        "ssh_hosts": len(hosts),
        "mode": mode,
        "bundle_copied_to": copied,
        "tool_meister_start_ms": round(tm_start * 1e3, 1),
        "controller_cpu_during_start_ms": round(controller_cpu * 1e3, 1),
        "tool_meister_stop_ms": round(tm_stop * 1e3, 1),
        **{f"{v}_median_ms": ms(t) for v, t in times.items()},
    }


PUT_SCRIPT = """\
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from pbench_runner.upload import put_tarball
t0 = time.perf_counter()
put_tarball(sys.argv[2], Path(sys.argv[3]), sys.argv[4], sys.argv[5], timeout=600)
print(time.perf_counter() - t0)
"""


def put_throughput(lab: SSHLab, size_mib: int, repeat: int, base: Path) -> None:
    """PUT a tarball from remote host 'nodeA' to a real sink: tunnel, direct, loopback."""
    tarball = make_tarball(base, size_mib)
    size, md5 = tarball.stat().st_size, md5_file(tarball)
    remotes = RemoteHosts(["nodeA"], lab.options(), "put", base, Deadlines())
    remotes.connect()
    host = remotes.hosts["nodeA"]
    bundle_dir = f"{host.base}/bundles/{remotes.bundle.name}"
    try:
        redis_server = RedisServer(base / "tm", extra_binds=[lab.gateway])
        with redis_server as server, StandaloneSink(server, "nodeA", bind=lab.gateway) as sink:
            sink_addr = (lab.gateway, int(sink.url.rsplit(":", 1)[1]))
            tunneled = f"http://127.0.0.1:{host.tunnel.expose(lambda: sink_addr)}"
            for path, base_url in (("tunnel", tunneled), ("direct", sink.url)):
                seconds = []
                for _ in range(repeat):
                    directory = base / f"s{sink.seq + 1}"
                    action, url = sink.send(directory, base_url)
                    command = " ".join(
                        shlex.quote(a)
                        for a in ["python3", "-I", "-c", PUT_SCRIPT, bundle_dir, url, str(tarball),
                                  md5, TOKEN]
                    )  # fmt: skip
                    status, out, err = run(host, command, 900)
                    if status != 0:
                        raise RuntimeError(f"PUT over {path} failed: {err}")
                    seconds.append(float(out.strip()))
                    sink.answered(action)
                    # keep the disk free: drop what the sink unpacked (a path made here)
                    shutil.rmtree(directory, ignore_errors=True)
                med = statistics.median(seconds)
                emit(
                    {
                        "benchmark": "remote_put",
                        "path": path,
                        "bytes": size,
                        "put_median_s": round(med, 2),
                        "MiB_per_s": round(size / med / 2**20, 1),
                    }
                )
    finally:
        remotes.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--local", default="16,64,100")
    parser.add_argument("--ssh", default="4,16")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--put-mib", type=int, default=1024)
    parser.add_argument("--put-repeat", type=int, default=3)
    args = parser.parse_args()
    for n in [int(x) for x in args.local.split(",") if x]:
        emit({"benchmark": "local_meisters", **measure(n, args.rounds)})
    why = available()
    if why:
        print(f"remote part skipped: {why}", file=sys.stderr)
        return 0
    for n in [int(x) for x in args.ssh.split(",") if x]:
        with tempfile.TemporaryDirectory(prefix="pbench-remote-perf-", dir="/var/tmp") as tmp:
            base = Path(tmp)
            with SSHLab(base / "lab", [f"node{i:02d}" for i in range(n)]) as lab:
                for mode in ("tunnel", "tunnel", "direct"):  # cold (copy), then cached
                    session = base / f"{mode}-{secrets.token_hex(2)}"
                    emit(
                        {
                            "benchmark": "ssh_meisters",
                            **ssh_session(lab, mode, args.rounds, session),
                        }
                    )
    if args.put_mib:
        with tempfile.TemporaryDirectory(prefix="pbench-put-perf-", dir="/var/tmp") as tmp:
            base = Path(tmp)
            with SSHLab(base / "lab", ["nodeA"]) as lab:
                put_throughput(lab, args.put_mib, args.put_repeat, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
