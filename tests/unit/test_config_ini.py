"""neutron's INI files (``--config-file`` / ``--config-dir``): oslo.config's rules, aovs' model."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from aovs.config import (
    AgentConfig,
    ConfigError,
    IniFiles,
    load_config,
    log_ignored,
    read_config,
    redact_url,
)

ROOT = Path(__file__).parents[2]
SAMPLES = IniFiles.of(ROOT / "config" / "neutron.conf", ROOT / "config" / "openvswitch_agent.ini")
SECRET = "hunter2"


def ini(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load(*files: Path, config_dir: Path | None = None) -> AgentConfig:
    return load_config(IniFiles.of(*files, config_dir=config_dir))


def error_of(*files: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(*files)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture(autouse=True)
def _no_aovs_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("AOVS_"):
            monkeypatch.delenv(name)


# -- the samples ------------------------------------------------------------------------------


def test_samples_load_cleanly() -> None:
    loaded = read_config(SAMPLES)
    assert loaded.ignored == ()
    assert loaded.files == tuple(p for _, p in SAMPLES.entries)
    cfg = loaded.config
    assert cfg.ovs.physical_bridges == {"physnet1": "br-phys"}
    assert cfg.ovs.ovsdb_connection == "unix:/var/run/openvswitch/db.sock"  # not neutron's tcp
    assert cfg.securitygroup.firewall_driver == "openvswitch"
    assert cfg.transport_url == "rabbit://guest:guest@127.0.0.1:5672/"
    assert cfg.agent.state_path == Path("/var/lib/neutron/aovs")  # $state_path/aovs
    assert cfg.agent.log_level == "INFO"
    assert cfg.agent.tunnel_types == ()


def test_samples_name_only_options_aovs_reads() -> None:
    """Every active or commented ``name = value`` line of the samples is an option aovs reads,
    except those listed as ignored, so the samples cannot drift from the loader."""
    for path in (ROOT / "config" / "neutron.conf", ROOT / "config" / "openvswitch_agent.ini"):
        section = ""
        uncommented = []
        for line in path.read_text().splitlines():
            if line.startswith("["):
                section = line
                uncommented.append(line)
            elif line.startswith("#") and " = " in line and " " not in line[1:].split(" = ")[0]:
                uncommented.append(line[1:].replace("<None>", ""))
            elif line and not line.startswith("#"):
                uncommented.append(line)
        assert section
        loaded = read_config(IniFiles.of(_write_tmp(path.name, "\n".join(uncommented) + "\n")))
        assert loaded.ignored == (), path.name


def _write_tmp(name: str, text: str) -> Path:
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="aovs-cfg-"))
    path = directory / name
    path.write_text(text)
    return path


# -- order: files, then directories, as on the command line -----------------------------------


def test_later_file_overrides_option_by_option(tmp_path: Path) -> None:
    first = ini(tmp_path, "neutron.conf", "[DEFAULT]\nhost = first\n[ovs]\n"
                "integration_bridge = br-first\ntunnel_bridge = br-tun-first\n")  # fmt: skip
    second = ini(tmp_path, "ovs.ini", "[OVS]\ntunnel_bridge = br-tun-second\n")
    cfg = load(first, second)
    assert cfg.host == "first"
    assert cfg.ovs.integration_bridge == "br-first"  # only set in the first file
    assert cfg.ovs.tunnel_bridge == "br-tun-second"  # the later file wins
    assert load(second, first).ovs.tunnel_bridge == "br-tun-first"


def test_last_assignment_in_a_file_wins_and_sections_merge(tmp_path: Path) -> None:
    path = ini(tmp_path, "a.conf", "[ovs]\nintegration_bridge = br-a\n[agent]\nl2_population = "
               "true\n[ovs]\nintegration_bridge = br-b\ntunnel_bridge = br-t\n")  # fmt: skip
    cfg = load(path)
    assert cfg.ovs.integration_bridge == "br-b"
    assert cfg.ovs.tunnel_bridge == "br-t"
    assert cfg.agent.l2_population is True


def test_config_dir_reads_sorted_conf_files_after_the_files(tmp_path: Path) -> None:
    base = ini(tmp_path, "neutron.conf", "[DEFAULT]\nhost = from-file\n[ovs]\n"
               "integration_bridge = br-file\ntunnel_bridge = br-tun-file\n")  # fmt: skip
    ini(tmp_path, "conf.d/20-late.conf", "[ovs]\nintegration_bridge = br-20\n")
    ini(tmp_path, "conf.d/10-early.conf", "[ovs]\nintegration_bridge = br-10\n"
        "tunnel_bridge = br-tun-10\n")  # fmt: skip
    ini(tmp_path, "conf.d/30-other.ini", "[ovs]\nintegration_bridge = not-read\n")
    ini(tmp_path, "conf.d/.hidden.conf", "[ovs]\nintegration_bridge = not-read\n")
    loaded = read_config(IniFiles.of(base, config_dir=tmp_path / "conf.d"))
    assert [p.name for p in loaded.files] == ["neutron.conf", "10-early.conf", "20-late.conf"]
    cfg = loaded.config
    assert cfg.host == "from-file"
    assert cfg.ovs.integration_bridge == "br-20"  # the last in sorted order
    assert cfg.ovs.tunnel_bridge == "br-tun-10"


def test_a_file_after_the_dir_overrides_it(tmp_path: Path) -> None:
    ini(tmp_path, "conf.d/10.conf", "[ovs]\nintegration_bridge = br-dir\n")
    last = ini(tmp_path, "last.conf", "[ovs]\nintegration_bridge = br-last\n")
    files = IniFiles((("dir", tmp_path / "conf.d"), ("file", last)))
    assert load_config(files).ovs.integration_bridge == "br-last"
    files = IniFiles((("file", last), ("dir", tmp_path / "conf.d")))
    assert load_config(files).ovs.integration_bridge == "br-dir"


def test_empty_config_dir_and_missing_ones(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert load_config(IniFiles((("dir", tmp_path / "empty"),))) == load_config(IniFiles(()))
    with pytest.raises(ConfigError, match=r"^config dir .*nope: not found$"):
        load_config(IniFiles((("dir", tmp_path / "nope"),)))
    with pytest.raises(ConfigError, match=r"^config file .*missing.conf: not found$"):
        load(tmp_path / "missing.conf")
    with pytest.raises(ConfigError, match="is a directory"):
        load(tmp_path / "empty")


def test_environment_overrides_the_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = ini(tmp_path, "a.ini", "[ovs]\nintegration_bridge = br-file\ntunnel_bridge = br-t\n")
    monkeypatch.setenv("AOVS_OVS__INTEGRATION_BRIDGE", "br-env")
    monkeypatch.setenv("AOVS_AGENT__REPORT_INTERVAL", "5")
    cfg = load(path)
    assert cfg.ovs.integration_bridge == "br-env"
    assert cfg.ovs.tunnel_bridge == "br-t"
    assert cfg.agent.report_interval == 5
    monkeypatch.setenv("AOVS_OVS__LOCAL_IP", "bad")
    message = error_of(path)
    assert message.startswith("configuration: [ovs] local_ip (from AOVS_OVS__LOCAL_IP): ")


def test_overrides_merge_over_the_files(tmp_path: Path) -> None:
    path = ini(tmp_path, "a.ini", "[ovs]\nintegration_bridge = br-file\ntunnel_bridge = br-t\n")
    cfg = load_config(IniFiles.of(path), ovs={"integration_bridge": "br-override"})
    assert cfg.ovs.integration_bridge == "br-override"
    assert cfg.ovs.tunnel_bridge == "br-t"


# -- values: oslo.config's syntax and types --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("YES", True), ("on", True), ("1", True),
     ("false", False), ("No", False), ("OFF", False), ("0", False)],
)  # fmt: skip
def test_booleans_as_oslo_reads_them(tmp_path: Path, text: str, expected: bool) -> None:
    path = ini(tmp_path, "a.ini", f"[agent]\nl2_population = {text}\narp_responder = {text}\n")
    cfg = load(path)
    assert cfg.agent.l2_population is expected
    assert cfg.agent.arp_responder is expected


@pytest.mark.parametrize("text", ["t", "y", "maybe", "2", ""])
def test_other_booleans_are_errors(tmp_path: Path, text: str) -> None:
    path = ini(tmp_path, "a.ini", f"[agent]\nl2_population = {text}\n")
    message = error_of(path)
    assert message == (
        f"config file {path}: [agent] l2_population: {text!r} is not a boolean "
        "(true/false, yes/no, on/off, 1/0)"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("physnet1:br-a", ("physnet1:br-a",)),
        ("physnet1:br-a, physnet2:br-b", ("physnet1:br-a", "physnet2:br-b")),
        (" physnet1:br-a ,physnet2:br-b ,", ("physnet1:br-a", "physnet2:br-b")),
        ("physnet1:br-a,\n    physnet2:br-b", ("physnet1:br-a", "physnet2:br-b")),  # continued
        ('"physnet1:br-a,physnet2:br-b"', ("physnet1:br-a", "physnet2:br-b")),  # quotes stripped
        ("", ()),
    ],
)
def test_lists_are_comma_separated(tmp_path: Path, text: str, expected: tuple[str, ...]) -> None:
    path = ini(tmp_path, "a.ini", f"[ovs]\nbridge_mappings = {text}\n")
    assert load(path).ovs.bridge_mappings == expected


def test_tunnel_types_list_and_its_errors(tmp_path: Path) -> None:
    path = ini(
        tmp_path, "a.ini", "[ovs]\nlocal_ip = 192.0.2.10\n[agent]\ntunnel_types = vxlan, gre\n"
    )
    assert load(path).agent.tunnel_types == ("vxlan", "gre")
    path = ini(
        tmp_path, "b.ini", "[ovs]\nlocal_ip = 192.0.2.10\n[agent]\ntunnel_types = vxlan,geneve\n"
    )
    assert error_of(path) == (
        f"config file {path}: [agent] tunnel_types (item 2): Input should be 'vxlan' or 'gre' "
        "(got 'geneve')"
    )


def test_ini_syntax(tmp_path: Path) -> None:
    path = ini(
        tmp_path,
        "a.conf",
        "# a comment\n; another\n[DEFAULT]\nhost: 'compute-7'\n\n[Ovs]\n"
        "integration_bridge=br-x\nbridge_mappings = physnet1:br-a,\n  physnet2:br-b\n",
    )
    cfg = load(path)
    assert cfg.host == "compute-7"
    assert cfg.ovs.integration_bridge == "br-x"
    assert cfg.ovs.bridge_mappings == ("physnet1:br-a", "physnet2:br-b")
    # an indented line continues the value, even one that looks like a comment (oslo's rule)
    continued = ini(tmp_path, "b.conf", "[ovs]\nlocal_ip = 192.0.2.1\n  # same\n")
    assert error_of(continued).startswith(
        f"config file {continued}: [ovs] local_ip: '192.0.2.1\\n# same' does not appear"
    )
    blank = ini(tmp_path, "c.conf", "[ovs]\nlocal_ip = 192.0.2.1\n\n  physnet2:br-b\n")
    assert error_of(blank) == f"config file {blank}: line 4: Unexpected continuation line"


def test_section_names_are_case_insensitive_except_default(tmp_path: Path) -> None:
    path = ini(tmp_path, "a.conf", "[default]\nhost = lower\n[SECURITYGROUP]\n"
               "firewall_driver = noop\n[OVS]\nIntegration_Bridge = br-x\n")  # fmt: skip
    loaded = read_config(IniFiles.of(path))
    assert loaded.config.securitygroup.firewall_driver == "noop"
    assert loaded.config.host != "lower"  # [default] is not [DEFAULT], as for oslo.config
    assert loaded.config.ovs.integration_bridge == "br-int"  # option names are case-sensitive
    assert loaded.ignored == ("[default] host", "[ovs] Integration_Bridge (did you mean "
                              "integration_bridge?)")  # fmt: skip


def test_neutrons_locations_and_translations(tmp_path: Path) -> None:
    neutron = ini(tmp_path, "neutron.conf", "[DEFAULT]\nrpc_response_timeout = 7\n"
                  "rpc_response_max_timeout = 70\nrpc_resources_processing_step = 20\n"
                  "debug = True\nuse_json = yes\n")  # fmt: skip
    agent = ini(tmp_path, "ovs.ini", "[agent]\nvxlan_udp_port = 8472\n")
    cfg = load(neutron, agent)
    assert cfg.ovs.vxlan_udp_port == 8472
    assert cfg.agent.rpc_response_timeout == 7
    assert cfg.agent.rpc_response_max_timeout == 70
    assert cfg.agent.rpc_resources_processing_step == 20
    assert cfg.agent.log_level == "DEBUG"
    assert cfg.agent.log_format == "json"
    explicit = ini(tmp_path, "x.ini", "[agent]\nlog_level = WARNING\nlog_format = text\n")
    cfg = load(neutron, explicit)
    assert (cfg.agent.log_level, cfg.agent.log_format) == ("WARNING", "text")
    loaded = read_config(IniFiles.of(ini(tmp_path, "y.ini", "[ovs]\nvxlan_udp_port = 1\n")))
    assert loaded.config.ovs.vxlan_udp_port == 4789
    assert loaded.ignored == ("[ovs] vxlan_udp_port (aovs reads [agent] vxlan_udp_port)",)
    assert loaded.hinted


def test_state_path_derives_from_neutrons(tmp_path: Path) -> None:
    assert load().agent.state_path == Path("/var/lib/neutron/aovs")
    neutron = ini(tmp_path, "neutron.conf", "[DEFAULT]\nstate_path = /srv/neutron\n")
    assert load(neutron).agent.state_path == Path("/srv/neutron/aovs")
    own = ini(tmp_path, "own.ini", "[agent]\nstate_path = /var/lib/aovs\n")
    assert load(neutron, own).agent.state_path == Path("/var/lib/aovs")
    relative = ini(tmp_path, "rel.ini", "[agent]\nstate_path = $state_path/elsewhere\n")
    assert load(neutron, relative).agent.state_path == Path("/srv/neutron/elsewhere")
    assert load(relative).agent.state_path == Path("/var/lib/neutron/elsewhere")


def test_substitution_as_oslo_does(tmp_path: Path) -> None:
    path = ini(
        tmp_path,
        "a.conf",
        "[DEFAULT]\nhost = compute-9\ntransport_url = rabbit://u:pa$$w\\$rd@${host}:5672/\n"
        "[ovs]\nintegration_bridge = br-$host\ntunnel_bridge = ${integration_bridge}-tun\n"
        "[securitygroup]\nfirewall_driver = ${ovs.tunnel_bridge}\n",
    )
    cfg = load(path)
    assert cfg.transport_url == "rabbit://u:pa$w$rd@compute-9:5672/"
    assert cfg.ovs.integration_bridge == "br-compute-9"
    assert cfg.ovs.tunnel_bridge == "br-compute-9-tun"
    assert cfg.securitygroup.firewall_driver == "br-compute-9-tun"
    unknown = ini(tmp_path, "b.conf", "[ovs]\nintegration_bridge = br-$nope\n")
    assert error_of(unknown) == (
        f"config file {unknown}: [ovs] integration_bridge: $nope is not an option aovs can "
        "substitute (write $$ for a literal $)"
    )
    loop = ini(tmp_path, "c.conf", "[ovs]\nintegration_bridge = $tunnel_bridge\n"
               "tunnel_bridge = $integration_bridge\n")  # fmt: skip
    assert "$-substitution loops" in error_of(loop)


def test_empty_values(tmp_path: Path) -> None:
    path = ini(tmp_path, "a.ini", "[ovs]\nlocal_ip =\nof_request_timeout =\n[agent]\n"
               "report_interval =\ntunnel_types =\nmetrics_bind =\n"
               "[securitygroup]\nfirewall_driver =\n")  # fmt: skip
    cfg = load(path)
    assert cfg.ovs.local_ip is None
    assert cfg.ovs.of_request_timeout == AgentConfig().ovs.of_request_timeout  # unset: default
    assert cfg.agent.report_interval == 30
    assert cfg.agent.tunnel_types == ()
    assert cfg.agent.metrics_bind is None
    assert cfg.securitygroup.firewall_driver == "noop"  # neutron: `firewall_driver or 'noop'`


# -- errors: one line, file + section + option, never a secret --------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[ovs]\nbridge_mappings = physnet1\n", "[ovs] bridge_mappings: 'physnet1' is not "
         "'physnet:bridge'"),
        ("[ovs]\nbridge_mappings = a:br-x, a:br-y\n", "[ovs] bridge_mappings: physical network "
         "'a' is mapped twice"),
        ("[ovs]\ndatapath_type = kernel\n", "[ovs] datapath_type: Input should be 'system', "
         "'netdev' or 'dummy' (got 'kernel')"),
        ("[ovs]\nlocal_ip = not-an-ip\n", "[ovs] local_ip: "),
        ("[ovs]\nof_request_timeout = soon\n", "[ovs] of_request_timeout: 'soon' is not a number"),
        ("[ovs]\novsdb_connection = tls:1.2.3.4:6640\n", "[ovs] ovsdb_connection: must be "),
        ("[agent]\nvxlan_udp_port = 0\n", "[agent] vxlan_udp_port: Input should be greater than "
         "or equal to 1 (got 0)"),
        ("[agent]\nreport_interval = -1\n", "[agent] report_interval: "),
        ("[agent]\ntunnel_types = vxlan\n", "[agent] tunnel_types is set, so [ovs] local_ip is "
         "required"),
        ("[DEFAULT]\nrpc_resources_processing_step = x\n", "[DEFAULT] "
         "rpc_resources_processing_step: 'x' is not an integer"),
        ("[DEFAULT]\nrpc_response_timeout = x\n", "[DEFAULT] rpc_response_timeout: 'x' is not a "
         "number"),
        ("[DEFAULT]\nhost =\n", "[DEFAULT] host: "),
        ("[ovs\n", "line 1: Invalid section (must end with ])"),
        ("[ovs]\nno equals sign here\n", "line 2: No ':' or '=' found in assignment"),
        ("[ovs]\n= x\n", "line 2: Key cannot be empty"),
        ("[ovs]\n\n  x\n", "line 3: Unexpected continuation line"),
    ],
)  # fmt: skip
def test_bad_values_name_file_section_option(tmp_path: Path, text: str, expected: str) -> None:
    ok = ini(tmp_path, "neutron.conf", "[DEFAULT]\nhost = compute-1\n")
    bad = ini(tmp_path, "plugins/ml2/openvswitch_agent.ini", text)
    message = error_of(ok, bad)
    assert message.startswith(f"config file {bad}: {expected}")


def test_several_problems_each_name_their_file(tmp_path: Path) -> None:
    first = ini(tmp_path, "a.conf", "[ovs]\nlocal_ip = nope\n")
    second = ini(tmp_path, "b.ini", "[ovs]\nbridge_mappings = physnet1\n")
    message = error_of(first, second)
    assert f"config file {first}: [ovs] local_ip: " in message
    assert f"config file {second}: [ovs] bridge_mappings: 'physnet1'" in message


@pytest.mark.parametrize(
    "text",
    [
        f"[DEFAULT]\ntransport_url = http://user:{SECRET}@host:5672/\n",
        f"[DEFAULT]\ntransport_url = rabbit://user:{SECRET}$x@host:5672/\n",
        f"transport_url = rabbit://user:{SECRET}@host/\n",
        f"[keystone_authtoken]\npassword = {SECRET}\n[ovs\n",
    ],
)
def test_errors_never_show_a_secret(tmp_path: Path, text: str) -> None:
    path = ini(tmp_path, "neutron.conf", text)
    message = error_of(path)
    assert SECRET not in message
    assert str(path) in message


# -- ignored options ---------------------------------------------------------------------------

REAL_NEUTRON_CONF = f"""[DEFAULT]
core_plugin = ml2
auth_strategy = keystone
debug = false
state_path = /var/lib/neutron
transport_url = rabbit://openstack:{SECRET}@ctl1:5672,openstack:{SECRET}@ctl2:5672/
[agent]
root_helper = sudo neutron-rootwrap /etc/neutron/rootwrap.conf
[keystone_authtoken]
password = {SECRET}
www_authenticate_uri = http://ctl:5000
[oslo_concurrency]
lock_path = $state_path/lock
[oslo_messaging_rabbit]
rabbit_quorum_queue = true
"""

REAL_OVS_INI = """[ovs]
bridge_mappings = provider:br-ex
local_ip = 10.0.0.31
of_inactivity_probe = 10
bridge_mapping = typo:br-typo
[agent]
tunnel_types = vxlan
l2_population = True
polling_interval = 2
[securitygroup]
firewall_driver = openvswitch
enable_ipset = true
"""


def test_real_files_load_and_list_what_is_ignored(tmp_path: Path) -> None:
    neutron = ini(tmp_path, "neutron.conf", REAL_NEUTRON_CONF)
    agent = ini(tmp_path, "openvswitch_agent.ini", REAL_OVS_INI)
    loaded = read_config(IniFiles.of(neutron, agent))
    cfg = loaded.config
    assert cfg.ovs.physical_bridges == {"provider": "br-ex"}
    assert cfg.agent.tunnel_types == ("vxlan",)
    assert cfg.agent.l2_population is True
    assert cfg.transport_url.endswith("@ctl2:5672/")
    assert loaded.ignored == (
        "[DEFAULT] auth_strategy",
        "[DEFAULT] core_plugin",
        "[agent] polling_interval",
        "[agent] root_helper",
        "[keystone_authtoken] password",
        "[keystone_authtoken] www_authenticate_uri",
        "[oslo_concurrency] lock_path",
        "[ovs] bridge_mapping (did you mean bridge_mappings?)",
        "[securitygroup] enable_ipset",
    )
    assert loaded.hinted


def test_ignored_options_are_logged_once_without_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    neutron = ini(tmp_path, "neutron.conf", REAL_NEUTRON_CONF)
    agent = ini(tmp_path, "openvswitch_agent.ini", REAL_OVS_INI.replace("bridge_mapping =", "#"))
    caplog.set_level(logging.DEBUG)
    loaded = read_config(IniFiles.of(neutron, agent))
    assert caplog.records == []  # reading logs nothing: the agent logs once, after setup
    log_ignored(loaded)
    assert len(caplog.records) == 1
    record = caplog.records[0]
    assert record.levelno == logging.INFO  # nothing looks like a mistake
    assert record.getMessage().startswith("ignored options: [DEFAULT] auth_strategy, ")
    assert "[keystone_authtoken] password, " in record.getMessage()
    assert SECRET not in caplog.text
    assert "neutron-rootwrap" not in caplog.text  # names only, never a value


def test_a_likely_mistake_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = ini(tmp_path, "a.ini", "[securitygroups]\nfirewall_driver = noop\n")
    loaded = read_config(IniFiles.of(path))
    assert loaded.ignored == ("[securitygroups] firewall_driver (did you mean [securitygroup]?)",)
    log_ignored(loaded)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_nothing_ignored_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log_ignored(read_config(SAMPLES))
    assert caplog.records == []


# -- INI and TOML are the same configuration --------------------------------------------------


def test_ini_and_equivalent_toml_are_equal(tmp_path: Path) -> None:
    neutron = ini(tmp_path, "neutron.conf", f"""[DEFAULT]
