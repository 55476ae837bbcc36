"""Where things live and how long waits last.

The run directory (``--run-dir``, ``$PBENCH_RUN_DIR``, default ``./.pbench``)
holds the tool store, live sessions and results.  Deadlines come from
``[tool.pbench.deadlines]`` in ``pyproject.toml`` or ``[deadlines]`` in
``pbench.toml`` in the current directory, then from command-line options.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pbench_runner.errors import UsageError

if TYPE_CHECKING:
    from pbench_runner.remote.options import RemoteOptions

RUN_DIR_ENV = "PBENCH_RUN_DIR"


def run_dir(option: str | os.PathLike[str] | None = None) -> Path:
    """The run directory from the option, the environment or the default."""
    chosen = option or os.environ.get(RUN_DIR_ENV) or ".pbench"
    return Path(chosen).expanduser().absolute()


@dataclass(frozen=True)
class Deadlines:
    """Seconds each kind of wait may last."""

    #: tool-meister-start: Redis, the sink and every meister ready
    startup: float = 30.0
    #: SSH: a remote host answers and authenticates
    connect: float = 10.0
    #: start, stop, sysinfo and terminate actions
    action: float = 60.0
    #: send: includes tarring and uploading every host's data
    send: float = 600.0
    #: how long a meister or the sink waits for a lost Redis (a remote meister:
    #: for its controller's SSH connection) to come back
    reconnect: float = 30.0
    #: tool-meister-stop: processes to exit after terminate
    shutdown: float = 5.0

    def with_overrides(self, **values: float | None) -> Deadlines:
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _tomllib() -> Any:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib


def _read_toml(path: Path) -> dict[str, Any]:
    tomllib = _tomllib()
    try:
        with open(path, "rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc


def project_settings(cwd: Path | None = None) -> dict[str, Any]:
    """``[tool.pbench]`` of pyproject.toml merged with pbench.toml (which wins)."""
    cwd = cwd or Path.cwd()
    settings: dict[str, Any] = dict(
        _read_toml(cwd / "pyproject.toml").get("tool", {}).get("pbench", {})
    )
    settings.update(_read_toml(cwd / "pbench.toml"))
    return settings


def load_deadlines(settings: dict[str, Any] | None = None) -> Deadlines:
    table = (settings if settings is not None else project_settings()).get("deadlines", {})
    if not isinstance(table, dict):
        raise UsageError("[deadlines] in pbench.toml must be a table of seconds, e.g. action = 60")
    known = {f.name for f in fields(Deadlines)}
    values: dict[str, float] = {}
    for name, value in table.items():
        if name not in known:
            raise UsageError(
                f"unknown deadline {name!r} in [deadlines]; known: {', '.join(sorted(known))}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise UsageError(f"deadline {name!r} must be a positive number of seconds")
        values[name] = float(value)
    return Deadlines(**values)


def load_remote(settings: dict[str, Any] | None = None, **overrides: Any) -> RemoteOptions:
    """``[remote]`` of the project settings, then the command line's choices (not None)."""
    from pbench_runner.remote.options import RemoteOptions

    table = (settings if settings is not None else project_settings()).get("remote", {})
    if not isinstance(table, dict):
        raise UsageError('[remote] in pbench.toml must be a table, e.g. mode = "tunnel"')
    values = {**table, **{k: v for k, v in overrides.items() if v is not None}}
    return RemoteOptions.from_dict(values)


def toolsets(run: Path, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shipped tool sets, then the user's from the run directory and project settings.

    ``default`` is ``medium`` unless a user defines it.
    """
    import importlib.resources

    shipped = importlib.resources.files("pbench_runner").joinpath("data/toolsets.toml")
    sets: dict[str, Any] = _tomllib().loads(shipped.read_text())
    sets.update(_read_toml(run / "toolsets.toml"))
    sets.update((settings if settings is not None else project_settings()).get("toolsets", {}))
    sets.setdefault("default", sets["medium"])
    return sets
