"""X.509 credentials for RSA-signature authentication (RFC 2409 5.1, auth method 3).

IKEv1 signs HASH_I/HASH_R with PKCS#1 v1.5 type-1 padding and no DigestInfo (what
strongSwan calls SIGN_RSA_EMSA_PKCS1_NULL); `cryptography` only signs with a DigestInfo,
so the raw RSA operation is done here with the key's numbers.
"""

from __future__ import annotations

import datetime
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID

from pyl2tp.errors import ConfigError
from pyl2tp.ike.crl import CrlSet, RevokedError, load_crls
from pyl2tp.wire.der import dn_key
from pyl2tp.wire.isakmp import CertRequestPayload, IDPayload, IDType

__all__ = [
    "MAX_PATH",
    "MAX_PEER_CERTS",
    "CertError",
    "Credentials",
    "cert_ids",
    "load_credentials",
    "rsa_sign_raw",
    "rsa_verify_raw",
    "verify_chain",
]

log = logging.getLogger("pyl2tp.ike")


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


# Bounds on what a peer can make us do (hostile input).
MAX_PEER_CERTS = 10  # CERT payloads in one MM5/MM6
MAX_PATH = 8  # CA certificates above the leaf, the trust anchor included
MAX_SIGNATURE_CHECKS = 64  # per path search: same-name certificates cannot explode it


def _dn(name: x509.Name) -> str:
    return name.rfc4514_string()


def _date_problem(cert: x509.Certificate, now: datetime.datetime, what: str) -> str | None:
    """RFC 5280 6.1.3 (a)(2): `now` is inside the validity period."""
    if now < cert.not_valid_before_utc:
        return (f"{what} {_dn(cert.subject)} is not valid now (not before"
                f" {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC)")
    if now > cert.not_valid_after_utc:
        return (f"{what} {_dn(cert.subject)} is not valid now (expired"
                f" {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC)")
    return None


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> object:
    try:
        return cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


# RFC 5280 4.2: a certificate with a critical extension we do not process is refused.
# (Extended key usage is recognised and, as strongSwan does for IKEv1, not restricted.)
_PROCESSED = frozenset({
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
})


def _unknown_critical(cert: x509.Certificate) -> str | None:
    for ext in cert.extensions:
        if ext.critical and ext.oid not in _PROCESSED:
            return str(ext.oid.dotted_string)
    return None


def _self_issued(cert: x509.Certificate) -> bool:
    return cert.subject == cert.issuer


