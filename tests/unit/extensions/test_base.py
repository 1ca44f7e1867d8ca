"""The agent extension registry: names, entry points, clear errors."""

from __future__ import annotations

import pytest

from aovs.config import AgentConfig
from aovs.extensions.base import (
    ENTRY_POINT_GROUP,
    NOTHING,
    AgentExtension,
    ExtensionError,
    PortContribution,
    available_extensions,
    combine,
    load_extensions,
    neutral_columns,
)
from aovs.extensions.qos import QosExtension
from aovs.openflow.flows import Flow, Match


def test_builtin_qos_loads_and_implements_the_protocol() -> None:
    (qos,) = load_extensions(["qos", "qos"])  # each once
    assert isinstance(qos, QosExtension) and isinstance(qos, AgentExtension)
    assert "qos" in available_extensions()
    assert neutral_columns([qos]) == {"ingress_policing_rate": 0, "ingress_policing_burst": 0}


def test_unknown_extension_names_what_is_available() -> None:
    with pytest.raises(ExtensionError) as caught:
        load_extensions(["qos", "sfc"])
    message = str(caught.value)
    assert "'sfc'" in message and "available: qos" in message and ENTRY_POINT_GROUP in message


def test_config_rejects_an_unknown_extension_with_the_option_named() -> None:
    assert AgentConfig.model_validate({"agent": {"extensions": "qos"}}).agent.extensions == ("qos",)
    with pytest.raises(ValueError, match="unknown agent extension 'trunkk'"):
        AgentConfig.model_validate({"agent": {"extensions": "qos, trunkk"}})


def test_contributions_combine() -> None:
    a = PortContribution(flows=frozenset({Flow(0, 1, Match(in_port=1))}), interface={"x": 1},
                         needs=frozenset({("T", "1")}), problems=("a",))  # fmt: skip
    b = PortContribution(flows=frozenset({Flow(0, 2, Match(in_port=1))}), interface={"y": 2},
                         problems=("b",))  # fmt: skip
    both = combine([a, NOTHING, b])
    assert both.flows == a.flows | b.flows and both.interface == {"x": 1, "y": 2}
    assert both.needs == {("T", "1")} and both.problems == ("a", "b")
    assert combine([NOTHING]) is NOTHING and combine([a]) is a
