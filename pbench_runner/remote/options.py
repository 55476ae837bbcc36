"""The user's choices for remote hosts (command line, or ``[remote]`` in pbench.toml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

from pbench_runner.errors import UsageError

MODES: Final = ("tunnel", "direct")
ON_HOST_FAILURE: Final = ("abort", "continue")
#: where the bundle cache and the per-run directories live on a remote host
DEFAULT_REMOTE_DIR: Final = "~/.cache/pbench-runner"


@dataclass(frozen=True)
class RemoteOptions:
    """How the controller reaches remote hosts and how their meisters reach back."""

    #: OpenSSH client configuration (aliases, User, Port, IdentityFile, UserKnownHostsFile)
    ssh_config: str = "~/.ssh/config"
    #: known hosts file; default: the config's UserKnownHostsFile, else ~/.ssh/known_hosts
    known_hosts: str = ""
    #: add the key of a host missing from known_hosts (a changed key is always refused)
    accept_new_host_keys: bool = False
    #: "tunnel": Redis and the sink over the SSH connection; "direct": plain TCP
    mode: str = "tunnel"
    #: direct mode: the controller's address as the remote hosts see it (default: from SSH)
    address: str = ""
    #: base directory on each remote host; ``{host}`` is replaced by the host's name
    remote_dir: str = DEFAULT_REMOTE_DIR
    #: the interpreter to run on remote hosts
    python: str = "python3"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UsageError(f"remote mode {self.mode!r}: choose one of {', '.join(MODES)}")

    def ssh_config_path(self) -> Path:
        return Path(self.ssh_config).expanduser()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteOptions:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(
                f"unknown remote option(s) {', '.join(unknown)} in [remote]; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**data)
