"""What machine and which commit a run measured, in pytest-benchmark's terms.

:func:`machine_info` gives the keys pytest-benchmark writes under
``machine_info`` (its ``cpu`` part is read from ``/proc/cpuinfo`` instead of
py-cpuinfo, with py-cpuinfo's key names), plus ``cpu_governor``.
:func:`commit_info` gives pytest-benchmark's ``commit_info`` from ``git``.
Both take a few milliseconds and never raise: what cannot be found is left
out, ``None``, or described under ``error``.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

#: seconds any one git command may take
GIT_TIMEOUT = 2.0

_GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")

#: ``platform.machine()`` -> py-cpuinfo's ``arch``
_ARCH = (
    (r"^(x86_64|amd64|x64)$", "X86_64"),
    (r"^(i[3-6]86|x86)$", "X86_32"),
    (r"^(aarch64|arm64|armv8.*)$", "ARM_8"),
    (r"^armv7.*$", "ARM_7"),
    (r"^(ppc64|ppc64le)$", "PPC_64"),
    (r"^s390x$", "S390X"),
    (r"^riscv64$", "RISCV_64"),
    (r"^loongarch64$", "LOONG_64"),
    (r"^mips64.*$", "MIPS_64"),
    (r"^sparc64$", "SPARC_64"),
)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip(), 0)
    except ValueError:
        return None


def _friendly_hz(hz: int) -> str:
    return f"{hz / 1e9:.4f} GHz"


def _first_cpu(text: str) -> dict[str, str]:
    """The ``key: value`` lines of the first processor in ``/proc/cpuinfo``
    (with the machine-wide lines some architectures put after the last one)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_info() -> dict[str, Any]:
    """pytest-benchmark's ``machine_info["cpu"]`` (py-cpuinfo's keys), from ``/proc/cpuinfo``."""
    machine = platform.machine()
    bits = 64 if sys.maxsize > 2**32 else 32
    arch = next((a for pattern, a in _ARCH if re.match(pattern, machine.lower())), machine.upper())
    info: dict[str, Any] = {
        "python_version": "{}.{}.{}.{}.{} ({} bit)".format(*sys.version_info, bits),
        "arch": arch,
        "bits": bits,
        "count": os.cpu_count() or 1,
        "arch_string_raw": machine,
    }
    fields = _first_cpu(_read(Path("/proc/cpuinfo")) or "")
    vendor = fields.get("vendor_id") or fields.get("CPU implementer")
    if vendor:
        info["vendor_id_raw"] = vendor
    brand = (
        fields.get("model name")
        or fields.get("cpu model")
        or fields.get("Hardware")
        or fields.get("cpu")
        or platform.processor()
    )
    if brand:
        info["brand_raw"] = brand
    # the advertised clock is in the brand ("... @ 2.60GHz"), the current one in "cpu MHz"
    advertised = re.search(r"@\s*([0-9.]+)\s*([GM])Hz", brand or "")
    if advertised:
        scale = 1e9 if advertised[2] == "G" else 1e6
        hz = int(float(advertised[1]) * scale)
        info["hz_advertised_friendly"] = _friendly_hz(hz)
        info["hz_advertised"] = [hz, 0]
    mhz = fields.get("cpu MHz")
    if mhz:
        try:
            hz = int(float(mhz) * 1e6)
        except ValueError:
            pass
        else:
            info["hz_actual_friendly"] = _friendly_hz(hz)
            info["hz_actual"] = [hz, 0]
            if not advertised:
                info["hz_advertised_friendly"] = info["hz_actual_friendly"]
                info["hz_advertised"] = [hz, 0]
    for key, name in (("stepping", "stepping"), ("model", "model"), ("family", "cpu family")):
        value = _int(fields.get(name))
        if value is not None:
            info[key] = value
    flags = fields.get("flags") or fields.get("Features")
    if flags:
        info["flags"] = sorted(set(flags.split()))
    return info


def cpu_governor() -> str | None:
    """cpu0's cpufreq scaling governor (``performance``, ``powersave``...), or None."""
    text = _read(_GOVERNOR)
    return text.strip() or None if text is not None else None


