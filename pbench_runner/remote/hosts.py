"""The controller's side of the remote hosts of one session.

:meth:`RemoteHosts.connect` contacts every host in parallel: SSH, a probe of
its Python, the bundle (copied only when the host does not have it cached).
:meth:`RemoteHosts.start_meisters` starts each host's meister over its SSH
connection; the meister's output is copied into ``tm/tm-<host>.log`` here,
and a keepalive byte goes down its stdin every second, which is how the
meister knows the controller is still there.  :meth:`RemoteHosts.close`
waits for the meisters to exit, kills what is left over SSH, and closes the
connections.  :func:`kill_run` is ``pbench kill`` for the remote hosts of a
crashed session.
"""

from __future__ import annotations

import io
import json
import logging
import secrets
import shlex
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko
import redis

from pbench_runner import bus
from pbench_runner.config import Deadlines
from pbench_runner.errors import RemoteHostError, UsageError
from pbench_runner.remote import bundle as bundles
from pbench_runner.remote.broker import ForwardBroker
from pbench_runner.remote.hostside import RUN_ENV
from pbench_runner.remote.options import RemoteOptions
from pbench_runner.remote.parallel import MAX_WORKERS, on_every_host
from pbench_runner.remote.ssh import open_connection
from pbench_runner.remote.tunnel import Resolver, Tunnel

log = logging.getLogger("pbench.remote")

MIN_PYTHON = (3, 9)
KEEPALIVE_S = 1.0


@dataclass
class RemoteHost:
    """One connected, prepared host."""

    name: str
    client: paramiko.SSHClient
    #: the remote directory, absolute, as the host sees it
    base: str
    python: list[int]
    #: the controller's address as this host sees it
    address: str
    #: this host's address as the controller sees it
    peer: str
    copied: bool
    tunnel: Tunnel
    channel: paramiko.Channel | None = None
    logger: threading.Thread | None = None
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def transport(self) -> paramiko.Transport:
        transport = self.client.get_transport()
        if transport is None:
            raise RemoteHostError(self.name, "the SSH connection is closed")
        return transport

    def close(self) -> None:
        self.tunnel.close()
        self.client.close()


def run(
    host: RemoteHost | tuple[str, paramiko.SSHClient],
    command: str,
    timeout: float,
    stdin: bytes = b"",
) -> tuple[int, str, str]:
    """Run ``command`` on a host; its exit status, stdout and stderr, within ``timeout``."""
    name, client = (host.name, host.client) if isinstance(host, RemoteHost) else host
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise RemoteHostError(name, "the SSH connection is closed")
    chan: paramiko.Channel | None = None
    what = command.split()[0]
    try:
        chan = transport.open_session(timeout=timeout)
        chan.settimeout(timeout)
        chan.exec_command(command)
        if stdin:
            chan.sendall(stdin)
        chan.shutdown_write()
        out, err = io.BytesIO(), io.BytesIO()
        deadline = time.monotonic() + timeout
        while not (
            chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready()
        ):
            if time.monotonic() > deadline:
                raise TimeoutError
            if chan.recv_ready():
                out.write(chan.recv(65536))
            elif chan.recv_stderr_ready():
                err.write(chan.recv_stderr(65536))
            else:
                chan.status_event.wait(0.01)
        status = chan.recv_exit_status()
    except (TimeoutError, socket.timeout) as exc:  # one and the same from Python 3.10
        raise RemoteHostError(name, f"{what} did not finish within {timeout:g} s") from exc
    except OSError as exc:
        raise RemoteHostError(
            name, f"the SSH connection failed while running {what}: {exc.strerror or exc}"
        ) from exc
    except (paramiko.SSHException, EOFError) as exc:
        raise RemoteHostError(name, f"the SSH connection failed: {exc}") from exc
    finally:
        if chan is not None:
            chan.close()
    return status, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")


