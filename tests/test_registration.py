"""Tool registration through the real ``pbench`` command: the tool store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .conftest import HOST


def store(run_dir: Path, group: str = "default") -> dict:  # type: ignore[type-arg]
    return json.loads((run_dir / "tools" / f"{group}.json").read_text())


def test_register_list_and_clear(pbench, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    remotes = tmp_path / "hosts.txt"
    remotes.write_text("# lab\nnode-a\nnode-b  # the db\n\n")
    pbench(
        "register-tool",
        "--name=iostat",
        f"--remotes=@{remotes}",
        "--labels=lab",
        "--",
        "--interval=5",
        "--devices=sda,sdb",
        check=True,
    )
    pbench("register-tool", "--name=vmstat", "--group=quick", check=True)
    data = store(run_dir)
    assert data["hosts"]["node-a"] == {
        "labels": ["lab"],
        "tools": {"iostat": {"interval": 5, "devices": "sda,sdb"}},
    }
    assert set(data["hosts"]) == {"node-a", "node-b"}
    assert store(run_dir, "quick")["hosts"][HOST]["tools"]["vmstat"] == {"interval": 3}
    listed = pbench("list-tools", check=True).stdout
    assert (
        "group: default; host: node-a [lab]; tool: iostat --devices=sda,sdb --interval=5" in listed
    )
    assert f"group: quick; host: {HOST}; tool: vmstat --interval=3" in listed
    assert "node-a" not in pbench("list-tools", "--group=quick", check=True).stdout
    out = pbench("clear-tools", "--remotes=node-a", check=True).stdout
    assert "removed default/node-a/iostat" in out
    assert set(store(run_dir)["hosts"]) == {"node-b"}
    pbench("clear-tools", "--group=default", check=True)
    assert not (run_dir / "tools" / "default.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name=bogus"], "unknown tool 'bogus'; tools available:"),
        (["--name=vmstat", "--", "--interval=0"], "tool 'vmstat': --interval=0: must be 1 or more"),
        (["--name=vmstat", "--", "--interval=abc"], "tool 'vmstat': --interval=abc"),
        (["--name=vmstat", "--", "--colour=red"], "tool 'vmstat' has no option --colour"),
        (["--name=vmstat", "--remotes=bad_host!"], "bad host name 'bad_host!'"),
        (["--name=vmstat", "--remotes=ok-host,-bad"], "bad host name '-bad'"),
        (["--name=vmstat", "--group=no/slash"], "bad tool group name 'no/slash'"),
        (["--name=vmstat", "--labels=a b"], "bad label 'a b'"),
        (["--name=pidstat", "--", "--pids=12,x"], "tool 'pidstat': --pids=12,x"),
    ],
)
def test_bad_registration_is_refused_and_changes_nothing(
    pbench, run_dir: Path, args: list[str], message: str
) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool", "--name=vmstat", check=True)
    before = (run_dir / "tools" / "default.json").read_bytes()
    proc = pbench("register-tool", *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert (run_dir / "tools" / "default.json").read_bytes() == before


def test_a_corrupt_store_is_named_and_left_alone(pbench, run_dir: Path) -> None:  # type: ignore[no-untyped-def]
    (run_dir / "tools").mkdir(parents=True)
    path = run_dir / "tools" / "default.json"
    path.write_text('{"group": "default", "hosts": {"x": ')
    for args in (
        ["register-tool", "--name=vmstat"],
        ["list-tools"],
        ["user-benchmark", "--", "true"],
    ):
        proc = pbench(*args)
        assert proc.returncode == 2, args
        assert f"the tool store file {path} is corrupt" in proc.stderr
        assert path.read_text() == '{"group": "default", "hosts": {"x": '
    path.write_text('{"group": "default", "hosts": ["not", "a", "table"]}')
    assert "unexpected layout" in pbench("list-tools").stderr
    # clearing the whole group is the documented way out
    pbench("clear-tools", "--group=default", check=True)
    assert not path.exists()


def test_tool_sets_ship_and_users_may_add_their_own(pbench, run_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pbench("register-tool-set", "light", "--interval=7", check=True)
    assert store(run_dir)["hosts"][HOST]["tools"] == {"vmstat": {"interval": 7}}
    pbench("register-tool-set", "heavy", "--group=all", check=True)
    assert set(store(run_dir, "all")["hosts"][HOST]["tools"]) == {
        "vmstat",
        "iostat",
        "sar",
        "mpstat",
        "pidstat",
    }
    (tmp_path / "pbench.toml").write_text('[toolsets.mine]\nmpstat = { cpus = "0" }\n')
    pbench("register-tool-set", "mine", "--group=mine", check=True)
    assert store(run_dir, "mine")["hosts"][HOST]["tools"] == {
        "mpstat": {"cpus": "0", "interval": 3}
    }
    proc = pbench("register-tool-set", "nosuch")
    assert proc.returncode == 2
    assert (
        "unknown tool set 'nosuch'; tool sets: default, heavy, light, medium, mine" in proc.stderr
    )


def test_list_available_shows_kinds_options_and_programs(pbench) -> None:  # type: ignore[no-untyped-def]
    out = pbench("list-tools", "--available", check=True).stdout
    assert "vmstat  [transient]" in out
    assert "--interval (default 3)" in out
    assert "-- ready" in out
    missing = pbench("list-tools", "--available", "-p", "pbench_test_tools", check=True).stdout
    assert "missing pbench-no-such-program (package pbench-imaginary-package)" in missing


def test_an_alias_names_its_tool_in_list_and_clear(pbench) -> None:  # type: ignore[no-untyped-def]
    listed = pbench("list-tools", "--available", "--name=node-exporter", check=True).stdout
    assert listed.startswith("node_exporter (alias node-exporter)")
    pbench("register-tool", "--name=node-exporter", check=True)
    assert "tool: node_exporter" in pbench("list-tools", "--name=node-exporter", check=True).stdout
    assert "removed" in pbench("clear-tools", "--name=node-exporter", check=True).stdout
    unknown = pbench("list-tools", "--available", "--name=no-such-tool")
    assert unknown.returncode == 2 and "unknown tool 'no-such-tool'" in unknown.stderr
