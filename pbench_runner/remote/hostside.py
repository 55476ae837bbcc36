"""What runs on a remote host, from the shipped bundle.

``serve``: read the Redis password from the first line of stdin, then run the
host's Tool Meister while a watchdog reads the rest of stdin, where the
controller writes a keepalive byte every second.  End of input (the
controller died, or its SSH connection closed) or silence longer than
``--lost-after`` seconds (the connection is cut) stops the meister: it stops
its tools and exits.  The per-run directory is removed on the way out; the
cached bundle stays.

``kill``: stop every process of a run on this host and remove its per-run
directory (``pbench kill`` runs it over SSH).

Every process started here carries ``PBENCH_REMOTE_RUN_ID`` in its
environment, which is how ``kill`` finds them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("pbench.hostside")

RUN_ENV = "PBENCH_REMOTE_RUN_ID"
#: after asking the meister to stop, how long it may take before the process ends anyway
STOP_GRACE_S = 10.0


def run_dir(base: Path, run_id: str) -> Path:
    return base / "runs" / run_id


def remove_run_dir(base: Path, run_id: str) -> None:
    """Remove ``<base>/runs/<run_id>``, and never anything else."""
    path = run_dir(base, run_id)
    if not run_id or not run_id.isalnum() or not base.is_absolute() or base == Path("/"):
        log.error("refusing to remove %s", path)
        return
    shutil.rmtree(path, ignore_errors=True)


class Watchdog(threading.Thread):
    """Stops this process when the controller's keepalive on stdin ends or falls silent."""

    def __init__(self, lost_after: float, on_lost: Callable[[str], None]) -> None:
        super().__init__(name="watchdog", daemon=True)
        self.lost_after = lost_after
        self.on_lost = on_lost

    def run(self) -> None:
        last = time.monotonic()
        while True:
            ready, _, _ = select.select([0], [], [], 0.5)
            if ready:
                if not os.read(0, 4096):
                    self.on_lost("the controller closed the connection")
                    return
                last = time.monotonic()
            elif time.monotonic() - last > self.lost_after:
                self.on_lost(f"no word from the controller for {self.lost_after:g} s")
                return


def _stop_self(base: Path, run_id: str) -> Callable[[str], None]:
    def lost(why: str) -> None:
        log.warning("%s: stopping the tools and exiting", why)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(STOP_GRACE_S)
        # The meister's tools are stopped by now or die with it (parent-death signal).
        log.error("the meister did not exit within %g s; leaving anyway", STOP_GRACE_S)
        remove_run_dir(base, run_id)
        os._exit(3)

    return lost


def serve(args: argparse.Namespace) -> int:
    from pbench_runner.meister import serve_host

    # The end of the SSH session is seen by the watchdog, which stops the meister
    # in order; a hangup must not kill it before it has cleaned up.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    # Given to the meister, never put in the environment every tool inherits.
    password = sys.stdin.buffer.readline().strip().decode()
    base = Path(args.base)
    run_dir(base, args.run_id).mkdir(parents=True, exist_ok=True)
    log.info(
        "tool meister for host %s from bundle %s, %s %s (isolated=%d)",
        args.host,
        Path(__file__).resolve().parents[2],
        sys.executable,
        sys.version.split()[0],
        sys.flags.isolated,
    )
    Watchdog(args.lost_after, _stop_self(base, args.run_id)).start()
    try:
        return serve_host(args.redis, args.run_id, args.host, password)
    finally:
        remove_run_dir(base, args.run_id)


def kill(args: argparse.Namespace) -> int:
    from pbench_runner.procs import kill_run

    pids = kill_run(args.run_id, timeout=3.0, env_name=RUN_ENV)
    remove_run_dir(Path(args.base), args.run_id)
    print(json.dumps({"killed": pids}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pbench-remote")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--redis", required=True)
    p.add_argument("--run-id", required=True)
    p.add_argument("--host", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--lost-after", type=float, default=30.0)
    p = sub.add_parser("kill")
    p.add_argument("--run-id", required=True)
    p.add_argument("--base", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s tm[{getattr(args, 'host', '-')}] %(levelname)s %(message)s",
    )
    return int(serve(args) if args.verb == "serve" else kill(args))


if __name__ == "__main__":
    sys.exit(main())
