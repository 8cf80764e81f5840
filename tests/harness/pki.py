"""A throwaway PKI for tests: CAs, intermediates, end-entity certificates, CRLs, PEM files.

Everything is made with `cryptography`. Keys are 2048-bit RSA; pass ``key=`` to reuse one
(key generation dominates the cost of a test PKI).
"""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "Pair",
    "make_cert",
    "make_crl",
    "name",
    "new_key",
    "write_bundle",
    "write_ca",
    "write_crl",
    "write_pair",
]

Pair = tuple[x509.Certificate, rsa.RSAPrivateKey]


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def make_cert(cn: str, issuer: Pair | None, *, ca: bool, days: int = 30,
              san: list[x509.GeneralName] | None = None, path_length: int | None = None,
              key_usage: x509.KeyUsage | None = None, key: rsa.RSAPrivateKey | None = None,
              now: datetime.datetime | None = None,
              not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None,
              issuer_name: x509.Name | None = None) -> Pair:
    """A 2048-bit RSA certificate for ``cn``, self-signed when ``issuer`` is None.

    Valid from a day before ``now`` (default: the wall clock) for ``days`` days unless
    ``not_before``/``not_after`` say otherwise; ``issuer_name`` overrides the issuer's
    subject (for forged or looping chains).
    """
    key = key or new_key()
    now = now or datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer_name or (issuer[0].subject if issuer else name(cn)))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(days=1))
        .not_valid_after(not_after or now + datetime.timedelta(days=days))
        .add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None),
            critical=True,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if key_usage is not None:
        builder = builder.add_extension(key_usage, critical=True)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def make_crl(issuer: Pair, revoked: list[x509.Certificate], *,
             now: datetime.datetime | None = None, next_update_days: float = 7,
             signer: rsa.RSAPrivateKey | None = None) -> x509.CertificateRevocationList:
    """A CRL of ``issuer`` listing ``revoked`` (signed with ``signer`` if given: forged)."""
    now = now or datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer[0].subject)
        .last_update(now - datetime.timedelta(hours=1))
        .next_update(now + datetime.timedelta(days=next_update_days))
    )
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(now - datetime.timedelta(hours=1))
            .build()
        )
    return builder.sign(signer or issuer[1], hashes.SHA256())


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


def write_bundle(
    work: Path, stem: str, pair: Pair, chain: list[x509.Certificate]
) -> tuple[str, str]:
    """Like :func:`write_pair`, the certificate file also holding ``chain`` after ours."""
    cert, key = write_pair(work, stem, pair)
    with open(cert, "ab") as f:
        for c in chain:
            f.write(c.public_bytes(serialization.Encoding.PEM))
    return cert, key


def write_crl(work: Path, stem: str, crl: x509.CertificateRevocationList,
              *, der: bool = False) -> str:
    """Write ``stem.crl`` (PEM, or DER); return the path."""
    path = work / f"{stem}.crl"
    path.write_bytes(crl.public_bytes(
        serialization.Encoding.DER if der else serialization.Encoding.PEM
    ))
    return str(path)
