"""The config arguments of ``aovs agent``, ``check-config``, ``status`` and ``cleanup``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aovs.cli import main
from aovs.config import AgentConfig

ROOT = Path(__file__).parents[2]
NEUTRON_CONF = ROOT / "config" / "neutron.conf"
OVS_INI = ROOT / "config" / "openvswitch_agent.ini"
SECRET = "hunter2"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("AOVS_"):
            monkeypatch.delenv(name)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers  # `aovs agent` configures logging on the captured stderr
    root.setLevel(level)


def check_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["check-config", *argv, "--print", "json"]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_check_config_reads_neutrons_files(capsys: pytest.CaptureFixture[str]) -> None:
    data = check_json(capsys, "--config-file", str(NEUTRON_CONF), "--config-file", str(OVS_INI))
    assert data["ovs"]["bridge_mappings"] == ["physnet1:br-phys"]
    assert data["agent"]["state_path"] == "/var/lib/neutron/aovs"
    assert data["transport_url"] == "rabbit://guest:***@127.0.0.1:5672/"  # never the password


def test_command_line_order_is_the_override_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "first.conf"
    first.write_text("[ovs]\nintegration_bridge = br-first\ntunnel_bridge = br-tun-first\n")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "a.conf").write_text("[ovs]\nintegration_bridge = br-dir\n")
    last = tmp_path / "last.conf"
    last.write_text("[ovs]\ntunnel_bridge = br-tun-last\n")
    data = check_json(capsys, "--config-file", str(first), "--config-dir", str(tmp_path / "conf.d"),
                      "--config-file", str(last))  # fmt: skip
    assert data["ovs"]["integration_bridge"] == "br-dir"
    assert data["ovs"]["tunnel_bridge"] == "br-tun-last"
    data = check_json(capsys, "--config-file", str(last), "--config-dir", str(tmp_path / "conf.d"),
                      "--config-file", str(first))  # fmt: skip
    assert data["ovs"]["integration_bridge"] == "br-first"
    assert data["ovs"]["tunnel_bridge"] == "br-tun-first"


def test_print_ovsdb_socket_with_ini(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ovs.ini"
    path.write_text("[ovs]\novsdb_connection = unix:/run/x/db.sock\n[DEFAULT]\ndebug = no\n"
                    "core_plugin = ml2\n")  # fmt: skip
    assert main(["check-config", "--config-file", str(path), "--print", "ovsdb_socket"]) == 0
    out, err = capsys.readouterr()
    assert out == "/run/x/db.sock\n"  # stdout stays parseable: the note goes to stderr
    assert err == "aovs check-config: ignored options: [DEFAULT] core_plugin\n"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--config-file", "{tmp}/bad.ini"], "aovs: config file {tmp}/bad.ini: [ovs] "
         "bridge_mappings: 'physnet1' is not 'physnet:bridge'\n"),
        (["--config-file", "{tmp}/missing.conf"], "aovs: config file {tmp}/missing.conf: not "
         "found\n"),
        (["--config-dir", "{tmp}/missing.d"], "aovs: config dir {tmp}/missing.d: not found\n"),
        (["--config", "{tmp}/bad.ini"], "aovs: config file {tmp}/bad.ini: not valid TOML: "),
        (["--config", "{tmp}/x.toml", "--config-file", "{tmp}/bad.ini"], "aovs: --config (TOML) "
         "cannot be combined with --config-file/--config-dir\n"),
    ],
)  # fmt: skip
def test_bad_configuration_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], expected: str
) -> None:
    (tmp_path / "bad.ini").write_text("[ovs]\nbridge_mappings = physnet1\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    for command in (["check-config"], ["agent"], ["cleanup", "--dry-run"], ["status"]):
        assert main([*command, *argv]) == 2, command
        err = capsys.readouterr().err
        assert err.startswith(expected.format(tmp=tmp_path)), command
        assert err.count("\n") == 1


def test_agent_logs_the_ignored_options_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import aovs.agent.agent

    started: list[AgentConfig] = []

    def fake_run_agent(cfg: AgentConfig, reread: Callable[[], AgentConfig]) -> int:
        started.append(cfg)
        assert reread() == cfg  # SIGHUP reads the same files again
        logging.getLogger("aovs.agent").info("agent would start")
        return 0

    monkeypatch.setattr(aovs.agent.agent, "run_agent", fake_run_agent)
    neutron = tmp_path / "neutron.conf"
    neutron.write_text(f"[DEFAULT]\ntransport_url = rabbit://u:{SECRET}@h:5672/\n"
                       f"auth_strategy = keystone\n[database]\nconnection = mysql://n:{SECRET}@db/n\n"
                       f"[keystone_authtoken]\npassword = {SECRET}\n")  # fmt: skip
    assert main(["agent", "--config-file", str(neutron), "--config-file", str(OVS_INI)]) == 0
    assert len(started) == 1
    assert started[0].ovs.physical_bridges == {"physnet1": "br-phys"}
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "ignored options" in line]
    assert len(lines) == 1
    assert lines[0].endswith(
        "INFO aovs.config ignored options: [DEFAULT] auth_strategy, [database] connection, "
        "[keystone_authtoken] password"
    )
    assert "agent would start" in err
    assert SECRET not in err


def test_status_finds_the_socket_from_the_ini_state_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "neutron.conf"
    conf.write_text(f"[DEFAULT]\nstate_path = {tmp_path}\n")
    assert main(["status", "--config-file", str(conf), "--health", "--timeout", "0.5"]) == 2
    assert str(tmp_path / "aovs" / "aovs.sock") in capsys.readouterr().err


def test_an_unreachable_ovsdb_is_one_line_and_exit_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import aovs.agent.agent
    from aovs.ovsdb.errors import ConnectionLost

    def unreachable(cfg: AgentConfig, reread: Callable[[], AgentConfig]) -> int:
        raise ConnectionLost("unix:/nowhere/db.sock: not connected after 30.0s")

    monkeypatch.setattr(aovs.agent.agent, "run_agent", unreachable)
    assert main(["agent", "--config-file", str(OVS_INI)]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("aovs: OVSDB: unix:/nowhere/db.sock") and "\n" not in err