class RemoteHosts:
    """Every remote host of one session, from SSH to clean-up."""

    def __init__(
        self,
        hosts: list[str],
        opts: RemoteOptions,
        run_id: str,
        tm_dir: Path,
        deadlines: Deadlines,
    ) -> None:
        self.names = sorted(hosts)
        self.opts = opts
        self.run_id = run_id
        self.tm_dir = tm_dir
        self.deadlines = deadlines
        self.bundle = bundles.build()
        self.hosts: dict[str, RemoteHost] = {}
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        self._broker: ForwardBroker | None = None

    # --- set up --------------------------------------------------------------

    def connect(self) -> None:
        """SSH, Python and the bundle on every host; one error names each failing host."""
        self.hosts = on_every_host(
            self.names, self._prepare, self.deadlines.startup, "remote setup", RemoteHost.close
        )

    def _prepare(self, name: str) -> RemoteHost:
        began = time.monotonic()
        client = open_connection(name, self.opts, self.deadlines.connect)
        try:
            remote_dir = self.opts.remote_dir.replace("{host}", name)
            status, out, err = run(
                (name, client),
                f"{shlex.quote(self.opts.python)} -I -S -c {shlex.quote(bundles.PROBE)} "
                f"{shlex.quote(remote_dir)} {shlex.quote(self.bundle.name)}",
                self.deadlines.connect,
            )
            if status == 127:
                raise RemoteHostError(
                    name, f"{self.opts.python} is not installed there; install Python 3.9 or newer"
                )
            if status != 0:
                raise RemoteHostError(
                    name, f"cannot prepare {remote_dir} there: {err.strip() or out.strip()}"
                )
            lines = out.strip().splitlines()
            try:
                probe: dict[str, Any] = json.loads(lines[-1])
            except (IndexError, ValueError) as exc:
                raise RemoteHostError(
                    name,
                    f"the probe of {self.opts.python} printed {lines[-1]!r} instead of its "
                    "answer; check that the login prints nothing"
                    if lines
                    else f"the probe of {self.opts.python} printed nothing; check that "
                    f"{self.opts.python} runs there",
                ) from exc
            if tuple(probe["python"][:2]) < MIN_PYTHON:
                version = ".".join(map(str, probe["python"]))
                raise RemoteHostError(
                    name, f"its {self.opts.python} is Python {version}; 3.9 or newer is needed"
                )
            transport = client.get_transport()
            assert transport is not None
            host = RemoteHost(
                name=name,
                client=client,
                base=str(probe["base"]),
                python=list(probe["python"]),
                # as the host sees it (a NAT may stand between); else as this side does
                address=str(probe.get("client") or transport.sock.getsockname()[0]),
                peer=str(transport.getpeername()[0]),
                copied=not probe["cached"],
                tunnel=Tunnel(name, transport),
            )
            if host.copied:
                self._install(host)
            log.info(
                "host %s ready in %.2f s (bundle %s)",
                name,
                time.monotonic() - began,
                "copied" if host.copied else "cached",
            )
            return host
        except BaseException:
            client.close()
            raise

    def _install(self, host: RemoteHost) -> None:
        dest = f"{host.base}/bundles/{self.bundle.name}"
        upload = f"{dest}.zip.{secrets.token_hex(4)}"
        try:
            with host.client.open_sftp() as sftp:
                sftp.putfo(io.BytesIO(self.bundle.data), upload, confirm=True)
        except (OSError, paramiko.SSHException) as exc:
            raise RemoteHostError(host.name, f"cannot copy the bundle to {upload}: {exc}") from exc
        status = 1
        try:
            status, _out, err = run(
                host,
                f"{shlex.quote(self.opts.python)} -I -S -c {shlex.quote(bundles.INSTALL)} "
                f"{shlex.quote(upload)} {shlex.quote(dest)}",
                self.deadlines.startup,
            )
            if status != 0:
                raise RemoteHostError(
                    host.name, f"cannot unpack the bundle in {dest}: {err.strip()}"
                )
        finally:
            if status != 0:  # INSTALL removes the zip once it is in place, not before
                self._remove_upload(host, upload)

    def _remove_upload(self, host: RemoteHost, upload: str) -> None:
        try:
            run(host, f"rm -f {shlex.quote(upload)}", self.deadlines.connect)
        except RemoteHostError as exc:
            log.warning("host %s: cannot remove %s: %s", host.name, upload, exc)

    def controller_address(self) -> str:
        """Direct mode: the one address every remote host sees the controller at."""
        if self.opts.address:
            return self.opts.address
        seen = {h.address for h in self.hosts.values()}
        if len(seen) != 1:
            listed = ", ".join(f"{h.name} sees {h.address}" for h in self.hosts.values())
            raise UsageError(
                f"the remote hosts reach the controller at different addresses ({listed}); "
                "choose the one to use with --controller-address"
            )
        return seen.pop()

    def expose(self, redis: Resolver, sink: Resolver) -> None:
        """Tunnel mode: on every host, loopback ports that lead to Redis and the sink.

        All hosts at once, under the ``connect`` deadline: a host whose link
        was cut after connecting would otherwise hold up the start for ever.
        """

        def expose_one(name: str) -> None:
            host = self.hosts[name]
            try:
                host.ports = {"redis": host.tunnel.expose(redis), "sink": host.tunnel.expose(sink)}
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise RemoteHostError(name, f"port forwarding was refused: {exc}") from exc

        on_every_host(
            list(self.hosts), expose_one, self.deadlines.connect, "port forwarding", _nothing
        )

    def serve_forwards(self, client: redis.Redis, keys: bus.Keys) -> None:
        """Tunnel mode: answer the sink's requests for a way to a host's tool."""
        self._broker = ForwardBroker(client, keys, {n: h.tunnel for n, h in self.hosts.items()})
        self._broker.start()

    def urls(self, name: str, redis_url: str) -> tuple[str, str]:
        """The Redis URL and sink URL (empty: ask Redis) for ``name``'s meister."""
        host = self.hosts[name]
        if self.opts.mode == "tunnel":
            return (
                f"redis://127.0.0.1:{host.ports['redis']}/0",
                f"http://127.0.0.1:{host.ports['sink']}",
            )
        return redis_url, ""

    def workdir(self, name: str) -> str:
        return f"{self.hosts[name].base}/runs/{self.run_id}"

    def log_path(self, name: str) -> Path:
        return self.tm_dir / f"tm-{name}.log"

    # --- the meisters ---------------------------------------------------------------

    def start_meisters(self, redis_urls: dict[str, str], password: str) -> None:
        for name, host in self.hosts.items():
            main = f"{host.base}/bundles/{self.bundle.name}/__main__.py"
            command = (
                f"cd {shlex.quote(host.base)} && {RUN_ENV}={shlex.quote(self.run_id)} exec "
                f"{shlex.quote(self.opts.python)} -I -S {shlex.quote(main)} serve "
                f"--redis {shlex.quote(redis_urls[name])} --run-id {shlex.quote(self.run_id)} "
                f"--host {shlex.quote(name)} --base {shlex.quote(host.base)} "
                f"--lost-after {self.deadlines.reconnect:g}"
            )
            try:
                chan = host.transport.open_session(timeout=self.deadlines.connect)
                chan.set_combine_stderr(True)
                chan.exec_command(command)
                chan.sendall(password.encode() + b"\n")
                # A keepalive never waits long on one host (a cut link) and
                # holds up the others'.
                chan.settimeout(KEEPALIVE_S)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise RemoteHostError(name, f"cannot start the tool meister: {exc}") from exc
            host.channel = chan
            host.logger = threading.Thread(
                target=_copy_log, args=(chan, self.log_path(name)), name=f"log-{name}", daemon=True
            )
            host.logger.start()
        self._keepalive = threading.Thread(target=self._keep_alive, name="keepalive", daemon=True)
        self._keepalive.start()

    def _keep_alive(self) -> None:
        while not self._stop.wait(KEEPALIVE_S):
            for host in list(self.hosts.values()):
                chan = host.channel
                if chan is None or chan.closed or chan.exit_status_ready():
                    continue
                try:
                    chan.send(b".")
                except socket.timeout:
                    log.warning("host %s: its SSH channel takes no more keepalives", host.name)
                except (OSError, paramiko.SSHException, EOFError) as exc:
                    log.warning("host %s: keepalive failed: %s", host.name, exc)

    def exited(self, name: str) -> int | None:
        """The meister's exit status once it has exited, else None."""
        chan = self.hosts[name].channel
        if chan is None or not chan.exit_status_ready():
            return None
        return int(chan.recv_exit_status())

    def describe(self) -> dict[str, Any]:
        """What ``pbench kill`` needs to reach these hosts later."""
        return {
            "options": self.opts.to_dict(),
            "bundle": self.bundle.name,
            "hosts": {name: {"base": h.base} for name, h in self.hosts.items()},
        }

    # --- tear down --------------------------------------------------------------------

    def close(self) -> list[str]:
        """Wait for every meister to exit, kill what is left, close the connections."""
        self._stop.set()
        if self._broker is not None:
            self._broker.close()
        if not self.hosts:
            return []
        with ThreadPoolExecutor(min(MAX_WORKERS, len(self.hosts))) as pool:
            problems = [p for p in pool.map(self._close_one, list(self.hosts.values())) if p]
        self.hosts = {}
        return problems

    def _close_one(self, host: RemoteHost) -> str:
        """A meister that exited cleanly has cleaned up; anything else is cleaned up here."""
        problem = ""
        chan = host.channel
        try:
            if chan is not None:
                exited = chan.status_event.wait(self.deadlines.shutdown)
                status = chan.recv_exit_status() if exited else None
                if status != 0:
                    _, killed, _ = kill_on_host(
                        host,
                        self.opts,
                        host.base,
                        self.bundle.name,
                        self.run_id,
                        self.deadlines.shutdown,
                    )
                    if killed:
                        problem = (
                            f"host {host.name}: killed {len(killed)} process(es) that did not exit"
                        )
        except (RemoteHostError, ValueError) as exc:
            problem = f"host {host.name}: could not clean up: {exc}"
        finally:
            if chan is not None:
                chan.close()
            host.close()
            if host.logger is not None:
                host.logger.join(timeout=1.0)
        return problem


