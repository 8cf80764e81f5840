"""Just enough DER to compare and print X.501 distinguished names from ID payloads.

An ID_DER_ASN1_DN (RFC 2407 4.6.2.1) carries a Name as DER. Peers encode the same name
with other string types than the certificate does (strongSwan writes a configured
``leftid="CN=x"`` as PrintableString; OpenSSL and `cryptography` certificates use
UTF8String), so names are compared by attribute type and prepared value (RFC 5280 7.1,
RFC 4518), never by bytes. Input is hostile: lengths are checked, depth is fixed.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

__all__ = ["DNKey", "der_items", "dn_key", "dn_text"]

# DirectoryString and friends (RFC 5280 4.1.2.4): tag -> codec
_STRING_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # TeletexString (T.61, read as Latin-1 as other implementations do)
    0x16: "ascii",  # IA5String
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}
_SEQUENCE, _SET, _OID = 0x30, 0x31, 0x06

#: per RDN, the set of (type OID as DER contents, prepared value)
DNKey = tuple[frozenset[tuple[bytes, object]], ...]
_AVA = tuple[bytes, int, bytes]  # (OID contents, value tag, value contents)


def der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) of the DER elements that make up `data`, in order.

    ValueError when malformed: long tags, indefinite or oversized lengths, or an element
    running past the end."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < 2:
            raise ValueError("truncated DER element")
        tag, length = data[pos], data[pos + 1]
        if tag & 0x1F == 0x1F:
            raise ValueError("multi-byte DER tag")
        pos += 2
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 3 or pos + count > len(data):
                raise ValueError("bad DER length")
            length = int.from_bytes(data[pos:pos + count], "big")
            pos += count
        if pos + length > len(data):
            raise ValueError("DER element runs past its container")
        items.append((tag, data[pos:pos + length]))
        pos += length
    return items


def _rdns(der: bytes) -> list[list[_AVA]]:
    """Name ::= SEQUENCE OF RDN; RDN ::= SET OF AttributeTypeAndValue (RFC 5280 4.1.2.4)."""
    items = der_items(der)
    if len(items) != 1 or items[0][0] != _SEQUENCE:
        raise ValueError("a DN is one SEQUENCE")
    rdns: list[list[_AVA]] = []
    for rdn_tag, rdn in der_items(items[0][1]):
        if rdn_tag != _SET:
            raise ValueError("an RDN is not a SET")
        avas: list[_AVA] = []
        for ava_tag, ava in der_items(rdn):
            parts = der_items(ava)
            if ava_tag != _SEQUENCE or len(parts) != 2 or parts[0][0] != _OID:
                raise ValueError("bad AttributeTypeAndValue")
            avas.append((parts[0][1], parts[1][0], parts[1][1]))
        if not avas:
            raise ValueError("empty RDN")
        rdns.append(avas)
    return rdns


def _prepared(tag: int, value: bytes) -> object:
    codec = _STRING_CODECS.get(tag)
    if codec is None:
        return (tag, value)  # not a string: compared as encoded
    # RFC 4518 2.6 insignificant space handling, caseIgnoreMatch
    return " ".join(value.decode(codec).split()).casefold()


def dn_key(der: bytes) -> DNKey:
    """`der` (a Name) in comparable form; ValueError or UnicodeDecodeError if malformed."""
    return tuple(frozenset((oid, _prepared(tag, value)) for oid, tag, value in rdn)
                 for rdn in _rdns(der))


def _oid_text(contents: bytes) -> str:
    if not contents or contents[-1] & 0x80:
        raise ValueError("bad OID")
    arcs: list[int] = []
    value = 0
    for byte in contents:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in (first, arcs[0] - 40 * first, *arcs[1:]))


def dn_text(der: bytes) -> str:
    """`der` as an RFC 4514 string (``CN=alice,O=Example``); hex if it cannot be read."""
    try:
        name = x509.Name([
            x509.RelativeDistinguishedName([
                x509.NameAttribute(ObjectIdentifier(_oid_text(oid)),
                                   value.decode(_STRING_CODECS[tag]))
                for oid, tag, value in rdn
            ])
            for rdn in _rdns(der)
        ])
        return name.rfc4514_string()
    except (ValueError, KeyError, UnicodeDecodeError):
        return der.hex()
