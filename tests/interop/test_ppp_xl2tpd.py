"""xl2tpd as the LAC in front of our LNS, with PPP spoken by the test in scapy.

xl2tpd's pppd is replaced by the stand-in that relays PPP frames to the test, so the whole
PPP conversation with our server runs through xl2tpd's real L2TP data path, and scapy (an
independent codec) parses every frame our server sends and builds every frame we answer:
LCP (RFC 1661), CHAP-MD5 (RFC 1994, the response computed here with hashlib), IPCP
(RFC 1332, RFC 1877), then an ICMP echo to the server's own tunnel address, answered by the
server namespace's kernel through our TUN. A Terminate-Request ends it: the server must
answer, then close the call with CDN result 1 (src/pyl2tp/ppp/link.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.ppp import (
    PPP,
    PPP_IPCP,
    PPP_CHAP_ChallengeResponse,
    PPP_IPCP_Option_DNS1,
    PPP_IPCP_Option_IPAddress,
    PPP_LCP_Configure,
    PPP_LCP_Magic_Number_Option,
    PPP_LCP_MRU_Option,
    PPP_LCP_Terminate,
)
from scapy.packet import Packet

from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.xl2tpd import Xl2tpd
from tests.interop.ppp_peers import capture_drops, tun_name
from tests.interop.ppp_scapy import PROTO_CHAP, PROTO_IP, PROTO_IPCP, PROTO_LCP, PPPPeer

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

OURS = "198.18.34.1"
PEER = "198.18.34.2"
POOL_LOCAL = "198.18.35.1"
POOL_FIRST, POOL_LAST = "198.18.35.10", "198.18.35.40"
DNS = "198.18.35.53"
USER, PASSWORD = "xl2tpd-user", "chap-md5-password"
MRU = 1400
TOOLS = ("xl2tpd", "xl2tpd-control", "unshare", "tcpdump", "tshark", "ss")

# RFC 1661 5: LCP and IPCP codes.
CONF_REQ, CONF_ACK, CONF_NAK, CONF_REJ, TERM_REQ, TERM_ACK = 1, 2, 3, 4, 5, 6
# RFC 1994 4: CHAP codes, and the MD5 algorithm of the Authentication-Protocol option.
CHAP_CHALLENGE, CHAP_RESPONSE, CHAP_SUCCESS, CHAP_FAILURE = 1, 2, 3, 4
CHAP_MD5 = 5
LCP_MRU, LCP_AUTH_PROTOCOL, LCP_MAGIC = 1, 3, 5  # RFC 1661 6: option types
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
CDN = 14  # RFC 2661 3.2
RESULT_LOST_CARRIER = 1  # RFC 2661 4.4.2 CDN result code 1: lost carrier
XL2TPD_RESULT = re.compile(r"result_code_avp: peer closing for reason (\d+)")
WAIT = 15  # seconds for any one PPP step (a loaded 2-core machine)


def server_config(work: Path, tun: str) -> str:
    def toml(value: object) -> str:
        return json.dumps(value)  # JSON strings, numbers and lists are valid TOML

    return f"""\
[server]
listen = [{toml(OURS)}]
port = 1701
hostname = "pyl2tp-lns"
control_socket = {toml(str(work / "server.sock"))}
tun = {toml(tun)}

[l2tp]
hello_interval = 60

[ppp]
auth = ["chap"]
dns = [{toml(DNS)}]
mtu = {MRU}
lcp_echo_interval = 30

[pool]
local = {toml(POOL_LOCAL)}
range = {toml(f"{POOL_FIRST}-{POOL_LAST}")}

[[users]]
name = {toml(USER)}
password = {toml(PASSWORD)}
"""


def _in_pool(address: str) -> bool:
    addr = ipaddress.IPv4Address(address)
    return ipaddress.IPv4Address(POOL_FIRST) <= addr <= ipaddress.IPv4Address(POOL_LAST)


def _lcp_establish(peer: PPPPeer) -> dict[int, Any]:
    """LCP both ways (RFC 1661 4): Ack the server's request, get ours Acked."""
    req = peer.expect_code(PROTO_LCP, CONF_REQ, WAIT, "the server's LCP Configure-Request")
    options = {opt.type: opt for opt in req.options}
    auth = options.get(LCP_AUTH_PROTOCOL)
    # auth = ["chap"]: the server asks for CHAP with MD5 (RFC 1994 3), nothing else.
    assert auth is not None and auth.auth_protocol == PROTO_CHAP, req.summary()
    assert auth.algorithm == CHAP_MD5, req.summary()
    peer.send(PPP_LCP_Configure(code=CONF_ACK, id=req.id, options=req.options))

    ours = PPP_LCP_Configure(code=CONF_REQ, id=0x41, options=[
        PPP_LCP_MRU_Option(max_recv_unit=MRU),
        PPP_LCP_Magic_Number_Option(magic_number=peer.magic),
    ])
    peer.send(ours)
    ack = peer.expect_code(PROTO_LCP, CONF_ACK, WAIT, "the Ack of our LCP Configure-Request",
                           ident=ours.id)
    # RFC 1661 5.2: a Configure-Ack repeats the options exactly.
    assert b"".join(bytes(o) for o in ack.options) == b"".join(
        bytes(o) for o in ours.options), ack.summary()
    return options


