"""Property tests for the L2TPv2 codec: round trips, and garbage never raises but ParseError."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyl2tp.errors import ParseError
from pyl2tp.wire.l2tp import (
    AVP,
    ACCMValue,
    AVPType,
    CallErrors,
    ControlMessage,
    DataMessage,
    ProtocolVersion,
    ProxyAuthenID,
    Q931Cause,
    ResultCodeValue,
    avp_info,
    data_payload_bounds,
    data_payload_offset,
    decode_control,
    decode_data,
    decode_value,
    encode_control,
    encode_data,
    encode_value,
    peek,
    unknown_mandatory,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
secrets_ = st.binary(min_size=0, max_size=40)
HIDEABLE = [t for t in AVPType if (info := avp_info(t)) is not None and info.hideable]


@st.composite
def avps(draw: st.DrawFn, allow_hidden: bool) -> AVP:
    hidden = allow_hidden and draw(st.booleans())
    vendor = draw(st.sampled_from([0, 0, 0, 9, 311, 0xFFFF]))
    if vendor == 0:
        pool = HIDEABLE if hidden else [*AVPType]
        atype = int(draw(st.sampled_from(pool)))
        if not hidden and draw(st.integers(0, 9)) == 0:
            atype = draw(st.integers(40, 0xFFFF))  # unknown IETF type
    else:
        atype = draw(u16)
    limit = 1000 if hidden else 1017
    size = draw(st.sampled_from([0, 1, 2, 15, 16, 17, 31, 32, 33, 100, limit]))
    value = draw(st.binary(min_size=size, max_size=size)) if size > 64 else \
        draw(st.binary(min_size=0, max_size=size))
    return AVP(atype, value, vendor, draw(st.booleans()), hidden)


@st.composite
def control_messages(draw: st.DrawFn, allow_hidden: bool = True) -> ControlMessage:
    header = (draw(u16), draw(u16), draw(u16), draw(u16))
    if draw(st.integers(0, 9)) == 0:
        return ControlMessage(*header)  # ZLB
    first = AVP(AVPType.MESSAGE_TYPE, draw(st.binary(min_size=2, max_size=2)),
                mandatory=draw(st.booleans()))
    rest = draw(st.lists(avps(allow_hidden), max_size=12))
    return ControlMessage(*header, avps=[first, *rest])


def recording_rng(seed: int) -> tuple[Callable[[int], bytes], list[bytes]]:
    rnd = random.Random(seed)
    calls: list[bytes] = []

    def rb(n: int) -> bytes:
        out = rnd.randbytes(n)
        calls.append(out)
        return out

    return rb, calls


def expected_after_encode(msg: ControlMessage, calls: list[bytes]) -> list[AVP]:
    """The AVP list a decoder should see: a Random Vector AVP inserted before the first
    hidden AVP when none precedes it (its value is the first 16-byte draw)."""
    out: list[AVP] = []
    have_rv = False
    for a in msg.avps:
        if a.hidden and not have_rv:
            out.append(AVP(AVPType.RANDOM_VECTOR, calls[0]))
            have_rv = True
        if a.vendor == 0 and a.type == AVPType.RANDOM_VECTOR:
            have_rv = True
        out.append(a)
    return out


@SETTINGS
@given(control_messages(), secrets_, st.integers(0, 2**32))
def test_control_round_trip(msg: ControlMessage, secret: bytes, seed: int) -> None:
    rb, calls = recording_rng(seed)
    total = 12 + sum(6 + len(a.value) + (2 + 15 if a.hidden else 0) for a in msg.avps) + 22
    if total > 0xFFFF:
        return
    wire = encode_control(msg, secret=secret, random_bytes=rb)
    back = decode_control(wire, secret=secret)
    assert (back.tunnel_id, back.session_id, back.ns, back.nr) == \
        (msg.tunnel_id, msg.session_id, msg.ns, msg.nr)
    assert back.avps == expected_after_encode(msg, calls)
    assert back.msg_type == msg.msg_type
    assert back.is_zlb == msg.is_zlb
    assert peek(wire) == (True, msg.tunnel_id, msg.session_id)
    assert unknown_mandatory(back) == unknown_mandatory(msg)
    # without hidden AVPs, encoding is a pure function and decode/encode is the identity
    if not any(a.hidden for a in msg.avps):
        assert encode_control(back) == wire
    else:
        with pytest.raises(ParseError):
            decode_control(wire)  # no secret


TYPED: dict[AVPType, st.SearchStrategy[object]] = {
    AVPType.RESULT_CODE: st.one_of(
        st.builds(ResultCodeValue, u16),
        st.builds(ResultCodeValue, u16, u16),
        st.builds(ResultCodeValue, u16, u16, st.text(min_size=1, max_size=50))),
    AVPType.PROTOCOL_VERSION: st.builds(ProtocolVersion, st.integers(0, 255),
                                        st.integers(0, 255)),
    AVPType.TIE_BREAKER: st.integers(0, 2**64 - 1),
    AVPType.Q931_CAUSE_CODE: st.one_of(
        st.builds(Q931Cause, u16, st.integers(0, 255)),
        st.builds(Q931Cause, u16, st.integers(0, 255),
                  st.text(st.characters(max_codepoint=255), min_size=1, max_size=50))),
    AVPType.CALL_ERRORS: st.builds(CallErrors, u32, u32, u32, u32, u32, u32),
    AVPType.ACCM: st.builds(ACCMValue, u32, u32),
    AVPType.PROXY_AUTHEN_ID: st.builds(ProxyAuthenID, st.integers(0, 255)),
    AVPType.SEQUENCING_REQUIRED: st.none(),
    AVPType.CHALLENGE_RESPONSE: st.binary(min_size=16, max_size=16),
}
for _t in (AVPType.MESSAGE_TYPE, AVPType.FIRMWARE_REVISION, AVPType.ASSIGNED_TUNNEL_ID,
           AVPType.RECEIVE_WINDOW_SIZE, AVPType.ASSIGNED_SESSION_ID, AVPType.PROXY_AUTHEN_TYPE):
    TYPED[_t] = u16
for _t in (AVPType.FRAMING_CAPABILITIES, AVPType.BEARER_CAPABILITIES,
           AVPType.CALL_SERIAL_NUMBER, AVPType.MINIMUM_BPS, AVPType.MAXIMUM_BPS,
           AVPType.BEARER_TYPE, AVPType.FRAMING_TYPE, AVPType.TX_CONNECT_SPEED,
           AVPType.PHYSICAL_CHANNEL_ID, AVPType.RX_CONNECT_SPEED):
    TYPED[_t] = u32
for _t in (AVPType.HOST_NAME,):
    TYPED[_t] = st.text(st.characters(max_codepoint=255), min_size=1, max_size=80)
for _t in (AVPType.VENDOR_NAME, AVPType.CALLED_NUMBER, AVPType.CALLING_NUMBER,
           AVPType.PROXY_AUTHEN_NAME):
    TYPED[_t] = st.text(st.characters(max_codepoint=255), max_size=80)
for _t in (AVPType.CHALLENGE, AVPType.PROXY_AUTHEN_CHALLENGE):
    TYPED[_t] = st.binary(min_size=1, max_size=80)
for _t in (AVPType.SUB_ADDRESS, AVPType.INITIAL_RECEIVED_LCP_CONFREQ,
           AVPType.LAST_SENT_LCP_CONFREQ, AVPType.LAST_RECEIVED_LCP_CONFREQ,
           AVPType.PROXY_AUTHEN_RESPONSE, AVPType.RANDOM_VECTOR, AVPType.PRIVATE_GROUP_ID):
    TYPED[_t] = st.binary(max_size=80)


def test_typed_strategies_cover_every_type() -> None:
    assert set(TYPED) == set(AVPType)


@SETTINGS
@given(st.data())
def test_typed_value_round_trip(data: st.DataObject) -> None:
    atype = data.draw(st.sampled_from(list(AVPType)))
    value = data.draw(TYPED[atype])
    raw = encode_value(atype, value)
    assert decode_value(AVP(atype, raw)) == value
    assert decode_value(AVP(atype, raw, vendor=1)) == raw  # vendor AVPs stay raw


@st.composite
def data_messages(draw: st.DrawFn) -> tuple[DataMessage, bool]:
    seq = draw(st.booleans())
    off = draw(st.none() | st.integers(0, 40))
    msg = DataMessage(draw(u16), draw(u16), draw(st.binary(max_size=200)),
                      draw(u16) if seq else None, draw(u16) if seq else None,
                      draw(st.booleans()), off or 0, draw(st.booleans()), off is not None)
    return msg, seq


@SETTINGS
@given(data_messages(), st.binary(max_size=8))
def test_data_round_trip(case: tuple[DataMessage, bool], trailer: bytes) -> None:
    msg, _ = case
    wire = encode_data(msg.tunnel_id, msg.session_id, msg.payload, ns=msg.ns, nr=msg.nr,
                       length=msg.has_length, offset=msg.offset if msg.has_offset else None,
                       priority=msg.priority)
    assert decode_data(wire) == msg
    assert peek(wire) == (False, msg.tunnel_id, msg.session_id)
    start = data_payload_offset(wire)
    assert wire[start:] == msg.payload
    assert data_payload_bounds(wire) == (start, len(wire))
    if msg.has_length:  # Length bounds the payload; trailing bytes are ignored
        assert decode_data(wire + trailer).payload == msg.payload
        assert data_payload_bounds(wire + trailer) == (start, len(wire))


def _only_parse_error(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except ParseError:
        return None


def _decode_everything(data: bytes, secret: bytes | None) -> None:
    msg = _only_parse_error(lambda: decode_control(data, secret=secret))
    if isinstance(msg, ControlMessage):
        unknown_mandatory(msg)
        _ = msg.msg_type, msg.is_zlb
        for a in msg.avps:
            _only_parse_error(lambda a=a: decode_value(a))  # type: ignore[misc]
        for t in AVPType:
            _only_parse_error(lambda t=t: msg.get(t))  # type: ignore[misc]
    _only_parse_error(lambda: decode_data(data))
    _only_parse_error(lambda: peek(data))
    _only_parse_error(lambda: data_payload_offset(data))
    _only_parse_error(lambda: data_payload_bounds(data))
    _only_parse_error(lambda: decode_data(memoryview(data)))


@SETTINGS
@given(st.binary(max_size=300), st.none() | secrets_)
def test_garbage_raises_only_parse_error(data: bytes, secret: bytes | None) -> None:
    _decode_everything(data, secret)


@SETTINGS
@given(st.binary(min_size=12, max_size=300), st.none() | secrets_)
def test_garbage_with_control_header_raises_only_parse_error(data: bytes,
                                                            secret: bytes | None) -> None:
    # force a plausible header so the AVP parser gets exercised
    body = bytearray(data)
    body[0:2] = b"\xc8\x02"
    body[2:4] = min(len(body), int.from_bytes(body[2:4], "big") or len(body)).to_bytes(2, "big")
    _decode_everything(bytes(body), secret)


@SETTINGS
@given(st.integers(0, 0xFFFF), st.binary(max_size=60))
def test_decode_value_raises_only_parse_error(atype: int, value: bytes) -> None:
    _only_parse_error(lambda: decode_value(AVP(atype, value)))
    _only_parse_error(lambda: decode_value(AVP(atype % 45, value)))


mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete"]),
              st.integers(0, 2000), st.integers(0, 255)),
    min_size=1, max_size=6)


def _mutate(wire: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(wire)
    for op, pos, byte in ops:
        if not buf:
            break
        i = pos % len(buf)
        if op == "flip":
            buf[i] ^= 1 << (byte % 8)
        elif op == "set":
            buf[i] = byte
        elif op == "cut":
            del buf[i:]
        elif op == "insert":
            buf.insert(i, byte)
        else:
            del buf[i]
    return bytes(buf)


@SETTINGS
@given(control_messages(), secrets_, st.integers(0, 2**32), mutations)
def test_mutated_control_messages_raise_only_parse_error(
        msg: ControlMessage, secret: bytes, seed: int, ops: list[tuple[str, int, int]]) -> None:
    rb, _ = recording_rng(seed)
    try:
        wire = encode_control(msg, secret=secret, random_bytes=rb)
    except ValueError:
        return  # too long for one message
    bad = _mutate(wire, ops)
    _decode_everything(bad, secret)
    _decode_everything(bad, None)


@SETTINGS
@given(data_messages(), mutations)
def test_mutated_data_messages_raise_only_parse_error(
        case: tuple[DataMessage, bool], ops: list[tuple[str, int, int]]) -> None:
    msg, _ = case
    wire = encode_data(msg.tunnel_id, msg.session_id, msg.payload, ns=msg.ns, nr=msg.nr,
                       length=msg.has_length, offset=msg.offset if msg.has_offset else None,
                       priority=msg.priority)
    _decode_everything(_mutate(wire, ops), None)
