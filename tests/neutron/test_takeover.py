"""Taking a hypervisor over from neutron's own agent, and giving it back (issue 20).

neutron 29's real ``neutron-openvswitch-agent`` (the tier's venv) wires two VMs on a vlan
network on a private OVS, with the openvswitch firewall, against the tier's real
neutron-server; then it is stopped and aovs (in-process, the same bridges, host and server)
starts. While that happens, numbered UDP frames go every ~3 ms from VM a to VM b (br-int, both
firewalls) and from VM a to a MAC outside (out of br-phys' uplink, tagged with the segment), and
every frame that never came out is counted. Then the reverse: aovs stops cleanly (its pending
Port rows written) and neutron's agent starts again over aovs' flows.

Measured on this machine (2 cores, shared), several runs each way:
- neutron -> aovs: 0 frames lost of ~4500 per path, every run. aovs keeps neutron's flows until
  neutron-server has answered for every port, then replaces them in one bundle per bridge.
- aovs -> neutron: 1 to 5 frames lost on every path ~4-5 s after neutron's agent starts, all
  within ~15 ms (its table 0 default becomes ``goto_table:58`` ~15 ms before it installs its
  tables 58 and 59, which aovs' pipeline does not have: with neutron's 58 -> 59 -> 60 chain
  left in place by hand, that loss went away in three runs out of three), plus up to 10 more on
  the VM-to-VM path while neutron's firewall installs a port's flows with ``ovs-ofctl
  add-flows`` in batches of 100 (its clause flows point at new conjunction ids a batch before
  their ``conj_id`` flows exist). neutron restarting over its OWN flows does the latter too (7
  frames in one run of three), so that part is neutron's and nothing aovs leaves would avoid it.
  The test bounds it (under 100 frames a path, the last 300 all delivered) and prints it.

neutron's agent logs an ERROR per port here (``conntrack`` is not installed, so its
conntrack-entry cleanup fails); that logger is ignored, any other ERROR fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from neutron_world import in_thread, poll, tap_name, wait_agents_alive, wait_port_status
from server.neutron_server import NeutronApiError, NeutronServer

from aovs.agent.agent import Agent
from aovs.config import AgentConfig
from aovs.openflow.reconcile import stable_cookie
from aovs.sandbox import OVSSandbox, SandboxError, running_sandbox

# the takeover's test support lives beside the integration tests (not a package)
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from neutron_agent import (
    Flowing,
    NeutronOVSAgent,
    StreamResult,
    neutron_venv,
    ports_with_neutron_metadata,
    streaming,
)

pytestmark = pytest.mark.integration

HOST = "host-takeover"
UPLINK = "br-phys-up"
BRIDGES = ("br-int", "br-phys")
OUTSIDE_MAC = "52:54:00:00:00:99"
IGNORED_NEUTRON_ERRORS = ("neutron.agent.linux.ip_conntrack",)  # no conntrack binary here
AOVS_TABLES = {110, 111, 112}  # neutron cleans only its own tables of stale cookies


@pytest.fixture
def hypervisor() -> Iterator[OVSSandbox]:
    """An OVS as neutron's agent finds it: br-phys (physnet1) with an uplink, both bridges
    datapath_type=system (neutron's default; the sandbox's ``--enable-dummy=override`` makes it
    the dummy datapath)."""
    directory = Path(tempfile.mkdtemp(prefix="aovs-tkn-", dir="/tmp"))
    with running_sandbox(directory) as sandbox:
        sandbox.vsctl(
            "add-br", "br-phys", "--", "set", "Bridge", "br-phys", "fail-mode=secure",
            "datapath_type=system",
            "--", "add-port", "br-phys", UPLINK, "--", "set", "Interface", UPLINK, "type=dummy",
        )  # fmt: skip
        yield sandbox


@contextlib.asynccontextmanager
async def vlan_network(server: NeutronServer) -> AsyncIterator[dict[str, Any]]:
    attrs = {"provider:network_type": "vlan", "provider:physical_network": "physnet1"}
    network: dict[str, Any] = await in_thread(server.create_network, **attrs)
    created: list[str] = []
    network["ports"] = created
    try:
        await in_thread(server.create_subnet, network["id"], "10.77.0.0/24")
        yield network
    finally:
        for port in created:
            with contextlib.suppress(NeutronApiError):
                await in_thread(server.delete_port, port)
        with contextlib.suppress(NeutronApiError):
            await in_thread(server.delete_network, network["id"])


def plug(sandbox: OVSSandbox, port: Mapping[str, Any]) -> str:
    """nova/os-vif's add-port."""
    tap = tap_name(port["id"])
    sandbox.vsctl(
        "add-port", "br-int", tap, "--", "set", "Interface", tap, "type=dummy",
        f"external-ids:iface-id={port['id']}", f"external-ids:attached-mac={port['mac_address']}",
        "external-ids:iface-status=active", f"external-ids:vm-uuid={port['device_id']}",
    )  # fmt: skip
    return tap


