"""Building the plugin manager and the tool registry from it."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pluggy

from pbench_runner import hookspecs
from pbench_runner.errors import UsageError
from pbench_runner.tools import ToolSpec

log = logging.getLogger(__name__)

#: The entry-point group of tool plugins, built-in and third-party alike.
ENTRY_POINT_GROUP = "pbench_runner.tools"


def get_plugin_manager(extra: Iterable[str] = ()) -> pluggy.PluginManager:
    """A plugin manager with every installed plugin and the modules in ``extra``."""
    pm = pluggy.PluginManager("pbench_runner")
    pm.add_hookspecs(hookspecs)
    for entry in _entry_points(ENTRY_POINT_GROUP):
        if pm.get_plugin(entry.name) is not None or pm.is_blocked(entry.name):
            continue
        try:
            plugin = entry.load()
        except Exception as exc:  # a broken third-party plugin: say which, and how to go on
            dist = getattr(entry, "dist", None)  # Python 3.10+
            package = f" of the package {dist.name}" if dist else ""
            raise UsageError(
                f"the tool plugin {entry.name!r}{package} ({entry.value}) cannot be loaded: "
                f"{type(exc).__name__}: {exc}; fix or uninstall it"
            ) from exc
        pm.register(plugin, name=entry.name)
    for name in extra:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise UsageError(f"cannot import plugin module {name!r}: {exc}") from exc
        if not pm.is_registered(module):
            pm.register(module, name=name)
    return pm


def _entry_points(group: str) -> Iterable[Any]:
    found: Any = importlib.metadata.entry_points()
    if hasattr(found, "select"):  # Python 3.10+
        return found.select(group=group)  # type: ignore[no-any-return]
    return found.get(group, [])  # type: ignore[no-any-return]


@dataclass(frozen=True)
class ToolRegistry:
    """Every tool the loaded plugins provide, by name and alias."""

    specs: Mapping[str, ToolSpec]
    aliases: Mapping[str, str]

    def get(self, name: str) -> ToolSpec:
        canonical = self.aliases.get(name, name)
        try:
            return self.specs[canonical]
        except KeyError:
            known = ", ".join(sorted(self.specs)) or "none"
            raise UsageError(
                f"unknown tool {name!r}; tools available: {known} "
                "(a third-party tool needs its plugin installed, see `pbench list-tools --available`)"
            ) from None

    def canonical(self, name: str) -> str:
        return self.get(name).name


def tool_registry(pm: pluggy.PluginManager) -> ToolRegistry:
    specs: dict[str, ToolSpec] = {}
    owners: dict[str, str] = {}
    aliases: dict[str, str] = {}
    for impl in pm.hook.pbench_tool_specs.get_hookimpls():
        owner = impl.plugin_name
        provided = cast("Sequence[ToolSpec]", impl.function() or ())
        for spec in provided:
            for name in (spec.name, *spec.aliases):
                if name in owners:
                    raise UsageError(
                        f"tool name {name!r} is provided by two plugins: {owners[name]} and {owner}"
                    )
                owners[name] = owner
            specs[spec.name] = spec
            for alias in spec.aliases:
                aliases[alias] = spec.name
    return ToolRegistry(specs=specs, aliases=aliases)


def notify(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> list[str]:
    """Call every implementation of a broadcast hook; one that raises never stops the others.

    pluggy stops at the first implementation that raises, so each is called
    here on its own.  Returns a message per failing implementation (also logged).
    """
    problems = []
    caller = getattr(pm.hook, hook)
    for impl in reversed(caller.get_hookimpls()):
        args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
        try:
            impl.function(**args)
        except Exception as exc:  # an observer's bug must not break the run
            msg = f"plugin {impl.plugin_name}: {hook} raised {type(exc).__name__}: {exc}"
            log.warning("%s", msg)
            problems.append(msg)
    return problems