def _chap(peer: PPPPeer) -> Packet:
    """CHAP-MD5: answer the server's Challenge, get Success (RFC 1994 4)."""
    challenge = peer.expect_code(PROTO_CHAP, CHAP_CHALLENGE, WAIT, "the CHAP Challenge")
    assert len(challenge.value) >= 16, challenge.summary()
    # RFC 1994 4.1: Response Value = MD5(Identifier || secret || Challenge Value).
    digest = hashlib.md5(bytes([challenge.id]) + PASSWORD.encode() + challenge.value).digest()
    peer.send(PPP_CHAP_ChallengeResponse(code=CHAP_RESPONSE, id=challenge.id, value=digest,
                                         optional_name=USER.encode()))
    success = peer.expect(
        lambda p: bool(p.proto == PROTO_CHAP and p.payload.code in (CHAP_SUCCESS, CHAP_FAILURE)),
        WAIT, "CHAP Success or Failure").payload
    assert success.code == CHAP_SUCCESS, success.summary()
    assert success.id == challenge.id
    return challenge


def _ipcp(peer: PPPPeer) -> tuple[str, str, str]:
    """IPCP (RFC 1332, RFC 1877): Ack the server's address; ask 0.0.0.0, take the Nak."""
    req = peer.expect_code(PROTO_IPCP, CONF_REQ, WAIT, "the server's IPCP Configure-Request")
    server_address = req.options[0].data
    assert [o.type for o in req.options] == [3], req.summary()
    peer.send(PPP_IPCP(code=CONF_ACK, id=req.id, options=req.options))

    ask = PPP_IPCP(code=CONF_REQ, id=0x51, options=[
        PPP_IPCP_Option_IPAddress(data="0.0.0.0"), PPP_IPCP_Option_DNS1(data="0.0.0.0")])
    peer.send(ask)
    nak = peer.expect_code(PROTO_IPCP, CONF_NAK, WAIT, "the Nak of our 0.0.0.0", ident=ask.id)
    offered = {o.type: o.data for o in nak.options}
    assert set(offered) == {3, 129}, nak.summary()
    address, dns = offered[3], offered[129]

    take = PPP_IPCP(code=CONF_REQ, id=0x52, options=[
        PPP_IPCP_Option_IPAddress(data=address), PPP_IPCP_Option_DNS1(data=dns)])
    peer.send(take)
    ack = peer.expect_code(PROTO_IPCP, CONF_ACK, WAIT, "the Ack of the Nak'd address",
                           ident=take.id)
    assert [(o.type, o.data) for o in ack.options] == [(3, address), (129, dns)], ack.summary()
    return server_address, address, dns


def _echo(peer: PPPPeer, address: str) -> tuple[IP, IP]:
    """An ICMP echo request to the server's tunnel address; the reply that came back."""
    request = IP(src=address, dst=POOL_LOCAL, ttl=64, id=0x3131) / ICMP(
        type=ICMP_ECHO_REQUEST, id=os.getpid() & 0xFFFF, seq=7) / (b"pyl2tp-interop" * 4)
    peer.send(PPP(proto=PROTO_IP) / request)

    def is_reply(p: Any) -> bool:
        return bool(p.proto == PROTO_IP and IP in p and ICMP in p
                    and p[ICMP].type == ICMP_ECHO_REPLY and p[ICMP].id == request[ICMP].id)

    reply = peer.expect(is_reply, WAIT, "the ICMP echo reply")[IP]
    return request, reply


def _cdn_results(pcap: Path) -> list[str]:
    """Result codes of the CDNs our server sent."""
    rows = tshark_fields(pcap, ["l2tp.result_code"],
                         f"ip.src == {OURS} && l2tp.avp.message_type == {CDN}")
    return [row[0].split(",")[0] for row in rows]


def _dump_logs(server: ProductProcess, lac: Xl2tpd) -> None:
    print(f"--- server log\n{server.log_text()[-6000:]}\n--- xl2tpd log\n"
          f"{lac.log_text()[-4000:]}\n--- stand-in log\n{lac.pppd_log_text()[-4000:]}")


def _hosts(topology: Topology) -> tuple[Netns, Netns]:
    ours, peer = topology.host("ours"), topology.host("xl2tpd")
    topology.link(ours, f"{OURS}/24", peer, f"{PEER}/24")
    return ours, peer