def ofport(sandbox: OVSSandbox, tap: str) -> int:
    value = sandbox.vsctl("get", "Interface", tap, "ofport").strip()
    return int(value) if value.lstrip("-").isdigit() else -1


def cookies(sandbox: OVSSandbox, bridge: str) -> dict[int, set[int]]:
    """cookie -> the tables its flows are in."""
    out: dict[int, set[int]] = {}
    for line in sandbox.dump_flows(bridge):
        cookie = re.match(r"cookie=(0x[0-9a-f]+)", line)
        table = re.search(r"\btable=(\d+)", line)
        out.setdefault(int(cookie[1], 16) if cookie else 0, set()).add(
            int(table[1]) if table else 0
        )
    return out


def wired_by(sandbox: OVSSandbox, taps: list[str], theirs: set[int]) -> bool:
    """Every tap has its firewall entry (table 60, in_port) under one of ``theirs``."""
    flows = sandbox.dump_flows("br-int")
    for tap in taps:
        entry = re.compile(rf"table=60, priority=100,in_port={ofport(sandbox, tap)}\b")
        owners = {int(m[1], 16) for f in flows if entry.search(f)
                  for m in [re.match(r"cookie=(0x[0-9a-f]+)", f)] if m}  # fmt: skip
        if not owners & theirs:
            return False
    return True


def aovs_config(sandbox: OVSSandbox, server: NeutronServer, state: Path) -> AgentConfig:
    return AgentConfig.model_validate({
        "host": HOST,
        "transport_url": server.transport_url,
        "ovs": {"ovsdb_connection": sandbox.ovsdb_connection, "datapath_type": "system",
                "bridge_mappings": ["physnet1:br-phys"], "port_metadata_delay": 0.5},
        "agent": {"state_path": str(state), "report_interval": 2.0},
        "securitygroup": {"firewall_driver": "openvswitch"},
    })  # fmt: skip


def report(what: str, result: StreamResult) -> None:
    print(f"\n{what}:\n{result.report()}")


