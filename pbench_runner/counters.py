"""A host's kernel counters, read at the instants a sample starts and stops.

:func:`snapshot` reads the cumulative counters the kernel keeps (CPU time,
memory, disk and network bytes, pressure stall time); :func:`summarize`
turns two snapshots into what the host did between them.  Because the
counters are cumulative, the figures are exact for any window, however
short, to the counters' resolution; a tool sampling every few seconds
cannot say what happened during a 50 ms sample.

CPU time.  ``/proc/stat`` counts in USER_HZ ticks (10 ms), so over a 50 ms
window it is off by up to ±10 ms (±20 %).  The root cgroup's CPU usage
(``cpuacct.usage`` in nanoseconds on cgroup v1, ``cpu.stat``'s
``usage_usec`` on v2) counts the same time finer, so ``cpu_seconds`` (the
host's CPU seconds used in the window, summed over CPUs) and ``busy_pct``
(``cpu_seconds`` over ``seconds x ncpu``) come from it when it is readable
and agrees with ``/proc/stat`` -- where it does not (a container's own
cgroup), ``/proc/stat`` is used; ``cpu_seconds_source`` says which.  Busy
is every kind of CPU time but idle and iowait.  Per-CPU figures come from
``/proc/stat`` alone.

Memory used is ``MemTotal - MemAvailable`` (:data:`MEM_USED_DEFINITION`),
everywhere in pbench.  Disk bytes are whole devices' sectors x 512; a device
stacked on others (device-mapper, md: ``/sys/block/<dev>/slaves`` is not
empty) is listed but left out of the totals, whose bytes its members count
already.  Network totals leave out ``lo``.

This module runs on every host's Tool Meister (Python 3.9 and up, standard
library only).  Its parsers are pure functions of the files' text.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Collection, Mapping
from typing import Any, Final

#: the fields of a ``/proc/stat`` cpu line that are kept (guest time is in user already)
CPU_FIELDS: Final = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
#: the fields of ``/proc/meminfo`` that are kept, in kB
MEM_FIELDS: Final = ("MemTotal", "MemAvailable", "MemFree", "Buffers", "Cached")
#: a host's start and stop snapshots of a sample, in its ``tools-<group>/<host>/``
COUNTERS_FILE: Final = "counters.json"
#: the one meaning of "memory used"
MEM_USED_DEFINITION: Final = "MemTotal - MemAvailable"
#: the meaning of "CPU busy"
CPU_BUSY_DEFINITION: Final = "all CPU time but idle and iowait"
#: bytes per sector of /proc/diskstats, whatever the device's own sector size
SECTOR: Final = 512
#: the resources of /proc/pressure
PRESSURE: Final = ("cpu", "memory", "io")
#: block devices that are never counted
SKIP_DISKS: Final = ("loop", "ram")
#: interfaces left out of the network totals
SKIP_NET: Final = ("lo",)
#: where the host's whole CPU usage may be read finer than /proc/stat: path, unit in ns
CGROUP_CPU: Final = (
    ("/sys/fs/cgroup/cpuacct/cpuacct.usage", 1),
    ("/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage", 1),
    ("/sys/fs/cgroup/cpuacct,cpu/cpuacct.usage", 1),
    ("/sys/fs/cgroup/cpu.stat", 1000),
    ("/sys/fs/cgroup/unified/cpu.stat", 1000),
)

Snapshot = dict[str, Any]


# --- parsers: text in, numbers out -------------------------------------------------


def parse_stat(text: str) -> dict[str, dict[str, int]]:
    """``/proc/stat``'s cpu lines: ``{"cpu": {...}, "cpu0": {...}}`` in USER_HZ ticks."""
    found: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        if not line.startswith("cpu"):
            continue
        name, *values = line.split()
        try:
            numbers = [int(v) for v in values[: len(CPU_FIELDS)]]
        except ValueError:
            continue
        numbers += [0] * (len(CPU_FIELDS) - len(numbers))  # old kernels: fewer fields
        found[name] = dict(zip(CPU_FIELDS, numbers))
    return found


