"""The pytest plugin behind ``pbench run`` (entry point ``pytest11``: ``pbench``).

It is inert in an ordinary pytest run.  ``pbench run`` turns it on with
``--pbench-run`` and makes pytest collect ``bench_*.py`` files, ``bench_*``
functions and ``Bench*`` classes; then every collected benchmark is run for
its samples, each sample wrapped in start-tools / stop-tools / send-tools.
Discovery, fixtures, ``conftest.py``, ``parametrize``, markers, ``-k``,
``-x``, ``--junitxml`` and ``-p`` all stay pytest's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from pbench_runner.bench import SampleHandle

MARKER = (
    "pbench(samples=None, warmup=None, tool_group=None, timeout=None, tools=True, "
    "sysinfo=None): how pbench runs this benchmark: number of samples and warm-up runs, "
    "the tool group around each sample, a per-sample timeout in seconds, no tools at "
    "all, or sysinfo items collected before and after it (into its own directory)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pbench", "pbench benchmark runner (set by `pbench run`)")
    group.addoption("--pbench-run", action="store_true", help="run benchmarks with tools")
    group.addoption("--pbench-run-dir", default=None, help="the run directory")
    group.addoption("--pbench-samples", type=int, default=3, help="samples per benchmark")
    group.addoption("--pbench-warmup", type=int, default=0, help="unrecorded runs first")
    group.addoption("--pbench-tool-group", default="default", help="tools around samples")
    group.addoption(
        "--pbench-on-host-failure", default="abort", help="abort or continue without a lost host"
    )
    group.addoption("--pbench-config", default="", help="a name for this configuration")
    group.addoption("--pbench-sysinfo", default="default", help="sysinfo at start and end")
    group.addoption("--pbench-timeout", type=float, default=None, help="per-sample timeout")
    group.addoption("--pbench-json", default=None, help="also write the results here")
    group.addoption("--pbench-plugin", action="append", default=[], help="pbench plugins")
    group.addoption("--pbench-result-file", default=None, help="write the result dir's path here")
    group.addoption("--pbench-no-progress", action="store_true", help="no progress display")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)
    if config.getoption("pbench_run"):
        from pbench_runner.benchsession import BenchSession

        config.pluginmanager.register(BenchSession(config), "pbench-session")


@pytest.fixture
def sample(request: pytest.FixtureRequest) -> Iterator[SampleHandle]:
    """The sample being run: ``sample.run(...)``, ``sample.record(...)``."""
    handle = SampleHandle()
    request.node.stash[HANDLE] = handle
    yield handle


HANDLE: pytest.StashKey[SampleHandle] = pytest.StashKey()


def handle_of(item: Any) -> SampleHandle | None:
    stash = getattr(item, "stash", None)
    return stash.get(HANDLE, None) if stash is not None else None
