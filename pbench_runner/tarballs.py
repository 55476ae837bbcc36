"""Tarballs of tool data: built by meisters, checked and unpacked by the sink."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path
from typing import IO, BinaryIO

CHUNK = 1 << 20


class UnsafeTarball(Exception):
    """A tarball holds a member that would land outside its directory."""


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.md5 = hashlib.md5()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.md5.update(data)
        self.size += len(data)
        return self.raw.write(data)


def pack(source: Path, target: Path) -> tuple[str, int]:
    """Tar every file under ``source`` (paths relative to it) into ``target``.

    Returns the tarball's MD5 (hex) and size, computed while writing.
    """
    with open(target, "wb") as raw:
        writer = _HashingWriter(raw)
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            if source.is_dir():
                for path in sorted(source.rglob("*")):
                    tar.add(path, arcname=str(path.relative_to(source)), recursive=False)
    return writer.md5.hexdigest(), writer.size


def md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def receive(stream: IO[bytes], target: Path, length: int | None) -> tuple[str, int]:
    """Copy a request body to ``target`` in chunks, hashing as it goes."""
    digest = hashlib.md5()
    size = 0
    with open(target, "wb") as out:
        while length is None or size < length:
            want = CHUNK if length is None else min(CHUNK, length - size)
            chunk = stream.read(want)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_members(tar: tarfile.TarFile, dest: Path) -> None:
    """Raise :class:`UnsafeTarball` naming the first member that is not safe.

    Safe means what ``tarfile``'s ``data`` filter allows (no ``..``, no link
    pointing outside ``dest``, no device or FIFO), and no absolute name at all.
    """
    for member in tar.getmembers():
        if member.name.startswith("/") or (member.islnk() and member.linkname.startswith("/")):
            # The data filter would quietly make these relative; we refuse them.
            raise UnsafeTarball(f"member {member.name!r}: absolute path")
        try:
            tarfile.data_filter(member, str(dest))
        except tarfile.FilterError as exc:
            raise UnsafeTarball(f"member {member.name!r}: {exc}") from exc


def unpack(tarball: Path, dest: Path) -> int:
    """Check every member, then extract all into ``dest``; returns the member count.

    Nothing is written when any member is unsafe.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball, mode="r:*") as tar:
            check_members(tar, dest)
            tar.extractall(dest, filter="data")
            return len(tar.getmembers())
    except tarfile.TarError as exc:
        raise UnsafeTarball(f"not a readable tarball: {exc}") from exc