def parse_meminfo(text: str) -> dict[str, int]:
    """The :data:`MEM_FIELDS` of ``/proc/meminfo``, in kB."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in MEM_FIELDS:
            try:
                found[key] = int(rest.split()[0])
            except (IndexError, ValueError):
                continue
    return found


def parse_diskstats(
    text: str, whole: Collection[str] | None = None, stacked: Collection[str] = ()
) -> dict[str, dict[str, int]]:
    """``/proc/diskstats`` per whole device (a name in ``whole``, the entries of
    ``/sys/block``; every device when ``whole`` is None), loop and ram devices
    left out.  A device in ``stacked`` is marked ``"stacked": 1``."""
    found: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) < 14:
            continue
        name = tokens[2]
        if name.startswith(SKIP_DISKS):
            continue
        if whole is not None and name.replace("/", "!") not in whole:
            continue  # a partition
        try:
            entry = {
                "reads": int(tokens[3]),
                "read_sectors": int(tokens[5]),
                "writes": int(tokens[7]),
                "write_sectors": int(tokens[9]),
                "io_ticks_ms": int(tokens[12]),
            }
        except ValueError:
            continue
        if name in stacked:
            entry["stacked"] = 1
        found[name] = entry
    return found


def parse_net_dev(text: str) -> dict[str, dict[str, int]]:
    """``/proc/net/dev`` per interface: bytes and packets received and sent."""
    found: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        name, colon, rest = line.partition(":")
        fields = rest.split()
        if not colon or len(fields) < 10:
            continue  # the two header lines
        try:
            found[name.strip()] = {
                "rx_bytes": int(fields[0]),
                "rx_packets": int(fields[1]),
                "tx_bytes": int(fields[8]),
                "tx_packets": int(fields[9]),
            }
        except ValueError:
            continue
    return found


def parse_pressure(text: str) -> dict[str, int]:
    """A ``/proc/pressure/<resource>`` file: the ``some`` and ``full`` totals, in µs."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        for field in fields:
            if field.startswith("total="):
                with contextlib.suppress(ValueError):
                    found[kind] = int(field[6:])
    return found


def parse_cgroup_cpu(text: str, unit_ns: int) -> int | None:
    """The CPU time used by a cgroup, in ns: a ``cpuacct.usage`` file (``unit_ns``
    1) or a ``cpu.stat`` file's ``usage_usec`` (``unit_ns`` 1000)."""
    try:
        if unit_ns == 1:
            return int(text.split()[0])
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) * unit_ns
    except (IndexError, ValueError):
        pass
    return None


# --- reading --------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read()
    except (OSError, ValueError):  # absent, unreadable, or not text
        return None


def _block_devices() -> tuple[set[str] | None, set[str]]:
    """The whole block devices (``/sys/block``) and those stacked on others."""
    try:
        names = set(os.listdir("/sys/block"))
    except OSError:
        return None, set()
    stacked = set()
    for name in names:
        if name.startswith(SKIP_DISKS):
            continue
        try:
            if os.listdir(f"/sys/block/{name}/slaves"):
                stacked.add(name.replace("!", "/"))
        except OSError:
            continue
    return names, stacked


def _cgroup_cpu() -> dict[str, Any] | None:
    for path, unit_ns in CGROUP_CPU:
        text = _read(path)
        if text is not None and (ns := parse_cgroup_cpu(text, unit_ns)) is not None:
            return {"ns": ns, "source": path, "resolution_ns": unit_ns}
    return None


