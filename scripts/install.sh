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
    [ssh-keygen]=openssh-client
    [/usr/sbin/sshd]=openssh-server
    [pmlogger]=pcp
    [pmdumplog]=pcp
    [prometheus]=prometheus
    [promtool]=prometheus
    [prometheus-node-exporter]=prometheus-node-exporter
    [xz]=xz-utils        # move-results: multi-threaded xz
    [chromium]=chromium  # the results server's browser tests (Playwright drives it)
    [tmux]=tmux          # the terminal tests: pbench run on a real terminal
)

sudo=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then sudo="sudo"; fi
missing=()
for prog in "${!needs[@]}"; do
    command -v "$prog" >/dev/null 2>&1 || missing+=("${needs[$prog]}")
done
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    echo "install.sh: installing Debian packages: ${missing[*]}"
    if [[ $(id -u) -ne 0 && -z $sudo ]]; then
        echo "install.sh: need root or sudo to install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Package scripts (pcp's) start services with systemctl, which fails where
    # systemd is not PID 1 (containers, CI): give them one that does nothing.
    # apt resets PATH for dpkg, hence DPkg::Path.
    nosystemd="$(mktemp -d)"
    trap 'rm -f "$nosystemd/systemctl"; rmdir "$nosystemd"' EXIT
    printf '#!/bin/sh\nexit 0\n' >"$nosystemd/systemctl"
    chmod +x "$nosystemd/systemctl"
    apt_opts=(-o "DPkg::Path=$nosystemd:/usr/sbin:/usr/bin:/sbin:/bin" -o DPkg::Lock::Timeout=600)
    $sudo apt-get "${apt_opts[@]}" update -qq
    $sudo apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# pmcd needs PCP's namespace, which its service would build on first start.
if [[ -x /var/lib/pcp/pmns/Rebuild && ! -f /var/lib/pcp/pmns/root ]]; then
    echo "install.sh: building PCP's metric namespace"
    (cd /var/lib/pcp/pmns && $sudo ./Rebuild -du 2>/dev/null)
fi

python="${PYTHON:-python3}"
# 3.9 or newer, with tarfile's data filter (3.9.17, 3.10.12, 3.11.4 and later)
"$python" -c 'import sys, tarfile; sys.exit(sys.version_info < (3, 9) or not hasattr(tarfile, "data_filter"))' || {
    echo "install.sh: Python 3.9.17, 3.10.12, 3.11.4 or newer is needed ($python is $("$python" --version 2>&1))" >&2
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