def test_xl2tpd_lac_ppp_to_our_lns(topology: Topology, tmp_work: Path) -> None:
    require_tools(*TOOLS)
    ours, other = _hosts(topology)
    tun = tun_name("pl2x")
    server = ProductProcess(ours, "server", server_config(tmp_work, tun), tmp_work)
    lac = Xl2tpd(other, tmp_work / "xl2tpd", role="lac", listen=PEER, lns=f"{OURS}:1701",
                 hostname="xl2tpd-lac")
    capture = Capture(ours, tmp_work / "lns.pcap", bpf="udp port 1701")
    peer = PPPPeer(lac, magic=int.from_bytes(os.urandom(4), "big") | 1)
    try:
        with capture:
            server.start()
            lac.start()
            lac.connect()
            lac.wait_hello(20)
            lcp = _lcp_establish(peer)
            challenge = _chap(peer)
            server_address, address, dns = _ipcp(peer)
            sessions = wait_for(lambda: [s for s in server.sessions() if s.get("address")],
                                10, what="the session's address in ctl sessions")
            request, reply = _echo(peer, address)
            after = server.sessions()
            status = server.ctl("status")

            # The peer hangs up (RFC 1661 5.5): Terminate-Ack, then CDN result 1.
            term = PPP_LCP_Terminate(code=TERM_REQ, id=0x61, data=b"bye")
            peer.send(term)
            peer.expect_code(PROTO_LCP, TERM_ACK, WAIT, "the Terminate-Ack", ident=term.id)
            lac.wait_exit(WAIT)  # xl2tpd got the CDN and ended the stand-in
            wait_for(lambda: not server.sessions(), WAIT, what="the session gone on our server")
            # xl2tpd's own reading of our CDN's Result Code AVP.
            cdn = wait_for(lambda: XL2TPD_RESULT.findall(lac.log_text()), 10,
                           what="xl2tpd logging our CDN's result code")
            final_status = server.ctl("status")
            lac.stop()
            assert server.stop() == 0, "pyl2tp server did not exit cleanly on SIGTERM"
    finally:
        lac.stop()
        server.stop()
        _dump_logs(server, lac)

    # LCP: the server asks for its configured MRU and a magic number of its own (RFC 1661
    # 6.4: equal numbers would look like a looped-back link).
    assert lcp[LCP_MRU].max_recv_unit == MRU
    assert lcp[LCP_MAGIC].magic_number not in (0, peer.magic)
    assert challenge.optional_name, "the Challenge carries the server's name (RFC 1994 4.1)"
    # IPCP: the server is pool.local, the address comes from the pool, DNS from [ppp] dns.
    assert server_address == POOL_LOCAL
    assert _in_pool(address), address
    assert dns == DNS
    assert len(sessions) == 1
    assert sessions[0]["user"] == USER
    assert sessions[0]["address"] == address
    assert status["ppp"]["pool_in_use"] == 1, status
    dataplane = status["ppp"]["dataplane"]
    assert dataplane["sessions_v4"] == 1, status
    assert dataplane["spoofed"] == dataplane["bad_packets"] == 0, status
    assert final_status["ppp"]["pool_in_use"] == 0, final_status
    assert final_status["ppp"]["dataplane"]["sessions_v4"] == 0, final_status
    # The echo came back from the server's kernel through its TUN, addressed to us.
    assert reply.src == POOL_LOCAL and reply.dst == address
    assert bytes(reply[ICMP].payload) == bytes(request[ICMP].payload)
    assert reply[ICMP].seq == request[ICMP].seq
    # RFC 1071: the reply's checksums are right (scapy recomputes them from scratch).
    fresh = IP(bytes(reply))
    del fresh.chksum, fresh[ICMP].chksum
    fresh = IP(bytes(fresh))
    assert (fresh.chksum, fresh[ICMP].chksum) == (reply.chksum, reply[ICMP].chksum)
    assert after[0]["rx_bytes"] > sessions[0]["rx_bytes"]
    assert after[0]["tx_bytes"] > sessions[0]["tx_bytes"]
    assert cdn == [str(RESULT_LOST_CARRIER)], cdn
    assert peer.reencode_mismatches == []
    if capture_drops(capture) == 0:  # else a packet's absence proves nothing
        assert _cdn_results(capture.path) == [str(RESULT_LOST_CARRIER)]
        # tshark, the other independent dissector, sees the same conversation from our side.
        seen = {proto for row in tshark_fields(capture.path, ["frame.protocols"],
                                               f"ip.src == {OURS} && ppp")
                for proto in row[0].split(":ppp:", 1)[-1].split(":")}
        assert {"lcp", "chap", "ipcp", "icmp"} <= seen, seen
    assert_no_traceback(server.log_text())
    assert tshark_problems(capture.path, src=OURS) == []