def _nothing(_result: object) -> None:
    """Nothing to undo."""


def kill_command(opts: RemoteOptions, base: str, bundle_name: str, run_id: str) -> str:
    main = f"{base}/bundles/{bundle_name}/__main__.py"
    return (
        f"{shlex.quote(opts.python)} -I -S {shlex.quote(main)} kill "
        f"--run-id {shlex.quote(run_id)} --base {shlex.quote(base)}"
    )


def kill_on_host(
    host: RemoteHost | tuple[str, paramiko.SSHClient],
    opts: RemoteOptions,
    base: str,
    bundle_name: str,
    run_id: str,
    timeout: float,
) -> tuple[int, list[Any], str]:
    """Run the bundle's ``kill`` for ``run_id``: its exit status, the pids it killed, stderr.

    The pids are those it reports on success (exit status 0), else none.
    """
    command = kill_command(opts, base, bundle_name, run_id)
    status, out, err = run(host, command, timeout)
    killed = json.loads(out or "{}").get("killed", []) if status == 0 else []
    return status, killed, err


def _copy_log(chan: paramiko.Channel, path: Path) -> None:
    with open(path, "ab") as fh:
        while True:
            try:
                data = chan.recv(65536)
            except socket.timeout:  # the channel's timeout is for the keepalive's sake
                continue
            except (OSError, EOFError):
                return
            if not data:
                return
            fh.write(data)
            fh.flush()


