"""ESP wire format (RFC 4303) and the inner UDP header of transport-mode L2TP.

Codecs only, no state and no keys. An ESP packet is
``SPI | Sequence Number | IV | E(payload | Padding | Pad Length | Next Header) | ICV``
(RFC 4303 2); the SA objects in :mod:`pyl2tp.esp.sa` do the cryptography.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from pyl2tp.errors import ParseError

__all__ = [
    "ESP_HEADER",
    "ESP_PROTO",
    "L2TP_PORT",
    "MAX_SEQ",
    "PAD_BYTES",
    "UDP_HEADER",
    "NextHeader",
    "UDPDatagram",
    "build_trailer",
    "decode_header",
    "decode_udp",
    "encode_header",
    "encode_udp",
    "ones_sum",
    "pack_addr",
    "pad_length",
    "strip_trailer",
    "transport_inner",
    "transport_strip",
    "udp_checksum",
]

ESP_PROTO = 50  # IP protocol number of ESP (RFC 4303 2)
L2TP_PORT = 1701
MAX_SEQ = 0xFFFFFFFF  # RFC 4303 2.2: 32-bit counter; without ESN it must never cycle

ESP_HEADER = struct.Struct("!II")  # SPI, Sequence Number
UDP_HEADER = struct.Struct("!HHHH")  # source port, destination port, length, checksum
_PSEUDO_TAIL4 = struct.Struct("!BBH")  # zero, protocol, UDP length (RFC 768)
_PSEUDO_TAIL6 = struct.Struct("!IxxxB")  # upper-layer length, zero, next header (RFC 8200 8.1)

# RFC 4303 2.4: the default padding is the byte sequence 1, 2, 3, ...; at most 255 bytes.
PAD_BYTES = bytes(range(1, 256))


class NextHeader(IntEnum):
    """Values of the ESP Next Header field (IANA protocol numbers) that we use."""

    IPV4 = 4  # tunnel mode, an IPv4 packet inside
    TCP = 6
    UDP = 17  # transport mode L2TP
    IPV6 = 41  # tunnel mode, an IPv6 packet inside
    NO_NEXT_HEADER = 59  # RFC 4303 2.6: a dummy (TFC) packet, to be discarded


def encode_header(spi: int, seq: int) -> bytes:
    """The 8-byte ESP header."""
    return ESP_HEADER.pack(spi, seq)


def decode_header(packet: bytes | memoryview) -> tuple[int, int]:
    """(SPI, sequence number) of an ESP packet; ParseError if shorter than the header."""
    if len(packet) < ESP_HEADER.size:
        raise ParseError("ESP packet shorter than its 8-byte header", len(packet))
    spi, seq = ESP_HEADER.unpack_from(packet)
    return spi, seq


def pad_length(payload_len: int, align: int) -> int:
    """Padding needed so that payload, Pad Length and Next Header end on ``align`` bytes.

    RFC 4303 2.4: the ciphertext must fill whole cipher blocks and the trailer must end
    on a 4-byte boundary; ``align`` is the larger of the two (4 for AES-GCM).
    """
    return -(payload_len + 2) % align


def build_trailer(payload_len: int, align: int, next_header: int) -> bytes:
    """Padding (1, 2, 3...), Pad Length and Next Header for a payload of that length."""
    padlen = -(payload_len + 2) % align
    return PAD_BYTES[:padlen] + bytes((padlen, next_header))


def strip_trailer(plaintext: bytes) -> tuple[int, bytes]:
    """(next header, payload) from decrypted ESP data; ParseError on a bad trailer.

    RFC 4303 2.4: Pad Length must leave room for itself and Next Header, and the
    padding bytes must be 1, 2, 3... (the receiver SHOULD inspect them).
    """
    size = len(plaintext)
    if size < 2:
        raise ParseError("ESP trailer missing", size)
    padlen = plaintext[-2]
    end = size - 2 - padlen
    if end < 0:
        raise ParseError(f"ESP Pad Length {padlen} exceeds the data", size - 2)
    if plaintext[end:-2] != PAD_BYTES[:padlen]:
        raise ParseError("ESP padding bytes are not 1, 2, 3...", end)
    return plaintext[-1], plaintext[:end]


@lru_cache(maxsize=1024)
def _packed(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed


def pack_addr(addr: str | bytes) -> bytes:
    """An IPv4/IPv6 address as 4 or 16 bytes (strings are parsed once and cached)."""
    if isinstance(addr, bytes):
        if len(addr) not in (4, 16):
            raise ValueError(f"packed address must be 4 or 16 bytes, not {len(addr)}")
        return addr
    return _packed(addr)


def ones_sum(data: bytes) -> int:
    """The 16-bit one's-complement sum of ``data`` reduced modulo 0xFFFF (RFC 1071).

    2**16 = 1 (mod 0xFFFF), so the big-endian integer of the data is congruent to the sum
    of its 16-bit words: one int conversion instead of a loop over words. The result is
    0 for a sum of 0 or 0xFFFF (both mean "all ones" once folded).
    """
    if len(data) & 1:
        data += b"\0"
    return int.from_bytes(data, "big") % 0xFFFF


def _pseudo_header(src: bytes, dst: bytes, length: int) -> bytes:
    if len(src) == 4:
        return src + dst + _PSEUDO_TAIL4.pack(0, NextHeader.UDP, length)
    return src + dst + _PSEUDO_TAIL6.pack(length, NextHeader.UDP)


def udp_checksum(src: str | bytes, dst: str | bytes, segment: bytes) -> int:
    """The UDP checksum of ``segment`` (header with checksum 0, then data), never 0.

    RFC 768: a computed checksum of zero is transmitted as all ones, 0 meaning "none".
    """
    residue = ones_sum(_pseudo_header(pack_addr(src), pack_addr(dst), len(segment)) + segment)
    return 0xFFFF - residue if residue else 0xFFFF


def encode_udp(src: str | bytes, dst: str | bytes, sport: int, dport: int, payload: bytes,
               *, checksum: bool = True) -> bytes:
    """A UDP header plus payload; the checksum is computed unless ``checksum`` is False.

    Over IPv4 a zero checksum means "no checksum" (RFC 768); over IPv6 it is mandatory.
    """
    length = UDP_HEADER.size + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram of {length} bytes is too long")
    segment = UDP_HEADER.pack(sport, dport, length, 0) + payload
    if not checksum and len(pack_addr(src)) == 4:
        return segment
    csum = udp_checksum(src, dst, segment)
    return UDP_HEADER.pack(sport, dport, length, csum) + payload


@dataclass(slots=True)
class UDPDatagram:
    """A decoded UDP header and its payload; ``checksum`` 0 means none was sent."""

    sport: int
    dport: int
    payload: bytes
    checksum: int


def decode_udp(segment: bytes, src: str | bytes | None = None, dst: str | bytes | None = None,
               *, verify: bool = False) -> UDPDatagram:
    """Decode a UDP header; with ``verify`` (and addresses) a non-zero checksum is checked.

    ParseError for a short segment, a Length field that does not match, or a bad checksum.
    """
    size = len(segment)
    if size < UDP_HEADER.size:
        raise ParseError("UDP header truncated", size)
    sport, dport, length, csum = UDP_HEADER.unpack_from(segment)
    if length != size:
        # Inside ESP the datagram is exactly the ESP payload: a different Length is corrupt.
        raise ParseError(f"UDP Length {length} but {size} bytes", 4)
    if verify and csum:
        if src is None or dst is None:
            raise ValueError("verifying a UDP checksum needs both addresses")
        if ones_sum(_pseudo_header(pack_addr(src), pack_addr(dst), size) + segment):
            raise ParseError("UDP checksum mismatch", 6)
    return UDPDatagram(sport, dport, segment[UDP_HEADER.size:], csum)


def transport_inner(ip_src: str | bytes, ip_dst: str | bytes, payload: bytes, *,
                    sport: int = L2TP_PORT, dport: int = L2TP_PORT,
                    checksum: bool = True) -> bytes:
    """The ESP payload of transport-mode L2TP: UDP (1701 -> 1701 by default) + ``payload``.

    ``ip_src``/``ip_dst`` are the addresses of the packet that will carry the ESP packet;
    with NAT-T the peer fixes the checksum up or ignores it (RFC 3948 3.1.2).
    """
    return encode_udp(ip_src, ip_dst, sport, dport, payload, checksum=checksum)


def transport_strip(inner: bytes, ip_src: str | bytes | None = None,
                    ip_dst: str | bytes | None = None, *,
                    verify: bool = False) -> UDPDatagram:
    """The UDP datagram of a decrypted transport-mode ESP payload (next header 17).

    The checksum is only checked with ``verify``: ESP already authenticated the bytes and,
    behind a NAT, the peer computed it over addresses we do not see (RFC 3948 3.1.2).
    """
    return decode_udp(inner, ip_src, ip_dst, verify=verify)
