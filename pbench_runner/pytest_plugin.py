"""The pytest plugin behind ``pbench run`` (entry point ``pytest11``: ``pbench``).

It only declares the ``pbench`` marker and the ``sample`` fixture: it is inert
in an ordinary pytest run.  ``pbench run`` calls ``pytest.main`` with its own
session object (:class:`~pbench_runner.benchsession.BenchSession`) as a plugin
and makes pytest collect ``bench_*.py`` files, ``bench_*`` functions and
``Bench*`` classes; then every collected benchmark is run for its samples,
each sample wrapped in start-tools / stop-tools / send-tools.
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


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


def marker_keywords(item: Any, name: str, known: frozenset[str]) -> dict[str, Any]:
    """The keywords of ``item``'s closest ``name`` marker; one it does not know
    is an error naming the benchmark and what the marker takes."""
    from pbench_runner.errors import UsageError

    marker = item.get_closest_marker(name)
    options: dict[str, Any] = dict(marker.kwargs) if marker else {}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UsageError(
            f"{item.nodeid}: the {name} marker has no {', '.join(unknown)} "
            f"(it takes {', '.join(sorted(known))})"
        )
    return options
