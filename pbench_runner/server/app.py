"""``pbench server``: the results server process.

Its data directory holds ``index.sqlite``, the tarballs under ``datasets/``,
and ``incoming/`` for uploads being received.  It prints the URL it listens
on (``--port 0`` picks a free port) and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Final

import cherrypy

from pbench_runner import cpserver
from pbench_runner.cpserver import json_error_page
from pbench_runner.errors import UsageError
from pbench_runner.server.api import API, Store
from pbench_runner.server.receive import Limits
from pbench_runner.server.storage import SQLiteIndex

log = logging.getLogger("pbench.server")

DEFAULT_MAX_SIZE: Final = 64 << 30
DEFAULT_RESERVE: Final = 256 << 20
DEFAULT_MAX_UNPACKED: Final = 256 << 20


@dataclass(frozen=True)
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("pbench-server-data")
    max_size: int = DEFAULT_MAX_SIZE
    reserve: int = DEFAULT_RESERVE
    max_unpacked: int = DEFAULT_MAX_UNPACKED
    threads: int = 16


def open_index(data_dir: Path) -> SQLiteIndex:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        return SQLiteIndex(data_dir / "index.sqlite")
    except OSError as exc:
        raise UsageError(f"cannot use the data directory {data_dir}: {exc}") from exc


def serve(opts: ServerOptions) -> int:
    """Run the server in this process until SIGINT or SIGTERM."""
    from pbench_runner.server.views import Pages, html_error_page

    logging.basicConfig(level=logging.INFO, format="%(asctime)s server %(levelname)s %(message)s")
    data_dir = opts.data_dir.absolute()
    store = Store(
        data_dir, open_index(data_dir), Limits(opts.max_size, opts.reserve, opts.max_unpacked)
    )
    for name in store.clean_incoming():
        log.info("removed %s, left by an upload that was cut short", store.incoming / name)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cpserver.configure(opts.host, opts.port, opts.threads, 128)
    cherrypy.tree.mount(API(store), "/api/v1", {"/": {"error_page.default": json_error_page}})
    cherrypy.tree.mount(Pages(store), "/", {"/": {"error_page.default": html_error_page}})
    try:
        url = cpserver.start()
    except Exception as exc:
        cherrypy.engine.exit()
        raise UsageError(f"cannot listen on {opts.host}:{opts.port}: {exc}") from exc
    try:
        print(f"pbench server: listening on {url} (data in {data_dir})", flush=True)
        while not stopping.wait(0.2):
            pass
    finally:
        cherrypy.engine.exit()
    print("pbench server: stopped", file=sys.stderr, flush=True)
    return 0
