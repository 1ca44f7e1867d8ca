"""The invariant check itself must be able to fail: break the dataplane behind the agent's back
and every breakage is named; the pure parts on hand-made inputs."""

from __future__ import annotations

import pytest
from benchmarks.suite.world import ofctl, vsctl
from fault_invariant import SwitchState, check, dangling_references, last_reports, read_switch
from fault_run import Runner
from fault_world import FaultWorld, good_port_id

from aovs.testing.simulator import DeviceListReport


def report(up: tuple[str, ...] = (), down: tuple[str, ...] = ()) -> DeviceListReport:
    return DeviceListReport(up, down, "agent", "host", False)


def test_last_report_wins() -> None:
    reports = [report(up=("a", "b")), report(down=("a",)), report(up=("a",), down=("b",))]
    assert last_reports(reports) == {"a": True, "b": False}


def test_flows_naming_gone_ofports_are_found() -> None:
    state = SwitchState(
        interfaces={},
        tags={},
        bridge_ports={"br-int": frozenset({1, 2})},
        flows={"br-int": ["table=0, in_port=1 actions=output:2",
                          "table=60, in_port=7 actions=output:1",
                          "table=94, reg6=0x1 actions=output:9,output:2"]},
    )  # fmt: skip
    problems = dangling_references(state)
    assert len(problems) == 2
    assert "[7]" in problems[0] and "[9]" in problems[1]


@pytest.mark.integration
async def test_breakage_behind_the_agents_back_is_reported() -> None:
    world = FaultWorld(good_ports=4)
    runner = Runner(world, seed=7, log=lambda _: None)
    try:
        await world.start()
        await runner.boot()
        assert runner.record.violations == []
        assert await check(world) == []
        plugged = (await read_switch(world)).plugged()
        _, ofport = plugged[good_port_id(0)]
        other, _ = plugged[good_port_id(3)]  # on net-a, as good-000 is

        await ofctl(world.sandbox, "del-flows", "br-int", f"table=60,in_port={ofport}")
        await ofctl(world.sandbox, "add-flow", "br-int", "table=0,priority=1,in_port=999,"
                    "actions=drop")  # fmt: skip
        world.simulator.device_list_reports.append(report(down=(good_port_id(2),)))
        world.simulator.device_list_reports.append(report(up=("never-plugged",)))
        problems = "\n".join(await check(world))
        assert "flows: br-int: 1 flows missing, 1 unexpected" in problems
        assert f"in_port={ofport}" in problems
        assert "references gone ofport(s) [999]" in problems
        assert f"port {good_port_id(2)}: reported DOWN, must be UP" in problems
        assert "unplugged port never-plugged: last reported UP" in problems

        await vsctl(world.sandbox, "set", "Port", other, "tag=4095")
        assert f"port {other} ({good_port_id(3)}): Port.tag 4095" in "\n".join(await check(world))
        await vsctl(world.sandbox, "set", "Port", other, "tag=1234")
        assert "ports carry tags" in "\n".join(await check(world))

        await world.kill_agent()
        assert (await check(world))[0].startswith("the agent is not running")
    finally:
        await world.close()
    world.discard()
