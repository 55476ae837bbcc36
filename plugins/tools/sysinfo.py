"""``sysinfo``: the built-in sysinfo items, a host's configuration at run start and end.

Every item is a small function that writes files into the directory it is
given (see :class:`~pbench_runner.sysinfo.SysinfoItem`).  A program an item
only *may* use (``numactl``, ``lstopo-no-graphics``, ...) is skipped when it is
absent, and so is an optional file; each skip is recorded as a
``name: reason`` line in the item's ``skipped.txt``, which exists only when
something was skipped.  Anything else that goes wrong raises, and the item is
then recorded as failed in ``sysinfo.json`` without failing the run.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from pbench_runner import hookimpl
from pbench_runner.sysinfo import SysinfoItem, run_bounded, run_command, time_left

#: Environment variables whose name contains one of these have their value hidden.
SENSITIVE_NAME_PARTS = ("PASSWORD", "TOKEN", "SECRET", "KEY")
REDACTED = "***"

VULNERABILITIES_DIR = Path("/sys/devices/system/cpu/vulnerabilities")
NODE_DIR = Path("/sys/devices/system/node")
#: seconds a sos report may take
SOS_TIMEOUT = 900.0
OS_RELEASE_FILES = (Path("/etc/os-release"), Path("/usr/lib/os-release"))


# --- helpers ----------------------------------------------------------------


class _Skips:
    """The optional sources an item did without; written to ``skipped.txt``."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.lines: list[str] = []

    def add(self, name: str, reason: str) -> None:
        self.lines.append(f"{name}: {reason}")

    def write(self) -> None:
        """Write ``skipped.txt`` if anything was skipped."""
        if self.lines:
            (self.target / "skipped.txt").write_text("\n".join(self.lines) + "\n")


def _copy(src: Path, dst: Path) -> None:
    """Copy ``src`` (often a /proc or /sys file whose size reads as 0) to ``dst``."""
    dst.write_bytes(src.read_bytes())


def _run_optional(argv: Sequence[str], out: Path, skips: _Skips, timeout: float = 20.0) -> bool:
    """Run ``argv`` into ``out`` if its program is installed; else record the skip.

    Returns whether the program ran.  A program that is present but fails
    still raises, as with :func:`run_command`.
    """
    if shutil.which(argv[0]) is None:
        skips.add(argv[0], "not installed")
        return False
    run_command(argv, out, timeout=timeout)
    return True


def _run_with_fallback(
    preferred: Sequence[str], preferred_out: Path, fallback: Sequence[str], fallback_out: Path
) -> None:
    """Run ``preferred``; if it exits non-zero (e.g. an unsupported option), run ``fallback``.

    The failed attempt's output is removed so that only usable files remain.
    """
    try:
        run_command(preferred, preferred_out)
    except RuntimeError:
        preferred_out.unlink(missing_ok=True)
        run_command(fallback, fallback_out)


def _run_tolerant(argv: Sequence[str], out: Path, err: Path, timeout: float = 20.0) -> int:
    """Run ``argv`` with stdout in ``out`` and stderr in ``err``; return its exit status.

    Unlike :func:`run_command`, a non-zero exit is accepted as long as the
    program produced output (``sysctl -a`` exits 255 when some keys cannot be
    read, after printing every one it could).  ``err`` is removed when empty.
    """
    if shutil.which(argv[0]) is None:
        raise FileNotFoundError(f"{argv[0]} is not installed")
    with open(err, "wb") as err_fh:
        status = run_bounded(argv, out, err_fh, time_left(timeout))
    if status != 0 and out.stat().st_size == 0:
        tail = err.read_text(errors="replace").strip().splitlines()[-3:]
        detail = "; ".join(tail) or "no output"
        raise RuntimeError(f"{' '.join(argv)} exited with status {status} and no output: {detail}")
    if err.stat().st_size == 0:
        err.unlink()
    return status


# --- items ------------------------------------------------------------------


def collect_kernel(target: Path) -> None:
    """``uname -a``, /proc/version, /proc/cmdline and the OS release file."""
    skips = _Skips(target)
    _copy(Path("/proc/version"), target / "version")
    _copy(Path("/proc/cmdline"), target / "cmdline")
    for candidate in OS_RELEASE_FILES:
        if candidate.is_file():
            _copy(candidate, target / "os-release")
            break
    else:
        skips.add("os-release", "neither " + " nor ".join(map(str, OS_RELEASE_FILES)) + " exists")
    skips.write()
    run_command(["uname", "-a"], target / "uname.txt")


