"""A meister's HTTP PUT of its tarball to the Tool Data Sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

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


def session(retries: int = 60, backoff_max: float = 0.5) -> requests.Session:
    """A session that retries PUTs on the statuses above with bounded backoff."""
    retry = Retry(
        total=retries,
        connect=5,
        read=1,
        status=retries,
        backoff_factor=0.01,
        backoff_max=backoff_max,
        status_forcelist=RETRY_STATUSES,
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
) -> requests.Response:
    """PUT ``tarball`` to ``url``; retries on 412 and MD5 mismatch, then raises on failure."""
    http = http or session()
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-MD5": md5,
        "Content-Type": "application/x-tar",
    }
    try:
        with open(tarball, "rb") as body:
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