def snapshot() -> Snapshot:
    """The host's counters now (JSON-serialisable).  A file that cannot be read
    leaves its part out; this never raises for a missing file."""
    snap: Snapshot = {"version": 1, "time": time.time(), "monotonic": time.monotonic()}
    try:
        snap["user_hz"] = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        snap["user_hz"] = 100
    if (text := _read("/proc/stat")) is not None:
        snap["cpu"] = parse_stat(text)
    if (usage := _cgroup_cpu()) is not None:
        snap["cgroup_cpu"] = usage
    if (text := _read("/proc/meminfo")) is not None:
        snap["memory"] = parse_meminfo(text)
    if (text := _read("/proc/diskstats")) is not None:
        snap["disks"] = parse_diskstats(text, *_block_devices())
    if (text := _read("/proc/net/dev")) is not None:
        snap["net"] = parse_net_dev(text)
    pressure = {}
    for resource in PRESSURE:
        text = _read(f"/proc/pressure/{resource}")
        if text is not None and (found := parse_pressure(text)):
            pressure[resource] = found
    if pressure:
        snap["pressure"] = pressure
    return snap


# --- what happened between two snapshots -------------------------------------------


def _delta(a: Mapping[str, Any], b: Mapping[str, Any], key: str) -> int | None:
    """``b[key] - a[key]``; None when either is missing or the counter went back."""
    x, y = a.get(key), b.get(key)
    if not isinstance(x, (int, float)) or not isinstance(y, (int, float)) or y < x:
        return None
    return int(y - x)


def _rate(amount: float, seconds: float) -> float | None:
    return amount / seconds if seconds > 0 else None


def _kib_s(amount: float, seconds: float) -> float | None:
    return amount / 1024 / seconds if seconds > 0 else None


