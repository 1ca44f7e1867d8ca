"""aovs reads neutron's files as oslo.config itself does: the same files, command lines and tricky
syntax given to a real ``oslo_config.cfg.ConfigOpts`` (with neutron's declarations of the
options concerned) and to aovs must give the same values."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg

from aovs.config import AgentConfig, IniFiles, load_config


@pytest.fixture(autouse=True)
def _no_aovs_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("AOVS_"):
            monkeypatch.delenv(name)
    yield


def neutron_conf(argv: list[str]) -> cfg.ConfigOpts:
    """A ConfigOpts with neutron 29's declarations (names, groups, types, defaults)."""
    conf = cfg.ConfigOpts()
    conf.register_opts([
        cfg.HostAddressOpt("host", default="compute-default"),
        cfg.StrOpt("transport_url", secret=True),
        cfg.StrOpt("state_path", default="/var/lib/neutron"),
        cfg.BoolOpt("debug", default=False),
        cfg.IntOpt("rpc_response_timeout", default=60),
        cfg.IntOpt("rpc_resources_processing_step", default=20, min=1),
    ])  # fmt: skip
    conf.register_opts([
        cfg.StrOpt("integration_bridge", default="br-int"),
        cfg.StrOpt("tunnel_bridge", default="br-tun"),
        cfg.ListOpt("bridge_mappings", default=[]),
        cfg.IPOpt("local_ip"),
        cfg.StrOpt("ovsdb_connection", default="tcp:127.0.0.1:6640"),
    ], "OVS")  # fmt: skip
    conf.register_opts([
        cfg.ListOpt("tunnel_types", default=[]),
        cfg.PortOpt("vxlan_udp_port", default=4789),
        cfg.BoolOpt("l2_population", default=False),
        cfg.FloatOpt("report_interval", default=30),
    ], "AGENT")  # fmt: skip
    conf.register_opts([cfg.StrOpt("firewall_driver")], "SECURITYGROUP")
    conf(args=argv, project="neutron", default_config_files=[], default_config_dirs=[],
         use_env=False)  # fmt: skip
    return conf


def aovs_conf(argv: list[str]) -> AgentConfig:
    entries: list[Any] = []
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        entries.append(("file" if flag == "--config-file" else "dir", Path(value)))
    return load_config(IniFiles(tuple(entries)))


def values(conf: cfg.ConfigOpts) -> dict[str, Any]:
    return {
        "host": conf.host,
        "transport_url": conf.transport_url,
        "debug": conf.debug,
        "rpc_response_timeout": conf.rpc_response_timeout,
        "rpc_resources_processing_step": conf.rpc_resources_processing_step,
        "integration_bridge": conf.OVS.integration_bridge,
        "tunnel_bridge": conf.OVS.tunnel_bridge,
        "bridge_mappings": tuple(conf.OVS.bridge_mappings),
        "local_ip": None if conf.OVS.local_ip is None else str(conf.OVS.local_ip),
        "ovsdb_connection": conf.OVS.ovsdb_connection,
        "tunnel_types": tuple(conf.AGENT.tunnel_types),
        "vxlan_udp_port": conf.AGENT.vxlan_udp_port,
        "l2_population": conf.AGENT.l2_population,
        "report_interval": conf.AGENT.report_interval,
        "firewall_driver": conf.SECURITYGROUP.firewall_driver,
    }


def aovs_values(c: AgentConfig) -> dict[str, Any]:
    return {
        "host": c.host,
        "transport_url": c.transport_url,
        "debug": c.agent.log_level == "DEBUG",
        "rpc_response_timeout": c.agent.rpc_response_timeout,
        "rpc_resources_processing_step": c.agent.rpc_resources_processing_step,
        "integration_bridge": c.ovs.integration_bridge,
        "tunnel_bridge": c.ovs.tunnel_bridge,
        "bridge_mappings": c.ovs.bridge_mappings,
        "local_ip": c.ovs.local_ip,
        "ovsdb_connection": c.ovs.ovsdb_connection,
        "tunnel_types": c.agent.tunnel_types,
        "vxlan_udp_port": c.ovs.vxlan_udp_port,
        "l2_population": c.agent.l2_population,
        "report_interval": c.agent.report_interval,
        "firewall_driver": c.securitygroup.firewall_driver,
    }


