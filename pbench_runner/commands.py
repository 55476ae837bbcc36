"""The handlers of ``pbench`` verbs other than user-benchmark."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pbench_runner.config import Deadlines, toolsets
from pbench_runner.errors import ToolStoreError
from pbench_runner.exitcodes import ExitCode
from pbench_runner.toolstore import ToolStore, parse_labels, parse_remotes


def _registry(args: argparse.Namespace) -> Any:
    from pbench_runner.pluginmanager import get_plugin_manager, tool_registry

    return tool_registry(get_plugin_manager(args.plugins))


def register_tool(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    from pbench_runner.tools import parse_tool_options

    hosts = parse_remotes(args.remotes)
    labels = parse_labels(args.labels)
    registry = _registry(args)
    name = registry.canonical(args.name) if args.name in registry.aliases else args.name
    ToolStore(rdir).register(registry, args.group, {name: parse_tool_options(tail)}, hosts, labels)
    for host in hosts:
        print(f"{name} registered on {host} in group {args.group}")
    return ExitCode.OK


def register_tool_set(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    sets = toolsets(rdir)
    if args.toolset not in sets:
        raise ToolStoreError(
            f"unknown tool set {args.toolset!r}; tool sets: {', '.join(sorted(sets))}"
        )
    registry = _registry(args)
    tools: dict[str, dict[str, str]] = {}
    for name, options in sets[args.toolset].items():
        if not isinstance(options, dict):
            raise ToolStoreError(f"tool set {args.toolset!r}: entry {name!r} must be a table")
        raw = {str(k): str(v) for k, v in options.items()}
        spec = registry.get(name)
        if args.interval is not None and spec.option("interval") is not None:
            raw["interval"] = args.interval
        tools[spec.name] = raw
    hosts = parse_remotes(args.remotes)
    ToolStore(rdir).register(registry, args.group, tools, hosts, parse_labels(args.labels))
    print(
        f"tool set {args.toolset} ({', '.join(tools)}) registered on "
        f"{', '.join(hosts)} in group {args.group}"
    )
    return ExitCode.OK


def _canonical(args: argparse.Namespace) -> str | None:
    """``--name``, with an alias (``node-exporter``) turned into its tool's name.

    A name no plugin knows is kept as it is: its plugin may be gone, and its
    registration can still be listed and cleared.
    """
    if not args.name:
        return None
    return str(_registry(args).aliases.get(args.name, args.name))


def list_tools(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    args.name = _canonical(args)
    if args.available:
        registry = _registry(args)
        if args.name:
            registry.get(args.name)  # an unknown name: a usage error listing the tools
        for name, spec in sorted(registry.specs.items()):
            if args.name and args.name != name:
                continue
            missing = {**spec.missing_programs(), **spec.missing_collector_programs()}
            state = (
                "ready"
                if not missing
                else "missing "
                + ", ".join(f"{prog} (package {pkg})" for prog, pkg in missing.items())
            )
            aliases = f" (alias {', '.join(spec.aliases)})" if spec.aliases else ""
            kind = f"{spec.kind}, recorded on the controller" if spec.collector else spec.kind
            print(f"{name}{aliases}  [{kind}]  {spec.summary}  -- {state}")
            for opt in spec.options:
                default = f" (default {opt.default})" if opt.default is not None else ""
                print(f"    --{opt.name}{default}  {opt.help}")
        return ExitCode.OK
    store = ToolStore(rdir)
    groups = [args.group] if args.group else store.groups()
    found = False
    for group in groups:
        tg = store.load(group)
        for host, entry in sorted(tg.hosts.items()):
            for tool, options in sorted(entry.tools.items()):
                if args.name and tool != args.name:
                    continue
                found = True
                opts = " ".join(f"--{k}={v}" for k, v in sorted(options.items()))
                labels = f" [{','.join(entry.labels)}]" if entry.labels else ""
                print(f"group: {group}; host: {host}{labels}; tool: {tool} {opts}".rstrip())
    if not found:
        what = f" named {args.name}" if args.name else ""
        where = f" in group {args.group}" if args.group else ""
        print(f"no tools{what} registered{where} (run dir {rdir})", file=sys.stderr)
    return ExitCode.OK


def clear_tools(rdir: Path, args: argparse.Namespace, tail: list[str], _: Deadlines) -> int:
    hosts = parse_remotes(args.remotes) if args.remotes else None
    removed = ToolStore(rdir).clear(args.group, _canonical(args), hosts)
    for item in removed:
        print(f"removed {item}")
    if not removed:
        print("nothing to remove", file=sys.stderr)
    return ExitCode.OK
