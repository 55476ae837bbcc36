"""The project's settings: found from a subdirectory, merged, and checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbench_runner.config import (
    Deadlines,
    Settings,
    check_settings,
    find_settings,
    known_keys,
    load_deadlines,
    load_remote,
    project_settings,
    toolsets,
)
from pbench_runner.errors import UsageError

PYPROJECT = """
[project]
name = "demo"

[tool.pbench]
samples = 2
tool_group = "from-pyproject"
warmup = 1

[tool.pbench.deadlines]
send = 100
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with a benchmarks/ directory; the current directory is benchmarks/."""
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    (root / "benchmarks").mkdir()
    monkeypatch.chdir(root / "benchmarks")
    return root


def test_pbench_toml_is_found_from_a_subdirectory(project: Path) -> None:
    (project / "pbench.toml").write_text("samples = 5\n[deadlines]\naction = 7\n")
    found = find_settings()
    assert found.root == project
    assert found.files == (project / "pbench.toml",)
    assert found.values == {"samples": 5, "deadlines": {"action": 7}}
    assert load_deadlines(found).action == 7.0
    assert load_deadlines().action == 7.0  # the default: found from the current directory


def test_tool_pbench_of_pyproject_is_found_from_a_subdirectory(project: Path) -> None:
    (project / "pyproject.toml").write_text(PYPROJECT)
    found = find_settings(project / "benchmarks" / "deep")  # need not exist
    assert found.root == project
    assert found.files == (project / "pyproject.toml",)
    assert found.values["samples"] == 2
    assert load_deadlines(found) == Deadlines(send=100.0)


def test_pbench_toml_wins_over_pyproject_and_spellings_merge(project: Path) -> None:
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "pbench.toml").write_text('samples = 9\ntool-group = "from-pbench"\n')
    found = find_settings()
    assert found.files == (project / "pyproject.toml", project / "pbench.toml")
    assert found.values == {
        "samples": 9,
        "tool_group": "from-pbench",
        "warmup": 1,
        "deadlines": {"send": 100},
    }
    assert project_settings() == found.values
    assert project_settings(project / "benchmarks") == found.values
    check_settings(found)


def test_a_pyproject_without_tool_pbench_does_not_stop_the_search(project: Path) -> None:
    (project / "pbench.toml").write_text("samples = 4\n")
    (project / "benchmarks" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert find_settings().root == project


def test_the_nearest_directory_with_settings_is_the_only_one_read(project: Path) -> None:
    (project / "pbench.toml").write_text("samples = 4\nwarmup = 2\n")
    (project / "benchmarks" / "pbench.toml").write_text("")
    bench = project / "benchmarks" / "bench_x.py"
    bench.write_text("")
    found = find_settings(bench)  # a file: its directory
    assert (found.root, found.values) == (project / "benchmarks", {})


def test_the_search_stops_at_the_repository_top(tmp_path: Path) -> None:
    (tmp_path / "pbench.toml").write_text("samples = 4\n")  # above the repository
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "benchmarks").mkdir()
    assert find_settings(repo / "benchmarks") == Settings()
    assert project_settings(repo / "benchmarks") == {}
    (repo / ".git").rmdir()
    (repo / ".git").write_text("gitdir: ../.git/worktrees/repo\n")  # a worktree: still the top
    assert find_settings(repo / "benchmarks").root is None
    (repo / ".git").unlink()
    assert find_settings(repo / "benchmarks").root == tmp_path


def test_an_unknown_key_names_the_file_and_the_nearest_key(project: Path) -> None:
    (project / "pbench.toml").write_text("sampels = 7\n")
    with pytest.raises(UsageError) as exc:
        check_settings(find_settings())
    # outside the current directory: the file's whole path
    assert str(exc.value) == (
        f"{project / 'pbench.toml'}: unknown key 'sampels' (did you mean 'samples'?)"
    )
    with pytest.raises(UsageError) as exc:
        check_settings(find_settings(project / "benchmarks"))
    assert "unknown key 'sampels'" in str(exc.value)


def test_errors_name_the_file_as_given_from_the_root(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    (project / "pbench.toml").write_text("sampels = 7\n")
    with pytest.raises(UsageError, match=r"^pbench\.toml: unknown key 'sampels' \(did you mean "):
        check_settings(find_settings())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tool-gruop = 'x'\n", "unknown key 'tool-gruop' (did you mean 'tool-group'?)"),
        ("tool_gruop = 'x'\n", "unknown key 'tool_gruop' (did you mean 'tool_group'?)"),
        ("[deadline]\naction = 5\n", "unknown key 'deadline' (did you mean 'deadlines'?)"),
        ("[remote]\nmdoe = 'tunnel'\n", "unknown key 'mdoe' in [remote] (did you mean 'mode'?)"),
        ("zzz = 1\n", "unknown key 'zzz' (known keys: classes, deadlines, "),
    ],
)
def test_unknown_keys_everywhere(project: Path, text: str, message: str) -> None:
    (project / "pbench.toml").write_text(text)
    with pytest.raises(UsageError) as exc:
        check_settings(find_settings())
    assert message in str(exc.value)


def test_an_unknown_deadline_names_the_nearest_one(project: Path) -> None:
    (project / "pbench.toml").write_text("[deadlines]\nactoin = 5\n")
    expected = "unknown key 'actoin' in [deadlines] (did you mean 'action'?)"
    for check in (
        lambda: check_settings(find_settings()),
        lambda: load_deadlines(find_settings()),
        lambda: load_deadlines(),
    ):
        with pytest.raises(UsageError) as exc:
            check()
        assert str(exc.value) == f"{project / 'pbench.toml'}: {expected}"
    with pytest.raises(UsageError) as exc:
        load_deadlines({"deadlines": {"actoin": 5}})  # a plain dict: no file to name
    assert str(exc.value) == expected


def test_pyproject_keys_are_named_with_their_table(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.pbench]\nsampels = 3\n")
    with pytest.raises(UsageError, match=r"unknown key 'sampels' in \[tool\.pbench\] \(did you"):
        check_settings(find_settings())
    (project / "pyproject.toml").write_text("[tool.pbench.deadlines]\nactoin = 3\n")
    with pytest.raises(UsageError) as exc:
        load_deadlines()
    assert "pyproject.toml: unknown key 'actoin' in [tool.pbench.deadlines] (did you mean" in str(
        exc.value
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('samples = "7"\n', 'samples = "7" must be a whole number'),
        ("samples = 1.5\n", "samples = 1.5 must be a whole number"),
        ("timeout = true\n", "timeout = true must be a number"),
        ("min_time = nan\n", "min_time = nan must be a number"),
        ('pytest-benchmark = "yes"\n', 'pytest-benchmark = "yes" must be true or false'),
        ("fail-on = [1]\n", "fail-on = [1] must be a string or a list of strings"),
        ("files = 3\n", "files = 3 must be a string"),
        ("deadlines = 5\n", "deadlines = 5 must be a table: [deadlines]"),
        ("[deadlines]\naction = 0\n", "[deadlines] action = 0 must be a number of seconds > 0"),
        ('[deadlines]\nsend = "1"\n', '[deadlines] send = "1" must be a number of seconds > 0'),
        (
            "[remote]\naccept_new_host_keys = 1\n",
            "[remote] accept_new_host_keys = 1 must be true or false",
        ),
        ("toolsets = []\n", "toolsets = [] must be a table"),
        ('[results]\nserver = ["x"]\n', '[results] server = ["x"] must be a string'),
    ],
)
def test_a_bad_value_names_the_key(project: Path, text: str, message: str) -> None:
    (project / "pbench.toml").write_text(text)
    message = message.replace("> 0", "greater than 0")
    with pytest.raises(UsageError) as exc:
        check_settings(find_settings())
    assert str(exc.value) == f"{project / 'pbench.toml'}: {message}"


def test_a_bad_deadline_is_refused_by_load_deadlines_too(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.pbench.deadlines]\nsend = -1\n")
    with pytest.raises(UsageError, match=r"\[tool\.pbench\.deadlines\] send = -1 must be a number"):
        load_deadlines()


def test_both_spellings_of_one_key_are_refused(project: Path) -> None:
    (project / "pbench.toml").write_text("tool-group = 'a'\ntool_group = 'b'\n")
    with pytest.raises(
        UsageError, match="'tool-group' and 'tool_group' are the same key; keep one"
    ):
        find_settings()


def test_the_documented_settings_pass(project: Path) -> None:
    (project / "pbench.toml").write_text(
        """
