"""load_driver: built-ins, third-party entry points (tests/plugins), clear errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from fw_scenarios import make_port

from aovs.firewall import (
    ENTRY_POINT_GROUP,
    FirewallDriver,
    FirewallDriverError,
    IncrementalFirewallDriver,
    SecurityGroupState,
    available_drivers,
    load_driver,
)
from aovs.firewall.noop import NoopFirewall
from aovs.firewall.openvswitch import OVSFirewall

PLUGIN = Path(__file__).parents[2] / "plugins" / "aovs-example-firewall"


def install_dist_info(site: Path, name: str, version: str, entry_points: dict[str, str]) -> None:
    """What pip leaves behind that importlib.metadata reads: METADATA + entry_points.txt."""
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    )
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


@pytest.fixture
def example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Install tests/plugins/aovs-example-firewall (its own pyproject's entry points)."""
    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    install_dist_info(
        tmp_path, project["name"], project["version"],
        project["entry-points"][ENTRY_POINT_GROUP],
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(PLUGIN / "src"))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "quarantine"


def test_builtin_drivers() -> None:
    assert isinstance(load_driver("noop"), NoopFirewall)
    assert isinstance(load_driver("openvswitch"), OVSFirewall)
    for name in ("noop", "openvswitch"):
        driver = load_driver(name)
        assert driver.name == name
        assert isinstance(driver, IncrementalFirewallDriver)


def test_third_party_driver_selected_by_name(example_plugin: str) -> None:
    assert example_plugin in available_drivers()
    driver = load_driver(example_plugin)
    assert type(driver).__module__ == "aovs_example_firewall"
    assert driver.name == "quarantine"
    assert isinstance(driver, FirewallDriver)
    assert not isinstance(driver, IncrementalFirewallDriver)  # the optional part is optional
    flows = driver.port_flows(make_port(1, ()), SecurityGroupState({}))
    assert {f.table for f in flows} == {60} and len(flows) == 6


def test_unknown_driver_names_what_is_available(example_plugin: str) -> None:
    with pytest.raises(FirewallDriverError) as info:
        load_driver("iptables_hybrid")
    message = str(info.value)
    assert "unknown firewall driver 'iptables_hybrid'" in message
    assert "noop, openvswitch, quarantine" in message


def test_broken_or_wrong_plugins_are_clear_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_dist_info(
        tmp_path, "aovs-broken", "1.0",
        {"broken": "aovs_no_such_module:Driver", "wrong": "aovs.firewall.base:port_owner"},
    )  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FirewallDriverError, match="'broken' failed to load: No module named"):
        load_driver("broken")
    with pytest.raises(FirewallDriverError, match="'wrong'"):
        load_driver("wrong")
