"""Tests of the sysstat tool plugin: options, parsers, and the real programs."""

from __future__ import annotations

import csv
import os
import signal
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

import pytest
from pbench_runner_tools import sysstat
from pbench_runner_tools.sysstat import (
    SysstatCommand,
    Table,
    complete_lines,
    cpu_list,
    device_list,
    parse_iostat,
    parse_mpstat,
    parse_pidstat,
    parse_sadf,
    parse_vmstat,
    pattern_list,
    pbench_tool_specs,
    pid_list,
)

from pbench_runner import procs
from pbench_runner.errors import ToolStoreError
from pbench_runner.tools import ToolContext, ToolSpec

TOOLS = ("vmstat", "iostat", "mpstat", "sar", "pidstat")


@pytest.fixture(scope="module")
def specs() -> dict[str, ToolSpec]:
    return {spec.name: spec for spec in pbench_tool_specs()}


def make_tool(spec: ToolSpec, outdir: Path, raw: Mapping[str, str]) -> SysstatCommand:
    ctx = ToolContext("localhost", spec.name, "default", spec.validate(raw), outdir)
    tool = spec.factory(ctx)
    assert isinstance(tool, SysstatCommand)
    return tool


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def csv_header(path: Path) -> list[str]:
    with open(path, newline="") as fh:
        return next(csv.reader(fh))


# -- specs and options ----------------------------------------------------------


def test_specs(specs: dict[str, ToolSpec]) -> None:
    assert sorted(specs) == sorted(TOOLS)
    for name, spec in specs.items():
        assert spec.kind == "transient"
        assert spec.validate({})["interval"] == 3
        assert name in spec.programs
    assert specs["vmstat"].programs == {"vmstat": "procps"}
    assert specs["sar"].programs == {"sar": "sysstat", "sadf": "sysstat"}
    assert specs["mpstat"].validate({})["cpus"] == "ALL"
    assert specs["pidstat"].validate({"threads": ""})["threads"] is True


@pytest.mark.parametrize(
    ("tool", "raw", "option"),
    [
        ("vmstat", {"interval": "0"}, "interval"),
        ("iostat", {"interval": "abc"}, "interval"),
        ("sar", {"interval": "-2"}, "interval"),
        ("pidstat", {"pids": "1,,2"}, "pids"),
        ("pidstat", {"pids": "12a"}, "pids"),
        ("pidstat", {"pids": ""}, "pids"),
        ("pidstat", {"pids": "0"}, "pids"),
        ("pidstat", {"patterns": "bash,"}, "patterns"),
        ("pidstat", {"threads": "maybe"}, "threads"),
        ("iostat", {"devices": "sda,"}, "devices"),
        ("iostat", {"devices": "sd a"}, "devices"),
        ("mpstat", {"cpus": "3-1"}, "cpus"),
        ("mpstat", {"cpus": "one"}, "cpus"),
        ("vmstat", {"devices": "sda"}, "devices"),
    ],
)
def test_bad_options(
    specs: dict[str, ToolSpec], tool: str, raw: dict[str, str], option: str
) -> None:
    with pytest.raises(ToolStoreError) as info:
        specs[tool].validate(raw)
    assert f"'{tool}'" in str(info.value)
    assert f"--{option}" in str(info.value)


def test_converters() -> None:
    assert pid_list("12, 034") == "12,34"
    assert device_list("sda,nvme0n1,dm-0") == "sda,nvme0n1,dm-0"
    assert cpu_list("all") == "ALL"
    assert cpu_list("0,2-3") == "0,2-3"
    assert pattern_list("postgres,pg.*") == "postgres,pg.*"
    with pytest.raises(ValueError, match="empty"):
        pid_list("1,")
    with pytest.raises(ValueError, match="'x1' is not a process id"):
        pid_list("x1")


def test_argv(specs: dict[str, ToolSpec], tmp_path: Path) -> None:
    def argv(name: str, **raw: str) -> list[str]:
        return list(make_tool(specs[name], tmp_path / name, raw).argv())

    assert argv("vmstat") == ["vmstat", "-t", "-n", "3"]
    assert argv("iostat", interval="5", devices="sda,sdb") == [
        *("iostat", "-x", "-t", "-y", "sda", "sdb", "5"),
    ]
    assert argv("mpstat", cpus="0-1") == ["mpstat", "-u", "-P", "0-1", "3"]
    assert argv("sar", interval="2") == ["sar", "-o", str(tmp_path / "sar" / "sar.data"), "2"]
    assert argv("pidstat") == ["pidstat", "-h", "-H", "-u", "-r", "-d", "-w", "3"]
    assert argv("pidstat", pids="1,2", threads="")[-4:] == ["-t", "-p", "1,2", "3"]
    assert argv("pidstat", patterns="nginx,php")[-5:] == ["-p", "ALL", "-C", "nginx|php", "3"]


