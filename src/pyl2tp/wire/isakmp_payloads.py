"""ISAKMP payloads (RFC 2408 3.7-3.16, RFC 2407 4.6, RFC 3947 3.2 and 5.2).

One frozen dataclass per payload type, and the codecs of a payload *body* (the bytes
after the 4-byte generic payload header). The SA payload is in
:mod:`pyl2tp.wire.isakmp_sa`. Chaining payloads into a message, and the
message header, live in :mod:`pyl2tp.wire.isakmp`, which re-exports everything here.
Pure functions, no state. Decoders raise :class:`ParseError` and nothing else.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import TypeAlias

from pyl2tp.errors import ParseError
from pyl2tp.wire.der import dn_text
from pyl2tp.wire.isakmp_sa import (
    Attribute,
    Proposal,
    SAPayload,
    Transform,
    decode_attributes,
    decode_sa_body,
    encode_attributes,
    encode_sa_body,
)
from pyl2tp.wire.isakmp_types import DOI_IPSEC, IDType, PayloadType, ProtocolID

__all__ = [
    "Attribute",
    "CertPayload",
    "CertRequestPayload",
    "DeletePayload",
    "HashPayload",
    "IDPayload",
    "IPAddress",
    "IPNetwork",
    "KEPayload",
    "NatDPayload",
    "NatOAPayload",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "Proposal",
    "SAPayload",
    "SignaturePayload",
    "Transform",
    "UnknownPayload",
    "VendorIDPayload",
    "decode_attributes",
    "decode_payload",
    "encode_attributes",
    "encode_payload_body",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_ID = struct.Struct(">BBH")  # ID type, protocol, port (RFC 2407 4.6.2)
_NOTIFY = struct.Struct(">IBBH")  # DOI, protocol, SPI size, notify type (3.14)
_DELETE = struct.Struct(">IBBH")  # DOI, protocol, SPI size, # SPIs (3.15)
_NAT_OA = struct.Struct(">B3x")  # ID type, reserved (RFC 3947 5.2)

# -- payload dataclasses -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KEPayload:
    """Key Exchange payload (RFC 2408 3.7): the DH public value."""

    data: bytes

    @property
    def payload_type(self) -> int:
        return PayloadType.KE


@dataclass(frozen=True, slots=True)
class IDPayload:
    """Identification payload, IPsec DOI form (RFC 2407 4.6.2): phase 1 and phase 2 alike.

    Phase 1 (IDii/IDir) usually carries an address, FQDN or USER_FQDN with protocol 0 or
    17 and port 0 or 500; phase 2 (IDci/IDcr) an address, subnet or range, with the
    protocol and port of the traffic (17/1701 for L2TP).
    """

    id_type: int
    data: bytes
    protocol: int = 0
    port: int = 0

    @property
    def payload_type(self) -> int:
        return PayloadType.ID

    @classmethod
    def from_address(cls, addr: IPAddress | str, protocol: int = 0, port: int = 0) -> IDPayload:
        """ID_IPV4_ADDR or ID_IPV6_ADDR."""
        ip = ipaddress.ip_address(addr)
        kind = IDType.IPV4_ADDR if ip.version == 4 else IDType.IPV6_ADDR
        return cls(kind, ip.packed, protocol, port)

    @classmethod
    def from_network(cls, net: IPNetwork | str, protocol: int = 0, port: int = 0) -> IDPayload:
        """ID_IPV4_ADDR_SUBNET or ID_IPV6_ADDR_SUBNET (address then mask)."""
        n = ipaddress.ip_network(net)
        kind = IDType.IPV4_ADDR_SUBNET if n.version == 4 else IDType.IPV6_ADDR_SUBNET
        return cls(kind, n.network_address.packed + n.netmask.packed, protocol, port)

    @classmethod
    def from_range(
        cls, first: IPAddress | str, last: IPAddress | str, protocol: int = 0, port: int = 0
    ) -> IDPayload:
        """ID_IPV4_ADDR_RANGE or ID_IPV6_ADDR_RANGE."""
        a, b = ipaddress.ip_address(first), ipaddress.ip_address(last)
        if a.version != b.version or int(a) > int(b):
            raise ValueError("bad address range")
        kind = IDType.IPV4_ADDR_RANGE if a.version == 4 else IDType.IPV6_ADDR_RANGE
        return cls(kind, a.packed + b.packed, protocol, port)

    @classmethod
    def fqdn(cls, name: str, protocol: int = 0, port: int = 0) -> IDPayload:
        """ID_FQDN."""
        return cls(IDType.FQDN, name.encode(), protocol, port)

    @classmethod
    def user_fqdn(cls, name: str, protocol: int = 0, port: int = 0) -> IDPayload:
        """ID_USER_FQDN (user@domain)."""
        return cls(IDType.USER_FQDN, name.encode(), protocol, port)

    @classmethod
    def key_id(cls, key: bytes, protocol: int = 0, port: int = 0) -> IDPayload:
        """ID_KEY_ID (opaque bytes)."""
        return cls(IDType.KEY_ID, key, protocol, port)

    def address(self) -> IPAddress:
        """The address of an ID_IPV4_ADDR / ID_IPV6_ADDR; ValueError for other types."""
        if self.id_type in (IDType.IPV4_ADDR, IDType.IPV6_ADDR):
            return ipaddress.ip_address(self.data)
        raise ValueError(f"ID type {self.id_type} is not an address")

    def network(self) -> IPNetwork:
        """Address types as a host network, subnet types as their network."""
        if self.id_type in (IDType.IPV4_ADDR, IDType.IPV6_ADDR):
            return ipaddress.ip_network(self.address())
        if self.id_type in (IDType.IPV4_ADDR_SUBNET, IDType.IPV6_ADDR_SUBNET):
            half = len(self.data) // 2
            addr = ipaddress.ip_address(self.data[:half])
            return ipaddress.ip_network((addr, _prefix_len(self.data[half:])), strict=False)
        raise ValueError(f"ID type {self.id_type} is not an address or subnet")

    def address_range(self) -> tuple[IPAddress, IPAddress]:
        """First and last address covered by an address, subnet or range ID."""
        if self.id_type in (IDType.IPV4_ADDR_RANGE, IDType.IPV6_ADDR_RANGE):
            half = len(self.data) // 2
            return ipaddress.ip_address(self.data[:half]), ipaddress.ip_address(self.data[half:])
        net = self.network()
        return net.network_address, net.broadcast_address

    def text(self) -> str:
        """Printable form of any ID (for logs and peer matching)."""
        if self.id_type in (IDType.FQDN, IDType.USER_FQDN):
            return self.data.decode("utf-8", "replace")
        if self.id_type in (IDType.IPV4_ADDR, IDType.IPV6_ADDR):
            return str(self.address())
        if self.id_type in (IDType.IPV4_ADDR_SUBNET, IDType.IPV6_ADDR_SUBNET):
            return str(self.network())
        if self.id_type in (IDType.IPV4_ADDR_RANGE, IDType.IPV6_ADDR_RANGE):
            a, b = self.address_range()
            return f"{a}-{b}"
        if self.id_type == IDType.DER_ASN1_DN:
            return dn_text(self.data)
        return self.data.hex()


def _prefix_len(mask: bytes) -> int:
    """Prefix length of a netmask; ValueError unless its ones are contiguous."""
    bits = len(mask) * 8
    value = int.from_bytes(mask, "big")
    ones = bits - ((~value & ((1 << bits) - 1)).bit_length())
    if value != ((1 << bits) - 1) ^ ((1 << (bits - ones)) - 1):
        raise ValueError("netmask is not a prefix")
    return ones


_ID_LENGTHS = {
    IDType.IPV4_ADDR: 4,
    IDType.IPV6_ADDR: 16,
    IDType.IPV4_ADDR_SUBNET: 8,
    IDType.IPV6_ADDR_SUBNET: 32,
    IDType.IPV4_ADDR_RANGE: 8,
    IDType.IPV6_ADDR_RANGE: 32,
}


@dataclass(frozen=True, slots=True)
class CertPayload:
    """Certificate payload (RFC 2408 3.9)."""

    encoding: int
    data: bytes

    @property
    def payload_type(self) -> int:
        return PayloadType.CERT


@dataclass(frozen=True, slots=True)
class CertRequestPayload:
    """Certificate Request payload (RFC 2408 3.10); ``authority`` may be empty."""

    cert_type: int
    authority: bytes = b""

    @property
    def payload_type(self) -> int:
        return PayloadType.CERT_REQUEST


@dataclass(frozen=True, slots=True)
class HashPayload:
    """Hash payload (RFC 2408 3.11)."""

    data: bytes

    @property
    def payload_type(self) -> int:
        return PayloadType.HASH


@dataclass(frozen=True, slots=True)
class SignaturePayload:
    """Signature payload (RFC 2408 3.12)."""

    data: bytes

    @property
    def payload_type(self) -> int:
        return PayloadType.SIGNATURE


@dataclass(frozen=True, slots=True)
class NoncePayload:
    """Nonce payload (RFC 2408 3.13)."""

    data: bytes

    @property
    def payload_type(self) -> int:
        return PayloadType.NONCE


@dataclass(frozen=True, slots=True)
class NotifyPayload:
    """Notification payload (RFC 2408 3.14). Phase-1 notifies use the cookies as SPI."""

    notify_type: int
    spi: bytes = b""
    data: bytes = b""
    protocol: int = ProtocolID.ISAKMP
    doi: int = DOI_IPSEC

    @property
    def payload_type(self) -> int:
        return PayloadType.NOTIFICATION


@dataclass(frozen=True, slots=True)
class DeletePayload:
    """Delete payload (RFC 2408 3.15): SPIs of one protocol, all the same size."""

    protocol: int
    spis: tuple[bytes, ...]
    doi: int = DOI_IPSEC

    @property
    def payload_type(self) -> int:
        return PayloadType.DELETE


@dataclass(frozen=True, slots=True)
class VendorIDPayload:
    """Vendor ID payload (RFC 2408 3.16); see :class:`VendorID` for known values."""

    data: bytes

    @property
    def payload_type(self) -> int:
        return PayloadType.VENDOR_ID


@dataclass(frozen=True, slots=True)
class NatDPayload:
    """NAT-D payload (RFC 3947 3.2); ``draft`` selects the pre-RFC type number 130."""

    data: bytes
    draft: bool = False

    @property
    def payload_type(self) -> int:
        return PayloadType.NAT_D_DRAFT if self.draft else PayloadType.NAT_D


@dataclass(frozen=True, slots=True)
class NatOAPayload:
    """NAT-OA payload (RFC 3947 5.2): an original IPv4/IPv6 address; ``draft`` = type 131."""

    id_type: int
    address: bytes
    draft: bool = False

    @property
    def payload_type(self) -> int:
        return PayloadType.NAT_OA_DRAFT if self.draft else PayloadType.NAT_OA

    @classmethod
    def from_address(cls, addr: IPAddress | str, draft: bool = False) -> NatOAPayload:
        """NAT-OA for an IPv4 or IPv6 address."""
        ip = ipaddress.ip_address(addr)
        kind = IDType.IPV4_ADDR if ip.version == 4 else IDType.IPV6_ADDR
        return cls(kind, ip.packed, draft)

    def ip(self) -> IPAddress:
        """The original address."""
        return ipaddress.ip_address(self.address)


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload of a type this codec does not interpret, kept raw."""

    type: int
    data: bytes

    @property
    def payload_type(self) -> int:
        return self.type


