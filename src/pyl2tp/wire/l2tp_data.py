"""L2TPv2 data messages (RFC 2661 3.1, T=0): header codec and hot-path helpers.

A data message carries one PPP frame (address/control already stripped, RFC 2661 5.5)
after a header whose Length, Ns/Nr and Offset fields are each optional.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pyl2tp.errors import ParseError

__all__ = [
    "FLAG_L",
    "FLAG_O",
    "FLAG_P",
    "FLAG_S",
    "FLAG_T",
    "VERSION_MASK",
    "DataMessage",
    "check_version",
    "data_header",
    "data_payload_bounds",
    "data_payload_offset",
    "decode_data",
    "encode_data",
]

# RFC 2661 3.1 header bits: |T|L|x|x|S|x|O|P|x|x|x|x| Ver |
FLAG_T = 0x8000
FLAG_L = 0x4000
FLAG_S = 0x0800
FLAG_O = 0x0200
FLAG_P = 0x0100
VERSION_MASK = 0x000F
L2TP_VERSION = 2

_U16 = struct.Struct("!H")
_U16X2 = struct.Struct("!HH")
_DATA_HDR = struct.Struct("!HHH")  # flags/version, tunnel, session: the common (no L, no S) header
_PLAIN_FLAGS = L2TP_VERSION  # T=0, no optional fields


@dataclass(slots=True)
class DataMessage:
    """A decoded data message.

    ``ns``/``nr`` are None when S=0; ``offset`` is the padding size after the Offset Size
    field; ``has_length``/``has_offset`` record whether L and O were set.
    """

    tunnel_id: int
    session_id: int
    payload: bytes
    ns: int | None = None
    nr: int | None = None
    priority: bool = False
    offset: int = 0
    has_length: bool = False
    has_offset: bool = False


def check_version(flags: int, offset: int = 0) -> None:
    """ParseError unless the header's Ver field is 2 (RFC 2661 3.1)."""
    ver = flags & VERSION_MASK
    if ver != L2TP_VERSION:
        # RFC 2661 3.1: packets with an unknown Ver MUST be discarded. Ver 3 is L2TPv3
        # (RFC 3931), which needs its own header codec; Ver 1 is L2F.
        what = "L2TPv3 header not supported" if ver == 3 else "unsupported L2TP version"
        raise ParseError(f"{what} (Ver={ver})", offset)


def _u16(value: int, what: str) -> int:
    if not 0 <= value <= 0xFFFF:
        raise ValueError(f"{what}: {value} out of range 0..65535")
    return value


def encode_data(tunnel_id: int, session_id: int, payload: bytes, *, ns: int | None = None,
                nr: int | None = None, length: bool = False, offset: int | None = None,
                priority: bool = False) -> bytes:
    """Encode a data message.

    S is set when ``ns`` or ``nr`` is given (the other one is sent as 0; RFC 2661 3.1 says
    Nr is ignored in data messages). ``offset`` not None sets O and adds that many zero
    padding bytes. ``length`` sets L.
    """
    flags = L2TP_VERSION
    fields: list[int] = []
    if length:
        flags |= FLAG_L
        fields.append(0)  # patched below
    fields += (_u16(tunnel_id, "tunnel_id"), _u16(session_id, "session_id"))
    if ns is not None or nr is not None:
        flags |= FLAG_S
        fields += (_u16(ns or 0, "ns"), _u16(nr or 0, "nr"))
    if offset is not None:
        flags |= FLAG_O
        fields.append(_u16(offset, "offset"))
    if priority:
        flags |= FLAG_P
    header_len = 2 + 2 * len(fields) + (offset or 0)
    if length:
        fields[0] = _u16(header_len + len(payload), "message length")
    out = bytearray(struct.pack(f"!{1 + len(fields)}H", flags, *fields))
    out += bytes(offset or 0)
    out += payload
    return bytes(out)


def _parse_header(mv: memoryview) -> tuple[int, int, int, int | None, int | None, int, int, int]:
    """(flags, tunnel, session, ns, nr, offset pad, payload start, payload end)."""
    n = len(mv)
    if n < 2:
        raise ParseError("data message shorter than its header", n)
    flags = _U16.unpack_from(mv)[0]
    check_version(flags)
    if flags & FLAG_T:
        raise ParseError("not a data message (T=1)", 0)
    pos = 2
    end = n
    if flags & FLAG_L:
        if n < 4:
            raise ParseError("data message shorter than its header", n)
        end = _U16.unpack_from(mv, 2)[0]
        if end > n:
            raise ParseError(f"Length field {end} exceeds datagram size {n}", 2)
        pos = 4
    if end < pos + 4:
        raise ParseError("data message shorter than its header", end)
    tunnel_id, session_id = _U16X2.unpack_from(mv, pos)
    pos += 4
    ns: int | None = None
    nr: int | None = None
    if flags & FLAG_S:
        if end < pos + 4:
            raise ParseError("data message shorter than its Ns/Nr fields", end)
        ns, nr = _U16X2.unpack_from(mv, pos)
        pos += 4
    pad = 0
    if flags & FLAG_O:
        if end < pos + 2:
            raise ParseError("data message shorter than its Offset Size field", end)
        pad = _U16.unpack_from(mv, pos)[0]
        pos += 2 + pad
        if pos > end:
            raise ParseError(f"Offset Size {pad} runs past the end of the message", pos - pad - 2)
    return flags, tunnel_id, session_id, ns, nr, pad, pos, end


def decode_data(data: bytes | memoryview) -> DataMessage:
    """Decode a data message; ParseError on anything malformed. Bytes beyond Length are ignored."""
    mv = memoryview(data)
    flags, tunnel_id, session_id, ns, nr, pad, start, end = _parse_header(mv)
    return DataMessage(tunnel_id, session_id, bytes(mv[start:end]), ns, nr,
                       bool(flags & FLAG_P), pad, bool(flags & FLAG_L), bool(flags & FLAG_O))


def data_header(tunnel_id: int, session_id: int) -> bytes:
    """The 6-byte header of a plain data message (no L, S, O): flags/version, tunnel, session."""
    try:
        return _DATA_HDR.pack(_PLAIN_FLAGS, tunnel_id, session_id)
    except struct.error as exc:
        raise ValueError(f"tunnel/session id out of range: {exc}") from None


def data_payload_offset(data: bytes | memoryview) -> int:
    """Index where the PPP frame starts in a data message; ParseError if malformed."""
    if len(data) >= 6 and data[0] == 0 and data[1] == _PLAIN_FLAGS:
        return 6  # the common case: no optional fields
    return _parse_header(memoryview(data))[6]


def data_payload_bounds(data: bytes | memoryview) -> tuple[int, int]:
    """(start, end) of the PPP frame in a data message; end honours the Length field if L=1."""
    if len(data) >= 6 and data[0] == 0 and data[1] == _PLAIN_FLAGS:
        return 6, len(data)
    _, _, _, _, _, _, start, end = _parse_header(memoryview(data))
    return start, end