async def test_takeover_from_neutrons_agent_and_back(
    neutron_server: NeutronServer, hypervisor: OVSSandbox
) -> None:
    venv = neutron_venv()
    if venv is None:
        pytest.skip("neutron-openvswitch-agent is not in the neutron venv (make test-neutron)")
    sandbox, server = hypervisor, neutron_server
    ours = {bridge: stable_cookie(bridge) for bridge in BRIDGES}
    neutron = NeutronOVSAgent(venv, sandbox, sandbox.directory / "neutron-1", host=HOST,
                              transport_url=server.transport_url)  # fmt: skip
    agent: Agent | None = None
    async with vlan_network(server) as network:
        try:
            # -- neutron's agent wires two VMs ---------------------------------------------
            neutron.start()
            await wait_agents_alive(server, [HOST], within=90)  # ports bind to a live agent
            vms = []
            for _ in range(2):
                port = await in_thread(server.create_port, network["id"], HOST)
                network["ports"].append(port["id"])
                assert port["binding:vif_type"] == "ovs", port
                vms.append((port, plug(sandbox, port)))
            taps = [tap for _, tap in vms]
            for port, _ in vms:
                await wait_port_status(server, port["id"], "ACTIVE", within=90)
            await poll(lambda: wired_by(sandbox, taps, set(cookies(sandbox, "br-int")) - {0}),
                       bool, within=60, what="neutron's firewall entries")  # fmt: skip
            await poll(lambda: ports_with_neutron_metadata(sandbox), lambda rows: len(rows) == 2,
                       within=30, what="neutron's Port rows")  # fmt: skip
            rows = ports_with_neutron_metadata(sandbox)
            theirs = {b: set(cookies(sandbox, b)) - {ours[b]} for b in BRIDGES}
            assert all(theirs.values()), theirs
            (a, a_tap), (b, b_tap) = vms
            ip = [p["fixed_ips"][0]["ip_address"] for p, _ in vms]
            paths = [
                Flowing("vm a -> vm b", a_tap, b_tap, a["mac_address"], b["mac_address"], *ip),
                Flowing("vm a -> outside", a_tap, UPLINK, a["mac_address"], OUTSIDE_MAC, ip[0],
                        "10.77.0.250"),
            ]  # fmt: skip

            # -- neutron -> aovs -------------------------------------------------------------
            with streaming(sandbox, paths) as stream:
                await asyncio.sleep(0.5)
                assert not neutron.errors(IGNORED_NEUTRON_ERRORS), neutron.errors()
                stream.mark("neutron's agent stopping")
                took = await in_thread(neutron.stop, 5.0)
                stream.mark(f"neutron's agent gone ({took:.1f} s)")
                agent = Agent(aovs_config(sandbox, server, sandbox.directory / "aovs"))
                await agent.start()
                stream.mark("aovs ready")
                await agent.settled()
                await asyncio.sleep(1.0)
                forward = stream.stop()
            report("neutron's agent -> aovs", forward)
            summaries = {b: r.takeover for b, r in agent.reconcilers.items()}
            print(summaries)
            assert forward.lost == 0, forward.report()
            assert all(p.sent > 300 for p in forward.paths), forward.report()
            for bridge in BRIDGES:
                summary = summaries[bridge]
                assert summary is not None and summary.found > 0, bridge
                assert summary.cookies == theirs[bridge], bridge
                assert set(cookies(sandbox, bridge)) == {ours[bridge]}, bridge
            assert ports_with_neutron_metadata(sandbox) == rows  # their local VLANs, unchanged
            for port, _ in vms:
                assert (await in_thread(server.show_port, port["id"]))["status"] == "ACTIVE"

            # -- aovs -> neutron -------------------------------------------------------------
            neutron = NeutronOVSAgent(venv, sandbox, sandbox.directory / "neutron-2", host=HOST,
                                      transport_url=server.transport_url)  # fmt: skip
            with streaming(sandbox, paths) as stream:
                await asyncio.sleep(0.5)
                stream.mark("aovs stopping")
                await agent.stop()
                agent = None
                stream.mark("aovs stopped; neutron's agent starting")
                neutron.start()
                started = time.monotonic()

                def handed_back() -> bool:
                    """neutron's firewall entries for both VMs, and aovs' cookie left only in
                    aovs' own tables (neutron's first-iteration cleanup has run). Until then
                    the bridge's management socket may reset a dump (neutron's agent sets
                    br-int's protocols, and ovs-vswitchd drops its OpenFlow connections)."""
                    try:
                        now = cookies(sandbox, "br-int")
                        new = set(now) - {ours["br-int"]} - theirs["br-int"]
                        return wired_by(sandbox, taps, new) and (
                            now.get(ours["br-int"], set()) <= AOVS_TABLES
                        )
                    except SandboxError:
                        return False

                await poll(lambda: handed_back(), bool, within=120,
                           what="neutron's agent wiring the VMs again")  # fmt: skip
                stream.mark(f"neutron's agent done ({time.monotonic() - started:.1f} s)")
                await asyncio.sleep(2.0)
                back = stream.stop()
            report("aovs -> neutron's agent", back)
            assert not neutron.errors(IGNORED_NEUTRON_ERRORS), neutron.errors()
            assert ports_with_neutron_metadata(sandbox) == rows
            for path in back.paths:  # neutron's to own; bounded, and traffic flows at the end
                assert len(path.lost) < 100, back.report()
                assert not set(path.lost) & set(range(path.sent - 300, path.sent)), back.report()
            leftover = cookies(sandbox, "br-int").get(ours["br-int"], set())
            print(f"aovs' flows left in tables {sorted(leftover)} (neutron does not clean them)")
        finally:
            if agent is not None:
                await agent.stop()
            await in_thread(neutron.stop, 5.0)
