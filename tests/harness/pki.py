"""A throwaway PKI for tests: CAs, end-entity certificates, PEM files (via `cryptography`)."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["Pair", "make_cert", "name", "write_ca", "write_pair"]

Pair = tuple[x509.Certificate, rsa.RSAPrivateKey]


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(cn: str, issuer: Pair | None, *, ca: bool, days: int = 30,
              san: list[x509.GeneralName] | None = None) -> Pair:
    """A 2048-bit RSA certificate for ``cn``, self-signed when ``issuer`` is None."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer[0].subject if issuer else name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def write_pair(work: Path, stem: str, pair: Pair) -> tuple[str, str]:
    """Write ``stem.crt`` and ``stem.key`` (PKCS#8, unencrypted) as PEM; return the paths."""
    cert, key = work / f"{stem}.crt", work / f"{stem}.key"
    cert.write_bytes(pair[0].public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pair[1].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return str(cert), str(key)


def write_ca(work: Path, stem: str, ca: Pair) -> str:
    """Write the CA's certificate as ``stem.crt`` (PEM); return the path."""
    path = work / f"{stem}.crt"
    path.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    return str(path)
