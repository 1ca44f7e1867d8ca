"""A throw-away PKI for the TLS tests, made with the ``openssl`` command (EC P-256: fast).

``make_ca`` makes a CA; ``make_leaf`` a key and a certificate it signs. Nothing here is a secret:
the files live in the test's temporary directory and die with it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


@dataclass(frozen=True)
class Pair:
    key: Path
    cert: Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_ca(directory: Path, name: str) -> Pair:
    key, cert = directory / f"{name}-key.pem", directory / f"{name}-cert.pem"
    _openssl("req", "-x509", *_EC, "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", f"/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    return Pair(key, cert)


def make_leaf(directory: Path, ca: Pair, name: str) -> Pair:
    key, cert = directory / f"{name}-key.pem", directory / f"{name}-cert.pem"
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyAgreement\n")
    _openssl("req", *_EC, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))  # fmt: skip
    return Pair(key, cert)


def encrypt_key(key: Path, out: Path) -> Path:
    _openssl("pkey", "-in", str(key), "-aes256", "-passout", "pass:secret", "-out", str(out))
    return out
