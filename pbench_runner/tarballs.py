"""Tarballs of tool data: built by meisters, checked and unpacked by the sink."""

from __future__ import annotations

import hashlib
import io
import queue
import tarfile
import threading
from pathlib import Path
from typing import IO, BinaryIO

CHUNK = 1 << 20


class UnsafeTarball(Exception):
    """A tarball holds a member that would land outside its directory."""


class HashingWriter(io.RawIOBase):
    """Writes to ``raw``, keeping the MD5 and the size of what passed through."""

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
        writer = HashingWriter(raw)
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


class HashingReader:
    """Reads at most ``length`` bytes of ``stream``, hashing what passes through.

    The hashing runs in a helper thread (hashlib releases the GIL), so it
    overlaps with whatever the consumer does with the data (unpacking,
    writing).  ``hexdigest()`` waits for it to finish.
    """

    def __init__(self, stream: IO[bytes], length: int | None) -> None:
        self.stream = stream
        self.remaining = length
        self.size = 0
        self._md5 = hashlib.md5()
        # A few chunks in flight: enough to overlap, little enough for flat memory.
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._closed = False
        self._hasher = threading.Thread(target=self._hash, name="md5", daemon=True)
        self._hasher.start()

    def _hash(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._md5.update(chunk)

    def read(self, size: int = -1) -> bytes:
        want = CHUNK if size is None or size < 0 else size
        if self.remaining is not None:
            want = min(want, self.remaining)
        if want <= 0:
            return b""
        data = self.stream.read(want)
        if data:
            self._chunks.put(data)
            self.size += len(data)
            if self.remaining is not None:
                self.remaining -= len(data)
        return data

    def drain(self) -> None:
        """Read (and hash) whatever the tar reader left, such as end padding."""
        while self.read(CHUNK):
            pass

    def close(self) -> None:
        """Let the hashing thread finish; safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._chunks.put(None)
            self._hasher.join()

    def hexdigest(self) -> str:
        """The MD5 of everything read (reading ends here)."""
        self.close()
        return self._md5.hexdigest()


def check_member(member: tarfile.TarInfo, dest: Path) -> None:
    if member.name.startswith("/") or (member.islnk() and member.linkname.startswith("/")):
        # The data filter would quietly make these relative; we refuse them.
        raise UnsafeTarball(f"member {member.name!r}: absolute path")
    try:
        tarfile.data_filter(member, str(dest))
    except tarfile.FilterError as exc:
        raise UnsafeTarball(f"member {member.name!r}: {exc}") from exc


def unpack_stream(reader: HashingReader, dest: Path) -> int:
    """Extract a tar stream into ``dest`` member by member, checking each first.

    Reads the stream to its end (so the MD5 covers every byte).  Raises
    :class:`UnsafeTarball` at the first unsafe member; the caller discards
    ``dest``, which must be a staging directory.
    """
    dest.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with tarfile.open(fileobj=reader, mode="r|*", bufsize=CHUNK) as tar:  # type: ignore[call-overload]
            tar.copybufsize = CHUNK
            for member in tar:
                check_member(member, dest)
                tar.extract(member, dest, filter="data")
                count += 1
    except tarfile.TarError as exc:
        raise UnsafeTarball(f"not a readable tarball: {exc}") from exc
    reader.drain()
    return count
