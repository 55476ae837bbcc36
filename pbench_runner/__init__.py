"""pbench_runner: benchmarks run like tests, with performance tools on every host.

The public surface for plugin authors is :mod:`pbench_runner.hookspecs` (every
hook) and :mod:`pbench_runner.tools` (the types a tool plugin returns).
"""

from __future__ import annotations

from typing import Final

__version__: Final = "0.1.0"

import pluggy

#: Mark a function as an implementation of one of our hooks.
hookimpl: Final = pluggy.HookimplMarker("pbench_runner")

__all__ = ["__version__", "hookimpl"]
