"""QosPolicy pushes and pulls (neutron 29's primitives) into the one resource cache."""

from __future__ import annotations

from typing import Any

import pytest

from aovs.rpc.resources import (
    ADDRESS_GROUP,
    CONSUMED_RESOURCES,
    QOS_POLICY,
    AddressGroupPush,
    AddressGroupValue,
    QosPolicyPush,
    QosPolicyValue,
    QosRuleValue,
    ResourceCache,
    consumed_resources,
    missing_as_deleted,
    qos_policy,
    qos_policy_push,
)

POLICY = "5e7b0d1c-0000-4000-8000-000000000001"


def _rule(name: str, rule_id: str, **data: Any) -> dict[str, Any]:
    return {
        "versioned_object.name": name,
        "versioned_object.namespace": "versionedobjects",
        "versioned_object.version": "1.5",
        "versioned_object.data": {"id": rule_id, "qos_policy_id": POLICY, **data},
    }


def _policy(*rules: dict[str, Any], revision: int = 3) -> dict[str, Any]:
    # the shape neutron 29's QosPolicy.obj_to_primitive(target_version="1.10") sends
    return {
        "versioned_object.name": "QosPolicy",
        "versioned_object.namespace": "versionedobjects",
        "versioned_object.version": "1.10",
        "versioned_object.data": {
            "id": POLICY, "project_id": "p", "name": "gold", "shared": False,
            "rules": list(rules), "is_default": False, "revision_number": revision,
            "description": "", "created_at": "2026-12-07T19:00:00Z",
        },
        "versioned_object.changes": ["rules"],
    }  # fmt: skip


def test_qos_policy_with_every_rule_type_parses() -> None:
    value = qos_policy(
        _policy(
            _rule("QosBandwidthLimitRule", "r1", max_kbps=1000, max_burst_kbps=0,
                  direction="egress"),
            _rule("QosBandwidthLimitRule", "r2", max_kbps=2000, max_burst_kbps=None,
                  direction="ingress"),
            _rule("QosDscpMarkingRule", "r3", dscp_mark=26),
            _rule("QosMinimumBandwidthRule", "r4", min_kbps=100, direction="egress"),
            _rule("QosPacketRateLimitRule", "r5", max_kpps=10, max_burst_kpps=0,
                  direction="egress"),
            _rule("QosMinimumPacketRateRule", "r6", min_kpps=1000, direction="any"),
        )
    )  # fmt: skip
    assert value.id == POLICY and value.revision == 3
    assert [(r.id, r.type, r.direction) for r in value.rules] == [
        ("r1", "bandwidth_limit", "egress"),
        ("r2", "bandwidth_limit", "ingress"),
        ("r3", "dscp_marking", "egress"),
        ("r4", "minimum_bandwidth", "egress"),
        ("r5", "packet_rate_limit", "egress"),
        ("r6", "minimum_packet_rate", "any"),
    ]
    assert value.rules[0].max_kbps == 1000 and value.rules[1].max_burst_kbps is None
    assert value.rules[2].dscp_mark == 26


def test_an_unknown_rule_type_is_kept_to_be_reported() -> None:
    (rule,) = qos_policy(_policy(_rule("QosTeleportRule", "r9", direction="egress"))).rules
    assert rule == QosRuleValue("r9", "Teleport", "egress")


@pytest.mark.parametrize(
    ("args", "why"),
    [
        ({"resource_list": [_policy()], "event_type": "melted"}, "event_type"),
        ({"event_type": "updated"}, "resource_list"),
        ({"resource_list": [_policy(_rule("Port", "x"))], "event_type": "updated"}, "a rule"),
        ({"resource_list": [_policy(_rule("QosDscpMarkingRule", "x", dscp_mark="26"))],
          "event_type": "updated"}, "not an integer"),
        ({"resource_list": [_policy(_rule("QosBandwidthLimitRule", "x", max_kbps=-1))],
          "event_type": "updated"}, "negative"),
        ({"resource_list": [_policy(_rule("QosBandwidthLimitRule", "x", direction="up"))],
          "event_type": "updated"}, "direction"),
        ({"resource_list": [_policy(revision="7")], "event_type": "updated"}, "revision"),  # type: ignore[arg-type]
    ],
)  # fmt: skip
def test_malformed_qos_pushes_are_refused(args: dict[str, Any], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        qos_policy_push(args)


def test_cache_keeps_the_newest_revision_and_forgets_deleted() -> None:
    cache = ResourceCache()
    v3 = QosPolicyValue(POLICY, (QosRuleValue("r", "dscp_marking", dscp_mark=8),), 3)
    v4 = QosPolicyValue(POLICY, (), 4)
    assert cache.apply(QosPolicyPush("updated", (v4,))) == [POLICY]
    assert cache.apply(QosPolicyPush("updated", (v3,))) == []  # late push of an older one
    assert cache.get(QOS_POLICY, POLICY) == v4
    assert cache.apply(QosPolicyPush("updated", (v4,))) == []  # same value: nothing changed
    assert cache.apply(QosPolicyPush("deleted", (v4,))) == [POLICY]
    assert (QOS_POLICY, POLICY) not in cache and len(cache) == 0


def test_one_cache_holds_every_type_apart() -> None:
    cache = ResourceCache()
    cache.apply(AddressGroupPush("updated", (AddressGroupValue("same-id", frozenset()),)))
    cache.apply(QosPolicyPush("updated", (QosPolicyValue("same-id"),)))
    assert set(cache.of_type(ADDRESS_GROUP)) == set(cache.of_type(QOS_POLICY)) == {"same-id"}


def test_pull_without_an_answer_is_a_deletion() -> None:
    answer = QosPolicyPush("updated", (QosPolicyValue("a"),))
    gone = missing_as_deleted(QOS_POLICY, ["a", "b"], answer)
    assert gone == QosPolicyPush("deleted", (QosPolicyValue("b"),))


def test_consumed_resources_follow_the_extensions() -> None:
    assert consumed_resources() == {ADDRESS_GROUP: "1.2"}
    assert consumed_resources([QOS_POLICY]) == {ADDRESS_GROUP: "1.2", QOS_POLICY: "1.10"}
    assert CONSUMED_RESOURCES[QOS_POLICY] == "1.10"  # neutron 29's QosPolicy.VERSION
    with pytest.raises(ValueError, match="Port"):
        consumed_resources(["Port"])  # a type aovs does not parse


def test_a_ports_details_name_its_policy_else_its_networks() -> None:
    from aovs.model import PortDetails
    from aovs.rpc.server_replies import device_outcome

    base = {"device": "p", "port_id": "p", "network_id": "n", "mac_address": "fa:16:3e:00:00:01",
            "network_type": "vxlan", "segmentation_id": 5}  # fmt: skip
    # neutron 29's get_device_details: qos_policy_id and qos_network_policy_id
    own = device_outcome({**base, "qos_policy_id": "a", "qos_network_policy_id": "b"})
    network = device_outcome({**base, "qos_policy_id": None, "qos_network_policy_id": "b"})
    neither = device_outcome({**base, "qos_policy_id": None, "qos_network_policy_id": None})
    assert isinstance(own, PortDetails) and own.qos_policy_id == "a"
    assert isinstance(network, PortDetails) and network.qos_policy_id == "b"
    assert isinstance(neither, PortDetails) and neither.qos_policy_id is None