# Every file sets every option it names, so that aovs' defaults (some differ from neutron's on
# purpose, see docs/operations.md) do not enter the comparison.
BASE = {
    "neutron.conf": """[DEFAULT]
host = compute-1
transport_url = rabbit://u:pa$$ss\\$w@ctl:5672/
state_path = /srv/neutron
debug = false
rpc_response_timeout = 30
rpc_resources_processing_step = 20
[ovs]
integration_bridge = br-int
tunnel_bridge = br-tun
bridge_mappings =
local_ip = 192.0.2.1
ovsdb_connection = unix:/run/ovs/db.sock
[agent]
tunnel_types = vxlan
vxlan_udp_port = 4789
l2_population = false
report_interval = 30
[securitygroup]
firewall_driver = openvswitch
""",
    "plugins/ml2/openvswitch_agent.ini": """# comment
; comment
[OVS]
bridge_mappings = physnet1:br-a,
   physnet2:br-b ,
integration_bridge = 'br-first'
integration_bridge = "br-$host"
tunnel_bridge: ${OVS.integration_bridge}-tun

[Agent]
l2_population = On
tunnel_types = vxlan, gre,
[DEFAULT]
debug = YES
""",
    "conf.d/20-b.conf": """[agent]
report_interval = 2.5
[DEFAULT]
rpc_response_timeout = 45
""",
    "conf.d/10-a.conf": """[agent]
report_interval = 7
vxlan_udp_port = 8472
[ovs]
local_ip = 192.0.2.9
""",
    "conf.d/ignored.txt": "[agent]\nreport_interval = 99\n",
    "last.conf": "[ovs]\nlocal_ip = 192.0.2.77\n[securitygroup]\nfirewall_driver = noop\n",
}

ARGVS = [
    ["--config-file", "neutron.conf"],
    ["--config-file", "neutron.conf", "--config-file", "plugins/ml2/openvswitch_agent.ini"],
    ["--config-file", "plugins/ml2/openvswitch_agent.ini", "--config-file", "neutron.conf"],
    ["--config-file", "neutron.conf", "--config-dir", "conf.d"],
    ["--config-dir", "conf.d", "--config-file", "neutron.conf"],
    ["--config-file", "neutron.conf", "--config-dir", "conf.d", "--config-file", "last.conf",
     "--config-file", "plugins/ml2/openvswitch_agent.ini"],
    ["--config-file", "neutron.conf", "--config-file", "last.conf", "--config-dir", "conf.d"],
]  # fmt: skip


@pytest.mark.parametrize("argv", ARGVS, ids=lambda argv: " ".join(argv))
def test_same_values_as_oslo_config(tmp_path: Path, argv: list[str]) -> None:
    for name, text in BASE.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    argv = [a if a.startswith("--") else str(tmp_path / a) for a in argv]
    expected = values(neutron_conf(argv))
    assert aovs_values(aovs_conf(argv)) == expected


def test_the_scenarios_exercise_the_rules(tmp_path: Path) -> None:
    """The comparison above is not vacuous: the files change values, in order-dependent ways."""
    for name, text in BASE.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    seen = [values(neutron_conf([a if a.startswith("--") else str(tmp_path / a) for a in argv]))
            for argv in ARGVS]  # fmt: skip
    # neutron.conf sets every option: last on the command line, it decides everything
    assert seen[2] == seen[4] == seen[0]
    assert seen[1] != seen[0] and seen[3] != seen[0]
    assert seen[5]["local_ip"] != seen[6]["local_ip"]  # last.conf before / after the directory
    assert seen[3]["report_interval"] == 2.5  # the directory's files in sorted order
    assert seen[0]["transport_url"] == "rabbit://u:pa$ss$w@ctl:5672/"
    assert seen[1]["integration_bridge"] == "br-compute-1"
    assert seen[1]["tunnel_bridge"] == "br-compute-1-tun"
    assert seen[1]["bridge_mappings"] == ("physnet1:br-a", "physnet2:br-b")
