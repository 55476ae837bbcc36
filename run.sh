#!/usr/bin/env bash
# One entry point for people and CI.
#   ./run.sh demo    set up, then run the demo benchmarks with tools around every sample
#   ./run.sh test    set up, then run the test suite
#   ./run.sh perf    set up, then run the project's own performance benchmarks
#   ./run.sh setup   only set up (Debian packages + .venv)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
what="${1:-demo}"
shift || true
bash scripts/install.sh
export PATH="$here/.venv/bin:$PATH"
case "$what" in
    setup) ;;
    demo) exec bash scripts/demo.sh "$@" ;;
    test) exec python -m pytest tests "$@" ;;
    perf) exec python perf/run_all.py "$@" ;;
    *) echo "usage: ./run.sh [demo|test|perf|setup] [args]" >&2; exit 2 ;;
esac
