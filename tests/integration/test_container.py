"""The container pieces that can be tested without a Docker engine: the compose file, the
configuration it renders, the Dockerfile's inputs and the agent entrypoint's checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aovs.config import load_config
from aovs.sandbox import OVSSandbox

pytestmark = pytest.mark.integration
ROOT = Path(__file__).parents[2]
ENTRYPOINT = ROOT / "docker" / "agent-entrypoint"


def _compose_config() -> dict[str, object]:
    out = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    loaded = yaml.safe_load(out.stdout)
    assert isinstance(loaded, dict)
    return loaded


def _mounts(service: dict[str, list[object]]) -> dict[str, str]:
    """target -> source, from the short ("src:dst[:mode]") or the long volume syntax."""
    mounts = {}
    for volume in service["volumes"]:
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            assert isinstance(volume, dict)
            source, target = volume["source"], volume["target"]
        mounts[target] = source
    return mounts


def test_compose_file_is_valid_and_wires_one_hypervisor() -> None:
    config = _compose_config()
    services = config["services"]
    assert isinstance(services, dict)
    assert set(services) == {"rabbitmq", "openvswitch", "neutron-server", "agent"}
    agent = services["agent"]
    mounts = _mounts(agent)
    assert mounts["/var/run/openvswitch"] == "ovs-run"  # db.sock and the .mgmt sockets
    assert mounts["/var/lib/aovs"] == "aovs-state"  # the snapshot survives the container
    ovs_mounts = _mounts(services["openvswitch"])
    assert ovs_mounts["/var/run/openvswitch"] == "ovs-run"
    topology = next(iter(_mounts(services["neutron-server"]).values()))
    assert Path(topology).exists(), f"compose mounts {topology}, which is not in the repo"


def test_compose_environment_renders_a_valid_agent_config(monkeypatch: pytest.MonkeyPatch) -> None:
    agent = _compose_config()["services"]["agent"]  # type: ignore[index]
    for name in list(os.environ):
        if name.startswith("AOVS_"):
            monkeypatch.delenv(name)
    for name, value in agent["environment"].items():
        monkeypatch.setenv(name, value)
    cfg = load_config(ROOT / "config" / "aovs.toml")
    assert cfg.host == "compute-1"
    assert cfg.transport_url == "rabbit://guest:guest@rabbitmq:5672/"
    assert cfg.ovs.datapath_type == "netdev"
    assert cfg.ovs.physical_bridges == {"physnet1": "br-phys"}
    assert cfg.ovs.mgmt_socket("br-int") == Path("/var/run/openvswitch/br-int.mgmt")


def test_dockerfile_copies_only_what_exists() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        match = re.match(r"COPY (?!--from)(.+) \S+$", line.strip())
        if match:
            for source in match.group(1).split():
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"


def _run_entrypoint(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # A stand-in `aovs` that records the final exec but runs the real check-config.
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir(exist_ok=True)
    shim = shim_dir / "aovs"
    shim.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = check-config ]; then exec {sys.executable} -m aovs.cli "$@"; fi\n'
        f'echo "exec aovs $*" > {tmp_path}/exec.txt\n'
    )
    shim.chmod(0o755)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AOVS_")}
    full_env.update(env)
    full_env["PATH"] = f"{shim_dir}:{full_env['PATH']}"
    return subprocess.run(
        ["sh", str(ENTRYPOINT)], env=full_env, capture_output=True, text=True, timeout=30
    )


def test_entrypoint_waits_for_ovs_then_fails_clearly(tmp_path: Path) -> None:
    result = _run_entrypoint(
        {
            "AOVS_CONFIG": str(ROOT / "config" / "aovs.toml"),
            "AOVS_OVS__OVSDB_CONNECTION": f"unix:{tmp_path}/none/db.sock",
            "AOVS_WAIT_FOR_OVS_SECONDS": "1",
        },
        tmp_path,
    )
    assert result.returncode == 3
    assert "no OVSDB socket" in result.stderr and "mount OVS's run dir" in result.stderr


def test_entrypoint_rejects_a_bad_config(tmp_path: Path) -> None:
    result = _run_entrypoint(
        {"AOVS_CONFIG": str(ROOT / "config" / "aovs.toml"), "AOVS_OVS__LOCAL_IP": "nope"},
        tmp_path,
    )
    assert result.returncode == 2
    assert "[ovs] local_ip (from AOVS_OVS__LOCAL_IP)" in result.stderr


def test_entrypoint_starts_the_agent_when_ovs_is_there(
    ovs_sandbox: OVSSandbox, tmp_path: Path
) -> None:
    result = _run_entrypoint(
        {
            "AOVS_CONFIG": str(ROOT / "config" / "aovs.toml"),
            "AOVS_OVS__OVSDB_CONNECTION": ovs_sandbox.ovsdb_connection,
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    recorded = (tmp_path / "exec.txt").read_text().strip()
    assert recorded == f"exec aovs agent --config {ROOT / 'config' / 'aovs.toml'}"


def test_entrypoint_takes_neutrons_config_files(ovs_sandbox: OVSSandbox, tmp_path: Path) -> None:
    """AOVS_CONFIG_ARGS: the agent started as neutron's is, from its INI files."""
    args = (f"--config-file {ROOT / 'config' / 'neutron.conf'} "
            f"--config-file {ROOT / 'config' / 'openvswitch_agent.ini'}")  # fmt: skip
    env = {"AOVS_CONFIG_ARGS": args, "AOVS_OVS__OVSDB_CONNECTION": ovs_sandbox.ovsdb_connection}
    result = _run_entrypoint(env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "exec.txt").read_text().strip() == f"exec aovs agent {args}"
    bad = _run_entrypoint({**env, "AOVS_OVS__LOCAL_IP": "nope"}, tmp_path)
    assert bad.returncode == 2 and "local_ip" in bad.stderr
