from __future__ import annotations

from pathlib import Path

import pytest

from aovs.config import AgentConfig, ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "aovs.toml"
    path.write_text(text)
    return path


def test_defaults_mirror_neutron() -> None:
    cfg = load_config(None) if not Path("/etc/aovs/aovs.toml").exists() else AgentConfig()
    assert cfg.ovs.integration_bridge == "br-int"
    assert cfg.ovs.tunnel_bridge == "br-tun"
    assert cfg.ovs.of_connection == "mgmt"
    assert cfg.agent.report_interval == 30
    assert cfg.securitygroup.firewall_driver == "openvswitch"
    assert cfg.transport_url == "rabbit://guest:guest@127.0.0.1:5672/"
    assert cfg.host


def test_example_config_loads() -> None:
    cfg = load_config(Path(__file__).parents[2] / "config" / "aovs.toml")
    assert cfg.ovs.physical_bridges == {"physnet1": "br-phys"}


def test_file_values(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            """
host = "compute-7"
[ovs]
bridge_mappings = ["physnet1:br-eth1", "physnet2:br-eth2"]
local_ip = "192.0.2.10"
ovsdb_connection = "unix:/tmp/x/db.sock"
[agent]
tunnel_types = ["vxlan", "gre"]
l2_population = true
[securitygroup]
firewall_driver = "noop"
""",
        )
    )
    assert cfg.host == "compute-7"
    assert cfg.ovs.physical_bridges == {"physnet1": "br-eth1", "physnet2": "br-eth2"}
    assert cfg.agent.tunnel_types == ("vxlan", "gre")
    assert cfg.ovs.rundir == Path("/tmp/x")
    assert cfg.ovs.mgmt_socket("br-int") == Path("/tmp/x/br-int.mgmt")
    assert cfg.securitygroup.firewall_driver == "noop"


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[ovs]\nintegration_bridge = "br-file"\n')
    monkeypatch.setenv("AOVS_OVS__INTEGRATION_BRIDGE", "br-env")
    monkeypatch.setenv("AOVS_AGENT__REPORT_INTERVAL", "5")
    monkeypatch.setenv("AOVS_OVS__BRIDGE_MAPPINGS", '["physnet9:br-nine"]')
    cfg = load_config(path)
    assert cfg.ovs.integration_bridge == "br-env"
    assert cfg.agent.report_interval == 5
    assert cfg.ovs.physical_bridges == {"physnet9": "br-nine"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[ovs]\nbridge_mappings = ['physnet1']\n", "[ovs] bridge_mappings"),
        ("[ovs]\ndatapath_type = 'kernel'\n", "[ovs] datapath_type"),
        ("[ovs]\nof_connection = 'ssl:1.2.3.4:6653'\n", "[ovs] of_connection"),
        ("[ovs]\nlocal_ip = 'not-an-ip'\n", "[ovs] local_ip"),
        ("[ovs]\nno_such_option = 1\n", "[ovs] no_such_option: unknown option"),
        ("[agent]\ntunnel_types = ['vxlan']\n", "local_ip is required"),
        ("[agent]\nreport_interval = -1\n", "[agent] report_interval"),
        ("transport_url = 'http://x'\n", "transport_url"),
        ("[ovs\n", "not valid TOML"),
    ],
)
def test_bad_values_fail_with_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert str(tmp_path) in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_error_names_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AOVS_OVS__LOCAL_IP", "bad")
    with pytest.raises(ConfigError, match=r"\[ovs\] local_ip \(from AOVS_OVS__LOCAL_IP\)"):
        load_config(write(tmp_path, ""))


def test_check_config_prints_ovsdb_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from aovs.cli import main

    path = write(tmp_path, '[ovs]\novsdb_connection = "unix:/run/x/db.sock"\n')
    assert main(["check-config", "--config", str(path), "--print", "ovsdb_socket"]) == 0
    assert capsys.readouterr().out.strip() == "/run/x/db.sock"
    assert main(["check-config", "--config", str(write(tmp_path, "[ovs]\nbad = 1\n"))]) == 2