def _numa_from_sysfs(out: Path, skips: _Skips) -> None:
    """Describe the NUMA nodes from /sys when ``numactl`` is absent."""
    if not NODE_DIR.is_dir():
        skips.add(str(NODE_DIR), "does not exist")
        return
    lines = []
    for node in sorted(NODE_DIR.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        fields = [node.name]
        for attr in ("cpulist", "distance"):
            path = node / attr
            if path.is_file():
                fields.append(f"{attr}={path.read_text().strip()}")
        lines.append(" ".join(fields))
    out.write_text("\n".join(lines) + "\n" if lines else "")


def collect_cpu(target: Path) -> None:
    """``lscpu`` (and ``lscpu -J``), /proc/cpuinfo, NUMA topology and ``lstopo``."""
    skips = _Skips(target)
    try:
        _copy(Path("/proc/cpuinfo"), target / "cpuinfo")
        if not _run_optional(["numactl", "--hardware"], target / "numactl.txt", skips):
            _numa_from_sysfs(target / "numa-sysfs.txt", skips)
        lstopo = "lstopo-no-graphics" if shutil.which("lstopo-no-graphics") else "lstopo"
        _run_optional([lstopo, "--of", "console"], target / "lstopo.txt", skips)
        run_command(["lscpu"], target / "lscpu.txt")
        try:
            run_command(["lscpu", "-J"], target / "lscpu.json")
        except RuntimeError as exc:
            (target / "lscpu.json").unlink(missing_ok=True)
            skips.add("lscpu -J", f"not supported ({exc})")
    finally:
        skips.write()


def collect_memory(target: Path) -> None:
    """/proc/meminfo and ``free -b``."""
    _copy(Path("/proc/meminfo"), target / "meminfo")
    run_command(["free", "-b"], target / "free.txt")


def collect_block(target: Path) -> None:
    """``lsblk -J -O`` (or plain ``lsblk``), /proc/partitions and /proc/mounts."""
    _copy(Path("/proc/partitions"), target / "partitions")
    _copy(Path("/proc/mounts"), target / "mounts")
    _run_with_fallback(
        ["lsblk", "-J", "-O"], target / "lsblk.json", ["lsblk"], target / "lsblk.txt"
    )


def collect_mitigations(target: Path) -> None:
    """Every CPU vulnerability file as ``name: content`` lines and as JSON."""
    if not VULNERABILITIES_DIR.is_dir():
        raise FileNotFoundError(
            f"{VULNERABILITIES_DIR} does not exist (kernel too old or no sysfs)"
        )
    found: dict[str, str] = {}
    for path in sorted(VULNERABILITIES_DIR.iterdir()):
        if not path.is_file():
            continue
        try:
            found[path.name] = path.read_text(errors="replace").strip()
        except OSError as exc:
            found[path.name] = f"unreadable: {exc.strerror or exc}"
    lines = "".join(f"{name}: {content}\n" for name, content in found.items())
    (target / "mitigations.txt").write_text(lines)
    (target / "mitigations.json").write_text(json.dumps(found, indent=2, sort_keys=True) + "\n")


def collect_packages(target: Path) -> None:
    """The installed packages, from dpkg if present, else from rpm."""
    if shutil.which("dpkg-query") is not None:
        argv = ["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"]
        run_command(argv, target / "dpkg.txt", timeout=55)
    elif shutil.which("rpm") is not None:
        run_command(["rpm", "-qa"], target / "rpm.txt", timeout=55)
    else:
        raise FileNotFoundError("neither dpkg-query nor rpm is installed")


def collect_kernel_config(target: Path) -> None:
    """The running kernel's build configuration, from /boot or /proc/config.gz."""
    release = os.uname().release
    boot_config = Path(f"/boot/config-{release}")
    proc_config = Path("/proc/config.gz")
    if boot_config.is_file():
        _copy(boot_config, target / "config")
        (target / "source.txt").write_text(f"{boot_config}\n")
    elif proc_config.is_file():
        with gzip.open(proc_config, "rb") as fh:
            (target / "config").write_bytes(fh.read())
        (target / "source.txt").write_text(f"{proc_config}\n")
    else:
        raise FileNotFoundError(
            f"no kernel config for {release}: neither {boot_config} nor {proc_config} exists "
            "(load the configs module for /proc/config.gz)"
        )


def collect_sysctl(target: Path) -> None:
    """``sysctl -a``; unreadable keys (stderr, non-zero exit) are tolerated."""
    status = _run_tolerant(["sysctl", "-a"], target / "sysctl.txt", target / "sysctl.stderr.txt")
    if status != 0:
        (target / "exit-status.txt").write_text(f"{status}\n")


def collect_network(target: Path) -> None:
    """``ip -j addr`` (or ``ip addr``) and /proc/net/dev."""
    _copy(Path("/proc/net/dev"), target / "net-dev")
    _run_with_fallback(
        ["ip", "-j", "addr"], target / "ip-addr.json", ["ip", "addr"], target / "ip-addr.txt"
    )


def redact_environment(environ: dict[str, str]) -> list[str]:
    """Sorted ``KEY=VALUE`` lines, sensitive values replaced by ``***``.

    A name is sensitive when it contains (in any case) one of
    :data:`SENSITIVE_NAME_PARTS`.  Newlines in values are escaped so that
    each variable stays on one line.
    """
    lines = []
    for name in sorted(environ):
        upper = name.upper()
        if any(part in upper for part in SENSITIVE_NAME_PARTS):
            value = REDACTED
        else:
            value = environ[name].replace("\\", "\\\\").replace("\n", "\\n")
        lines.append(f"{name}={value}")
    return lines


def collect_environment(target: Path) -> None:
    """The collecting process's environment, with secrets redacted."""
    lines = redact_environment(dict(os.environ))
    text = "".join(line + "\n" for line in lines)
    (target / "environment.txt").write_text(text, encoding="utf-8", errors="backslashreplace")


def collect_libvirt(target: Path) -> None:
    """libvirt's view of the host and its guests, when ``virsh`` is installed."""
    skips = _Skips(target)
    if _run_optional(["virsh", "-r", "version"], target / "version.txt", skips):
        run_command(["virsh", "-r", "capabilities"], target / "capabilities.xml")
        run_command(["virsh", "-r", "list", "--all", "--name"], target / "domains.txt")
        domains = (target / "domains.txt").read_text().split()
        for name in domains:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            run_command(["virsh", "-r", "dumpxml", name], target / f"domain-{safe}.xml")
    skips.write()


def collect_sos(target: Path) -> None:
    """A full ``sos report`` (slow: minutes), when sos is installed; off by default."""
    if shutil.which("sos") is None:
        raise FileNotFoundError("sos is not installed (Debian package sosreport)")
    run_command(
        ["sos", "report", "--batch", "--quiet", "--tmp-dir", str(target)],
        target / "sos.log",
        timeout=SOS_TIMEOUT,
    )


# --- hook -------------------------------------------------------------------


@hookimpl
def pbench_sysinfo_items() -> Sequence[SysinfoItem]:
    """The built-in sysinfo items."""
    return [
        SysinfoItem("kernel", "uname, kernel version and command line, os-release", collect_kernel),
        SysinfoItem("cpu", "lscpu, /proc/cpuinfo, NUMA topology, lstopo", collect_cpu),
        SysinfoItem("memory", "/proc/meminfo and free -b", collect_memory),
        SysinfoItem("block", "lsblk, /proc/partitions, /proc/mounts", collect_block),
        SysinfoItem("mitigations", "CPU vulnerability mitigations", collect_mitigations),
        SysinfoItem("packages", "installed packages (dpkg or rpm)", collect_packages, timeout=60),
        SysinfoItem("kernel_config", "the running kernel's build config", collect_kernel_config),
        SysinfoItem("sysctl", "sysctl -a", collect_sysctl),
        SysinfoItem("network", "ip addr and /proc/net/dev", collect_network),
        SysinfoItem(
            "environment", "the collector's environment, secrets redacted", collect_environment
        ),
        SysinfoItem("libvirt", "virsh version, capabilities and guests", collect_libvirt),
        SysinfoItem(
            "sos",
            "a full sos report (slow; only with --sysinfo=all or by name)",
            collect_sos,
            default=False,
            timeout=SOS_TIMEOUT + 10,
        ),
    ]
