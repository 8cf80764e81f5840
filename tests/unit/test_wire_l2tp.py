"""Unit tests for the L2TPv2 codec (pyl2tp.wire.l2tp), RFC 2661."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from pyl2tp.errors import ParseError
from pyl2tp.wire.l2tp import (
    AVP,
    ACCMValue,
    AVPType,
    BearerCap,
    CallErrors,
    CDNResult,
    ControlMessage,
    DataMessage,
    ErrorCode,
    FramingCap,
    MessageType,
    ProtocolVersion,
    ProxyAuthenID,
    ProxyAuthenType,
    Q931Cause,
    ResultCodeValue,
    StopCCNResult,
    avp,
    challenge_response,
    data_header,
    data_payload_bounds,
    data_payload_offset,
    decode_control,
    decode_data,
    decode_value,
    encode_control,
    encode_data,
    encode_value,
    hide_value,
    message,
    peek,
    reveal_value,
    unknown_mandatory,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "l2tp_peer_packets.txt"
SECRET = b"tunnelsecret"  # l2tpns-session capture (and the default for our own tests)
XL2TPD_SECRET = b"s3cret"  # xl2tpd-e2e-chal capture: made with demo_e2e.py --secret s3cret


def fixed_rng(*chunks: bytes) -> Callable[[int], bytes]:
    """random_bytes that hands out the given chunks in order and checks the sizes asked for."""
    queue = list(chunks)

    def rb(n: int) -> bytes:
        chunk = queue.pop(0)
        assert len(chunk) == n, f"codec asked for {n} bytes, test expected {len(chunk)}"
        return chunk

    return rb


def counter_rng(start: int = 0) -> Callable[[int], bytes]:
    state = [start]

    def rb(n: int) -> bytes:
        out = bytes((state[0] + i) & 0xFF for i in range(n))
        state[0] += n
        return out

    return rb


# ---------------------------------------------------------------- enums / constants


def test_enum_numbers_match_rfc() -> None:
    assert [int(m) for m in MessageType] == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16]
    assert len(AVPType) == 39 and 20 not in {int(t) for t in AVPType}
    assert (int(AVPType.SEQUENCING_REQUIRED), int(AVPType.CALLED_NUMBER)) == (39, 21)
    assert (int(StopCCNResult.FSM_ERROR), int(CDNResult.NO_FRAMING)) == (7, 11)
    assert int(ErrorCode.UNKNOWN_MANDATORY_AVP) == 8
    assert (int(FramingCap.SYNC), int(FramingCap.ASYNC)) == (1, 2)
    assert (int(BearerCap.DIGITAL), int(BearerCap.ANALOG)) == (1, 2)
    assert (int(ProxyAuthenType.CHAP), int(ProxyAuthenType.MSCHAPV1)) == (2, 5)


# ---------------------------------------------------------------- typed AVP values

AVP_SAMPLES: dict[AVPType, list[object]] = {
    AVPType.MESSAGE_TYPE: [1, 16, 0xFFFF],
    AVPType.RESULT_CODE: [ResultCodeValue(1), ResultCodeValue(2, 6, "Invalid challenge"),
                          ResultCodeValue(3, 0), ResultCodeValue(2, 8, "AVP 42 ünknown")],
    AVPType.PROTOCOL_VERSION: [ProtocolVersion(1, 0), ProtocolVersion(255, 7)],
    AVPType.FRAMING_CAPABILITIES: [0, 3, 0xFFFFFFFF],
    AVPType.BEARER_CAPABILITIES: [0, 2],
    AVPType.TIE_BREAKER: [0, 0x0123456789ABCDEF, 2**64 - 1],
    AVPType.FIRMWARE_REVISION: [0x0690],
    AVPType.HOST_NAME: ["lns1.example", "x"],
    AVPType.VENDOR_NAME: ["pyl2tp", ""],
    AVPType.ASSIGNED_TUNNEL_ID: [1, 65535],
    AVPType.RECEIVE_WINDOW_SIZE: [4, 8],
    AVPType.CHALLENGE: [b"\x01", bytes(range(16))],
    AVPType.Q931_CAUSE_CODE: [Q931Cause(16, 0x45), Q931Cause(17, 0x5A, "busy")],
    AVPType.CHALLENGE_RESPONSE: [bytes(range(16, 32))],
    AVPType.ASSIGNED_SESSION_ID: [1, 0xBEEF],
    AVPType.CALL_SERIAL_NUMBER: [0, 0xDEADBEEF],
    AVPType.MINIMUM_BPS: [9600],
    AVPType.MAXIMUM_BPS: [100_000_000],
    AVPType.BEARER_TYPE: [0, 3],
    AVPType.FRAMING_TYPE: [1, 2, 3],
    AVPType.CALLED_NUMBER: ["", "5551234"],
    AVPType.CALLING_NUMBER: ["+15550001"],
    AVPType.SUB_ADDRESS: [b"", b"ext-12"],
    AVPType.TX_CONNECT_SPEED: [10_000_000],
    AVPType.PHYSICAL_CHANNEL_ID: [7],
    AVPType.INITIAL_RECEIVED_LCP_CONFREQ: [b"", bytes.fromhex("0506cafebabe01040578")],
    AVPType.LAST_SENT_LCP_CONFREQ: [bytes.fromhex("0506cafebabe")],
    AVPType.LAST_RECEIVED_LCP_CONFREQ: [bytes.fromhex("01040578")],
    AVPType.PROXY_AUTHEN_TYPE: [int(ProxyAuthenType.CHAP), 4],
    AVPType.PROXY_AUTHEN_NAME: ["alice", ""],
    AVPType.PROXY_AUTHEN_CHALLENGE: [b"\x99" * 16],
    AVPType.PROXY_AUTHEN_ID: [ProxyAuthenID(0), ProxyAuthenID(255)],
    AVPType.PROXY_AUTHEN_RESPONSE: [b"", b"\x11" * 16],
    AVPType.CALL_ERRORS: [CallErrors(1, 2, 3, 4, 5, 0xFFFFFFFF)],
    AVPType.ACCM: [ACCMValue(0xFFFFFFFF, 0), ACCMValue(0x000A0000, 0x12345678)],
    AVPType.RANDOM_VECTOR: [bytes(16), b"\x01\x02"],
    AVPType.PRIVATE_GROUP_ID: [b"group-7"],
    AVPType.RX_CONNECT_SPEED: [56000],
    AVPType.SEQUENCING_REQUIRED: [None],
}


def test_samples_cover_every_avp_type() -> None:
    assert set(AVP_SAMPLES) == set(AVPType)


@pytest.mark.parametrize(
    ("avp_type", "value"),
    [(t, v) for t, vs in AVP_SAMPLES.items() for v in vs],
    ids=lambda x: x.name if isinstance(x, AVPType) else None,
)
def test_every_avp_type_round_trips(avp_type: AVPType, value: object) -> None:
    raw = encode_value(avp_type, value)
    assert decode_value(AVP(avp_type, raw)) == value
    # and through a whole message on the wire
    msg = message(MessageType.HELLO, 1, 2, [avp(avp_type, value)])
    back = decode_control(encode_control(msg))
    assert back.avps[1].type == avp_type and decode_value(back.avps[1]) == value
    if avp_type != AVPType.MESSAGE_TYPE:
        assert back.get(avp_type) == value


@pytest.mark.parametrize(
    ("avp_type", "value", "raw"),
    [
        (AVPType.MESSAGE_TYPE, 10, b"\x00\x0a"),
        (AVPType.RESULT_CODE, ResultCodeValue(2, 6, "no"), b"\x00\x02\x00\x06no"),
        (AVPType.RESULT_CODE, ResultCodeValue(1, None, "x"), b"\x00\x01\x00\x00x"),
        (AVPType.PROTOCOL_VERSION, ProtocolVersion(1, 0), b"\x01\x00"),
        (AVPType.TIE_BREAKER, 0x0102030405060708, bytes(range(1, 9))),
        (AVPType.CALL_SERIAL_NUMBER, 0x01020304, b"\x01\x02\x03\x04"),
        (AVPType.HOST_NAME, "lns", b"lns"),
        (AVPType.Q931_CAUSE_CODE, Q931Cause(0x0102, 3, "ad"), b"\x01\x02\x03ad"),
        (AVPType.PROXY_AUTHEN_ID, ProxyAuthenID(0x42), b"\x00\x42"),
        (AVPType.ACCM, ACCMValue(1, 2), b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x02"),
        (AVPType.CALL_ERRORS, CallErrors(1, 2, 3, 4, 5, 6),
         b"\x00\x00" + b"".join(struct.pack("!I", i) for i in range(1, 7))),
        (AVPType.SEQUENCING_REQUIRED, None, b""),
    ],
)
def test_value_byte_layout(avp_type: AVPType, value: object, raw: bytes) -> None:
    assert encode_value(avp_type, value) == raw


# RFC 2661 4.4: value lengths that are wrong for the type.
BAD_LENGTHS: list[tuple[AVPType, int]] = [
    (AVPType.MESSAGE_TYPE, 1), (AVPType.MESSAGE_TYPE, 3),
    (AVPType.RESULT_CODE, 0), (AVPType.RESULT_CODE, 1), (AVPType.RESULT_CODE, 3),
    (AVPType.PROTOCOL_VERSION, 1), (AVPType.PROTOCOL_VERSION, 3),
    (AVPType.FRAMING_CAPABILITIES, 2), (AVPType.BEARER_CAPABILITIES, 5),
    (AVPType.TIE_BREAKER, 4), (AVPType.TIE_BREAKER, 9),
    (AVPType.FIRMWARE_REVISION, 4), (AVPType.HOST_NAME, 0),
    (AVPType.ASSIGNED_TUNNEL_ID, 0), (AVPType.ASSIGNED_TUNNEL_ID, 4),
    (AVPType.RECEIVE_WINDOW_SIZE, 1), (AVPType.CHALLENGE, 0),
    (AVPType.Q931_CAUSE_CODE, 2), (AVPType.CHALLENGE_RESPONSE, 15),
    (AVPType.CHALLENGE_RESPONSE, 17), (AVPType.ASSIGNED_SESSION_ID, 3),
    (AVPType.CALL_SERIAL_NUMBER, 2), (AVPType.MINIMUM_BPS, 8), (AVPType.MAXIMUM_BPS, 3),
    (AVPType.BEARER_TYPE, 0), (AVPType.FRAMING_TYPE, 2), (AVPType.TX_CONNECT_SPEED, 6),
    (AVPType.PHYSICAL_CHANNEL_ID, 2), (AVPType.PROXY_AUTHEN_TYPE, 4),
    (AVPType.PROXY_AUTHEN_CHALLENGE, 0), (AVPType.PROXY_AUTHEN_ID, 1),
    (AVPType.PROXY_AUTHEN_ID, 3), (AVPType.CALL_ERRORS, 24), (AVPType.CALL_ERRORS, 28),
    (AVPType.ACCM, 8), (AVPType.ACCM, 12), (AVPType.RX_CONNECT_SPEED, 2),
    (AVPType.SEQUENCING_REQUIRED, 1),
]


@pytest.mark.parametrize(("avp_type", "n"), BAD_LENGTHS)
def test_wrong_value_length_raises_parse_error(avp_type: AVPType, n: int) -> None:
    bad = AVP(avp_type, bytes(n))
    with pytest.raises(ParseError):
        decode_value(bad)
    msg = ControlMessage(1, 0, avps=[AVP(AVPType.MESSAGE_TYPE, b"\x00\x06"), bad])
    back = decode_control(encode_control(msg))  # framing is fine; the value is not
    with pytest.raises(ParseError):
        decode_value(back.avps[1])
    if avp_type != AVPType.MESSAGE_TYPE:
        with pytest.raises(ParseError):
            back.get(avp_type)


@pytest.mark.parametrize(
    ("avp_type", "value", "exc"),
    [
        (AVPType.ASSIGNED_TUNNEL_ID, 65536, ValueError),
        (AVPType.ASSIGNED_TUNNEL_ID, -1, ValueError),
        (AVPType.ASSIGNED_TUNNEL_ID, "1", TypeError),
        (AVPType.TIE_BREAKER, 2**64, ValueError),
        (AVPType.CHALLENGE, b"", ValueError),
        (AVPType.CHALLENGE, "abc", TypeError),
        (AVPType.CHALLENGE_RESPONSE, bytes(15), ValueError),
        (AVPType.HOST_NAME, "", ValueError),
        (AVPType.HOST_NAME, "\u20ac", ValueError),
        (AVPType.HOST_NAME, "h" * 1018, ValueError),
        (AVPType.PROTOCOL_VERSION, (1, 0), TypeError),
        (AVPType.PROXY_AUTHEN_ID, ProxyAuthenID(256), ValueError),
        (AVPType.SEQUENCING_REQUIRED, b"x", ValueError),
        (AVPType.RESULT_CODE, "bye", TypeError),
    ],
)
def test_encode_value_rejects_bad_values(avp_type: AVPType, value: object,
                                         exc: type[Exception]) -> None:
    with pytest.raises(exc):
        encode_value(avp_type, value)


def test_avp_builder_uses_rfc_m_bits() -> None:
    # RFC 2661 4.4: Tie Breaker, Firmware Revision, Vendor Name... MUST have M=0
    assert avp(AVPType.TIE_BREAKER, 1).mandatory is False
    assert avp(AVPType.FIRMWARE_REVISION, 1).mandatory is False
    assert avp(AVPType.VENDOR_NAME, "v").mandatory is False
    assert avp(AVPType.RX_CONNECT_SPEED, 1).mandatory is False
    assert avp(AVPType.HOST_NAME, "h").mandatory is True
    assert avp(AVPType.ASSIGNED_TUNNEL_ID, 5).mandatory is True
    assert avp(AVPType.VENDOR_NAME, "v", mandatory=True).mandatory is True
    a = avp(AVPType.CALLING_NUMBER, "123", hidden=True)
    assert a == AVP(22, b"123", 0, True, True)


def test_result_message_is_utf8_and_never_fails() -> None:
    assert decode_value(AVP(AVPType.RESULT_CODE, b"\x00\x02\x00\x06\xc3\xa9")) == \
        ResultCodeValue(2, 6, "é")
    v = decode_value(AVP(AVPType.RESULT_CODE, b"\x00\x02\x00\x06\xff\xfe"))
    assert isinstance(v, ResultCodeValue) and v.message is not None
    assert decode_value(AVP(AVPType.HOST_NAME, b"\xff")) == "\xff"  # latin-1, never fails


# ---------------------------------------------------------------- control messages

CHAL = bytes(range(100, 116))
RESP = challenge_response(2, SECRET, CHAL)

MESSAGES: dict[MessageType, list[AVP]] = {
    MessageType.SCCRQ: [
        avp(AVPType.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        avp(AVPType.HOST_NAME, "lac1"),
        avp(AVPType.FRAMING_CAPABILITIES, int(FramingCap.SYNC | FramingCap.ASYNC)),
        avp(AVPType.BEARER_CAPABILITIES, 0),
        avp(AVPType.TIE_BREAKER, 0x1122334455667788),
        avp(AVPType.FIRMWARE_REVISION, 0x0100),
        avp(AVPType.VENDOR_NAME, "pyl2tp"),
        avp(AVPType.ASSIGNED_TUNNEL_ID, 4242),
        avp(AVPType.RECEIVE_WINDOW_SIZE, 8),
        avp(AVPType.CHALLENGE, CHAL),
    ],
    MessageType.SCCRP: [
        avp(AVPType.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        avp(AVPType.FRAMING_CAPABILITIES, 3),
        avp(AVPType.HOST_NAME, "lns1"),
        avp(AVPType.ASSIGNED_TUNNEL_ID, 77),
        avp(AVPType.RECEIVE_WINDOW_SIZE, 4),
        avp(AVPType.CHALLENGE_RESPONSE, RESP),
        avp(AVPType.CHALLENGE, CHAL[::-1]),
    ],
    MessageType.SCCCN: [avp(AVPType.CHALLENGE_RESPONSE, challenge_response(3, SECRET, CHAL))],
    MessageType.STOPCCN: [
        avp(AVPType.ASSIGNED_TUNNEL_ID, 77),
        avp(AVPType.RESULT_CODE, ResultCodeValue(StopCCNResult.GENERAL_ERROR,
                                                 ErrorCode.VENDOR_ERROR, "bad auth")),
    ],
    MessageType.HELLO: [],
    MessageType.OCRQ: [
        avp(AVPType.ASSIGNED_SESSION_ID, 9),
        avp(AVPType.CALL_SERIAL_NUMBER, 1001),
        avp(AVPType.MINIMUM_BPS, 9600),
        avp(AVPType.MAXIMUM_BPS, 1_000_000),
        avp(AVPType.BEARER_TYPE, int(BearerCap.ANALOG)),
        avp(AVPType.FRAMING_TYPE, int(FramingCap.ASYNC)),
        avp(AVPType.CALLED_NUMBER, "5551234"),
        avp(AVPType.SUB_ADDRESS, b"12"),
    ],
    MessageType.OCRP: [avp(AVPType.ASSIGNED_SESSION_ID, 10),
                       avp(AVPType.PHYSICAL_CHANNEL_ID, 3)],
    MessageType.OCCN: [avp(AVPType.TX_CONNECT_SPEED, 64000), avp(AVPType.FRAMING_TYPE, 1),
                       avp(AVPType.RX_CONNECT_SPEED, 56000)],
    MessageType.ICRQ: [
        avp(AVPType.ASSIGNED_SESSION_ID, 0x1234),
        avp(AVPType.CALL_SERIAL_NUMBER, 1),
        avp(AVPType.BEARER_TYPE, 0),
        avp(AVPType.PHYSICAL_CHANNEL_ID, 0),
        avp(AVPType.CALLED_NUMBER, "1"),
        avp(AVPType.CALLING_NUMBER, "2"),
    ],
    MessageType.ICRP: [avp(AVPType.ASSIGNED_SESSION_ID, 0x4321)],
    MessageType.ICCN: [
        avp(AVPType.TX_CONNECT_SPEED, 10_000_000),
        avp(AVPType.FRAMING_TYPE, 1),
        avp(AVPType.INITIAL_RECEIVED_LCP_CONFREQ, bytes.fromhex("0506cafebabe")),
        avp(AVPType.LAST_SENT_LCP_CONFREQ, bytes.fromhex("01040578")),
        avp(AVPType.LAST_RECEIVED_LCP_CONFREQ, bytes.fromhex("0506cafebabe")),
        avp(AVPType.PROXY_AUTHEN_TYPE, int(ProxyAuthenType.CHAP)),
        avp(AVPType.PROXY_AUTHEN_NAME, "alice"),
        avp(AVPType.PROXY_AUTHEN_CHALLENGE, b"\x55" * 16),
        avp(AVPType.PROXY_AUTHEN_ID, ProxyAuthenID(1)),
        avp(AVPType.PROXY_AUTHEN_RESPONSE, b"\x66" * 16),
        avp(AVPType.PRIVATE_GROUP_ID, b"grp"),
        avp(AVPType.RX_CONNECT_SPEED, 10_000_000),
        avp(AVPType.SEQUENCING_REQUIRED, None),
    ],
    MessageType.CDN: [
        avp(AVPType.RESULT_CODE, ResultCodeValue(CDNResult.ADMINISTRATIVE)),
        avp(AVPType.Q931_CAUSE_CODE, Q931Cause(16, 0x45, "normal")),
        avp(AVPType.ASSIGNED_SESSION_ID, 0x4321),
    ],
    MessageType.WEN: [avp(AVPType.CALL_ERRORS, CallErrors(1, 0, 0, 2, 0, 0))],
    MessageType.SLI: [avp(AVPType.ACCM, ACCMValue(0xFFFFFFFF, 0))],
}


def test_messages_cover_every_type() -> None:
    assert set(MESSAGES) == set(MessageType)


@pytest.mark.parametrize("msg_type", list(MessageType), ids=lambda m: m.name)
def test_every_message_type_round_trips(msg_type: MessageType) -> None:
    avps = MESSAGES[msg_type]
    msg = message(msg_type, 0xABCD, 0x1234, avps)
    msg.ns, msg.nr = 5, 0xFFFF
    wire = encode_control(msg)
    flags, length, tid, sid, ns, nr = struct.unpack_from("!HHHHHH", wire)
    assert flags == 0xC802 and length == len(wire)
    assert (tid, sid, ns, nr) == (0xABCD, 0x1234, 5, 0xFFFF)
    # RFC 2661 4.4.1: Message Type AVP first, M=1, length 8
    assert wire[12:20] == struct.pack("!HHHH", 0x8008, 0, 0, msg_type)
    back = decode_control(wire)
    assert back == msg
    assert back.msg_type == msg_type and not back.is_zlb
    assert back.get(AVPType.MESSAGE_TYPE) == msg_type
    assert unknown_mandatory(back) is None
    for a in avps:
        assert back.get(AVPType(a.type)) == decode_value(a)
    assert peek(wire) == (True, 0xABCD, 0x1234)


def test_sccrq_values_via_get() -> None:
    msg = decode_control(encode_control(message(MessageType.SCCRQ, 0, 0,
                                                MESSAGES[MessageType.SCCRQ])))
    assert msg.get(AVPType.HOST_NAME) == "lac1"
    assert msg.get(AVPType.ASSIGNED_TUNNEL_ID) == 4242
    assert msg.get(AVPType.PROTOCOL_VERSION) == ProtocolVersion(1, 0)
    assert msg.get(AVPType.TIE_BREAKER) == 0x1122334455667788
    assert msg.get(AVPType.CHALLENGE) == CHAL
    assert msg.get(AVPType.RESULT_CODE) is None
    tb = msg.find(AVPType.TIE_BREAKER)
    assert tb is not None and tb.mandatory is False


def test_zlb_exact_bytes() -> None:
    zlb = ControlMessage(0x855A, 0, ns=2, nr=3)
    wire = encode_control(zlb)
    assert wire == bytes.fromhex("c802000c855a000000020003")
    back = decode_control(wire)
    assert back.is_zlb and back.msg_type is None and back == zlb


def test_hello_exact_bytes() -> None:
    wire = encode_control(message(MessageType.HELLO, 1, 0, []))
    assert wire == bytes.fromhex("c8020014 0001 0000 0000 0000 8008 0000 0000 0006")


def test_trailing_bytes_beyond_length_are_ignored() -> None:
    wire = encode_control(message(MessageType.ICRP, 3, 4, MESSAGES[MessageType.ICRP]))
    back = decode_control(wire + b"\xff" * 9)
    assert back == decode_control(wire)
    assert decode_control(memoryview(wire + b"junk")) == back


def _hdr(flags: int = 0xC802, length: int | None = None, body: bytes = b"") -> bytes:
    n = 12 + len(body) if length is None else length
    return struct.pack("!HHHHHH", flags, n, 1, 2, 0, 0) + body


MT_HELLO = struct.pack("!HHHH", 0x8008, 0, 0, 6)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "shorter"),
        (b"\xc8", "shorter"),
        (b"\xc8\x02\x00\x0c\x00\x01", "shorter"),
        (_hdr(flags=0xC803), "L2TPv3"),
        (_hdr(flags=0xC801), "version"),
        (_hdr(flags=0x4802), "T=0"),
        (_hdr(flags=0x8802), "L or S"),
        (_hdr(flags=0xC002), "L or S"),
        (_hdr(flags=0xCA02), "O bit"),
        (_hdr(length=11), "shorter than the header"),
        (_hdr(length=13), "exceeds"),
        (_hdr(body=MT_HELLO + b"\x80\x05\x00\x00\x00\x07"), "below 6"),
        (_hdr(body=MT_HELLO + b"\x80\x00\x00\x00\x00\x07"), "below 6"),
        (_hdr(body=MT_HELLO + b"\x80\x09\x00\x00\x00\x07ab"), "overruns"),
        (_hdr(body=MT_HELLO + b"\x80\x07\x00\x00"), "truncated AVP header"),
        (_hdr(body=MT_HELLO + b"\x84\x07\x00\x00\x00\x07a"), "reserved"),
        (_hdr(body=MT_HELLO + b"\xa0\x07\x00\x00\x00\x07a"), "reserved"),
        (_hdr(body=b"\x80\x08\x00\x00\x00\x07ab"), "Message Type"),  # first AVP is Host Name
        (_hdr(body=b"\x80\x08\x00\x09\x00\x00\x00\x06"), "Message Type"),  # vendor 9
        (_hdr(body=b"\x80\x0a\x00\x00\x00\x00\x00\x06\x00\x00"), "Message Type"),  # length 10
        (_hdr(body=b"\x80\x07\x00\x00\x00\x00\x00"), "Message Type"),  # length 7
        (_hdr(body=b"\xc0\x08\x00\x00\x00\x00\x00\x06"), "Message Type"),  # hidden
    ],
)
def test_malformed_control_raises(data: bytes, needle: str) -> None:
    with pytest.raises(ParseError) as exc_info:
        decode_control(data, secret=SECRET)
    assert needle in str(exc_info.value)


def test_length_field_shorter_than_avps_is_an_overrun() -> None:
    wire = bytearray(encode_control(message(MessageType.ICRP, 3, 4, MESSAGES[MessageType.ICRP])))
    struct.pack_into("!H", wire, 2, len(wire) - 1)
    with pytest.raises(ParseError, match="overruns"):
        decode_control(bytes(wire))


def test_parse_error_carries_offset() -> None:
    with pytest.raises(ParseError) as exc_info:
        decode_control(_hdr(body=MT_HELLO + b"\x84\x07\x00\x00\x00\x07a"))
    assert exc_info.value.offset == 20


def test_encode_control_rejects_misuse() -> None:
    with pytest.raises(ValueError, match="Message Type"):
        encode_control(ControlMessage(1, 0, avps=[avp(AVPType.HOST_NAME, "x")]))
    with pytest.raises(ValueError, match="Message Type"):
        encode_control(ControlMessage(1, 0, avps=[AVP(0, b"\x00\x01", hidden=True)]))
    with pytest.raises(ValueError, match="tunnel_id"):
        encode_control(ControlMessage(70000, 0))
    with pytest.raises(ValueError, match="ns"):
        encode_control(ControlMessage(1, 0, ns=-1))
    hid = message(MessageType.ICRQ, 1, 0, [avp(AVPType.CALLING_NUMBER, "1", hidden=True)])
    with pytest.raises(ValueError, match="secret"):
        encode_control(hid)
    with pytest.raises(ValueError, match="secret"):
        encode_control(hid, secret=SECRET)
    with pytest.raises(ValueError, match="secret"):
        encode_control(hid, random_bytes=counter_rng())
    # RFC 2661 4.4: Host Name MUST NOT be hidden
    bad = message(MessageType.SCCRQ, 0, 0, [avp(AVPType.HOST_NAME, "h", hidden=True)])
    with pytest.raises(ValueError, match="HOST_NAME"):
        encode_control(bad, secret=SECRET, random_bytes=counter_rng())
    with pytest.raises(ValueError, match="exceeds"):
        encode_control(message(MessageType.HELLO, 1, 0, [AVP(99, bytes(1018), vendor=5)]))
    with pytest.raises(ValueError, match="too long"):
        encode_control(message(MessageType.HELLO, 1, 0, [AVP(99, bytes(1000), 5)] * 66))


# ---------------------------------------------------------------- tunnel authentication


def test_challenge_response_is_chap_md5() -> None:
    # RFC 2661 4.4.3: CHAP-style (RFC 1994) with ID = Message Type of the carrying message
    chal = bytes.fromhex("00112233445566778899aabbccddeeff")
    assert challenge_response(2, b"s3cret", chal) == \
        hashlib.md5(b"\x02s3cret" + chal).digest()
    assert challenge_response(3, b"s3cret", chal) == \
        hashlib.md5(b"\x03s3cret" + chal).digest()
    assert challenge_response(2, b"s3cret", chal) != challenge_response(3, b"s3cret", chal)
    assert len(challenge_response(2, b"", b"x")) == 16


# ---------------------------------------------------------------- hidden AVPs, RFC 2661 4.3


def _md5(b: bytes) -> bytes:
    return hashlib.md5(b).digest()


def test_hidden_avp_worked_by_hand() -> None:
    # Worked example, independent of the codec: hide a 20-byte Proxy Authen Response
    # (type 33) with secret S and random vector RV, 3 bytes of padding.
    secret = b"tunnelsecret"
    rv = bytes(range(16))
    value = b"correct horse batter"  # 20 bytes
    padding = b"\xaa\xbb\xcc"
    # Hidden AVP Subformat: 2-byte original length (20) + value + padding = 25 bytes.
    subformat = b"\x00\x14" + value + padding
    assert len(subformat) == 25
    p1, p2 = subformat[:16], subformat[16:]
    b1 = _md5(b"\x00\x21" + secret + rv)  # MD5(attribute type + secret + RV)
    c1 = bytes(x ^ y for x, y in zip(p1, b1, strict=True))
    b2 = _md5(secret + c1)  # MD5(secret + previous cipher block)
    c2 = bytes(x ^ y for x, y in zip(p2, b2[: len(p2)], strict=True))
    hidden = c1 + c2
    assert len(hidden) == 25

    assert hide_value(33, value, secret, rv, padding) == hidden
    assert reveal_value(33, hidden, secret, rv) == value

    # The same AVP inside a message: the codec adds the Random Vector AVP before it.
    msg = message(MessageType.ICCN, 0x0102, 0x0304,
                  [AVP(33, value, mandatory=False, hidden=True)])
    wire = encode_control(msg, secret=secret, random_bytes=fixed_rng(rv, b"\x03", padding))
    expected = (
        struct.pack("!HHHHHH", 0xC802, 12 + 8 + 22 + 31, 0x0102, 0x0304, 0, 0)
        + struct.pack("!HHHH", 0x8008, 0, 0, 12)  # Message Type ICCN
        + struct.pack("!HHH", 0x8000 | 22, 0, 36) + rv  # Random Vector, M=1
        + struct.pack("!HHH", 0x4000 | 31, 0, 33) + hidden  # H=1, M=0, length 6 + 25
    )
    assert wire == expected
    back = decode_control(expected, secret=secret)
    assert [(a.type, a.value, a.hidden, a.mandatory) for a in back.avps] == [
        (0, b"\x00\x0c", False, True), (36, rv, False, True), (33, value, True, False)]
    assert back.get(AVPType.PROXY_AUTHEN_RESPONSE) == value
    # a wrong secret reveals garbage; here the inner length field comes out too big
    with pytest.raises(ParseError):
        decode_control(expected, secret=b"wrong")


def test_hidden_short_value_touches_only_its_bytes() -> None:
    # RFC 2661 4.3: a subformat under 16 bytes is XORed with the first bytes of b1 only.
    rv = b"\x42" * 16
    hidden = hide_value(9, b"\x12\x34", b"k", rv, b"")
    b1 = _md5(b"\x00\x09" + b"k" + rv)
    assert hidden == bytes(x ^ y for x, y in zip(b"\x00\x02\x12\x34", b1[:4], strict=True))
    assert reveal_value(9, hidden, b"k", rv) == b"\x12\x34"


def test_hide_value_exact_multiple_of_16_and_empty_value() -> None:
    rv = b"r"
    for value in (b"", bytes(14), bytes(30), bytes(range(200))):
        for pad in (b"", b"\x00", b"\x01" * 15):
            h = hide_value(26, value, b"s", rv, pad)
            assert len(h) == 2 + len(value) + len(pad)
            assert reveal_value(26, h, b"s", rv) == value


def test_reveal_value_rejects_bad_inner_length() -> None:
    rv = bytes(16)
    with pytest.raises(ParseError):
        reveal_value(1, b"\x00", b"s", rv)
    # craft a subformat whose length field claims 5 bytes but only 3 follow
    hidden = hide_value(30, b"abc", b"s", rv, b"")
    b1 = _md5(b"\x00\x1e" + b"s" + rv)
    forged = bytes([b1[0] ^ 0, b1[1] ^ 5]) + hidden[2:]
    with pytest.raises(ParseError, match="original length 5"):
        reveal_value(30, forged, b"s", rv)


def test_hidden_avps_random_vector_insertion_and_reuse() -> None:
    avps = [
        avp(AVPType.ASSIGNED_SESSION_ID, 7),
        avp(AVPType.CALLING_NUMBER, "5551234", hidden=True),
        avp(AVPType.CALLED_NUMBER, "911", hidden=True),
    ]
    msg = message(MessageType.ICRQ, 1, 0, avps)
    rng = counter_rng()
    wire = encode_control(msg, secret=SECRET, random_bytes=rng)
    back = decode_control(wire, secret=SECRET)
    types = [a.type for a in back.avps]
    # one Random Vector, right before the first hidden AVP, shared by both
    assert types == [0, 14, 36, 22, 21]
    assert back.avps[2].value == bytes(range(16))
    assert back.get(AVPType.CALLING_NUMBER) == "5551234"
    assert back.get(AVPType.CALLED_NUMBER) == "911"
    assert back.avps[3].hidden and back.avps[4].hidden and not back.avps[1].hidden
    # on the wire the value is not in clear text
    assert b"5551234" not in wire
    # same random_bytes -> same bytes (deterministic)
    assert encode_control(msg, secret=SECRET, random_bytes=counter_rng()) == wire
    # without the secret: ParseError
    with pytest.raises(ParseError, match="secret"):
        decode_control(wire)


def test_existing_random_vector_is_used_not_duplicated() -> None:
    rv = b"\x07" * 20
    avps = [AVP(AVPType.RANDOM_VECTOR, rv), avp(AVPType.PROXY_AUTHEN_NAME, "bob", hidden=True)]
    wire = encode_control(message(MessageType.ICCN, 1, 2, avps), secret=SECRET,
                          random_bytes=fixed_rng(b"\x00"))  # only the padding length is drawn
    back = decode_control(wire, secret=SECRET)
    assert [a.type for a in back.avps] == [0, 36, 30]
    assert back.avps[1].value == rv
    assert back.get(AVPType.PROXY_AUTHEN_NAME) == "bob"
    # pad length 0: hidden value is 2 + 3 bytes
    assert len(wire) == 12 + 8 + 26 + 6 + 5


def test_decoder_uses_closest_preceding_random_vector() -> None:
    # RFC 2661 4.4.1: with several Random Vectors, a hidden AVP uses the closest one before it.
    rv1, rv2 = b"\x01" * 16, b"\x02" * 16
    h1 = hide_value(22, b"first", SECRET, rv1, b"")
    h2 = hide_value(21, b"second", SECRET, rv2, b"")

    def raw_avp(t: int, v: bytes, h: bool = False) -> bytes:
        return struct.pack("!HHH", 0x8000 | (0x4000 if h else 0) | (6 + len(v)), 0, t) + v

    body = (raw_avp(0, b"\x00\x0a") + raw_avp(36, rv1) + raw_avp(22, h1, True)
            + raw_avp(36, rv2) + raw_avp(21, h2, True))
    back = decode_control(_hdr(body=body), secret=SECRET)
    assert back.get(AVPType.CALLING_NUMBER) == "first"
    assert back.get(AVPType.CALLED_NUMBER) == "second"
    # hidden AVP before any Random Vector
    body = raw_avp(0, b"\x00\x0a") + raw_avp(22, h1, True) + raw_avp(36, rv1)
    with pytest.raises(ParseError, match="Random Vector"):
        decode_control(_hdr(body=body), secret=SECRET)


def test_hidden_vendor_avp_round_trips() -> None:
    avps = [AVP(7, b"vendor-secret-thing-longer-than-16", vendor=311, mandatory=False,
                hidden=True)]
    wire = encode_control(message(MessageType.HELLO, 1, 0, avps), secret=b"k",
                          random_bytes=counter_rng(9))
    back = decode_control(wire, secret=b"k")
    assert back.find(7, 311) == avps[0]
    assert back.find(7) is None


# ---------------------------------------------------------------- vendor AVPs, unknown M


def test_vendor_avp_with_ietf_type_number_is_not_confused() -> None:
    vendor_host = AVP(AVPType.HOST_NAME, b"\x01\x02", vendor=9, mandatory=False)
    vendor_tid = AVP(AVPType.ASSIGNED_TUNNEL_ID, b"\xff" * 7, vendor=9, mandatory=False)
    msg = message(MessageType.SCCRQ, 0, 0,
                  [vendor_host, vendor_tid, avp(AVPType.HOST_NAME, "real"),
                   avp(AVPType.ASSIGNED_TUNNEL_ID, 5)])
    back = decode_control(encode_control(msg))
    assert back.get(AVPType.HOST_NAME) == "real"
    assert back.get(AVPType.ASSIGNED_TUNNEL_ID) == 5
    assert back.find(AVPType.HOST_NAME, vendor=9) == vendor_host
    # vendor values are raw bytes, never judged by the IETF length rules
    assert decode_value(vendor_tid) == b"\xff" * 7
    assert unknown_mandatory(back) is None
    # a vendor Message Type number is not a Message Type
    m2 = ControlMessage(1, 0, avps=[AVP(0, b"\x00\x01", vendor=9)])
    assert m2.msg_type is None


def test_unknown_mandatory() -> None:
    base = [avp(AVPType.ASSIGNED_SESSION_ID, 1)]
    assert unknown_mandatory(message(MessageType.ICRQ, 1, 0, base)) is None
    ietf_unknown = AVP(20, b"x", mandatory=True)  # type 20 is not assigned in RFC 2661
    ietf_unknown_opt = AVP(40, b"x", mandatory=False)
    vendor_m = AVP(AVPType.HOST_NAME, b"x", vendor=4491, mandatory=True)
    vendor_opt = AVP(1, b"x", vendor=4491, mandatory=False)
    assert unknown_mandatory(message(MessageType.ICRQ, 1, 0, [*base, ietf_unknown_opt,
                                                              vendor_opt])) is None
    m = decode_control(encode_control(message(MessageType.ICRQ, 1, 0,
                                              [*base, vendor_opt, ietf_unknown, vendor_m])))
    assert unknown_mandatory(m) == ietf_unknown
    m = decode_control(encode_control(message(MessageType.ICRQ, 1, 0, [vendor_m, ietf_unknown])))
    assert unknown_mandatory(m) == vendor_m
    # known IETF types are known whatever their M bit
    assert unknown_mandatory(message(MessageType.ICRQ, 1, 0,
                                     [avp(AVPType.TIE_BREAKER, 1, mandatory=True)])) is None
    # unknown message types: msg_type still reported; the tunnel decides
    odd = decode_control(encode_control(ControlMessage(1, 0, avps=[AVP(0, b"\x00\x63")])))
    assert odd.msg_type == 99
    assert decode_value(AVP(55, b"\x01\x02\x03")) == b"\x01\x02\x03"


# ---------------------------------------------------------------- peek


def test_peek() -> None:
    assert peek(bytes.fromhex("c802000c855a000000020003")) == (True, 0x855A, 0)
    assert peek(data_header(7, 9) + b"\xff\x03") == (False, 7, 9)
    assert peek(encode_data(7, 9, b"x", ns=1, length=True, offset=3)) == (False, 7, 9)
    assert peek(memoryview(encode_data(1, 2, b"", length=True))) == (False, 1, 2)
    for bad in (b"", b"\x00", b"\x00\x02\x00\x07\x00", b"\x40\x02\x00\x08\x00\x01\x00",
                b"\xc8\x02\x00\x0c\x00\x01\x00\x02\x00\x00\x00",  # 11 of 12 bytes
                b"\x40\x02\x00\x20\x00\x01\x00\x02",  # Length 32 > 8
                b"\x00\x03\x00\x01\x00\x02",  # L2TPv3
                b"\x08\x02\x00\x01\x00\x02\x00"):  # S set, Ns/Nr missing
        with pytest.raises(ParseError):
            peek(bad)


# ---------------------------------------------------------------- data messages

PPP = bytes.fromhex("ff03c0210101000a0506cafebabe")


def _flag_id(f: int) -> str:
    return f"L{f & 1}S{f >> 1 & 1}O{f >> 2 & 1}P{f >> 3}"


@pytest.mark.parametrize("flags", range(16), ids=_flag_id)
def test_data_message_every_flag_combination(flags: int) -> None:
    use_l, use_s, use_o, use_p = bool(flags & 1), bool(flags & 2), bool(flags & 4), bool(flags & 8)
    wire = encode_data(0x1111, 0x2222, PPP, ns=3 if use_s else None, nr=4 if use_s else None,
                       length=use_l, offset=5 if use_o else None, priority=use_p)
    hdr_len = 6 + 2 * use_l + 4 * use_s + (2 + 5) * use_o
    assert len(wire) == hdr_len + len(PPP)
    (first,) = struct.unpack_from("!H", wire)
    assert first & 0x000F == 2 and not first & 0x8000
    assert bool(first & 0x4000) == use_l and bool(first & 0x0800) == use_s
    assert bool(first & 0x0200) == use_o and bool(first & 0x0100) == use_p
    if use_l:
        assert struct.unpack_from("!H", wire, 2)[0] == len(wire)
    back = decode_data(wire)
    assert back == DataMessage(0x1111, 0x2222, PPP, 3 if use_s else None, 4 if use_s else None,
                               use_p, 5 if use_o else 0, use_l, use_o)
    assert data_payload_offset(wire) == hdr_len
    assert data_payload_bounds(wire) == (hdr_len, len(wire))
    assert wire[data_payload_offset(wire):] == PPP
    assert peek(wire) == (False, 0x1111, 0x2222)
    # trailing bytes: ignored with L, part of the payload without
    back2 = decode_data(wire + b"zz")
    assert back2.payload == (PPP if use_l else PPP + b"zz")


def test_data_exact_bytes() -> None:
    assert data_header(0x0102, 0x0304) == bytes.fromhex("000201020304")
    assert encode_data(0x0102, 0x0304, b"\xc0\x21") == bytes.fromhex("000201020304c021")
    assert encode_data(1, 2, b"P", ns=5, nr=6, length=True, offset=2, priority=True) == \
        bytes.fromhex("4b02 0011 0001 0002 0005 0006 0002 0000 50")
    # S with only ns: Nr is sent as 0 (RFC 2661 3.1: Nr is reserved in data messages)
    assert decode_data(encode_data(1, 2, b"", ns=9)).nr == 0
    # O with offset 0
    d = decode_data(encode_data(1, 2, b"x", offset=0))
    assert d.has_offset and d.offset == 0 and d.payload == b"x"


def test_decode_real_data_messages() -> None:
    # xl2tpd sends L=1 data messages, l2tpns plain ones (see fixtures)
    d = decode_data(bytes.fromhex("4002001ac8c6b0dcff03c0210101000e0506cafebabe01040578"))
    assert (d.tunnel_id, d.session_id, d.has_length) == (0xC8C6, 0xB0DC, True)
    assert d.payload[:4] == b"\xff\x03\xc0\x21" and len(d.payload) == 18


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "shorter"),
        (b"\x00", "shorter"),
        (b"\x00\x02\x00\x01\x00", "shorter"),
        (b"\x40\x02\x00", "shorter"),
        (b"\x40\x02\x00\x09\x00\x01\x00\x02", "exceeds"),
        (b"\x40\x02\x00\x07\x00\x01\x00\x02\x00", "shorter"),  # Length < header
        (b"\x08\x02\x00\x01\x00\x02\x00\x00\x00", "Ns/Nr"),
        (b"\x02\x02\x00\x01\x00\x02\x00", "Offset Size"),
        (b"\x02\x02\x00\x01\x00\x02\x00\x04abc", "past the end"),
        (b"\x42\x02\x00\x0b\x00\x01\x00\x02\x00\x02abcd", "past the end"),  # pad past Length
        (b"\xc8\x02\x00\x0c\x00\x01\x00\x02\x00\x00\x00\x00", "T=1"),
        (b"\x00\x03\x00\x01\x00\x02", "L2TPv3"),
        (b"\x00\x01\x00\x01\x00\x02", "version"),
    ],
)
def test_malformed_data_raises(data: bytes, needle: str) -> None:
    with pytest.raises(ParseError) as exc_info:
        decode_data(data)
    assert needle in str(exc_info.value)
    with pytest.raises(ParseError):
        data_payload_offset(data)


def test_encode_data_rejects_out_of_range() -> None:
    for kwargs in ({"ns": 70000}, {"nr": -1}, {"offset": 65536}):
        with pytest.raises(ValueError):
            encode_data(1, 2, b"", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_data(1, 65536, b"")
    with pytest.raises(ValueError):
        encode_data(1, 2, bytes(65530), length=True)
    with pytest.raises(ValueError):
        data_header(65536, 0)


# ---------------------------------------------------------------- real peer captures


def _load_fixtures() -> dict[tuple[str, int], bytes]:
    out: dict[tuple[str, int], bytes] = {}
    for line in FIXTURES.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        cap, frame, _sport, _dport, hexdata = line.split()
        out[(cap, int(frame))] = bytes.fromhex(hexdata)
    return out


PEER = _load_fixtures()


@pytest.mark.parametrize("key", sorted(PEER), ids=lambda k: f"{k[0]}#{k[1]}")
def test_peer_packets_decode_and_reencode_identically(key: tuple[str, int]) -> None:
    data = PEER[key]
    is_control, _tid, _sid = peek(data)
    if is_control:
        msg = decode_control(data)
        assert unknown_mandatory(msg) is None
        for a in msg.avps:
            decode_value(a)  # every peer AVP has a valid length for its type
        assert encode_control(msg) == data
    else:
        d = decode_data(data)
        assert encode_data(d.tunnel_id, d.session_id, d.payload, ns=d.ns, nr=d.nr,
                           length=d.has_length, offset=d.offset if d.has_offset else None,
                           priority=d.priority) == data


def test_xl2tpd_tunnel_setup_fields() -> None:
    sccrq = decode_control(PEER[("xl2tpd-e2e", 1)])
    assert sccrq.msg_type == MessageType.SCCRQ and (sccrq.tunnel_id, sccrq.session_id) == (0, 0)
    assert sccrq.get(AVPType.HOST_NAME) == "sc-lac"
    assert sccrq.get(AVPType.VENDOR_NAME) == "xelerance.com"
    assert sccrq.get(AVPType.PROTOCOL_VERSION) == ProtocolVersion(1, 0)
    assert sccrq.get(AVPType.FRAMING_CAPABILITIES) == 3
    assert sccrq.get(AVPType.RECEIVE_WINDOW_SIZE) == 4
    lac_tid = sccrq.get(AVPType.ASSIGNED_TUNNEL_ID)
    sccrp = decode_control(PEER[("xl2tpd-e2e", 2)])
    assert sccrp.msg_type == MessageType.SCCRP
    assert sccrp.tunnel_id == lac_tid == 0x855A
    assert sccrp.get(AVPType.HOST_NAME) == "sc-lns"
    lns_tid = sccrp.get(AVPType.ASSIGNED_TUNNEL_ID)
    scccn = decode_control(PEER[("xl2tpd-e2e", 3)])
    assert scccn.msg_type == MessageType.SCCCN and scccn.tunnel_id == lns_tid
    assert (scccn.ns, scccn.nr) == (1, 1)
    zlb = decode_control(PEER[("xl2tpd-e2e", 5)])
    assert zlb.is_zlb and (zlb.ns, zlb.nr) == (1, 2)
    icrq = decode_control(PEER[("xl2tpd-e2e", 4)])
    icrp = decode_control(PEER[("xl2tpd-e2e", 6)])
    assert icrp.msg_type == MessageType.ICRP
    assert icrp.session_id == icrq.get(AVPType.ASSIGNED_SESSION_ID)
    iccn = decode_control(PEER[("xl2tpd-e2e", 7)])
    assert iccn.msg_type == MessageType.ICCN
    assert iccn.session_id == icrp.get(AVPType.ASSIGNED_SESSION_ID)
    assert iccn.get(AVPType.FRAMING_TYPE) == 1
    cdn = decode_control(PEER[("xl2tpd-e2e", 13)])
    assert cdn.msg_type == MessageType.CDN
    assert cdn.get(AVPType.RESULT_CODE) == ResultCodeValue(CDNResult.LOST_CARRIER, 0)
    lcp = decode_data(PEER[("xl2tpd-e2e", 10)])
    assert lcp.session_id == icrp.get(AVPType.ASSIGNED_SESSION_ID)


def test_xl2tpd_challenge_responses_are_valid() -> None:
    sccrq = decode_control(PEER[("xl2tpd-e2e-chal", 1)])
    sccrp = decode_control(PEER[("xl2tpd-e2e-chal", 2)])
    scccn = decode_control(PEER[("xl2tpd-e2e-chal", 3)])
    lac_chal = sccrq.get(AVPType.CHALLENGE)
    lns_chal = sccrp.get(AVPType.CHALLENGE)
    assert isinstance(lac_chal, bytes) and isinstance(lns_chal, bytes)
    assert len(lac_chal) == 16 and lac_chal != lns_chal
    resp = sccrp.get(AVPType.CHALLENGE_RESPONSE)
    assert resp == challenge_response(2, XL2TPD_SECRET, lac_chal)
    assert scccn.get(AVPType.CHALLENGE_RESPONSE) == challenge_response(3, XL2TPD_SECRET, lns_chal)
    # a wrong secret or the wrong message type id does not match
    assert resp != challenge_response(2, SECRET, lac_chal)
    assert resp != challenge_response(3, XL2TPD_SECRET, lac_chal)


def test_l2tpns_session_fields() -> None:
    sccrq = decode_control(PEER[("l2tpns-session", 1)])
    sccrp = decode_control(PEER[("l2tpns-session", 2)])
    assert sccrq.get(AVPType.HOST_NAME) == "sc-lac"
    assert sccrp.get(AVPType.HOST_NAME) == "vm"
    assert sccrp.get(AVPType.ASSIGNED_TUNNEL_ID) == 3  # l2tpns uses small tunnel ids
    assert sccrp.tunnel_id == sccrq.get(AVPType.ASSIGNED_TUNNEL_ID) == 10798
    chal = sccrq.get(AVPType.CHALLENGE)
    assert isinstance(chal, bytes)
    assert sccrp.get(AVPType.CHALLENGE_RESPONSE) == challenge_response(2, SECRET, chal)
    assert sccrp.get(AVPType.CHALLENGE) is None  # l2tpns never challenges
    iccn = decode_control(PEER[("l2tpns-session", 7)])
    assert iccn.get(AVPType.TX_CONNECT_SPEED) == 10_000_000
    cdn = decode_control(PEER[("l2tpns-session", 28)])
    assert cdn.get(AVPType.RESULT_CODE) == ResultCodeValue(CDNResult.ADMINISTRATIVE)
    stop = decode_control(PEER[("l2tpns-session", 30)])
    assert stop.msg_type == MessageType.STOPCCN
    assert stop.get(AVPType.RESULT_CODE) == ResultCodeValue(StopCCNResult.GENERAL_REQUEST)
    assert stop.get(AVPType.ASSIGNED_TUNNEL_ID) == 10798
    lcp = decode_data(PEER[("l2tpns-session", 9)])
    assert not lcp.has_length and lcp.payload.startswith(b"\xff\x03\xc0\x21\x01")
    assert data_payload_offset(PEER[("l2tpns-session", 9)]) == 6