def _seconds(start: Snapshot, stop: Snapshot) -> float:
    for key in ("monotonic", "time"):
        a, b = start.get(key), stop.get(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b >= a:
            return float(b - a)
    return 0.0


def _cpu_jiffies(a: Mapping[str, int], b: Mapping[str, int]) -> tuple[int, int]:
    """(busy, total) ticks between two cpu lines; a field that went back counts 0."""
    d = {f: max(0, int(b.get(f, 0)) - int(a.get(f, 0))) for f in CPU_FIELDS}
    total = sum(d.values())
    return total - d["idle"] - d["iowait"], total


def summarize_cpu(start: Snapshot, stop: Snapshot, seconds: float) -> dict[str, Any] | None:
    """CPU busy % and CPU seconds of the window; None without ``/proc/stat``."""
    a, b = start.get("cpu") or {}, stop.get("cpu") or {}
    if "cpu" not in a or "cpu" not in b:
        return None
    hz = int(stop.get("user_hz") or start.get("user_hz") or 100)
    per_cpu: dict[str, float | None] = {}
    for name in sorted(set(a) & set(b) - {"cpu"}, key=lambda n: (len(n), n)):
        busy, total = _cpu_jiffies(a[name], b[name])
        per_cpu[name] = 100 * busy / total if total else None
    ncpu = len(per_cpu) or 1
    busy, total = _cpu_jiffies(a["cpu"], b["cpu"])
    cpu_seconds, source, resolution = busy / hz, "/proc/stat", 1 / hz
    note = None
    fine = _cgroup_seconds(start, stop)
    if fine is not None:
        seconds_fine, path, resolution_fine = fine
        # the cgroup counts the same time finer; a cgroup that is not the
        # host's root (a container's) shows less than /proc/stat does
        slack = 2 / hz + 0.02 * seconds * ncpu + 0.1 * cpu_seconds
        if abs(seconds_fine - cpu_seconds) <= slack:
            cpu_seconds, source, resolution = seconds_fine, path, resolution_fine
        else:
            note = (
                f"{path} says {seconds_fine:.4f} CPU s, /proc/stat {cpu_seconds:.4f} s: "
                "not the whole host's, /proc/stat used"
            )
    if seconds > 0:
        busy_pct: float | None = min(100.0, 100 * cpu_seconds / (seconds * ncpu))
    else:
        busy_pct = 100 * busy / total if total else None
    if source == "/proc/stat" and seconds * ncpu < 100 * resolution:
        short = f"the window holds {total} ticks of 1/{hz} s: busy % is approximate"
        note = f"{note}; {short}" if note else short
    found: dict[str, Any] = {
        "busy_pct": busy_pct,
        "cpu_seconds": cpu_seconds,
        "cpu_seconds_source": source,
        "counter_unit_s": resolution,
        "ncpu": ncpu,
        "user_hz": hz,
        "jiffies": {"busy": busy, "total": total},
        "per_cpu_busy_pct": per_cpu,
        "definition": CPU_BUSY_DEFINITION,
    }
    if note:
        found["note"] = note
    return found


def _cgroup_seconds(start: Snapshot, stop: Snapshot) -> tuple[float, str, float] | None:
    a, b = start.get("cgroup_cpu") or {}, stop.get("cgroup_cpu") or {}
    if not a or a.get("source") != b.get("source"):
        return None
    ns = _delta(a, b, "ns")
    if ns is None:
        return None
    return ns / 1e9, str(a["source"]), float(a.get("resolution_ns") or 1) / 1e9


def summarize_memory(start: Snapshot, stop: Snapshot) -> dict[str, Any] | None:
    """Memory used (:data:`MEM_USED_DEFINITION`) at both ends, in MiB."""

    def used(snap: Snapshot) -> float | None:
        mem = snap.get("memory") or {}
        if "MemTotal" not in mem or "MemAvailable" not in mem:
            return None
        return float(mem["MemTotal"] - mem["MemAvailable"]) / 1024

    first, last = used(start), used(stop)
    if first is None or last is None:
        return None
    return {
        "definition": MEM_USED_DEFINITION,
        "used_mib_start": first,
        "used_mib_stop": last,
        "used_mib_mean": (first + last) / 2,
        "total_mib": (stop.get("memory") or {})["MemTotal"] / 1024,
    }


def summarize_disks(start: Snapshot, stop: Snapshot, seconds: float) -> dict[str, Any] | None:
    """Bytes read and written per whole device and in all, and their rates."""
    a, b = start.get("disks"), stop.get("disks")
    if a is None or b is None:
        return None
    devices: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    read = written = 0
    for name in sorted(set(a) & set(b)):
        deltas = {
            k: _delta(a[name], b[name], k)
            for k in ("reads", "read_sectors", "writes", "write_sectors", "io_ticks_ms")
        }
        if any(v is None for v in deltas.values()):
            skipped[name] = "a counter went back (device reset or counter wrapped)"
            continue
        r, w = (deltas["read_sectors"] or 0) * SECTOR, (deltas["write_sectors"] or 0) * SECTOR
        stacked = bool(b[name].get("stacked"))
        devices[name] = {
            "read_bytes": r,
            "write_bytes": w,
            "reads": deltas["reads"],
            "writes": deltas["writes"],
            "kib_s": _kib_s(r + w, seconds),
            "util_pct": None
            if seconds <= 0
            else min(100.0, (deltas["io_ticks_ms"] or 0) / 10 / seconds),
            "stacked": stacked,
        }
        if not stacked:
            read, written = read + r, written + w
    found: dict[str, Any] = {
        "read_bytes": read,
        "write_bytes": written,
        "read_bytes_s": _rate(read, seconds),
        "write_bytes_s": _rate(written, seconds),
        "read_kib_s": _kib_s(read, seconds),
        "write_kib_s": _kib_s(written, seconds),
        "kib_s": _kib_s(read + written, seconds),
        "devices": devices,
    }
    if skipped:
        found["skipped"] = skipped
    return found


def summarize_net(start: Snapshot, stop: Snapshot, seconds: float) -> dict[str, Any] | None:
    """Bytes received and sent per interface and in all (``lo`` left out), and their rates."""
    a, b = start.get("net"), stop.get("net")
    if a is None or b is None:
        return None
    interfaces: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    rx = tx = 0
    for name in sorted(set(a) & set(b)):
        deltas = {
            k: _delta(a[name], b[name], k)
            for k in ("rx_bytes", "rx_packets", "tx_bytes", "tx_packets")
        }
        if any(v is None for v in deltas.values()):
            skipped[name] = "a counter went back (interface reset or counter wrapped)"
            continue
        r, t = deltas["rx_bytes"] or 0, deltas["tx_bytes"] or 0
        interfaces[name] = {**deltas, "kib_s": _kib_s(r + t, seconds)}
        if name not in SKIP_NET:
            rx, tx = rx + r, tx + t
    found: dict[str, Any] = {
        "rx_bytes": rx,
        "tx_bytes": tx,
        "rx_bytes_s": _rate(rx, seconds),
        "tx_bytes_s": _rate(tx, seconds),
        "rx_kib_s": _kib_s(rx, seconds),
        "tx_kib_s": _kib_s(tx, seconds),
        "kib_s": _kib_s(rx + tx, seconds),
        "excluded": list(SKIP_NET),
        "interfaces": interfaces,
    }
    if skipped:
        found["skipped"] = skipped
    return found


def summarize_pressure(start: Snapshot, stop: Snapshot, seconds: float) -> dict[str, Any] | None:
    """The share of the window (%) some (or all) tasks stalled, per resource."""
    a, b = start.get("pressure") or {}, stop.get("pressure") or {}
    found: dict[str, dict[str, float]] = {}
    for resource in PRESSURE:
        if resource not in a or resource not in b or seconds <= 0:
            continue
        for kind in ("some", "full"):
            us = _delta(a[resource], b[resource], kind)
            if us is not None:
                found.setdefault(resource, {})[f"{kind}_pct"] = min(100.0, us / 1e4 / seconds)
    return found or None


def summarize(start: Snapshot, stop: Snapshot) -> dict[str, Any]:
    """What the host did between two :func:`snapshot` s.

    ``seconds`` (monotonic), and where both snapshots hold them: ``cpu``,
    ``memory``, ``disk``, ``net`` and ``pressure``; rates are per second of
    the window, KiB are 1024 bytes.
    """
    seconds = _seconds(start, stop)
    found: dict[str, Any] = {
        "seconds": seconds,
        "start_time": start.get("time"),
        "stop_time": stop.get("time"),
    }
    parts = {
        "cpu": summarize_cpu(start, stop, seconds),
        "memory": summarize_memory(start, stop),
        "disk": summarize_disks(start, stop, seconds),
        "net": summarize_net(start, stop, seconds),
        "pressure": summarize_pressure(start, stop, seconds),
    }
    found.update({k: v for k, v in parts.items() if v is not None})
    return found


def host_measures(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A :func:`summarize` as pbench's per-host measures (``cpu_busy_pct``,
    ``mem_used_mib``, ``disk_kib_s``, ``net_kib_s``): each one's ``mean`` and details."""
    found: dict[str, dict[str, Any]] = {}
    if cpu := summary.get("cpu"):
        found["cpu_busy_pct"] = {
            "mean": cpu["busy_pct"],
            "cpu_seconds": cpu["cpu_seconds"],
            "cpu_seconds_source": cpu["cpu_seconds_source"],
            "ncpu": cpu["ncpu"],
            "per_cpu": cpu["per_cpu_busy_pct"],
            **({"mean_note": cpu["note"]} if cpu.get("note") else {}),
        }
    if mem := summary.get("memory"):
        found["mem_used_mib"] = {
            "mean": mem["used_mib_mean"],
            "start": mem["used_mib_start"],
            "stop": mem["used_mib_stop"],
            "total_mib": mem["total_mib"],
        }
    if disk := summary.get("disk"):
        found["disk_kib_s"] = {
            "mean": disk["kib_s"],
            **{k: disk[k] for k in ("read_bytes", "write_bytes", "read_kib_s", "write_kib_s")},
            "per_device": {
                name: {
                    k: d[k] for k in ("read_bytes", "write_bytes", "kib_s", "util_pct", "stacked")
                }
                for name, d in disk["devices"].items()
            },
        }
    if net := summary.get("net"):
        found["net_kib_s"] = {
            "mean": net["kib_s"],
            **{k: net[k] for k in ("rx_bytes", "tx_bytes", "rx_kib_s", "tx_kib_s")},
            "per_interface": {
                name: {k: i[k] for k in ("rx_bytes", "tx_bytes", "kib_s")}
                for name, i in net["interfaces"].items()
            },
        }
    return found
