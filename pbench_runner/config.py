"""Where things live, how long waits last, and the project's settings.

The run directory (``--run-dir``, ``$PBENCH_RUN_DIR``, default ``./.pbench``)
holds the tool store, live sessions and results.

The project's settings are found the way pytest finds its rootdir: starting
from the current directory (or a given one) and going up, the first directory
that has a ``pbench.toml``, or a ``pyproject.toml`` with a ``[tool.pbench]``
table, is the project's root.  Its ``[tool.pbench]`` is read, then its
``pbench.toml``, whose top-level keys win (a table such as ``[deadlines]`` is
replaced whole, not merged key by key).  Only that one directory is read.

The search stops after the first directory that contains ``.git`` (a
repository's top; settings above a repository are not the project's) and at
the filesystem root.  When nothing is found the settings are empty.

:func:`check_settings` refuses unknown keys (suggesting the nearest known
one) and values of the wrong type, naming the file.  Keys may be spelled with
``-`` or ``_`` (``tool-group`` or ``tool_group``).  Deadlines come from
``[deadlines]``, then from command-line options.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from pbench_runner.errors import UsageError

if TYPE_CHECKING:
    from pbench_runner.remote.options import RemoteOptions

RUN_DIR_ENV = "PBENCH_RUN_DIR"
SETTINGS_FILE = "pbench.toml"
PYPROJECT = "pyproject.toml"
#: a directory holding this is a repository's top: the upward search ends there
BOUNDARY = ".git"


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


# --- finding the settings -------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The project's settings and where they came from."""

    #: ``[tool.pbench]`` of pyproject.toml, then pbench.toml (which wins); top-level keys
    #: spelled with ``_`` (``tool-group`` is stored as ``tool_group``)
    values: dict[str, Any] = field(default_factory=dict)
    #: the files read, pyproject.toml first
    files: tuple[Path, ...] = ()
    #: the directory they are in; None when none was found
    root: Path | None = None
    #: each file's own table as written (pyproject.toml: its ``[tool.pbench]``), for checks
    tables: Mapping[Path, dict[str, Any]] = field(default_factory=dict, repr=False)


def _pbench_table(pyproject: Path) -> dict[str, Any] | None:
    """``[tool.pbench]`` of a pyproject.toml, or None when it has none."""
    data = _read_toml(pyproject) if pyproject.is_file() else {}
    tool = data.get("tool")
    if not isinstance(tool, dict) or "pbench" not in tool:
        return None
    table = tool["pbench"]
    if not isinstance(table, dict):
        raise UsageError(f"{_shown(pyproject)}: tool.pbench must be a table: [tool.pbench]")
    return table


def find_settings(start: str | os.PathLike[str] | None = None) -> Settings:
    """The settings of the nearest directory, from ``start`` (default: cwd) up, that has some.

    A directory has settings when it holds ``pbench.toml`` (even an empty one) or a
    ``pyproject.toml`` with a ``[tool.pbench]`` table.  The search ends after a
    directory holding ``.git``, or at the filesystem root; then the settings are empty.
    ``start`` may be a file: the search starts in its directory.
    """
    here = Path(os.path.normpath(Path(start or Path.cwd()).absolute()))
    if here.is_file():
        here = here.parent
    while True:
        pyproject = _pbench_table(here / PYPROJECT)
        own = here / SETTINGS_FILE
        if pyproject is not None or own.is_file():
            tables: dict[Path, dict[str, Any]] = {}
            if pyproject is not None:
                tables[here / PYPROJECT] = pyproject
            if own.is_file():
                tables[own] = _read_toml(own)
            values: dict[str, Any] = {}
            for path, table in tables.items():
                values.update(_normalized(f"{_shown(path)}: ", table))
            return Settings(values=values, files=tuple(tables), root=here, tables=tables)
        if (here / BOUNDARY).exists() or here.parent == here:
            return Settings()
        here = here.parent


def project_settings(cwd: Path | None = None) -> dict[str, Any]:
    """``[tool.pbench]`` of pyproject.toml merged with pbench.toml (which wins).

    From the nearest directory, ``cwd`` or above, that has them: see :func:`find_settings`.
    """
    return find_settings(cwd).values


