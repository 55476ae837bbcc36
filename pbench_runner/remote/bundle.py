"""The self-contained meister that is copied to a remote host.

A zip of ``pbench_runner``, the built-in tool plugins and the pure-Python
packages the meister imports, with a ``__main__.py`` and the entry points the
plugin manager looks for.  It is built byte for byte the same from the same
sources, so its SHA-256 names it: on a host it is unpacked once into
``<remote dir>/bundles/<digest>/`` and later runs skip the copy.  It runs as
``python3 -I -S <dir>/__main__.py``: isolated from the host's site packages
(``-S``: not even the distribution's ``dist-packages``) and environment, so it
proves itself complete.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pbench_runner import __version__
from pbench_runner.errors import InfrastructureError

#: what the meister imports; the last ones are needed by older Pythons than
#: the controller's (redis on < 3.11.3 and < 3.11, tomli on < 3.11)
PACKAGES: Final = (
    "pbench_runner",
    "pbench_runner_tools",
    "redis",
    "requests",
    "urllib3",
    "idna",
    "charset_normalizer",
    "certifi",
    "pluggy",
    "async_timeout",
    "typing_extensions",
    "tomli",
)
#: compiled extensions cannot load from a bundle; their pure-Python fallbacks do
_SKIP_SUFFIXES: Final = (".so", ".pyd", ".pyc", ".pyo")
_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
_ENTRY_GROUP: Final = "pbench_runner.tools"

#: ``python3 -I`` leaves the script's directory off sys.path (3.11+): put it back
MAIN: Final = """\
import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pbench_runner.remote.hostside import main
sys.exit(main())
"""

#: run on the host: unpack a copied zip into its cache directory and move it
#: into place in one rename (a concurrent run sees all of it or none).  Python
#: caches the bytecode of what the meister imports there on first use.
INSTALL: Final = """\
import os, shutil, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
tmp = dest + ".tmp-" + str(os.getpid())
try:
    with zipfile.ZipFile(src) as zf:
        zf.extractall(tmp)
except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
try:
    os.rename(tmp, dest)
except OSError:
    if not os.path.isdir(dest):
        raise
    shutil.rmtree(tmp)
os.unlink(src)
"""

#: run on the host before anything is copied: the Python version, the remote
#: directory made absolute (and created), whether this bundle is cached, and
#: the controller's address as the host sees it (``$SSH_CONNECTION``)
PROBE: Final = """\
import json, os, sys
base = os.path.abspath(os.path.expanduser(sys.argv[1]))
os.makedirs(os.path.join(base, "bundles"), exist_ok=True)
main = os.path.join(base, "bundles", sys.argv[2], "__main__.py")
client = (os.environ.get("SSH_CONNECTION") or "").split()[:1]
print(json.dumps({"python": list(sys.version_info[:3]), "base": base, "cached": os.path.isfile(main), "client": client[0] if client else ""}))
"""


@dataclass(frozen=True)
class Bundle:
    data: bytes
    digest: str
    version: str

    @property
    def name(self) -> str:
        return f"{self.version}-{self.digest}"


def _package_files(name: str) -> list[tuple[str, Path]]:
    spec = importlib.util.find_spec(name)
    if spec is None:
        return []
    if spec.submodule_search_locations:
        root = Path(next(iter(spec.submodule_search_locations)))
        found = []
        for path in sorted(root.rglob("*")):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix in _SKIP_SUFFIXES:
                continue
            found.append((f"{name}/{path.relative_to(root).as_posix()}", path))
        return found
    if spec.origin and spec.origin.endswith(".py"):
        return [(f"{name}.py", Path(spec.origin))]
    return []


def _entry_points() -> str:
    lines = [f"[{_ENTRY_GROUP}]"]
    for ep in sorted(importlib.metadata.entry_points(group=_ENTRY_GROUP), key=lambda e: e.name):
        if ep.value.split(".")[0] in ("pbench_runner", "pbench_runner_tools"):
            lines.append(f"{ep.name} = {ep.value}")
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=1)
def build() -> Bundle:
    """The bundle of the code this controller runs (built once per process)."""
    members: dict[str, bytes] = {"__main__.py": MAIN.encode()}
    for package in PACKAGES:
        for arcname, path in _package_files(package):
            members[arcname] = path.read_bytes()
    if "redis/__init__.py" not in members or "pluggy/__init__.py" not in members:
        raise InfrastructureError(
            "cannot build the remote bundle: redis or pluggy is not importable"
        )
    info = f"pbench_runner_bundle-{__version__}.dist-info"
    members[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: pbench-runner-bundle\nVersion: {__version__}\n"
    ).encode()
    members[f"{info}/entry_points.txt"] = _entry_points().encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for arcname in sorted(members):
            zinfo = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            zinfo.external_attr = 0o644 << 16
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(zinfo, members[arcname])
    data = buf.getvalue()
    return Bundle(data=data, digest=hashlib.sha256(data).hexdigest()[:20], version=__version__)
