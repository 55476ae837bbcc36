"""One upload: the body streamed to a temporary file and hashed, then moved into place.

The body is hashed as it arrives (in a helper thread, see
:class:`pbench_runner.tarballs.HashingReader`), written to a temporary file
in ``<data-dir>/incoming/``, and read as a tarball by a third thread at the
same time (:class:`Tee`), so that the body passes through memory once.
Only when the MD5 matches and the tarball reads as a result is it renamed into ``<data-dir>/datasets/`` (the same file
system, so the rename is atomic) and its row added to the index.  Whatever
goes wrong on the way, the temporary file is removed: an interrupted or
refused upload leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from pbench_runner.tarballs import CHUNK, HashingReader

#: how much of a refused body is read (and dropped) so that the client sees the answer
DRAIN_LIMIT: Final = 64 << 20


class Refused(Exception):
    """An upload the server will not take; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class Limits:
    #: the largest tarball taken (413 past it)
    max_size: int
    #: bytes the data directory's file system must keep free after an upload (else 507)
    reserve: int
    #: the most bytes unpacked from one upload to index it (else 413)
    max_unpacked: int = 256 << 20


class InProgress:
    """Names being uploaded right now: a second upload of one of them gets 409."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def hold(self, name: str) -> Iterator[None]:
        with self._lock:
            if name in self._names:
                raise Refused(409, f"{name} is being uploaded right now; try again later")
            self._names.add(name)
        try:
            yield
        finally:
            with self._lock:
                self._names.discard(name)


def drain(stream: IO[bytes], length: int | None, limit: int = DRAIN_LIMIT) -> None:
    """Read and drop a body we refuse, up to ``limit`` bytes."""
    left = min(length if length is not None else limit, limit)
    while left > 0:
        data = stream.read(min(CHUNK, left))
        if not data:
            return
        left -= len(data)


def check_room(data_dir: Path, length: int | None, limits: Limits) -> None:
    """Refuse (411, 413, 507) a body without a length, too large, or without room for it
    and for what indexing it may unpack beside it."""
    if length is None:
        raise Refused(411, "a Content-Length is required")
    if length > limits.max_size:
        raise Refused(
            413, f"the tarball is {length} bytes; this server takes at most {limits.max_size}"
        )
    free = shutil.disk_usage(data_dir).free
    unpacked = limits.max_unpacked
    if length + unpacked + limits.reserve > free:
        raise Refused(
            507,
            f"not enough space for {length} bytes (and up to {unpacked} unpacked to index "
            f"them): {free} free, {limits.reserve} kept in reserve",
        )


class Tee:
    """The body as a second stream, read by ``consume`` in its own thread.

    A few chunks are in flight at most (flat memory).  When ``consume``
    returns or fails before the end, the rest is read and dropped, so that
    the receiving side never blocks.
    """

    def __init__(self, consume: Callable[[IO[bytes]], Any]) -> None:
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._buffer = b""
        self._eof = False
        self._consume = consume
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="tarball-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.result = self._consume(self)  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the request thread by finish()
            self.error = exc
        finally:
            while not self._eof:
                self._next()

    def _next(self) -> bytes:
        chunk = self._chunks.get()
        if chunk is None:
            self._eof = True
            return b""
        return chunk

    def read(self, size: int = -1) -> bytes:
        """At most ``size`` bytes, maybe fewer (as a raw stream); b"" only at the end."""
        if not self._buffer and not self._eof:
            self._buffer = self._next()
        if size < 0 or size >= len(self._buffer):
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def feed(self, data: bytes) -> None:
        self._chunks.put(data)

    def finish(self) -> Any:
        """End the stream and wait for ``consume``: its result, or its exception raised."""
        self._chunks.put(None)
        self._thread.join()
        if self.error is not None:
            raise self.error
        return self.result


@dataclass
class Received:
    path: Path
    #: what ``consume`` made of the body
    contents: Any


@contextlib.contextmanager
def receive(
    stream: IO[bytes],
    length: int,
    expected_md5: str,
    incoming: Path,
    consume: Callable[[IO[bytes]], Any],
) -> Iterator[Received]:
    """Write the body to a temporary file while it is hashed and ``consume`` reads it.

    Checks the size and the MD5 first, then hands on ``consume``'s result
    (or raises its exception).  The file is removed when the ``with`` block
    ends unless the block moved it.  ``incoming`` must exist; a full disk is
    an ``OSError`` for the caller to answer (see ``api.Store.receive``).
    """
    fd, name = tempfile.mkstemp(dir=incoming, suffix=".part")
    temp = Path(name)
    reader = HashingReader(stream, length)
    tee = Tee(consume)
    finished = False
    try:
        with os.fdopen(fd, "wb") as out:
            while data := reader.read(CHUNK):
                tee.feed(data)
                out.write(data)
        if reader.size != length:
            raise Refused(400, f"the body ended after {reader.size} of {length} bytes")
        md5 = reader.hexdigest()
        if md5 != expected_md5:
            raise Refused(400, f"MD5 mismatch: received {md5}, Content-MD5 says {expected_md5}")
        finished = True
        yield Received(temp, tee.finish())
    finally:
        if not finished:
            with contextlib.suppress(BaseException):
                tee.finish()
        reader.close()
        temp.unlink(missing_ok=True)
