"""Building the plugin manager and the tool registry from it."""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import pluggy

from pbench_runner import hookspecs
from pbench_runner.errors import UsageError
from pbench_runner.tools import ToolSpec

log = logging.getLogger(__name__)

#: The entry-point group of tool plugins, built-in and third-party alike.
ENTRY_POINT_GROUP = "pbench_runner.tools"


#: the one plugin manager of this process (pluggy's own advice: one per program)
_PM: pluggy.PluginManager | None = None


def get_plugin_manager(extra: Iterable[str] = ()) -> pluggy.PluginManager:
    """This process's plugin manager: every installed plugin, and the modules
    in ``extra`` (imported and registered on first mention)."""
    global _PM
    if _PM is None:
        pm = pluggy.PluginManager("pbench_runner")
        pm.add_hookspecs(hookspecs)
        _load_entry_points(pm)
        _PM = pm
    for name in extra:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise UsageError(f"cannot import plugin module {name!r}: {exc}") from exc
        if not _PM.is_registered(module):
            _PM.register(module, name=name)
    return _PM


def _load_entry_points(pm: pluggy.PluginManager) -> None:
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
    for owner, call in per_plugin(pm, "pbench_tool_specs"):
        # a hook call answers a list: this plugin's one answer, if any
        answers = cast("list[Sequence[ToolSpec]]", call())
        provided = [spec for answer in answers for spec in answer or ()]
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


def per_plugin(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """Call ``hook`` through pluggy once per plugin that implements it; yield
    each plugin's name and a callable that makes its call.

    Each call goes through its own subset of the hook caller
    (``PluginManager.subset_hook_caller``), so pluggy checks it against the
    spec and every hook wrapper wraps it, and the caller learns whose answer
    (or exception) it has.  Plugins are taken in pluggy's order.
    """
    impls = getattr(pm.hook, hook).get_hookimpls()
    plugins = [i.plugin for i in impls if not (i.hookwrapper or i.wrapper)]
    for plugin in reversed(plugins):  # pluggy's own order: last registered first
        others = [p for p in plugins if p is not plugin]
        caller = pm.subset_hook_caller(hook, remove_plugins=others)
        yield pm.get_name(plugin) or "?", lambda caller=caller: caller(**kwargs)


def broadcast(pm: pluggy.PluginManager, hook: str, **kwargs: Any) -> list[str]:
    """Call a broadcast hook through pluggy; one observer that raises never
    stops the others (pluggy ends a call at the first implementation that
    raises, so each plugin is called on its own, see :func:`per_plugin`).

    Returns a message per failing plugin; the traceback goes to the log.
    """
    problems = []
    for name, call in per_plugin(pm, hook, **kwargs):
        try:
            call()
        except Exception as exc:  # an observer's bug must not break the run
            msg = f"plugin {name}: {hook} raised {type(exc).__name__}: {exc}"
            log.warning("%s", msg, exc_info=True)
            problems.append(msg)
    return problems
