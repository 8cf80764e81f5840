"""Certificate revocation lists (RFC 5280 5) for IKE certificate paths.

A CRL counts for a certificate only when it is issued by the certificate's issuer (same
name) and its signature verifies with that issuer's key (RFC 5280 6.3.3 (f)); indirect CRLs
and delta CRLs are not supported. A CRL signed by another key is ignored, with a warning
once. A CRL past its nextUpdate is still used and logged as stale once: a stale list still
names the certificates it revoked.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from pyl2tp.errors import ConfigError

__all__ = ["CrlSet", "RevokedError", "load_crls"]

log = logging.getLogger("pyl2tp.ike")

_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)


class RevokedError(Exception):
    """The certificate is listed in a valid CRL of its issuer (the message says which)."""


def dn(name: x509.Name) -> str:
    return name.rfc4514_string()


@dataclass(slots=True)
class _Entry:
    crl: x509.CertificateRevocationList
    source: str
    stale_logged: bool = False
    # issuer certificate (DER) -> the CRL's signature verified with its key
    checked: dict[bytes, bool] = field(default_factory=dict)

    def warn_if_stale(self, now: datetime.datetime) -> None:
        """Logs once that the CRL is past its nextUpdate (it is still used)."""
        nxt = self.crl.next_update_utc
        if nxt is not None and now > nxt and not self.stale_logged:
            self.stale_logged = True
            log.warning(
                "IKE: CRL of %s (%s) is stale: its next update was due %s; still used",
                dn(self.crl.issuer), self.source, nxt.isoformat(),
            )


@dataclass(slots=True)
class CrlSet:
    """The CRLs we check certificates against, by issuer name."""

    _by_issuer: dict[x509.Name, list[_Entry]] = field(default_factory=dict)

    def add(
        self, crl: x509.CertificateRevocationList, source: str,
        now: datetime.datetime | None = None,
    ) -> None:
        entry = _Entry(crl, source)
        self._by_issuer.setdefault(crl.issuer, []).append(entry)
        if now is not None:
            entry.warn_if_stale(now)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_issuer.values())

    def check(
        self, cert: x509.Certificate, issuer: x509.Certificate, now: datetime.datetime
    ) -> None:
        """Raises RevokedError if a CRL of `issuer` lists `cert`'s serial number.

        `issuer` must already be known to have signed `cert`.
        """
        entries = self._by_issuer.get(issuer.subject)
        for entry in entries or ():
            if not self._verified(entry, issuer):
                continue
            entry.warn_if_stale(now)
            if entry.crl.get_revoked_certificate_by_serial_number(cert.serial_number):
                raise RevokedError(
                    f"certificate {dn(cert.subject)} is revoked (serial"
                    f" {cert.serial_number:#x}, CRL of {dn(issuer.subject)})"
                )

    @staticmethod
    def _verified(entry: _Entry, issuer: x509.Certificate) -> bool:
        """RFC 5280 6.3.3 (f): the CRL is signed by the issuer's key (cached per key)."""
        issuer_der = issuer.public_bytes(Encoding.DER)
        ok = entry.checked.get(issuer_der)
        if ok is None:
            ok = _crl_signer_ok(issuer) and _signature_ok(entry.crl, issuer.public_key())
            entry.checked[issuer_der] = ok
            if not ok:
                log.warning(
                    "IKE: CRL %s names %s as issuer but is not signed by its key; ignored",
                    entry.source, dn(issuer.subject),
                )
        return ok


def _crl_signer_ok(issuer: x509.Certificate) -> bool:
    """RFC 5280 4.2.1.3: a keyUsage without cRLSign forbids signing CRLs."""
    try:
        ku = issuer.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
    except x509.ExtensionNotFound:
        return True
    return not isinstance(ku, x509.KeyUsage) or ku.crl_sign


def _signature_ok(
    crl: x509.CertificateRevocationList, key: CertificatePublicKeyTypes
) -> bool:
    try:  # a key that cannot sign (X25519...) raises TypeError
        return crl.is_signature_valid(cast(CertificateIssuerPublicKeyTypes, key))
    except (TypeError, ValueError):
        return False


def _parse(data: bytes) -> list[x509.CertificateRevocationList]:
    if b"-----BEGIN" in data:
        blocks = _PEM_CRL.findall(data)
        if not blocks:
            raise ValueError("no X509 CRL block in this PEM file")
        crls = [x509.load_pem_x509_crl(b) for b in blocks]
    else:
        crls = [x509.load_der_x509_crl(data)]
    for crl in crls:  # parse the lazy parts now, not during a negotiation
        crl.issuer.rfc4514_string()
        _ = crl.next_update_utc, len(crl), crl.signature_hash_algorithm
    return crls


def load_crls(paths: Sequence[str], now: datetime.datetime | None = None) -> CrlSet:
    """Reads PEM (one or more CRLs) or DER files; ConfigError names the bad file.

    With `now`, a CRL already past its nextUpdate is logged as stale here.
    """
    out = CrlSet()
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ConfigError(f"crl: cannot read {path}: {e.strerror}") from None
        try:
            crls = _parse(data)
        except Exception as e:  # any parse failure is a bad file
            raise ConfigError(f"crl: {path}: not a certificate revocation list: {e}") from None
        for crl in crls:
            nxt = crl.next_update_utc
            log.info(
                "IKE: CRL of %s from %s: %d revoked, next update %s",
                dn(crl.issuer), path, len(crl), nxt.isoformat() if nxt else "not set",
            )
            out.add(crl, path, now)
    return out

