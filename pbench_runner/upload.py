"""HTTP PUT of a tarball, with retries: a meister's to the Tool Data Sink, and
``pbench move-results``' to a results server."""

from __future__ import annotations

import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, Any, Final

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pbench_runner.errors import TransferError

#: 412: the sink is not yet ready for this action; 400: the MD5 did not match
RETRY_STATUSES: Final = (400, 412, 429, 502, 503, 504)


class _Adapter(HTTPAdapter):
    """Sends bodies in 1 MiB blocks rather than http.client's 16 KiB."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["blocksize"] = 1 << 20
        super().init_poolmanager(*args, **kwargs)


def session(
    retries: int = 60,
    backoff_max: float = 0.5,
    statuses: Collection[int] = RETRY_STATUSES,
    backoff_factor: float = 0.01,
    resends: int = 1,
) -> requests.Session:
    """A session that retries PUTs on ``statuses`` with bounded backoff.

    A refused connection is tried again 5 times; a body cut off on the way (the
    connection dropped, no answer read) is sent again at most ``resends`` times
    in all, whatever the error, so that a large body is not re-sent without end.
    """
    retry = Retry(
        total=retries,
        connect=5,
        read=resends,
        other=resends,
        status=retries,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max,
        status_forcelist=frozenset(statuses),
        allowed_methods=frozenset({"PUT"}),
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    http = requests.Session()
    adapter = _Adapter(max_retries=retry, pool_connections=1, pool_maxsize=1)
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def put_tarball(
    url: str,
    tarball: Path,
    md5: str,
    token: str,
    *,
    timeout: float = 600.0,
    http: requests.Session | None = None,
    content_type: str = "application/x-tar",
    progress: Callable[[int], None] | None = None,
) -> requests.Response:
    """PUT ``tarball`` to ``url``, streaming it from disk; raises on failure.

    Retries as ``http`` says (by default: on 412 and MD5 mismatch).
    ``progress`` is called with the number of bytes sent so far.
    """
    http = http or session()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-MD5": md5,
        "Content-Type": content_type,
    }
    try:
        with open(tarball, "rb") as raw:
            body: IO[bytes] | _Progress = raw if progress is None else _Progress(raw, progress)
            resp = http.put(url, data=body, headers=headers, timeout=(10.0, timeout))
    except requests.RequestException as exc:
        raise TransferError(f"PUT {url} failed: {exc}") from exc
    if resp.status_code not in (200, 201):
        raise TransferError(f"PUT {url} answered {resp.status_code} {resp.reason}: {_why(resp)}")
    return resp


def _why(resp: requests.Response) -> str:
    """The sink's own message, or the start of whatever else answered."""
    try:
        return str(resp.json()["message"])
    except (ValueError, KeyError, TypeError):
        return " ".join(resp.text.split())[:200]


class _Progress:
    """A file being sent, reporting how far the sending has got.

    ``tell``/``seek`` let urllib3 rewind the body when it retries.
    """

    def __init__(self, raw: IO[bytes], report: Callable[[int], None]) -> None:
        self.raw, self.report = raw, report
        self.length = os.fstat(raw.fileno()).st_size

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.report(self.raw.tell())
        return data

    def tell(self) -> int:
        return self.raw.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self.raw.seek(offset, whence)
        self.report(pos)
        return pos