def kill_run(run_id: str, described: dict[str, Any], timeout: float = 10.0) -> list[str]:
    """``pbench kill`` on the remote hosts of a session; a line per host."""
    opts = RemoteOptions.from_dict(described["options"])
    name = str(described["bundle"])
    hosts: dict[str, dict[str, str]] = described["hosts"]

    def one(host: str) -> str:
        base = hosts[host]["base"]
        client = open_connection(host, opts, timeout)
        try:
            status, killed, err = kill_on_host((host, client), opts, base, name, run_id, timeout)
        finally:
            client.close()
        if status != 0:
            return f"host {host}: kill failed: {err.strip()}"
        return f"host {host}: stopped {len(killed)} process(es)"

    lines: list[str] = []
    with ThreadPoolExecutor(max(1, min(MAX_WORKERS, len(hosts)))) as pool:
        futures = {h: pool.submit(one, h) for h in sorted(hosts)}
        for host, future in futures.items():
            try:
                lines.append(future.result(timeout=timeout + 5))
            except RemoteHostError as exc:
                lines.append(f"{exc} (could not reach it to clean up)")
            except (TimeoutError, FutureTimeout):
                lines.append(
                    f"host {host}: no answer within {timeout + 5:g} s; run pbench kill again "
                    "or stop its processes there by hand"
                )
            except ValueError as exc:
                lines.append(f"host {host}: its kill printed no answer I can read ({exc})")
    return lines