def _norm(key: str) -> str:
    return key.replace("-", "_")


def _normalized(prefix: str, table: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``table`` with its keys spelled with ``_``; both spellings of one key are refused."""
    out: dict[str, Any] = {}
    spelled: dict[str, str] = {}
    for key, value in table.items():
        norm = _norm(key)
        if norm in spelled:
            raise UsageError(
                f"{prefix}{spelled[norm]!r} and {key!r}{where} are the same key; keep one"
            )
        spelled[norm] = key
        out[norm] = value
    return out


# --- checking the settings ------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """What a setting's value must be; ``describe`` ends the sentence "... must be "."""

    describe: str
    accepts: Callable[[Any], bool]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


WHOLE = Kind("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = Kind("a number", _is_number)
SECONDS = Kind("a number of seconds greater than 0", lambda v: _is_number(v) and v > 0)
STRING = Kind("a string", lambda v: isinstance(v, str))
BOOL = Kind("true or false", lambda v: isinstance(v, bool))
STRINGS = Kind(
    "a string or a list of strings",
    lambda v: isinstance(v, str) or (isinstance(v, list) and all(isinstance(s, str) for s in v)),
)
#: a table whose keys are the user's own (``[toolsets]``)
TABLE = Kind("a table", lambda v: isinstance(v, dict))

#: A key's spec: a Kind, a Python type standing for one (int, float, str, bool, list,
#: dict), or a table of known keys (a mapping of their specs).
Spec: TypeAlias = "Kind | type | Mapping[str, Spec]"

_KIND_OF_TYPE: dict[type, Kind] = {
    int: WHOLE,
    float: NUMBER,
    str: STRING,
    bool: BOOL,
    list: STRINGS,
    dict: TABLE,
}

DEADLINE_KEYS: dict[str, Spec] = {f.name: SECONDS for f in fields(Deadlines)}

#: the keys every command knows besides ``pbench run``'s and ``[remote]``'s (see known_keys)
SETTINGS_KEYS: dict[str, Spec] = {
    "deadlines": DEADLINE_KEYS,
    "results": {"server": STRING, "token": STRING},
    "toolsets": TABLE,
}


def _remote_keys() -> dict[str, Spec]:
    import typing

    from pbench_runner.remote.options import RemoteOptions

    hints = typing.get_type_hints(RemoteOptions)
    return {f.name: hints[f.name] for f in fields(RemoteOptions)}


def known_keys(extra_keys: Mapping[str, Spec] | None = None) -> dict[str, Spec]:
    """Every key the project's settings may have, with its spec, spelled as documented.

    One list for every command, so that a pbench.toml shared by ``pbench run`` and
    ``user-benchmark`` is valid for both: :data:`SETTINGS_KEYS`, ``[remote]`` (the
    fields of RemoteOptions), ``pbench run``'s discovery patterns and option defaults
    (``runcmd.DISCOVERY`` and ``runcmd.RUN_DEFAULTS``), then ``extra_keys``.
    """
    from pbench_runner import runcmd

    keys: dict[str, Spec] = dict(SETTINGS_KEYS)
    keys["remote"] = _remote_keys()
    keys.update({name: STRING for name in runcmd.DISCOVERY})
    keys.update({name.replace("_", "-"): kind for name, (kind, _) in runcmd.RUN_DEFAULTS.items()})
    keys.update(extra_keys or {})
    return keys


def check_settings(
    settings: Settings,
    known: Mapping[str, Spec] | None = None,
    *,
    extra_keys: Mapping[str, Spec] | None = None,
) -> None:
    """Refuse a key ``known`` (default: :func:`known_keys`) does not have, or a bad value.

    Each file is checked as written, and the UsageError names it, the key and the
    nearest known key, e.g. ``pbench.toml: unknown key 'sampels' (did you mean
    'samples'?)``, or the value, e.g. ``pbench.toml: samples = "7" must be a whole number``.
    """
    spec = dict(known if known is not None else known_keys())
    spec.update(extra_keys or {})
    for path, table in settings.tables.items():
        _check_table(path, _table_name(path), table, spec)


def _table_name(path: Path | None) -> str:
    return "tool.pbench" if path is not None and path.name == PYPROJECT else ""


def _shown(path: Path | None) -> str:
    """A file as a message shows it: relative to the current directory when inside it."""
    if path is None:
        return ""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _kind(spec: Spec) -> Kind | Mapping[str, Spec]:
    if isinstance(spec, type):
        if spec not in _KIND_OF_TYPE:
            raise TypeError(f"no settings kind for {spec.__name__}")
        return _KIND_OF_TYPE[spec]
    return spec


def _show(value: Any) -> str:
    """A value as TOML writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_show(v)}" for k, v in value.items()) + " }"
    return str(value)


def _respelled(name: str, like: str) -> str:
    """A known key spelled the way the user spells keys (``-`` or ``_``)."""
    if "-" in like and "_" not in like:
        return name.replace("_", "-")
    if "_" in like and "-" not in like:
        return name.replace("-", "_")
    return name


def _check_table(
    path: Path | None, name: str, table: Mapping[str, Any], spec: Mapping[str, Spec]
) -> None:
    prefix = f"{_shown(path)}: " if path is not None else ""
    where = f" in [{name}]" if name else ""
    header = f"[{name}] " if name else ""
    _normalized(prefix, table, where)  # both spellings of one key
    by_norm = {_norm(k): k for k in spec}
    for key, value in table.items():
        known = by_norm.get(_norm(key))
        if known is None:
            close = difflib.get_close_matches(_norm(key), list(by_norm), n=1)
            hint = (
                f"did you mean {_respelled(by_norm[close[0]], key)!r}?"
                if close
                else f"known keys: {', '.join(sorted(spec))}"
            )
            raise UsageError(f"{prefix}unknown key {key!r}{where} ({hint})")
        kind = _kind(spec[known])
        if isinstance(kind, Kind):
            if not kind.accepts(value):
                raise UsageError(f"{prefix}{header}{key} = {_show(value)} must be {kind.describe}")
        elif not isinstance(value, dict):
            inner = f"{name}.{key}" if name else key
            raise UsageError(f"{prefix}{header}{key} = {_show(value)} must be a table: [{inner}]")
        else:
            _check_table(path, f"{name}.{key}" if name else key, value, kind)


def _only(settings: Settings | Mapping[str, Any] | None, key: str, spec: Spec) -> Any:
    """The checked table ``key`` of the settings (default: :func:`find_settings`), or {}."""
    if settings is None:
        settings = find_settings()
    if isinstance(settings, Settings):
        for path, table in settings.tables.items():
            if key in table:
                _check_table(path, _table_name(path), {key: table[key]}, {key: spec})
        return settings.values.get(key, {})
    if key in settings:
        _check_table(None, "", {key: settings[key]}, {key: spec})
    return settings.get(key, {})


def load_deadlines(settings: Settings | Mapping[str, Any] | None = None) -> Deadlines:
    """Deadlines from ``[deadlines]``: each key a field of Deadlines, each value seconds > 0."""
    table = _only(settings, "deadlines", DEADLINE_KEYS)
    return Deadlines(**{_norm(k): float(v) for k, v in table.items()})


def load_remote(
    settings: Settings | Mapping[str, Any] | None = None, **overrides: Any
) -> RemoteOptions:
    """``[remote]`` of the project settings, then the command line's choices (not None)."""
    from pbench_runner.remote.options import RemoteOptions

    table = _only(settings, "remote", _remote_keys())
    values = {
        **{_norm(k): v for k, v in table.items()},
        **{k: v for k, v in overrides.items() if v is not None},
    }
    return RemoteOptions.from_dict(values)


def toolsets(run: Path, settings: Settings | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The shipped tool sets, then the user's from the run directory and project settings.

    ``default`` is ``medium`` unless a user defines it.
    """
    import importlib.resources

    shipped = importlib.resources.files("pbench_runner").joinpath("data/toolsets.toml")
    sets: dict[str, Any] = _tomllib().loads(shipped.read_text())
    sets.update(_read_toml(run / "toolsets.toml"))
    sets.update(_only(settings, "toolsets", TABLE))
    sets.setdefault("default", sets["medium"])
    return sets