Payload: TypeAlias = (
    SAPayload
    | KEPayload
    | IDPayload
    | CertPayload
    | CertRequestPayload
    | HashPayload
    | SignaturePayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorIDPayload
    | NatDPayload
    | NatOAPayload
    | UnknownPayload
)

_OPAQUE: dict[int, type[KEPayload | HashPayload | SignaturePayload | NoncePayload]] = {
    PayloadType.KE: KEPayload,
    PayloadType.HASH: HashPayload,
    PayloadType.SIGNATURE: SignaturePayload,
    PayloadType.NONCE: NoncePayload,
}


# -- body codecs -------------------------------------------------------------------------


def encode_payload_body(p: Payload) -> bytes:
    """A payload's body without the generic header (what SAi_b and IDii_b hash)."""
    if isinstance(p, SAPayload):
        return encode_sa_body(p)
    if isinstance(p, IDPayload):
        return _ID.pack(p.id_type, p.protocol, p.port) + p.data
    if isinstance(p, CertPayload):
        return bytes([p.encoding]) + p.data
    if isinstance(p, CertRequestPayload):
        return bytes([p.cert_type]) + p.authority
    if isinstance(p, NotifyPayload):
        if len(p.spi) > 255:
            raise ValueError("notify SPI too long")
        return _NOTIFY.pack(p.doi, p.protocol, len(p.spi), p.notify_type) + p.spi + p.data
    if isinstance(p, DeletePayload):
        size = len(p.spis[0]) if p.spis else 0
        if any(len(s) != size for s in p.spis) or size > 255 or len(p.spis) > 0xFFFF:
            raise ValueError("delete SPIs must share one size")
        return _DELETE.pack(p.doi, p.protocol, size, len(p.spis)) + b"".join(p.spis)
    if isinstance(p, NatOAPayload):
        return _NAT_OA.pack(p.id_type) + p.address
    if isinstance(p, UnknownPayload):
        return p.data
    return p.data  # KE, Hash, Signature, Nonce, Vendor ID, NAT-D


