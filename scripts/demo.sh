#!/usr/bin/env bash
# The demo: register the medium tool set on this host, then run the benchmark
# suite in benchmarks/ with `pbench run`, tools around every sample.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PBENCH_RUN_DIR="${PBENCH_RUN_DIR:-$here/.pbench-demo}"
cd "$here"
pbench clear-tools --group=demo >/dev/null 2>&1 || true
pbench register-tool-set medium --group=demo --interval=1
exec pbench run benchmarks --tool-group=demo --config=demo --samples="${SAMPLES:-3}" "$@"
