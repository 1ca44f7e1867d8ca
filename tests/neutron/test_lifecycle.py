"""An aovs agent's life against a REAL neutron 29 server: registration, live migration through
the binding API, a neutron-rpc-server restart under churn, and a server log with nothing to say
about aovs.

Everything is driven through the REST API (as nova and an operator do) and checked as the server
shows it (REST, its log) and as OVS sees it (dump-flows, Port.tag, ofproto/trace).
"""

from __future__ import annotations

import ast
import asyncio
import datetime
import json
import logging
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from neutron_world import (
    NEUTRON_CONFIGURATION_KEYS,
    OVS_AGENT,
    Hypervisor,
    HypervisorFactory,
    in_thread,
    poll,
    wait_agents_alive,
    wait_port_status,
)
from server.neutron_server import LogMark, NeutronApiError, NeutronServer

from aovs.pipelines.tables import DEAD_VLAN_TAG
from aovs.rpc.events import AgentEvent, BindingActivate, BindingDeactivate, PortDelete

# tests/integration's trace helpers (they import their own neighbours: put that directory on the
# path, as pytest does when it collects them)
sys.path.append(str(Path(__file__).parents[1] / "integration"))
from test_tunnels_dataplane import datapath_actions, dp_port, trace

pytestmark = pytest.mark.integration

UPLINK = "br-phys-up"  # the dummy uplink of physnet1's bridge (Sandbox.add_physical_bridge)
WITHIN = 15.0  # API change -> flows / status: ~1-2 s measured; generous on a loaded 2-core box
# What the server must never log about an agent that speaks its protocol right
ABOUT_AOVS = (
    "Unable to retrieve active L2 agent",  # l2population: no tunneling_ip / agent not found
    "inconsistent version",  # security_group_info_for_devices below 1.3
    "NoSuchMethod",
    "UnsupportedVersion",
    "Exception during message handling",  # oslo.messaging's dispatcher
    "Traceback",
    "is invalid",  # agents_db: "Dictionary configurations for agent ... is invalid"
    "not bound, vif_type",  # ml2 rpc: details asked for a port the server could not bind
)
# The server logs (DEBUG) the resource_versions a report_state carried as it tells the other
# servers about them (agents_db._update_local_agent_resource_versions); its version tracker
# logs "Version for resource type AddressGroup changed None to 1.2" only the first time a host
# reports them in the server's life
VERSIONS_REPORTED = "report_agent_resource_versions called with arguments"


OVS_AGENT_SOURCE = "neutron/plugins/ml2/drivers/openvswitch/agent/ovs_neutron_agent.py"


# -- helpers -------------------------------------------------------------------------------------
def neutron_agent_keys(server: NeutronServer) -> set[str]:
    """The configuration keys neutron's own OVS agent reports, read from its installed source
    (not imported: that costs seconds of CPU): the keys of ``agent_state['configurations']``,
    constants resolved in their modules' source, plus what ``_report_state`` adds."""
    (site,) = (server.venv / "lib").glob("python3*/site-packages")
    source = (site / OVS_AGENT_SOURCE).read_text()
    tree = ast.parse(source)
    modules = {}  # import alias -> dotted module name
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})

    def value(expr: ast.expr) -> str:
        if isinstance(expr, ast.Constant):
            return str(expr.value)
        assert isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name), expr
        module = site / (modules[expr.value.id].replace(".", "/") + ".py")
        for node in ast.parse(module.read_text()).body:
            named = any(getattr(t, "id", None) == expr.attr for t in getattr(node, "targets", ()))
            if named and isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                return str(node.value.value)
        raise AssertionError(f"{ast.unparse(expr)} not found in {module}")

    keys = set(re.findall(r"get\('configurations'\)\['(\w+)'\]", source))
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, item in zip(node.keys, node.values, strict=True):
                if (isinstance(key, ast.Constant) and key.value == "configurations"
                        and isinstance(item, ast.Dict)):  # fmt: skip
                    keys.update(value(k) for k in item.keys if k is not None)
    return keys


def vlan_network(server: NeutronServer, cidr: str) -> tuple[dict[str, Any], int]:
    """A VLAN network on physnet1 with a subnet; (network, its VLAN id)."""
    network = server.create_network(
        **{"provider:network_type": "vlan", "provider:physical_network": "physnet1"}
    )
    server.create_subnet(network["id"], cidr)
    return network, int(network["provider:segmentation_id"])


