"""DER distinguished names from ID payloads: comparison across string types, printing,
hostile input."""

from __future__ import annotations

import contextlib

import pytest
from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st
from tests.harness.pki import make_cert

from pyl2tp.ike.certs import _id_matches
from pyl2tp.wire.der import der_items, dn_key, dn_text
from pyl2tp.wire.isakmp import IDPayload, IDType

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# strongSwan's encoding of leftid="CN=linuxvm-client": the CN as PrintableString (0x13)
PRINTABLE_CN = bytes.fromhex("3019311730150603550403130e") + b"linuxvm-client"


def _name(*rdns: tuple[x509.ObjectIdentifier, str, _ASN1Type]) -> bytes:
    return x509.Name([x509.NameAttribute(oid, value, _type=kind)
                      for oid, value, kind in rdns]).public_bytes()


def _dn_id(der: bytes) -> IDPayload:
    return IDPayload(IDType.DER_ASN1_DN, der)


def test_the_same_name_in_another_string_type_matches_the_certificate() -> None:
    cert, _key = make_cert("linuxvm-client", None, ca=False)
    assert cert.subject.public_bytes() != PRINTABLE_CN  # UTF8String in the certificate
    assert _id_matches(_dn_id(PRINTABLE_CN), cert)
    assert dn_key(PRINTABLE_CN) == dn_key(cert.subject.public_bytes())


def test_case_and_spaces_are_insignificant_but_values_and_order_are() -> None:
    cn, o, u8 = NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, _ASN1Type.UTF8String
    ps = _ASN1Type.PrintableString
    base = _name((o, "Example", u8), (cn, "vpn client", u8))
    assert dn_key(_name((o, "EXAMPLE", ps), (cn, "  vpn   Client ", u8))) == dn_key(base)
    assert dn_key(_name((o, "Example", u8), (cn, "vpn client2", u8))) != dn_key(base)
    assert dn_key(_name((cn, "vpn client", u8), (o, "Example", u8))) != dn_key(base)
    cert, _ = make_cert("someone-else", None, ca=False)
    assert not _id_matches(_dn_id(PRINTABLE_CN), cert)


def test_printing() -> None:
    assert dn_text(PRINTABLE_CN) == "CN=linuxvm-client"
    der = _name((NameOID.COUNTRY_NAME, "DE", _ASN1Type.PrintableString),
                (NameOID.ORGANIZATION_NAME, "A, B", _ASN1Type.UTF8String),
                (NameOID.COMMON_NAME, "gw", _ASN1Type.BMPString))
    assert dn_text(der) == "CN=gw,O=A\\, B,C=DE"  # RFC 4514: last RDN first
    assert _dn_id(der).text() == "CN=gw,O=A\\, B,C=DE"
    assert dn_text(b"\x30\x05\x31") == "300531"  # unreadable: hex


@pytest.mark.parametrize("bad", [
    b"", b"\x30", b"\x30\x05\x31", b"\x30\x84\x00\x00\x00\x01\x00", b"\x31\x00",
    b"\x30\x02\x30\x00",  # an RDN that is not a SET
    b"\x30\x02\x31\x00",  # an empty RDN
    b"\x30\x07\x31\x05\x30\x03\x06\x01\x55",  # AVA without a value
    b"\x1f\x81\x01\x00",  # multi-byte tag
    PRINTABLE_CN + b"\x00",  # trailing bytes after the Name
])
def test_malformed_names_are_refused(bad: bytes) -> None:
    with pytest.raises(ValueError):
        dn_key(bad)
    assert dn_text(bad) == bad.hex()
    cert, _ = make_cert("linuxvm-client", None, ca=False)
    assert not _id_matches(_dn_id(bad), cert)


@given(st.binary(max_size=200))
def test_garbage_never_raises_anything_else(data: bytes) -> None:
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        dn_key(data)
    assert isinstance(dn_text(data), str)
    with contextlib.suppress(ValueError):
        der_items(data)