def test_stop_signals(specs: dict[str, ToolSpec], tmp_path: Path) -> None:
    for name in TOOLS:
        tool = make_tool(specs[name], tmp_path / name, {})
        expected = signal.SIGINT if name == "sar" else signal.SIGTERM
        assert tool.stop_signal == expected, name


# -- parsers on captured output -------------------------------------------------

VMSTAT = """\
procs -----------memory---------- ---swap-- -----io---- -system-- ------cpu----- -----timestamp-----
 r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy id wa st                 UTC
 7  0      0 23990476  10752 517268    0    0  1777   668  223  378 10  4 84  1  1 2026-11-28 18:16:06
procs -----------memory---------- ---swap-- -----io---- -system-- ------cpu----- -----timestamp-----
 r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy id wa st                 UTC
 1  0      0 23990476  10752 517268    0    0    40     4  282  557  4  8 86  0  2 2026-11-28 18:16:07
 2  0      0 23990476  10752 517268    0    0     0    16  101  135  1  1 98  0  1 2026-11-28 18:16:0"""


def test_parse_vmstat() -> None:
    table = parse_vmstat(VMSTAT)
    assert table.columns[:3] == ["timestamp", "r", "b"]
    assert table.columns[-1] == "st"
    # the first report (18:16:06) is the average since boot: not a sample of the run
    assert [row["timestamp"] for row in table.rows] == ["2026-11-28T18:16:07+00:00"]
    assert table.rows[0]["id"] == "86"
    assert table.rows[0]["free"] == "23990476"


IOSTAT = """\
Linux 6.1.0 (host) \t2026-11-28 \t_x86_64_\t(2 CPU)


2026-11-28T18:16:07+0000
avg-cpu:  %user   %nice %system %iowait  %steal   %idle
          19.50    0.00   11.50    0.00    2.00   67.00

Device            r/s     rkB/s   w/s     wkB/s  aqu-sz  %util
vda              7.00    124.00  1.00      4.00    0.01   0.40
sda              0.00      0.00  0.00      0.00    0.00   0.00


2026-11-28T18:16:08+0000
avg-cpu:  %user   %nice %system %iowait  %steal   %idle
           0.99    0.00    1.98    0.00    0.50   96.53

Device            r/s     rkB/s   w/s     wkB/s  aqu-sz  %util
vda              1.00      8.00  2.00     12.00    0.00   0.20
sda              0.00      0.00  0.00      0.00    0.00   0.0"""


def test_parse_iostat() -> None:
    table = parse_iostat(IOSTAT)
    assert table.columns == [
        "timestamp",
        "Device",
        "r/s",
        "rkB/s",
        "w/s",
        "wkB/s",
        "aqu-sz",
        "%util",
    ]
    assert [(row["timestamp"], row["Device"]) for row in table.rows] == [
        ("2026-11-28T18:16:07+00:00", "vda"),
        ("2026-11-28T18:16:07+00:00", "sda"),
        ("2026-11-28T18:16:08+00:00", "vda"),
    ]
    assert table.rows[2]["%util"] == "0.20"


def test_parse_iostat_old_header_without_timestamp() -> None:
    text = "Device:  rrqm/s  %util\nsda  0.00  1.50\nsdb  x  1.0\n"
    table = parse_iostat(text)
    assert table.rows == [{"timestamp": "", "Device": "sda", "rrqm/s": "0.00", "%util": "1.50"}]


MPSTAT = """\
Linux 6.1.0 (host) \t2026-11-28 \t_x86_64_\t(2 CPU)

23:59:59     CPU    %usr   %nice    %sys   %idle
00:00:00     all    0.50    0.00    4.48   95.02
00:00:00       0    0.99    0.00    3.96   95.05

00:00:00     CPU    %usr   %nice    %sys   %idle
00:00:01     all    1.49    0.00    1.99   96.52

Average:     CPU    %usr   %nice    %sys   %idle
Average:     all    1.00    0.00    3.23   95.77
00:00:02     all    1.49    0.0"""


def test_parse_mpstat_crosses_midnight() -> None:
    table = parse_mpstat(MPSTAT)
    assert table.columns == ["timestamp", "CPU", "%usr", "%nice", "%sys", "%idle"]
    assert [(row["timestamp"], row["CPU"]) for row in table.rows] == [
        ("2026-11-29T00:00:00+00:00", "all"),
        ("2026-11-29T00:00:00+00:00", "0"),
        ("2026-11-29T00:00:01+00:00", "all"),
    ]


