"""X.509 credentials for RSA-signature authentication (RFC 2409 5.1, auth method 3).

IKEv1 signs HASH_I/HASH_R with PKCS#1 v1.5 type-1 padding and no DigestInfo (what
strongSwan calls SIGN_RSA_EMSA_PKCS1_NULL); `cryptography` only signs with a DigestInfo,
so the raw RSA operation is done here with the key's numbers.
"""

from __future__ import annotations

import datetime
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID

from pyl2tp.errors import ConfigError
from pyl2tp.wire.isakmp import IDPayload, IDType

__all__ = [
    "CertError",
    "Credentials",
    "cert_ids",
    "load_credentials",
    "rsa_sign_raw",
    "rsa_verify_raw",
    "verify_chain",
]


class CertError(Exception):
    """The peer's certificate or signature is not acceptable (the message says why)."""


def _pad_type1(data: bytes, k: int) -> bytes:
    """RFC 8017 9.2 steps 4-5 without the DigestInfo: 00 01 FF..FF 00 data."""
    if len(data) > k - 11:
        raise ValueError("hash too long for the RSA modulus")
    return b"\x00\x01" + b"\xff" * (k - 3 - len(data)) + b"\x00" + data


def rsa_sign_raw(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """s = (00 01 FF.. 00 | data)^d mod n: PKCS#1 v1.5 over `data` with no DigestInfo."""
    priv = key.private_numbers()
    n = priv.public_numbers.n
    k = (n.bit_length() + 7) // 8
    m = int.from_bytes(_pad_type1(data, k), "big")
    # CRT: faster than pow(m, d, n), same result.
    s1 = pow(m, priv.dmp1, priv.p)
    s2 = pow(m, priv.dmq1, priv.q)
    h = (priv.iqmp * (s1 - s2)) % priv.p
    s = s2 + h * priv.q
    if pow(s, priv.public_numbers.e, n) != m:  # guard against a CRT fault
        raise ValueError("RSA signature self-check failed")
    return s.to_bytes(k, "big")


def rsa_verify_raw(key: rsa.RSAPublicKey, data: bytes, signature: bytes) -> bool:
    """Checks a signature made by :func:`rsa_sign_raw`."""
    pub = key.public_numbers()
    k = (pub.n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    s = int.from_bytes(signature, "big")
    if s >= pub.n:
        return False
    em = pow(s, pub.e, pub.n).to_bytes(k, "big")
    try:
        want = _pad_type1(data, k)
    except ValueError:
        return False
    return hmac.compare_digest(em, want)


def _ca_ok(ca: x509.Certificate) -> bool:
    try:
        bc = ca.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    except x509.ExtensionNotFound:
        return False
    return isinstance(bc, x509.BasicConstraints) and bc.ca


def verify_chain(
    cert: x509.Certificate, cas: list[x509.Certificate], now: datetime.datetime
) -> None:
    """The peer's end-entity certificate is signed by one of `cas` and valid at `now`.

    Checks the issuer's signature, both validity periods and the issuer's basic
    constraints (CA:TRUE). Raises CertError with the reason.
    """
    if not cas:
        raise CertError("no CA configured to verify peer certificates")
    for c in (cert,):
        if now < c.not_valid_before_utc or now > c.not_valid_after_utc:
            raise CertError(f"certificate {c.subject.rfc4514_string()} is not valid now")
    issuers = [ca for ca in cas if ca.subject == cert.issuer]
    if not issuers:
        raise CertError(
            f"certificate {cert.subject.rfc4514_string()} is not issued by a trusted CA"
            f" (issuer {cert.issuer.rfc4514_string()})"
        )
    for ca in issuers:
        if not _ca_ok(ca):
            continue
        if now < ca.not_valid_before_utc or now > ca.not_valid_after_utc:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return
    raise CertError(
        f"certificate {cert.subject.rfc4514_string()} does not verify against the trusted CA"
    )


def cert_ids(cert: x509.Certificate) -> tuple[bytes, set[str]]:
    """The subject as DER and the subjectAltName DNS names, e-mails and addresses."""
    names: set[str] = set()
    try:
        san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        san = None
    if isinstance(san, x509.SubjectAlternativeName):
        names.update(san.get_values_for_type(x509.DNSName))
        names.update(san.get_values_for_type(x509.RFC822Name))
        names.update(str(a) for a in san.get_values_for_type(x509.IPAddress))
    return cert.subject.public_bytes(), names


def _utcnow() -> datetime.datetime:
    return datetime.datetime.fromtimestamp(time.time(), datetime.UTC)


@dataclass(slots=True, repr=False)
class Credentials:
    """Our certificate and key, and the CAs that peers' certificates must chain to."""

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    cas: list[x509.Certificate]
    clock: Callable[[], datetime.datetime] = field(default=_utcnow)

    @property
    def cert_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    def sign(self, data: bytes) -> bytes:
        return rsa_sign_raw(self.private_key, data)

    def check_peer(self, der: bytes) -> x509.Certificate:
        """Parses and verifies a peer certificate (DER); raises CertError."""
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise CertError(f"unreadable certificate: {e}") from None
        verify_chain(cert, self.cas, self.clock())
        if not isinstance(cert.public_key(), rsa.RSAPublicKey):
            raise CertError("peer certificate has no RSA key")
        return cert

    def check_proof(
        self, der: bytes, peer_id: IDPayload, signed: bytes, signature: bytes
    ) -> str:
        """RFC 2409 5.1: the peer's certificate chains to our CA, names `peer_id`, and its
        key made `signature` over `signed` (HASH_I or HASH_R). Returns the subject (RFC
        4514); raises CertError with the reason."""
        cert = self.check_peer(der)
        if not _id_matches(peer_id, cert):
            raise CertError(f"ID {peer_id.text()} does not match the certificate")
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        if not rsa_verify_raw(key, signed, signature):
            raise CertError("signature does not verify")
        return cert.subject.rfc4514_string()


def _id_matches(peer_id: IDPayload, cert: x509.Certificate) -> bool:
    """The ID payload names the certificate: its subject DN or a subjectAltName."""
    subject, names = cert_ids(cert)
    if peer_id.id_type == IDType.DER_ASN1_DN:
        return peer_id.data == subject
    return peer_id.text() in names


def _pem_certs(path: str) -> list[x509.Certificate]:
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise ConfigError(f"{path}: not a certificate: {e}") from None


def load_credentials(
    certificate: str, private_key: str, ca: str | None,
    clock: Callable[[], datetime.datetime] | None = None,
) -> Credentials:
    """Reads PEM (or DER) files; ConfigError names the file that is wrong."""
    try:
        certs = _pem_certs(certificate)
        key_data = Path(private_key).read_bytes()
        cas = _pem_certs(ca) if ca else []
    except OSError as e:
        raise ConfigError(f"cannot read {e.filename}: {e.strerror}") from None
    try:
        if b"-----BEGIN" in key_data:
            key = serialization.load_pem_private_key(key_data, None)
        else:
            key = serialization.load_der_private_key(key_data, None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{private_key}: not an unencrypted private key: {e}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{private_key}: only RSA keys are supported")
    pub = certs[0].public_key()
    if not isinstance(pub, rsa.RSAPublicKey) or (
        pub.public_numbers() != key.public_key().public_numbers()
    ):
        raise ConfigError(f"{private_key}: does not match the certificate {certificate}")
    return Credentials(certs[0], key, cas, clock or _utcnow)
