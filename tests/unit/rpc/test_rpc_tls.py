"""The TLS client context made from ``[oslo_messaging_rabbit]``: verification on by default,
one-line errors naming the option and the file (never a file's content)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from aovs.rpc.options import RabbitOptions
from aovs.rpc.tls import TlsConfigError, client_context, describe_tls_error
from aovs.testing.rabbit_nodes import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_no_tls_no_context() -> None:
    assert client_context(RabbitOptions()) is None


def test_the_broker_is_verified_by_default(pki: Pki) -> None:
    context = client_context(RabbitOptions(ssl=True, ssl_ca_file=str(pki.ca)))
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 1  # only the given CA


def test_without_a_ca_file_the_system_cas_verify() -> None:
    context = client_context(RabbitOptions(ssl=True))
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_hostname_check_can_be_turned_off_not_verification(pki: Pki) -> None:
    options = RabbitOptions(
        ssl=True, ssl_ca_file=str(pki.ca), ssl_enforce_hostname_verification=False
    )
    context = client_context(options)
    assert context is not None
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_client_certificate_and_pinned_version(pki: Pki) -> None:
    options = RabbitOptions(
        ssl=True,
        ssl_ca_file=str(pki.ca),
        ssl_cert_file=str(pki.client_cert),
        ssl_key_file=str(pki.client_key),
        ssl_version="TLSv1_2",
    )
    context = client_context(options)
    assert context is not None
    assert context.minimum_version == context.maximum_version == ssl.TLSVersion.TLSv1_2


def test_unusable_files_are_one_line_naming_the_option(pki: Pki, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text(
        "-----BEGIN CERTIFICATE-----\nS3CRETKEYMATERIAL\n-----END CERTIFICATE-----\n"
    )
    with pytest.raises(TlsConfigError) as info:
        client_context(RabbitOptions(ssl=True, ssl_ca_file=str(garbage)))
    assert str(info.value).startswith(f"[oslo_messaging_rabbit] ssl_ca_file: {garbage}: ")
    assert "\n" not in str(info.value) and "S3CRET" not in str(info.value)
    # a key that is not the certificate's
    options = RabbitOptions(
        ssl=True, ssl_cert_file=str(pki.client_cert), ssl_key_file=str(pki.server_key)
    )
    with pytest.raises(TlsConfigError, match=r"ssl_cert_file: .* cannot be loaded"):
        client_context(options)


def test_handshake_errors_are_explained() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    text = describe_tls_error(ConnectionError("wrapped")) or ""
    assert text == ""
    wrapped = ConnectionError("transport")
    wrapped.__cause__ = error
    described = describe_tls_error(wrapped)
    assert described is not None and "unable to get local issuer certificate" in described
    assert "ssl_ca_file" in described