def decode_payload(ptype: int, body: bytes, offset: int = 0) -> Payload:
    """Decode one payload body of type ``ptype``; unknown types come back as UnknownPayload."""
    body = bytes(body)
    opaque = _OPAQUE.get(ptype)
    if opaque is not None:
        return opaque(body)
    if ptype == PayloadType.SA:
        return decode_sa_body(body, offset)
    if ptype == PayloadType.ID:
        return _decode_id(body, offset)
    if ptype == PayloadType.VENDOR_ID:
        return VendorIDPayload(body)
    if ptype in (PayloadType.NAT_D, PayloadType.NAT_D_DRAFT):
        return NatDPayload(body, ptype == PayloadType.NAT_D_DRAFT)
    if ptype in (PayloadType.NAT_OA, PayloadType.NAT_OA_DRAFT):
        return _decode_nat_oa(body, offset, ptype == PayloadType.NAT_OA_DRAFT)
    if ptype == PayloadType.NOTIFICATION:
        return _decode_notify(body, offset)
    if ptype == PayloadType.DELETE:
        return _decode_delete(body, offset)
    if ptype in (PayloadType.CERT, PayloadType.CERT_REQUEST):
        if not body:
            raise ParseError("empty certificate payload", offset)
        if ptype == PayloadType.CERT:
            return CertPayload(body[0], body[1:])
        return CertRequestPayload(body[0], body[1:])
    return UnknownPayload(ptype, body)


