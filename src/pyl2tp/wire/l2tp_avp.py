"""L2TPv2 AVPs (RFC 2661 4): type and code enums, the AVP table, typed value codecs.

Pure functions, no state. ``decode_value`` turns an :class:`AVP`'s raw value into a
Python value by type, ``encode_value`` is its inverse, ``avp`` builds an AVP from a
typed value. Message framing and hiding live in :mod:`pyl2tp.wire.l2tp`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag

from pyl2tp.errors import ParseError

__all__ = [
    "AVP",
    "ACCMValue",
    "AVPInfo",
    "AVPType",
    "BearerCap",
    "CDNResult",
    "CallErrors",
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
    "decode_value",
    "encode_value",
]


class MessageType(IntEnum):
    """Control message types, RFC 2661 3.2."""

    SCCRQ = 1
    SCCRP = 2
    SCCCN = 3
    STOPCCN = 4
    HELLO = 6
    OCRQ = 7
    OCRP = 8
    OCCN = 9
    ICRQ = 10
    ICRP = 11
    ICCN = 12
    CDN = 14
    WEN = 15
    SLI = 16


class AVPType(IntEnum):
    """IETF (vendor 0) attribute types, RFC 2661 4.4."""

    MESSAGE_TYPE = 0
    RESULT_CODE = 1
    PROTOCOL_VERSION = 2
    FRAMING_CAPABILITIES = 3
    BEARER_CAPABILITIES = 4
    TIE_BREAKER = 5
    FIRMWARE_REVISION = 6
    HOST_NAME = 7
    VENDOR_NAME = 8
    ASSIGNED_TUNNEL_ID = 9
    RECEIVE_WINDOW_SIZE = 10
    CHALLENGE = 11
    Q931_CAUSE_CODE = 12
    CHALLENGE_RESPONSE = 13
    ASSIGNED_SESSION_ID = 14
    CALL_SERIAL_NUMBER = 15
    MINIMUM_BPS = 16
    MAXIMUM_BPS = 17
    BEARER_TYPE = 18
    FRAMING_TYPE = 19
    CALLED_NUMBER = 21
    CALLING_NUMBER = 22
    SUB_ADDRESS = 23
    TX_CONNECT_SPEED = 24
    PHYSICAL_CHANNEL_ID = 25
    INITIAL_RECEIVED_LCP_CONFREQ = 26
    LAST_SENT_LCP_CONFREQ = 27
    LAST_RECEIVED_LCP_CONFREQ = 28
    PROXY_AUTHEN_TYPE = 29
    PROXY_AUTHEN_NAME = 30
    PROXY_AUTHEN_CHALLENGE = 31
    PROXY_AUTHEN_ID = 32
    PROXY_AUTHEN_RESPONSE = 33
    CALL_ERRORS = 34
    ACCM = 35
    RANDOM_VECTOR = 36
    PRIVATE_GROUP_ID = 37
    RX_CONNECT_SPEED = 38
    SEQUENCING_REQUIRED = 39


class StopCCNResult(IntEnum):
    """Result Code values for StopCCN, RFC 2661 4.4.2."""

    GENERAL_REQUEST = 1
    GENERAL_ERROR = 2
    CHANNEL_EXISTS = 3
    NOT_AUTHORIZED = 4
    UNSUPPORTED_VERSION = 5
    SHUTTING_DOWN = 6
    FSM_ERROR = 7


class CDNResult(IntEnum):
    """Result Code values for CDN, RFC 2661 4.4.2."""

    LOST_CARRIER = 1
    GENERAL_ERROR = 2
    ADMINISTRATIVE = 3
    TEMPORARY_NO_RESOURCES = 4
    PERMANENT_NO_RESOURCES = 5
    INVALID_DESTINATION = 6
    NO_CARRIER = 7
    BUSY = 8
    NO_DIAL_TONE = 9
    TIMEOUT = 10
    NO_FRAMING = 11


class ErrorCode(IntEnum):
    """General Error Codes, RFC 2661 4.4.2."""

    NO_ERROR = 0
    NO_CONTROL_CONNECTION = 1
    BAD_LENGTH = 2
    BAD_VALUE = 3
    INSUFFICIENT_RESOURCES = 4
    INVALID_SESSION_ID = 5
    VENDOR_ERROR = 6
    TRY_ANOTHER = 7
    UNKNOWN_MANDATORY_AVP = 8


class FramingCap(IntFlag):
    """Framing Capabilities / Framing Type bits, RFC 2661 4.4.3 and 4.4.4."""

    SYNC = 1
    ASYNC = 2


class BearerCap(IntFlag):
    """Bearer Capabilities / Bearer Type bits, RFC 2661 4.4.3 and 4.4.4."""

    DIGITAL = 1
    ANALOG = 2


class ProxyAuthenType(IntEnum):
    """Proxy Authen Type values, RFC 2661 4.4.5."""

    RESERVED = 0
    TEXTUAL = 1
    CHAP = 2
    PAP = 3
    NO_AUTH = 4
    MSCHAPV1 = 5


@dataclass(slots=True, frozen=True)
class AVP:
    """One attribute-value pair; ``value`` is always the clear (revealed) value."""

    type: int
    value: bytes
    vendor: int = 0
    mandatory: bool = True
    hidden: bool = False


@dataclass(slots=True, frozen=True)
class ResultCodeValue:
    """Result Code AVP value (RFC 2661 4.4.2)."""

    result: int
    error: int | None = None
    message: str | None = None


@dataclass(slots=True, frozen=True)
class ProtocolVersion:
    """Protocol Version AVP value; L2TPv2 sends version 1 revision 0 (RFC 2661 4.4.3)."""

    version: int
    revision: int


@dataclass(slots=True, frozen=True)
class Q931Cause:
    """Q.931 Cause Code AVP value (RFC 2661 4.4.4)."""

    cause: int
    message: int
    advisory: str | None = None


@dataclass(slots=True, frozen=True)
class CallErrors:
    """Call Errors AVP value (RFC 2661 4.4.6)."""

    crc: int
    framing: int
    hardware_overruns: int
    buffer_overruns: int
    timeouts: int
    alignment: int


@dataclass(slots=True, frozen=True)
class ACCMValue:
    """ACCM AVP value (RFC 2661 4.4.6)."""

    send: int
    receive: int


@dataclass(slots=True, frozen=True)
class ProxyAuthenID:
    """Proxy Authen ID AVP value: the 8-bit PPP identifier (RFC 2661 4.4.5)."""

    id: int


class ValueKind(Enum):
    """How an AVP's value is laid out."""

    U16 = "u16"
    U32 = "u32"
    U64 = "u64"
    BYTES = "bytes"
    STRING = "string"
    EMPTY = "empty"
    RESULT_CODE = "result_code"
    PROTOCOL_VERSION = "protocol_version"
    Q931 = "q931"
    CALL_ERRORS = "call_errors"
    ACCM = "accm"
    PROXY_AUTHEN_ID = "proxy_authen_id"


