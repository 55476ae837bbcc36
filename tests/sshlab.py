"""Real separate hosts for the SSH tests: network namespaces running real sshd.

Each host is a Linux network namespace joined to a bridge in the root
namespace by a veth pair, on a /24 of ``10.231.0.0/16`` (a range used only
by these tests; the octet is chosen free at start).  Each runs its own
OpenSSH ``sshd`` on port 22 of its own address, with a generated host key;
the controller gets a generated client key, an ssh config with an alias per
host, and a known_hosts file.  Before anything connects, :meth:`SSHLab.verify`
checks that every namespace exists and that its only route is the lab's
subnet, so no test traffic can leave the machine.  :meth:`SSHLab.close`
removes every process in the namespaces, the namespaces, the veths and the
bridge, whatever happened.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import shutil
import signal
import subprocess
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType

import pytest

from pbench_runner import procs
from pbench_runner.daemon import accepts
from pbench_runner.remote.hostside import RUN_ENV
from pbench_runner.remote.options import RemoteOptions

LAB_NET = ipaddress.ip_network("10.231.0.0/16")
SSHD = "/usr/sbin/sshd"
#: per-namespace files that `ip netns exec` mounts over /etc
NETNS_ETC = Path("/etc/netns")


def ip(*args: str, check: bool = True) -> str:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def available() -> str:
    """Why the lab cannot run here, or ''."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not (shutil.which("ip") and Path(SSHD).exists() and shutil.which("ssh-keygen")):
        return "needs iproute2, openssh-server and openssh-client (scripts/install.sh)"
    probe = f"pbtprobe{secrets.token_hex(3)}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return f"cannot create network namespaces here: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return ""


@dataclass
class LabHost:
    name: str
    netns: str
    veth: str
    address: str
    home: Path
    sshd: subprocess.Popen[bytes] | None = None


