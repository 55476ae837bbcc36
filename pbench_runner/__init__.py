"""pbench_runner: benchmarks run like tests, with performance tools on every host.

The public surface for plugin authors is :mod:`pbench_runner.hookspecs` (every
hook) and :mod:`pbench_runner.tools` (the types a tool plugin returns), with
:data:`hookimpl` to mark a hook implementation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

__version__: Final = "0.1.0"

if TYPE_CHECKING:
    import pluggy

    #: Mark a function as an implementation of one of our hooks.
    hookimpl: pluggy.HookimplMarker


def __getattr__(name: str) -> Any:
    # pluggy is imported on first use, so that commands that load no plugin
    # (the lifecycle verbs) start faster.
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("pbench_runner")
        globals()["hookimpl"] = marker
        return marker
    raise AttributeError(f"module 'pbench_runner' has no attribute {name!r}")


__all__ = ["__version__", "hookimpl"]
