"""``aovs agent`` as a process, started the way neutron's agent is (``--config-file``): SIGHUP
re-reads the files and applies what neutron's agent applies (the log level), naming the options
that need a restart; SIGTERM stops it cleanly, writing the Port rows it had not written yet."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_world import mac, ofport, plug, port_id, simulator, tap, topology, wait_until

from aovs.sandbox import OVSSandbox, SandboxError

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "config"


def local_file(sandbox: OVSSandbox, url: str, state: Path, *, debug: bool, mappings: str) -> str:
    """The hypervisor's own file, after the shipped samples (the last --config-file wins)."""
    return (f"[DEFAULT]\nhost = compute-sig\ntransport_url = {url}\ndebug = {debug}\n"
            f"[ovs]\novsdb_connection = {sandbox.ovsdb_connection}\ndatapath_type = dummy\n"
            f"bridge_mappings = {mappings}\nport_metadata_delay = 60\n"
            f"[agent]\nstate_path = {state}\nreport_interval = 0\n")  # fmt: skip


def installed(sandbox: OVSSandbox) -> bool:
    try:
        return any("table=23" in flow for flow in sandbox.dump_flows("br-int"))  # the canary
    except SandboxError:  # br-int not there yet
        return False


@contextlib.asynccontextmanager
async def agent_process(config: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOVS_")}
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aovs.cli", "agent",
            "--config-file", str(SAMPLES / "neutron.conf"),
            "--config-file", str(SAMPLES / "openvswitch_agent.ini"),
            "--config-file", str(config), stdout=out, stderr=out, env=env,
        )  # fmt: skip
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_sighup_reloads_the_log_level_and_sigterm_writes_pending_port_rows(
    fresh_sandbox: OVSSandbox, rabbit_vhost: str, state_path: Path, tmp_path: Path
) -> None:
    sandbox = fresh_sandbox
    config, log = tmp_path / "compute.conf", tmp_path / "agent.log"
    config.write_text(local_file(sandbox, rabbit_vhost, state_path, debug=False,
                                 mappings="physnet1:br-phys"))  # fmt: skip
    async with simulator(rabbit_vhost, topology(2)) as sim, agent_process(config, log) as agent:
        await wait_until(lambda: installed(sandbox), within=30, what="the agent's br-int flows")
        plug(sandbox, range(2))
        await wait_until(lambda: set(sim.device_up_reports) == {port_id(0), port_id(1)},
                         within=30, what="both ports wired and reported up")  # fmt: skip
        assert any(f"in_port={ofport(sandbox, tap(1))}" in f for f in sandbox.dump_flows("br-int"))
        # port_metadata_delay is 60 s: the Port rows are still as os-vif left them
        assert sandbox.vsctl("get", "Port", tap(1), "tag").strip() == "[]"
        assert "DEBUG" not in log.read_text()

        config.write_text(local_file(sandbox, rabbit_vhost, state_path, debug=True,
                                     mappings="physnet1:br-ex"))  # fmt: skip
        agent.send_signal(signal.SIGHUP)
        await wait_until(lambda: "SIGHUP: applied" in log.read_text(), what="the reload")
        text = log.read_text()
        assert "[agent] log_level INFO -> DEBUG" in text
        assert "applied only by a restart" in text and "[ovs] bridge_mappings" in text
        assert "br-ex" not in text  # option names, no values
        plug(sandbox, [1])  # anything: a DEBUG line now gets through
        sandbox.vsctl("set", "Interface", tap(1), f"external_ids:attached-mac={mac(1)}")
        await wait_until(lambda: " DEBUG " in log.read_text(), what="a DEBUG line after SIGHUP")

        agent.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(agent.wait(), 30) == 0
    tag = sandbox.vsctl("get", "Port", tap(1), "tag").strip()
    assert tag.isdigit() and 1 <= int(tag) < 4095, tag  # written on the way out
    assert "net_uuid" in sandbox.vsctl("get", "Port", tap(1), "other_config")
    assert "agent stopped" in log.read_text()
