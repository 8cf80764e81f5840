"""ISAKMP / IKEv1 message codec (RFC 2408 3, RFC 2409, RFC 3947).

Pure functions, no state. A message is the 28-byte :class:`ISAKMPHeader` followed by a
chain of payloads, each starting with the generic payload header (next payload,
reserved, length). This module frames messages and payload chains; the payload
dataclasses and body codecs are in :mod:`pyl2tp.wire.isakmp_payloads` and the protocol
numbers in :mod:`pyl2tp.wire.isakmp_types`; the SA payload in
:mod:`pyl2tp.wire.isakmp_sa`. All are re-exported here.

Receiving::

    header, body = decode_message(datagram)        # lengths checked
    if header.encrypted:
        body = ike_sa_cipher.decrypt(header.message_id, body)   # pyl2tp.ike.crypto
        payloads = decode_payloads(header.next_payload, body, padded=True)
    else:
        payloads = decode_payloads(header.next_payload, body)

:func:`split_payloads` gives the raw bodies and offsets as well, for the hashes of
RFC 2409 that cover bytes as received (SAi_b, IDii_b, and the Quick Mode HASH(1)/HASH(2)
that cover everything after the HASH payload).

Sending::

    data = encode_message(header, payloads)                       # clear
    data = encode_message(header, payloads, encrypt=sa.encrypt_for(message_id))

The header's ``next_payload`` and ``length`` are filled in by :func:`encode_message`.
On UDP 4500 IKE is preceded by :data:`NON_ESP_MARKER`, which callers add and strip.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pyl2tp.errors import ParseError
from pyl2tp.wire.isakmp_payloads import (
    CertPayload,
    CertRequestPayload,
    DeletePayload,
    HashPayload,
    IDPayload,
    IPAddress,
    IPNetwork,
    KEPayload,
    NatDPayload,
    NatOAPayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SignaturePayload,
    UnknownPayload,
    VendorIDPayload,
    decode_payload,
    encode_payload_body,
)
from pyl2tp.wire.isakmp_sa import (
    GENERIC,
    Attribute,
    Proposal,
    SAPayload,
    Transform,
    decode_attributes,
    decode_sa_body,
    encode_attributes,
    encode_sa_body,
)
from pyl2tp.wire.isakmp_types import (
    DOI_IPSEC,
    KEY_IKE,
    NON_ESP_MARKER,
    SIT_IDENTITY_ONLY,
    AHTransformID,
    AttributeType,
    AuthAlgorithm,
    CertEncoding,
    EncapsulationMode,
    ESPTransformID,
    ExchangeType,
    Flags,
    IDType,
    IPCompTransformID,
    IPsecAttributeType,
    LifeType,
    NotifyType,
    PayloadType,
    ProtocolID,
    VendorID,
    known_vendor_id,
)

__all__ = [
    "DOI_IPSEC",
    "HEADER_LEN",
    "ISAKMP_VERSION",
    "KEY_IKE",
    "NON_ESP_MARKER",
    "SIT_IDENTITY_ONLY",
    "AHTransformID",
    "Attribute",
    "AttributeType",
    "AuthAlgorithm",
    "CertEncoding",
    "CertPayload",
    "CertRequestPayload",
    "DeletePayload",
    "ESPTransformID",
    "EncapsulationMode",
    "ExchangeType",
    "Flags",
    "HashPayload",
    "IDPayload",
    "IDType",
    "IPAddress",
    "IPCompTransformID",
    "IPNetwork",
    "IPsecAttributeType",
    "ISAKMPHeader",
    "KEPayload",
    "LifeType",
    "NatDPayload",
    "NatOAPayload",
    "NoncePayload",
    "NotifyPayload",
    "NotifyType",
    "Payload",
    "PayloadType",
    "Proposal",
    "ProtocolID",
    "RawPayload",
    "SAPayload",
    "SignaturePayload",
    "Transform",
    "UnknownPayload",
    "VendorID",
    "VendorIDPayload",
    "decode_attributes",
    "decode_header",
    "decode_message",
    "decode_payload",
    "decode_payloads",
    "decode_sa_body",
    "encode_attributes",
    "encode_header",
    "encode_message",
    "encode_payload_body",
    "encode_payloads",
    "encode_sa_body",
    "known_vendor_id",
    "split_payloads",
]

_HEADER = struct.Struct(">8s8sBBBBII")
HEADER_LEN = _HEADER.size  # 28, RFC 2408 3.1
ISAKMP_VERSION = 0x10  # major 1, minor 0


@dataclass(frozen=True, slots=True)
class ISAKMPHeader:
    """ISAKMP header (RFC 2408 3.1).

    ``next_payload`` and ``length`` are what a decoded message said; :func:`encode_message`
    computes both. ``version`` is kept as received (major in the high nibble); the
    decoder does not reject other versions, so the caller can answer
    INVALID-MAJOR-VERSION or route IKEv2 elsewhere.
    """

    initiator_cookie: bytes
    responder_cookie: bytes = bytes(8)
    exchange: int = ExchangeType.MAIN
    flags: int = 0
    message_id: int = 0
    next_payload: int = PayloadType.NONE
    version: int = ISAKMP_VERSION
    length: int = HEADER_LEN

    @property
    def major_version(self) -> int:
        return self.version >> 4

    @property
    def minor_version(self) -> int:
        return self.version & 0x0F

    @property
    def encrypted(self) -> bool:
        """The E flag: the body is encrypted with the IKE SA's key."""
        return bool(self.flags & Flags.ENCRYPTION)

    @property
    def cookies(self) -> bytes:
        """CKY-I | CKY-R, the ISAKMP SA's SPI in notify and delete payloads."""
        return self.initiator_cookie + self.responder_cookie


