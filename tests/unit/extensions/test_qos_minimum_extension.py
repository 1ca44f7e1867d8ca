"""minimum_bandwidth as neutron's openvswitch QoS driver applies it: the pure part (a rule -> the
port's queue and its set_queue flow; the core's set of queues) and the OVSDB command that
writes them (read, then only what differs), against the real vswitch schema."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from aovs.agent.core import AgentCore, Queues
from aovs.agent.state import InterfaceRow
from aovs.dataplane import compose
from aovs.dataplane.compose import PhysicalLink, Topology
from aovs.extensions.base import ExtensionPort, MinBandwidthQueue, PortContribution, combine
from aovs.extensions.qos import (
    MIN_BW_PRIORITY,
    QosExtension,
    minimum_bandwidth_flows,
    policy_contribution,
    rule_contribution,
)
from aovs.extensions.queue_writes import (
    MIN_BW_TYPE,
    OVS_MAX_RATE,
    QOS_ID,
    SetMinimumBandwidthQueues,
    queue_external_ids,
    queue_other_config,
)
from aovs.firewall.noop import NoopFirewall
from aovs.model import PortDetails
from aovs.openflow import codec
from aovs.openflow.fast_encoder import FLOW_MOD_HEAD, FastEncoder
from aovs.openflow.flow_stats import FlowStatsDecoder
from aovs.openflow.flows import Match, RegLoad, Resubmit, SetQueue
from aovs.openflow.messages import HEADER
from aovs.openflow.ofctl_text import to_ofctl
from aovs.ovsdb.datum import NamedUuid, Uuid, encode
from aovs.ovsdb.schema import DatabaseSchema
from aovs.ovsdb.transaction import SelectedRows, TransactionBuilder
from aovs.rpc.resources import QOS_POLICY, QosPolicyPush, QosPolicyValue, QosRuleValue

POLICY = "pol-min"
TOPO = Topology("br-int", {"physnet1": PhysicalLink("physnet1", "br-phys", 100, 200)})


def details(port_id: str = "p-1", network_type: str = "vlan", **kw: Any) -> PortDetails:
    data: dict[str, Any] = {
        "device": port_id, "port_id": port_id, "network_id": "net-a",
        "mac_address": "fa:16:3e:00:00:01", "network_type": network_type,
        "physical_network": None if network_type == "vxlan" else "physnet1",
        "segmentation_id": None if network_type == "flat" else 101, "qos_policy_id": POLICY,
    }  # fmt: skip
    data.update(kw)
    return PortDetails.model_validate(data)


def ext_port(network_type: str = "vlan", ofport: int = 7) -> ExtensionPort:
    return ExtensionPort("p-1", "tap-p-1", ofport, details(network_type=network_type), 3)


def min_bw(kbps: int | None = 1000, direction: str = "egress") -> QosRuleValue:
    return QosRuleValue("r-min", "minimum_bandwidth", direction, min_kbps=kbps)


# -- the pure part -------------------------------------------------------------------------
@pytest.mark.parametrize("network_type", ["vlan", "flat"])
def test_egress_minimum_is_a_queue_numbered_by_ofport_and_its_set_queue_flow(
    network_type: str,
) -> None:
    got = rule_contribution(ext_port(network_type, ofport=7), min_bw(2500))
    assert got.queue == MinBandwidthQueue("p-1", 7, 2500)
    (flow,) = got.flows
    assert (flow.table, flow.priority) == (0, MIN_BW_PRIORITY) == (0, 200)
    assert flow.match == Match(in_port=7, reg4=0)
    assert flow.actions == (SetQueue(7), RegLoad("reg4", 1, 0, 1), Resubmit(0))
    assert not got.problems and not got.interface


@pytest.mark.parametrize(
    ("port", "rule", "problem"),
    [
        (ext_port("vxlan"), min_bw(), "minimum_bandwidth egress rule r-min: only on vlan/flat"),
        (ext_port("vlan"), min_bw(direction="ingress"), "minimum_bandwidth ingress rule r-min"),
        (ext_port("vlan"), min_bw(None), "minimum_bandwidth rule r-min: no min_kbps"),
        (ext_port("vlan"), min_bw(0), "minimum_bandwidth rule r-min: no min_kbps"),
    ],
)
def test_what_neutron_does_not_enforce_is_a_problem_not_silence(
    port: ExtensionPort, rule: QosRuleValue, problem: str
) -> None:
    got = rule_contribution(port, rule)
    assert got.queue is None and not got.flows
    (line,) = got.problems
    assert line.startswith(problem)


def test_a_policy_carries_its_queue_and_combine_keeps_it() -> None:
    dscp = QosRuleValue("r-d", "dscp_marking", dscp_mark=10)
    got = policy_contribution(ext_port(ofport=9), QosPolicyValue(POLICY, (dscp, min_bw(300))))
    assert got.queue == MinBandwidthQueue("p-1", 9, 300)
    assert minimum_bandwidth_flows(9) <= got.flows and len(got.flows) == 3
    assert combine([got, PortContribution(interface={"x": 1})]).queue == got.queue
    assert PortContribution(queue=got.queue)  # a queue alone is a contribution


def test_the_set_queue_flow_encodes_decodes_and_renders() -> None:
    (flow,) = minimum_bandwidth_flows(12)
    for command in (codec.ADD, codec.MODIFY_STRICT, codec.DELETE_STRICT):
        assert FastEncoder().encode(flow, command, 5) == codec.encode_flow_mod(flow, command, 5)
    wire = FastEncoder().encode(flow, codec.ADD, 5)
    assert codec.decode_flow_mod(wire).replace(cookie=0) == flow
    # as the switch reports it: ofp_flow_stats + the FlowMod's match and instructions
    body = wire[FLOW_MOD_HEAD.size :]
    head = struct.Struct("!HBxIIHHHH4xQQQ")
    entry = head.pack(head.size + len(body), 0, 1, 2, 200, 0, 0, 0, 5, 3, 4) + body
    mp = struct.pack("!HH4x", ofp.OFPMP_FLOW, 0) + entry
    message = HEADER.pack(ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, 8 + len(mp), 1) + mp
    decoder = FlowStatsDecoder(5)
    assert decoder.decode_reply(message) == [flow]
    assert decoder.fallbacks == 0  # the struct path knows set_queue
    text = to_ofctl(flow)
    assert text.endswith(
        "in_port=12,reg4=0x0,actions=set_queue:12,load:0x1->reg4[0..0],resubmit(,0)"
    )


# -- the core: every port's queue, planned when the set changes ----------------------------
def qos_core() -> AgentCore:
    return AgentCore(TOPO, NoopFirewall(), needs_security_groups=False, extensions=[QosExtension()])


def row(iface: str, ofport: int, uuid: str | None = None) -> InterfaceRow:
    return InterfaceRow(uuid=uuid or f"uuid-{iface}", name=f"tap-{iface}", iface_id=iface,
                        ofport=ofport)  # fmt: skip


def push(*rules: QosRuleValue, revision: int = 1) -> QosPolicyPush:
    return QosPolicyPush("updated", (QosPolicyValue(POLICY, rules, revision),))


def test_core_plans_every_queue_when_the_set_changes() -> None:
    core = qos_core()
    core.resources_received(push(min_bw(1000)), 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    core.interface_changed(row("p-2", 6), 0.0)
    core.details_received({"p-1": details("p-1"), "p-2": details("p-2", "flat")}, 0.0)
    first = core.flush(0.0)
    assert first.queues == Queues(
        {"p-1": MinBandwidthQueue("p-1", 5, 1000), "p-2": MinBandwidthQueue("p-2", 6, 1000)},
        frozenset(),
    )
    assert minimum_bandwidth_flows(5) | minimum_bandwidth_flows(6) <= set(first.flows["br-int"].add)
    assert core.flush(0.1).queues is None  # unchanged: nothing to write

    core.resources_received(push(min_bw(2000), revision=2), 0.2)  # the rule changed
    changed = core.flush(0.2)
    assert changed.queues is not None
    assert {s.min_kbps for s in changed.queues.wanted.values()} == {2000}
    assert "br-int" not in changed.flows  # same ofports, same flows

    core.details_received({"p-2": details("p-2", "flat", qos_policy_id=None)}, 0.3)  # detached
    detached = core.flush(0.3)
    assert detached.queues is not None and set(detached.queues.wanted) == {"p-1"}
    assert {f.key for f in minimum_bandwidth_flows(6)} <= {
        f.key for f in detached.flows["br-int"].remove
    }

    core.interface_deleted("uuid-p-1", 0.4)  # VM deleted: after the grace, the last queue goes
    core.expire(5.0)
    gone = core.flush(5.0)
    assert gone.queues == Queues({}, frozenset())
    spec = compose.desired_flows(core.dataplane_state())
    assert core.desired("br-int") == spec["br-int"]


def test_core_keeps_the_rows_of_ports_it_cannot_decide_yet() -> None:
    """After a restart, a port waiting for its details or its policy keeps its Queue row."""
    core = qos_core()
    core.interface_changed(row("p-1", 5), 0.0)  # details not known yet
    assert core.flush(0.0).queues == Queues({}, frozenset({"p-1"}))
    core.details_received({"p-1": details("p-1")}, 0.1)  # policy not known yet
    waiting = core.flush(0.1)
    assert waiting.queues is None and waiting.fetch_resources == [f"{QOS_POLICY}/{POLICY}"]
    core.resources_received(push(min_bw(500)), 0.2)
    known = core.flush(0.2)
    assert known.queues == Queues({"p-1": MinBandwidthQueue("p-1", 5, 500)}, frozenset())


def test_a_reboot_renumbers_the_queue_with_the_new_ofport() -> None:
    core = qos_core()
    core.resources_received(push(min_bw(700)), 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1")}, 0.0)
    core.flush(0.0)
    core.interface_deleted("uuid-p-1", 1.0)
    core.interface_changed(row("p-1", 9, uuid="uuid-p-1b"), 1.1)
    rebooted = core.flush(1.1)
    assert rebooted.queues == Queues({"p-1": MinBandwidthQueue("p-1", 9, 700)}, frozenset())
    assert minimum_bandwidth_flows(9) <= set(rebooted.flows["br-int"].add)


# -- the OVSDB command: read, then write only what differs ---------------------------------
SCHEMA_FILES = (
    Path("/usr/share/openvswitch/vswitch.ovsschema"),
    Path("/usr/local/share/openvswitch/vswitch.ovsschema"),
)


@pytest.fixture(scope="module")
def schema() -> DatabaseSchema:
    for path in SCHEMA_FILES:
        if path.exists():
            return DatabaseSchema.parse(json.loads(path.read_text()))
    pytest.skip("no vswitch.ovsschema installed")


def U(n: int) -> Uuid:
    return Uuid(f"00000000-0000-0000-0000-{n:012d}")


def queue_row(uuid: Uuid, spec: MinBandwidthQueue) -> dict[str, Any]:
    return {"_uuid": uuid, "external_ids": queue_external_ids(spec),
            "other_config": queue_other_config(spec)}  # fmt: skip


def qos_row(uuid: Uuid, queues: Mapping[int, Uuid], qos_id: str = QOS_ID) -> dict[str, Any]:
    external_ids = {"id": qos_id, "_type": MIN_BW_TYPE}
    return {"_uuid": uuid, "type": "linux-htb", "external_ids": external_ids,
            "other_config": {"max-rate": str(OVS_MAX_RATE)}, "queues": dict(queues)}  # fmt: skip


def port_row(uuid: Uuid, name: str, qos: Uuid | None) -> dict[str, Any]:
    return {"_uuid": uuid, "name": name, "qos": qos}


def build(
    schema: DatabaseSchema,
    command: SetMinimumBandwidthQueues,
    queues: Sequence[dict[str, Any]] = (),
    qoses: Sequence[dict[str, Any]] = (),
    ports: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The operations ``command`` makes of these rows (read as ovsdb-server returns them)."""
    tables = {"Queue": queues, "QoS": qoses}
    results: dict[str, list[dict[str, Any]]] = {}
    for select in command.reads():
        if select.table == "Port":
            (column, _function, value) = select.where[0]
            matching = [p for p in ports if (p[column] == value if column == "name" else p["qos"])]
        else:
            matching = list(tables[select.table])
        results[select.key] = [
            {c: encode(r[c]) if c != "_uuid" else ["uuid", str(r[c])] for c in select.columns}
            for r in matching
        ]
    txn = TransactionBuilder(schema)
    command.build(SelectedRows(schema, results), txn)
    return [op for op in txn.ops if op["op"] != "wait"]