def cleanup(server: NeutronServer, network: dict[str, Any] | None) -> None:
    """Delete the network's ports and the network (best effort: the test's verdict stands)."""
    if network is None:
        return
    try:
        for port in server.get(f"/v2.0/ports?network_id={network['id']}")["ports"]:
            server.delete_port(port["id"])
        server.delete_network(network["id"])
    except Exception as exc:  # cleanup must not hide the test's own failure
        logging.getLogger(__name__).warning("cleanup failed: %s", exc)


def as_service(server: NeutronServer, method: str, path: str, body: Any = None) -> Any:
    """A REST call as nova makes it, with the service role: the binding API (create_port_binding,
    activate, ...) is allowed to ``role:service`` only, and noauth takes the roles from
    X-Roles."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.api_url + path, data=data, method=method)
    request.add_header("Accept", "application/json")
    request.add_header("X-Roles", "admin,service")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise NeutronApiError(method, path, exc.code, exc.read().decode(errors="replace")) from None
    return json.loads(raw) if raw.strip() else None


def port_tag(h: Hypervisor, port_id: str) -> int | None:
    """The Port row's tag of a plugged port's tap (4095: neutron's dead VLAN)."""
    value = h.sandbox.vsctl("get", "Port", h.plugged[port_id], "tag").strip()
    return int(value) if value.isdigit() else None


def arp_from(port: dict[str, Any], ofport: int) -> str:
    """An ARP request the VM behind ``port`` (at ``ofport``) sends, from its own addresses."""
    mac = port["mac_address"]
    ip = port["fixed_ips"][0]["ip_address"]
    gateway = ip.rsplit(".", 1)[0] + ".254"
    return (f"in_port={ofport},dl_src={mac},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,"
            f"arp_spa={ip},arp_tpa={gateway},arp_sha={mac}")  # fmt: skip


def verdict(h: Hypervisor, port: dict[str, Any]) -> str:
    """ofproto/trace of the VM's ARP on its host: the "Datapath actions:" line."""
    ofport = h.ofport(port["id"])
    return datapath_actions(trace(h.sandbox, "br-int", arp_from(port, ofport)))


def forwards(h: Hypervisor, port: dict[str, Any], vlan: int) -> bool:
    """The VM's frames leave through physnet1's uplink, tagged with the network's VLAN."""
    actions = verdict(h, port)
    uplink = dp_port(h.sandbox, UPLINK)
    # e.g. "push_vlan(vid=129,pcp=0),2,1,pop_vlan,...": the ports output to with that tag
    found = re.search(rf"push_vlan\(vid={vlan},pcp=0\),((?:\d+,?)+)", actions)
    return found is not None and uplink in found.group(1).rstrip(",").split(",")


def drops(h: Hypervisor, port: dict[str, Any]) -> bool:
    return verdict(h, port).strip() == "Datapath actions: drop"


def wired(h: Hypervisor, port: dict[str, Any], vlan: int) -> bool:
    """Wired as neutron's agent does it: a local VLAN on the Port row, flows that forward."""
    tag = port_tag(h, port["id"])
    return tag not in (None, DEAD_VLAN_TAG) and forwards(h, port, vlan)


def dead(h: Hypervisor, port: dict[str, Any]) -> bool:
    """Unwired: dead VLAN 4095 on the Port row and the VM's frames dropped."""
    return port_tag(h, port["id"]) == DEAD_VLAN_TAG and drops(h, port)


def waiting(h: Hypervisor, port: dict[str, Any]) -> bool:
    """Waiting for its details: the VM's frames dropped, and no local VLAN on the Port row
    (aovs writes none before the details: the tag os-vif left stays, here none)."""
    return port_tag(h, port["id"]) in (None, DEAD_VLAN_TAG) and drops(h, port)


async def until(check: Any, what: str, within: float = WITHIN) -> None:
    """Poll a blocking dataplane check (in a thread) until it holds."""
    await poll(check, bool, within=within, what=what)


def assert_no_server_errors(server: NeutronServer, mark: LogMark) -> None:
    errors = server.error_lines(since=mark)
    assert not errors, "neutron-server logged errors:\n" + "\n".join(errors)


def about_aovs(server: NeutronServer, mark: LogMark | None) -> list[str]:
    lines = server.warning_lines(since=mark) + server.error_lines(since=mark)
    return [line for line in lines if any(needle in line for needle in ABOUT_AOVS)]


def record_notifications(h: Hypervisor) -> list[AgentEvent]:
    """Every notification neutron-server fans out that this agent receives, in order."""
    seen: list[AgentEvent] = []
    consumer = h.agent._notifications
    assert consumer is not None, "the agent does not listen yet"
    endpoint = consumer._endpoint
    deliver = endpoint._deliver

    def spy(event: AgentEvent) -> None:
        seen.append(event)
        deliver(event)

    endpoint._deliver = spy
    return seen


async def listening(h: Hypervisor) -> None:
    await poll(lambda: h.agent._rpc_ready.is_set(), bool, within=30, what="the agent listening")


# -- the file-wide log check (point 4) -----------------------------------------------------------
FILE: dict[str, Any] = {"mark": None, "ran": []}


@pytest.fixture(scope="module", autouse=True)
def file_mark(neutron_server: NeutronServer) -> Iterator[None]:
    """Where the server's log stood when this file's first test started."""
    FILE["mark"] = neutron_server.log_mark()
    FILE["ran"] = []
    yield


# -- 1. registration ----------------------------------------------------------------------------
async def test_agent_registers_with_everything_neutrons_agent_reports(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    server = neutron_server
    mark = server.log_mark()
    started = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
    assert neutron_agent_keys(server) == NEUTRON_CONFIGURATION_KEYS, "neutron reports others"
    h = await hypervisors("host-a")
    # the agent's own first report_state, as it leaves (the server shows only the latest)
    reports: list[tuple[dict[str, Any], str | None]] = []
    report_state = h.agent.api.report_state

    async def spy(agent_state: dict[str, Any], **options: Any) -> str | None:
        state = json.loads(json.dumps(agent_state))
        status = await report_state(agent_state, **options)
        reports.append((state, status))
        return status

    h.agent.api.report_state = spy  # type: ignore[method-assign]
    (listed,) = await wait_agents_alive(server, ["host-a"])
    await poll(lambda: reports, bool, within=WITHIN, what="the first report_state answered")

    first, status = reports[0]
    assert status in ("new", "alive", "revived"), f"first report skipped by the server: {status}"
    assert first.get("start_flag") is True, first
    missing = NEUTRON_CONFIGURATION_KEYS - first["configurations"].keys()
    assert not missing, f"the first report_state lacks {sorted(missing)}"

    agent = (await in_thread(server.get, f"/v2.0/agents/{listed['id']}"))["agent"]
    assert (agent["binary"], agent["agent_type"], agent["topic"], agent["host"]) == (
        "neutron-openvswitch-agent", OVS_AGENT, "N/A", "host-a"
    )  # fmt: skip
    assert agent["alive"] and agent["admin_state_up"], agent
    # start_flag made the server record this start
    started_at = datetime.datetime.fromisoformat(agent["started_at"])
    assert started_at >= started - datetime.timedelta(seconds=1), (agent["started_at"], started)
    configurations = agent["configurations"]
    missing = NEUTRON_CONFIGURATION_KEYS - configurations.keys()
    assert not missing, f"GET /v2.0/agents/{{id}} lacks {sorted(missing)}"
    # the values the server's drivers read (l2population, ML2/ovs binding, nova's vif_details)
    assert configurations["tunneling_ip"] == h.local_ip
    assert configurations["tunnel_types"] == ["vxlan"]
    assert configurations["l2_population"] is True
    assert configurations["bridge_mappings"] == {"physnet1": "br-phys"}
    assert configurations["integration_bridge"] == "br-int"
    assert configurations["ovs_hybrid_plug"] is False
    assert configurations["datapath_type"] == h.config.ovs.datapath_type
    assert configurations["enable_distributed_routing"] is False
    assert configurations["in_distributed_mode"] is False
    assert isinstance(configurations["devices"], int)
    assert set(configurations["ovs_capabilities"]) == {"datapath_types", "iface_types"}
    assert "vxlan" in configurations["ovs_capabilities"]["iface_types"]
    for key in ("resource_provider_inventory_defaults",
                "resource_provider_packet_processing_inventory_defaults"):  # fmt: skip
        assert configurations[key] == {
            "allocation_ratio": 1.0, "min_unit": 1, "step_size": 1, "reserved": 0
        }, key  # fmt: skip

    # resource_versions: the API does not show them (nor the stored copy a later report
    # without them reuses); the server logs them as it passes them on to its version tracker
    assert first.get("resource_versions") == {"AddressGroup": "1.2"}, first
    await poll(
        lambda: server.log_lines(VERSIONS_REPORTED, "'host-a', {'AddressGroup': '1.2'}",
                                 since=mark),
        bool, within=WITHIN, what="the server taking host-a's resource versions",
    )  # fmt: skip
    assert not about_aovs(server, mark), about_aovs(server, mark)
    assert_no_server_errors(server, mark)
    FILE["ran"].append("registration")


# -- 2. live migration --------------------------------------------------------------------------
async def test_live_migration_through_the_binding_api(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory
) -> None:
    server = neutron_server
    mark = server.log_mark()
    host_a = await hypervisors("host-a")
    host_b = await hypervisors("host-b")
    await wait_agents_alive(server, ["host-a", "host-b"])
    await asyncio.gather(listening(host_a), listening(host_b))
    seen_a, seen_b = record_notifications(host_a), record_notifications(host_b)
    network = None
    try:
        network, vlan = await in_thread(vlan_network, server, "10.31.0.0/24")
        assert "binding-extended" in await in_thread(server.extensions)
        port = await in_thread(server.create_port, network["id"], "host-a")
        pid = port["id"]
        host_a.plug(port)
        await wait_port_status(server, pid, "ACTIVE", within=30)
        await until(lambda: wired(host_a, port, vlan), "the port wired on host-a")

        # nova's pre-live-migration: an INACTIVE binding on the destination, the VIF plugged
        binding = (await in_thread(as_service, server, "POST", f"/v2.0/ports/{pid}/bindings",
                                   {"binding": {"host": "host-b"}}))["binding"]  # fmt: skip
        assert (binding["host"], binding["status"], binding["vif_type"]) == (
            "host-b", "INACTIVE", "ovs"
        ), binding  # fmt: skip
        host_b.plug(port)
        # the server answers host-b's question with no_active_binding: host-b must not wire
        await poll(
            lambda: server.log_lines(f"Device {pid} has no active binding in host host-b",
                                     since=mark),
            bool, within=WITHIN, what="host-b asking about the port",
        )  # fmt: skip
        await until(lambda: dead(host_b, port), "the port dead on host-b (inactive binding)")
        await host_b.agent.settled()
        await host_b.agent.reporter.drain()
        assert dead(host_b, port), "host-b wired a port whose binding is inactive"
        # and says nothing about it, as neutron's agent (it skips no_active_binding devices):
        # the server hands a DOWN from a host whose binding is inactive to l2population, which
        # (with an L3 plugin loaded) fans out remove_fdb_entries for the port's MAC and IP
        reported = server.log_lines(f"Device {pid} no longer exists at agent", "host-b", since=mark)
        assert not reported, reported
        assert wired(host_a, port, vlan), "host-a unwired the port before the activation"
        shown = await in_thread(server.show_port, pid)
        assert (shown["status"], shown["binding:host_id"]) == ("ACTIVE", "host-a"), shown

        # the switch-over: host-a's binding deactivated, host-b's activated
        activated = await in_thread(
            as_service, server, "PUT", f"/v2.0/ports/{pid}/bindings/host-b/activate"
        )  # a member action: the binding, unwrapped
        assert (activated["host"], activated["status"]) == ("host-b", "ACTIVE"), activated
        await until(lambda: wired(host_b, port, vlan), "the port wired on host-b")
        await until(lambda: dead(host_a, port), "the port unwired on host-a")
        moved = await poll(
            lambda: server.show_port(pid),
            lambda p: (p["status"], p["binding:host_id"]) == ("ACTIVE", "host-b"),
            within=WITHIN, what="the port ACTIVE on host-b",
        )  # fmt: skip
        assert moved["binding:vif_type"] == "ovs", moved

        # post-migration: the source's VIF unplugged, its binding deleted
        old_ofport = host_a.ofport(pid)
        host_a.unplug(pid)
        await in_thread(as_service, server, "DELETE", f"/v2.0/ports/{pid}/bindings/host-a")
        await until(lambda: not host_a.flows_on_port(old_ofport), "host-a's flows removed")
        await asyncio.gather(host_a.agent.settled(), host_b.agent.settled())
        await host_a.agent.reporter.drain()
        bindings = (await in_thread(as_service, server, "GET", f"/v2.0/ports/{pid}/bindings"))[
            "bindings"
        ]
        assert [(b["host"], b["status"]) for b in bindings] == [("host-b", "ACTIVE")], bindings
        assert wired(host_b, port, vlan), "host-b unwired the port after the source's cleanup"
        shown = await in_thread(server.show_port, pid)
        assert (shown["status"], shown["binding:host_id"]) == ("ACTIVE", "host-b"), shown

        # the server's fanouts, as both agents received them
        for seen in (seen_a, seen_b):
            assert BindingDeactivate(port_id=pid, host="host-a") in seen, seen
            assert BindingActivate(port_id=pid, host="host-b") in seen, seen
        assert not about_aovs(server, mark), about_aovs(server, mark)
        assert_no_server_errors(server, mark)
    finally:
        await in_thread(cleanup, server, network)
    FILE["ran"].append("live migration")


# -- 3. neutron-rpc-server restart --------------------------------------------------------------
async def test_rpc_server_restart_while_ports_come_and_go(
    neutron_server: NeutronServer, hypervisors: HypervisorFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = neutron_server
    mark = server.log_mark()
    caplog.set_level(logging.WARNING, logger="aovs")
    caplog.set_level(logging.WARNING, logger="asyncio")  # "Task exception was never retrieved"
    h = await hypervisors("host-a")
    (agent,) = await wait_agents_alive(server, ["host-a"])
    await listening(h)
    seen = record_notifications(h)
    network = None
    try:
        network, vlan = await in_thread(vlan_network, server, "10.32.0.0/24")
        gone = await in_thread(server.create_port, network["id"], "host-a")
        h.plug(gone)
        await wait_port_status(server, gone["id"], "ACTIVE", within=30)
        await until(lambda: wired(h, gone, vlan), "the first port wired")
        gone_ofport = h.ofport(gone["id"])

        await in_thread(server.stop_rpc)
        assert not server.rpc_running
        # the API still works: ports are created, bound, deleted; the agent hears the deletes
        ports = [await in_thread(server.create_port, network["id"], "host-a") for _ in range(3)]
        assert {p["binding:vif_type"] for p in ports} == {"ovs"}, ports
        for port in ports:
            h.plug(port)
        h.unplug(gone["id"])
        await in_thread(server.delete_port, gone["id"])
        # nobody answers: the new ports wait unwired (dropped), the old one is unwired
        for port in ports:
            await until(lambda port=port: waiting(h, port), f"port {port['id']} waiting")
        await until(lambda: not h.flows_on_port(gone_ofport), "the deleted port's flows removed")
        # the API fans port_delete out by itself: the agent heard it with the RPC server down
        assert PortDelete(port_id=gone["id"]) in seen, seen
        assert {p["status"] for p in await in_thread(
            lambda: [server.show_port(p["id"]) for p in ports])} == {"DOWN"}  # fmt: skip
        # the last heartbeat the stopped server took (nobody updates it until the restart)
        before = (await in_thread(server.get, f"/v2.0/agents/{agent['id']}"))["agent"][
            "heartbeat_timestamp"
        ]
        restart_mark = server.log_mark()
        await in_thread(server.start_rpc)

        for port in ports:
            await wait_port_status(server, port["id"], "ACTIVE", within=45)
            await until(lambda port=port: wired(h, port, vlan), f"port {port['id']} wired")
        await h.agent.settled()
        core = h.agent.core
        assert core is not None
        # nothing left in between: the three wired, the deleted one forgotten
        assert {pid: port.phase.value for pid, port in core.ports.items()} == {
            p["id"]: "wired" for p in ports
        }
        flows = "\n".join(h.flows())
        assert gone["mac_address"] not in flows, "the deleted port's MAC is still in the flows"
        assert not h.flows_on_port(gone_ofport)

        # alive again: a heartbeat the restarted server took
        await poll(
            lambda: server.get(f"/v2.0/agents/{agent['id']}")["agent"],
            lambda a: a["alive"] and a["heartbeat_timestamp"] > before,
            within=WITHIN, what="a heartbeat recorded after the restart",
        )  # fmt: skip
        await wait_agents_alive(server, ["host-a"])

        unhandled = [
            r
            for r in caplog.records
            if r.name.startswith(("aovs", "asyncio")) and (r.exc_info or r.levelno >= logging.ERROR)
        ]
        assert not unhandled, [r.getMessage() for r in unhandled]  # fmt: skip
        # the agent's long-lived tasks (the loop, the commits, the consumers) are all still there
        failed = [
            task.get_name()
            for task in h.agent._tasks
            if task.done() and (task.cancelled() or task.exception() is not None)
        ]
        assert not failed, f"agent tasks died: {failed}"
        assert not about_aovs(server, restart_mark), about_aovs(server, restart_mark)
        assert_no_server_errors(server, mark)
    finally:
        if not server.rpc_running:  # a failure above must not leave the next tests without RPC
            await in_thread(server.start_rpc)
        await in_thread(cleanup, server, network)
    FILE["ran"].append("rpc restart")


# -- 4. the whole file --------------------------------------------------------------------------
def test_server_logged_nothing_about_aovs_over_the_file(neutron_server: NeutronServer) -> None:
    """Run last: every scenario above logged no warning or error about aovs at the server."""
    if not FILE["ran"]:
        pytest.skip("no scenario of this file ran before this check")
    lines = about_aovs(neutron_server, FILE["mark"])
    assert not lines, f"after {FILE['ran']}, the server logged:\n" + "\n".join(lines)
    assert_no_server_errors(neutron_server, FILE["mark"])