def _decode_id(body: bytes, offset: int) -> IDPayload:
    if len(body) < _ID.size:
        raise ParseError("truncated ID payload", offset)
    kind, protocol, port = _ID.unpack_from(body)
    data = body[_ID.size :]
    want = _ID_LENGTHS.get(kind)
    if want is not None and len(data) != want:
        raise ParseError(f"ID type {kind} needs {want} bytes, has {len(data)}", offset)
    ident = IDPayload(kind, data, protocol, port)
    try:
        if kind in (IDType.IPV4_ADDR_SUBNET, IDType.IPV6_ADDR_SUBNET):
            ident.network()  # RFC 2407 4.6.2.1: the mask must be a prefix
        elif kind in (IDType.IPV4_ADDR_RANGE, IDType.IPV6_ADDR_RANGE):
            a, b = ident.address_range()
            if int(a) > int(b):
                raise ValueError("range end before its start")
    except ValueError as e:
        raise ParseError(f"bad ID value: {e}", offset + _ID.size) from None
    return ident


def _decode_nat_oa(body: bytes, offset: int, draft: bool) -> NatOAPayload:
    if len(body) < _NAT_OA.size:
        raise ParseError("truncated NAT-OA payload", offset)
    (kind,) = _NAT_OA.unpack_from(body)
    addr = body[_NAT_OA.size :]
    want = {IDType.IPV4_ADDR: 4, IDType.IPV6_ADDR: 16}.get(kind)
    if want is None or len(addr) != want:
        raise ParseError(f"bad NAT-OA (ID type {kind}, {len(addr)} bytes)", offset)
    return NatOAPayload(kind, addr, draft)


def _decode_notify(body: bytes, offset: int) -> NotifyPayload:
    if len(body) < _NOTIFY.size:
        raise ParseError("truncated notification payload", offset)
    doi, protocol, spi_size, kind = _NOTIFY.unpack_from(body)
    end = _NOTIFY.size + spi_size
    if end > len(body):
        raise ParseError("notification SPI past its end", offset)
    return NotifyPayload(kind, body[_NOTIFY.size : end], body[end:], protocol, doi)


def _decode_delete(body: bytes, offset: int) -> DeletePayload:
    if len(body) < _DELETE.size:
        raise ParseError("truncated delete payload", offset)
    doi, protocol, size, count = _DELETE.unpack_from(body)
    data = body[_DELETE.size :]
    if len(data) != size * count or (count and not size):
        raise ParseError(f"delete payload: {count} SPIs of {size} bytes in {len(data)}", offset)
    spis = tuple(data[i * size : (i + 1) * size] for i in range(count))
    return DeletePayload(protocol, spis, doi)
