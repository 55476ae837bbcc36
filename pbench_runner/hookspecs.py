"""Every hook of pbench_runner, grouped by lifecycle phase.

This is the one file a plugin author needs to read.  Implement a hook with
``@pbench_runner.hookimpl`` on a function of the same name in your module,
then register the module through the ``pbench_runner.tools`` entry-point
group in your package's metadata::

    [project.entry-points."pbench_runner.tools"]
    mytool = "my_package.my_module"

The built-in tools (``plugins/tools/``) register through exactly that group.
A module can also be registered for one invocation with ``pbench -p MODULE``.

Hooks of the *declaration* phase return values; every other hook is a
broadcast whose return value is ignored.  Every verb (``pbench run``,
``pbench user-benchmark`` and the lifecycle verbs) fires the broadcasts in the
same order, with the same arguments, from the one run protocol
(:mod:`pbench_runner.run`)::

    pbench_run_started
        pbench_sample_started → pbench_tools_stopped → pbench_sample_finished   (each sample)
    pbench_run_finished

Hooks are called through pluggy's hook caller, so every call is checked
against these specs and hook wrappers (``@hookimpl(wrapper=True)``) work.
Each plugin's implementation of a broadcast is called on its own (a wrapper
wraps each of those calls), so an observer that raises is logged with its
traceback and reported as a warning, and never stops the other observers or
the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pbench_runner.sysinfo import SysinfoItem
    from pbench_runner.tools import ToolSpec

hookspec = pluggy.HookspecMarker("pbench_runner")

# --- declaration ---------------------------------------------------------


@hookspec
def pbench_tool_specs() -> Sequence[ToolSpec]:
    """Return the tools this plugin provides, one :class:`ToolSpec` each.

    Called once per process when the plugin manager is built.  Tool names
    (and aliases) must be unique over all plugins; a clash is an error that
    names both plugins.
    """


@hookspec
def pbench_sysinfo_items() -> Sequence[SysinfoItem]:
    """Return the sysinfo items this plugin can collect on a host."""


# --- run (controller) -------------------------------------------------------


@hookspec
def pbench_run_started(run_id: str, result_dir: Path, hosts: Sequence[str]) -> None:
    """A run's tool meisters are all ready, its persistent tools recording;
    ``result_dir`` now exists.  ``hosts`` is empty for a run without tools."""


@hookspec
def pbench_sample_started(run_id: str, sample_dir: Path, group: str) -> None:
    """The tools of ``group`` have started for a sample; the benchmark runs next."""


@hookspec
def pbench_tools_stopped(run_id: str, sample_dir: Path, group: str) -> None:
    """The tools of ``group`` have stopped on every host for ``sample_dir``."""


@hookspec
def pbench_sample_finished(
    run_id: str, sample_dir: Path, group: str, result: Mapping[str, Any]
) -> None:
    """Every host's tool data for a sample is in ``sample_dir``.

    ``result`` is the sample's record, as its ``result.json`` holds it:
    ``status``, ``wall_s``, ``cpu_s``, ``window``, the per-host summary
    ``hosts``, and ``command`` and ``exit_status`` under user-benchmark.
    """


@hookspec
def pbench_run_finished(run_id: str, result_dir: Path, exit_status: int) -> None:
    """The run is over and every process it started has stopped."""


# --- sink -----------------------------------------------------------------------


@hookspec
def pbench_tool_data_received(host: str, directory: Path, kind: str) -> None:
    """The Tool Data Sink has unpacked a host's tarball into ``directory``.

    ``kind`` is ``"tools"`` for tool data and ``"sysinfo"`` for sysinfo.
    Called in the sink's process.
    """