@dataclass(slots=True, frozen=True)
class AVPInfo:
    """Table row for one IETF AVP: value layout, RFC M-bit, may it be hidden, value sizes."""

    kind: ValueKind
    mandatory: bool
    hideable: bool
    min_len: int
    max_len: int | None  # None: no upper bound beyond the AVP length limit


_K = ValueKind
_FIXED = {_K.U16: 2, _K.U32: 4, _K.U64: 8, _K.EMPTY: 0, _K.PROTOCOL_VERSION: 2,
          _K.CALL_ERRORS: 26, _K.ACCM: 10, _K.PROXY_AUTHEN_ID: 2}


def _row(kind: ValueKind, mandatory: bool, hideable: bool, min_len: int = 0,
         max_len: int | None = None) -> AVPInfo:
    if kind in _FIXED:
        min_len = max_len = _FIXED[kind]
    return AVPInfo(kind, mandatory, hideable, min_len, max_len)


T = AVPType
# RFC 2661 4.4: value layout, the M bit the RFC requires, whether H may be 1, value sizes.
_TABLE: dict[int, AVPInfo] = {
    T.MESSAGE_TYPE: _row(_K.U16, True, False),
    T.RESULT_CODE: _row(_K.RESULT_CODE, True, False, 2),
    T.PROTOCOL_VERSION: _row(_K.PROTOCOL_VERSION, True, False),
    T.FRAMING_CAPABILITIES: _row(_K.U32, True, True),
    T.BEARER_CAPABILITIES: _row(_K.U32, True, True),
    T.TIE_BREAKER: _row(_K.U64, False, False),
    T.FIRMWARE_REVISION: _row(_K.U16, False, True),
    T.HOST_NAME: _row(_K.STRING, True, False, 1),
    T.VENDOR_NAME: _row(_K.STRING, False, True),
    T.ASSIGNED_TUNNEL_ID: _row(_K.U16, True, True),
    T.RECEIVE_WINDOW_SIZE: _row(_K.U16, True, False),
    T.CHALLENGE: _row(_K.BYTES, True, True, 1),
    T.Q931_CAUSE_CODE: _row(_K.Q931, True, False, 3),
    T.CHALLENGE_RESPONSE: _row(_K.BYTES, True, True, 16, 16),
    T.ASSIGNED_SESSION_ID: _row(_K.U16, True, True),
    T.CALL_SERIAL_NUMBER: _row(_K.U32, True, True),
    T.MINIMUM_BPS: _row(_K.U32, True, True),
    T.MAXIMUM_BPS: _row(_K.U32, True, True),
    T.BEARER_TYPE: _row(_K.U32, True, True),
    T.FRAMING_TYPE: _row(_K.U32, True, True),
    T.CALLED_NUMBER: _row(_K.STRING, True, True),
    T.CALLING_NUMBER: _row(_K.STRING, True, True),
    T.SUB_ADDRESS: _row(_K.BYTES, True, True),
    T.TX_CONNECT_SPEED: _row(_K.U32, True, True),
    T.PHYSICAL_CHANNEL_ID: _row(_K.U32, False, True),
    T.INITIAL_RECEIVED_LCP_CONFREQ: _row(_K.BYTES, False, True),
    T.LAST_SENT_LCP_CONFREQ: _row(_K.BYTES, False, True),
    T.LAST_RECEIVED_LCP_CONFREQ: _row(_K.BYTES, False, True),
    T.PROXY_AUTHEN_TYPE: _row(_K.U16, False, True),
    T.PROXY_AUTHEN_NAME: _row(_K.STRING, False, True),
    T.PROXY_AUTHEN_CHALLENGE: _row(_K.BYTES, False, True, 1),
    T.PROXY_AUTHEN_ID: _row(_K.PROXY_AUTHEN_ID, False, True),
    T.PROXY_AUTHEN_RESPONSE: _row(_K.BYTES, False, True),
    T.CALL_ERRORS: _row(_K.CALL_ERRORS, True, True),
    T.ACCM: _row(_K.ACCM, True, True),
    T.RANDOM_VECTOR: _row(_K.BYTES, True, False),
    T.PRIVATE_GROUP_ID: _row(_K.BYTES, False, True),
    T.RX_CONNECT_SPEED: _row(_K.U32, False, True),
    T.SEQUENCING_REQUIRED: _row(_K.EMPTY, True, False),
}
del T

