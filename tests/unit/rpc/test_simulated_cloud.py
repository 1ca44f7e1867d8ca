from __future__ import annotations

import json
from pathlib import Path

import pytest

from aovs.testing.cloud import SimulatedCloud, SimulatedCloudError

SAMPLES = sorted((Path(__file__).parents[3] / "config").glob("topology-*.json"))


def test_generated_topology_is_valid_and_deterministic() -> None:
    topo = SimulatedCloud.generate(ports=120, networks=4, security_groups=3)
    assert len(topo.ports) == 120 and len(topo.networks) == 4
    assert {n.network_type for n in topo.networks.values()} == {"vlan", "vxlan"}
    assert len({p.mac_address for p in topo.ports}) == 120
    assert len({p.fixed_ips[0].ip_address for p in topo.ports}) == 120
    assert SimulatedCloud.generate(ports=120, networks=4, security_groups=3) == topo
    assert SimulatedCloud.parse(json.loads(topo.to_json())) == topo


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"networks": {"n": {"network_type": "vlan", "segmentation_id": 5}}}, "physical_network"),
        ({"networks": {"n": {"network_type": "stt"}}}, "network_type"),
        ({"ports": [{"port_id": "p", "network_id": "x", "mac_address": "fa:16:3e:00:00:01"}]},
         "unknown network x"),
        ({"networks": {"n": {"network_type": "vxlan", "segmentation_id": 5}},
          "ports": [{"port_id": "p", "network_id": "n", "mac_address": "nope"}]}, "MAC"),
        ({"security_groups": {"a": {"rules": [{"direction": "ingress",
                                               "remote_group_id": "b"}]}}}, "remote group b"),
        ({"extra": 1}, "extra"),
    ],
)  # fmt: skip
def test_bad_topology_is_one_clear_error(data: object, message: str) -> None:
    with pytest.raises(SimulatedCloudError, match=message) as info:
        SimulatedCloud.parse(data)
    assert "\n" not in str(info.value)


def test_missing_file_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(SimulatedCloudError, match="No such file"):
        SimulatedCloud.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SimulatedCloudError, match="not valid JSON"):
        SimulatedCloud.load(bad)


def test_sample_topologies_load() -> None:
    assert SAMPLES, "config/topology-*.json samples are missing"
    for path in SAMPLES:
        assert SimulatedCloud.load(path).ports