def spec(port: str, num: int, kbps: int) -> MinBandwidthQueue:
    return MinBandwidthQueue(port, num, kbps)


def test_nothing_yet_inserts_queues_one_qos_and_sets_it_on_the_nic(
    schema: DatabaseSchema,
) -> None:
    wanted = {"p-1": spec("p-1", 5, 1000), "p-2": spec("p-2", 6, 20)}
    command = SetMinimumBandwidthQueues(wanted, egress=("eth1",))
    ops = build(schema, command, ports=[port_row(U(90), "eth1", None)])
    inserts = [op for op in ops if op["op"] == "insert"]
    assert [op["table"] for op in inserts] == ["Queue", "Queue", "QoS"]
    assert inserts[0]["row"]["other_config"] == encode(
        {"min-rate": "1000000", "max-rate": str(OVS_MAX_RATE)}
    )
    assert inserts[0]["row"]["external_ids"] == encode(
        {"port": "p-1", "type": MIN_BW_TYPE, "queue-num": "5"}
    )
    qos = inserts[2]["row"]
    assert qos["type"] == "linux-htb"
    assert qos["queues"] == encode(
        {5: NamedUuid(inserts[0]["uuid-name"]), 6: NamedUuid(inserts[1]["uuid-name"])}
    )
    (update,) = [op for op in ops if op["op"] == "update"]
    assert update["table"] == "Port"
    assert update["row"] == {"qos": ["named-uuid", inserts[2]["uuid-name"]]}
    assert command.changes == [4]


