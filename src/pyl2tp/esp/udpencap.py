"""UDP encapsulation of ESP for NAT traversal (RFC 3948), sans-I/O helpers.

On port 4500 one socket carries three things (RFC 3948 2): IKE messages behind a
4-byte non-ESP marker of zeros, NAT-keepalives (one byte 0xFF), and ESP packets (the
UDP payload starts at the SPI, never 0). In transport mode the inner UDP checksum was
computed by the peer over addresses a NAT has since rewritten; after decapsulation it is
fixed up from the NAT-OA addresses or zeroed (RFC 3948 3.1.2, RFC 3947 5.2).
"""

from __future__ import annotations

import struct
from typing import Literal

from pyl2tp.errors import ParseError
from pyl2tp.wire.esp import ESP_HEADER, UDP_HEADER, ones_sum, pack_addr

__all__ = [
    "IKE_MARKER",
    "IKE_PORT",
    "KEEPALIVE_INTERVAL",
    "NAT_KEEPALIVE",
    "NAT_T_PORT",
    "Kind",
    "classify_4500",
    "fix_transport_checksum",
    "keepalive",
    "unwrap_ike",
    "wrap_ike",
]

IKE_PORT = 500
NAT_T_PORT = 4500  # RFC 3948 2 / RFC 3947 4: IKE and ESP after NAT detection
IKE_MARKER = b"\0\0\0\0"  # RFC 3948 2.2: the non-ESP marker, where an SPI would be
NAT_KEEPALIVE = b"\xff"  # RFC 3948 2.3: one octet 0xFF
KEEPALIVE_INTERVAL = 20.0  # RFC 3948 4: the default keepalive period, in seconds

Kind = Literal["ike", "esp", "keepalive", "invalid"]

_CHECKSUM = struct.Struct("!H")
_CHECKSUM_OFFSET = 6  # in the UDP header


def classify_4500(datagram: bytes) -> Kind:
    """What a UDP/4500 payload is: IKE (non-ESP marker), ESP, a NAT-keepalive, or invalid.

    RFC 3948 2.2: an SPI of zero marks a non-ESP (IKE) message; anything shorter than
    an ESP header that is not the one-byte keepalive is invalid.
    """
    size = len(datagram)
    if size == 1:
        return "keepalive" if datagram[0] == 0xFF else "invalid"
    if size < ESP_HEADER.size:
        return "invalid"
    if datagram[:4] == IKE_MARKER:
        return "ike"
    return "esp"


def keepalive() -> bytes:
    """The NAT-keepalive payload (RFC 3948 2.3)."""
    return NAT_KEEPALIVE


def wrap_ike(message: bytes) -> bytes:
    """An IKE message as sent on port 4500: non-ESP marker + message (RFC 3948 2.2)."""
    return IKE_MARKER + message


def unwrap_ike(datagram: bytes) -> bytes:
    """The IKE message of a port-4500 datagram; ParseError without the non-ESP marker."""
    if len(datagram) < ESP_HEADER.size or datagram[:4] != IKE_MARKER:
        raise ParseError("no non-ESP marker on a port-4500 IKE datagram", 0)
    return datagram[4:]


def fix_transport_checksum(segment: bytes, src: str | bytes, dst: str | bytes,
                           orig_src: str | bytes | None = None,
                           orig_dst: str | bytes | None = None) -> bytes:
    """The decrypted transport-mode UDP ``segment`` with a checksum valid for ``src``/``dst``.

    RFC 3948 3.1.2: with the peer's original addresses from NAT-OA (``orig_src``, and
    ``orig_dst`` if our own address was translated too) the checksum is updated
    incrementally (RFC 1624); without them it is set to zero, which UDP over IPv4
    allows. A zero checksum stays zero.
    """
    if len(segment) < UDP_HEADER.size:
        raise ParseError("UDP header truncated", len(segment))
    checksum = _CHECKSUM.unpack_from(segment, _CHECKSUM_OFFSET)[0]
    if checksum == 0:
        return segment
    if orig_src is None:
        new = 0
    else:
        old_sum = ones_sum(pack_addr(orig_src) + pack_addr(orig_dst if orig_dst else dst))
        new_sum = ones_sum(pack_addr(src) + pack_addr(dst))
        # The whole sum must stay 0 (mod 0xFFFF): move the difference into the checksum.
        new = (checksum + old_sum - new_sum) % 0xFFFF or 0xFFFF
    return segment[:_CHECKSUM_OFFSET] + _CHECKSUM.pack(new) + segment[_CHECKSUM_OFFSET + 2:]
