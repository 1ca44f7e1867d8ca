"""neutron's ``[ovs]`` OVSDB and OpenFlow connection options as aovs reads them from INI files:
``ovsdb_connection`` (unix/tcp/ssl, IPv6 in brackets), the three ``ssl_*`` files (required with
``ssl:``, checked as files: one line naming file, section and option), ``ovsdb_timeout``,
``of_connect_timeout``, ``of_inactivity_probe``; ``of_listen_*`` accepted and ignored."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tls_pki import make_ca, make_leaf

from aovs.config import ConfigError, IniFiles, read_config


@pytest.fixture(autouse=True)
def _no_aovs_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("AOVS_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture(scope="module")
def pem() -> Iterator[dict[str, Path]]:
    directory = Path(tempfile.mkdtemp(prefix="aovs-pem-", dir="/tmp"))
    try:
        ca = make_ca(directory, "ca")
        leaf = make_leaf(directory, ca, "agent")
        yield {"ssl_key_file": leaf.key, "ssl_cert_file": leaf.cert, "ssl_ca_cert_file": ca.cert}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _ini(tmp_path: Path, body: str) -> IniFiles:
    path = tmp_path / "openvswitch_agent.ini"
    path.write_text(body)
    return IniFiles.of(path)


def _ssl_lines(files: dict[str, Path]) -> str:
    return "".join(f"{option} = {path}\n" for option, path in files.items())


def test_ssl_connection_with_its_files_and_the_timeouts(
    tmp_path: Path, pem: dict[str, Path]
) -> None:
    loaded = read_config(_ini(tmp_path, "[ovs]\novsdb_connection = ssl:[2001:db8::1]:6640\n"
                              + _ssl_lines(pem) + "ovsdb_timeout = 5\nof_connect_timeout = 12\n"
                              "of_inactivity_probe = 0\nof_listen_address = 127.0.0.1\n"
                              "of_listen_port = 6633\n"))  # fmt: skip
    ovs = loaded.config.ovs
    assert ovs.ovsdb_connection == "ssl:[2001:db8::1]:6640"
    assert (ovs.ssl_key_file, ovs.ssl_cert_file, ovs.ssl_ca_cert_file) == tuple(pem.values())
    assert (ovs.ovsdb_timeout, ovs.of_connect_timeout, ovs.of_inactivity_probe) == (5, 12, 0)
    assert ovs.ovsdb_client_options == {"request_timeout": 5, **pem}
    assert ovs.openflow_channel_options == {"request_timeout": 10, "connect_timeout": 12,
                                            "inactivity_probe": 0}  # fmt: skip
    # controller mode only: accepted, listed as ignored, not flagged as a mistake
    assert loaded.ignored == ("[ovs] of_listen_address", "[ovs] of_listen_port")
    assert not loaded.hinted


def test_defaults_are_the_secure_ones() -> None:
    ovs = read_config(IniFiles.of()).config.ovs
    assert ovs.ovsdb_connection.startswith("unix:")
    assert (ovs.ssl_key_file, ovs.ssl_cert_file, ovs.ssl_ca_cert_file) == (None, None, None)
    assert (ovs.ovsdb_timeout, ovs.of_connect_timeout, ovs.of_inactivity_probe) == (10, 30, 10)


@pytest.mark.parametrize(
    ("change", "option", "says"),
    [
        ({"ssl_key_file": None}, "ssl_key_file", "required with an ssl: ovsdb_connection"),
        ({"ssl_cert_file": "/nonexistent/cert.pem"}, "ssl_cert_file", "not found"),
        ({"ssl_ca_cert_file": "/tmp"}, "ssl_ca_cert_file", "is a directory"),
        ({"ssl_key_file": "CERT"}, "ssl_key_file", "does not hold a PEM private key"),
        ({"ssl_ca_cert_file": "KEY"}, "ssl_ca_cert_file", "does not hold a PEM certificate"),
    ],
)
def test_a_bad_ssl_file_is_one_line_naming_file_section_and_option(
    tmp_path: Path, pem: dict[str, Path], change: dict[str, str | None], option: str, says: str
) -> None:
    swap = {"CERT": str(pem["ssl_cert_file"]), "KEY": str(pem["ssl_key_file"])}
    files = {k: swap.get(str(v), v) for k, v in {**pem, **change}.items() if v is not None}
    sources = _ini(tmp_path, "[ovs]\novsdb_connection = ssl:127.0.0.1:6640\n"
                   + _ssl_lines(files))  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        read_config(sources)
    message = str(caught.value)
    assert f"[ovs] {option}: " in message and says in message and "\n" not in message
    if option in files:
        assert message.startswith(f"config file {tmp_path / 'openvswitch_agent.ini'}: ")
    assert "BEGIN" not in message


def test_ssl_files_are_not_checked_without_ssl(tmp_path: Path) -> None:
    ovs = read_config(_ini(tmp_path, "[ovs]\novsdb_connection = tcp:127.0.0.1:6640\n"
                           "ssl_key_file = /nonexistent\n")).config.ovs  # fmt: skip
    assert ovs.ssl_key_file == Path("/nonexistent")


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("tcp:::1:6640", "an IPv6 address goes in brackets, [::1]:6640"),
        ("ssl:127.0.0.1", "is not IP:PORT"),
        ("pssl:6640", "must be 'unix:PATH', 'tcp:IP:PORT' or 'ssl:IP:PORT'"),
    ],
)
def test_bad_connections(tmp_path: Path, value: str, says: str) -> None:
    with pytest.raises(ConfigError, match=r"\[ovs\] ovsdb_connection: .*" + re.escape(says)):
        read_config(_ini(tmp_path, f"[ovs]\novsdb_connection = {value}\n"))


@pytest.mark.parametrize(
    "line",
    ["of_connect_timeout = 0", "of_inactivity_probe = -1", "ovsdb_timeout = 0",
     "of_inactivity_probe = soon"],
)  # fmt: skip
def test_bad_timeouts(tmp_path: Path, line: str) -> None:
    option = line.split(" ")[0]
    with pytest.raises(ConfigError, match=rf"\[ovs\] {option}: "):
        read_config(_ini(tmp_path, f"[ovs]\n{line}\n"))
