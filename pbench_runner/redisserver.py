"""A private ``redis-server`` for one run.

The real binary, on a free port, bound to loopback unless told otherwise,
with a random password, no persistence, and its config, log and pid file in
the run's ``tm/`` directory.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import redis

from pbench_runner import procs
from pbench_runner.errors import RedisError
from pbench_runner.netutil import free_port

START_ATTEMPTS = 5


class RedisServer:
    """Context manager: ``with RedisServer(tm_dir) as server: server.url``."""

    def __init__(
        self,
        tm_dir: Path,
        *,
        bind: str = "127.0.0.1",
        extra_binds: Sequence[str] = (),
        timeout: float = 10.0,
        die_with_parent: bool = True,
        run_id: str = "",
    ) -> None:
        self.tm_dir = tm_dir
        self.run_id = run_id
        self.bind = bind
        #: more addresses to listen on (remote meisters in direct mode)
        self.extra_binds = [a for a in extra_binds if a != bind]
        self.timeout = timeout
        self.die_with_parent = die_with_parent
        self.password = secrets.token_urlsafe(24)
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.tm_dir / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.bind}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(
            host=self.bind, port=self.port, password=self.password, socket_timeout=10
        )

    def _write_config(self) -> Path:
        conf = self.tm_dir / "redis.conf"
        conf.write_text(
            "\n".join(
                [
                    f"bind {' '.join([self.bind, *self.extra_binds])}",
                    f"port {self.port}",
                    "protected-mode yes",
                    "daemonize no",
                    f'pidfile "{self.tm_dir / "redis.pid"}"',
                    f'logfile "{self.log_path}"',
                    f'dir "{self.tm_dir}"',
                    'save ""',
                    "appendonly no",
                    "databases 1",
                    f"requirepass {self.password}",
                    # redis-server overwrites its environment with its title, so
                    # the run id goes into the title, where `pbench kill` looks.
                    f'proc-title-template "{{title}} {{listen-addr}} pbench-run={self.run_id}"',
                    "",
                ]
            )
        )
        conf.chmod(0o600)
        return conf

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisError(
                "redis-server is not installed on the controller; install the Debian package "
                "'redis-server' (the project's scripts/install.sh does)"
            )
        self.tm_dir.mkdir(parents=True, exist_ok=True)
        last_log = ""
        for _attempt in range(START_ATTEMPTS):
            self.port = free_port(self.bind)
            conf = self._write_config()
            self.log_path.unlink(missing_ok=True)
            self.proc = procs.spawn(
                [binary, str(conf)],
                die_with_parent=self.die_with_parent,
            )
            if self._wait_ready():
                # redis-server has read it: the copy kept with the run's logs (and so in
                # its result) carries no secret
                conf.write_text(
                    conf.read_text().replace(
                        f"requirepass {self.password}", "# requirepass (redacted)"
                    )
                )
                return self
            last_log = procs.tail(self.log_path)
            procs.stop(self.proc, timeout=2)
            self.proc = None
            if "Address already in use" not in last_log:
                break
        raise RedisError(
            f"redis-server did not start on {self.bind} within {self.timeout:g} s; "
            f"its log ({self.log_path}) ends with:\n{last_log}"
        )

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        client = redis.Redis(
            host=self.bind, port=self.port, password=self.password, socket_timeout=1
        )
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.exceptions.ConnectionError:
                    time.sleep(0.005)
                except redis.exceptions.BusyLoadingError:
                    time.sleep(0.005)
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            procs.stop(self.proc, timeout=3)
            self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
