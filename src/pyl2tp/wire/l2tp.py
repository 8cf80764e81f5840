"""L2TPv2 wire codec (RFC 2661): control messages, hidden AVPs, tunnel auth, data messages.

Sans-I/O: bytes in, values out, and back. Randomness for hidden AVPs comes only from the
caller's ``random_bytes``. AVP tables and typed values are in :mod:`.l2tp_avp`, data
messages in :mod:`.l2tp_data`; everything is re-exported here.

Judging AVPs (unknown mandatory ones, missing ones, wrong M bits) is the tunnel's job:
:func:`decode_control` only checks the framing, see :func:`unknown_mandatory`.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyl2tp.errors import ParseError
from pyl2tp.wire.l2tp_avp import (
    AVP,
    MAX_AVP_VALUE,
    ACCMValue,
    AVPInfo,
    AVPType,
    BearerCap,
    CallErrors,
    CDNResult,
    ErrorCode,
    FramingCap,
    MessageType,
    ProtocolVersion,
    ProxyAuthenID,
    ProxyAuthenType,
    Q931Cause,
    ResultCodeValue,
    StopCCNResult,
    ValueKind,
    avp,
    avp_info,
    decode_value,
    encode_value,
)
from pyl2tp.wire.l2tp_data import (
    FLAG_L,
    FLAG_O,
    FLAG_P,
    FLAG_S,
    FLAG_T,
    DataMessage,
    check_version,
    data_header,
    data_payload_bounds,
    data_payload_offset,
    decode_data,
    encode_data,
)

__all__ = [
    "AVP",
    "CONTROL_HEADER_LEN",
    "FLAG_L",
    "FLAG_O",
    "FLAG_P",
    "FLAG_S",
    "FLAG_T",
    "MAX_AVP_VALUE",
    "ACCMValue",
    "AVPInfo",
    "AVPType",
    "BearerCap",
    "CDNResult",
    "CallErrors",
    "ControlMessage",
    "DataMessage",
    "ErrorCode",
    "FramingCap",
    "MessageType",
    "ProtocolVersion",
    "ProxyAuthenID",
    "ProxyAuthenType",
    "Q931Cause",
    "ResultCodeValue",
    "StopCCNResult",
    "ValueKind",
    "avp",
    "avp_info",
    "challenge_response",
    "data_header",
    "data_payload_bounds",
    "data_payload_offset",
    "decode_control",
    "decode_data",
    "decode_value",
    "encode_control",
    "encode_data",
    "encode_value",
    "hide_value",
    "message",
    "peek",
    "reveal_value",
    "unknown_mandatory",
]

CONTROL_HEADER_LEN = 12
# RFC 2661 3.1: control messages have T, L and S set, O and P clear, Ver 2.
_CONTROL_FLAGS = FLAG_T | FLAG_L | FLAG_S | 2
_CONTROL_HDR = struct.Struct("!HHHHHH")  # flags, length, tunnel, session, ns, nr
_AVP_HDR = struct.Struct("!HHH")  # M|H|rsvd|length, vendor, type
_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")
_AVP_M = 0x8000
_AVP_H = 0x4000
_AVP_RESERVED = 0x3C00
_AVP_LEN_MASK = 0x03FF
_AVP_HDR_LEN = 6
_MSG_TYPE_AVP_LEN = 8
_RV_LEN = 16  # RFC 2661 4.4.1 recommends at least 16 octets
_MAX_PAD = 15


@dataclass(slots=True)
class ControlMessage:
    """A control message: header fields and its AVPs in wire order (empty list = ZLB ack)."""

    tunnel_id: int
    session_id: int
    ns: int = 0
    nr: int = 0
    avps: list[AVP] = field(default_factory=list)

    @property
    def is_zlb(self) -> bool:
        """True for a Zero-Length Body acknowledgement (RFC 2661 5.8)."""
        return not self.avps

    @property
    def msg_type(self) -> int | None:
        """The Message Type (first AVP, RFC 2661 4.4.1); None for a ZLB."""
        if not self.avps:
            return None
        first = self.avps[0]
        if first.vendor != 0 or first.type != AVPType.MESSAGE_TYPE or len(first.value) != 2:
            return None
        return int(_U16.unpack(first.value)[0])

    def find(self, avp_type: int, vendor: int = 0) -> AVP | None:
        """First AVP with this type and vendor, or None."""
        for a in self.avps:
            if a.type == avp_type and a.vendor == vendor:
                return a
        return None

    def get(self, avp_type: AVPType) -> object | None:
        """Typed value of the first IETF AVP of this type; None if absent, ParseError if bad."""
        a = self.find(avp_type)
        return None if a is None else decode_value(a)


def message(msg_type: MessageType, tunnel_id: int, session_id: int,
            avps: Iterable[AVP]) -> ControlMessage:
    """A control message with a Message Type AVP (M=1) put in front of ``avps``."""
    first = AVP(AVPType.MESSAGE_TYPE, encode_value(AVPType.MESSAGE_TYPE, int(msg_type)))
    return ControlMessage(tunnel_id, session_id, avps=[first, *avps])


def _md5(*parts: bytes) -> bytes:
    h = hashlib.md5(usedforsecurity=False)
    for p in parts:
        h.update(p)
    return h.digest()


def challenge_response(msg_type: int, secret: bytes, challenge: bytes) -> bytes:
    """Tunnel authentication response, RFC 2661 4.4.3 / 5.1.1.

    CHAP-style MD5(ID + secret + challenge) where ID is the Message Type of the message
    carrying the response: 2 in SCCRP, 3 in SCCCN.
    """
    return _md5(bytes((msg_type & 0xFF,)), secret, challenge)


def _xor_chain(avp_type: int, data: bytes, secret: bytes, random_vector: bytes,
               hiding: bool) -> bytes:
    # RFC 2661 4.3: b1 = MD5(type + S + RV), c1 = p1 xor b1; bi = MD5(S + c(i-1)), ci = pi xor bi.
    out = bytearray(len(data))
    key = _md5(_U16.pack(avp_type & 0xFFFF), secret, random_vector)
    for i in range(0, len(data), 16):
        chunk = data[i:i + 16]
        for j, byte in enumerate(chunk):
            out[i + j] = byte ^ key[j]
        cipher = bytes(out[i:i + 16]) if hiding else chunk
        key = _md5(secret, cipher)
    return bytes(out)


def hide_value(avp_type: int, value: bytes, secret: bytes, random_vector: bytes,
               padding: bytes) -> bytes:
    """The hidden form of a value (RFC 2661 4.3): 2-byte length + value + padding, MD5-chained."""
    if len(value) > 0xFFFF:
        raise ValueError("value too long to hide")
    subformat = _U16.pack(len(value)) + bytes(value) + bytes(padding)
    return _xor_chain(avp_type, subformat, secret, random_vector, hiding=True)


def reveal_value(avp_type: int, hidden: bytes, secret: bytes, random_vector: bytes) -> bytes:
    """The clear value of a hidden AVP (RFC 2661 4.3); ParseError if its inner length is bad."""
    if len(hidden) < 2:
        raise ParseError(f"hidden AVP {avp_type}: value shorter than its 2-byte length field")
    subformat = _xor_chain(avp_type, bytes(hidden), secret, random_vector, hiding=False)
    orig_len = _U16.unpack_from(subformat)[0]
    if orig_len > len(subformat) - 2:
        raise ParseError(f"hidden AVP {avp_type}: original length {orig_len} exceeds "
                         f"its {len(subformat) - 2} bytes")
    return subformat[2:2 + orig_len]


def _pack_avp(a: AVP, value: bytes) -> bytes:
    if len(value) > MAX_AVP_VALUE:
        raise ValueError(f"AVP {a.type} (vendor {a.vendor}): value of {len(value)} bytes "
                         f"exceeds {MAX_AVP_VALUE}")
    if not (0 <= a.type <= 0xFFFF and 0 <= a.vendor <= 0xFFFF):
        raise ValueError(f"AVP type {a.type} / vendor {a.vendor} out of range")
    bits = (_AVP_M if a.mandatory else 0) | (_AVP_H if a.hidden else 0)
    return _AVP_HDR.pack(bits | (_AVP_HDR_LEN + len(value)), a.vendor, a.type) + value


def encode_control(msg: ControlMessage, *, secret: bytes | None = None,
                   random_bytes: Callable[[int], bytes] | None = None) -> bytes:
    """Encode a control message (T, L, S set, Ver 2; RFC 2661 3.1).

    AVPs with ``hidden=True`` are hidden (RFC 2661 4.3) with ``secret``; a Random Vector
    AVP of 16 ``random_bytes`` goes right before the first hidden AVP unless one already
    precedes it. Each hidden AVP gets 0..15 bytes of random padding. ValueError on misuse.
    """
    for name, v in (("tunnel_id", msg.tunnel_id), ("session_id", msg.session_id),
                    ("ns", msg.ns), ("nr", msg.nr)):
        if not 0 <= v <= 0xFFFF:
            raise ValueError(f"{name} {v} out of range 0..65535")
    avps = msg.avps
    if avps:
        first = avps[0]
        # RFC 2661 4.4.1: the Message Type AVP comes first, is never hidden and is 8 bytes long.
        if first.vendor != 0 or first.type != AVPType.MESSAGE_TYPE or first.hidden \
                or len(first.value) != 2:
            raise ValueError("first AVP must be a clear 2-byte Message Type AVP")
    if any(a.hidden for a in avps) and (secret is None or random_bytes is None):
        raise ValueError("hidden AVPs need a secret and random_bytes")
    parts: list[bytes] = [b""]
    random_vector: bytes | None = None
    for a in avps:
        value = a.value
        if a.hidden and secret is not None and random_bytes is not None:
            info = avp_info(a.type) if a.vendor == 0 else None
            if info is not None and not info.hideable:
                raise ValueError(f"RFC 2661 4.4 forbids hiding AVP {AVPType(a.type).name}")
            if random_vector is None:
                random_vector = bytes(random_bytes(_RV_LEN))
                if len(random_vector) != _RV_LEN:
                    raise ValueError("random_bytes returned the wrong number of bytes")
                rv_avp = AVP(AVPType.RANDOM_VECTOR, random_vector)
                parts.append(_pack_avp(rv_avp, random_vector))
            room = MAX_AVP_VALUE - 2 - len(value)
            if room < 0:
                raise ValueError(f"AVP {a.type}: value too long to hide")
            pad_len = min(random_bytes(1)[0] & _MAX_PAD, room)
            padding = bytes(random_bytes(pad_len)) if pad_len else b""
            value = hide_value(a.type, value, secret, random_vector, padding)
        elif a.vendor == 0 and a.type == AVPType.RANDOM_VECTOR:
            random_vector = bytes(value)
        parts.append(_pack_avp(a, bytes(value)))
    length = CONTROL_HEADER_LEN + sum(len(p) for p in parts)
    if length > 0xFFFF:
        raise ValueError(f"control message of {length} bytes is too long")
    parts[0] = _CONTROL_HDR.pack(_CONTROL_FLAGS, length, msg.tunnel_id, msg.session_id,
                                 msg.ns, msg.nr)
    return b"".join(parts)


def decode_control(data: bytes | memoryview, *, secret: bytes | None = None) -> ControlMessage:
    """Decode a control message; ParseError if the framing is broken.

    Hidden AVPs are revealed with ``secret`` (their ``value`` is the clear value). Bytes
    beyond the Length field are ignored. Unknown AVPs are kept, not judged.
    """
    mv = memoryview(data)
    n = len(mv)
    if n < 2:
        raise ParseError("control message shorter than its header", n)
    flags = _U16.unpack_from(mv)[0]
    check_version(flags)
    if not flags & FLAG_T:
        raise ParseError("not a control message (T=0)", 0)
    # RFC 2661 3.1: L and S MUST be 1 and O MUST be 0 for control messages.
    if flags & (FLAG_L | FLAG_S) != FLAG_L | FLAG_S:
        raise ParseError("control message without L or S bit", 0)
    if flags & FLAG_O:
        raise ParseError("control message with O bit set", 0)
    if n < CONTROL_HEADER_LEN:
        raise ParseError("control message shorter than its 12-byte header", n)
    _, length, tunnel_id, session_id, ns, nr = _CONTROL_HDR.unpack_from(mv)
    if length < CONTROL_HEADER_LEN:
        raise ParseError(f"Length field {length} shorter than the header", 2)
    if length > n:
        raise ParseError(f"Length field {length} exceeds datagram size {n}", 2)
    return ControlMessage(tunnel_id, session_id, ns, nr, _decode_avps(mv, length, secret))


def _decode_avps(mv: memoryview, end: int, secret: bytes | None) -> list[AVP]:
    avps: list[AVP] = []
    pos = CONTROL_HEADER_LEN
    random_vector: bytes | None = None
    while pos < end:
        if end - pos < _AVP_HDR_LEN:
            raise ParseError("truncated AVP header", pos)
        bits, vendor, avp_type = _AVP_HDR.unpack_from(mv, pos)
        # Deviation: RFC 2661 4.1 says treat an AVP with reserved bits set as unrecognized;
        # we reject the message instead (no peer sets them; a corrupt header is likelier).
        if bits & _AVP_RESERVED:
            raise ParseError("reserved bits set in AVP header", pos)
        length = bits & _AVP_LEN_MASK
        if length < _AVP_HDR_LEN:
            raise ParseError(f"AVP length {length} below 6", pos)
        if pos + length > end:
            raise ParseError(f"AVP length {length} overruns the message", pos)
        hidden = bool(bits & _AVP_H)
        if not avps and (vendor != 0 or avp_type != AVPType.MESSAGE_TYPE or hidden
                         or length != _MSG_TYPE_AVP_LEN):
            # RFC 2661 4.4.1: the first AVP is the clear Message Type AVP, Length 8.
            raise ParseError("first AVP is not a Message Type AVP of length 8", pos)
        value = bytes(mv[pos + _AVP_HDR_LEN:pos + length])
        if hidden:
            if secret is None:
                raise ParseError(f"hidden AVP {avp_type} but no shared secret", pos)
            if random_vector is None:
                # RFC 2661 4.3: a Random Vector AVP MUST precede the first hidden AVP.
                raise ParseError(f"hidden AVP {avp_type} without a preceding Random Vector", pos)
            try:
                value = reveal_value(avp_type, value, secret, random_vector)
            except ParseError as exc:
                raise ParseError(exc.what, pos) from None
        if vendor == 0 and avp_type == AVPType.RANDOM_VECTOR:
            # RFC 2661 4.4.1: a hidden AVP uses the closest preceding Random Vector.
            random_vector = value
        avps.append(AVP(avp_type, value, vendor, bool(bits & _AVP_M), hidden))
        pos += length
    return avps


def unknown_mandatory(msg: ControlMessage) -> AVP | None:
    """First AVP with M=1 that RFC 2661 does not define (any vendor AVP, or an unknown IETF type).

    RFC 2661 4.1: such an AVP tears down the session (session message) or the tunnel.
    """
    for a in msg.avps:
        if a.mandatory and (a.vendor != 0 or avp_info(a.type) is None):
            return a
    return None


def peek(data: bytes | memoryview) -> tuple[bool, int, int]:
    """(is_control, tunnel_id, session_id) from the header alone; ParseError if it is cut short."""
    n = len(data)
    if n < 2:
        raise ParseError("L2TP header truncated", n)
    flags = (data[0] << 8) | data[1]
    check_version(flags)
    pos = 2
    need = 6
    if flags & FLAG_L:
        need += 2
        pos = 4
    if flags & FLAG_S:
        need += 4
    if flags & FLAG_O:
        need += 2
    if n < need:
        raise ParseError(f"L2TP header needs {need} bytes, got {n}", n)
    if flags & FLAG_L:
        length = (data[2] << 8) | data[3]
        if length > n or length < need:
            raise ParseError(f"Length field {length} does not fit datagram of {n}", 2)
    tunnel_id, session_id = _U16X2.unpack_from(data, pos)
    return bool(flags & FLAG_T), tunnel_id, session_id