files = "bench_*.py"
functions = "bench_*"
classes = "Bench*"
samples = 5
warmup = 1
tool-group = "default"
sysinfo = "none"
timeout = 120
min-time = 0.5
fail-on = "throughput:-5%"
pytest-benchmark = false
on-host-failure = "continue"

[deadlines]
startup = 30
connect = 10.5
action = 60
send = 600
reconnect = 30
shutdown = 5

[remote]
ssh_config = "~/.ssh/config"
known_hosts = ""
accept-new-host-keys = true
mode = "direct"
address = ""
remote_dir = "~/.cache/pbench-runner"
python = "python3"

[results]
server = "http://results.example:8080"

[toolsets.mine]
mpstat = { cpus = "0,2-3", interval = "2" }
"""
    )
    found = find_settings()
    check_settings(found)
    assert load_deadlines(found).connect == 10.5
    remote = load_remote(found, mode="tunnel")
    assert (remote.accept_new_host_keys, remote.mode) == (True, "tunnel")
    assert toolsets(project / ".pbench", found)["mine"] == {
        "mpstat": {"cpus": "0,2-3", "interval": "2"}
    }


def test_commands_may_add_their_own_keys(project: Path) -> None:
    (project / "pbench.toml").write_text("rounds = 3\n")
    with pytest.raises(UsageError, match="unknown key 'rounds'"):
        check_settings(find_settings())
    check_settings(find_settings(), extra_keys={"rounds": int})
    with pytest.raises(UsageError, match="rounds = 3 must be a string"):
        check_settings(find_settings(), {**known_keys(), "rounds": str})


def test_no_settings_anywhere_is_empty_and_valid(project: Path) -> None:
    found = find_settings()
    assert found == Settings()
    check_settings(found)
    assert load_deadlines(found) == Deadlines()
    assert project_settings() == {}
