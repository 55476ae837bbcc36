"""``python -m pbench_runner`` is the ``pbench`` command."""

from __future__ import annotations

import sys

from pbench_runner.cli import main

if __name__ == "__main__":
    sys.exit(main())
