"""pbench runs as pytest-benchmark JSON (read back by pytest-benchmark's own
``compare`` command), pytest-benchmark files as pbench baselines, and the
machine and commit a run records."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.stats import Stats

from pbench_runner import compare, compare_report, pbjson
from pbench_runner.errors import UsageError
from pbench_runner.machine import commit_info, machine_id, machine_info

PROJECT = Path(__file__).resolve().parent.parent
PYTEST_BENCHMARK = Path(sys.executable).parent / "pytest-benchmark"

#: the keys pytest-benchmark writes under machine_info and commit_info
MACHINE_KEYS = {
    "node",
    "processor",
    "machine",
    "python_compiler",
    "python_implementation",
    "python_implementation_version",
    "python_version",
    "python_build",
    "release",
    "system",
    "cpu",
}
COMMIT_KEYS = {"id", "time", "author_time", "dirty", "project", "branch"}


def wall(values: list[float]) -> dict[str, Any]:
    return {"unit": "s", "higher_is_better": False, "values": values}


def fixture_meta(name: str, nodeid: str, loops: int, **more: Any) -> dict[str, Any]:
    """An iteration's ``benchmark``, as a benchmark using the fixture records it."""
    return {
        "name": name,
        "fullname": nodeid,
        "group": more.get("group"),
        "params": more.get("params"),
        "param": more.get("param"),
        "extra_info": more.get("extra_info", {}),
        "options": {
            "min_rounds": 5,
            "max_time": 1.0,
            "min_time": 0.1,
            "timer": "perf_counter",
            "disable_gc": False,
            "warmup": True,
        },
        "loops": loops,
    }


def synthetic_result(scale: float = 1.0) -> dict[str, Any]:
    """A pbench ``result.json``: two fixture benchmarks (per-call times), a plain
    one (a sample is one call) and a failed one."""
    sum_id = "benchmarks/bench_math.py::bench_sum"
    sort_id = "benchmarks/bench_math.py::bench_sort[1000]"
    return {
        "run": {
            "pbench": {"name": "pbench-run_x", "version": "0.1.0", "run_id": "abc"},
            "run": {
                "start_run": "2026-01-02T03:04:05+00:00",
                "end_run": "2026-01-02T03:05:05+00:00",
            },
            "machine_info": machine_info(),
            "commit_info": {
                "id": "a" * 40,
                "time": None,
                "author_time": None,
                "dirty": False,
                "project": "demo",
                "branch": "main",
            },
        },
        "iterations": [
            {
                "name": "1-bench_sum",
                "nodeid": sum_id,
                "status": "ok",
                "metrics": {
                    "wall_s": wall([v * scale for v in (5.1e-7, 5.0e-7, 5.3e-7, 4.9e-7, 5.2e-7)])
                },
                "benchmark": fixture_meta("bench_sum", sum_id, 200_000, extra_info={"n": 100}),
            },
            {
                "name": "2-bench_sort_1000",
                "nodeid": sort_id,
                "status": "ok",
                "metrics": {"wall_s": wall([v * scale for v in (4.2e-6, 4.4e-6, 4.3e-6)])},
                "benchmark": fixture_meta(
                    "bench_sort[1000]",
                    sort_id,
                    25_000,
                    group="sort",
                    params={"n": 1000},
                    param="1000",
                ),
            },
            {
                "name": "3-bench_dd_64k",
                "nodeid": "benchmarks/bench_dd.py::bench_dd[64k]",
                "status": "ok",
                "metrics": {"wall_s": wall([v * scale for v in (0.25, 0.26, 0.24)])},
            },
            {
                "name": "4-bench_broken",
                "nodeid": "benchmarks/bench_dd.py::bench_broken",
                "status": "failed",
                "metrics": {"wall_s": wall([0.1])},
            },
        ],
    }


