"""PPP codec (RFC 1661, RFC 1662 framing as carried by L2TP): frames, control packets, options.

Pure functions, no state. A PPP frame inside an L2TP data message is the HDLC-like
Address/Control pair FF 03 (omitted under ACFC), the Protocol field (one byte under PFC)
and the Information field. Control protocols (LCP, IPCP, IPv6CP, CCP) share one packet
layout, Code/Identifier/Length/Data (RFC 1661 5), and one option layout, Type/Length/Data
(RFC 1661 6).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from pyl2tp.errors import ParseError

__all__ = [
    "ADDRESS_CONTROL",
    "CP_HEADER_LEN",
    "IPV4_HEADER",
    "IPV6_HEADER",
    "CPPacket",
    "Code",
    "IPCPOption",
    "IPV6CPOption",
    "LCPOption",
    "Option",
    "PPPProtocol",
    "decode_cp",
    "decode_frame",
    "decode_options",
    "echo_data",
    "encode_cp",
    "encode_frame",
    "encode_options",
    "frame_ip",
    "frame_ipv4",
    "frame_ipv6",
    "frame_protocol",
    "option_u16",
    "option_u32",
    "parse_echo",
    "parse_protocol_reject",
    "protocol_reject_data",
    "u16_option",
    "u32_option",
]


class PPPProtocol(IntEnum):
    """PPP Protocol field values (RFC 1661 2, IANA PPP DLL protocol numbers)."""

    IPV4 = 0x0021
    IPV6 = 0x0057
    LCP = 0xC021
    PAP = 0xC023
    LQR = 0xC025
    CHAP = 0xC223
    EAP = 0xC227
    IPCP = 0x8021
    IPV6CP = 0x8057
    CCP = 0x80FD


class Code(IntEnum):
    """Control packet codes (RFC 1661 5). NCPs use 1..7 only."""

    CONFIGURE_REQUEST = 1
    CONFIGURE_ACK = 2
    CONFIGURE_NAK = 3
    CONFIGURE_REJECT = 4
    TERMINATE_REQUEST = 5
    TERMINATE_ACK = 6
    CODE_REJECT = 7
    PROTOCOL_REJECT = 8
    ECHO_REQUEST = 9
    ECHO_REPLY = 10
    DISCARD_REQUEST = 11


class LCPOption(IntEnum):
    """LCP configuration option types (RFC 1661 6, RFC 1570, RFC 1990)."""

    MRU = 1
    ACCM = 2  # RFC 1662 7.1
    AUTH_PROTOCOL = 3
    QUALITY_PROTOCOL = 4
    MAGIC_NUMBER = 5
    PFC = 7
    ACFC = 8
    FCS_ALTERNATIVES = 9
    CALLBACK = 13
    MRRU = 17  # RFC 1990 (multilink)
    SHORT_SEQUENCE = 18
    ENDPOINT_DISCRIMINATOR = 19


class IPCPOption(IntEnum):
    """IPCP configuration option types (RFC 1332, RFC 1877)."""

    IP_ADDRESSES = 1  # deprecated (RFC 1172)
    IP_COMPRESSION = 2
    IP_ADDRESS = 3
    PRIMARY_DNS = 129
    PRIMARY_NBNS = 130
    SECONDARY_DNS = 131
    SECONDARY_NBNS = 132


class IPV6CPOption(IntEnum):
    """IPv6CP configuration option types (RFC 5072 4)."""

    INTERFACE_IDENTIFIER = 1
    IPV6_COMPRESSION = 2


ADDRESS_CONTROL = b"\xff\x03"
# Hot path: the full (uncompressed) header in front of an IP packet.
IPV4_HEADER = b"\xff\x03\x00\x21"
IPV6_HEADER = b"\xff\x03\x00\x57"

_CP_HEADER = struct.Struct("!BBH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
CP_HEADER_LEN = _CP_HEADER.size


@dataclass(slots=True, frozen=True)
class CPPacket:
    """A control-protocol packet: Code, Identifier and Data (Length is derived)."""

    code: int
    identifier: int
    data: bytes = b""


@dataclass(slots=True, frozen=True)
class Option:
    """One configuration option: Type and Data (Length is derived)."""

    type: int
    data: bytes = b""


# ---------------------------------------------------------------- frames


def frame_protocol(frame: bytes | bytearray | memoryview) -> tuple[int, int]:
    """Return (protocol, offset of the Information field) without copying.

    Accepts FF 03 or its absence (ACFC, RFC 1661 6.6) and a one-byte Protocol field
    (PFC, RFC 1661 6.5).
    """
    n = len(frame)
    i = 2 if n >= 2 and frame[0] == 0xFF and frame[1] == 0x03 else 0
    if i >= n:
        raise ParseError("PPP frame: no protocol field", i)
    first = frame[i]
    # RFC 1661 2: the Protocol field ends with the octet whose least significant bit is 1;
    # the most significant octet of a two-octet value has its low bit 0.
    if first & 1:
        return first, i + 1
    if i + 2 > n:
        raise ParseError("PPP frame: truncated protocol field", i)
    second = frame[i + 1]
    if not second & 1:
        raise ParseError(f"PPP frame: invalid protocol 0x{first:02x}{second:02x}", i)
    return (first << 8) | second, i + 2


def decode_frame(frame: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """(protocol, payload) of a PPP frame; ParseError if empty, short or invalid."""
    protocol, offset = frame_protocol(frame)
    return protocol, bytes(frame[offset:])


def encode_frame(protocol: int, payload: bytes, *, acfc: bool = False,
                 pfc: bool = False) -> bytes:
    """A PPP frame: FF 03 (unless acfc), Protocol (one byte if pfc allows), payload.

    LCP is always sent in full (RFC 1661 6.5, 6.6: never compress LCP packets).
    """
    if not 0 <= protocol <= 0xFFFF or not protocol & 1 or protocol & 0x100:
        raise ValueError(f"invalid PPP protocol 0x{protocol:04x}")
    if protocol == PPPProtocol.LCP:
        return ADDRESS_CONTROL + _U16.pack(protocol) + payload
    head = b"" if acfc else ADDRESS_CONTROL
    if pfc and protocol < 0x100:
        return head + bytes((protocol,)) + payload
    return head + _U16.pack(protocol) + payload


def frame_ipv4(packet: bytes) -> bytes:
    """An IPv4 packet in a full PPP frame (FF 03 00 21)."""
    return IPV4_HEADER + packet


def frame_ipv6(packet: bytes) -> bytes:
    """An IPv6 packet in a full PPP frame (FF 03 00 57)."""
    return IPV6_HEADER + packet


def frame_ip(packet: bytes, *, acfc: bool = False, pfc: bool = False) -> bytes:
    """An IP packet (version from its first nibble) in a PPP frame."""
    if not packet:
        raise ValueError("empty IP packet")
    version = packet[0] >> 4
    if version == 4:
        protocol = PPPProtocol.IPV4
        full = IPV4_HEADER
    elif version == 6:
        protocol = PPPProtocol.IPV6
        full = IPV6_HEADER
    else:
        raise ValueError(f"not an IP packet (version {version})")
    if not acfc and not pfc:
        return full + packet
    return encode_frame(protocol, packet, acfc=acfc, pfc=pfc)


# ---------------------------------------------------------------- control packets


def decode_cp(payload: bytes | bytearray | memoryview) -> CPPacket:
    """Decode Code/Identifier/Length/Data (RFC 1661 5).

    ParseError if shorter than 4 bytes or Length is < 4 or beyond the payload. Bytes after
    Length are padding and ignored (RFC 1661 5: "Octets outside the range of the Length
    field are treated as padding").
    """
    if len(payload) < CP_HEADER_LEN:
        raise ParseError("PPP control packet: shorter than its header", 0)
    code, identifier, length = _CP_HEADER.unpack_from(payload, 0)
    if length < CP_HEADER_LEN:
        raise ParseError(f"PPP control packet: Length {length} < 4", 2)
    if length > len(payload):
        raise ParseError(f"PPP control packet: Length {length} beyond {len(payload)} bytes", 2)
    return CPPacket(code, identifier, bytes(payload[CP_HEADER_LEN:length]))


def encode_cp(packet: CPPacket) -> bytes:
    """Encode a control packet; ValueError if it cannot fit a 16-bit Length."""
    length = CP_HEADER_LEN + len(packet.data)
    if length > 0xFFFF:
        raise ValueError("PPP control packet too long")
    return _CP_HEADER.pack(packet.code & 0xFF, packet.identifier & 0xFF, length) + packet.data


# ---------------------------------------------------------------- options


def decode_options(data: bytes | bytearray | memoryview) -> list[Option]:
    """Decode a Type/Length/Data list (RFC 1661 6); ParseError on Length < 2 or overrun."""
    options: list[Option] = []
    i = 0
    n = len(data)
    while i < n:
        if i + 2 > n:
            raise ParseError("PPP option: truncated header", i)
        length = data[i + 1]
        if length < 2:
            raise ParseError(f"PPP option: Length {length} < 2", i + 1)
        if i + length > n:
            # RFC 1661 6: data beyond the Information field: discard the packet.
            raise ParseError(f"PPP option: Length {length} overruns the packet", i + 1)
        options.append(Option(data[i], bytes(data[i + 2:i + length])))
        i += length
    return options


def encode_options(options: Iterable[Option]) -> bytes:
    """Encode options; ValueError if one is longer than 255 bytes."""
    out = bytearray()
    for opt in options:
        length = 2 + len(opt.data)
        if length > 0xFF:
            raise ValueError(f"PPP option {opt.type}: too long ({length})")
        out += bytes((opt.type & 0xFF, length))
        out += opt.data
    return bytes(out)


def u16_option(type_: int, value: int) -> Option:
    """An option whose data is one 16-bit value (MRU, MRRU)."""
    return Option(type_, _U16.pack(value))


def u32_option(type_: int, value: int) -> Option:
    """An option whose data is one 32-bit value (ACCM, Magic-Number)."""
    return Option(type_, _U32.pack(value))


def option_u16(opt: Option) -> int | None:
    """The 16-bit value of an option, or None if its data is not 2 bytes."""
    return _U16.unpack(opt.data)[0] if len(opt.data) == 2 else None


def option_u32(opt: Option) -> int | None:
    """The 32-bit value of an option, or None if its data is not 4 bytes."""
    return _U32.unpack(opt.data)[0] if len(opt.data) == 4 else None


# ---------------------------------------------------------------- LCP data fields


def echo_data(magic: int, data: bytes = b"") -> bytes:
    """Data of an Echo-Request/Reply or Discard-Request: Magic-Number then data (RFC 1661 5.8)."""
    return _U32.pack(magic & 0xFFFFFFFF) + data


def parse_echo(data: bytes) -> tuple[int, bytes]:
    """(magic, rest) of an Echo/Discard packet's data; ParseError if under 4 bytes."""
    if len(data) < 4:
        raise ParseError("LCP echo: no Magic-Number", 4)
    return _U32.unpack_from(data, 0)[0], data[4:]


def protocol_reject_data(protocol: int, information: bytes) -> bytes:
    """Data of a Protocol-Reject: Rejected-Protocol then Rejected-Information (RFC 1661 5.7)."""
    return _U16.pack(protocol & 0xFFFF) + information


def parse_protocol_reject(data: bytes) -> tuple[int, bytes]:
    """(rejected protocol, rejected information); ParseError if under 2 bytes."""
    if len(data) < 2:
        raise ParseError("LCP Protocol-Reject: no Rejected-Protocol", 4)
    return _U16.unpack_from(data, 0)[0], data[2:]
