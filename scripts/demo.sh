#!/usr/bin/env bash
# The demo: register the medium tool set on this host and run every script in
# benchmarks/ with pbench user-benchmark, three samples each.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PBENCH_RUN_DIR="${PBENCH_RUN_DIR:-$here/.pbench-demo}"
samples="${SAMPLES:-3}"
pbench clear-tools --group=demo >/dev/null 2>&1 || true
pbench register-tool-set medium --group=demo --interval=1
for script in "$here"/benchmarks/*.py; do
    name="$(basename "$script" .py)"
    echo "== $name"
    pbench user-benchmark --tool-group=demo --config="$name" --samples="$samples" \
        --sysinfo=default -- python3 "$script"
done
echo
echo "Results are under $PBENCH_RUN_DIR/results/:"
ls -1 "$PBENCH_RUN_DIR/results/"
