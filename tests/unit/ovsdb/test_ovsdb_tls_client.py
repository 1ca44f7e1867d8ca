"""``[ovs] ovsdb_connection`` forms, and ``ssl:`` with neutron's three files: each bad file is ONE
line naming its option (never key material), a TLS failure at connect is one log line then
retries with backoff, and a rotated certificate is used by the next session.

The server is the fake ovsdb-server of ``ovsdb_fake`` behind an in-process TLS listener; the
real ovsdb-server over ``pssl:`` is in ``tests/integration/test_ovsdb_tls.py``."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ovsdb_fake import FakeOVSDB
from tls_pki import Pair, encrypt_key, make_ca, make_leaf

from aovs.ovsdb import Backoff, ConnectionLost, OVSDBClient, TLSConfigError
from aovs.ovsdb.connection import Target
from aovs.ovsdb.tls import TLSFiles, describe_tls_error

COLUMNS = {"Interface": ["name", "ofport", "external_ids"]}


# -- the connection string -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "address", "port"),
    [
        ("unix:/var/run/openvswitch/db.sock", "unix", "/var/run/openvswitch/db.sock", 0),
        ("tcp:127.0.0.1:6640", "tcp", "127.0.0.1", 6640),
        ("ssl:192.0.2.10:6641", "ssl", "192.0.2.10", 6641),
        ("tcp:[::1]:6640", "tcp", "::1", 6640),
        ("ssl:[2001:db8::7]:16640", "ssl", "2001:db8::7", 16640),
    ],
)
def test_connection_forms(text: str, kind: str, address: str, port: int) -> None:
    target = Target.parse(text)
    assert (target.kind, target.address, target.port) == (kind, address, port)
    assert str(target) == text
    assert target.secure is (kind == "ssl")


@pytest.mark.parametrize(
    "text",
    ["tcp:::1:6640", "tcp:127.0.0.1", "ssl:127.0.0.1:0", "ssl:127.0.0.1:70000",
     "tcp:ovsdb.example.com:6640", "ptcp:6640", "unix:", "6640", "ssl:[::1]"],
)  # fmt: skip
def test_bad_connections_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected unix:PATH, tcp:IP:PORT or ssl:IP:PORT"):
        Target.parse(text)


# -- the files -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Pair  # signs the server's certificate: the client's ssl_ca_cert_file
    client_ca: Pair  # signs the clients' certificates: what the server trusts
    server: Pair
    client: Pair
    stranger: Pair  # a client certificate from a CA the server does not trust

    def files(self, client: Pair | None = None, ca: Path | None = None) -> dict[str, Path]:
        client = client or self.client
        return {"ssl_key_file": client.key, "ssl_cert_file": client.cert,
                "ssl_ca_cert_file": ca or self.ca.cert}  # fmt: skip


@pytest.fixture(scope="module")
def pki() -> Iterator[Pki]:
    directory = Path(tempfile.mkdtemp(prefix="aovs-pki-", dir="/tmp"))
    try:
        ca, client_ca = make_ca(directory, "server-ca"), make_ca(directory, "client-ca")
        other_ca = make_ca(directory, "other-ca")
        yield Pki(
            directory, ca, client_ca,
            make_leaf(directory, ca, "ovsdb-server"),
            make_leaf(directory, client_ca, "agent"),
            make_leaf(directory, other_ca, "stranger"),
        )  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_ssl_needs_all_three_files_and_other_forms_ignore_them(pki: Pki) -> None:
    files = pki.files()
    for missing in files:
        given = {**files, missing: None}
        with pytest.raises(TLSConfigError, match=rf"^\[ovs\] {missing}: required with "
                           r"ovsdb_connection ssl:127.0.0.1:6640$"):  # fmt: skip
            OVSDBClient("ssl:127.0.0.1:6640", **given)
    nowhere = Path("/nonexistent/key.pem")
    OVSDBClient("unix:/tmp/db.sock", ssl_key_file=nowhere)  # neutron: unused, not checked
    OVSDBClient("tcp:127.0.0.1:6640", ssl_key_file=nowhere)


def _bad_file_cases(pki: Pki) -> list[tuple[dict[str, Path], str, str]]:
    d = pki.directory
    not_pem = d / "not-pem.txt"
    not_pem.write_text("hello\n")
    encrypted = encrypt_key(pki.client.key, d / "encrypted-key.pem")
    return [
        ({"ssl_key_file": d / "missing.pem"}, "ssl_key_file", "not found"),
        ({"ssl_cert_file": d}, "ssl_cert_file", "is a directory"),
        ({"ssl_ca_cert_file": not_pem}, "ssl_ca_cert_file", "does not hold a PEM CA certificate"),
        ({"ssl_key_file": pki.client.cert}, "ssl_key_file", "does not hold a PEM private key"),
        ({"ssl_cert_file": pki.client.key}, "ssl_cert_file", "does not hold a PEM certificate"),
        ({"ssl_key_file": pki.server.key}, "ssl_key_file", "is not the key of [ovs] ssl_cert_file"),
        ({"ssl_key_file": encrypted}, "ssl_key_file", "the private key is encrypted"),
    ]


def test_each_bad_file_is_one_line_naming_its_option(pki: Pki) -> None:
    key_material = pki.client.key.read_text().splitlines()[1]
    for change, option, says in _bad_file_cases(pki):
        with pytest.raises(TLSConfigError) as caught:
            OVSDBClient("ssl:127.0.0.1:6640", **{**pki.files(), **change})
        message = str(caught.value)
        assert message.startswith(f"[ovs] {option} "), message
        assert says in message
        assert "\n" not in message
        assert key_material not in message and "BEGIN" not in message


def test_a_tls_failure_is_described_in_one_line(pki: Pki) -> None:
    files = TLSFiles(pki.client.key, pki.client.cert, pki.ca.cert)
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "unable to get local issuer certificate"
    assert describe_tls_error(untrusted, files) == (
        "TLS: the server's certificate is not trusted (unable to get local issuer certificate; "
        f"[ovs] ssl_ca_cert_file {pki.ca.cert})"
    )
    refused = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    refused.reason = "TLSV1_ALERT_UNKNOWN_CA"
    assert describe_tls_error(refused, files) == (
        f"TLS: the server refused our certificate ([ovs] ssl_cert_file {pki.client.cert}; "
        "tlsv1 alert unknown ca)"
    )
    assert describe_tls_error(ConnectionResetError(), files) is None


# -- against a TLS listener ----------------------------------------------------------------


@dataclass
class TlsServer:
    fake: FakeOVSDB
    port: int
    peers: list[str]  # the client certificates' common names, one per session


def _server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    context.load_verify_locations(pki.client_ca.cert)
    context.verify_mode = ssl.CERT_REQUIRED  # as ovsdb-server: mutual TLS
    return context


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[TlsServer]:
    directory = Path(tempfile.mkdtemp(prefix="aovs-fk-", dir="/tmp"))
    fake = FakeOVSDB(directory / "unused.sock")
    peers: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cert = writer.get_extra_info("peercert") or {}
        peers.extend(value for rdn in cert.get("subject", ()) for key, value in rdn
                     if key == "commonName")  # fmt: skip
        await fake._serve(reader, writer)

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=_server_context(pki))
    try:
        yield TlsServer(fake, server.sockets[0].getsockname()[1], peers)
    finally:
        await fake.stop()
        server.close()
        await server.wait_closed()
        shutil.rmtree(directory, ignore_errors=True)


def _client(server: TlsServer, files: dict[str, Path]) -> OVSDBClient:
    return OVSDBClient(f"ssl:127.0.0.1:{server.port}", request_timeout=2.0,
                       backoff=Backoff(0.02, 0.05), **files)  # fmt: skip


async def test_mutual_tls_session_monitors(pki: Pki, tls_server: TlsServer) -> None:
    tls_server.fake.rows["u1"] = {"name": "tap1", "ofport": 3}
    client = _client(tls_server, pki.files())
    async with client:
        monitor = await client.monitor(COLUMNS)
        assert [row["name"] for row in monitor.rows("Interface").values()] == ["tap1"]
    assert tls_server.peers == ["agent"]


@pytest.mark.parametrize(
    ("case", "says", "option"),
    [
        ("wrong CA", "the server's certificate is not trusted", "ssl_ca_cert_file"),
        # the alert is read, or lost to the server's reset: the same line, the detail aside
        ("refused certificate", "the server refused our certificate (", "ssl_cert_file"),
    ],
)
async def test_tls_failure_is_one_warning_then_quiet_retries(
    pki: Pki, tls_server: TlsServer, caplog: pytest.LogCaptureFixture, case: str, says: str,
    option: str,
) -> None:  # fmt: skip
    files = pki.files(ca=pki.client_ca.cert) if case == "wrong CA" else pki.files(pki.stranger)
    caplog.set_level(logging.DEBUG, logger="aovs.ovsdb")
    client = _client(tls_server, files)
    try:
        with pytest.raises(ConnectionLost, match=re.escape(says)):
            await client.start(timeout=0.6)
    finally:
        await client.close()
    failures = [r for r in caplog.records if r.name == "aovs.ovsdb.client" and says in r.message]
    assert len(failures) >= 3, "it kept retrying"
    assert [r.levelno for r in failures].count(logging.WARNING) == 1
    warning = next(r.message for r in failures if r.levelno == logging.WARNING)
    assert f"[ovs] {option} " in warning and "\n" not in warning
    assert tls_server.fake.sessions == 0


async def test_rotated_certificate_is_used_by_the_next_session(
    pki: Pki, tls_server: TlsServer, tmp_path: Path
) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    shutil.copy(pki.client.key, key)
    shutil.copy(pki.client.cert, cert)
    client = _client(tls_server, pki.files(Pair(key, cert)))
    async with client:
        await client.monitor(COLUMNS)
        renewed = make_leaf(tmp_path, pki.client_ca, "agent-renewed")
        shutil.copy(renewed.key, key)  # the operator's rotation: both files replaced
        shutil.copy(renewed.cert, cert)
        client.reset("test: reconnect")
        await tls_server.fake.wait_session(2)
    assert tls_server.peers == ["agent", "agent-renewed"]
