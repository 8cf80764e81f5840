"""Self-test of harness part A: namespaces, capture + tshark checks, xl2tpd with its stand-in.

Two xl2tpd (LAC and LNS) in two namespaces: tunnel and session come up, PPP frames cross
byte-exact both ways through real L2TP data messages, a hang-up sends CDN, and tshark finds
nothing wrong with xl2tpd's own packets (which validates the capture and tshark helpers).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems, write_udp_pcap
from tests.harness.fakepppd import FCS_GOOD, Deframer, fcs16, hdlc_encode
from tests.harness.netns import Netns, Topology, list_netns, remove_stale_netns, wait_for
from tests.harness.xl2tpd import Xl2tpd

pytestmark = [pytest.mark.peer, pytest.mark.timeout(60)]

LNS_ADDR = "198.18.30.101"
LAC_ADDR = "198.18.30.102"
SECRET = "harness-tunnel-secret"

# LCP Configure-Request: MRU 1400, Magic-Number (RFC 1661 6.1, 6.4).
LCP_CONF_REQ = bytes.fromhex("ff03c021" "0101000e" "010405780506cafebabe")
# LCP Echo-Request (RFC 1661 5.8) whose data needs async escaping: every byte < 0x20 plus
# 0x7d and 0x7e (RFC 1662 7.1), so the frame stays valid for tshark.
_ECHO_DATA = bytes(range(0x20)) + b"\x7d\x7e\x7d\x7e\x20"
LCP_ECHO_ESCAPES = bytes.fromhex("ff03c021" "0907") + (8 + len(_ECHO_DATA)).to_bytes(2, "big") \
    + bytes.fromhex("7e7d0011") + _ECHO_DATA

# L2TP message types (RFC 2661 3.2).
SCCRQ, SCCRP, SCCCN, STOPCCN, ICRQ, ICRP, ICCN, CDN = 1, 2, 3, 4, 10, 11, 12, 14


def _udp_reachable(a: Netns, b: Netns, b_addr: str) -> str:
    """Send one UDP datagram from `a` to `b_addr` in `b`; the text `b` received."""
    server = b.popen([sys.executable, "-c",
                      "import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                      f"s.bind(('{b_addr}',40000)); print('ready',flush=True);"
                      "s.settimeout(10); print(s.recv(100).decode(),flush=True)"],
                     stdout=subprocess.PIPE)
    assert server.stdout is not None
    assert server.stdout.readline().strip() == b"ready"
    a.run([sys.executable, "-c", "import socket; socket.socket(socket.AF_INET,"
           f"socket.SOCK_DGRAM).sendto(b'hello-veth', ('{b_addr}', 40000))"])
    out = server.stdout.readline().decode().strip()
    server.wait(timeout=10)
    return out


@pytest.mark.timeout(30)
def test_hdlc_codec() -> None:
    frame = LCP_ECHO_ESCAPES
    encoded = hdlc_encode(frame)
    assert encoded[0] == 0x7E and encoded[-1] == 0x7E
    inner = encoded[1:-1]
    assert not any(b < 0x20 or b == 0x7E for b in inner), "unescaped control byte or flag"
    frames = Deframer().feed(b"\x7e\x7e" + encoded[:10]) + Deframer().feed(b"")
    assert frames == []
    deframer = Deframer()
    got = deframer.feed(encoded[:7]) + deframer.feed(encoded[7:] + hdlc_encode(LCP_CONF_REQ))
    assert got == [(frame, True), (LCP_CONF_REQ, True)]
    # RFC 1662 C.2: the FCS over data plus its own FCS leaves the good residue.
    fcs = fcs16(frame) ^ 0xFFFF
    assert fcs16(frame + bytes((fcs & 0xFF, fcs >> 8))) == FCS_GOOD
    corrupted = bytearray(encoded)
    corrupted[5] ^= 0x01
    assert Deframer().feed(bytes(corrupted)) == [(frame[:3] + bytes([frame[3] ^ 1]) + frame[4:],
                                                  False)]


@pytest.mark.timeout(30)
def test_topology_cleanup() -> None:
    with Topology("test_topology_cleanup") as topo:
        a = topo.host("a")
        b = topo.host("b")
        a_if, b_if = topo.link(a, "198.18.30.1/24", b, "198.18.30.2/24")
        names = {a.name, b.name}
        assert names <= set(list_netns())
        assert all(len(n) <= 32 and n.startswith("pl2-") for n in names)
        assert len(a_if) <= 15 and len(b_if) <= 15 and a_if != b_if
        assert "198.18.30.1/24" in a.run(["ip", "-4", "addr", "show", a_if]).stdout
        assert _udp_reachable(a, b, "198.18.30.2") == "hello-veth"
        sleeper = a.popen(["sleep", "300"])
        with pytest.raises(ValueError):
            topo.link(a, "10.0.0.1/24", b, "10.0.0.2/24")
    assert not names & set(list_netns()), "namespaces left after close()"
    assert sleeper.poll() is not None, "tracked process survived close()"


@pytest.mark.timeout(30)
def test_topology_cleans_up_after_failure() -> None:
    names: set[str] = set()
    with pytest.raises(RuntimeError, match="boom"), Topology("test_failure") as topo:
        names.add(topo.host("x").name)
        raise RuntimeError("boom")
    assert names and not names & set(list_netns())


@pytest.mark.timeout(30)
def test_remove_stale_netns() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"pl2-harness-stale-x-1-{dead.pid}"
    subprocess.run(["ip", "netns", "add", stale], check=True)
    try:
        with Topology("test_live") as topo:
            live = topo.host("y").name
            remove_stale_netns()  # a parallel run may get there first: check the result
            assert stale not in list_netns()
            assert live in list_netns(), "a namespace of a live process was removed"
    finally:
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, check=False)


def _message_types(pcap_rows: list[list[str]]) -> list[tuple[str, int]]:
    return [(src, int(t)) for src, types in pcap_rows for t in types.split(",") if t]


@pytest.mark.parametrize("challenge", [False, True], ids=["plain", "challenge"])
def test_xl2tpd_lac_to_xl2tpd_lns(topology: Topology, tmp_work: Path,
                                  challenge: bool) -> None:
    require_tools("xl2tpd", "xl2tpd-control", "unshare", "tcpdump", "tshark", "ss")
    lns_ns = topology.host("lns")
    lac_ns = topology.host("lac")
    topology.link(lns_ns, f"{LNS_ADDR}/24", lac_ns, f"{LAC_ADDR}/24")
    secret = SECRET if challenge else None
    lns = Xl2tpd(lns_ns, tmp_work / "lns", role="lns", listen=LNS_ADDR, secret=secret,
                 challenge=challenge, hostname="harness-lns")
    lac = Xl2tpd(lac_ns, tmp_work / "lac", role="lac", listen=LAC_ADDR, lns=f"{LNS_ADDR}:1701",
                 secret=secret, challenge=challenge, hostname="harness-lac")
    capture = Capture(lns_ns, tmp_work / "xl2tpd.pcap", bpf="udp port 1701")
    try:
        with capture, lns, lac:
            lac.connect()
            lac_hello = lac.wait_hello(15)
            lns_hello = lns.wait_hello(15)
            assert lac_hello["tag"] == "lac" and lns_hello["tag"] == "lns"
            # xl2tpd passes the pty and its LNS addresses to pppd (peers/xl2tpd/README.md).
            assert lns_hello["argv"][0].startswith("/dev/pts/")
            assert "198.18.30.1:198.18.30.10" in lns_hello["argv"]
            assert "passive" in lac_hello["argv"]

            lac.send_frame(LCP_CONF_REQ)
            assert lns.recv_frame(10) == LCP_CONF_REQ
            lns.send_frame(LCP_ECHO_ESCAPES)
            assert lac.recv_frame(10) == LCP_ECHO_ESCAPES
            lac.send_frame(LCP_ECHO_ESCAPES)
            assert lns.recv_frame(10) == LCP_ECHO_ESCAPES

            lns.hangup()
            assert lns.wait_exit(10)["reason"] == "asked to quit"
            # The LNS sends CDN; the LAC's xl2tpd then ends its own pppd.
            assert lac.wait_exit(15)["reason"]
            wait_for(lambda: "Call-Disconnect-Notify" in lac.log_text(), 10,
                     what="CDN in the LAC's xl2tpd log")
    finally:
        print("--- lns xl2tpd log\n" + lns.log_text()[-4000:])
        print("--- lac xl2tpd log\n" + lac.log_text()[-4000:])
    pcap = capture.path
    types = _message_types(tshark_fields(pcap, ["ip.src", "l2tp.avp.message_type"],
                                         "l2tp.avp.message_type"))
    for src, mtype in [(LAC_ADDR, SCCRQ), (LNS_ADDR, SCCRP), (LAC_ADDR, SCCCN),
                       (LAC_ADDR, ICRQ), (LNS_ADDR, ICRP), (LAC_ADDR, ICCN), (LNS_ADDR, CDN)]:
        assert (src, mtype) in types, f"message type {mtype} from {src} not captured"
    data = tshark_fields(pcap, ["ip.src", "ppp.code"], "l2tp.type == 0 && lcp")
    assert [LAC_ADDR, "1"] in data and [LNS_ADDR, "9"] in data and [LAC_ADDR, "9"] in data
    if challenge:
        # RFC 2661 5.1.1: Challenge in SCCRQ and SCCRP, Challenge Response in SCCRP and SCCCN.
        rows = tshark_fields(pcap, ["l2tp.avp.message_type", "l2tp.avp.chap_challenge",
                                    "l2tp.avp.chap_challenge_response"],
                             "l2tp.avp.message_type <= 3")
        by_type = {int(r[0].split(",")[0]): r for r in rows}
        assert by_type[SCCRQ][1] and by_type[SCCRP][1]
        assert by_type[SCCRP][2] and by_type[SCCCN][2]
        assert "Invalid" not in lac.log_text() + lns.log_text()
    assert tshark_problems(pcap) == []
    assert tshark_problems(pcap, src=LNS_ADDR) == []


@pytest.mark.timeout(30)
def test_tshark_problems_flags_bad_packets(tmp_work: Path) -> None:
    """The checks catch what tshark flags and the two gaps it leaves (tshark README)."""
    require_tools("tshark")
    good, other = "198.18.30.1", "198.18.30.2"
    zlb = bytes.fromhex("c802000c" "00010000" "00000001")  # RFC 2661 5.8: ZLB ack
    # SCCRQ whose Message Type AVP claims 40 bytes but 8 are there: tshark's own catch.
    bad_avp = bytes.fromhex("c8020014" "00000000" "00000000" "80280000" "00000001")
    pcap = write_udp_pcap(tmp_work / "bad.pcap", [
        (good, 1701, other, 1701, zlb),                          # 1: clean
        (good, 1701, other, 1701, zlb + b"junk"),                # 2: Length < payload (gap)
        (good, 500, other, 500, bytes(20)),                      # 3: raw data on 500 (gap)
        (other, 1701, good, 1701, bad_avp),                      # 4: malformed
    ])
    problems = tshark_problems(pcap)
    flagged = sorted({int(p.split(":")[0].removeprefix("frame ")) for p in problems})
    assert flagged == [2, 3, 4], problems
    assert any("L2TP Length 12 but UDP payload 16" in p for p in problems)
    assert any("undissected UDP payload on port 500" in p for p in problems)
    assert [p for p in tshark_problems(pcap, src=other) if p.startswith("frame 4:")]
    assert not [p for p in tshark_problems(pcap, src=good) if p.startswith("frame 4:")]
    rows = tshark_fields(pcap, ["frame.number", "l2tp.tunnel", "l2tp.Nr"], "l2tp.length == 12")
    assert rows == [["1", "1", "1"], ["2", "1", "1"]]
