"""``aovs cleanup`` against a real OVS: exactly neutron's/aovs's ports go, in one transaction."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aovs.cleanup import peer_port_name
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration

INT, TUN, PHYS = "cl-int", "cl-tun", "cl-phys"
REMOVED = {
    (INT, "vm-a"),
    (INT, "vm-b"),
    (INT, "int-cl-phys"),
    (INT, "patch-tun"),
    (TUN, "patch-int"),
    (TUN, "vxlan-0a000002"),
    (TUN, "gre-0a000003"),
    (PHYS, "phy-cl-phys"),
}
KEPT = {
    (INT, "cl-int"),  # the bridge's own internal port
    (INT, "foreign"),  # no external_ids
    (INT, "other-ids"),  # external_ids, but no iface-id
    (INT, "int-other"),  # a patch port for a bridge not in bridge_mappings
    (TUN, "cl-tun"),
    (TUN, "vxlan-fake"),  # named like a tunnel but not one
    (TUN, "tenant-tap"),  # an iface-id, but not on the integration bridge
    (PHYS, "cl-phys"),
    (PHYS, "cl-phys-up"),  # the uplink
}


def _build_topology(sandbox: OVSSandbox) -> None:
    def patch(bridge: str, name: str, peer: str) -> list[str]:
        return ["--", "add-port", bridge, name, "--", "set", "Interface", name, "type=patch",
                f"options:peer={peer}"]  # fmt: skip

    def port(bridge: str, name: str, *settings: str) -> list[str]:
        return ["--", "add-port", bridge, name, "--", "set", "Interface", name, *settings]

    sandbox.add_physical_bridge(PHYS, uplink="cl-phys-up")
    args: list[str] = []
    for bridge in (INT, TUN):
        args += ["--", "add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=dummy"]
    args += port(INT, "vm-a", "type=dummy", "external_ids:iface-id=port-a",
                 "external_ids:attached-mac=fa:16:3e:00:00:0a")  # fmt: skip
    args += port(INT, "vm-b", "type=dummy", "external_ids:iface-id=port-b")
    args += port(INT, "foreign", "type=dummy")
    args += port(INT, "other-ids", "type=dummy", "external_ids:owner=someone-else")
    args += patch(INT, "int-cl-phys", "phy-cl-phys") + patch(PHYS, "phy-cl-phys", "int-cl-phys")
    args += patch(INT, "patch-tun", "patch-int") + patch(TUN, "patch-int", "patch-tun")
    args += patch(INT, "int-other", "phy-other")
    args += port(TUN, "vxlan-0a000002", "type=vxlan", "options:remote_ip=10.0.0.2")
    args += port(TUN, "gre-0a000003", "type=gre", "options:remote_ip=10.0.0.3")
    args += port(TUN, "vxlan-fake", "type=dummy")
    args += port(TUN, "tenant-tap", "type=dummy", "external_ids:iface-id=port-c")
    sandbox.vsctl(*args[1:])


def _ports(sandbox: OVSSandbox) -> set[tuple[str, str]]:
    found = set()
    for bridge in (INT, TUN, PHYS):
        for name in sandbox.vsctl("list-ports", bridge).split():
            found.add((bridge, name))
        found.add((bridge, bridge))
    return found


def _config(sandbox: OVSSandbox, tmp: Path) -> Path:
    path = tmp / "aovs.toml"
    path.write_text(
        f'[ovs]\nintegration_bridge = "{INT}"\ntunnel_bridge = "{TUN}"\n'
        f'bridge_mappings = ["physnet1:{PHYS}"]\novsdb_connection = "{sandbox.ovsdb_connection}"\n'
        f'[agent]\nstate_path = "{tmp}"\n'
    )
    return path


def _aovs(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOVS_")}
    return subprocess.run(
        [sys.executable, "-m", "aovs.cli", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip


def _listed(stdout: str) -> set[tuple[str, str]]:
    rows = [line.split() for line in stdout.splitlines()[2:]]
    return {(row[0], row[1]) for row in rows}


async def _port_deletions(db_sock: Path, ready: asyncio.Event, stop: asyncio.Event) -> list[Any]:
    """Every ``update`` notification with Port deletions: one notification per transaction."""
    reader, writer = await asyncio.open_unix_connection(str(db_sock))
    request = {
        "id": 1,
        "method": "monitor",
        "params": ["Open_vSwitch", None, {"Port": {"columns": ["name"], "select": {
            "initial": False, "insert": False, "modify": False, "delete": True}}}],
    }  # fmt: skip
    writer.write(json.dumps(request).encode())
    decoder = json.JSONDecoder()
    buffer, updates = "", []
    try:
        while not stop.is_set():
            try:
                async with asyncio.timeout(0.1):
                    chunk = await reader.read(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            buffer += chunk.decode()
            while buffer.strip():
                try:
                    message, end = decoder.raw_decode(buffer.lstrip())
                except json.JSONDecodeError:
                    break  # wait for the rest of the message
                buffer = buffer.lstrip()[end:]
                if message.get("id") == 1:
                    ready.set()
                elif message.get("method") == "update":
                    updates.append(message["params"][1]["Port"])
                elif message.get("method") == "echo":
                    writer.write(json.dumps({"id": message["id"], "result": []}).encode())
    finally:
        writer.close()
    return updates


def test_dry_run_lists_exactly_the_ports_and_changes_nothing(
    fresh_sandbox: OVSSandbox, tmp_path: Path
) -> None:
    _build_topology(fresh_sandbox)
    before = _ports(fresh_sandbox)
    assert before == REMOVED | KEPT

    out = _aovs("cleanup", "--dry-run", "--config", str(_config(fresh_sandbox, tmp_path)))

    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"would remove {len(REMOVED)} port(s)"
    assert _listed(out.stdout) == REMOVED
    assert "port-a" in out.stdout  # the iface-id is shown for VM ports
    assert _ports(fresh_sandbox) == before


async def test_cleanup_removes_exactly_those_ports_in_one_transaction(
    fresh_sandbox: OVSSandbox, tmp_path: Path
) -> None:
    _build_topology(fresh_sandbox)
    config = _config(fresh_sandbox, tmp_path)
    ready, stop = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(_port_deletions(fresh_sandbox.db_sock, ready, stop))
    async with asyncio.timeout(10):
        await ready.wait()

    out = await asyncio.to_thread(_aovs, "cleanup", "--config", str(config))

    await asyncio.sleep(0.3)  # let the monitor's update arrive
    stop.set()
    updates = await watcher
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"removed {len(REMOVED)} port(s) in one transaction"
    assert _listed(out.stdout) == REMOVED
    assert _ports(fresh_sandbox) == KEPT
    assert len(updates) == 1, f"expected one transaction, saw {len(updates)}"
    deleted = {row["old"]["name"] for row in updates[0].values()}
    assert deleted == {name for _, name in REMOVED}
    # the Interfaces went with their Ports (OVSDB garbage collection), not just the Port rows
    names = fresh_sandbox.vsctl("--bare", "--columns=name", "list", "Interface").split()
    assert not {name for _, name in REMOVED} & set(names)


def test_cleanup_again_is_a_no_op(fresh_sandbox: OVSSandbox, tmp_path: Path) -> None:
    _build_topology(fresh_sandbox)
    config = str(_config(fresh_sandbox, tmp_path))
    assert _aovs("cleanup", "--config", config).returncode == 0

    again = _aovs("cleanup", "--config", config)

    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "removed 0 port(s) in one transaction"
    assert _ports(fresh_sandbox) == KEPT


def test_cleanup_without_ovsdb_fails_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "aovs.toml"
    config.write_text(f'[ovs]\novsdb_connection = "unix:{tmp_path}/nothing.sock"\n')

    out = _aovs("cleanup", "--config", str(config), "--timeout", "1")

    assert out.returncode == 1
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
    assert "nothing.sock" in out.stderr


def test_peer_port_names_follow_neutron() -> None:
    assert peer_port_name("int-", "br-ex") == "int-br-ex"
    long = peer_port_name("phy-", "br-provider-fabric")
    # neutron: prefix + the name cut to fit + the first 6 hex digits of its sha1, 15 chars in all
    assert long == "phy-br-pr" + hashlib.sha1(b"br-provider-fabric").hexdigest()[:6]
    assert len(long) == 15
    assert peer_port_name("int-", "br-provider-fabric") != peer_port_name(
        "int-", "br-provider-fab2"
    )