def test_rows_already_right_cost_no_write(schema: DatabaseSchema) -> None:
    wanted = {"p-1": spec("p-1", 5, 1000)}
    command = SetMinimumBandwidthQueues(wanted, egress=("eth1",))
    ops = build(schema, command, [queue_row(U(1), wanted["p-1"])], [qos_row(U(50), {5: U(1)})],
                [port_row(U(90), "eth1", U(50))])  # fmt: skip
    assert ops == [] and command.changes == [0]


def test_a_changed_rule_and_ofport_update_the_queue_and_the_map(schema: DatabaseSchema) -> None:
    command = SetMinimumBandwidthQueues({"p-1": spec("p-1", 9, 3000)}, egress=("eth1",))
    ops = build(schema, command, [queue_row(U(1), spec("p-1", 5, 1000))],
                [qos_row(U(50), {5: U(1)})], [port_row(U(90), "eth1", U(50))])  # fmt: skip
    assert [(op["op"], op["table"]) for op in ops] == [("update", "Queue"), ("update", "QoS")]
    assert ops[0]["row"]["other_config"] == encode(
        {"min-rate": "3000000", "max-rate": str(OVS_MAX_RATE)}
    )
    assert ops[1]["row"] == {"queues": encode({9: U(1)})}


def test_the_last_queue_removed_takes_the_qos_and_its_port_reference(
    schema: DatabaseSchema,
) -> None:
    command = SetMinimumBandwidthQueues({}, egress=("eth1",))
    ops = build(schema, command, [queue_row(U(1), spec("p-1", 5, 1000))],
                [qos_row(U(50), {5: U(1)})], [port_row(U(90), "eth1", U(50))])  # fmt: skip
    assert [(op["op"], op["table"]) for op in ops] == [
        ("delete", "Queue"), ("update", "Port"), ("delete", "QoS"),
    ]  # fmt: skip
    assert ops[1]["row"] == {"qos": ["set", []]}


