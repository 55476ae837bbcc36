"""The built-in tools work from an installed wheel, not only from a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_wheel_installs_pbench_with_its_builtin_tools(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    wheel = next((tmp_path / "dist").glob("pbench_runner-*.whl"))
    # every package of the source tree is in the wheel
    with zipfile.ZipFile(wheel) as zf:
        shipped = {name.rpartition("/")[0] for name in zf.namelist()}
    source = {
        str(init.parent.relative_to(ROOT)) for init in (ROOT / "pbench_runner").rglob("__init__.py")
    }
    assert source <= shipped, sorted(source - shipped)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    # run from a directory without the checkout, so nothing comes from the source tree
    env = {"PATH": "/usr/bin:/bin", "PBENCH_RUN_DIR": str(tmp_path / "run")}
    out = subprocess.run(
        [str(venv / "bin" / "pbench"), "list-tools", "--available"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    for tool in ("vmstat", "iostat", "mpstat", "pidstat", "sar", "noop"):
        assert f"{tool}  [transient]" in out
    reg = subprocess.run(
        [str(venv / "bin" / "pbench"), "register-tool-set", "heavy"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert reg.returncode == 0, reg.stderr
    origin = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import pbench_runner_tools.sysstat as m; print(m.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert str(venv) in origin
