"""Codec for PAP (RFC 1334) and CHAP (RFC 1994) packets, without the PPP protocol field.

Both share the LCP-style header: Code (1), Identifier (1), Length (2), Data. Decoders
raise :class:`~pyl2tp.errors.ParseError`; encoders raise ``ValueError`` for values that do
not fit their length fields (a local bug, not a peer's).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from pyl2tp.errors import ParseError

__all__ = [
    "AuthPacket",
    "AuthProtocol",
    "ChapAlgorithm",
    "ChapCode",
    "PapCode",
    "decode_chap_value",
    "decode_packet",
    "decode_pap_request",
    "decode_pap_response",
    "encode_chap_message",
    "encode_chap_value",
    "encode_packet",
    "encode_pap_request",
    "encode_pap_response",
]

_HEADER = struct.Struct("!BBH")
HEADER_LEN = _HEADER.size


class AuthProtocol(IntEnum):
    """PPP protocol numbers of the authentication protocols."""

    PAP = 0xC023
    CHAP = 0xC223


class ChapAlgorithm(IntEnum):
    """The algorithm octet of the CHAP Auth-Protocol option (RFC 1994 3, RFC 2759 2)."""

    MD5 = 5
    MSCHAPV2 = 0x81


class PapCode(IntEnum):
    """RFC 1334 2.2 codes."""

    AUTHENTICATE_REQUEST = 1
    AUTHENTICATE_ACK = 2
    AUTHENTICATE_NAK = 3


class ChapCode(IntEnum):
    """RFC 1994 4 codes (MS-CHAPv2 uses the same four)."""

    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


@dataclass(slots=True, frozen=True)
class AuthPacket:
    """One PAP or CHAP packet: code, identifier and the data after the header."""

    code: int
    identifier: int
    data: bytes


def encode_packet(code: int, identifier: int, data: bytes) -> bytes:
    """Header plus data; Length covers both."""
    length = HEADER_LEN + len(data)
    if length > 0xFFFF:
        raise ValueError("packet longer than 65535 bytes")
    return _HEADER.pack(code, identifier & 0xFF, length) + data


def decode_packet(payload: bytes) -> AuthPacket:
    """Split a packet; octets past Length are padding and ignored (RFC 1661 5)."""
    if len(payload) < HEADER_LEN:
        raise ParseError("auth packet shorter than its 4-byte header", 0)
    code, identifier, length = _HEADER.unpack_from(payload)
    if length < HEADER_LEN:
        raise ParseError(f"auth packet Length {length} below 4", 2)
    if length > len(payload):
        raise ParseError(f"auth packet Length {length} beyond the {len(payload)} bytes", 2)
    return AuthPacket(code, identifier, bytes(payload[HEADER_LEN:length]))


def _short(field: bytes, what: str) -> bytes:
    if len(field) > 0xFF:
        raise ValueError(f"{what} longer than 255 bytes")
    return bytes((len(field),)) + field


# --- PAP (RFC 1334 2.2) ------------------------------------------------------------------


def encode_pap_request(identifier: int, peer_id: bytes, password: bytes) -> bytes:
    """Authenticate-Request: Peer-ID Length, Peer-ID, Passwd-Length, Password."""
    data = _short(peer_id, "PAP Peer-ID") + _short(password, "PAP Password")
    return encode_packet(PapCode.AUTHENTICATE_REQUEST, identifier, data)


def decode_pap_request(data: bytes) -> tuple[bytes, bytes]:
    """(peer_id, password) from an Authenticate-Request's data."""
    if not data:
        raise ParseError("PAP Authenticate-Request without Peer-ID Length", HEADER_LEN)
    id_len = data[0]
    if 1 + id_len >= len(data):
        raise ParseError("PAP Peer-ID runs past the packet", HEADER_LEN)
    peer_id = data[1 : 1 + id_len]
    pw_len = data[1 + id_len]
    end = 2 + id_len + pw_len
    if end > len(data):
        raise ParseError("PAP Password runs past the packet", HEADER_LEN + 1 + id_len)
    if end != len(data):
        raise ParseError("bytes after the PAP Password", HEADER_LEN + end)
    return bytes(peer_id), bytes(data[2 + id_len : end])


def encode_pap_response(code: int, identifier: int, message: bytes) -> bytes:
    """Authenticate-Ack or -Nak: Msg-Length, Message."""
    return encode_packet(code, identifier, _short(message, "PAP Message"))


def decode_pap_response(data: bytes) -> bytes:
    """The Message of an Authenticate-Ack/Nak; empty data (sent by some peers) is ''."""
    if not data:
        return b""
    msg_len = data[0]
    if 1 + msg_len > len(data):
        raise ParseError("PAP Message runs past the packet", HEADER_LEN)
    if 1 + msg_len != len(data):
        raise ParseError("bytes after the PAP Message", HEADER_LEN + 1 + msg_len)
    return bytes(data[1:])


# --- CHAP (RFC 1994 4.1, 4.2) -------------------------------------------------------------


def encode_chap_value(code: int, identifier: int, value: bytes, name: bytes) -> bytes:
    """Challenge or Response: Value-Size, Value, Name."""
    if not value:
        raise ValueError("CHAP Value must be one or more octets")
    return encode_packet(code, identifier, _short(value, "CHAP Value") + name)


def decode_chap_value(data: bytes) -> tuple[bytes, bytes]:
    """(value, name) from a Challenge's or Response's data."""
    if not data:
        raise ParseError("CHAP packet without Value-Size", HEADER_LEN)
    size = data[0]
    # RFC 1994 4.1: the Value field is one or more octets.
    if size == 0:
        raise ParseError("CHAP Value-Size 0", HEADER_LEN)
    if 1 + size > len(data):
        raise ParseError("CHAP Value runs past the packet", HEADER_LEN)
    return bytes(data[1 : 1 + size]), bytes(data[1 + size :])


def encode_chap_message(code: int, identifier: int, message: bytes) -> bytes:
    """Success or Failure: the Message fills the data (RFC 1994 4.2)."""
    return encode_packet(code, identifier, message)
