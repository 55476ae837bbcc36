"""Secrets stay with the parts that need them (issue 14, items 14 and 15).

The run's Redis password goes to the sink and the meisters only: the tools
they start (vmstat, pmcd, pmlogger, ...) do not inherit it, and no file of
the result holds it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pbench_runner import bus, procs


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(e.decode(errors="replace").partition("=")[::2] for e in raw if b"=" in e)


@pytest.mark.skipif(not shutil.which("pmlogger"), reason="needs pcp (scripts/install.sh)")
def test_tools_never_see_the_redis_password_and_results_never_hold_it(  # type: ignore[no-untyped-def]
    pbench, run_dir: Path, tmp_path: Path
) -> None:
    pbench("register-tool", "--name=vmstat", "--", "--interval=1", check=True)
    pbench("register-tool", "--name=pcp", "--", "--interval=1", check=True)
    result = tmp_path / "result"
    pbench("tool-meister-start", f"--dir={result}", "--sysinfo=none", check=True)
    try:
        pbench("start-tools", f"--dir={result / 'sample1'}", check=True)
        (session,) = (run_dir / "sessions").glob("*.json")
        run_id = json.loads(session.read_text())["run_id"]
        seen: dict[str, dict[str, str]] = {}
        for pid in procs.run_pids(run_id):
            program = procs.cmdline(pid).split(" ")[0].rsplit("/", 1)[-1]
            seen[f"{program}[{pid}]"] = _environ(pid)
        meisters = [e for name, e in seen.items() if "python" in name and bus.PASSWORD_ENV in e]
        assert meisters, sorted(seen)  # the parts that need it were given it
        password = meisters[0][bus.PASSWORD_ENV]
        tools = {n: e for n, e in seen.items() if n.split("[")[0] in ("vmstat", "pmcd", "pmlogger")}
        assert {n.split("[")[0] for n in tools} == {"vmstat", "pmcd", "pmlogger"}, sorted(seen)
        for name, env in tools.items():
            assert bus.PASSWORD_ENV not in env, name
            assert password not in "\0".join(env.values()), name
        pbench("stop-tools", f"--dir={result / 'sample1'}", check=True)
        pbench("send-tools", f"--dir={result / 'sample1'}", check=True)
    finally:
        pbench("tool-meister-stop", "--sysinfo=none")
    holding = [
        str(path.relative_to(result))
        for path in result.rglob("*")
        if path.is_file() and password.encode() in path.read_bytes()
    ]
    assert not holding, holding  # redis.conf among them before: its requirepass line
    assert "requirepass (redacted)" in (result / "tm" / "redis.conf").read_text()
