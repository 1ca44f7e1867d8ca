"""SIGHUP's decision: the log level and format are applied, anything else waits for a restart
and is named without its value."""

from __future__ import annotations

from aovs.config import AgentConfig
from aovs.config_reload import reload_plan

BASE = AgentConfig.model_validate(
    {"host": "h1", "transport_url": "rabbit://u:s3cret@127.0.0.1:5672/",
     "ovs": {"bridge_mappings": ["physnet1:br-phys"]}}
)  # fmt: skip


def changed(**sections: dict[str, object]) -> AgentConfig:
    data = BASE.model_dump(mode="json")
    for section, options in sections.items():
        data[section].update(options)
    return AgentConfig.model_validate(data)


def test_nothing_changed() -> None:
    plan = reload_plan(BASE, changed())
    assert not plan.changed and plan.config == BASE


def test_log_level_and_format_are_applied() -> None:
    plan = reload_plan(BASE, changed(agent={"log_level": "DEBUG", "log_format": "json"}))
    assert plan.applied == ("[agent] log_format text -> json", "[agent] log_level INFO -> DEBUG")
    assert plan.needs_restart == ()
    assert plan.config is not None and plan.config.agent.log_level == "DEBUG"
    assert plan.config.agent.log_format == "json"


def test_other_changes_wait_for_a_restart_and_show_no_value() -> None:
    reread = AgentConfig.model_validate(
        {**changed(ovs={"bridge_mappings": ["physnet2:br-ex"]}).model_dump(mode="json"),
         "transport_url": "rabbit://u:0ther-s3cret@127.0.0.1:5672/"}
    )  # fmt: skip
    plan = reload_plan(BASE, reread)
    assert plan.needs_restart == ("[DEFAULT] transport_url", "[ovs] bridge_mappings")
    assert plan.applied == () and plan.config == BASE  # the running configuration stays
    assert "s3cret" not in repr(plan.needs_restart)


def test_a_mixed_change_applies_the_reloadable_part_only() -> None:
    plan = reload_plan(BASE, changed(agent={"log_level": "WARNING", "report_interval": 5.0}))
    assert plan.applied == ("[agent] log_level INFO -> WARNING",)
    assert plan.needs_restart == ("[agent] report_interval",)
    assert (
        plan.config is not None and plan.config.agent.report_interval == BASE.agent.report_interval
    )
