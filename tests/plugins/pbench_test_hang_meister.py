"""A plugin that makes the tool meister hang while it loads its tools.

Loaded with ``pbench -p pbench_test_hang_meister``: in the meister's process
(and only there, not in the CLI, the session agent or the sink, which load the
same plugins) ``pbench_tool_specs`` sleeps instead of answering, so the
meister never reports ready and the controller's start deadline names it.

If $TEST_HANG_MEISTER_RECORD names a file, the hanging meister first writes
``<run id> <pid>`` there, so a test can check that it really hung and is gone.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from pbench_runner import hookimpl
from pbench_runner.bus import RUN_ID_ENV
from pbench_runner.tools import ToolSpec

#: how long the meister hangs: far beyond any start deadline a test uses
HANG_SECONDS = 120.0


def _in_meister() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == "pbench_runner.meister"


@hookimpl
def pbench_tool_specs() -> Sequence[ToolSpec]:
    if _in_meister():
        record = os.environ.get("TEST_HANG_MEISTER_RECORD")
        if record:
            with open(record, "w") as fh:
                fh.write(f"{os.environ.get(RUN_ID_ENV, '')} {os.getpid()}\n")
        time.sleep(HANG_SECONDS)  # SIGTERM (the meister's Terminate) or SIGKILL ends it
    return []