class _PathSearch:
    """Depth-first search for a path leaf -> intermediates -> trust anchor (RFC 5280 6.1).

    Every certificate in `anchors` is trusted as it is (like strongSwan's
    ipsec.d/cacerts); `intermediates` are the other certificates the peer sent. The
    reason kept for a failure is the one found deepest in the path.
    """

    def __init__(
        self, anchors: list[x509.Certificate], intermediates: list[x509.Certificate],
        now: datetime.datetime, crls: CrlSet | None,
    ) -> None:
        self.anchors = anchors
        self.intermediates = intermediates
        self.now = now
        self.crls = crls
        self.budget = MAX_SIGNATURE_CHECKS
        self.failure: tuple[int, str] | None = None

    def fail(self, depth: int, why: str) -> None:
        if self.failure is None or depth > self.failure[0]:
            self.failure = (depth, why)

    def extend(self, path: list[x509.Certificate]) -> list[x509.Certificate] | None:
        cert = path[-1]
        if (unknown := _unknown_critical(cert)) is not None:
            self.fail(len(path), f"certificate {_dn(cert.subject)} has a critical extension"
                                 f" we do not process ({unknown})")
            return None
        found = [(True, a) for a in self.anchors if a.subject == cert.issuer]
        found += [
            (False, c) for c in self.intermediates if c.subject == cert.issuer and c not in path
        ]
        if not found:
            if _self_issued(cert) and len(path) > 1:
                why = f"the path ends at {_dn(cert.subject)}, a self-signed CA we do not trust"
            else:
                why = (f"certificate {_dn(cert.subject)} is not issued by a trusted CA"
                       f" (issuer {_dn(cert.issuer)})")
            self.fail(len(path), why)
            return None
        for is_anchor, issuer in found:
            if (problem := self.link_problem(path, issuer)) is not None:
                self.fail(len(path), problem)
                continue
            if self.crls is not None:
                try:
                    self.crls.check(cert, issuer, self.now)
                except RevokedError as e:
                    raise CertError(str(e)) from None
            if is_anchor:
                return [*path, issuer]
            if len(path) >= MAX_PATH:
                self.fail(len(path) + 1, f"certificate path longer than {MAX_PATH} CAs")
                continue
            if (done := self.extend([*path, issuer])) is not None:
                return done
        return None

    def link_problem(self, path: list[x509.Certificate], issuer: x509.Certificate) -> str | None:
        """Why `issuer` cannot have issued path[-1] in this path, or None."""
        cert = path[-1]
        if self.budget <= 0:
            raise CertError(f"certificate path search gave up after {MAX_SIGNATURE_CHECKS}"
                            " signature checks")
        self.budget -= 1
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            return (f"signature of certificate {_dn(cert.subject)} does not verify with the"
                    f" key of CA {_dn(issuer.subject)}")
        bc = _ext(issuer, ExtensionOID.BASIC_CONSTRAINTS)
        # RFC 5280 6.1.4 (k): only a CA certificate may issue certificates
        if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
            return (f"certificate {_dn(issuer.subject)} is not a CA (no basicConstraints"
                    f" CA:TRUE), yet it issued {_dn(cert.subject)}")
        ku = _ext(issuer, ExtensionOID.KEY_USAGE)
        if isinstance(ku, x509.KeyUsage) and not ku.key_cert_sign:  # RFC 5280 6.1.4 (n)
            return f"CA certificate {_dn(issuer.subject)} has a keyUsage without keyCertSign"
        if (why := _date_problem(issuer, self.now, "CA certificate")) is not None:
            return why
        # RFC 5280 6.1.4 (l)/(m): pathLenConstraint counts the non-self-issued CA
        # certificates between this CA and the leaf.
        below = sum(1 for c in path[1:] if not _self_issued(c))
        if bc.path_length is not None and below > bc.path_length:
            return (f"path length constraint of CA {_dn(issuer.subject)} exceeded"
                    f" (pathLen {bc.path_length}, {below} CA certificates below it)")
        return None