class SSHLab:
    """``with SSHLab(tmp, ["nodeA", "nodeB"]) as lab: lab.options()``."""

    def __init__(self, tmp: Path, names: list[str]) -> None:
        self.tmp = tmp
        self.tag = secrets.token_hex(3)
        self.bridge = f"pbt{self.tag}br"
        self.octet = self._free_octet()
        self.gateway = f"10.231.{self.octet}.1"
        self.hosts = {
            name: LabHost(
                name=name,
                netns=f"pbt{self.tag}{i}",
                veth=f"pbt{self.tag}{i}r",
                address=f"10.231.{self.octet}.{10 + i}",
                home=tmp / "hosts" / name,
            )
            for i, name in enumerate(names)
        }
        self.key = tmp / "id_ed25519"
        self.known_hosts = tmp / "known_hosts"
        self.ssh_config = tmp / "ssh_config"

    @staticmethod
    def _free_octet() -> int:
        used = ip("-4", "addr") + ip("-4", "route")
        for _ in range(50):
            octet = random.randint(1, 254)
            if f"10.231.{octet}." not in used:
                return octet
        raise RuntimeError("no free /24 in 10.231.0.0/16 for the SSH lab")

    # --- building ---------------------------------------------------------------

    def __enter__(self) -> SSHLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.tmp.mkdir(parents=True, exist_ok=True)
        _keygen(self.key)
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        known = []
        config = []
        for host in self.hosts.values():
            inside = host.veth[:-1] + "n"
            ip("netns", "add", host.netns)
            ip("link", "add", host.veth, "type", "veth", "peer", "name", inside)
            ip("link", "set", inside, "netns", host.netns)
            ip("link", "set", host.veth, "master", self.bridge)
            ip("link", "set", host.veth, "up")
            ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", inside)
            ip("-n", host.netns, "link", "set", inside, "up")
            ip("-n", host.netns, "link", "set", "lo", "up")
            host.home.mkdir(parents=True, exist_ok=True)
            self._own_home(host)
            hostkey = host.home / "ssh_host_ed25519_key"
            _keygen(hostkey)
            pub = Path(f"{hostkey}.pub").read_text().split()
            known.append(f"{host.address} {pub[0]} {pub[1]}")
            config += [
                f"Host {host.name}",
                f"    HostName {host.address}",
                "    User root",
                "    Port 22",
                f"    IdentityFile {self.key}",
                f"    UserKnownHostsFile {self.known_hosts}",
                "",
            ]
        self.known_hosts.write_text("\n".join(known) + "\n")
        self.ssh_config.write_text("\n".join(config))
        self.verify()
        for host in self.hosts.values():
            self._start_sshd(host)

    @staticmethod
    def _own_home(host: LabHost) -> None:
        """Give root a home of its own on the lab host, as on a separate machine.

        ``ip netns exec`` mounts the files of ``/etc/netns/<netns>/`` over
        ``/etc``: sshd in the namespace reads this passwd, so a session's
        shell starts in the host's directory and not in this machine's /root
        (whose .bashrc here runs ``pyenv init``: 0.2 s for every command).
        """
        etc = NETNS_ETC / host.netns
        etc.mkdir(parents=True, exist_ok=True)
        lines = []
        for line in Path("/etc/passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 7 and fields[0] == "root":
                fields[5] = str(host.home)
            lines.append(":".join(fields))
        (etc / "passwd").write_text("\n".join(lines) + "\n")

    def _start_sshd(self, host: LabHost) -> None:
        authorized = self.tmp / "authorized_keys"
        authorized.write_text(Path(f"{self.key}.pub").read_text())
        conf = host.home / "sshd_config"
        conf.write_text(
            "\n".join(
                [
                    f"ListenAddress {host.address}:22",
                    f"HostKey {host.home / 'ssh_host_ed25519_key'}",
                    f"PidFile {host.home / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "AllowTcpForwarding yes",
                    "ClientAliveInterval 1",
                    "ClientAliveCountMax 3",
                    "MaxStartups 200",
                    "MaxSessions 50",
                    "Subsystem sftp internal-sftp",
                    "PrintMotd no",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        host.sshd = procs.spawn(
            ["ip", "netns", "exec", host.netns, SSHD, "-D", "-e", "-f", str(conf)],
            stdout=open(host.home / "sshd.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        if not procs.wait_until(lambda: accepts(host.address, 22), 10):
            raise RuntimeError(
                f"sshd for {host.name} did not start: {procs.tail(host.home / 'sshd.log')}"
            )

    def verify(self) -> None:
        """Every namespace exists and routes only to the lab's subnet; else no test runs."""
        namespaces = ip("netns", "list")
        subnet = f"10.231.{self.octet}.0/24"
        for host in self.hosts.values():
            assert host.netns in namespaces, f"namespace {host.netns} is missing"
            routes = [r for r in ip("-n", host.netns, "-4", "route").splitlines() if r.strip()]
            assert routes and all(r.startswith(subnet) for r in routes), (
                f"namespace {host.netns} has routes outside the lab: {routes}"
            )
            via = ip("-4", "route", "get", host.address)
            assert f"dev {self.bridge}" in via, f"{host.address} is not routed to the lab: {via}"
            assert ipaddress.ip_address(host.address) in LAB_NET

    # --- using ------------------------------------------------------------------

    def options(self, **changes: object) -> RemoteOptions:
        values: dict[str, object] = {
            # Debian's own Python, with none of the project's packages
            "python": "/usr/bin/python3",
            "ssh_config": str(self.ssh_config),
            "remote_dir": str(self.tmp / "hosts" / "{host}" / "pbench"),
        }
        values.update(changes)
        return RemoteOptions(**values)  # type: ignore[arg-type]

    def toml(self, **deadlines: float) -> str:
        """A pbench.toml that points pbench at this lab."""
        lines = [
            "[remote]",
            f'ssh_config = "{self.ssh_config}"',
            f'remote_dir = "{self.tmp / "hosts" / "{host}" / "pbench"}"',
            'python = "/usr/bin/python3"',
        ]
        if deadlines:
            lines.append("[deadlines]")
            lines += [f"{k} = {v}" for k, v in deadlines.items()]
        return "\n".join(lines) + "\n"

    def remote_dir(self, name: str) -> Path:
        return self.hosts[name].home / "pbench"

    def pids(self, name: str, run_id: str) -> list[int]:
        """The processes of run ``run_id`` on host ``name`` (inside its namespace)."""
        inside = {int(p) for p in ip("netns", "pids", self.hosts[name].netns).split()}
        return [p for p in procs.run_pids(run_id, RUN_ENV) if p in inside]

    def leftovers(self, name: str) -> dict[int, str]:
        """Every process inside host ``name`` but its sshd listener and SSH sessions."""
        inside = [int(p) for p in ip("netns", "pids", self.hosts[name].netns).split()]
        found = {p: procs.cmdline(p) for p in inside if procs.pid_alive(p)}
        return {p: c for p, c in found.items() if c and not c.startswith(("sshd", SSHD))}

    def cut(self, name: str) -> None:
        ip("link", "set", self.hosts[name].veth, "down")

    def restore(self, name: str) -> None:
        ip("link", "set", self.hosts[name].veth, "up")

    # --- removing -------------------------------------------------------------------

    def close(self) -> None:
        for host in self.hosts.values():
            pids = ip("netns", "pids", host.netns, check=False).split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            if host.sshd is not None:
                procs.stop(host.sshd, timeout=2)
            procs.wait_until(partial(_empty, host.netns), 3)
            ip("netns", "del", host.netns, check=False)
            ip("link", "del", host.veth, check=False)
            if host.netns.startswith("pbt"):  # only what _own_home made
                shutil.rmtree(NETNS_ETC / host.netns, ignore_errors=True)
        ip("link", "del", self.bridge, check=False)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _empty(netns: str) -> bool:
    return not ip("netns", "pids", netns, check=False).split()


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pbench-test", "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=10,
    )


def lab_or_skip() -> None:
    why = available()
    if why:
        pytest.skip(why)


def wait_gone(lab: SSHLab, run_id: str, timeout: float) -> bool:
    return procs.wait_until(lambda: not any(lab.pids(n, run_id) for n in lab.hosts), timeout, 0.1)