def test_parse_mpstat_us_date_and_suffix() -> None:
    text = "Linux 6.1 (h) \t11/28/26 \t_x86_64_\n\n10:00:00  CPU  %idle\n10:00:01  all  99.00\n"
    table = parse_mpstat(text, suffix="")
    assert table.rows == [{"timestamp": "2026-11-28T10:00:01", "CPU": "all", "%idle": "99.00"}]


PIDSTAT = """\
Linux 6.1.0 (host) \t2026-11-28 \t_x86_64_\t(2 CPU)

# Time        UID      TGID       TID    %usr   %CPU   CPU   Command
1795890072      0      2662         -    1.00   1.00     1  bash
1795890072      0         -      2662    1.00   1.00     1  |__bash

# Time        UID      TGID       TID    %usr   %CPU   CPU   Command
1795890073   1000      4242         -    2.00   2.00     0  Web Content
1795890073   1000      4243         -    2.00   2.0"""


def test_parse_pidstat() -> None:
    table = parse_pidstat(PIDSTAT)
    assert table.columns == ["timestamp", "UID", "TGID", "TID", "%usr", "%CPU", "CPU", "Command"]
    assert [row["Command"] for row in table.rows] == ["bash", "|__bash", "Web Content"]
    assert table.rows[0]["timestamp"] == "2026-11-28T18:21:12+00:00"
    assert table.rows[1]["TGID"] == "-"


def test_parse_pidstat_clock_times() -> None:
    text = "Linux (h) 2026-11-28 x\n\n# Time  UID  PID  %CPU  Command\n10:00:01  0  1  0.50  init\n"
    assert parse_pidstat(text).rows[0]["timestamp"] == "2026-11-28T10:00:01+00:00"


SADF = """\
# hostname;interval;timestamp;CPU;%usr;%idle
vm;-1;2026-11-28 18:16:05 UTC;LINUX-RESTART\t(2 CPU)
vm;1;2026-11-28 18:16:07 UTC;-1;26.37;59.20
# hostname;interval;timestamp;CPU;%usr;%idle
vm;1;2026-11-28 18:16:08 UTC;-1;0.50;97.99
vm;1;2026-11-28 18:16:09 UTC;-1;0.5"""


def test_parse_sadf() -> None:
    table = parse_sadf(SADF)
    assert table.columns == ["timestamp", "hostname", "interval", "CPU", "%usr", "%idle"]
    assert [row["timestamp"] for row in table.rows] == [
        "2026-11-28T18:16:07+00:00",
        "2026-11-28T18:16:08+00:00",
    ]
    assert table.rows[1]["%idle"] == "97.99"


@pytest.mark.parametrize(
    "parse", [parse_vmstat, parse_iostat, parse_mpstat, parse_pidstat, parse_sadf]
)
@pytest.mark.parametrize("text", ["", "\n", "Linux 6.1 (h) 2026-11-28\n", "garbage no newline"])
def test_parsers_tolerate_nothing(parse: Callable[[str], Table], text: str) -> None:
    assert parse(text).rows == []


def test_table_write_csv_empty(tmp_path: Path) -> None:
    Table().write_csv(tmp_path / "x.csv")
    assert (tmp_path / "x.csv").read_text() == ""


# -- postprocess without data ---------------------------------------------------


def test_postprocess_without_output(specs: dict[str, ToolSpec], tmp_path: Path) -> None:
    for name in TOOLS:
        tool = make_tool(specs[name], tmp_path / name, {})
        tool.stop()  # never started: nothing to stop
        tool.postprocess()
        if name == "sar":
            for report in sysstat.SAR_REPORTS:
                assert (tmp_path / name / report).read_text() == ""
        else:
            assert (tmp_path / name / f"{name}.csv").read_text() == ""


def test_postprocess_with_banner_only(specs: dict[str, ToolSpec], tmp_path: Path) -> None:
    tool = make_tool(specs["mpstat"], tmp_path, {})
    Path(tool.stdout_path).write_text("Linux 6.1 (h) \t2026-11-28 \t_x86_64_\t(2 CPU)\n\n")
    tool.postprocess()
    assert (tmp_path / "mpstat.csv").read_text() == ""


def test_sar_postprocess_with_corrupt_data(specs: dict[str, ToolSpec], tmp_path: Path) -> None:
    tool = make_tool(specs["sar"], tmp_path, {})
    (tmp_path / "sar.data").write_bytes(b"not a sa file")
    tool.postprocess()
    assert (tmp_path / "sar-cpu.csv").read_text() == ""
    assert "sadf" in (tmp_path / "sadf-stderr.txt").read_text()