def encode_header(header: ISAKMPHeader) -> bytes:
    """The 28 header bytes, as given (no field is computed)."""
    if len(header.initiator_cookie) != 8 or len(header.responder_cookie) != 8:
        raise ValueError("ISAKMP cookies are 8 bytes")
    return _HEADER.pack(
        header.initiator_cookie,
        header.responder_cookie,
        header.next_payload,
        header.version,
        header.exchange,
        header.flags,
        header.message_id,
        header.length,
    )


def decode_header(data: bytes) -> ISAKMPHeader:
    """The header of ``data`` (which may be longer); only its size is checked."""
    if len(data) < HEADER_LEN:
        raise ParseError(f"ISAKMP message shorter than its header ({len(data)} bytes)", 0)
    icky, rcky, nxt, version, exchange, flags, mid, length = _HEADER.unpack_from(data)
    return ISAKMPHeader(icky, rcky, exchange, flags, mid, nxt, version, length)


def decode_message(data: bytes) -> tuple[ISAKMPHeader, bytes]:
    """Header and body (still encrypted if the E flag is set) of one whole message.

    RFC 2408 5.1: the Length field must equal the message's size.
    """
    header = decode_header(data)
    if header.length != len(data):
        raise ParseError(f"ISAKMP length {header.length} but {len(data)} bytes received", 24)
    return header, bytes(data[HEADER_LEN:])


def encode_payloads(payloads: Sequence[Payload]) -> bytes:
    """A payload chain. The bytes after the first payload are ``encode_payloads(rest)``."""
    out = bytearray()
    for i, p in enumerate(payloads):
        body = encode_payload_body(p)
        nxt = payloads[i + 1].payload_type if i + 1 < len(payloads) else PayloadType.NONE
        if len(body) + GENERIC.size > 0xFFFF:
            raise ValueError("payload longer than 65535 bytes")
        out += GENERIC.pack(nxt, 0, len(body) + GENERIC.size)
        out += body
    return bytes(out)


def encode_message(
    header: ISAKMPHeader,
    payloads: Sequence[Payload],
    *,
    encrypt: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """A whole message: header fields next payload and length filled in.

    With ``encrypt`` (plaintext body -> padded ciphertext, e.g. a bound
    :meth:`pyl2tp.ike.crypto.IkeSACrypto.encrypt`), the body is encrypted and the E flag set.
    """
    body = encode_payloads(payloads)
    flags = header.flags
    if encrypt is not None:
        body = encrypt(body)
        flags |= Flags.ENCRYPTION
    first = payloads[0].payload_type if payloads else PayloadType.NONE
    out = replace(header, next_payload=first, flags=flags, length=HEADER_LEN + len(body))
    return encode_header(out) + body


@dataclass(frozen=True, slots=True)
class RawPayload:
    """One payload of a chain, undecoded: type, body, and where it sits in the chain bytes.

    ``start`` is the offset of its generic header, ``end`` the offset just past it.
    """

    type: int
    body: bytes
    start: int
    end: int

    def decode(self) -> Payload:
        """The typed payload (ParseError if malformed)."""
        return decode_payload(self.type, self.body, self.start + GENERIC.size)


def split_payloads(first: int, body: bytes, *, padded: bool = False) -> list[RawPayload]:
    """Walk a payload chain starting with type ``first``.

    The chain must end exactly at the end of ``body``, unless ``padded`` (a decrypted
    body, RFC 2409 Appendix B: padding after the last payload), when trailing bytes after
    the payload whose next-payload is 0 are ignored.
    """
    out: list[RawPayload] = []
    ptype = first
    pos = 0
    while ptype != PayloadType.NONE:
        if len(body) - pos < GENERIC.size:
            raise ParseError(f"truncated header of payload type {ptype}", pos)
        nxt, _, length = GENERIC.unpack_from(body, pos)
        if length < GENERIC.size or pos + length > len(body):
            raise ParseError(f"bad length {length} of payload type {ptype}", pos + 2)
        payload_body = bytes(body[pos + GENERIC.size : pos + length])
        out.append(RawPayload(ptype, payload_body, pos, pos + length))
        pos += length
        ptype = nxt
    if pos != len(body) and not padded:
        raise ParseError(f"{len(body) - pos} bytes after the last payload", pos)
    return out


def decode_payloads(first: int, body: bytes, *, padded: bool = False) -> list[Payload]:
    """Decode a payload chain into typed payloads (see :func:`split_payloads`)."""
    return [raw.decode() for raw in split_payloads(first, body, padded=padded)]