# RFC 2661 4.1: the 10-bit AVP Length covers the 6-byte header, so a value is at most 1017 bytes.
MAX_AVP_VALUE = 1023 - 6

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_U16U16 = struct.Struct("!HH")
_Q931 = struct.Struct("!HB")
_CALL_ERRORS = struct.Struct("!HIIIIII")
_ACCM = struct.Struct("!HII")
_VERSION = struct.Struct("!BB")
_UINT_LIMIT = {_K.U16: 0xFFFF, _K.U32: 0xFFFFFFFF, _K.U64: 0xFFFFFFFFFFFFFFFF}
_UINT_STRUCT = {_K.U16: _U16, _K.U32: _U32, _K.U64: _U64}


def avp_info(avp_type: int) -> AVPInfo | None:
    """Table row for an IETF attribute type, None when the type is not in RFC 2661."""
    return _TABLE.get(avp_type)


def decode_value(avp: AVP) -> object:
    """Typed value of ``avp``; ParseError if its length is wrong for the type.

    Vendor AVPs and unknown IETF types come back as raw bytes.
    """
    info = _TABLE.get(avp.type) if avp.vendor == 0 else None
    if info is None:
        return avp.value
    v = avp.value
    n = len(v)
    if n < info.min_len or (info.max_len is not None and n > info.max_len):
        raise ParseError(f"AVP {AVPType(avp.type).name}: bad value length {n}")
    kind = info.kind
    if kind in _UINT_STRUCT:
        return int(_UINT_STRUCT[kind].unpack(v)[0])
    if kind is _K.BYTES:
        return bytes(v)
    if kind is _K.STRING:
        return bytes(v).decode("latin-1")
    if kind is _K.EMPTY:
        return None
    if kind is _K.RESULT_CODE:
        # RFC 2661 4.4.2: 2 bytes (result), 4 (plus error code), more (plus message).
        if n == 2:
            return ResultCodeValue(_U16.unpack(v)[0])
        if n == 3:
            raise ParseError("AVP RESULT_CODE: bad value length 3")
        result, error = _U16U16.unpack_from(v)
        message = bytes(v[4:]).decode("utf-8", "replace") if n > 4 else None
        return ResultCodeValue(result, error, message)
    if kind is _K.PROTOCOL_VERSION:
        ver, rev = _VERSION.unpack(v)
        return ProtocolVersion(ver, rev)
    if kind is _K.Q931:
        cause, msg = _Q931.unpack_from(v)
        advisory = bytes(v[3:]).decode("latin-1") if n > 3 else None
        return Q931Cause(cause, msg, advisory)
    if kind is _K.CALL_ERRORS:
        return CallErrors(*_CALL_ERRORS.unpack(v)[1:])
    if kind is _K.ACCM:
        _, send, receive = _ACCM.unpack(v)
        return ACCMValue(send, receive)
    # PROXY_AUTHEN_ID: RFC 2661 4.4.5, high octet reserved; only the low octet is the ID.
    return ProxyAuthenID(v[1])


