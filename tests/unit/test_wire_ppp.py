"""Unit tests for the PPP codec (pyl2tp.wire.ppp): frames, control packets, options."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyl2tp.errors import ParseError
from pyl2tp.wire.ppp import (
    IPV4_HEADER,
    IPV6_HEADER,
    Code,
    CPPacket,
    IPCPOption,
    IPV6CPOption,
    LCPOption,
    Option,
    PPPProtocol,
    decode_cp,
    decode_frame,
    decode_options,
    echo_data,
    encode_cp,
    encode_frame,
    encode_options,
    frame_ip,
    frame_ipv4,
    frame_ipv6,
    frame_protocol,
    option_u16,
    option_u32,
    parse_echo,
    parse_protocol_reject,
    protocol_reject_data,
    u16_option,
    u32_option,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# l2tpns's first LCP Configure-Request (peers/l2tpns/README.md): MRU 1462, CHAP-MD5,
# Magic-Number, MRRU and Endpoint Discriminator.
L2TPNS_OPTIONS = bytes.fromhex("010405b60305c2230505066b0490521104064e130702c6122901")
L2TPNS_CONFREQ = bytes.fromhex("0101001e") + L2TPNS_OPTIONS
IPV4_PACKET = bytes.fromhex("45000014000100004001f8e4c6120001c6120002")
IPV6_PACKET = bytes.fromhex("6000000000003a40") + bytes(32)


# ---------------------------------------------------------------- numbers


def test_protocol_numbers_match_the_assigned_numbers() -> None:
    assert PPPProtocol.IPV4 == 0x0021
    assert PPPProtocol.IPV6 == 0x0057
    assert PPPProtocol.LCP == 0xC021
    assert PPPProtocol.PAP == 0xC023
    assert PPPProtocol.CHAP == 0xC223
    assert PPPProtocol.EAP == 0xC227
    assert PPPProtocol.LQR == 0xC025
    assert PPPProtocol.IPCP == 0x8021
    assert PPPProtocol.IPV6CP == 0x8057
    assert PPPProtocol.CCP == 0x80FD
    assert [c.value for c in Code] == list(range(1, 12))
    assert (LCPOption.MRU, LCPOption.ACCM, LCPOption.AUTH_PROTOCOL, LCPOption.QUALITY_PROTOCOL,
            LCPOption.MAGIC_NUMBER, LCPOption.PFC, LCPOption.ACFC, LCPOption.MRRU,
            LCPOption.ENDPOINT_DISCRIMINATOR) == (1, 2, 3, 4, 5, 7, 8, 17, 19)
    assert (IPCPOption.IP_ADDRESSES, IPCPOption.IP_COMPRESSION, IPCPOption.IP_ADDRESS,
            IPCPOption.PRIMARY_DNS, IPCPOption.PRIMARY_NBNS, IPCPOption.SECONDARY_DNS,
            IPCPOption.SECONDARY_NBNS) == (1, 2, 3, 129, 130, 131, 132)
    assert (IPV6CPOption.INTERFACE_IDENTIFIER, IPV6CPOption.IPV6_COMPRESSION) == (1, 2)


# ---------------------------------------------------------------- frames


@pytest.mark.parametrize(("frame", "protocol", "payload"), [
    (b"\xff\x03\xc0\x21" + L2TPNS_CONFREQ, 0xC021, L2TPNS_CONFREQ),  # full
    (b"\xc0\x21" + L2TPNS_CONFREQ, 0xC021, L2TPNS_CONFREQ),  # ACFC
    (b"\xff\x03\x21" + IPV4_PACKET, 0x0021, IPV4_PACKET),  # PFC
    (b"\x21" + IPV4_PACKET, 0x0021, IPV4_PACKET),  # ACFC + PFC
    (b"\xff\x03\x00\x57" + IPV6_PACKET, 0x0057, IPV6_PACKET),
    (b"\xff\x03\x80\x57", 0x8057, b""),  # empty information field
    (b"\xff\x03\x80\x21\x01\x01\x00\x04", 0x8021, b"\x01\x01\x00\x04"),
])
def test_decode_frame(frame: bytes, protocol: int, payload: bytes) -> None:
    assert decode_frame(frame) == (protocol, payload)
    assert decode_frame(memoryview(frame)) == (protocol, payload)
    proto, offset = frame_protocol(frame)
    assert proto == protocol and frame[offset:] == payload


@pytest.mark.parametrize("frame", [
    b"",  # empty
    b"\xff\x03",  # address/control only
    b"\xff\x03\xc0",  # truncated two-byte protocol
    b"\x00",  # even first octet with nothing after it
    b"\xff\x03\x00\x20",  # RFC 1661 2: the last protocol octet must be odd
    b"\xc0\x22\x01",  # even low octet
])
def test_decode_frame_rejects(frame: bytes) -> None:
    with pytest.raises(ParseError):
        decode_frame(frame)


def test_encode_frame_full_by_default() -> None:
    assert encode_frame(0x8021, b"\x01") == b"\xff\x03\x80\x21\x01"
    assert encode_frame(0x0021, IPV4_PACKET) == IPV4_HEADER + IPV4_PACKET


def test_encode_frame_compressions() -> None:
    assert encode_frame(0x0021, b"x", acfc=True) == b"\x00\x21x"
    assert encode_frame(0x0021, b"x", pfc=True) == b"\xff\x03\x21x"
    assert encode_frame(0x0021, b"x", acfc=True, pfc=True) == b"\x21x"
    # PFC applies only to protocols below 0x100.
    assert encode_frame(0x8021, b"x", acfc=True, pfc=True) == b"\x80\x21x"


def test_lcp_is_never_compressed() -> None:
    # RFC 1661 6.5/6.6: LCP goes with FF 03 and a two-byte protocol whatever was negotiated.
    assert encode_frame(PPPProtocol.LCP, b"p", acfc=True, pfc=True) == b"\xff\x03\xc0\x21p"


@pytest.mark.parametrize("protocol", [0x0020, 0x0121, 0x10021, -1])
def test_encode_frame_refuses_invalid_protocols(protocol: int) -> None:
    with pytest.raises(ValueError):
        encode_frame(protocol, b"")


def test_ip_helpers() -> None:
    assert IPV4_HEADER == b"\xff\x03\x00\x21"
    assert IPV6_HEADER == b"\xff\x03\x00\x57"
    assert frame_ipv4(IPV4_PACKET) == IPV4_HEADER + IPV4_PACKET
    assert frame_ipv6(IPV6_PACKET) == IPV6_HEADER + IPV6_PACKET
    assert frame_ip(IPV4_PACKET) == IPV4_HEADER + IPV4_PACKET
    assert frame_ip(IPV6_PACKET) == IPV6_HEADER + IPV6_PACKET
    assert frame_ip(IPV4_PACKET, acfc=True, pfc=True) == b"\x21" + IPV4_PACKET
    assert decode_frame(frame_ip(IPV6_PACKET, pfc=True)) == (0x57, IPV6_PACKET)
    with pytest.raises(ValueError):
        frame_ip(b"\x10abc")
    with pytest.raises(ValueError):
        frame_ip(b"")


@given(st.sampled_from([0x0021, 0x0057, 0x8021, 0x8057, 0xC021, 0xC023, 0xC223, 0x003D]),
       st.binary(max_size=64), st.booleans(), st.booleans())
def test_frame_round_trip(protocol: int, payload: bytes, acfc: bool, pfc: bool) -> None:
    assert decode_frame(encode_frame(protocol, payload, acfc=acfc, pfc=pfc)) == (protocol,
                                                                                 payload)


# ---------------------------------------------------------------- control packets


def test_decode_cp_l2tpns_request() -> None:
    packet = decode_cp(L2TPNS_CONFREQ)
    assert packet == CPPacket(Code.CONFIGURE_REQUEST, 1, L2TPNS_CONFREQ[4:])
    assert encode_cp(packet) == L2TPNS_CONFREQ


def test_decode_cp_ignores_padding_after_length() -> None:
    # RFC 1661 5: octets outside the Length are padding.
    assert decode_cp(b"\x05\x07\x00\x06ab" + b"PAD") == CPPacket(5, 7, b"ab")


@pytest.mark.parametrize("payload", [
    b"", b"\x01", b"\x01\x01\x00",  # shorter than the header
    b"\x01\x01\x00\x03",  # Length < 4
    b"\x01\x01\x00\x00",
    b"\x01\x01\x00\x09abcd",  # Length beyond the payload
])
def test_decode_cp_rejects(payload: bytes) -> None:
    with pytest.raises(ParseError):
        decode_cp(payload)


def test_encode_cp() -> None:
    assert encode_cp(CPPacket(Code.TERMINATE_ACK, 0x42)) == b"\x06\x42\x00\x04"
    assert encode_cp(CPPacket(Code.ECHO_REQUEST, 1, b"\x00" * 4)) == b"\x09\x01\x00\x08" + bytes(4)
    with pytest.raises(ValueError):
        encode_cp(CPPacket(1, 1, bytes(0x10000)))


def test_decode_cp_every_truncation_is_a_parse_error() -> None:
    for n in range(len(L2TPNS_CONFREQ)):
        with pytest.raises(ParseError):
            decode_cp(L2TPNS_CONFREQ[:n])


# ---------------------------------------------------------------- options


def test_decode_options_l2tpns() -> None:
    opts = decode_options(L2TPNS_CONFREQ[4:])
    assert opts == [
        Option(LCPOption.MRU, b"\x05\xb6"),
        Option(LCPOption.AUTH_PROTOCOL, b"\xc2\x23\x05"),
        Option(LCPOption.MAGIC_NUMBER, bytes.fromhex("6b049052")),
        Option(LCPOption.MRRU, bytes.fromhex("064e")),
        Option(LCPOption.ENDPOINT_DISCRIMINATOR, bytes.fromhex("02c6122901")),
    ]
    assert option_u16(opts[0]) == 1462
    assert option_u32(opts[2]) == 0x6B049052
    assert option_u16(opts[2]) is None and option_u32(opts[0]) is None
    assert encode_options(opts) == L2TPNS_CONFREQ[4:]


@pytest.mark.parametrize("data", [
    b"\x01",  # truncated header
    b"\x01\x00",  # Length 0
    b"\x01\x01",  # Length 1
    b"\x01\x04\x05",  # overrun
    b"\x07\x02\x05\x06\x00\x00",  # second option overruns
])
def test_decode_options_rejects(data: bytes) -> None:
    with pytest.raises(ParseError):
        decode_options(data)


def test_empty_options_and_booleans() -> None:
    assert decode_options(b"") == []
    assert encode_options([]) == b""
    assert encode_options([Option(LCPOption.PFC), Option(LCPOption.ACFC)]) == b"\x07\x02\x08\x02"
    assert u16_option(1, 1400) == Option(1, b"\x05\x78")
    assert u32_option(5, 0xDEADBEEF) == Option(5, b"\xde\xad\xbe\xef")
    with pytest.raises(ValueError):
        encode_options([Option(1, bytes(254))])


@given(st.lists(st.builds(Option, st.integers(0, 255), st.binary(max_size=253)), max_size=8))
def test_options_round_trip(options: list[Option]) -> None:
    assert decode_options(encode_options(options)) == options


@given(st.binary(max_size=80))
def test_garbage_raises_only_parse_error(data: bytes) -> None:
    for fn in (decode_frame, decode_cp, decode_options):
        with contextlib.suppress(ParseError):
            fn(data)


# ---------------------------------------------------------------- LCP data fields


def test_echo_and_protocol_reject_fields() -> None:
    assert echo_data(0x01020304, b"Aho") == b"\x01\x02\x03\x04Aho"
    assert parse_echo(b"\x00\x00\x00\x00Aho Baka Manuke") == (0, b"Aho Baka Manuke")
    with pytest.raises(ParseError):
        parse_echo(b"\x00\x00\x00")
    assert protocol_reject_data(0x8057, b"\x01\x01\x00\x04") == b"\x80\x57\x01\x01\x00\x04"
    assert parse_protocol_reject(b"\x80\x57xyz") == (0x8057, b"xyz")
    with pytest.raises(ParseError):
        parse_protocol_reject(b"\x80")
