"""The JSON API, mounted at ``/api/v1``.

==========================================  ==============================================
``PUT /upload/<name>.tar.xz[?access=public]``  201 new (``id`` = MD5, ``Location``), 200 known
                                               MD5 you can see; 400 bad MD5, name or tarball;
                                               401 no valid token; 409 name busy or taken, or
                                               the same tarball is another user's private
                                               dataset; 411 no length; 413 too large or unpacks
                                               to too much; 507 no room
``GET /datasets?user=&controller=&benchmark=&config=&since=&until=&q=&limit=&offset=``
``GET /datasets/<id>``                        metadata, iterations, sysinfo, host summaries
``GET /datasets/<id>/series``                 tool data over time, per host and measure
``GET /datasets/<id>/tarball``                the tarball
``GET /datasets/<id>/files[/<path>]``         the files in it, or one of them
``DELETE /datasets/<id>``                     the owner only
``GET /compare?ids=A,B[,C...]``               the table of ``pbench compare`` (A is the base),
                                               and each change with its ``verdict``
==========================================  ==============================================

A private dataset is answered with 404 to anyone but its owner.  An upload
of a tarball that is here already answers 200 only to whoever can see it (its
owner, or anyone when it is public); its owner's ``?access=`` then sets its
access.  Non-finite numbers (a change from a mean of 0) are answered as ``null``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import cherrypy
import cherrypy.lib.static

from pbench_runner import compare, compare_report, strictjson
from pbench_runner.server import archive, auth
from pbench_runner.server.receive import InProgress, Limits, Refused, check_room, drain, receive
from pbench_runner.server.storage import Dataset, Filters, Index, now

NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,199}$")
MD5: Final = re.compile(r"^[0-9a-f]{32}$")
SUFFIX: Final = ".tar.xz"
MAX_LIST: Final = 10000
#: the largest listing offset taken (beyond what any index holds, within SQL's integers)
MAX_OFFSET: Final = 10**12


def one(params: dict[str, Any], key: str, default: str = "") -> str:
    """A query parameter given at most once (400 when repeated)."""
    value = params.get(key, default)
    if isinstance(value, list):
        raise cherrypy.HTTPError(400, f"give the query parameter {key!r} once")
    return str(value)


def _json(body: Any) -> bytes:
    cherrypy.response.headers["Content-Type"] = "application/json"
    return strictjson.dumps(body).encode()


def _answer(status: int, **body: Any) -> dict[str, Any]:
    cherrypy.response.status = status
    return {"status": status, **body}


def viewer(index: Index) -> str | None:
    """Who is asking: the ``Bearer`` token, or the web page's ``pbench_token`` cookie."""
    header = cherrypy.request.headers.get("Authorization")
    if not header:
        cookie = cherrypy.request.cookie.get("pbench_token")
        header = f"Bearer {cookie.value}" if cookie is not None else None
    return auth.user_of(index, header)


def dataset_name(parts: tuple[str, ...]) -> str:
    """``<name>.tar.xz`` from the URL path, or 400."""
    if len(parts) != 1 or not parts[0].endswith(SUFFIX):
        raise Refused(400, "upload to /api/v1/upload/<name>.tar.xz")
    name = parts[0][: -len(SUFFIX)]
    if not NAME.match(name) or ".." in name:
        raise Refused(
            400,
            f"bad dataset name {name!r}: letters, digits, '_', '.', '+' or '-', "
            "starting with a letter or digit",
        )
    return name


def filters_from(params: dict[str, Any]) -> Filters:
    try:
        limit = int(one(params, "limit", "100"))
        offset = int(one(params, "offset", "0"))
    except ValueError:
        raise cherrypy.HTTPError(400, "limit and offset are whole numbers") from None
    if not 1 <= limit <= MAX_LIST or not 0 <= offset <= MAX_OFFSET:
        raise cherrypy.HTTPError(400, f"limit is 1 to {MAX_LIST}; offset is 0 to {MAX_OFFSET}")
    return Filters(
        user=one(params, "user"),
        controller=one(params, "controller"),
        benchmark=one(params, "benchmark"),
        config=one(params, "config"),
        since=one(params, "since"),
        until=one(params, "until"),
        text=one(params, "q"),
        limit=limit,
        offset=offset,
    )


def split_ids(ids: Any) -> list[str]:
    """Dataset ids given as ``ids=A,B``, ``ids=A&ids=B``, or both."""
    values = ids if isinstance(ids, list) else [ids or ""]
    return [i for v in values for i in str(v).split(",") if i]


def comparison(datasets: list[Dataset]) -> list[dict[str, Any]]:
    """Each dataset against the first, as ``pbench compare`` tables them."""
    base = datasets[0]
    found = []
    for other in datasets[1:]:
        changes = compare.changes(base.doc or {}, other.doc or {})
        found.append(
            {
                "base": base.id,
                "other": other.id,
                "changes": [{**asdict(ch), "verdict": compare.verdict(ch)} for ch in changes],
                "table": compare_report.table(changes),
            }
        )
    return found