def test_kept_ports_keep_their_queue_others_and_foreign_rows_are_left_or_cleaned(
    schema: DatabaseSchema,
) -> None:
    ingress_limit = {"_uuid": U(3), "other_config": {"max-rate": "1000"},
                     "external_ids": {"port": "p-9", "type": "bandwidth_limit"}}  # fmt: skip
    rows = [queue_row(U(1), spec("p-1", 5, 1000)), queue_row(U(2), spec("p-2", 6, 10)),
            queue_row(U(4), spec("p-1", 5, 1000)), ingress_limit]  # fmt: skip
    neutrons = qos_row(U(50), {5: U(1), 6: U(2)}, qos_id="4d2c...neutron-random-uuid")
    command = SetMinimumBandwidthQueues({}, keep=frozenset({"p-1"}), egress=("eth1",))
    ops = build(schema, command, rows, [neutrons], [port_row(U(90), "eth1", U(50))])
    deleted = {op["where"][0][2][1] for op in ops if op["op"] == "delete"}
    assert deleted == {U(2), U(4)}  # p-2's queue and p-1's duplicate; not neutron's ingress one
    (update,) = [op for op in ops if op["op"] == "update"]
    assert update["table"] == "QoS"  # adopted: our id, only p-1's queue
    assert update["row"]["queues"] == encode({5: U(1)})
    assert update["row"]["external_ids"] == encode({"id": QOS_ID, "_type": MIN_BW_TYPE})


def test_ports_plugged_after_the_first_plan_cost_no_queue_plan_without_a_queue() -> None:
    core = qos_core()
    assert core.flush(0.0).queues == Queues({}, frozenset())  # the first: OVSDB may hold rows
    core.interface_changed(row("p-1", 5), 0.1)  # pending: not kept, nothing to write
    assert core.flush(0.1).queues is None
    core.details_received({"p-1": details("p-1", qos_policy_id=None)}, 0.2)
    assert core.flush(0.2).queues is None


def test_a_move_to_a_policy_not_known_yet_keeps_the_queue_until_the_pull_answers() -> None:
    core = qos_core()
    core.resources_received(push(min_bw(700)), 0.0)
    core.interface_changed(row("p-1", 5), 0.0)
    core.details_received({"p-1": details("p-1")}, 0.0)
    assert core.flush(0.0).queues == Queues({"p-1": MinBandwidthQueue("p-1", 5, 700)}, frozenset())
    core.details_received({"p-1": details("p-1", qos_policy_id="pol-new")}, 0.1)
    moving = core.flush(0.1)
    assert moving.queues is None and moving.fetch_resources == [f"{QOS_POLICY}/pol-new"]
    new = QosPolicyValue("pol-new", (min_bw(900),), 1)
    core.resources_received(QosPolicyPush("updated", (new,)), 0.2)
    moved = core.flush(0.2)
    assert moved.queues == Queues({"p-1": MinBandwidthQueue("p-1", 5, 900)}, frozenset())
