"""CherryPy set-up shared by the Tool Data Sink and the results server."""

from __future__ import annotations

import json
import time
from typing import Any

import cherrypy
import cherrypy._cpserver
from cherrypy._cpwsgi_server import CPWSGIServer


class _Server(cherrypy._cpserver.Server):  # type: ignore[misc]
    """CherryPy checks that its server is up only every 0.1 s; we check more often."""

    def wait(self) -> None:
        deadline = time.monotonic() + 10.0
        while not getattr(self.httpserver, "ready", False):
            if self.interrupt:
                raise self.interrupt
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start within 10 s")
            time.sleep(0.002)


class _HTTPServer(CPWSGIServer):  # type: ignore[misc]
    """cheroot notices a stop request only between polls of its connections;
    poll more often than its default 0.5 s so that the process exits promptly."""

    expiration_interval = 0.05


def json_error_page(status: str, message: str, traceback: str, version: str) -> str:
    """CherryPy's error pages, as JSON like every other answer of an API."""
    cherrypy.response.headers["Content-Type"] = "application/json"
    code = int(status.split()[0]) if status[:3].isdigit() else 500
    return json.dumps({"status": code, "message": message})


def configure(host: str, port: int, threads: int, queue_size: int, **extra: Any) -> None:
    """Quiet, production settings; streaming bodies of any size; no tracebacks shown."""
    cherrypy.server.unsubscribe()
    cherrypy.server = _Server()
    cherrypy.server.subscribe()
    cherrypy.config.update(
        {
            "environment": "production",
            "log.screen": False,
            "log.access_file": "",
            "engine.autoreload.on": False,
            "server.socket_host": host,
            "server.socket_port": port,
            "server.thread_pool": threads,
            "server.socket_queue_size": queue_size,
            "server.max_request_body_size": 0,
            "server.socket_timeout": 60,
            "checker.on": False,
            "request.show_tracebacks": False,
            **extra,
        }
    )


def start() -> str:
    """Start the engine (after mounting the apps); returns the URL it listens on."""
    cherrypy.server.httpserver = _HTTPServer(cherrypy.server)
    cherrypy.engine.start()
    host, port = cherrypy.server.bound_addr[:2]
    return f"http://{host}:{port}"
