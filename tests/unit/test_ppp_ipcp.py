"""IPCP (RFC 1332, RFC 1877) and IPv6CP (RFC 5072): server and client negotiations, the
l2tpns exchange as recorded, and interface-identifier collisions."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.ppp.fsm import NegotiationFSM, State
from pyl2tp.ppp.ipcp import IPCP, IPCPConfig
from pyl2tp.ppp.ipv6cp import IPv6CP, IPv6CPConfig, random_interface_id
from pyl2tp.wire.ppp import (
    Code,
    CPPacket,
    IPCPOption,
    IPV6CPOption,
    Option,
    decode_cp,
    decode_options,
    encode_cp,
    encode_options,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

A = IPv4Address
LOCAL = A("198.18.100.1")
PEER = A("198.18.100.10")
DNS = [A("198.18.0.53"), A("198.18.0.54")]
ZERO = A(0)


class Events:
    def __init__(self) -> None:
        self.log: list[str] = []

    def this_layer_up(self, fsm: NegotiationFSM) -> None:
        self.log.append("up")

    def this_layer_down(self, fsm: NegotiationFSM) -> None:
        self.log.append("down")

    def this_layer_started(self, fsm: NegotiationFSM) -> None:
        self.log.append("started")

    def this_layer_finished(self, fsm: NegotiationFSM) -> None:
        self.log.append("finished")


def ip(kind: int, addr: IPv4Address) -> Option:
    return Option(kind, addr.packed)


class Rec:
    """Records what a control protocol sends; the test plays the peer."""

    def __init__(self) -> None:
        self.sent: list[CPPacket] = []
        self.events = Events()

    def send(self, payload: bytes) -> None:
        self.sent.append(decode_cp(payload))

    def request(self) -> CPPacket:
        return [p for p in self.sent if p.code == Code.CONFIGURE_REQUEST][-1]


def _start(fsm: NegotiationFSM) -> None:
    fsm.up(0)
    fsm.open(0)


def _recv(fsm: NegotiationFSM, rec: Rec, code: int, ident: int,
          options: list[Option]) -> CPPacket | None:
    before = len(rec.sent)
    fsm.receive(encode_cp(CPPacket(code, ident, encode_options(options))), 0)
    return rec.sent[-1] if len(rec.sent) > before else None


# ---------------------------------------------------------------- IPCP server


def server(dns: list[IPv4Address] = DNS) -> tuple[IPCP, Rec]:
    rec = Rec()
    ipcp = IPCP(IPCPConfig(local=LOCAL, peer=PEER, dns=list(dns)), rec.events, rec.send)
    _start(ipcp.fsm)
    return ipcp, rec


def test_server_requests_its_own_address() -> None:
    _, rec = server()
    assert decode_options(rec.request().data) == [ip(IPCPOption.IP_ADDRESS, LOCAL)]


def test_server_naks_zero_address_and_dns_with_the_assigned_values() -> None:
    ipcp, rec = server()
    ask = [ip(3, ZERO), ip(129, ZERO), ip(131, ZERO)]
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 1, ask)
    assert reply is not None and reply.code == Code.CONFIGURE_NAK
    assert decode_options(reply.data) == [ip(3, PEER), ip(129, DNS[0]), ip(131, DNS[1])]
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 2, decode_options(reply.data))
    assert reply is not None and reply.code == Code.CONFIGURE_ACK
    req = rec.request()
    _recv(ipcp.fsm, rec, Code.CONFIGURE_ACK, req.identifier, decode_options(req.data))
    assert ipcp.state == State.OPENED and rec.events.log == ["up"]
    assert ipcp.peer_address == PEER and ipcp.local_address == LOCAL
    assert ipcp.given_dns == DNS


def test_server_naks_a_different_address() -> None:
    ipcp, rec = server()
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 1, [ip(3, A("198.18.100.99"))])
    assert reply == CPPacket(Code.CONFIGURE_NAK, 1, encode_options([ip(3, PEER)]))


def test_server_rejects_nbns_compression_and_dns_it_does_not_have() -> None:
    ipcp, rec = server(dns=[DNS[0]])
    ask = [ip(3, PEER), Option(2, b"\x00\x2d\x0f\x01"), ip(129, ZERO), ip(130, ZERO),
           ip(131, ZERO), ip(132, ZERO), Option(1, bytes(8))]
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 1, ask)
    assert reply is not None and reply.code == Code.CONFIGURE_REJECT
    assert decode_options(reply.data) == [ask[1], ask[3], ask[4], ask[5], ask[6]]


def test_server_without_dns_rejects_dns() -> None:
    ipcp, rec = server(dns=[])
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 1, [ip(3, PEER), ip(129, ZERO)])
    assert reply == CPPacket(Code.CONFIGURE_REJECT, 1, encode_options([ip(129, ZERO)]))


def test_server_appends_ip_address_once_when_missing() -> None:
    ipcp, rec = server()
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 1, [])
    assert reply == CPPacket(Code.CONFIGURE_NAK, 1, encode_options([ip(3, PEER)]))
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 2, [])
    assert reply == CPPacket(Code.CONFIGURE_ACK, 2, b"")  # RFC 5072 4.1 logic: not twice


def test_server_keeps_its_address_when_the_peer_rejects_it() -> None:
    ipcp, rec = server()
    req = rec.request()
    _recv(ipcp.fsm, rec, Code.CONFIGURE_REJECT, req.identifier, decode_options(req.data))
    assert rec.request().data == b"" and ipcp.state == State.REQ_SENT
    assert ipcp.local_address == LOCAL


# ---------------------------------------------------------------- IPCP client


def client(request_dns: bool = True) -> tuple[IPCP, Rec]:
    rec = Rec()
    ipcp = IPCP(IPCPConfig(request_dns=request_dns), rec.events, rec.send)
    _start(ipcp.fsm)
    return ipcp, rec


def test_client_against_recorded_l2tpns() -> None:
    ipcp, rec = client()
    assert decode_options(rec.request().data) == [ip(3, ZERO), ip(129, ZERO), ip(131, ZERO)]
    # PPP <- IPCP code=1 id=1 0306c6122901: the LNS's own address, acked.
    lns_req = bytes.fromhex("0306c6122901")
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 1, decode_options(lns_req))
    assert reply == CPPacket(Code.CONFIGURE_ACK, 1, lns_req)
    # PPP <- IPCP code=3: Nak with our address and the DNS servers.
    nak = bytes.fromhex("0306c612290b8106c61229358306c6122936")
    _recv(ipcp.fsm, rec, Code.CONFIGURE_NAK, rec.request().identifier, decode_options(nak))
    req = rec.request()
    assert req.data == nak  # the request now carries exactly the Nak'd values
    _recv(ipcp.fsm, rec, Code.CONFIGURE_ACK, req.identifier, decode_options(req.data))
    assert ipcp.state == State.OPENED
    assert ipcp.local_address == A("198.18.41.11")
    assert ipcp.peer_address == A("198.18.41.1")
    assert ipcp.dns == [A("198.18.41.53"), A("198.18.41.54")]


def test_client_rejects_vj_compression_and_a_zero_peer_address() -> None:
    ipcp, rec = client()
    vj = Option(2, b"\x00\x2d\x0f\x01")
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 1, [ip(3, LOCAL), vj])
    assert reply == CPPacket(Code.CONFIGURE_REJECT, 1, encode_options([vj]))
    reply = _recv(ipcp.fsm, rec, Code.CONFIGURE_REQUEST, 2, [ip(3, ZERO)])
    assert reply == CPPacket(Code.CONFIGURE_REJECT, 2, encode_options([ip(3, ZERO)]))


def test_client_stops_asking_for_rejected_dns() -> None:
    ipcp, rec = client()
    req = rec.request()
    _recv(ipcp.fsm, rec, Code.CONFIGURE_REJECT, req.identifier, [ip(129, ZERO), ip(131, ZERO)])
    assert decode_options(rec.request().data) == [ip(3, ZERO)]


def test_client_fails_when_refused_an_address() -> None:
    ipcp, rec = client(request_dns=False)
    req = rec.request()
    _recv(ipcp.fsm, rec, Code.CONFIGURE_REJECT, req.identifier, [ip(3, ZERO)])
    assert ipcp.fsm.failure_reason == "peer refuses to assign an address"
    assert rec.sent[-1].code == Code.TERMINATE_REQUEST


def test_client_fails_when_zero_is_acked() -> None:
    ipcp, rec = client(request_dns=False)
    req = rec.request()
    _recv(ipcp.fsm, rec, Code.CONFIGURE_ACK, req.identifier, [ip(3, ZERO)])
    assert ipcp.fsm.failure_reason is not None and "no address" in ipcp.fsm.failure_reason
    assert ipcp.state == State.CLOSING


def _converse(ends: list[NegotiationFSM], queue: deque[tuple[int, bytes]]) -> None:
    for f in ends:
        _start(f)
    while queue:
        to, payload = queue.popleft()
        ends[to].receive(payload, 0)


def test_our_server_and_client_negotiate_address_and_dns() -> None:
    queue: deque[tuple[int, bytes]] = deque()
    ev = [Events(), Events()]
    srv = IPCP(IPCPConfig(local=LOCAL, peer=PEER, dns=DNS), ev[0], lambda p: queue.append((1, p)))
    cli = IPCP(IPCPConfig(request_dns=True), ev[1], lambda p: queue.append((0, p)))
    _converse([srv.fsm, cli.fsm], queue)
    assert srv.state == cli.state == State.OPENED
    assert (cli.local_address, cli.peer_address, cli.dns) == (PEER, LOCAL, DNS)
    assert (srv.local_address, srv.peer_address, srv.given_dns) == (LOCAL, PEER, DNS)
    assert ev[0].log == ev[1].log == ["up"]


# ---------------------------------------------------------------- IPv6CP


def rb(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def iid(opt_data: bytes) -> list[Option]:
    return [Option(IPV6CPOption.INTERFACE_IDENTIFIER, opt_data)]


def v6(interface_id: bytes | None = None, seed: int = 1) -> tuple[IPv6CP, Rec]:
    rec = Rec()
    cp = IPv6CP(IPv6CPConfig(interface_id=interface_id), rec.events, rec.send, rb(seed))
    _start(cp.fsm)
    return cp, rec


def test_ipv6cp_requests_a_random_identifier_with_the_u_bit_clear() -> None:
    cp, rec = v6()
    (opt,) = decode_options(rec.request().data)
    assert opt.type == 1 and len(opt.data) == 8 and opt.data != bytes(8)
    assert opt.data[0] & 0x02 == 0 and opt.data == cp.local_id
    for seed in range(50):
        assert random_interface_id(rb(seed))[0] & 0x02 == 0


def test_ipv6cp_naks_zero_and_identical_identifiers() -> None:
    ours = bytes.fromhex("0011223344556677")
    cp, rec = v6(ours)
    for bad in (bytes(8), ours, b"\x01\x02"):
        reply = _recv(cp.fsm, rec, Code.CONFIGURE_REQUEST, 1, iid(bad))
        assert reply is not None and reply.code == Code.CONFIGURE_NAK
        (opt,) = decode_options(reply.data)
        assert len(opt.data) == 8 and opt.data not in (bytes(8), ours)
        assert opt.data[0] & 0x02 == 0
    reply = _recv(cp.fsm, rec, Code.CONFIGURE_REQUEST, 2, iid(b"\x02" * 8))
    assert reply == CPPacket(Code.CONFIGURE_ACK, 2, encode_options(iid(b"\x02" * 8)))
    assert cp.peer_id == b"\x02" * 8


def test_ipv6cp_both_zero_is_rejected() -> None:
    cp, rec = v6(bytes(8))
    reply = _recv(cp.fsm, rec, Code.CONFIGURE_REQUEST, 1, iid(bytes(8)))
    assert reply == CPPacket(Code.CONFIGURE_REJECT, 1, encode_options(iid(bytes(8))))


def test_ipv6cp_rejects_compression() -> None:
    cp, rec = v6()
    comp = Option(IPV6CPOption.IPV6_COMPRESSION, b"\x00\x4f")
    reply = _recv(cp.fsm, rec, Code.CONFIGURE_REQUEST, 1, [*iid(b"\x04" * 8), comp])
    assert reply == CPPacket(Code.CONFIGURE_REJECT, 1, encode_options([comp]))


def test_ipv6cp_takes_the_peers_suggestion_unless_it_is_our_own_nak() -> None:
    cp, rec = v6(bytes.fromhex("0011223344556677"))
    suggestion = bytes.fromhex("00aabbccddeeff00")
    _recv(cp.fsm, rec, Code.CONFIGURE_NAK, rec.request().identifier, iid(suggestion))
    assert cp.local_id == suggestion and decode_options(rec.request().data) == iid(suggestion)
    # We Nak the peer's colliding id; the same value then comes back to us in a Nak: loop.
    reply = _recv(cp.fsm, rec, Code.CONFIGURE_REQUEST, 1, iid(suggestion))
    assert reply is not None
    (ours_to_peer,) = decode_options(reply.data)
    _recv(cp.fsm, rec, Code.CONFIGURE_NAK, rec.request().identifier, iid(ours_to_peer.data))
    assert cp.local_id not in (suggestion, ours_to_peer.data, bytes(8))


def test_ipv6cp_reject_stops_asking() -> None:
    cp, rec = v6()
    req = rec.request()
    _recv(cp.fsm, rec, Code.CONFIGURE_REJECT, req.identifier, decode_options(req.data))
    assert rec.request().data == b""


def test_ipv6cp_two_ends_get_distinct_identifiers() -> None:
    queue: deque[tuple[int, bytes]] = deque()
    same = bytes.fromhex("0200000000000001")  # both configured alike: must diverge
    ends = [IPv6CP(IPv6CPConfig(interface_id=same), Events(), lambda p: queue.append((1, p)),
                   rb(1)),
            IPv6CP(IPv6CPConfig(interface_id=same), Events(), lambda p: queue.append((0, p)),
                   rb(2))]
    _converse([e.fsm for e in ends], queue)
    a, b = ends
    assert a.state == b.state == State.OPENED
    assert a.local_id != b.local_id
    assert a.peer_id == b.local_id and b.peer_id == a.local_id


def test_ipv6cp_config_checks_length() -> None:
    with pytest.raises(ValueError):
        IPv6CP(IPv6CPConfig(interface_id=b"short"), Events(), lambda p: None, rb(0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.builds(lambda c, i, d: encode_cp(CPPacket(c, i, d)), st.integers(0, 9),
                          st.integers(0, 255), st.binary(max_size=30)), max_size=10))
def test_garbage_never_raises(payloads: list[bytes]) -> None:
    s4, _ = server()
    c4, _ = client()
    s6, _ = v6()
    for payload in payloads:
        for fsm in (s4.fsm, c4.fsm, s6.fsm):
            fsm.receive(payload, 0)
    assert all(isinstance(f.state, State) for f in (s4.fsm, c4.fsm, s6.fsm))
