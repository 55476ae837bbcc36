"""Sink ingest: PUT a 1 GiB tarball to a real Tool Data Sink.

Reports the throughput as a ratio to ``md5sum`` reading the same file on this
machine (both from the page cache), and the sink's peak RSS (VmHWM).

    python perf/sink_ingest.py [--size-mib 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from _common import TOKEN, StandaloneSink, against_md5sum, md5sum_seconds, peak_rss_mib

from pbench_runner.redisserver import RedisServer
from pbench_runner.tarballs import md5_file
from pbench_runner.upload import put_tarball


def make_tarball(base: Path, size_mib: int) -> Path:
    payload = base / "payload.bin"
    block = os.urandom(1 << 20)
    with open(payload, "wb") as fh:
        for _ in range(size_mib):
            fh.write(block)
    tarball = base / "data.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(payload, arcname="tool/payload.bin")
    payload.unlink()
    return tarball


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default="/var/tmp", help="where the tarball and the result go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbench-ingest-", dir=args.dir) as tmp:
        base = Path(tmp)
        tarball = make_tarball(base, args.size_mib)
        size = tarball.stat().st_size
        md5 = md5_file(tarball)
        md5sum_s = md5sum_seconds(tarball, args.repeat)
        with RedisServer(base / "tm") as server, StandaloneSink(server, "h1") as sink:
            put_s = []
            for n in range(1, args.repeat + 1):
                action, url = sink.send(base / f"s{n}")
                t0 = time.perf_counter()
                put_tarball(url, tarball, md5, TOKEN)
                put_s.append(time.perf_counter() - t0)
                sink.answered(action)
                subprocess.run(["rm", "-rf", str(base / f"s{n}")], check=True)
            rss = peak_rss_mib(sink.proc.pid)
    figures = against_md5sum(size, md5sum_s, put_s, "put")
    print(
        json.dumps({"benchmark": "sink_ingest", **figures, "sink_peak_rss_mib": round(rss, 1)}),
        flush=True,
    )


if __name__ == "__main__":
    main()