def same_tarball_message(name: str) -> str:
    return (
        f"another user has uploaded this very tarball ({name}) as a private dataset; "
        "ask them to make it public, or keep your copy"
    )


class Store:
    """The data directory: tarballs, uploads in progress, and the index."""

    def __init__(self, data_dir: Path, index: Index, limits: Limits) -> None:
        self.data_dir, self.index, self.limits = data_dir, index, limits
        self.incoming = data_dir / "incoming"
        self.in_progress = InProgress()

    def clean_incoming(self) -> list[str]:
        """Remove what uploads cut short by a crash or a kill left in ``incoming/``."""
        removed: list[str] = []
        if not self.incoming.is_dir():
            return removed
        for entry in sorted(self.incoming.iterdir()):
            if entry.is_symlink():
                continue
            if entry.is_dir() and entry.name.startswith("staging-"):
                shutil.rmtree(entry)
            elif entry.is_file() and entry.name.endswith(".part"):
                entry.unlink()
            else:
                continue
            removed.append(entry.name)
        return removed

    def tarball(self, ds: Dataset) -> Path:
        return self.data_dir / "datasets" / ds.id / f"{ds.name}{SUFFIX}"

    def visible(self, dataset_id: str, user: str | None) -> Dataset:
        ds = self.index.get(dataset_id) if MD5.match(dataset_id) else None
        if ds is None or not ds.visible_to(user):
            raise cherrypy.HTTPError(404, f"no dataset {dataset_id} (or it is private)")
        return ds

    def many(self, ids: list[str], user: str | None) -> list[Dataset]:
        if len(ids) < 2:
            raise cherrypy.HTTPError(400, "compare needs two dataset ids or more: ?ids=A,B")
        return [self.visible(i, user) for i in ids]

    def receive(self, rfile: Any, length: int, md5: str, name: str, owner: str, access: str) -> int:
        """Receive, check and index an upload, and move it into place; returns 201 or 200."""
        self.incoming.mkdir(parents=True, exist_ok=True)  # the only mkdir: receive() needs it too
        with tempfile.TemporaryDirectory(dir=self.incoming, prefix="staging-") as staging:

            def consume(stream: Any) -> archive.Contents:
                return archive.read(stream, name, Path(staging), self.limits.max_unpacked)

            try:
                with receive(rfile, length, md5, self.incoming, consume) as got:
                    return self._add(got.path, got.contents, name, md5, owner, access)
            except archive.NotAResult as exc:
                raise Refused(exc.status, str(exc)) from exc
            except OSError as exc:  # writing the body, unpacking it, or moving it filled the disk
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise Refused(
                        507, f"the disk of the data directory is full while receiving {name}: {exc}"
                    ) from exc
                raise

    def _add(
        self, temp: Path, contents: archive.Contents, name: str, md5: str, owner: str, access: str
    ) -> int:
        per_host = contents.metadata.get("tools", {}).get("hosts", {}) or {}  # checked by archive
        hosts = sorted(per_host)
        tools = sorted({str(t) for h in per_host.values() for t in h.get("tools", {})})
        ds = Dataset(
            id=md5,
            name=name,
            owner=owner,
            access=access,
            controller=contents.column("controller", "hostname"),
            config=contents.column("pbench", "config"),
            benchmark=contents.column("pbench", "script"),
            date=contents.column("pbench", "date") or contents.column("run", "start_run"),
            status=contents.column("run", "status"),
            size=temp.stat().st_size,
            uploaded=now(),
            hosts=hosts,
            tools=tools,
            doc=contents.doc,
        )
        final = self.tarball(ds)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        try:
            self.index.add(ds)
        except self.index.integrity_errors() as exc:  # the same tarball or name, uploaded meanwhile
            known = self.index.get(md5)
            if known is not None:
                if not known.visible_to(owner):
                    raise Refused(409, same_tarball_message(name)) from exc
                return 200
            self.remove(ds)
            raise Refused(409, f"a dataset named {name} exists already") from exc
        except BaseException:
            self.remove(ds)
            raise
        return 201

    def remove(self, ds: Dataset) -> None:
        path = self.tarball(ds)
        path.unlink(missing_ok=True)
        if path.parent.parent == self.data_dir / "datasets" and path.parent.name == ds.id:
            shutil.rmtree(path.parent, ignore_errors=True)


