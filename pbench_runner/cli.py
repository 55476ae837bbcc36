"""The ``pbench`` command: registration, the lifecycle verbs and user-benchmark.

Heavy imports (pluggy entry points, CherryPy, requests) are made only by the
verbs that need them, so that a lifecycle verb stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from pbench_runner import __version__
from pbench_runner.config import Deadlines, load_deadlines, run_dir
from pbench_runner.errors import InfrastructureError, Interrupted, PbenchError, UsageError
from pbench_runner.exitcodes import ExitCode
from pbench_runner.remote.options import MODES, ON_HOST_FAILURE


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run-dir",
        help="where the tool store, sessions and results live "
        "(default: $PBENCH_RUN_DIR or ./.pbench)",
    )
    p.add_argument(
        "-p",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE",
        help="also load this plugin module (repeatable)",
    )


def _deadline_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start-timeout", type=float, help="seconds for every part to be ready")
    p.add_argument("--action-timeout", type=float, help="seconds for start/stop per host")
    p.add_argument("--send-timeout", type=float, help="seconds for send (tar + upload) per host")


def _remote_opts(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remote hosts (also [remote] in pbench.toml)")
    g.add_argument("--ssh-config", help="OpenSSH client config (default ~/.ssh/config)")
    g.add_argument("--known-hosts", help="known hosts file (default: from the ssh config)")
    g.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        default=None,
        help="record the key of a host not yet in known_hosts (a changed key is refused)",
    )
    g.add_argument(
        "--remote-mode",
        dest="mode",
        choices=MODES,
        help="tunnel (default): Redis and the sink over SSH; direct: plain TCP to them",
    )
    g.add_argument(
        "--controller-address", dest="address", help="direct mode: the address hosts reach"
    )
    g.add_argument("--remote-dir", help="bundle cache and run directories on the hosts")
    g.add_argument(
        "--on-host-failure",
        choices=ON_HOST_FAILURE,
        default="abort",
        help="when a host is lost mid-run: stop the run (default) or go on without it",
    )


def remote_options(args: argparse.Namespace) -> Any:
    """The RemoteOptions of a command line (with pbench.toml's [remote] underneath)."""
    from pbench_runner.config import load_remote

    return load_remote(
        ssh_config=args.ssh_config,
        known_hosts=args.known_hosts,
        accept_new_host_keys=args.accept_new_host_keys,
        mode=args.mode,
        address=args.address,
        remote_dir=args.remote_dir,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pbench", description="Benchmarks with performance tools on every host.")
    parser.add_argument("--version", action="version", version=f"pbench_runner {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    p = sub.add_parser("register-tool", help="register a tool on hosts of a tool group")
    _common(p)
    p.add_argument("--name", required=True, help="the tool (see list-tools --available)")
    p.add_argument("--group", default="default")
    p.add_argument("--remotes", help="H1,H2 or @FILE (default: this host)")
    p.add_argument("--labels", help="L1,L2: labels for the hosts")

    p = sub.add_parser("register-tool-set", help="register a named set of tools")
    _common(p)
    p.add_argument(
        "toolset",
        nargs="?",
        default="default",
        help="light, medium, heavy (default: medium) or a set of your own",
    )
    p.add_argument("--group", default="default")
    p.add_argument("--remotes")
    p.add_argument("--labels")
    p.add_argument("--interval", help="sampling interval for every tool of the set")

    p = sub.add_parser("list-tools", help="show registered (or available) tools")
    _common(p)
    p.add_argument("--group")
    p.add_argument("--name")
    p.add_argument("--available", action="store_true", help="every tool the plugins provide")

    p = sub.add_parser("clear-tools", help="remove tool registrations")
    _common(p)
    p.add_argument("--group")
    p.add_argument("--name")
    p.add_argument("--remotes")

    p = sub.add_parser("tool-meister-start", help="start Redis, the sink and the meisters")
    _common(p)
    _deadline_opts(p)
    p.add_argument("--group", default="default")
    p.add_argument("--sysinfo", default="none", help="default, all, none or item,item")
    p.add_argument("--dir", help="result directory for sysinfo and logs (default: a new one)")
    _remote_opts(p)

    for verb, what in (("start-tools", "start"), ("stop-tools", "stop"), ("send-tools", "send")):
        p = sub.add_parser(verb, help=f"{what} the tools of a group for a directory")
        _common(p)
        p.add_argument("--group", default=None)
        p.add_argument("--dir", required=True, help="the sample directory")
        p.add_argument("--run-id", help="the session (when several are running)")

    p = sub.add_parser("tool-meister-stop", help="stop the meisters, the sink and Redis")
    _common(p)
    p.add_argument("--group", default=None)
    p.add_argument("--run-id")
    p.add_argument("--sysinfo", default="none", help="collect sysinfo (end) first")

    p = sub.add_parser("kill", help="stop every process a crashed run left behind")
    _common(p)
    p.add_argument("--run-id", help="only this run (default: every session in the run dir)")

    from pbench_runner.runcmd import add_parser as add_run_parser

    add_run_parser(sub, _common)

    from pbench_runner.resultscmd import add_parser as add_results_parser

    add_results_parser(sub, _common)

    p = sub.add_parser("user-benchmark", help="run a command with tools around every sample")
    _common(p)
    _deadline_opts(p)
    p.add_argument("--config", default="", help="a name for this configuration")
    p.add_argument("--tool-group", default="default")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--sysinfo", default="default", help="default, all, none or item,item")
    _remote_opts(p)
    return parser


def _split_dashdash(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []


def _deadlines(args: argparse.Namespace) -> Deadlines:
    return load_deadlines().with_overrides(
        startup=getattr(args, "start_timeout", None),
        action=getattr(args, "action_timeout", None),
        send=getattr(args, "send_timeout", None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    head, tail = _split_dashdash(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(head)
        if args.verb is None:
            build_parser().print_help()
            return ExitCode.USAGE_ERROR
        return dispatch(args, tail)
    except Interrupted as exc:
        print(f"pbench: {exc}", file=sys.stderr)
        return ExitCode.TERMINATED if exc.signum == signal.SIGTERM else ExitCode.INTERRUPTED
    except InfrastructureError as exc:
        print(f"pbench: error: {exc}", file=sys.stderr)
        return ExitCode.INFRASTRUCTURE_ERROR
    except PbenchError as exc:
        print(f"pbench: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE_ERROR
    except BrokenPipeError:  # `pbench list-tools | head`: the reader has all it wants
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except OSError as exc:  # a path the user gave that cannot be used
        print(f"pbench: error: {exc}", file=sys.stderr)
        return ExitCode.USAGE_ERROR
    except KeyboardInterrupt:
        print("pbench: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


SESSION_VERBS = frozenset(
    {"tool-meister-start", "start-tools", "stop-tools", "send-tools", "tool-meister-stop", "kill"}
)


def dispatch(args: argparse.Namespace, tail: list[str]) -> int:
    rdir = run_dir(args.run_dir)
    verb = args.verb
    if verb == "run":
        from pbench_runner.runcmd import run

        return run(args, tail)
    if verb == "compare":
        from pbench_runner.runcmd import compare_runs

        return compare_runs(args)
    if verb in ("move-results", "copy-results", "server"):
        from pbench_runner.resultscmd import run_verb

        return run_verb(args)
    if verb == "user-benchmark":
        from pbench_runner.config import check_settings, find_settings

        check_settings(find_settings())  # a typo in the settings is refused, as by pbench run
        if not tail:
            raise UsageError("user-benchmark needs a command after --, e.g. -- sleep 1")
        if args.samples < 1:
            raise UsageError("--samples must be 1 or more")
        from pbench_runner.run import RunOptions
        from pbench_runner.userbenchmark import SCRIPT, Options, UserBenchmark

        run_opts = RunOptions(
            script=SCRIPT,
            run_dir=rdir,
            group=args.tool_group,
            config=args.config,
            sysinfo=args.sysinfo,
            plugins=args.plugins,
            deadlines=_deadlines(args),
            remote=remote_options(args),
            on_host_failure=args.on_host_failure,
        )
        opts = Options(run=run_opts, command=tail, samples=args.samples)
        if args.sysinfo not in ("default", "all", "none"):
            _check_sysinfo(args.sysinfo, args.plugins)
        return UserBenchmark(opts).run()
    if tail and verb != "register-tool":
        raise UsageError(f"{verb} takes no arguments after --")
    name = verb.replace("-", "_")
    if verb in SESSION_VERBS:
        from pbench_runner import sessioncmds

        handler = getattr(sessioncmds, name)
    else:
        from pbench_runner import commands

        handler = getattr(commands, name)
    deadlines = _deadlines(args) if verb == "tool-meister-start" else Deadlines()
    return int(handler(rdir, args, tail, deadlines))


def _check_sysinfo(selection: str, plugins: Sequence[str]) -> None:
    from pbench_runner.pluginmanager import get_plugin_manager
    from pbench_runner.sysinfo import select_items

    pm = get_plugin_manager(plugins)
    items = [item for batch in pm.hook.pbench_sysinfo_items() for item in batch or ()]
    select_items(items, selection)


if __name__ == "__main__":
    sys.exit(main())
