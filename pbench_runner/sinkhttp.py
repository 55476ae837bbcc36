"""The Tool Data Sink's HTTP side: ``PUT /api/v1/data/<action-id>/<host>``.

Status codes a meister can get:

===  ==================================================================
201  the tarball arrived intact and was unpacked
400  the body's MD5 differs from ``Content-MD5`` (the meister re-sends)
401  no valid per-run token in ``Authorization: Bearer``
404  the host is not part of this run
410  the action is already over
412  the sink is not (yet) collecting data for this action: retry
422  the tarball is unreadable or holds an unsafe member; nothing written
428  ``Content-MD5`` is missing
===  ==================================================================
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cherrypy

from pbench_runner import bus, tarballs

if TYPE_CHECKING:
    from pbench_runner.sink import ToolDataSink

log = logging.getLogger("pbench.sink.http")


@dataclass(frozen=True)
class Upload:
    """Where the data of one send/sysinfo action goes."""

    action: bus.Action
    directory: Path
    hosts: frozenset[str]

    def destination(self, host: str) -> Path:
        if self.action.action == "sysinfo":
            return self.directory / host
        return self.directory / f"tools-{self.action.group}" / host

    def cleanup(self) -> None:
        """Remove the (empty) directory uploads were received in."""
        # It may be absent, or hold a host's upload still being received.
        with contextlib.suppress(OSError):
            (self.directory / ".incoming").rmdir()

    @property
    def kind(self) -> str:
        return "sysinfo" if self.action.action == "sysinfo" else "tools"


def _fail(status: int, message: str) -> dict[str, Any]:
    cherrypy.response.status = status
    return {"status": status, "message": message}


class DataAPI:
    """Mounted at ``/api/v1``."""

    def __init__(self, sink: ToolDataSink, token: str) -> None:
        self.sink = sink
        self.token = token
        #: moving received data into place is one request at a time
        self.publish_lock = threading.Lock()

    @cherrypy.expose
    @cherrypy.tools.json_out()
    def ping(self) -> dict[str, Any]:
        return {"ok": True}

    @cherrypy.expose
    @cherrypy.tools.json_out()
    @cherrypy.config(**{"request.process_request_body": False})
    def data(self, action_id: str, host: str) -> dict[str, Any]:
        request = cherrypy.request
        if request.method != "PUT":
            cherrypy.response.headers["Allow"] = "PUT"
            return _fail(405, "use PUT")
        auth = request.headers.get("Authorization", "")
        if not hmac.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            return _fail(401, "a valid per-run token is required")
        expected_md5 = request.headers.get("Content-MD5", "").strip().lower()
        if not expected_md5:
            return _fail(428, "the Content-MD5 header (hex MD5 of the body) is required")
        upload = self.sink.upload_for(action_id)
        if upload is False:
            return _fail(410, f"action {action_id} is over")
        if upload is None:
            return _fail(412, f"not collecting data for action {action_id} yet")
        assert isinstance(upload, Upload)
        if host not in upload.hosts:
            return _fail(404, f"host {host!r} is not part of this run")
        return self._receive(upload, host, expected_md5)

    def _receive(self, upload: Upload, host: str, expected_md5: str) -> dict[str, Any]:
        """Unpack the body into a staging directory while hashing it; publish on success.

        The body is read once: members are checked and extracted as they
        stream in, the MD5 is compared at the end, and only then does the
        staging directory take the place of the host's data.  A bad MD5 or an
        unsafe member leaves nothing behind.
        """
        request = cherrypy.request
        length_text = request.headers.get("Content-Length")
        length = int(length_text) if length_text else None
        dest = upload.destination(host)
        incoming = upload.directory / ".incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        # Each request its own staging directory, even for the same host.
        staging = Path(tempfile.mkdtemp(dir=incoming, prefix=f"{host}-{upload.action.id}-"))
        reader = tarballs.HashingReader(request.rfile, length)
        try:
            refused: Exception | None = None
            members = 0
            try:
                members = tarballs.unpack_stream(reader, staging / "data")
            except (tarballs.UnsafeTarball, OSError) as exc:
                reader.drain()  # answer only once the whole body is read
                refused = exc
            if length is not None and reader.size != length:
                return _fail(400, f"body ended after {reader.size} of {length} bytes")
            md5 = reader.hexdigest()
            # A body damaged in transit is re-sent (400), even if it no longer
            # parses; an intact but unsafe tarball is refused for good (422).
            if md5 != expected_md5:
                log.warning("host %s: MD5 mismatch (%s != %s)", host, md5, expected_md5)
                return _fail(400, f"MD5 mismatch: received {md5}, header says {expected_md5}")
            if isinstance(refused, OSError):
                log.error("host %s: cannot unpack into %s: %s", host, upload.directory, refused)
                status = 507 if refused.errno in (errno.ENOSPC, errno.EDQUOT) else 500
                return _fail(status, f"the sink cannot unpack host {host}'s data: {refused}")
            if refused is not None:
                log.error("host %s: refused tarball: %s", host, refused)
                return _fail(422, f"refused: {refused}")
            try:
                with self.publish_lock:
                    _publish(staging / "data", dest)
            except OSError as exc:
                log.error("host %s: cannot move its data into %s: %s", host, dest, exc)
                status = 507 if exc.errno in (errno.ENOSPC, errno.EDQUOT) else 500
                return _fail(
                    status, f"the sink cannot unpack host {host}'s data into {dest}: {exc}"
                )
        finally:
            reader.close()
            shutil.rmtree(staging, ignore_errors=True)
        self.sink.data_received(host, dest, upload.kind)
        cherrypy.response.status = 201
        return {"status": 201, "host": host, "bytes": reader.size, "members": members}


def _publish(staging: Path, dest: Path) -> None:
    """Merge what was received into ``dest``; a re-sent file replaces the old one.

    Directories are merged, not replaced: the sink's own collectors (pmlogger)
    write into the same host directory as the meister's data.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for entry in staging.iterdir():
        target = dest / entry.name
        if (
            entry.is_dir()
            and not entry.is_symlink()
            and target.is_dir()
            and not target.is_symlink()
        ):
            _publish(entry, target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)
