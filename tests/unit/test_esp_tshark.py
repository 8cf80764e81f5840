"""tshark decrypts our ESP with nothing but the key-log file's options.

A pcap holds ESP packets of every transform, in transport mode (inner UDP 1701 with our
checksum) and tunnel mode (an inner IPv4 packet), as raw IP protocol 50 and inside
UDP/4500, plus a NAT-keepalive. With ``tshark_options(keylog)`` tshark must verify every
ICV, dissect the L2TP (control and data) inside, find the inner UDP checksums good, and
report no malformed packet and no expert warning. Without the options it sees no L2TP.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.packet import Raw

from pyl2tp.esp import ESPParams, OutboundSA, keepalive
from pyl2tp.esp.sa import AUTH_SPECS
from pyl2tp.keylog import KeyLog, tshark_options
from pyl2tp.wire.esp import transport_inner
from pyl2tp.wire.l2tp import AVPType, MessageType, ProtocolVersion, avp, encode_control, message
from pyl2tp.wire.l2tp_data import encode_data
from pyl2tp.wire.ppp import Code, CPPacket, PPPProtocol, echo_data, encode_cp, encode_frame

TSHARK = shutil.which("tshark")
pytestmark = [
    pytest.mark.unit,
    pytest.mark.timeout(180),
    pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)"),
]

LNS, CLIENT = "198.18.0.1", "198.18.0.2"
INNER_LNS, INNER_CLIENT = "198.18.100.1", "198.18.100.5"
TRANSFORMS = [
    ("aes-gcm-16", 20, "null"), ("aes-gcm-16", 36, "null"),
    ("aes-cbc", 16, "hmac-sha1-96"), ("aes-cbc", 32, "hmac-sha256-128"),
    ("aes-cbc", 24, "hmac-sha384-192"), ("aes-cbc", 32, "hmac-sha512-256"),
    ("aes-cbc", 16, "hmac-md5-96"), ("3des-cbc", 24, "hmac-sha1-96"),
]
WARNING = 0x600000  # tshark 4.0 expert severities: note 0x400000, warning 0x600000
PCAP_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")
LINKTYPE_RAW = 101


def write_ip_pcap(path: Path, packets: list[bytes]) -> Path:
    """Minimal pcap writer for IP packets (LINKTYPE_RAW), e.g. raw ESP (protocol 50)."""
    out = bytearray(PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
    for n, packet in enumerate(packets):
        out += PCAP_RECORD.pack(1_700_000_000 + n, 0, len(packet), len(packet)) + packet
    path.write_bytes(bytes(out))
    return path


def l2tp_messages() -> list[tuple[bytes, str]]:
    """(L2TP datagram, expected l2tp.type: 1 control, 0 data)."""
    sccrq = message(MessageType.SCCRQ, 0, 0, [
        avp(AVPType.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        avp(AVPType.HOST_NAME, "lac.test"),
        avp(AVPType.FRAMING_CAPABILITIES, 3),
        avp(AVPType.ASSIGNED_TUNNEL_ID, 4242),
        avp(AVPType.RECEIVE_WINDOW_SIZE, 8),
    ])
    echo = encode_cp(CPPacket(Code.ECHO_REQUEST, 9, echo_data(0x1234ABCD, b"ping")))
    data = encode_data(4242, 17, encode_frame(PPPProtocol.LCP, echo))
    big = encode_data(4242, 17, encode_frame(PPPProtocol.LCP, encode_cp(
        CPPacket(Code.ECHO_REQUEST, 10, echo_data(0x1234ABCD, bytes(1300))))))
    return [(encode_control(sccrq), "1"), (data, "0"), (big, "0")]


def build_capture(tmp: Path) -> tuple[Path, Path, int]:
    """The pcap, the key log, and the number of ESP packets in the pcap."""
    keylog_path = tmp / "keys.log"
    packets: list[bytes] = []
    spi = 0x1000
    with KeyLog(keylog_path) as keylog:
        keylog.comment("test capture")
        keylog.ikev1(bytes.fromhex("12a8be1f308ca10c"), bytes(16))  # tshark must take it too
        for enc, klen, auth in TRANSFORMS:
            for mode in ("transport", "tunnel"):
                for encap in (False, True):
                    for src, dst in ((CLIENT, LNS), (LNS, CLIENT)):
                        spi += 1
                        r = random.Random(spi)
                        p = ESPParams(
                            spi=spi, enc=enc, enc_key=r.randbytes(klen), auth=auth,
                            auth_key=r.randbytes(AUTH_SPECS[auth].key_size) if auth != "null"
                            else b"", mode=mode, udp_encap=encap, local=src,  # type: ignore[arg-type]
                            peer=dst)
                        keylog.esp(p, inbound=False)
                        sa = OutboundSA(p, r.randbytes)
                        for l2tp, _ in l2tp_messages():
                            if mode == "transport":
                                esp = sa.encrypt(transport_inner(src, dst, l2tp), 17)
                            else:
                                inner = bytes(IP(src=INNER_CLIENT, dst=INNER_LNS)
                                              / UDP(sport=1701, dport=1701) / Raw(l2tp))
                                esp = sa.encrypt(inner, 4)
                            if encap:  # RFC 3948 2.1: outer UDP checksum 0
                                wire = IP(src=src, dst=dst) / UDP(
                                    sport=4500, dport=4500, chksum=0) / Raw(esp)
                            else:
                                wire = IP(src=src, dst=dst, proto=50) / Raw(esp)
                            packets.append(bytes(wire))
        count = len(packets)
        packets.append(bytes(IP(src=CLIENT, dst=LNS) / UDP(sport=4500, dport=4500, chksum=0)
                             / Raw(keepalive())))
    return write_ip_pcap(tmp / "esp.pcap", packets), keylog_path, count


FIELDS = ["frame.number", "frame.protocols", "esp.spi", "esp.icv_good", "esp.protocol",
          "l2tp.type", "l2tp.avp.message_type", "udp.checksum.status", "udpencap.nat_keepalive",
          "_ws.expert.message", "_ws.expert.severity", "_ws.malformed"]


def tshark_rows(pcap: Path, options: list[str]) -> list[dict[str, list[str]]]:
    assert TSHARK is not None
    argv = [TSHARK, "-n", "-r", str(pcap), *options, "-o", "udp.check_checksum:TRUE",
            "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=|"]
    for f in FIELDS:
        argv += ["-e", f]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = []
    for line in proc.stdout.splitlines():
        cols = line.split("\t") + [""] * len(FIELDS)
        rows.append({f: (cols[i].split("|") if cols[i] else []) for i, f in enumerate(FIELDS)})
    return rows


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    return build_capture(tmp_path_factory.mktemp("esp"))


def test_tshark_decrypts_every_packet_with_the_keylog(capture: tuple[Path, Path, int]) -> None:
    pcap, keylog_path, count = capture
    options = tshark_options(keylog_path)
    assert options[:4] == ["-o", "esp.enable_encryption_decode:TRUE",
                           "-o", "esp.enable_authentication_check:TRUE"]
    rows = tshark_rows(pcap, options)
    assert len(rows) == count + 1
    expected = [kind for _ in range(count // 3) for _, kind in l2tp_messages()]
    for row, l2tp_type in zip(rows, expected, strict=False):
        frame = row["frame.number"][0]
        stack = row["frame.protocols"][0].split(":")
        assert "esp" in stack and stack[-1] != "data", (frame, stack)
        assert "l2tp" in stack, (frame, stack)
        assert row["esp.icv_good"] == ["1"], (frame, row["esp.icv_good"])
        assert row["l2tp.type"] == [l2tp_type], frame
        if l2tp_type == "1":
            assert row["l2tp.avp.message_type"][:1] == [str(int(MessageType.SCCRQ))]
        else:
            assert "lcp" in stack
        assert row["esp.protocol"] in (["0x11"], ["0x04"]), frame
        if row["esp.protocol"] == ["0x11"]:  # transport: our inner UDP checksum is good
            assert "1" in row["udp.checksum.status"], (frame, row["udp.checksum.status"])
        assert not row["_ws.malformed"], frame
        bad = [m for m, s in zip(row["_ws.expert.message"], row["_ws.expert.severity"],
                                 strict=False) if int(s, 0) >= WARNING]
        assert not bad, (frame, bad)
    last = rows[-1]
    assert "udpencap" in last["frame.protocols"][0] and last["udpencap.nat_keepalive"]
    assert not last["_ws.malformed"]


def test_without_keys_tshark_sees_no_l2tp(capture: tuple[Path, Path, int]) -> None:
    pcap, _, count = capture
    rows = tshark_rows(pcap, [])
    assert all("l2tp" not in r["frame.protocols"][0] for r in rows)
    assert sum("esp" in r["frame.protocols"][0] for r in rows) == count


def test_a_wrong_key_fails_the_icv(capture: tuple[Path, Path, int], tmp_path: Path) -> None:
    pcap, keylog_path, _ = capture
    lines = keylog_path.read_text().splitlines()
    # Corrupt the integrity key of the first AES-CBC SA (hex digit flipped).
    idx = next(i for i, ln in enumerate(lines) if "AES-CBC" in ln)
    ln = lines[idx]
    lines[idx] = ln[:-3] + ("0" if ln[-3] != "0" else "1") + ln[-2:]
    spi = ln.split(",")[3].strip('"')
    wrong = tmp_path / "wrong.log"
    wrong.write_text("\n".join(lines) + "\n")
    rows = tshark_rows(pcap, tshark_options(wrong))
    hit = [r for r in rows if r["esp.spi"][:1] and int(r["esp.spi"][0], 0) == int(spi, 16)]
    assert hit and all(r["esp.icv_good"] == ["0"] for r in hit)
