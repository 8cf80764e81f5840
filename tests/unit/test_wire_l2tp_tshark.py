"""tshark as an independent L2TP dissector: everything we encode must dissect cleanly.

Writes a pcap (Ethernet/IPv4/UDP 1701) of every control message type, a hidden-AVP
message, a ZLB and data messages with L/S/O/P flags, then asks tshark for malformed
packets and expert warnings (there must be none) and for the fields we wrote.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from pyl2tp.wire.l2tp import (
    AVP,
    ACCMValue,
    AVPType,
    CallErrors,
    CDNResult,
    ControlMessage,
    ErrorCode,
    MessageType,
    ProtocolVersion,
    ProxyAuthenID,
    ProxyAuthenType,
    Q931Cause,
    ResultCodeValue,
    StopCCNResult,
    avp,
    challenge_response,
    encode_control,
    encode_data,
    message,
)

TSHARK = shutil.which("tshark")
pytestmark = [
    pytest.mark.unit,
    pytest.mark.timeout(120),
    pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)"),
]

SECRET = b"tunnelsecret"
LAC = bytes([198, 18, 0, 2])
LNS = bytes([198, 18, 0, 1])
# A valid LCP Configure-Request (Magic-Number option) behind FF 03, as peers send it.
LCP_CONFREQ = bytes.fromhex("ff03c0210101000a0506cafebabe")


def _eth_ipv4_udp(payload: bytes, src: bytes, dst: bytes, ident: int) -> bytes:
    udp = struct.pack("!HHHH", 1701, 1701, 8 + len(payload), 0) + payload
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ident & 0xFFFF, 0,
                               64, 17, 0, src, dst))
    total = sum(struct.unpack("!10H", ip))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    struct.pack_into("!H", ip, 10, ~total & 0xFFFF)
    eth = bytes.fromhex("020000000001" "020000000002" "0800")
    return eth + bytes(ip) + udp


def write_pcap(path: Path, datagrams: list[bytes]) -> None:
    """Minimal pcap writer: LINKTYPE_ETHERNET, UDP checksum 0 (allowed for IPv4)."""
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, payload in enumerate(datagrams):
            src, dst = (LAC, LNS) if i % 2 == 0 else (LNS, LAC)
            frame = _eth_ipv4_udp(payload, src, dst, i)
            f.write(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)))
            f.write(frame)


def tshark(pcap: Path, *args: str) -> str:
    assert TSHARK is not None
    proc = subprocess.run([TSHARK, "-r", str(pcap), *args], capture_output=True, text=True,
                          timeout=60, check=True)
    return proc.stdout  # stderr carries a harmless "running as root" warning


def _counter_rng() -> Callable[[int], bytes]:
    state = [0]

    def rb(n: int) -> bytes:
        out = bytes((state[0] + i * 7) & 0xFF for i in range(n))
        state[0] += n
        return out

    return rb


CHAL = bytes(range(16))
MESSAGES: list[tuple[MessageType, list[AVP]]] = [
    (MessageType.SCCRQ, [
        avp(AVPType.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        avp(AVPType.HOST_NAME, "lac.test"),
        avp(AVPType.FRAMING_CAPABILITIES, 3),
        avp(AVPType.BEARER_CAPABILITIES, 0),
        avp(AVPType.TIE_BREAKER, 0x0102030405060708),
        avp(AVPType.FIRMWARE_REVISION, 0x0100),
        avp(AVPType.VENDOR_NAME, "pyl2tp"),
        avp(AVPType.ASSIGNED_TUNNEL_ID, 4242),
        avp(AVPType.RECEIVE_WINDOW_SIZE, 8),
        avp(AVPType.CHALLENGE, CHAL),
    ]),
    (MessageType.SCCRP, [
        avp(AVPType.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        avp(AVPType.FRAMING_CAPABILITIES, 3),
        avp(AVPType.HOST_NAME, "lns.test"),
        avp(AVPType.ASSIGNED_TUNNEL_ID, 77),
        avp(AVPType.RECEIVE_WINDOW_SIZE, 4),
        avp(AVPType.CHALLENGE_RESPONSE, challenge_response(2, SECRET, CHAL)),
        avp(AVPType.CHALLENGE, CHAL[::-1]),
    ]),
    (MessageType.SCCCN, [avp(AVPType.CHALLENGE_RESPONSE,
                             challenge_response(3, SECRET, CHAL[::-1]))]),
    (MessageType.STOPCCN, [
        avp(AVPType.ASSIGNED_TUNNEL_ID, 77),
        avp(AVPType.RESULT_CODE, ResultCodeValue(StopCCNResult.GENERAL_ERROR,
                                                 ErrorCode.VENDOR_ERROR, "auth failed")),
    ]),
    (MessageType.HELLO, []),
    (MessageType.OCRQ, [
        avp(AVPType.ASSIGNED_SESSION_ID, 9),
        avp(AVPType.CALL_SERIAL_NUMBER, 1001),
        avp(AVPType.MINIMUM_BPS, 9600),
        avp(AVPType.MAXIMUM_BPS, 1_000_000),
        avp(AVPType.BEARER_TYPE, 2),
        avp(AVPType.FRAMING_TYPE, 2),
        avp(AVPType.CALLED_NUMBER, "5551234"),
        avp(AVPType.SUB_ADDRESS, b"12"),
    ]),
    (MessageType.OCRP, [avp(AVPType.ASSIGNED_SESSION_ID, 10),
                        avp(AVPType.PHYSICAL_CHANNEL_ID, 3)]),
    (MessageType.OCCN, [avp(AVPType.TX_CONNECT_SPEED, 64000), avp(AVPType.FRAMING_TYPE, 1),
                        avp(AVPType.RX_CONNECT_SPEED, 56000)]),
    (MessageType.ICRQ, [
        avp(AVPType.ASSIGNED_SESSION_ID, 0x1234),
        avp(AVPType.CALL_SERIAL_NUMBER, 1),
        avp(AVPType.BEARER_TYPE, 0),
        avp(AVPType.PHYSICAL_CHANNEL_ID, 0),
        avp(AVPType.CALLED_NUMBER, "1"),
        avp(AVPType.CALLING_NUMBER, "2"),
    ]),
    (MessageType.ICRP, [avp(AVPType.ASSIGNED_SESSION_ID, 0x4321)]),
    (MessageType.ICCN, [
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
    ]),
    (MessageType.CDN, [
        avp(AVPType.RESULT_CODE, ResultCodeValue(CDNResult.ADMINISTRATIVE)),
        avp(AVPType.Q931_CAUSE_CODE, Q931Cause(16, 0x45, "normal")),
        avp(AVPType.ASSIGNED_SESSION_ID, 0x4321),
    ]),
    (MessageType.WEN, [avp(AVPType.CALL_ERRORS, CallErrors(1, 0, 0, 2, 0, 0))]),
    (MessageType.SLI, [avp(AVPType.ACCM, ACCMValue(0xFFFFFFFF, 0))]),
]
HIDDEN_ICCN = [
    avp(AVPType.TX_CONNECT_SPEED, 10_000_000),
    avp(AVPType.FRAMING_TYPE, 1),
    avp(AVPType.PROXY_AUTHEN_TYPE, int(ProxyAuthenType.PAP), hidden=True),
    avp(AVPType.PROXY_AUTHEN_NAME, "alice@example.test", hidden=True),
    avp(AVPType.PROXY_AUTHEN_RESPONSE, b"a password longer than sixteen", hidden=True),
]


def build_datagrams() -> tuple[list[bytes], list[str]]:
    """All datagrams to dissect, and the l2tp.avp.message_type tshark should report for each."""
    grams: list[bytes] = []
    types: list[str] = []
    for i, (mt, avps) in enumerate(MESSAGES):
        msg = message(mt, 0x0100 + i, 0 if mt <= MessageType.HELLO else 0x22, avps)
        msg.ns, msg.nr = i, i + 1
        grams.append(encode_control(msg))
        types.append(str(int(mt)))
    hidden = message(MessageType.ICCN, 0x0200, 0x33, HIDDEN_ICCN)
    grams.append(encode_control(hidden, secret=SECRET, random_bytes=_counter_rng()))
    types.append(str(int(MessageType.ICCN)))
    grams.append(encode_control(ControlMessage(0x0200, 0, ns=3, nr=4)))  # ZLB
    types.append("")
    data_cases = [
        {},
        {"length": True},
        {"ns": 1, "nr": 0},
        {"length": True, "ns": 2, "nr": 0},
        {"offset": 0},
        {"offset": 4},
        {"length": True, "ns": 3, "nr": 0, "offset": 2, "priority": True},
        {"priority": True},
    ]
    for kwargs in data_cases:
        grams.append(encode_data(0x0200, 0x33, LCP_CONFREQ, **kwargs))  # type: ignore[arg-type]
        types.append("")
    return grams, types


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("l2tp_tshark") / "ours.pcap"
    write_pcap(path, build_datagrams()[0])
    return path


def test_no_malformed_packets_or_expert_warnings(pcap: Path) -> None:
    out = tshark(pcap, "-Y", "_ws.malformed || _ws.expert.severity >= warning",
                 "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message")
    assert out.strip() == "", f"tshark flagged frames:\n{out}"


def test_tshark_reads_our_message_types(pcap: Path) -> None:
    _, types = build_datagrams()
    out = tshark(pcap, "-T", "fields", "-e", "frame.number", "-e", "l2tp.type",
                 "-e", "l2tp.avp.message_type")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == len(types)
    assert [r[2] if len(r) > 2 else "" for r in rows] == types
    n_control = len(MESSAGES) + 2
    assert [r[1] for r in rows] == ["1"] * n_control + ["0"] * (len(types) - n_control)


def test_tshark_reads_header_and_avp_fields(pcap: Path) -> None:
    out = tshark(pcap, "-Y", "frame.number <= 2", "-T", "fields", "-E", "occurrence=a",
                 "-E", "aggregator=|", "-e", "l2tp.tunnel", "-e", "l2tp.Ns", "-e", "l2tp.Nr",
                 "-e", "l2tp.avp.host_name", "-e", "l2tp.avp.assigned_tunnel_id",
                 "-e", "l2tp.avp.chap_challenge", "-e", "l2tp.avp.chap_challenge_response",
                 "-e", "l2tp.length", "-e", "udp.length")
    first, second = (line.split("\t") for line in out.splitlines())
    assert first[:6] == ["256", "0", "1", "lac.test", "4242", CHAL.hex()]
    assert second[:5] == ["257", "1", "2", "lns.test", "77"]
    assert second[6] == challenge_response(2, SECRET, CHAL).hex()
    for row in (first, second):  # tshark does not flag Length < datagram; check ourselves
        assert int(row[7]) == int(row[8]) - 8


def test_tshark_sees_hidden_avps_and_data_flags(pcap: Path) -> None:
    hidden_frame = len(MESSAGES) + 1
    out = tshark(pcap, "-Y", f"frame.number == {hidden_frame}", "-T", "fields",
                 "-E", "occurrence=a", "-E", "aggregator=|",
                 "-e", "l2tp.avp.type", "-e", "l2tp.avp.hidden")
    avp_types, hidden_bits = out.strip().split("\t")
    # tshark names the type of clear AVPs only; the last three are hidden
    assert avp_types.split("|") == ["0", "24", "19", "36"]
    assert [h in ("1", "True") for h in hidden_bits.split("|")] == \
        [False, False, False, False, True, True, True]
    out = tshark(pcap, "-Y", "l2tp.type == 0", "-T", "fields", "-e", "l2tp.length_bit",
                 "-e", "l2tp.seq_bit", "-e", "l2tp.offset_bit", "-e", "l2tp.priority",
                 "-e", "ppp.code", "-e", "lcp.opt.magic_number")
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 8
    # every payload dissected as the LCP Configure-Request we put in
    assert all(r[4] == "1" and r[5] == "0xcafebabe" for r in rows), rows
    flags = [tuple(v in ("1", "True") for v in r[:4]) for r in rows]
    assert flags[6] == (True, True, True, True)
    assert flags[0] == (False, False, False, False)