def machine_info() -> dict[str, Any]:
    """pytest-benchmark's ``machine_info`` keys, plus ``cpu_governor``. Never raises."""
    info: dict[str, Any] = {}
    try:
        implementation = platform.python_implementation()
        implementation_version = platform.python_version()
        pypy = getattr(sys, "pypy_version_info", None)
        if implementation == "PyPy" and pypy is not None:
            implementation_version = "{}.{}.{}".format(*pypy[:3])
            if pypy.releaselevel != "final":
                implementation_version += "-{}{}".format(*pypy[3:])
        info.update(
            node=platform.node(),
            processor=platform.processor(),
            machine=platform.machine(),
            python_compiler=platform.python_compiler(),
            python_implementation=implementation,
            python_implementation_version=implementation_version,
            python_version=platform.python_version(),
            python_build=list(platform.python_build()),
            release=platform.release(),
            system=platform.system(),
        )
        info["cpu"] = cpu_info()
    except Exception as exc:  # a half-known machine is better than a failed run
        info["error"] = f"{type(exc).__name__}: {exc}"
    try:
        info["cpu_governor"] = cpu_governor()
    except Exception:
        info["cpu_governor"] = None
    return info


def machine_id(info: dict[str, Any] | None = None) -> str:
    """pytest-benchmark's storage directory name for a machine: ``Linux-CPython-3.11-64bit``."""
    if info is None:
        return "{}-{}-{}-{}".format(
            platform.system(),
            platform.python_implementation(),
            ".".join(platform.python_version_tuple()[:2]),
            platform.architecture()[0],
        )
    version = ".".join(str(info.get("python_version", "")).split(".")[:2])
    bits = info.get("cpu", {}).get("bits", 64)
    return f"{info.get('system')}-{info.get('python_implementation')}-{version}-{bits}bit"


def _git(path: Path, *args: str) -> str:
    env = dict(
        os.environ, GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C", LANGUAGE="C"
    )
    done = subprocess.run(
        ["git", "--no-optional-locks", *args],
        cwd=path,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
    )
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()
        raise RuntimeError(message[0] if message else f"git {args[0]} exited {done.returncode}")
    return done.stdout.strip()


def _project(path: Path, toplevel: str) -> str:
    try:
        url = _git(path, "config", "--get", "remote.origin.url")
    except (OSError, RuntimeError, subprocess.SubprocessError):
        url = ""
    parts = [p for p in re.split(r"[/:\s\\]|\.git$", url) if p]
    return parts[-1] if parts else Path(toplevel).name


def commit_info(path: Path) -> dict[str, Any]:
    """pytest-benchmark's ``commit_info`` of the git checkout at ``path``. Never raises.

    ``id`` is the full hash of HEAD, ``time``/``author_time`` its committer and
    author dates, ``dirty`` whether tracked files differ from it (untracked files
    do not count, as with ``git describe --dirty``).  Outside a checkout, or when
    git fails, ``error`` says why and ``id`` is ``"unversioned"``/``"unknown"``.
    Nothing is written: git runs without its optional index lock.
    """
    path = Path(path)
    info: dict[str, Any] = {
        "id": "unknown",
        "time": None,
        "author_time": None,
        "dirty": False,
        "project": path.resolve().name if path.exists() else path.name,
        "branch": "(unknown)",
    }
    if not path.is_dir():
        info["error"] = f"not a directory: {path}"
        return info
    try:
        try:
            toplevel, branch = _git(
                path, "rev-parse", "--show-toplevel", "--abbrev-ref", "HEAD"
            ).splitlines()
        except RuntimeError as exc:
            if "not a git repository" in str(exc).lower():
                info["id"] = "unversioned"
            raise
        info["project"] = _project(path, toplevel)
        info["branch"] = "(detached head)" if branch == "HEAD" else branch
        commit, committed, authored = _git(path, "log", "-1", "--format=%H%n%cI%n%aI").splitlines()
        info.update(id=commit, time=committed, author_time=authored)
        status = _git(path, "status", "--porcelain", "--untracked-files=no")
        info["dirty"] = bool(status)
    except subprocess.TimeoutExpired:
        info["error"] = f"git took more than {GIT_TIMEOUT:g} s"
    except FileNotFoundError as exc:
        info["error"] = f"cannot run git: {exc}"
    except Exception as exc:
        info["error"] = str(exc) or type(exc).__name__
    return info