def pb_compare(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """pytest-benchmark's own ``compare`` command."""
    assert PYTEST_BENCHMARK.exists()
    return subprocess.run(
        [str(PYTEST_BENCHMARK), "compare", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


_SCALE = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def table_rows(output: str) -> dict[str, list[float]]:
    """pytest-benchmark's table: row name -> its numbers in seconds (ratios left out)."""
    rows: dict[str, list[float]] = {}
    scale = 1.0
    for line in output.splitlines():
        header = re.match(r"Name \(time in (\w+)\)", line)
        if header:
            scale = _SCALE[header[1]]
            continue
        numbers = re.findall(r"(-?[\d,]+\.\d{4})\b", line)
        if numbers and not line.startswith("-"):
            name = re.split(r"\s{2,}", line.strip())[0]
            rows[name] = [float(n.replace(",", "")) / scale for n in numbers]
    return rows


# --- statistics ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 101])
def test_stats_are_pytest_benchmarks_own(n: int) -> None:
    data = [((i * 7919) % 23) * 1e-6 + (5e-5 if i % 9 == 4 else 0) for i in range(n)]
    theirs = Stats()
    for value in data:
        theirs.update(value)
    expected = {**theirs.as_dict(), "data": data, "iterations": 7}
    ours = pbjson.benchmark_stats(data, loops=7)
    assert list(ours) == list(expected)  # the same fields in the same order
    assert ours == expected


# --- pbench -> pytest-benchmark -----------------------------------------------------


def test_a_pbench_run_becomes_pytest_benchmark_json() -> None:
    result = synthetic_result()
    doc = pbjson.to_pytest_benchmark(result)
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(doc)
    assert doc["machine_info"] == result["run"]["machine_info"]
    assert doc["commit_info"]["id"] == "a" * 40
    assert doc["datetime"] == "2026-01-02T03:05:05+00:00"
    by_name = {b["name"]: b for b in doc["benchmarks"]}
    assert set(by_name) == {"bench_sum", "bench_sort[1000]", "bench_dd[64k]"}  # not the failed one
    bench = by_name["bench_sort[1000]"]
    assert list(bench) == [
        "group",
        "name",
        "fullname",
        "params",
        "param",
        "extra_info",
        "options",
        "stats",
    ]
    assert bench["fullname"] == "benchmarks/bench_math.py::bench_sort[1000]"
    assert (bench["group"], bench["params"], bench["param"]) == ("sort", {"n": 1000}, "1000")
    assert bench["stats"]["iterations"] == 25_000
    assert bench["stats"]["data"] == [4.2e-6, 4.4e-6, 4.3e-6]
    assert bench["stats"]["rounds"] == 3
    assert by_name["bench_sum"]["extra_info"] == {"n": 100}
    plain = by_name["bench_dd[64k]"]  # no fixture: one call per round, param from the name
    assert plain["stats"]["iterations"] == 1 and plain["param"] == "64k"
    assert plain["stats"]["mean"] == pytest.approx(0.25)
    assert plain["stats"]["ops"] == pytest.approx(4.0)
    json.loads(pbjson.dumps(doc))  # strict JSON


def test_without_recorded_machine_and_commit_they_are_measured(tmp_path: Path) -> None:
    result = synthetic_result()
    del result["run"]["machine_info"], result["run"]["commit_info"]
    doc = pbjson.to_pytest_benchmark(result, project=tmp_path)
    assert set(doc["machine_info"]) >= MACHINE_KEYS
    assert "error" in doc["commit_info"]  # tmp_path is no git checkout


def test_pytest_benchmark_compare_reads_our_json(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    ours = tmp_path / "ours.json"
    pbjson.write(ours, synthetic_result())
    done = pb_compare(tmp_path, str(ours), "--columns=min,max,mean")
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    expected = {
        "bench_sum": (4.9e-7, 5.3e-7, 5.1e-7),
        "bench_dd[64k]": (0.24, 0.26, 0.25),
        "bench_sort[1000]": (4.2e-6, 4.4e-6, 4.3e-6),
    }
    for name, (low, high, mean) in expected.items():
        (row,) = [numbers for row_name, numbers in rows.items() if row_name.startswith(name)]
        assert row == pytest.approx([low, high, mean], rel=1e-4), name
    assert "bench_broken" not in done.stdout
    assert "benchmark 'sort': 1 tests" in done.stdout  # the group is kept


def test_pytest_benchmark_compares_two_of_our_files(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    # named and placed as pytest-benchmark's own storage would hold them
    stored = tmp_path / ".benchmarks" / machine_id()
    stored.mkdir(parents=True)
    pbjson.write(stored / "0001_before.json", synthetic_result())
    pbjson.write(stored / "0002_after.json", synthetic_result(scale=2.0))
    done = pb_compare(
        tmp_path,
        str(stored / "0001_before.json"),
        str(stored / "0002_after.json"),
        "--columns=min,max,mean",
    )
    print(done.stdout, done.stderr)
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    before = rows[next(r for r in rows if r.startswith("bench_sum") and "before" in r)]
    after = rows[next(r for r in rows if r.startswith("bench_sum") and "after" in r)]
    assert after == pytest.approx([2 * v for v in before], rel=1e-4)
    assert before[2] == pytest.approx(5.1e-7, rel=1e-4)
    # and found in the storage by run number, as `pytest-benchmark compare 0001 0002` does
    by_number = pb_compare(tmp_path, "0001", "0002", "--columns=mean")
    assert by_number.returncode == 0, by_number.stderr
    assert by_number.stdout.count("bench_dd[64k]") == 2


# --- pytest-benchmark -> pbench -----------------------------------------------------

TINY = """
import pytest

def test_sum(benchmark):
    benchmark(sum, range(200))

@pytest.mark.parametrize("n", [10, 1000])
def test_sorted(benchmark, n):
    data = list(range(n))[::-1]
    benchmark(sorted, data)
"""


@pytest.fixture(scope="module")
def real_pytest_benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory where pytest-benchmark ran: ``pb.json`` (--benchmark-json, with
    every round) and ``.benchmarks/`` (--benchmark-save: only the statistics)."""
    directory = tmp_path_factory.mktemp("real")
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "test_tiny.py").write_text(TINY)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--benchmark-json=pb.json",
            f"--benchmark-storage=file://{directory / '.benchmarks'}",
            "--benchmark-save=base",
            "--benchmark-max-time=0.02",
            "--benchmark-min-rounds=5",
            "test_tiny.py",
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return directory


def pbench_run_of(pb: dict[str, Any], factor: dict[str, float]) -> dict[str, Any]:
    """A pbench run of the same tests, each ``factor`` times the baseline's mean per call."""
    iterations = []
    for number, it in enumerate(pb["iterations"], 1):
        name = pbjson.benchmark_name(it)
        nodeid = it["nodeid"]
        if name == "test_sorted[1000]":
            nodeid = "suite/" + nodeid  # run from elsewhere: matched by name
        mean = it["metrics"]["wall_s"]["summary"]["mean"] * factor.get(name, 1.0)
        iterations.append(
            {
                "name": f"{number}-{name}",
                "nodeid": nodeid,
                "status": "ok",
                "metrics": {"wall_s": wall([mean * 0.999, mean, mean * 1.001])},
                "benchmark": fixture_meta(name, nodeid, 100),
            }
        )
    iterations.append(
        {
            "name": "9-bench_new",
            "nodeid": "benchmarks/bench_new.py::bench_new",
            "status": "ok",
            "metrics": {"wall_s": wall([1.0, 1.1])},
        }
    )
    return {"run": {"machine_info": machine_info()}, "iterations": iterations}


def test_a_pytest_benchmark_file_is_a_baseline(real_pytest_benchmark: Path) -> None:
    pb_file = real_pytest_benchmark / "pb.json"
    assert compare.resolve(real_pytest_benchmark, str(pb_file)) == pb_file
    base = compare.load(pb_file)
    raw = json.loads(pb_file.read_text())
    assert base["run"]["source"]["format"] == "pytest-benchmark"
    assert [it["nodeid"] for it in base["iterations"]] == [b["fullname"] for b in raw["benchmarks"]]
    for it, bench in zip(base["iterations"], raw["benchmarks"]):
        assert it["metrics"]["wall_s"]["values"] == bench["stats"]["data"]  # every round
        assert it["benchmark"]["loops"] == bench["stats"]["iterations"]
        assert "note" not in it
    new = pbench_run_of(base, {"test_sum": 2.0})
    pairs = compare.pairs(base, new)
    assert sorted(pbjson.benchmark_name(old) for old, _ in pairs) == [
        "test_sorted[1000]",
        "test_sorted[10]",
        "test_sum",
    ]
    assert all(pbjson.benchmark_name(a) == pbjson.benchmark_name(b) for a, b in pairs)
    found = {ch.benchmark: ch for ch in compare.changes(base, new)}
    assert set(found) == {
        "test_tiny.py::test_sum",
        "test_tiny.py::test_sorted[10]",
        "suite/test_tiny.py::test_sorted[1000]",
    }
    slower = found["test_tiny.py::test_sum"]
    # the new run is the base's mean doubled; the change is read on medians, which
    # pytest-benchmark's skewed rounds put a little apart from the means
    assert 90.0 < slower.pct < 130.0, slower.pct
    assert compare.verdict(slower) == "worse"
    assert compare.regressions([slower], ["wall_s:+10%"])
    lines = compare_report.table(list(found.values()))
    assert any("test_tiny.py::test_sum" in line and "worse" in line for line in lines)
    assert any("suite/test_tiny.py::test_sorted[1000]" in line for line in lines)
    # the same machine: nothing differs but what a pytest-benchmark file cannot say
    assert compare.differences(base, new) == []


def test_pbench_runs_are_still_matched_by_node_id_only() -> None:
    base = synthetic_result()
    new = synthetic_result()
    new["iterations"][0]["nodeid"] = "elsewhere/bench_math.py::bench_sum"
    assert "elsewhere/bench_math.py::bench_sum" not in {
        ch.benchmark for ch in compare.changes(base, new)
    }


def test_a_storage_directory_gives_its_newest_file(
    real_pytest_benchmark: Path, tmp_path: Path
) -> None:
    storage = tmp_path / ".benchmarks"
    shutil.copytree(real_pytest_benchmark / ".benchmarks", storage)
    (machine,) = storage.iterdir()
    assert machine.name == machine_id()
    (first,) = machine.glob("0001_*.json")
    newer = json.loads(first.read_text())
    newer["commit_info"]["id"] = "b" * 40
    (machine / "0002_newer.json").write_text(json.dumps(newer))
    os.utime(first)  # touched later, but numbered earlier
    for ref in (storage, machine):
        assert compare.resolve(tmp_path, str(ref)) == machine / "0002_newer.json"
        assert compare.load(ref)["run"]["commit_info"]["id"] == "b" * 40
    # pytest-benchmark saves no rounds by default: the summary stands in for them
    base = compare.load(storage)
    assert base["run"]["notes"] and "--benchmark-save-data" in base["run"]["notes"][0]
    for it, bench in zip(base["iterations"], newer["benchmarks"]):
        entry = it["metrics"]["wall_s"]
        assert entry["summary_only"] and entry["values"] == [bench["stats"]["mean"]]
        assert entry["summary"]["n"] == bench["stats"]["rounds"]
        assert "note" in it
    new = pbench_run_of(base, {"test_sum": 2.0})
    found = {ch.benchmark: ch for ch in compare.changes(base, new)}
    assert compare.verdict(found["test_tiny.py::test_sum"]) == "worse"
    # one machine's runs among several: named, else refused
    other = storage / "Linux-PyPy-3.10-64bit"
    other.mkdir()
    shutil.copy(first, other / "0007_x.json")
    assert compare.resolve(tmp_path, str(storage)) == machine / "0002_newer.json"
    machine.rename(storage / "Darwin-CPython-3.12-64bit")
    with pytest.raises(UsageError, match="several machines"):
        compare.resolve(tmp_path, str(storage))


def test_a_round_trip_keeps_every_round() -> None:
    result = synthetic_result()
    back = pbjson.from_pytest_benchmark(pbjson.to_pytest_benchmark(result))
    assert [it["nodeid"] for it in back["iterations"]] == [
        it["nodeid"] for it in result["iterations"][:3]
    ]
    for it, orig in zip(back["iterations"], result["iterations"]):
        assert it["metrics"]["wall_s"]["values"] == orig["metrics"]["wall_s"]["values"]
    found = compare.changes(result, back)
    assert len(found) == 3 and all(ch.pct == 0 and not ch.significant for ch in found)


def test_a_summary_only_baseline_uses_its_rounds_spread() -> None:
    stats = pbjson.benchmark_stats([1.0, 1.2, 0.8, 1.1, 0.9] * 20)
    del stats["data"]
    doc = {"benchmarks": [{"name": "test_a", "fullname": "t.py::test_a", "stats": stats}]}
    base = pbjson.from_pytest_benchmark(doc)
    near = {"iterations": [{"nodeid": "t.py::test_a", "metrics": {"wall_s": wall([1.02, 1.01])}}]}
    far = {"iterations": [{"nodeid": "t.py::test_a", "metrics": {"wall_s": wall([1.5, 1.52])}}]}
    assert not compare.changes(base, near)[0].significant
    assert compare.changes(base, far)[0].significant


# --- machine and commit -------------------------------------------------------------


def test_machine_info_has_pytest_benchmarks_keys() -> None:
    machine_info()  # the first call pays for platform's own caches
    began = time.perf_counter()
    info = machine_info()
    spent = time.perf_counter() - began
    assert spent < 0.05, spent
    assert MACHINE_KEYS | {"cpu_governor"} <= set(info)
    cpu = info["cpu"]
    assert cpu["count"] == os.cpu_count()
    assert {"arch", "bits", "arch_string_raw", "python_version"} <= set(cpu)
    if Path("/proc/cpuinfo").exists():
        assert cpu["brand_raw"]
    governor = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    expected = governor.read_text().strip() if governor.exists() else None
    assert info["cpu_governor"] == expected
    json.dumps(info)


def test_machine_info_agrees_with_pytest_benchmarks(real_pytest_benchmark: Path) -> None:
    theirs = json.loads((real_pytest_benchmark / "pb.json").read_text())["machine_info"]
    ours = machine_info()
    for key in MACHINE_KEYS - {"cpu"}:
        assert ours[key] == theirs[key], key
    for key in ("count", "arch", "bits", "vendor_id_raw", "brand_raw"):
        if key in theirs["cpu"]:
            assert ours["cpu"].get(key) == theirs["cpu"][key], key


def test_commit_info() -> None:
    began = time.perf_counter()
    info = commit_info(PROJECT)
    spent = time.perf_counter() - began
    assert set(info) >= COMMIT_KEYS
    if "error" not in info:  # a checkout (not, say, an unpacked sdist)
        assert re.fullmatch(r"[0-9a-f]{40}", info["id"])
        assert isinstance(info["dirty"], bool) and info["time"] and info["branch"]
        assert spent < 0.5, spent


def test_commit_info_outside_a_checkout(tmp_path: Path) -> None:
    info = commit_info(tmp_path)
    assert set(info) >= COMMIT_KEYS and info["error"] and info["id"] == "unversioned"
    assert commit_info(tmp_path / "missing")["error"]


def test_differences_name_what_differs() -> None:
    base = synthetic_result()
    new = copy.deepcopy(base)
    assert compare.differences(base, new) == []
    m = new["run"]["machine_info"]
    m["cpu"]["brand_raw"] = "AMD EPYC 9654"
    m["cpu"]["count"] = 96
    m["cpu_governor"], base["run"]["machine_info"]["cpu_governor"] = "powersave", "performance"
    m["python_implementation"] = "PyPy"
    m["python_version"] = "3.10.14"
    new["run"]["commit_info"].update(id="b" * 40, dirty=True)
    text = "\n".join(compare.differences(base, new))
    for what in (
        "CPU model",
        "AMD EPYC 9654",
        "CPU count",
        "96",
        "CPU governor",
        "'powersave'",
        "Python implementation",
        "Python version",
        "3.10.14",
        "commit differs: aaaaaaaaaaaa in base, bbbbbbbbbbbb in new",
        "new run's checkout had uncommitted changes",
    ):
        assert what in text, what
    assert "base run's checkout" not in text
    del new["run"]["machine_info"]
    assert "no machine_info in the new run" in "\n".join(compare.differences(base, new))