host = compute-7
transport_url = rabbit://u:{SECRET}@h1:5672,u:{SECRET}@h2:5672/vh
state_path = /srv/neutron
rpc_response_timeout = 30
rpc_response_max_timeout = 300
rpc_resources_processing_step = 50
debug = true
""")  # fmt: skip
    agent = ini(tmp_path, "openvswitch_agent.ini", """[ovs]
integration_bridge = br-int2
bridge_mappings = physnet1:br-eth1,physnet2:br-eth2
local_ip = 192.0.2.10
datapath_type = netdev
ovsdb_connection = tcp:127.0.0.1:6640
of_request_timeout = 20
port_metadata_delay = 1.5
[agent]
tunnel_types = vxlan, gre
vxlan_udp_port = 8472
l2_population = yes
arp_responder = on
report_interval = 15
metrics_bind = 127.0.0.1:9105
[securitygroup]
firewall_driver = noop
enable_security_group = false
""")  # fmt: skip
    toml = tmp_path / "aovs.toml"
    toml.write_text(f"""host = "compute-7"
transport_url = "rabbit://u:{SECRET}@h1:5672,u:{SECRET}@h2:5672/vh"
[ovs]
integration_bridge = "br-int2"
bridge_mappings = ["physnet1:br-eth1", "physnet2:br-eth2"]
local_ip = "192.0.2.10"
datapath_type = "netdev"
ovsdb_connection = "tcp:127.0.0.1:6640"
of_request_timeout = 20
port_metadata_delay = 1.5
vxlan_udp_port = 8472
[agent]
tunnel_types = ["vxlan", "gre"]
l2_population = true
arp_responder = true
report_interval = 15
metrics_bind = "127.0.0.1:9105"
state_path = "/srv/neutron/aovs"
rpc_response_timeout = 30
rpc_response_max_timeout = 300
rpc_resources_processing_step = 50
log_level = "DEBUG"
[securitygroup]
firewall_driver = "noop"
enable_security_group = false
""")  # fmt: skip
    from_ini = load(neutron, agent)
    from_toml = load_config(toml)
    assert from_ini == from_toml
    assert from_ini.model_dump() == from_toml.model_dump()
    assert from_ini != AgentConfig()  # the files really changed something


def test_ini_and_toml_defaults_differ_only_in_state_path() -> None:
    from_ini = load_config(IniFiles(())).model_dump()
    defaults = AgentConfig().model_dump()
    assert from_ini["agent"].pop("state_path") == Path("/var/lib/neutron/aovs")
    assert defaults["agent"].pop("state_path") == Path("/var/lib/aovs")
    assert from_ini == defaults


# -- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rabbit://u:p@h:5672/", "rabbit://u:***@h:5672/"),
        ("rabbit://u:p@h1:5672,v:q@h2:5672/vh?ssl=1", "rabbit://u:***@h1:5672,v:***@h2:5672/vh?ssl=1"),
        ("rabbit://u:p/w@h:5672//", "rabbit://u:***@h:5672//"),
        ("rabbit://h:5672/", "rabbit://h:5672/"),
        ("rabbit://", "rabbit://"),
    ],
)  # fmt: skip
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_the_demo_way_samples_then_a_local_file(tmp_path: Path) -> None:
    """`make demo`: the samples, then a third file with the sandbox's values."""
    local = ini(tmp_path, "demo.conf", "[DEFAULT]\nhost = demo-compute\n"
                "transport_url = rabbit://guest:guest@127.0.0.1:5672/aovs-demo\n"
                f"[ovs]\novsdb_connection = unix:{tmp_path}/db.sock\ndatapath_type = dummy\n"
                f"[agent]\nstate_path = {tmp_path}/state\nreport_interval = 0\n")  # fmt: skip
    loaded = read_config(IniFiles((*SAMPLES.entries, ("file", local))))
    assert loaded.ignored == ()
    cfg = loaded.config
    assert cfg.host == "demo-compute"
    assert cfg.ovs.ovsdb_connection == f"unix:{tmp_path}/db.sock"
    assert cfg.ovs.rundir == tmp_path
    assert cfg.ovs.datapath_type == "dummy"
    assert cfg.ovs.physical_bridges == {"physnet1": "br-phys"}  # from the sample
    assert cfg.securitygroup.firewall_driver == "openvswitch"  # from the sample
    assert cfg.agent.state_path == tmp_path / "state"
    assert cfg.agent.report_interval == 0
