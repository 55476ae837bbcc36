"""The built-in sysinfo items, collected for real on this machine (no mocks)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from pbench_runner_tools import sysinfo as builtin

from pbench_runner.errors import UsageError
from pbench_runner.pluginmanager import get_plugin_manager
from pbench_runner.sysinfo import SysinfoItem, collect, run_command, select_items

from .conftest import running

ALL_NAMES = [
    "kernel",
    "cpu",
    "memory",
    "block",
    "mitigations",
    "packages",
    "kernel_config",
    "sysctl",
    "network",
    "environment",
    "libvirt",
    "sos",
]

#: Items whose sources exist on any Linux machine the tests run on.
MUST_SUCCEED = ["kernel", "cpu", "memory", "block", "network", "environment"]


def _items() -> Sequence[SysinfoItem]:
    return builtin.pbench_sysinfo_items()


def _text(path: Path) -> str:
    assert path.is_file(), f"{path} missing"
    text = path.read_text(errors="replace")
    assert text.strip(), f"{path} is empty"
    return text


@pytest.fixture(scope="module")
def collected(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, dict[str, dict[str, object]]]:
    """The default items, collected once for the whole module."""
    outdir = tmp_path_factory.mktemp("sysinfo")
    status = collect(select_items(_items(), "default"), outdir)
    return outdir, status


def test_items_are_registered_through_the_entry_point() -> None:
    pm = get_plugin_manager()
    names = [item.name for result in pm.hook.pbench_sysinfo_items() for item in result]
    for name in ALL_NAMES:
        assert names.count(name) == 1, name


def test_item_names_defaults_and_timeouts() -> None:
    items = {item.name: item for item in _items()}
    assert list(items) == ALL_NAMES
    # sos report takes minutes: only asked for by name or with --sysinfo=all
    assert [n for n, item in items.items() if not item.default] == ["sos"]
    assert [i.name for i in select_items(_items(), "default")] == ALL_NAMES[:-1]
    assert [i.name for i in select_items(_items(), "all")] == ALL_NAMES
    assert items["packages"].timeout == 60
    assert all(item.summary for item in items.values())


def test_every_default_item_has_a_directory_and_a_status(collected) -> None:
    outdir, status = collected
    recorded = json.loads((outdir / "sysinfo.json").read_text())
    assert recorded == status
    for item in select_items(_items(), "default"):
        assert (outdir / item.name).is_dir(), item.name
        assert item.name in recorded, item.name
        entry = recorded[item.name]
        assert isinstance(entry["ok"], bool)
        if not entry["ok"]:
            assert entry["error"], item.name


@pytest.mark.parametrize("name", MUST_SUCCEED)
def test_items_that_can_succeed_here_are_ok(collected, name: str) -> None:
    _, status = collected
    assert status[name]["ok"], status[name]


def test_kernel_files(collected) -> None:
    outdir, _ = collected
    d = outdir / "kernel"
    assert "Linux" in _text(d / "uname.txt")
    assert "Linux version" in _text(d / "version")
    assert _text(d / "cmdline") == Path("/proc/cmdline").read_text()
    if Path("/etc/os-release").is_file():
        assert "ID=" in _text(d / "os-release")


def test_cpu_files_and_skips(collected) -> None:
    outdir, _ = collected
    d = outdir / "cpu"
    assert "processor" in _text(d / "cpuinfo")
    assert "Architecture" in _text(d / "lscpu.txt")
    if (d / "lscpu.json").exists():
        assert "lscpu" in json.loads((d / "lscpu.json").read_text())
    skipped = (d / "skipped.txt").read_text() if (d / "skipped.txt").exists() else ""
    if shutil.which("numactl"):
        assert "available:" in _text(d / "numactl.txt")
    else:
        assert "numactl: not installed" in skipped
        if Path("/sys/devices/system/node").is_dir():
            assert _text(d / "numa-sysfs.txt").startswith("node")
    if shutil.which("lstopo-no-graphics"):
        assert _text(d / "lstopo.txt")
    else:
        assert "lstopo: not installed" in skipped


def test_memory_files(collected) -> None:
    outdir, _ = collected
    d = outdir / "memory"
    assert "MemTotal" in _text(d / "meminfo")
    assert "Mem:" in _text(d / "free.txt")


def test_block_files(collected) -> None:
    outdir, _ = collected
    d = outdir / "block"
    assert "major" in _text(d / "partitions")
    assert " / " in _text(d / "mounts")
    if (d / "lsblk.json").exists():
        assert "blockdevices" in json.loads((d / "lsblk.json").read_text())
    else:
        assert _text(d / "lsblk.txt")


def test_network_files(collected) -> None:
    outdir, _ = collected
    d = outdir / "network"
    assert "lo:" in _text(d / "net-dev")
    if (d / "ip-addr.json").exists():
        ifnames = {entry["ifname"] for entry in json.loads((d / "ip-addr.json").read_text())}
        assert "lo" in ifnames
    else:
        assert "lo" in _text(d / "ip-addr.txt")


def test_mitigations(collected) -> None:
    outdir, status = collected
    vulns = Path("/sys/devices/system/cpu/vulnerabilities")
    if not vulns.is_dir():
        assert not status["mitigations"]["ok"]
        assert "does not exist" in str(status["mitigations"]["error"])
        return
    assert status["mitigations"]["ok"], status["mitigations"]
    d = outdir / "mitigations"
    names = sorted(p.name for p in vulns.iterdir() if p.is_file())
    lines = _text(d / "mitigations.txt").splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == names
    as_json = json.loads((d / "mitigations.json").read_text())
    assert sorted(as_json) == names
    assert f"{names[0]}: {as_json[names[0]]}" == lines[0]


def test_packages(collected) -> None:
    outdir, status = collected
    d = outdir / "packages"
    if shutil.which("dpkg-query"):
        assert status["packages"]["ok"], status["packages"]
        first = _text(d / "dpkg.txt").splitlines()[0]
        assert len(first.split("\t")) == 2
    elif shutil.which("rpm"):
        assert status["packages"]["ok"], status["packages"]
        assert _text(d / "rpm.txt")
    else:
        assert "neither dpkg-query nor rpm" in str(status["packages"]["error"])


def test_kernel_config(collected) -> None:
    outdir, status = collected
    release = os.uname().release
    if Path(f"/boot/config-{release}").is_file() or Path("/proc/config.gz").is_file():
        assert status["kernel_config"]["ok"], status["kernel_config"]
        assert "CONFIG_" in _text(outdir / "kernel_config" / "config")
    else:
        entry = status["kernel_config"]
        assert not entry["ok"]
        assert str(entry["error"]).startswith("FileNotFoundError: no kernel config")


def test_sysctl(collected) -> None:
    outdir, status = collected
    if not shutil.which("sysctl"):
        assert not status["sysctl"]["ok"]
        return
    assert status["sysctl"]["ok"], status["sysctl"]
    assert "kernel.ostype = Linux" in _text(outdir / "sysctl" / "sysctl.txt")


def test_environment_is_sorted_and_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PBENCH_REDIS_PASSWORD", "hunter2-secret-value")
    monkeypatch.setenv("PBENCH_API_TOKEN", "tok-value-42")
    monkeypatch.setenv("PBENCH_PLAIN_SETTING", "visible-value")
    status = collect(select_items(_items(), "environment"), tmp_path)
    assert status["environment"]["ok"], status["environment"]
    text = _text(tmp_path / "environment" / "environment.txt")
    lines = text.splitlines()
    assert "PBENCH_REDIS_PASSWORD=***" in lines
    assert "PBENCH_API_TOKEN=***" in lines
    assert "PBENCH_PLAIN_SETTING=visible-value" in lines
    assert "hunter2-secret-value" not in text
    assert "tok-value-42" not in text
    names = [line.split("=", 1)[0] for line in lines]
    assert names == sorted(names)


def test_redact_environment_keeps_one_line_per_variable() -> None:
    lines = builtin.redact_environment(
        {"B": "two\nlines", "A": "x", "ssh_key_path": "/k", "MY_SECRET": "s"}
    )
    assert lines == ["A=x", "B=two\\nlines", "MY_SECRET=***", "ssh_key_path=***"]


def test_select_items_selections() -> None:
    items = _items()
    assert select_items(items, "none") == []
    assert select_items(items, "") == []
    assert [item.name for item in select_items(items, "all")] == ALL_NAMES
    assert [item.name for item in select_items(items, "default")] == ALL_NAMES[:-1]  # not sos
    assert [item.name for item in select_items(items, "kernel,memory")] == ["kernel", "memory"]
    assert [item.name for item in select_items(items, " memory , kernel ")] == ["memory", "kernel"]


def test_select_items_unknown_name() -> None:
    with pytest.raises(UsageError, match="'no_such_item'") as info:
        select_items(_items(), "kernel,no_such_item")
    assert "kernel" in str(info.value)  # the known names are listed


def test_a_failing_item_is_recorded_and_others_succeed(tmp_path: Path) -> None:
    def explode(target: Path) -> None:
        (target / "partial.txt").write_text("written before failing\n")
        raise ValueError("kaboom: simulated failure")

    broken = SysinfoItem("broken", "always fails", explode)
    items = [broken, *select_items(_items(), "kernel,memory")]
    status = collect(items, tmp_path)
    assert status["broken"] == {
        "ok": False,
        "seconds": status["broken"]["seconds"],
        "error": "ValueError: kaboom: simulated failure",
    }
    assert (tmp_path / "broken" / "partial.txt").is_file()
    assert status["kernel"]["ok"], status["kernel"]
    assert status["memory"]["ok"], status["memory"]
    assert "MemTotal" in _text(tmp_path / "memory" / "meminfo")
    recorded = json.loads((tmp_path / "sysinfo.json").read_text())
    assert set(recorded) == {"broken", "kernel", "memory"}


def test_absent_optional_programs_are_recorded_not_fatal(tmp_path: Path) -> None:
    """libvirt without virsh is skipped (noted); sos without sos is a failed item."""
    items = [i for i in _items() if i.name in ("libvirt", "sos")]
    env_path = os.environ["PATH"]
    os.environ["PATH"] = str(tmp_path / "empty-bin")
    try:
        status = collect(items, tmp_path / "out")
    finally:
        os.environ["PATH"] = env_path
    assert status["libvirt"]["ok"]
    assert "virsh: not installed" in (tmp_path / "out" / "libvirt" / "skipped.txt").read_text()
    assert not status["sos"]["ok"] and "sos is not installed" in str(status["sos"]["error"])


def test_each_item_has_its_own_deadline_and_its_commands_are_stopped(tmp_path: Path) -> None:
    marker = f"{secrets.randbelow(10**6) + 1}.{secrets.randbelow(1000):03d}"

    def slow_command(target: Path) -> None:  # a shell whose child sleeps on
        run_command(["sh", "-c", f"sleep {marker}; true"], target / "out.txt")

    def stuck(target: Path) -> None:  # Python that ignores its deadline
        time.sleep(3.5)

    def quick(target: Path) -> None:
        (target / "ok.txt").write_text("ok\n")

    items = [
        SysinfoItem("slow", "a command past its item's deadline", slow_command, timeout=1.0),
        SysinfoItem("stuck", "python past its deadline", stuck, timeout=1.0),
        SysinfoItem("quick", "done at once", quick, timeout=30.0),
    ]
    began = time.monotonic()
    status = collect(items, tmp_path / "out")
    took = time.monotonic() - began
    assert took < 10.0  # not the 30 s of the longest deadline, nor the sleep
    assert not status["slow"]["ok"] and "did not finish within 1.0 s (stopped)" in str(
        status["slow"]["error"]
    )
    assert not status["stuck"]["ok"] and "deadline of 1 s" in str(status["stuck"]["error"])
    assert status["quick"]["ok"]
    assert not running(f"sleep {marker}")  # the whole process group went
