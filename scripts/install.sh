#!/usr/bin/env bash
# Install what pbench_runner needs on this machine: the Debian packages of the
# programs it drives (when missing) and the Python package in ./.venv.
# Safe to run again: it only installs what is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PBENCH_VENV:-$here/.venv}"

# program -> Debian package
declare -A needs=(
    [redis-server]=redis-server
    [vmstat]=procps
    [sar]=sysstat
    [iostat]=sysstat
    [lsblk]=util-linux
    [setpriv]=util-linux
    [ip]=iproute2
    [xz]=xz-utils        # move-results: multi-threaded xz
    [chromium]=chromium  # the results server's browser tests (Playwright drives it)
)

missing=()
for prog in "${!needs[@]}"; do
    command -v "$prog" >/dev/null 2>&1 || missing+=("${needs[$prog]}")
done
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "install.sh: installing Debian packages: ${missing[*]}"
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "install.sh: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python="${PYTHON:-python3}"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || {
    echo "install.sh: Python 3.9 or newer is needed ($python is $("$python" --version 2>&1))" >&2
    exit 1
}
if [[ ! -x "$venv/bin/python" ]]; then
    echo "install.sh: creating the virtual environment $venv"
    "$python" -m venv "$venv"
fi
stamp="$venv/.pbench-installed"
if [[ ! -f "$stamp" || "$here/pyproject.toml" -nt "$stamp" ]]; then
    echo "install.sh: installing pbench_runner and its dependencies into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$venv/bin/python" -m pip install -q -e "$here[dev]"
    touch "$stamp"
fi
echo "install.sh: ready ($("$venv/bin/pbench" --version))"
