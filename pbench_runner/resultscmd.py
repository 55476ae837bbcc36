"""The verbs of results: ``move-results``, ``copy-results``, ``server``, ``server token create``."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from pbench_runner.config import run_dir
from pbench_runner.errors import UploadError, UsageError
from pbench_runner.exitcodes import ExitCode

VERBS = frozenset({"move-results", "copy-results", "server"})
_SIZE = re.compile(r"^(\d+)([KMGT]?)(i?B)?$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``"10G"`` -> 10 GiB; plain numbers are bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: use bytes or 512M, 10G, 1T")
    power = " KMGT".index(match[2].upper() or " ")
    return int(match[1]) << (10 * power)


def add_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: Callable[[argparse.ArgumentParser], None],
) -> None:
    for verb, what in (
        ("move-results", "send finished results to a results server, then remove them here"),
        ("copy-results", "send finished results to a results server and keep them here"),
    ):
        p = sub.add_parser(verb, help=what)
        common(p)
        p.add_argument(
            "results", nargs="*", help="result directories (default: every finished one)"
        )
        p.add_argument("--server", help="the results server's URL (default: $PBENCH_SERVER)")
        p.add_argument("--token", help="your access token (default: $PBENCH_ACCESS_TOKEN)")
        p.add_argument("--public", action="store_true", help="let everyone see these results")
        if verb == "move-results":
            p.add_argument(
                "--keep", action="store_true", help="keep the local copy (as copy-results)"
            )

    p = sub.add_parser("server", help="run the results server (web pages and upload API)")
    p.set_defaults(run_dir=None, plugins=[])
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (0 picks a free one; default 8080)")
    p.add_argument("--data-dir", default="pbench-server-data", help="tarballs and the index")
    p.add_argument("--max-size", type=parse_size, default="64G", help="largest upload (64G)")
    p.add_argument(
        "--reserve", type=parse_size, default="256M", help="disk space always kept free (256M)"
    )
    p.add_argument(
        "--max-unpacked",
        type=parse_size,
        default="256M",
        help="most bytes unpacked from one upload to index it; past it: 413 (256M)",
    )
    tokens = p.add_subparsers(dest="server_verb", metavar="token")
    t = tokens.add_parser("token", help="manage access tokens")
    t_sub = t.add_subparsers(dest="token_verb", metavar="create", required=True)
    c = t_sub.add_parser("create", help="make a token for a user and print it")
    c.add_argument("--user", required=True)
    c.add_argument("--data-dir", dest="token_data_dir", help="the server's data directory")


def run_verb(args: argparse.Namespace) -> int:
    if args.verb == "server":
        return _server(args)
    from pbench_runner import results

    settings = results.server_settings(args.server, args.token)
    keep = args.verb == "copy-results" or args.keep
    failures = results.send_results(
        run_dir(args.run_dir), args.results, settings, keep=keep, public=args.public
    )
    for failure in failures:
        print(f"pbench: error: {failure}", file=sys.stderr)
    return ExitCode.INFRASTRUCTURE_ERROR if failures else ExitCode.OK


def _server(args: argparse.Namespace) -> int:
    from pbench_runner.server.app import ServerOptions, open_index, serve

    chosen = getattr(args, "token_data_dir", None) or args.data_dir
    data_dir = Path(chosen).expanduser().absolute()
    if args.server_verb == "token":
        from pbench_runner.server.auth import create_token

        token = create_token(open_index(data_dir), args.user)
        print(f"a new token for {args.user} (shown only now; the server keeps its hash):")
        print(token)
        return ExitCode.OK
    if not 0 <= args.port <= 65535:
        raise UsageError(f"bad --port {args.port}: 0 to 65535")
    return serve(
        ServerOptions(
            host=args.host,
            port=args.port,
            data_dir=data_dir,
            max_size=args.max_size,
            reserve=args.reserve,
            max_unpacked=args.max_unpacked,
        )
    )


def upload_after_run(rdir: Path, result_dir: Path) -> int:
    """``pbench run --upload``: copy the run's result to the server (the local copy stays)."""
    from pbench_runner import results

    try:
        settings = results.server_settings(None, None)
        failures = results.send_results(rdir, [str(result_dir)], settings, keep=True)
    except (UploadError, UsageError) as exc:
        failures = [str(exc)]
    for failure in failures:
        print(f"pbench: error: upload: {failure}", file=sys.stderr)
    return ExitCode.INFRASTRUCTURE_ERROR if failures else ExitCode.OK
