"""One SSH connection per remote host, opened the way OpenSSH would open it.

Host aliases, ``User``, ``Port``, ``IdentityFile`` and ``UserKnownHostsFile``
come from the user's ssh config (paramiko's own parser); keys from the SSH
agent and ``~/.ssh``.  A host key must be in known_hosts unless the user
asked to accept new keys; a key that differs from the recorded one is always
refused.  :func:`connect_all` contacts every host in parallel under one
deadline and either returns every connection or raises one error that names
each failing host and why, having closed the others.
"""

from __future__ import annotations

import getpass
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from pbench_runner.errors import RemoteHostError
from pbench_runner.remote.options import RemoteOptions

#: SSH-level keepalive, so that a dead peer is noticed by the transport as well
KEEPALIVE_S = 2
#: bigger windows than paramiko's 2 MiB keep a forwarded upload moving
WINDOW_SIZE = 16 << 20


@dataclass(frozen=True)
class Target:
    """Where an alias leads, resolved from the ssh config."""

    alias: str
    hostname: str
    port: int
    user: str
    key_files: list[str] = field(default_factory=list)
    known_hosts: list[Path] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"


def resolve(alias: str, opts: RemoteOptions) -> Target:
    """Apply the ssh config to ``alias``."""
    path = opts.ssh_config_path()
    config = paramiko.SSHConfig.from_path(str(path)) if path.is_file() else paramiko.SSHConfig()
    entry = config.lookup(alias)
    if opts.known_hosts:
        known = [Path(opts.known_hosts).expanduser()]
    elif "userknownhostsfile" in entry:
        known = [Path(p).expanduser() for p in str(entry["userknownhostsfile"]).split()]
    else:
        known = [Path("~/.ssh/known_hosts").expanduser()]
    return Target(
        alias=alias,
        hostname=str(entry.get("hostname", alias)),
        port=int(entry.get("port", 22)),
        user=str(entry.get("user", getpass.getuser())),
        key_files=[str(Path(k).expanduser()) for k in entry.get("identityfile", [])],
        known_hosts=known,
    )


class _AcceptNew(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """Record the key of a host seen for the first time (OpenSSH's ``accept-new``)."""

    _lock = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        # paramiko asks here too when the host offers a key of a type not
        # recorded: a host with *any* recorded key is not new, so refuse.
        known = client.get_host_keys()
        names = [hostname] if hostname.startswith("[") else [hostname, f"[{hostname}]:22"]
        for name in names:
            recorded = known.lookup(name)
            if recorded:
                raise paramiko.BadHostKeyException(hostname, key, next(iter(recorded.values())))
        line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
        with self._lock:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(self.path, "a", encoding="ascii") as fh:
                fh.write(line)
        client.get_host_keys().add(hostname, key.get_name(), key)


def _why(target: Target, exc: BaseException, timeout: float) -> str:
    """What went wrong, and what to do, in the user's words."""
    known = " or ".join(str(p) for p in target.known_hosts)
    if isinstance(exc, paramiko.BadHostKeyException):
        return (
            f"its host key ({exc.key.get_name()}) differs from the one recorded in {known}; "
            "if the host was reinstalled, remove the old entry (ssh-keygen -R); otherwise "
            "someone may be intercepting the connection"
        )
    if isinstance(exc, paramiko.AuthenticationException):
        return (
            f"authentication as {target.user} was refused ({exc}); check the key in your "
            "SSH agent or ~/.ssh, or IdentityFile/User in your ssh config"
        )
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return (
            f"its host key is not in {known}; add it (ssh-keyscan, or connect once with ssh) "
            "or pass --accept-new-host-keys"
        )
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer from {target.where} within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"the name {target.hostname} does not resolve ({exc})"
    if isinstance(exc, OSError):
        return f"cannot connect to {target.where}: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


def connect(target: Target, opts: RemoteOptions, timeout: float) -> paramiko.SSHClient:
    """An authenticated connection to ``target``; raises paramiko's or the OS's errors."""
    client = paramiko.SSHClient()
    keys = client.get_host_keys()
    for path in target.known_hosts:
        if path.is_file():
            keys.load(str(path))
    if opts.accept_new_host_keys:
        client.set_missing_host_key_policy(_AcceptNew(target.known_hosts[0]))
    else:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            target.hostname,
            port=target.port,
            username=target.user,
            key_filename=target.key_files or None,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            channel_timeout=timeout,
        )
    except BaseException:
        client.close()
        raise
    transport = client.get_transport()
    assert transport is not None
    transport.set_keepalive(KEEPALIVE_S)
    # Small requests (Redis commands) go out at once, not after Nagle's wait.
    transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport.default_window_size = WINDOW_SIZE
    return client


def open_connection(alias: str, opts: RemoteOptions, timeout: float) -> paramiko.SSHClient:
    """Like :func:`connect`, from an alias; failures become :class:`RemoteHostError`."""
    try:
        target = resolve(alias, opts)
    except (paramiko.SSHException, OSError, ValueError) as exc:
        raise RemoteHostError(
            alias, f"cannot read the ssh config {opts.ssh_config}: {exc}"
        ) from exc
    try:
        return connect(target, opts, timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise RemoteHostError(alias, _why(target, exc, timeout)) from exc
