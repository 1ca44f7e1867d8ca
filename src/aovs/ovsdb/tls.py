"""TLS for ``ssl:IP:PORT`` OVSDB connections, with Open vSwitch's semantics.

neutron's agent (through ovsdbapp and the ``ovs`` Python library) sets three files, all required
for an ``ssl:`` connection: ``[ovs] ssl_key_file`` and ``ssl_cert_file``, the client's own key and
certificate (ovsdb-server always asks for one: mutual TLS), and ``ssl_ca_cert_file``, the CA that
must have signed the server's certificate. As Open vSwitch itself does, the server is
authenticated by that CA alone: the certificate's names are not compared with the address
dialled (``ovs-pki`` certificates carry none), so the CA must be one that signs only OVSDB
servers (``ovs-pki``'s switch CA, say). TLS 1.2 is the minimum.

The files are read when the client is created (a missing, unreadable or mismatched file is ONE
:class:`TLSConfigError` line naming the option) and again at a reconnect after they changed on
disk, so a rotated certificate is used by the next session, as ovsdb-server rereads its own.
An error is described in one line that names the option to look at; no key material ever.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from aovs.ovsdb.errors import OVSDBError

__all__ = ["TLSConfigError", "TLSFiles", "describe_tls_error"]

# what the PEM files must hold (ovsdb-server and ovs-pki write PEM)
_KEY_MARK = b"PRIVATE KEY-----"
_CERT_MARK = b"-----BEGIN CERTIFICATE-----"
_MAX_PEM_BYTES = 1 << 20

# alerts the server sends when it refuses the certificate we presented
_REFUSED = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_REQUIRED", "CERTIFICATE_UNKNOWN",
            "UNSUPPORTED_CERTIFICATE", "CERTIFICATE_EXPIRED", "CERTIFICATE_REVOKED",
            "DECRYPT_ERROR", "ACCESS_DENIED")  # fmt: skip
# what a peer that does not speak TLS (a ptcp: remote) looks like from the client
_NOT_TLS = ("WRONG_VERSION_NUMBER", "UNEXPECTED_EOF_WHILE_READING", "RECORD_LAYER_FAILURE",
            "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST", "UNKNOWN_PROTOCOL")  # fmt: skip


class TLSConfigError(OVSDBError, ValueError):
    """A TLS file cannot be used; the message is one line naming the ``[ovs]`` option."""


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """neutron's ``[ovs] ssl_key_file``, ``ssl_cert_file``, ``ssl_ca_cert_file``."""

    key_file: Path
    cert_file: Path
    ca_cert_file: Path

    @classmethod
    def required(
        cls,
        key_file: str | Path | None,
        cert_file: str | Path | None,
        ca_cert_file: str | Path | None,
        connection: str,
    ) -> TLSFiles:
        """The three files, each one required for an ``ssl:`` connection."""
        given = {"ssl_key_file": key_file, "ssl_cert_file": cert_file,
                 "ssl_ca_cert_file": ca_cert_file}  # fmt: skip
        for option, value in given.items():
            if value is None or str(value) == "":
                raise TLSConfigError(f"[ovs] {option}: required with ovsdb_connection {connection}")
        return cls(Path(str(key_file)), Path(str(cert_file)), Path(str(ca_cert_file)))

    def fingerprint(self) -> tuple[tuple[int, int, int], ...]:
        """(inode, mtime, size) of each file: a change means the context is read again."""
        out = []
        for path in (self.key_file, self.cert_file, self.ca_cert_file):
            try:
                st = os.stat(path)
            except OSError:
                out.append((0, 0, -1))
                continue
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def context(self) -> ssl.SSLContext:
        """A client context: our certificate and key, the server verified against the CA.

        Raises :class:`TLSConfigError` (one line, naming the option) when a file is missing,
        unreadable, not PEM of the right kind, encrypted, or the key does not match the
        certificate."""
        key = _read_pem("ssl_key_file", self.key_file, _KEY_MARK, "a PEM private key")
        _read_pem("ssl_cert_file", self.cert_file, _CERT_MARK, "a PEM certificate")
        _read_pem("ssl_ca_cert_file", self.ca_cert_file, _CERT_MARK, "a PEM CA certificate")
        if b"ENCRYPTED" in key:
            raise TLSConfigError(
                f"[ovs] ssl_key_file {self.key_file}: the private key is encrypted "
                "(Open vSwitch and aovs need it unencrypted, readable only by the agent)"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False  # Open vSwitch's rule: the CA authenticates the server
        context.verify_mode = ssl.CERT_REQUIRED
        try:
            context.load_verify_locations(cafile=str(self.ca_cert_file))
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(
                f"[ovs] ssl_ca_cert_file {self.ca_cert_file}: unusable CA certificate "
                f"({_reason(exc)})"
            ) from None
        try:
            context.load_cert_chain(str(self.cert_file), str(self.key_file), password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            reason = _reason(exc)
            if "KEY_VALUES_MISMATCH" in reason.upper().replace(" ", "_"):
                raise TLSConfigError(
                    f"[ovs] ssl_key_file {self.key_file} is not the key of [ovs] ssl_cert_file "
                    f"{self.cert_file}"
                ) from None
            raise TLSConfigError(
                f"[ovs] ssl_cert_file {self.cert_file} / ssl_key_file {self.key_file}: unusable "
                f"({reason})"
            ) from None
        return context


def _no_password() -> str:
    # never OpenSSL's interactive prompt: a daemon would hang on it
    raise TLSConfigError("encrypted private key")


def _read_pem(option: str, path: Path, mark: bytes, what: str) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_PEM_BYTES)
    except FileNotFoundError:
        raise TLSConfigError(f"[ovs] {option} {path}: not found") from None
    except PermissionError:
        raise TLSConfigError(f"[ovs] {option} {path}: permission denied") from None
    except IsADirectoryError:
        raise TLSConfigError(f"[ovs] {option} {path}: is a directory") from None
    except OSError as exc:
        raise TLSConfigError(f"[ovs] {option} {path}: {exc.strerror or exc}") from None
    if mark not in data:
        raise TLSConfigError(f"[ovs] {option} {path}: does not hold {what}")
    return data


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def describe_tls_error(exc: BaseException, files: TLSFiles | None) -> str | None:
    """One line for a TLS failure (None if ``exc`` is not one), naming the option to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        where = f"; [ovs] ssl_ca_cert_file {files.ca_cert_file}" if files else ""
        detail = exc.verify_message or _reason(exc)
        return f"TLS: the server's certificate is not trusted ({detail}{where})"
    if not isinstance(exc, ssl.SSLError):
        return None
    reason = str(exc.reason or "").upper()
    if any(code in reason for code in _REFUSED):
        where = f"[ovs] ssl_cert_file {files.cert_file}; " if files else ""
        return f"TLS: the server refused our certificate ({where}{_reason(exc)})"
    if any(code in reason for code in _NOT_TLS) or isinstance(exc, ssl.SSLEOFError):
        return f"TLS: no TLS handshake from the server ({_reason(exc)}: is its remote pssl:?)"
    return f"TLS error: {_reason(exc)}"
