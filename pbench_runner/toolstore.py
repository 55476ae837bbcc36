"""The tool store: which tools, with which options, run on which hosts.

One JSON file per tool group, ``<run-dir>/tools/<group>.json``, meant to be
read by a person::

    {"group": "default",
     "hosts": {"node-a": {"labels": ["db"], "tools": {"vmstat": {"interval": 3}}}}}

Every change is validated first (tool name and options through the tool's
plugin, host names), then written atomically under a lock: a refused change
leaves the file as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pbench_runner.errors import ToolStoreError, UsageError
from pbench_runner.netutil import valid_hostname
from pbench_runner.pluginmanager import ToolRegistry
from pbench_runner.tools import OptionValue

_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


def local_hostname() -> str:
    """The name the local host is registered under by default."""
    return socket.gethostname()


def is_local(host: str) -> bool:
    return host in ("localhost", "127.0.0.1", socket.gethostname(), socket.getfqdn())


@dataclass
class HostTools:
    labels: list[str] = field(default_factory=list)
    tools: dict[str, dict[str, OptionValue]] = field(default_factory=dict)


@dataclass
class ToolGroup:
    name: str
    hosts: dict[str, HostTools] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.name,
            "hosts": {
                host: {"labels": ht.labels, "tools": ht.tools}
                for host, ht in sorted(self.hosts.items())
            },
        }

    @property
    def empty(self) -> bool:
        return not any(ht.tools for ht in self.hosts.values())


def check_group_name(name: str) -> str:
    if not _GROUP.match(name):
        raise ToolStoreError(
            f"bad tool group name {name!r}: use letters, digits, '.', '_' or '-' (64 at most)"
        )
    return name


def parse_remotes(text: str | None) -> list[str]:
    """``H1,H2`` or ``@file`` (one host per line, ``#`` comments) -> host names."""
    if not text:
        return [local_hostname()]
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise ToolStoreError(f"cannot read the remotes file {path}: {exc}") from exc
        names = [ln.split("#", 1)[0].strip() for ln in lines]
    else:
        names = [part.strip() for part in text.split(",")]
    hosts = [n for n in names if n]
    if not hosts:
        raise ToolStoreError(f"no host names in {text!r}")
    for host in hosts:
        if not valid_hostname(host):
            raise ToolStoreError(f"bad host name {host!r}: use a DNS name or an IPv4 address")
    return list(dict.fromkeys(hosts))


def parse_labels(text: str | None) -> list[str]:
    labels = [part.strip() for part in (text or "").split(",") if part.strip()]
    for label in labels:
        if not _LABEL.match(label):
            raise ToolStoreError(f"bad label {label!r}: use letters, digits, '.', '_', ':' or '-'")
    return labels


class ToolStore:
    """The tool store of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "tools"

    def path(self, group: str) -> Path:
        return self.dir / f"{check_group_name(group)}.json"

    def groups(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return sorted(p.stem for p in self.dir.glob("*.json"))

    def load(self, group: str) -> ToolGroup:
        path = self.path(group)
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return ToolGroup(group)
        except (OSError, ValueError) as exc:
            raise ToolStoreError(
                f"the tool store file {path} is corrupt ({exc}); fix it by hand or remove it "
                f"with `pbench clear-tools --group={group}`"
            ) from exc
        try:
            hosts = {
                str(host): HostTools(
                    labels=[str(x) for x in entry.get("labels", [])],
                    tools={str(t): dict(o) for t, o in entry.get("tools", {}).items()},
                )
                for host, entry in raw["hosts"].items()
            }
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ToolStoreError(
                f"the tool store file {path} is corrupt (unexpected layout: {exc!r}); fix it "
                f"by hand or remove it with `pbench clear-tools --group={group}`"
            ) from exc
        return ToolGroup(group, hosts)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _save(self, group: ToolGroup) -> None:
        path = self.path(group.name)
        if group.empty:
            path.unlink(missing_ok=True)
            return
        fd, temp = tempfile.mkstemp(dir=self.dir, prefix=f".{group.name}.", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            json.dump(group.to_json(), fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(temp, path)

    def register(
        self,
        registry: ToolRegistry,
        group: str,
        tools: dict[str, dict[str, str]],
        hosts: Sequence[str],
        labels: Sequence[str] = (),
    ) -> ToolGroup:
        """Register ``tools`` (name -> raw options) on ``hosts``; all or nothing."""
        check_group_name(group)
        checked: dict[str, dict[str, OptionValue]] = {}
        for name, raw in tools.items():
            try:
                spec = registry.get(name)
            except UsageError as exc:
                raise ToolStoreError(str(exc)) from None
            checked[spec.name] = spec.validate(raw)
        with self._locked():
            current = self.load(group)
            for host in hosts:
                entry = current.hosts.setdefault(host, HostTools())
                if labels:
                    entry.labels = list(labels)
                entry.tools.update(checked)
            self._save(current)
        return current

    def clear(
        self,
        group: str | None = None,
        tool: str | None = None,
        hosts: Sequence[str] | None = None,
    ) -> list[str]:
        """Remove registrations; returns ``group/host/tool`` of each one removed."""
        removed: list[str] = []
        if group and tool is None and not hosts:
            # The whole group goes, even when its file is corrupt.
            with self._locked():
                path = self.path(group)
                if path.exists():
                    try:
                        current = self.load(group)
                    except ToolStoreError:
                        removed.append(f"{group}/* (corrupt file removed)")
                    else:
                        removed.extend(
                            f"{group}/{h}/{t}" for h, e in current.hosts.items() for t in e.tools
                        )
                    path.unlink()
            return removed
        with self._locked():
            for name in [group] if group else self.groups():
                current = self.load(name)
                for host in list(current.hosts):
                    if hosts and host not in hosts:
                        continue
                    entry = current.hosts[host]
                    for t in list(entry.tools):
                        if tool is None or t == tool:
                            del entry.tools[t]
                            removed.append(f"{name}/{host}/{t}")
                    if not entry.tools:
                        del current.hosts[host]
                self._save(current)
        return removed