# -- the real programs ----------------------------------------------------------


def _enough_rows(key: str, tool: SysstatCommand) -> bool:
    """Whether ``tool``'s live output holds the rows its test needs."""
    text = tool.raw_text()
    if key == "sar":  # sar prints a report (one "all" CPU line) for each record sadc wrote
        return any("all" in line.split() for line in complete_lines(text))
    return len(tool.parser(text).rows) >= (2 if key == "vmstat" else 1)


@pytest.fixture(scope="module")
def live_run(
    specs: dict[str, ToolSpec], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, SysstatCommand]]:
    """Every tool (and a pidstat of this process) run side by side for 2 s or more:
    until each has written the rows the tests below need (vmstat two, after its
    since-boot report; the others one report)."""
    for spec in specs.values():
        if spec.missing_programs():
            pytest.skip(f"missing programs: {spec.missing_programs()}")
    base = tmp_path_factory.mktemp("live")
    runs: dict[str, tuple[str, dict[str, str]]] = {
        name: (name, {"interval": "1"}) for name in TOOLS
    }
    runs["pidstat-self"] = ("pidstat", {"interval": "1", "pids": str(os.getpid()), "threads": ""})
    tools = {key: make_tool(specs[name], base / key, raw) for key, (name, raw) in runs.items()}
    (base / "sar").mkdir()
    (base / "sar" / "sar.data").write_bytes(b"stale data from an earlier run")
    try:
        for tool in tools.values():
            tool.start()
        # (should this time out, the tests below say which tool wrote too little)
        procs.wait_until(lambda: all(_enough_rows(key, t) for key, t in tools.items()), 20, 0.1)
    finally:
        for tool in tools.values():
            tool.stop()
    for tool in tools.values():
        tool.postprocess()
    yield tools


@pytest.mark.parametrize("key", [*TOOLS, "pidstat-self"])
def test_live_raw_output_and_exit(live_run: dict[str, SysstatCommand], key: str) -> None:
    tool = live_run[key]
    assert Path(tool.stdout_path).stat().st_size > 0
    assert tool.proc is not None
    assert tool.proc.returncode in (0, -signal.SIGTERM)
    if key == "sar":
        assert tool.proc.returncode == 0  # SIGINT: sar and sadc end cleanly


def plausible(rows: list[dict[str, str]], column: str, low: float, high: float) -> None:
    assert rows, "no data rows"
    for row in rows:
        datetime.fromisoformat(row["timestamp"])
        assert low <= float(row[column]) <= high, row


def test_live_vmstat(live_run: dict[str, SysstatCommand]) -> None:
    path = live_run["vmstat"].ctx.outdir / "vmstat.csv"
    assert csv_header(path)[0] == "timestamp"
    rows = read_csv(path)
    assert len(rows) >= 2
    plausible(rows, "id", 0, 100)


def test_live_iostat(live_run: dict[str, SysstatCommand]) -> None:
    rows = read_csv(live_run["iostat"].ctx.outdir / "iostat.csv")
    plausible(rows, "%util", 0, 100)
    assert all(row["Device"] for row in rows)


def test_live_mpstat(live_run: dict[str, SysstatCommand]) -> None:
    rows = read_csv(live_run["mpstat"].ctx.outdir / "mpstat.csv")
    plausible(rows, "%idle", 0, 100)
    assert {"all", "0"} <= {row["CPU"] for row in rows}


def test_live_pidstat(live_run: dict[str, SysstatCommand]) -> None:
    rows = read_csv(live_run["pidstat"].ctx.outdir / "pidstat.csv")
    plausible(rows, "%CPU", 0, 100 * (os.cpu_count() or 1))
    assert all(row["Command"] for row in rows)
    own = read_csv(live_run["pidstat-self"].ctx.outdir / "pidstat.csv")
    assert any(row["TGID"] == str(os.getpid()) for row in own)
    assert any(row["Command"].startswith("|__") for row in own)


@pytest.mark.parametrize(
    ("report", "column", "low", "high"),
    [
        ("sar-cpu.csv", "%idle", 0, 100),
        ("sar-memory.csv", "%memused", 0, 100),
        ("sar-disk.csv", "%util", 0, 100),
        ("sar-network.csv", "%ifutil", 0, 100),
    ],
)
def test_live_sar(
    live_run: dict[str, SysstatCommand], report: str, column: str, low: float, high: float
) -> None:
    path = live_run["sar"].ctx.outdir / report
    assert csv_header(path)[:2] == ["timestamp", "hostname"]
    plausible(read_csv(path), column, low, high)