def _uint(value: object, limit: int, what: str) -> int:
    if not isinstance(value, int):
        raise TypeError(f"{what}: expected int, got {type(value).__name__}")
    if not 0 <= value <= limit:
        raise ValueError(f"{what}: {value} out of range 0..{limit}")
    return int(value)


def _text(value: object, what: str, encoding: str = "latin-1") -> bytes:
    if isinstance(value, str):
        return value.encode(encoding)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what}: expected str or bytes, got {type(value).__name__}")


def _encode_by_kind(kind: ValueKind, value: object, what: str) -> bytes:
    if kind in _UINT_STRUCT:
        return _UINT_STRUCT[kind].pack(_uint(value, _UINT_LIMIT[kind], what))
    if kind is _K.BYTES:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"{what}: expected bytes, got {type(value).__name__}")
        return bytes(value)
    if kind is _K.STRING:
        return _text(value, what)
    if kind is _K.EMPTY:
        if value not in (None, b""):
            raise ValueError(f"{what}: takes no value")
        return b""
    if kind is _K.RESULT_CODE:
        if isinstance(value, int):
            value = ResultCodeValue(value)
        if not isinstance(value, ResultCodeValue):
            raise TypeError(f"{what}: expected ResultCodeValue")
        out = _U16.pack(_uint(value.result, 0xFFFF, what))
        if value.error is None and not value.message:
            return out
        # RFC 2661 4.4.2: a message needs an error code before it; 0 means "no general error".
        out += _U16.pack(_uint(0 if value.error is None else value.error, 0xFFFF, what))
        if value.message:
            out += value.message.encode("utf-8")
        return out
    if kind is _K.PROTOCOL_VERSION:
        if not isinstance(value, ProtocolVersion):
            raise TypeError(f"{what}: expected ProtocolVersion")
        return _VERSION.pack(_uint(value.version, 0xFF, what), _uint(value.revision, 0xFF, what))
    if kind is _K.Q931:
        if not isinstance(value, Q931Cause):
            raise TypeError(f"{what}: expected Q931Cause")
        out = _Q931.pack(_uint(value.cause, 0xFFFF, what), _uint(value.message, 0xFF, what))
        return out + (_text(value.advisory, what) if value.advisory else b"")
    if kind is _K.CALL_ERRORS:
        if not isinstance(value, CallErrors):
            raise TypeError(f"{what}: expected CallErrors")
        counters = (value.crc, value.framing, value.hardware_overruns, value.buffer_overruns,
                    value.timeouts, value.alignment)
        return _CALL_ERRORS.pack(0, *(_uint(c, 0xFFFFFFFF, what) for c in counters))
    if kind is _K.ACCM:
        if not isinstance(value, ACCMValue):
            raise TypeError(f"{what}: expected ACCMValue")
        return _ACCM.pack(0, _uint(value.send, 0xFFFFFFFF, what),
                          _uint(value.receive, 0xFFFFFFFF, what))
    # PROXY_AUTHEN_ID
    ident = value.id if isinstance(value, ProxyAuthenID) else value
    return bytes((0, _uint(ident, 0xFF, what)))


def encode_value(avp_type: AVPType, value: object) -> bytes:
    """Raw value bytes for a typed value; ValueError/TypeError when it does not fit the type."""
    info = _TABLE.get(avp_type)
    if info is None:
        raise ValueError(f"unknown AVP type {avp_type}; build AVP(...) with raw bytes instead")
    what = f"AVP {AVPType(avp_type).name}"
    raw = _encode_by_kind(info.kind, value, what)
    n = len(raw)
    if n < info.min_len or (info.max_len is not None and n > info.max_len) or n > MAX_AVP_VALUE:
        raise ValueError(f"{what}: value length {n} not allowed")
    return raw


def avp(avp_type: AVPType, value: object, *, mandatory: bool | None = None,
        hidden: bool = False) -> AVP:
    """Build an IETF AVP from a typed value.

    ``mandatory=None`` uses the M bit RFC 2661 4.4 prescribes for the type.
    """
    info = _TABLE.get(avp_type)
    if info is None:
        raise ValueError(f"unknown AVP type {avp_type}")
    m = info.mandatory if mandatory is None else mandatory
    return AVP(int(avp_type), encode_value(avp_type, value), 0, m, hidden)
