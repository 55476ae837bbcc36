"""A third-party tool plugin, installed as a package and found through its entry point."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import HOST, latest_result, pbench_env

EXAMPLE = Path(__file__).parent / "example_plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed (with its metadata) into a directory of its own."""
    site = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build")
    source = build / "example_plugin"  # a build writes beside the sources: not in the checkout
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
        env={**os.environ, "TMPDIR": str(build)},
    )  # fmt: skip
    assert list(site.glob("pbench_loadavg-*.dist-info"))
    return site


def test_an_installed_plugin_is_listed_registered_run_and_its_data_kept(
    plugin_site: Path, run_dir: Path, tmp_path: Path
) -> None:
    env = pbench_env(run_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_site), env["PYTHONPATH"]])

    def pbench(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "pbench_runner", *args],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, f"pbench {' '.join(args)}: {proc.stderr}"
        return proc

    listed = pbench("list-tools", "--available").stdout
    line = next(x for x in listed.splitlines() if x.startswith("loadavg"))
    assert "[transient]" in line and "example plugin" in line and line.endswith("ready")
    assert "--interval (default 1)" in listed
    pbench("register-tool", "--name=loadavg", "--", "--interval=1")
    pbench("user-benchmark", "--sysinfo=none", "--", "sleep", "2.5")
    data = latest_result(run_dir) / "1-default" / "sample1" / "tools-default" / HOST / "loadavg"
    with open(data / "loadavg.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 2
    assert all(float(r["load1"]) >= 0 and r["timestamp"].endswith("+00:00") for r in rows)


def test_a_plugin_that_cannot_load_is_named_with_what_to_do(run_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "pbench_broken-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pbench-broken\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pbench_runner.tools]\nbroken = pbench_broken\n")
    (site / "pbench_broken.py").write_text("raise RuntimeError('a bug at import')\n")
    env = pbench_env(run_dir)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env["PYTHONPATH"]])
    proc = subprocess.run(
        [sys.executable, "-m", "pbench_runner", "list-tools", "--available"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "the tool plugin 'broken'" in proc.stderr and "pbench_broken" in proc.stderr
    assert "a bug at import" in proc.stderr and "fix or uninstall it" in proc.stderr
    assert "Traceback" not in proc.stderr
