"""The results server: a 1 GiB upload, and listing 10,000 datasets.

Upload: ``pbench copy-results``' own upload code PUTs a 1 GiB result tarball
to a real ``pbench server`` on 127.0.0.1; the figure is the throughput as a
ratio to ``md5sum`` reading the same file (both from the page cache), and the
server's peak RSS (VmHWM).  The server hashes, writes and reads the tarball
for its index while it arrives.

Listing: 10,000 datasets are added to an index through the storage layer
(as uploads would add them, without sending 10,000 tarballs), then the
server answers ``GET /api/v1/datasets`` (a page of 100, and all 10,000),
a text search, and the web page's first page of 50; medians of the
response times.

The 1 GiB payload is random bytes, which xz cannot compress; xz itself
would store it as uncompressed LZMA2 chunks after minutes of trying, so
this script writes those chunks directly (a valid .xz file, checked by
the server like any other).

    python perf/results_server.py [--size-mib 1024] [--repeat 3] [--datasets 10000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import struct
import tarfile
import tempfile
import time
import zlib
from pathlib import Path
from typing import IO

import requests
from _common import against_md5sum, md5sum_seconds, peak_rss_mib

from pbench_runner import results
from pbench_runner.server.app import open_index
from pbench_runner.server.auth import create_token
from pbench_runner.server.process import running_server
from pbench_runner.server.storage import Dataset, SQLiteIndex, now
from pbench_runner.tarballs import md5_file


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class StoredXZ(io.RawIOBase):
    """An .xz stream of one block of uncompressed LZMA2 chunks, CRC32 checked."""

    CHUNK = 1 << 16
    FLAGS = b"\x00\x01"  # check: CRC32

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.pending = bytearray()
        self.first = True
        self.crc = 0
        self.size = 0
        self.packed = 0
        raw.write(b"\xfd7zXZ\x00" + self.FLAGS + struct.pack("<I", zlib.crc32(self.FLAGS)))
        # header size byte, block flags (one filter), LZMA2 (0x21) with a 1-byte property
        header = bytes([2]) + b"\x00\x21\x01\x16" + b"\x00" * 3
        raw.write(header + struct.pack("<I", zlib.crc32(header)))

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.pending += data
        while len(self.pending) >= self.CHUNK:
            self._chunk(bytes(self.pending[: self.CHUNK]))
            del self.pending[: self.CHUNK]
        return len(data)

    def _chunk(self, data: bytes) -> None:
        control = 1 if self.first else 2
        self.first = False
        self.raw.write(bytes([control]) + struct.pack(">H", len(data) - 1) + data)
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self.packed += 3 + len(data)

    def close(self) -> None:
        if self.closed:
            return
        if self.pending:
            self._chunk(bytes(self.pending))
        self.raw.write(b"\x00")
        self.packed += 1
        self.raw.write(b"\x00" * (-self.packed % 4) + struct.pack("<I", self.crc))
        index = b"\x00" + _varint(1) + _varint(12 + self.packed + 4) + _varint(self.size)
        index += b"\x00" * (-len(index) % 4)
        index += struct.pack("<I", zlib.crc32(index))
        backward = struct.pack("<I", len(index) // 4 - 1)
        self.raw.write(index)
        self.raw.write(struct.pack("<I", zlib.crc32(backward + self.FLAGS)) + backward)
        self.raw.write(self.FLAGS + b"YZ")
        super().close()


class RandomBytes(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        n = self.left if size < 0 else min(size, self.left)
        self.left -= n
        return os.urandom(n)


def metadata(name: str, n: int = 0) -> dict[str, object]:
    date = f"2026-{1 + n % 12:02d}-{1 + n % 28:02d}T{n % 24:02d}:00:00"
    return {
        "pbench": {"name": name, "script": "pbench-user-benchmark", "config": f"cfg{n % 7}"},
        "controller": {"hostname": f"ctl{n % 5}"},
        "run": {"start_run": date, "end_run": date, "status": "ok"},
        "tools": {"group": "default", "hosts": {"node1": {"labels": [], "tools": {"sar": {}}}}},
        "iterations": [{"name": "1-default", "user_script": "fio", "samples": []}],
    }


def make_tarball(base: Path, name: str, size_mib: int) -> Path:
    target = base / f"{name}.tar.xz"
    meta = json.dumps(metadata(name)).encode()
    with open(target, "wb") as raw:
        xz = StoredXZ(raw)
        with tarfile.open(fileobj=xz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"{name}/metadata.json")
            info.size = len(meta)
            tar.addfile(info, io.BytesIO(meta))
            info = tarfile.TarInfo(f"{name}/1-default/sample1/payload.bin")
            info.size = size_mib << 20
            tar.addfile(info, RandomBytes(info.size))
        xz.close()
    return target


def token(data_dir: Path, user: str) -> str:
    return create_token(open_index(data_dir), user)


def bench_upload(base: Path, size_mib: int, repeat: int) -> dict[str, object]:
    tarball = make_tarball(base, "pbench-user-benchmark_upload_2026.11.28T00.00.00", size_mib)
    size = tarball.stat().st_size
    md5 = md5_file(tarball)
    md5sum_s = md5sum_seconds(tarball, repeat)
    data_dir = base / "upload-data"
    tok = token(data_dir, "perf")
    put_s = []
    with running_server(data_dir, data_dir.with_suffix(".log")) as srv:
        settings = results.ServerSettings(srv.url, tok)
        for _ in range(repeat):
            t0 = time.perf_counter()
            answer = results.upload(settings, tarball, md5)
            put_s.append(time.perf_counter() - t0)
            assert answer["status"] == 201, answer
            gone = requests.delete(
                f"{srv.url}/api/v1/datasets/{md5}",
                headers={"Authorization": f"Bearer {tok}"},
                timeout=60,
            )
            assert gone.status_code == 200, gone.text
        rss = peak_rss_mib(srv.proc.pid)
    tarball.unlink()
    return {
        "benchmark": "results_upload",
        **against_md5sum(size, md5sum_s, put_s, "upload"),
        "server_peak_rss_mib": round(rss, 1),
    }


def _doc(n: int) -> dict[str, object]:
    values = [1.0 + (n % 10) / 100, 1.01, 0.99]
    return {
        "metadata": metadata(f"run{n}", n),
        "iterations": [
            {
                "name": "1-default",
                "nodeid": "1-default",
                "status": "ok",
                "metrics": {"wall_s": {"unit": "s", "higher_is_better": False, "values": values}},
                "hosts": {},
            }
        ],
        "sysinfo": {},
        "series": {},
        "files": [["metadata.json", 900]],
    }


def fill(index: SQLiteIndex, count: int) -> None:
    index.add_many(_dataset(n) for n in range(count))


def _dataset(n: int) -> Dataset:
    meta = metadata(f"run{n}", n)
    return Dataset(
        id=f"{n:032x}",
        name=f"pbench-user-benchmark_cfg{n % 7}_{n:05d}",
        owner=f"user{n % 20}",
        access="public",
        controller=f"ctl{n % 5}",
        config=f"cfg{n % 7}",
        benchmark="pbench-user-benchmark",
        date=str(meta["run"]["start_run"]),  # type: ignore[index]
        status="ok",
        size=100_000 + n,
        uploaded=now(),
        hosts=["node1"],
        tools=["sar"],
        doc=_doc(n),
    )


def median_ms(url: str, times: int) -> float:
    took = []
    with requests.Session() as http:
        http.get(url, timeout=60).raise_for_status()  # warm
        for _ in range(times):
            t0 = time.perf_counter()
            resp = http.get(url, timeout=60)
            took.append(time.perf_counter() - t0)
            resp.raise_for_status()
    return round(statistics.median(took) * 1000, 1)


def bench_listing(base: Path, count: int) -> dict[str, object]:
    data_dir = base / "list-data"
    data_dir.mkdir()
    t0 = time.perf_counter()
    fill(SQLiteIndex(data_dir / "index.sqlite"), count)
    fill_s = time.perf_counter() - t0
    with running_server(data_dir, data_dir.with_suffix(".log")) as srv:
        total = requests.get(f"{srv.url}/api/v1/datasets", timeout=60).json()["total"]
        assert total == count, total
        return {
            "benchmark": "results_listing",
            "datasets": count,
            "index_fill_s": round(fill_s, 1),
            "api_page_of_100_ms": median_ms(f"{srv.url}/api/v1/datasets", 20),
            "api_all_10000_ms": median_ms(f"{srv.url}/api/v1/datasets?limit={count}", 5),
            "api_text_search_ms": median_ms(f"{srv.url}/api/v1/datasets?q=cfg3+ctl2", 20),
            "web_page_of_50_ms": median_ms(f"{srv.url}/", 20),
            "web_page_200_ms": median_ms(f"{srv.url}/?page_no=150", 20),
            "server_peak_rss_mib": round(peak_rss_mib(srv.proc.pid), 1),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--datasets", type=int, default=10000)
    parser.add_argument("--dir", default="/var/tmp", help="where the tarball and the data go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pbench-results-perf-", dir=args.dir) as tmp:
        print(json.dumps(bench_upload(Path(tmp), args.size_mib, args.repeat)), flush=True)
        print(json.dumps(bench_listing(Path(tmp), args.datasets)), flush=True)


if __name__ == "__main__":
    main()
