"""Port forwards over one host's SSH transport, in both directions.

*Remote-side* forwards (:meth:`Tunnel.expose`) open a port on the remote
host's loopback that leads to an address on the controller: this is how a
remote meister reaches Redis and the Tool Data Sink without any port of the
controller being opened to the network.  *Local* forwards
(:meth:`Tunnel.forward_to`) open a port on the controller's loopback that
leads to a port on the remote host's loopback: this is how a collector on the
controller (pmlogger, Prometheus) reaches a remote pmcd or node_exporter.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from collections.abc import Callable

import paramiko

log = logging.getLogger("pbench.tunnel")

#: what a forward leads to, asked at each new connection (the sink's port is
#: known only once it is up)
Resolver = Callable[[], "tuple[str, int]"]

CHUNK = 1 << 18


def pump(chan: paramiko.Channel, sock: socket.socket) -> None:
    """Copy bytes both ways until either side closes; then close both."""
    try:
        while True:
            readable, _, _ = select.select([chan, sock], [], [], 5.0)
            if chan in readable:
                data = chan.recv(CHUNK)
                if not data:
                    break
                sock.sendall(data)
            if sock in readable:
                data = sock.recv(CHUNK)
                if not data:
                    break
                chan.sendall(data)
            if chan.closed:
                break
    except OSError as exc:
        log.debug("forwarded connection ended: %s", exc)
    finally:
        chan.close()
        sock.close()


def _start_pump(chan: paramiko.Channel, sock: socket.socket) -> None:
    threading.Thread(target=pump, args=(chan, sock), name="tunnel-pump", daemon=True).start()


class Tunnel:
    """The forwards of one remote host; closed with its SSH connection."""

    def __init__(self, host: str, transport: paramiko.Transport) -> None:
        self.host = host
        self.transport = transport
        self._exposed: dict[int, Resolver] = {}
        self._listeners: dict[int, socket.socket] = {}
        self._closed = threading.Event()

    # --- remote host -> controller ---------------------------------------------

    def expose(self, target: Resolver) -> int:
        """A port on the remote host's 127.0.0.1 that leads to ``target()`` here."""
        port = self.transport.request_port_forward("127.0.0.1", 0, handler=self._incoming)
        self._exposed[int(port)] = target
        return int(port)

    def _incoming(
        self,
        chan: paramiko.Channel,
        origin: tuple[str, int],
        server: tuple[str, int],
    ) -> None:
        # Called on paramiko's transport thread: hand the work to a thread of its own.
        resolver = self._exposed.get(int(server[1]))
        threading.Thread(
            target=self._connect_exposed, args=(chan, resolver), name="tunnel-in", daemon=True
        ).start()

    def _connect_exposed(self, chan: paramiko.Channel, resolver: Resolver | None) -> None:
        if resolver is None:
            chan.close()
            return
        try:
            sock = socket.create_connection(resolver(), timeout=10.0)
        except (OSError, LookupError) as exc:
            log.warning("host %s: forwarded connection refused here: %s", self.host, exc)
            chan.close()
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pump(chan, sock)

    # --- controller -> remote host -----------------------------------------------

    def forward_to(self, remote_port: int, remote_host: str = "127.0.0.1") -> int:
        """A port on the controller's 127.0.0.1 that leads to ``remote_host:remote_port``
        as seen from the remote host; it lasts until :meth:`close_forward` or the tunnel's end."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        local = int(listener.getsockname()[1])
        self._listeners[local] = listener
        threading.Thread(
            target=self._accept,
            args=(listener, (remote_host, remote_port)),
            name="tunnel-out",
            daemon=True,
        ).start()
        return local

    def close_forward(self, local_port: int) -> None:
        """Stop accepting on a local forward; connections already made run to their end."""
        listener = self._listeners.pop(local_port, None)
        if listener is not None:
            _close_listener(listener)

    @property
    def forwards(self) -> int:
        """How many local forwards are open."""
        return len(self._listeners)

    def _accept(self, listener: socket.socket, dest: tuple[str, int]) -> None:
        while not self._closed.is_set():
            try:
                sock, origin = listener.accept()
            except OSError:
                return
            try:
                chan = self.transport.open_channel("direct-tcpip", dest, origin, timeout=10.0)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                log.warning("host %s: cannot reach %s:%d there: %s", self.host, *dest, exc)
                sock.close()
                continue
            _start_pump(chan, sock)

    def close(self) -> None:
        self._closed.set()
        for port in list(self._listeners):
            self.close_forward(port)
        # The remote ports close with the SSH connection; cancelling them one by
        # one would wait on a connection that may be cut.
        self._exposed.clear()


def _close_listener(listener: socket.socket) -> None:
    # shutdown() wakes the thread blocked in accept(); close() alone would not.
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()
