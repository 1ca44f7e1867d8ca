"""Plugins found by name: a built-in (``"module:attribute"``), else an installed entry point.

Firewall drivers (``aovs.firewall_drivers``) and agent extensions (``aovs.agent.extensions``)
are found the same way, as neutron finds its own through stevedore; each registry says in its
own words what is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from importlib import import_module
from importlib.metadata import entry_points

LOG = logging.getLogger(__name__)


def plugin_names(builtins: Mapping[str, str], group: str) -> list[str]:
    """Every name :func:`find_plugin` accepts: the built-ins and the installed entry points."""
    names = set(builtins)
    names.update(ep.name for ep in entry_points(group=group))
    return sorted(names)


def find_plugin(name: str, builtins: Mapping[str, str], group: str) -> object | None:
    """The object ``name`` stands for (not instantiated), or None when nothing provides it;
    an import error of an installed plugin propagates (the caller names the plugin)."""
    if name in builtins:
        module_name, _, attribute = builtins[name].partition(":")
        found: object = getattr(import_module(module_name), attribute)
        return found
    for ep in entry_points(group=group):
        if ep.name == name:
            loaded: object = ep.load()
            return loaded
    return None


def start_plugin(
    name: str,
    builtins: Mapping[str, str],
    group: str,
    *,
    kind: str,
    error: Callable[[str], Exception],
) -> object:
    """Find ``name`` and instantiate it without arguments; every way that fails raises
    ``error(message)``, the message naming the ``kind`` of plugin (``"firewall driver"``) and,
    for an unknown name, what is available and how a third party registers one."""
    try:
        factory = find_plugin(name, builtins, group)
    except Exception as exc:  # an installed plugin that fails to import
        LOG.error("%s %r failed to load: %s", kind, name, exc)
        raise error(f"{kind} {name!r} failed to load: {exc}") from exc
    if factory is None:
        raise error(
            f"unknown {kind} {name!r}; available: {', '.join(plugin_names(builtins, group))} "
            f"(third parties register an {group!r} entry point)"
        )
    if not callable(factory):
        raise error(f"{kind} {name!r} is not a class: {factory!r}")
    try:
        instance: object = factory()
    except Exception as exc:
        LOG.error("%s %r (%r) failed to start: %s", kind, name, factory, exc)
        raise error(f"{kind} {name!r} failed to start: {exc}") from exc
    return instance
