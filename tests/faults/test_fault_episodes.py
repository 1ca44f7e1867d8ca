"""Fault injection against a running agent: every restart and every bad input, nothing lost.

``make test`` runs each fault once, in an order drawn from the seed printed in the header
(``--fault-seed N`` replays it); ``make soak`` (``pytest tests/faults --soak-seconds S``) runs
random episodes for S seconds with more ports and writes benchmarks/results/soak.json.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
from fault_catalog import FAULTS
from fault_run import LogMark, Runner, records_since, render
from fault_world import BAD_DETAILS, UNKNOWN, FaultWorld

from aovs.testing.cloud import SimulatedCloud, SimulatedCloudError

pytestmark = pytest.mark.integration

SHORT_RUN_PORTS = 9  # good ports in the CI run (plus the bad ones)
SOAK_RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "soak.json"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)  # visible live with -s, kept in the report


def bad_port_lines(runner: Runner) -> dict[str, str]:
    """iface-id -> the agent's line saying why that bad port is not wired."""
    found: dict[str, str] = {}
    for record in records_since(runner.world, LogMark(0, 0)):
        iface_id = record.get("iface_id")
        if iface_id in (*BAD_DETAILS, UNKNOWN) and record.get("phase") in ("failed", "dead"):
            found.setdefault(str(iface_id), render(record))
    return found


async def test_faults_leave_every_port_wired(
    fault_seed: int, soak_seconds: float, soak_ports: int
) -> None:
    soak = soak_seconds > 0
    world = FaultWorld(soak_ports if soak else SHORT_RUN_PORTS)
    runner = Runner(world, fault_seed, log=say)
    say(f"fault run: --fault-seed {fault_seed}, work directory {world.workdir}")
    try:
        await world.start()
        await runner.boot()
        lines = bad_port_lines(runner)
        for iface_id in (*BAD_DETAILS, UNKNOWN):
            if iface_id not in lines:
                runner.violation("boot", f"no log line says why port {iface_id} is not wired")
        if soak:
            await runner.soak(soak_seconds)
        else:
            order = sorted(FAULTS)
            random.Random(fault_seed).shuffle(order)
            await runner.run(order)
    finally:
        await world.close()
    record = runner.record
    results = SOAK_RESULTS if soak else world.workdir / "faults.json"
    record.write(results)
    say(f"fault run results in {results}: {record.to_json()}")
    assert not record.violations, (
        f"--fault-seed {fault_seed}: {len(record.violations)} violations (logs kept in "
        f"{world.workdir}):\n" + "\n".join(record.violations[:20])
    )
    if not soak:
        assert set(record.faults) == set(FAULTS)
    world.discard()


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"networks": {"n": {"network_type": "banana"}}}, "networks.n"),
        ({"networks": {"n": {"network_type": "vlan", "physical_network": "p",
                             "segmentation_id": 5000}}}, "segmentation_id 1..4094"),
        ({"networks": {"n": {"network_type": "flat", "physical_network": "p"}},
          "ports": [{"port_id": "p1", "network_id": "n", "mac_address": "zz"}]}, "MAC"),
        ({"networks": {"n": {"network_type": "flat", "physical_network": "p"}},
          "ports": [{"port_id": "p1", "network_id": "n", "mac_address": "fa:16:3e:00:00:01",
                     "fixed_ips": [{"ip_address": "10.0.0.256"}]}]}, "ip_address"),
        ({"networks": {}, "ports": [{"port_id": "p1", "network_id": "gone",
                                     "mac_address": "fa:16:3e:00:00:01"}]}, "unknown network"),
        ({"ports": "not a list"}, "ports"),
        ([1, 2], "top level"),
    ],
)  # fmt: skip
def test_bad_topology_is_one_line_naming_the_problem(data: object, names: str) -> None:
    with pytest.raises(SimulatedCloudError) as raised:
        SimulatedCloud.parse(data, source="fault.json")
    message = str(raised.value)
    assert "\n" not in message and message.startswith("topology fault.json: ")
    assert names in message
