"""ISAKMP SA payloads (RFC 2408 3.3-3.6, RFC 2407 4.6.1): attributes, transforms, proposals.

The SA payload and its substructures, with their codecs. Proposals and transforms are
chained like payloads (next payload 2 and 3, 0 for the last). Re-exported by
:mod:`pyl2tp.wire.isakmp`. Pure functions; decoders raise only :class:`ParseError`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pyl2tp.errors import ParseError
from pyl2tp.wire.isakmp_types import DOI_IPSEC, SIT_IDENTITY_ONLY, PayloadType

__all__ = [
    "GENERIC",
    "Attribute",
    "Proposal",
    "SAPayload",
    "Transform",
    "decode_attributes",
    "decode_sa_body",
    "encode_attributes",
    "encode_sa_body",
]

GENERIC = struct.Struct(">BBH")  # next payload, reserved, payload length (RFC 2408 3.2)
_ATTR = struct.Struct(">HH")  # AF|type, value or length (RFC 2408 3.3)
_SA = struct.Struct(">II")  # DOI, situation (RFC 2408 3.4, RFC 2407 4.6.1)
_PROPOSAL = struct.Struct(">BBBB")  # number, protocol, SPI size, # transforms (3.5)
_TRANSFORM = struct.Struct(">BBH")  # number, transform id, reserved (3.6)

_AF_TV = 0x8000  # attribute format bit: 1 = basic (TV), 0 = variable (TLV)
# RFC 2407 4.6.1: secrecy and integrity situations carry labeled-domain fields.
_SIT_LABELED = 0x06


@dataclass(frozen=True, slots=True)
class Attribute:
    """One SA attribute (RFC 2408 3.3): basic (TV) if ``value`` is an int, variable if bytes."""

    type: int
    value: int | bytes

    @classmethod
    def of(cls, attr_type: int, value: int) -> Attribute:
        """Integer attribute: basic if it fits 16 bits, else variable (4 bytes or more)."""
        if value < 0:
            raise ValueError("attribute values are unsigned")
        if value <= 0xFFFF:
            return cls(attr_type, value)
        return cls(attr_type, value.to_bytes(max(4, (value.bit_length() + 7) // 8), "big"))

    @property
    def is_basic(self) -> bool:
        """True for the TV (16-bit) form."""
        return isinstance(self.value, int)

    def as_int(self) -> int:
        """The value as an integer, whichever form it was sent in."""
        if isinstance(self.value, int):
            return self.value
        return int.from_bytes(self.value, "big")


def encode_attributes(attributes: tuple[Attribute, ...] | list[Attribute]) -> bytes:
    """Attributes in wire form, in order."""
    out = bytearray()
    for attr in attributes:
        if not 0 <= attr.type < _AF_TV:
            raise ValueError(f"attribute type {attr.type} out of range")
        if isinstance(attr.value, int):
            if not 0 <= attr.value <= 0xFFFF:
                raise ValueError(f"basic attribute {attr.type} value out of range")
            out += _ATTR.pack(_AF_TV | attr.type, attr.value)
        else:
            if len(attr.value) > 0xFFFF:
                raise ValueError(f"variable attribute {attr.type} too long")
            out += _ATTR.pack(attr.type, len(attr.value)) + attr.value
    return bytes(out)


def decode_attributes(data: bytes, offset: int = 0) -> tuple[Attribute, ...]:
    """All attributes of ``data``; ``offset`` is where ``data`` starts, for error messages."""
    attrs: list[Attribute] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _ATTR.size:
            raise ParseError("truncated SA attribute", offset + pos)
        kind, value = _ATTR.unpack_from(data, pos)
        pos += _ATTR.size
        if kind & _AF_TV:
            attrs.append(Attribute(kind & ~_AF_TV, value))
            continue
        if pos + value > len(data):
            raise ParseError("SA attribute length past its transform", offset + pos - 2)
        attrs.append(Attribute(kind, bytes(data[pos : pos + value])))
        pos += value
    return tuple(attrs)


@dataclass(frozen=True, slots=True)
class Transform:
    """Transform payload (RFC 2408 3.6): an identifier and its attributes."""

    number: int
    transform_id: int
    attributes: tuple[Attribute, ...] = ()

    def get(self, attr_type: int) -> Attribute | None:
        """The first attribute of this type, or None."""
        for attr in self.attributes:
            if attr.type == attr_type:
                return attr
        return None

    def get_int(self, attr_type: int) -> int | None:
        """The first attribute of this type as an integer, or None."""
        attr = self.get(attr_type)
        return None if attr is None else attr.as_int()


@dataclass(frozen=True, slots=True)
class Proposal:
    """Proposal payload (RFC 2408 3.5): protocol, SPI and the alternative transforms."""

    number: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]


def _encode_transform(t: Transform, last: bool) -> bytes:
    body = _TRANSFORM.pack(t.number, t.transform_id, 0) + encode_attributes(t.attributes)
    nxt = PayloadType.NONE if last else PayloadType.TRANSFORM
    return _generic(nxt, body)


def _encode_proposal(p: Proposal, last: bool) -> bytes:
    if len(p.transforms) > 255 or len(p.spi) > 255:
        raise ValueError("too many transforms or SPI too long")
    parts = [_PROPOSAL.pack(p.number, p.protocol, len(p.spi), len(p.transforms)), p.spi]
    for i, t in enumerate(p.transforms):
        parts.append(_encode_transform(t, i == len(p.transforms) - 1))
    nxt = PayloadType.NONE if last else PayloadType.PROPOSAL
    return _generic(nxt, b"".join(parts))


def _generic(next_payload: int, body: bytes) -> bytes:
    if len(body) + GENERIC.size > 0xFFFF:
        raise ValueError("payload longer than 65535 bytes")
    return GENERIC.pack(next_payload, 0, len(body) + GENERIC.size) + body


def _chain(data: bytes, offset: int, more: int, what: str) -> list[tuple[bytes, int]]:
    """Split substructures chained by ``more``/0 (proposals, transforms) into bodies."""
    out: list[tuple[bytes, int]] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < GENERIC.size:
            raise ParseError(f"truncated {what} header", offset + pos)
        nxt, _, length = GENERIC.unpack_from(data, pos)
        if length < GENERIC.size or pos + length > len(data):
            raise ParseError(f"bad {what} length {length}", offset + pos)
        out.append((bytes(data[pos + GENERIC.size : pos + length]), offset + pos + GENERIC.size))
        pos += length
        if nxt not in (0, more) or (nxt == 0) != (pos == len(data)):
            raise ParseError(f"bad next-payload {nxt} in {what} chain", offset + pos - length)
    return out


def _decode_transform(body: bytes, offset: int) -> Transform:
    if len(body) < _TRANSFORM.size:
        raise ParseError("truncated transform", offset)
    number, tid, _ = _TRANSFORM.unpack_from(body)
    attrs = decode_attributes(body[_TRANSFORM.size :], offset + _TRANSFORM.size)
    return Transform(number, tid, attrs)


def _decode_proposal(body: bytes, offset: int) -> Proposal:
    if len(body) < _PROPOSAL.size:
        raise ParseError("truncated proposal", offset)
    number, protocol, spi_size, _ = _PROPOSAL.unpack_from(body)
    start = _PROPOSAL.size + spi_size
    if start > len(body):
        raise ParseError("proposal SPI past its end", offset)
    spi = bytes(body[_PROPOSAL.size : start])
    transforms = tuple(
        _decode_transform(b, o)
        for b, o in _chain(body[start:], offset + start, PayloadType.TRANSFORM, "transform")
    )
    # The "# of transforms" field is not trusted: the chain and its lengths are.
    if not transforms:
        raise ParseError("proposal without transforms", offset)
    return Proposal(number, protocol, spi, transforms)


@dataclass(frozen=True, slots=True)
class SAPayload:
    """Security Association payload (RFC 2408 3.4) with its proposals (IPsec DOI)."""

    proposals: tuple[Proposal, ...]
    doi: int = DOI_IPSEC
    situation: int = SIT_IDENTITY_ONLY

    @property
    def payload_type(self) -> int:
        return PayloadType.SA


def decode_sa_body(body: bytes, offset: int = 0) -> SAPayload:
    """Decode an SA payload body (DOI, situation, proposals); ParseError if malformed."""
    if len(body) < _SA.size:
        raise ParseError("truncated SA payload", offset)
    doi, situation = _SA.unpack_from(body)
    if doi == DOI_IPSEC and situation & _SIT_LABELED:
        raise ParseError("labeled-domain situations are not supported", offset + 4)
    chain = _chain(body[_SA.size :], offset + _SA.size, PayloadType.PROPOSAL, "proposal")
    if not chain:
        raise ParseError("SA payload without proposals", offset)
    return SAPayload(tuple(_decode_proposal(b, o) for b, o in chain), doi, situation)


def encode_sa_body(sa: SAPayload) -> bytes:
    """An SA payload body: DOI, situation and the chained proposals."""
    parts = [_SA.pack(sa.doi, sa.situation)]
    for i, prop in enumerate(sa.proposals):
        parts.append(_encode_proposal(prop, i == len(sa.proposals) - 1))
    return b"".join(parts)