class API:
    """Mounted at ``/api/v1``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.index = store.index

    @cherrypy.expose
    @cherrypy.tools.json_out()
    @cherrypy.config(**{"request.process_request_body": False})
    def upload(self, *parts: str, **params: Any) -> dict[str, Any]:
        request = cherrypy.request
        if request.method != "PUT":
            cherrypy.response.headers["Allow"] = "PUT"
            return _answer(405, message="use PUT")
        length_text = request.headers.get("Content-Length")
        length = int(length_text) if length_text and length_text.isdigit() else None
        try:
            return self._upload(parts, params, length)
        except Refused as exc:
            drain(request.rfile, length)
            return _answer(exc.status, message=str(exc))

    def _upload(
        self, parts: tuple[str, ...], params: dict[str, Any], length: int | None
    ) -> dict[str, Any]:
        request = cherrypy.request
        user = auth.user_of(self.index, request.headers.get("Authorization"))
        if user is None:
            raise Refused(401, "a valid token is required: Authorization: Bearer <token>")
        name = dataset_name(parts)
        access = params.get("access", "private")
        if access not in ("private", "public"):
            raise Refused(400, f"access is 'private' or 'public', not {access!r}")
        md5 = request.headers.get("Content-MD5", "").strip().lower()
        if not MD5.match(md5):
            raise Refused(400, "the Content-MD5 header (the hex MD5 of the body) is required")
        known = self.index.get(md5)
        if known is not None:
            if not known.visible_to(user):
                raise Refused(409, same_tarball_message(name))
            drain(request.rfile, length, limit=length or 0)
            message = "this tarball is here already"
            if user == known.owner and "access" in params and access != known.access:
                self.index.set_access(known.id, access)
                message += f"; it is {access} now"
            return self._created(200, known.id, known.name, message)
        taken = self.index.id_for_name(name)
        if taken is not None:
            mine = (other := self.index.get(taken)) is not None and other.owner == user
            raise Refused(
                409,
                f"a dataset named {name} exists already"
                + (f" (yours, with MD5 {taken}); delete it first to replace it" if mine else ""),
            )
        check_room(self.store.data_dir, length, self.store.limits)
        assert length is not None
        with self.store.in_progress.hold(name):
            status = self.store.receive(request.rfile, length, md5, name, user, access)
        return self._created(status, md5, name, "uploaded" if status == 201 else "here already")

    def _created(self, status: int, md5: str, name: str, message: str) -> dict[str, Any]:
        location = f"/api/v1/datasets/{md5}"
        cherrypy.response.headers["Location"] = location
        return _answer(status, id=md5, name=name, location=location, message=message)

    @cherrypy.expose
    def datasets(self, *path: str, **params: Any) -> Any:
        method = cherrypy.request.method
        user = viewer(self.index)
        if not path:
            if method not in ("GET", "HEAD"):
                cherrypy.response.headers["Allow"] = "GET, HEAD"
                raise cherrypy.HTTPError(405, "use GET to list the datasets")
            total, found = self.index.search(filters_from(params), user)
            return _json({"total": total, "datasets": [d.summary() for d in found]})
        ds = self.store.visible(path[0], user)
        if method == "DELETE" and len(path) == 1:
            return self._delete(ds, user)
        if method not in ("GET", "HEAD"):
            raise cherrypy.HTTPError(405, "use GET (or DELETE on a dataset)")
        doc = ds.doc or {}
        if len(path) == 1:
            return _json(
                {
                    **ds.summary(),
                    "metadata": doc.get("metadata", {}),
                    "iterations": doc.get("iterations", []),
                    "sysinfo": doc.get("sysinfo", {}),
                }
            )
        if path[1] == "series" and len(path) == 2:
            return _json(doc.get("series", {}))
        if path[1] == "tarball" and len(path) == 2:
            cherrypy.response.headers["Content-MD5"] = ds.id
            return cherrypy.lib.static.serve_file(
                str(self.store.tarball(ds)),
                "application/x-xz",
                "attachment",
                f"{ds.name}{SUFFIX}",
            )
        if path[1] == "files":
            if len(path) == 2:
                return _json({"files": [{"path": p, "size": s} for p, s in doc.get("files", [])]})
            return self._file(ds, "/".join(path[2:]))
        raise cherrypy.HTTPError(404, f"no such resource under dataset {ds.id}")

    def _delete(self, ds: Dataset, user: str | None) -> bytes:
        if user is None:
            raise cherrypy.HTTPError(401, "deleting needs the owner's token")
        if user != ds.owner:
            raise cherrypy.HTTPError(403, f"only its owner ({ds.owner}) may delete {ds.name}")
        self.index.delete(ds.id)
        self.store.remove(ds)
        return _json({"status": 200, "deleted": ds.id, "name": ds.name})

    def _file(self, ds: Dataset, inner: str) -> Any:
        sizes = dict((p, s) for p, s in (ds.doc or {}).get("files", []))
        if inner not in sizes:
            raise cherrypy.HTTPError(404, f"{ds.name} holds no file {inner!r}")
        cherrypy.response.headers["Content-Type"] = "application/octet-stream"
        cherrypy.response.headers["Content-Length"] = str(sizes[inner])
        cherrypy.response.stream = True
        return _member_bytes(self.store.tarball(ds), f"{ds.name}/{inner}")

    @cherrypy.expose
    def compare(self, ids: Any = "", **params: Any) -> Any:
        chosen = split_ids(ids)
        return _json({"comparisons": comparison(self.store.many(chosen, viewer(self.index)))})


def _member_bytes(tarball: Path, member: str) -> Iterator[bytes]:
    with tarfile.open(tarball, mode="r|xz") as tar:
        for entry in tar:
            if entry.name == member and entry.isfile():
                fh = tar.extractfile(entry)
                assert fh is not None
                while chunk := fh.read(1 << 20):
                    yield chunk
                return
