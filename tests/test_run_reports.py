"""What `pbench run` tells a CI system: pytest's outcomes, short failures, settings.

Each test runs the real ``pbench run`` on a suite it writes, and reads the
exit status, the output and ``result.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .conftest import latest_result

OUTCOMES = """
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("no database")


@pytest.fixture
def leaky():
    yield
    raise RuntimeError("cannot clean up")


def bench_setup_error(sample, broken):
    pass


def bench_teardown_error(sample, leaky):
    pass


@pytest.mark.xfail(reason="known slow path")
def bench_expected_to_fail(sample):
    raise ValueError("slow")


def bench_failing_command(sample):
    sample.run("echo 'disk full' >&2; exit 3")


def bench_fine(sample):
    pass
"""


def _iterations(result: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    top = json.loads((result / "result.json").read_text())
    return {it["nodeid"].rpartition("::")[2]: it for it in top["iterations"]}


def test_pytests_outcomes_are_in_the_results_and_a_failure_is_one_paragraph(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "outcomes"
    suite.mkdir()
    (suite / "bench_outcomes.py").write_text(OUTCOMES)
    junit = tmp_path / "junit.xml"
    proc = pbench(
        "run", str(suite), "--samples=1", "--sysinfo=none", "--no-progress", "--",
        f"--junitxml={junit}",
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout[-3000:]
    found = _iterations(latest_result(run_dir))
    assert found["bench_setup_error"]["status"] == "error"
    assert "no database" in found["bench_setup_error"]["note"]
    assert found["bench_teardown_error"]["status"] == "error"
    assert "cannot clean up" in found["bench_teardown_error"]["note"]
    assert found["bench_expected_to_fail"]["status"] == "xfailed"
    assert found["bench_failing_command"]["status"] == "failed"
    assert found["bench_fine"]["status"] == "ok"
    # a failed command is one paragraph: what, where, and its stderr's tail;
    # none of pbench's own frames
    section = proc.stdout.split("bench_failing_command _")[1].split(" pbench results ")[0]
    section = section.lstrip("_").rstrip("=")
    assert "exited with status 3" in section and "disk full" in section
    assert "pbench_runner/" not in section and len(section.strip().splitlines()) < 10
    assert 'errors="2"' in junit.read_text() or "error" in junit.read_text()
    # -v brings pytest's traceback back
    verbose = pbench(
        "run", str(suite), "--samples=1", "--sysinfo=none", "--no-progress", "-v",
        "-k", "failing_command",
    )  # fmt: skip
    assert "pbench_runner/bench.py" in verbose.stdout


def test_a_plugin_module_in_the_current_directory_is_imported(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    """``-p MODULE`` imports from the current directory, as pytest's own -p does."""
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "bench_one.py").write_text("def bench_one(sample):\n    pass\n")
    events = tmp_path / "seen.txt"
    (tmp_path / "my_observer.py").write_text(
        "from pbench_runner import hookimpl\n\n"
        "@hookimpl\n"
        "def pbench_run_finished(run_id, result_dir, exit_status):\n"
        f"    open({str(events)!r}, 'w').write(str(exit_status))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    import subprocess

    proc = subprocess.run(
        [str(Path(sys.executable).with_name("pbench")), "run", str(suite), "-p", "my_observer",
         "--samples=1", "--sysinfo=none", "--no-progress"],
        cwd=tmp_path, env={**env, "PBENCH_RUN_DIR": str(run_dir)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert events.read_text() == "0"


def test_pbench_run_honours_the_deadlines_of_its_settings(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "bench_one.py").write_text("def bench_one(sample):\n    pass\n")
    (tmp_path / "pbench.toml").write_text("[deadlines]\nstartup = 0.001\n")
    pbench("register-tool", "--name=vmstat", check=True)
    proc = pbench("run", str(suite), "--samples=1", "--sysinfo=none", "--no-progress")
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "0.001" in proc.stdout + proc.stderr


def test_on_a_terminal_the_bar_leaves_pytests_lines_whole(  # type: ignore[no-untyped-def]
    run_dir: Path, tmp_path: Path
) -> None:
    """In a real terminal (tmux), the bar comes and goes around each benchmark:
    no stale line, and pytest's line of each file is still on the screen."""
    import shutil
    import subprocess
    import time

    assert shutil.which("tmux"), "scripts/install.sh installs tmux"
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in ("alpha", "beta"):
        (suite / f"bench_{name}.py").write_text(f"def bench_{name}(sample):\n    pass\n")
    session = f"pbench-test-{os.getpid()}"
    done = tmp_path / "done"
    command = (
        f"cd {tmp_path} && PBENCH_RUN_DIR={run_dir} {Path(sys.executable).with_name('pbench')} "
        f"run suite --samples=2 --sysinfo=none; touch {done}; sleep 30"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "50", command], check=True
    )
    try:
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
        ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    assert done.exists(), screen
    lines = screen.splitlines()
    assert any(line.startswith("suite/bench_alpha.py") for line in lines), screen
    assert any(line.startswith("suite/bench_beta.py") for line in lines), screen
    assert not any("collecting" in line and "/" in line for line in lines), screen
    assert not any("━" in line for line in lines), screen  # the bar is gone at the end
    assert "2 passed" in screen
