from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from aovs.sandbox import OVSSandbox, SandboxError, _alive

pytestmark = pytest.mark.integration


def test_bridges_and_ports_in_sandbox(ovs_sandbox: OVSSandbox) -> None:
    ovs_sandbox.vsctl(
        "add-br", "br-sbx", "--", "set", "Bridge", "br-sbx", "datapath_type=dummy",
        "protocols=OpenFlow13", "fail-mode=secure",
        "--", "add-port", "br-sbx", "p1", "--", "set", "Interface", "p1", "type=dummy",
    )  # fmt: skip
    assert "br-sbx" in ovs_sandbox.vsctl("list-br").split()
    assert ovs_sandbox.vsctl("get", "Interface", "p1", "ofport").strip().isdigit()
    assert ovs_sandbox.mgmt_socket("br-sbx").exists()
    ovs_sandbox.ofctl("add-flow", "br-sbx", "table=0,priority=5,in_port=1,actions=drop")
    assert any("priority=5,in_port=1" in f for f in ovs_sandbox.dump_flows("br-sbx"))
    ovs_sandbox.vsctl("del-br", "br-sbx")


def test_cli_start_stop_leaves_nothing_behind() -> None:
    directory = Path(tempfile.mkdtemp(prefix="aovs-c-", dir="/tmp"))
    cmd = [sys.executable, "-m", "aovs.cli", "sandbox"]
    out = subprocess.run(
        [*cmd, "start", "--dir", str(directory), "--physical-bridge", "br-phys"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"export OVS_RUNDIR={directory}" in out.stdout
    sandbox = OVSSandbox(directory)
    pids = [sandbox._pid(d) for d in ("ovsdb-server", "ovs-vswitchd")]
    assert all(pids)
    assert "br-phys-up" in sandbox.vsctl("list-ports", "br-phys").split()
    subprocess.run([*cmd, "stop", "--dir", str(directory)], check=True)
    for pid in pids:
        assert pid is not None
        assert not _alive(pid)
    sandbox.remove()


def test_restart_vswitchd_keeps_ofports(fresh_sandbox: OVSSandbox) -> None:
    fresh_sandbox.add_physical_bridge("br-x")
    before = fresh_sandbox.vsctl("get", "Interface", "br-x-up", "ofport").strip()
    fresh_sandbox.kill("ovs-vswitchd")
    fresh_sandbox.start_vswitchd()
    assert fresh_sandbox.vsctl("get", "Interface", "br-x-up", "ofport").strip() == before


def test_too_long_directory_is_refused() -> None:
    with pytest.raises(SandboxError, match="too long"):
        OVSSandbox(Path("/tmp/" + "x" * 120)).start()
