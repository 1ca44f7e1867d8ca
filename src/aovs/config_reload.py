"""What a SIGHUP may change in a running agent: neutron's agent reloads its log level (oslo's
mutable ``debug``); everything else needs a restart, and the agent says which options those are
(by name only: a value may be a secret)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aovs.config import AgentConfig

RELOADABLE = frozenset({("agent", "log_level"), ("agent", "log_format")})


@dataclass(frozen=True)
class ReloadPlan:
    """The new configuration's differences from the running one."""

    applied: tuple[str, ...] = ()  # "[agent] log_level INFO -> DEBUG"
    needs_restart: tuple[str, ...] = ()  # "[ovs] bridge_mappings"
    config: AgentConfig | None = None  # the running configuration once ``applied`` is applied

    @property
    def changed(self) -> bool:
        return bool(self.applied or self.needs_restart)


def _options(config: AgentConfig) -> dict[tuple[str, str], Any]:
    flat: dict[tuple[str, str], Any] = {}
    for name, value in config.model_dump(mode="json").items():
        if isinstance(value, Mapping):
            for option, inner in value.items():
                flat[(name, option)] = inner
        else:
            flat[("DEFAULT", name)] = value
    return flat


def reload_plan(running: AgentConfig, reread: AgentConfig) -> ReloadPlan:
    """Split the differences into what the agent applies now and what waits for a restart."""
    before, after = _options(running), _options(reread)
    applied, restart = [], []
    agent = running.agent
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) == after.get(key):
            continue
        section, option = key
        if key in RELOADABLE:
            applied.append(f"[{section}] {option} {before.get(key)} -> {after.get(key)}")
            agent = agent.model_copy(update={option: getattr(reread.agent, option)})
        else:
            restart.append(f"[{section}] {option}")
    config = running.model_copy(update={"agent": agent})
    return ReloadPlan(tuple(applied), tuple(restart), config)