def verify_chain(
    cert: x509.Certificate, cas: list[x509.Certificate], now: datetime.datetime,
    *, intermediates: Sequence[x509.Certificate] = (), crls: CrlSet | None = None,
) -> list[x509.Certificate]:
    """The peer's end-entity certificate chains to one of `cas` at `now`.

    The path may go through `intermediates` (the peer's other CERT payloads). Each link's
    signature, validity, basicConstraints (CA:TRUE, pathLen) and keyUsage (keyCertSign)
    are checked, and each certificate below the anchor against `crls`. Returns the path,
    leaf first and the anchor last; raises CertError with the reason.
    """
    if not cas:
        raise CertError("no CA configured to verify peer certificates")
    if (why := _date_problem(cert, now, "certificate")) is not None:
        raise CertError(why)
    search = _PathSearch(cas, [c for c in intermediates if c != cert], now, crls)
    path = search.extend([cert])
    if path is None:
        assert search.failure is not None
        raise CertError(search.failure[1])
    return path


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
    """Our certificate and key, and the CAs that peers' certificates must chain to.

    `intermediates` are sent after our certificate, one CERT payload each; `crls` are
    checked against every certificate of a peer's path below the trust anchor.
    """

    certificate: x509.Certificate
    private_key: rsa.RSAPrivateKey
    cas: list[x509.Certificate]
    clock: Callable[[], datetime.datetime] = field(default=_utcnow)
    intermediates: list[x509.Certificate] = field(default_factory=list)
    crls: CrlSet | None = None

    @property
    def cert_ders(self) -> list[bytes]:
        """Our certificate, then the intermediates: the CERT payloads of MM5/MM6."""
        return [c.public_bytes(serialization.Encoding.DER)
                for c in (self.certificate, *self.intermediates)]

    def cert_requests(self) -> list[CertRequestPayload]:
        """RFC 2408 3.10: one CERTREQ per trusted CA, its DN (DER) as the Certificate
        Authority, X.509 signature encoding (4), as strongSwan and Windows send them."""
        dns: list[bytes] = []
        for ca in self.cas:
            der = ca.subject.public_bytes()
            if der not in dns:
                dns.append(der)
        return [CertRequestPayload(4, d) for d in dns[:MAX_PEER_CERTS]] or [
            CertRequestPayload(4)
        ]

    def sign(self, data: bytes) -> bytes:
        return rsa_sign_raw(self.private_key, data)

    def check_proof(
        self, ders: list[bytes], peer_id: IDPayload, signed: bytes, signature: bytes
    ) -> str:
        """RFC 2409 5.1: one of the peer's certificates names `peer_id`, its key made
        `signature` over `signed` (HASH_I or HASH_R), and it chains to our CA through the
        others. Returns the subject (RFC 4514); raises CertError with the reason."""
        try:
            return self._check_proof(ders, peer_id, signed, signature)
        except CertError:
            raise
        except Exception as e:  # hostile DER must never escape as a crash
            raise CertError(f"malformed certificate: {type(e).__name__}: {e}") from None

    def _check_proof(
        self, ders: list[bytes], peer_id: IDPayload, signed: bytes, signature: bytes
    ) -> str:
        if len(ders) > MAX_PEER_CERTS:
            raise CertError(f"too many certificates ({len(ders)}, at most {MAX_PEER_CERTS})")
        certs = [_load_der(d, i) for i, d in enumerate(ders, 1)]
        # The leaf is the certificate that names the ID and whose key made the signature;
        # normally the first, but peers do not all keep the order.
        named = [c for c in certs if _id_matches(peer_id, c)]
        if not named:
            raise CertError(f"ID {peer_id.text()} does not match the certificate")
        leaf = None
        for cert in named:
            key = cert.public_key()
            if isinstance(key, rsa.RSAPublicKey) and rsa_verify_raw(key, signed, signature):
                leaf = cert
                break
        if leaf is None:
            if not any(isinstance(c.public_key(), rsa.RSAPublicKey) for c in named):
                raise CertError("peer certificate has no RSA key")
            raise CertError("signature does not verify")
        path = verify_chain(
            leaf, self.cas, self.clock(), intermediates=[c for c in certs if c is not leaf],
            crls=self.crls,
        )
        log.debug("IKE: certificate path %s", " <- ".join(_dn(c.subject) for c in path))
        return leaf.subject.rfc4514_string()


def _load_der(der: bytes, index: int) -> x509.Certificate:
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.subject.rfc4514_string()  # some fields parse lazily
        cert.issuer.rfc4514_string()
        _ = cert.extensions
    except Exception as e:  # any failure means garbage
        raise CertError(f"unreadable certificate (CERT payload {index}): {e}") from None
    return cert


def _id_matches(peer_id: IDPayload, cert: x509.Certificate) -> bool:
    """The ID payload names the certificate: its subject DN or a subjectAltName."""
    subject, names = cert_ids(cert)
    if peer_id.id_type == IDType.DER_ASN1_DN:
        if peer_id.data == subject:
            return True
        try:  # the same name in other string types, case or spacing (RFC 5280 7.1)
            return dn_key(peer_id.data) == dn_key(subject)
        except (ValueError, UnicodeDecodeError):
            return False
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
    crl: Sequence[str] = (),
) -> Credentials:
    """Reads PEM (or DER) files; ConfigError names the file that is wrong.

    `certificate` may be a bundle: ours (the one matching the key, normally first) and the
    intermediate CAs that issued it, which are sent too. `crl` lists CRL files.
    """
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
    numbers = key.public_key().public_numbers()
    ours = [
        c for c in certs
        if isinstance(pub := c.public_key(), rsa.RSAPublicKey) and pub.public_numbers() == numbers
    ]
    if not ours:
        raise ConfigError(f"{private_key}: does not match the certificate {certificate}")
    if len(certs) > MAX_PEER_CERTS:
        raise ConfigError(f"{certificate}: more than {MAX_PEER_CERTS} certificates")
    now = (clock or _utcnow)()
    crls = load_crls(crl, now) if crl else None
    rest = [c for c in certs if c is not ours[0]]
    return Credentials(ours[0], key, cas, clock or _utcnow, rest, crls)
