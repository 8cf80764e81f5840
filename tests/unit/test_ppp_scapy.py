"""scapy as an independent PPP codec: every LCP and IPCP packet our protocol objects send
dissects in scapy with the same fields (and re-encodes byte for byte), and packets built
with scapy decode in ours field by field and drive our LCP/IPCP as expected."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import pytest

pytest.importorskip("scapy", reason="scapy is not installed (pip install -e .[test])")

from scapy.layers.ppp import (
    HDLC,
    PPP,
    PPP_IPCP,
    PPP_LCP,
    PPP_IPCP_Option_DNS1,
    PPP_IPCP_Option_DNS2,
    PPP_IPCP_Option_IPAddress,
    PPP_IPCP_Option_NBNS1,
    PPP_LCP_ACCM_Option,
    PPP_LCP_Auth_Protocol_Option,
    PPP_LCP_Code_Reject,
    PPP_LCP_Configure,
    PPP_LCP_Discard_Request,
    PPP_LCP_Echo,
    PPP_LCP_Magic_Number_Option,
    PPP_LCP_MRU_Option,
    PPP_LCP_Option,
    PPP_LCP_Protocol_Reject,
    PPP_LCP_Terminate,
)
from scapy.packet import Raw

from pyl2tp.ppp.fsm import NegotiationFSM, State
from pyl2tp.ppp.ipcp import IPCP, IPCPConfig
from pyl2tp.ppp.lcp import LCP, LCPConfig
from pyl2tp.wire.ppp import (
    Code,
    CPPacket,
    LCPOption,
    PPPProtocol,
    decode_cp,
    decode_frame,
    decode_options,
    encode_cp,
    encode_frame,
    option_u16,
    option_u32,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


class Quiet:
    def this_layer_up(self, fsm: NegotiationFSM) -> None: ...
    def this_layer_down(self, fsm: NegotiationFSM) -> None: ...
    def this_layer_started(self, fsm: NegotiationFSM) -> None: ...
    def this_layer_finished(self, fsm: NegotiationFSM) -> None: ...


def _converse(protocol: int, a: Any, b: Any, queue: deque[tuple[int, bytes]],
              frames: list[bytes]) -> None:
    ends = [a, b]
    for x in ends:
        x.fsm.up(0)
        x.fsm.open(0)
    while queue:
        to, payload = queue.popleft()
        frames.append(encode_frame(protocol, payload))
        ends[to].fsm.receive(payload, 0)


def _sender(queue: deque[tuple[int, bytes]], to: int) -> Callable[[bytes], None]:
    return lambda payload: queue.append((to, payload))


def _drain(queue: deque[tuple[int, bytes]], ends: list[LCP], frames: list[bytes]) -> None:
    while queue:
        to, payload = queue.popleft()
        frames.append(encode_frame(PPPProtocol.LCP, payload))
        ends[to].fsm.receive(payload, 1)


def our_frames() -> list[bytes]:
    """Every kind of LCP and IPCP packet our objects send, as full PPP frames."""
    frames: list[bytes] = []
    queue: deque[tuple[int, bytes]] = deque()
    rng = random.Random(5).randbytes
    srv = LCP(LCPConfig(mru=1400, accm=0, pfc=True, acfc=True,
                        auth=[b"\xc2\x23\x81", b"\xc2\x23\x05", b"\xc0\x23"], echo_interval=1),
              Quiet(), _sender(queue, 1), rng)
    cli = LCP(LCPConfig(mru=1450, accept_auth=[b"\xc0\x23"]), Quiet(), _sender(queue, 0), rng)
    _converse(PPPProtocol.LCP, srv, cli, queue, frames)  # Req, Nak (auth), Ack
    assert srv.state == cli.state == State.OPENED
    srv.handle_timer(1)  # Echo-Request
    cli.protocol_reject(0x80FD, b"\x01\x01\x00\x04", 1)  # Protocol-Reject
    cli.fsm.receive(encode_cp(CPPacket(14, 3, b"zz")), 1)  # -> Code-Reject
    cli.fsm.receive(encode_cp(CPPacket(Code.DISCARD_REQUEST, 4, bytes(4))), 1)  # nothing
    _drain(queue, [srv, cli], frames)  # ... and the Echo-Reply
    cli.close(1, b"user request")  # Terminate-Request
    _drain(queue, [srv, cli], frames)  # ... and the Terminate-Ack
    # A Configure-Reject of the multilink options l2tpns asks for.
    rej = LCP(LCPConfig(), Quiet(), _sender(queue, 0), rng)
    rej.fsm.up(0)
    rej.fsm.open(0)
    rej.fsm.receive(bytes.fromhex("0101001e010405b60305c2230505066b0490521104064e"
                                  "130702c6122901"), 0)
    frames += [encode_frame(PPPProtocol.LCP, p) for _, p in queue]
    queue.clear()
    # IPCP: server and client, with DNS and a rejected NBNS request.
    dns = [IPv4Address("198.18.0.53"), IPv4Address("198.18.0.54")]
    ipcp_s = IPCP(IPCPConfig(local=IPv4Address("198.18.100.1"),
                             peer=IPv4Address("198.18.100.10"), dns=dns),
                  Quiet(), _sender(queue, 1))
    ipcp_c = IPCP(IPCPConfig(request_dns=True), Quiet(), _sender(queue, 0))
    _converse(PPPProtocol.IPCP, ipcp_s, ipcp_c, queue, frames)
    assert ipcp_s.state == ipcp_c.state == State.OPENED
    ipcp_s.fsm.receive(bytes.fromhex("0101000a8206c6120001"), 0)  # NBNS -> Reject
    frames += [encode_frame(PPPProtocol.IPCP, p) for _, p in queue]
    return frames


FRAMES = our_frames()


def _check_lcp_option(sc: Any, opt_type: int, data: bytes) -> None:
    assert sc.type == opt_type and sc.len == 2 + len(data)
    if opt_type == LCPOption.MRU:
        assert sc.max_recv_unit == option_u16_or_fail(data)
    elif opt_type == LCPOption.ACCM:
        assert sc.accm == int.from_bytes(data, "big")
    elif opt_type == LCPOption.AUTH_PROTOCOL:
        assert sc.auth_protocol == int.from_bytes(data[:2], "big")
        if len(data) == 3:
            assert sc.algorithm == data[2]
    elif opt_type == LCPOption.MAGIC_NUMBER:
        assert sc.magic_number == int.from_bytes(data, "big")
    elif opt_type in (LCPOption.PFC, LCPOption.ACFC):
        assert data == b""
    else:
        assert bytes(sc)[:2] == bytes((opt_type, 2 + len(data)))


def option_u16_or_fail(data: bytes) -> int:
    assert len(data) == 2
    return int.from_bytes(data, "big")


def _compare(frame: bytes) -> None:
    protocol, payload = decode_frame(frame)
    ours = decode_cp(payload)
    sc = HDLC(frame)
    assert sc.address == 0xFF and sc.control == 0x03
    assert sc[PPP].proto == protocol
    layer = sc[PPP].payload
    assert layer.code == ours.code and layer.id == ours.identifier
    assert layer.len == 4 + len(ours.data)
    if protocol == PPPProtocol.IPCP:
        assert isinstance(layer, PPP_IPCP)
        opts = decode_options(ours.data)
        assert len(layer.options) == len(opts)
        for sc_opt, opt in zip(layer.options, opts, strict=True):
            assert sc_opt.type == opt.type
            assert IPv4Address(sc_opt.data) == IPv4Address(opt.data)
    elif ours.code <= Code.CONFIGURE_REJECT:
        assert isinstance(layer, PPP_LCP_Configure)
        opts = decode_options(ours.data)
        assert len(layer.options) == len(opts)
        for sc_opt, opt in zip(layer.options, opts, strict=True):
            _check_lcp_option(sc_opt, opt.type, opt.data)
    elif ours.code in (Code.TERMINATE_REQUEST, Code.TERMINATE_ACK):
        assert isinstance(layer, PPP_LCP_Terminate) and layer.data == ours.data
    elif ours.code == Code.CODE_REJECT:
        assert isinstance(layer, PPP_LCP_Code_Reject)
        assert bytes(layer.rejected_packet) == ours.data
    elif ours.code == Code.PROTOCOL_REJECT:
        assert isinstance(layer, PPP_LCP_Protocol_Reject)
        assert layer.rejected_protocol == int.from_bytes(ours.data[:2], "big")
        assert bytes(layer.rejected_information) == ours.data[2:]
    elif ours.code in (Code.ECHO_REQUEST, Code.ECHO_REPLY):
        assert isinstance(layer, PPP_LCP_Echo)
        assert layer.magic_number == int.from_bytes(ours.data[:4], "big")
        assert layer.data == ours.data[4:]
    else:
        pytest.fail(f"unexpected packet {ours}")
    assert bytes(sc) == frame  # scapy re-encodes it byte for byte


def test_we_produce_every_kind_of_packet() -> None:
    kinds = {(decode_frame(f)[0], decode_cp(decode_frame(f)[1]).code) for f in FRAMES}
    lcp = {c for p, c in kinds if p == PPPProtocol.LCP}
    ipcp = {c for p, c in kinds if p == PPPProtocol.IPCP}
    assert lcp == {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
    assert ipcp == {1, 2, 3, 4}


@pytest.mark.parametrize("index", range(len(FRAMES)))
def test_our_packet_dissects_identically_in_scapy(index: int) -> None:
    _compare(FRAMES[index])


# ---------------------------------------------------------------- scapy -> ours


def _ours(packet: Any) -> tuple[int, CPPacket]:
    protocol, payload = decode_frame(bytes(packet))
    return protocol, decode_cp(payload)


def test_scapy_configure_request_decodes_in_ours() -> None:
    sc = HDLC() / PPP() / PPP_LCP_Configure(code=1, id=5, options=[
        PPP_LCP_MRU_Option(max_recv_unit=1462),
        PPP_LCP_ACCM_Option(accm=0x000A0000),
        PPP_LCP_Auth_Protocol_Option(auth_protocol=0xC223, algorithm=5),
        PPP_LCP_Magic_Number_Option(magic_number=0x6B049052),
        PPP_LCP_Option(type=7), PPP_LCP_Option(type=8),
        PPP_LCP_Option(type=17, data=b"\x06\x4e"),
    ])
    protocol, packet = _ours(sc)
    assert protocol == PPPProtocol.LCP and packet.code == 1 and packet.identifier == 5
    opts = decode_options(packet.data)
    assert [o.type for o in opts] == [1, 2, 3, 5, 7, 8, 17]
    assert option_u16(opts[0]) == 1462
    assert option_u32(opts[1]) == 0x000A0000
    assert opts[2].data == b"\xc2\x23\x05"
    assert option_u32(opts[3]) == 0x6B049052
    assert opts[4].data == opts[5].data == b"" and opts[6].data == b"\x06\x4e"
    # And our LCP answers it: MRRU rejected, verbatim.
    sent: list[bytes] = []
    lcp = LCP(LCPConfig(accept_auth=[b"\xc2\x23\x05"]), Quiet(), sent.append,
              random.Random(1).randbytes)
    lcp.fsm.up(0)
    lcp.fsm.open(0)
    lcp.receive(decode_frame(bytes(sc))[1], 0)
    reply = PPP_LCP_Configure(sent[-1])
    assert reply.code == 4 and reply.id == 5 and len(reply.options) == 1
    assert reply.options[0].type == 17 and bytes(reply.options[0]) == b"\x11\x04\x06\x4e"


def test_scapy_link_maintenance_packets_decode_in_ours() -> None:
    echo = PPP() / PPP_LCP_Echo(code=9, id=3, magic_number=0, data=b"Aho Baka Manuke")
    _, packet = _ours(echo)
    assert packet == CPPacket(9, 3, b"\x00\x00\x00\x00Aho Baka Manuke")
    term = PPP() / PPP_LCP_Terminate(code=5, id=9, data=b"bye")
    assert _ours(term)[1] == CPPacket(5, 9, b"bye")
    disc = PPP() / PPP_LCP_Discard_Request(id=4, magic_number=7, data=b"x")
    assert _ours(disc)[1] == CPPacket(11, 4, b"\x00\x00\x00\x07x")
    prej = PPP() / PPP_LCP_Protocol_Reject(id=6, rejected_protocol=0x8057,
                                           rejected_information=Raw(b"\x01\x01\x00\x04"))
    assert _ours(prej)[1] == CPPacket(8, 6, b"\x80\x57\x01\x01\x00\x04")
    crej = PPP() / PPP_LCP_Code_Reject(id=7, rejected_packet=PPP_LCP(code=14, id=5,
                                                                      data=b"abc"))
    assert _ours(crej)[1] == CPPacket(7, 7, b"\x0e\x05\x00\x07abc")


def test_scapy_ipcp_decodes_in_ours_and_drives_our_server() -> None:
    sc = PPP() / PPP_IPCP(code=1, id=2, options=[
        PPP_IPCP_Option_IPAddress(data="0.0.0.0"),
        PPP_IPCP_Option_DNS1(data="0.0.0.0"),
        PPP_IPCP_Option_DNS2(data="0.0.0.0"),
        PPP_IPCP_Option_NBNS1(data="0.0.0.0"),
    ])
    protocol, packet = _ours(sc)
    assert protocol == PPPProtocol.IPCP and (packet.code, packet.identifier) == (1, 2)
    opts = decode_options(packet.data)
    assert [(o.type, o.data) for o in opts] == [(3, bytes(4)), (129, bytes(4)),
                                                (131, bytes(4)), (130, bytes(4))]
    sent: list[bytes] = []
    srv = IPCP(IPCPConfig(local=IPv4Address("198.18.100.1"), peer=IPv4Address("198.18.100.10"),
                          dns=[IPv4Address("198.18.0.53")]), Quiet(), sent.append)
    srv.fsm.up(0)
    srv.fsm.open(0)
    srv.fsm.receive(decode_frame(bytes(sc))[1], 0)
    reply = PPP_IPCP(sent[-1])
    # NBNS and the secondary DNS we do not have are rejected.
    assert reply.code == 4 and [o.type for o in reply.options] == [131, 130]
    sc2 = PPP() / PPP_IPCP(code=1, id=3, options=[PPP_IPCP_Option_IPAddress(data="0.0.0.0"),
                                                  PPP_IPCP_Option_DNS1(data="0.0.0.0")])
    srv.fsm.receive(decode_frame(bytes(sc2))[1], 0)
    reply = PPP_IPCP(sent[-1])
    assert reply.code == 3 and reply.id == 3
    assert [(o.type, o.data) for o in reply.options] == [(3, "198.18.100.10"),
                                                         (129, "198.18.0.53")]
