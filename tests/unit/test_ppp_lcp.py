"""LCP (pyl2tp.ppp.lcp) against recorded peer behaviour: l2tpns, SoftEther, a looped link,
a silent peer, and authentication-protocol negotiation in both roles."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.ppp.fsm import FSMConfig, NegotiationFSM, State
from pyl2tp.ppp.lcp import LCP, LCPConfig
from pyl2tp.wire.ppp import (
    Code,
    CPPacket,
    LCPOption,
    Option,
    PPPProtocol,
    decode_cp,
    decode_options,
    encode_cp,
    encode_options,
    u16_option,
    u32_option,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

MSCHAPV2 = b"\xc2\x23\x81"
CHAP_MD5 = b"\xc2\x23\x05"
PAP = b"\xc0\x23"
EAP = b"\xc2\x27"
# peers/l2tpns/README.md: l2tpns's first and second LCP Configure-Requests (options).
L2TPNS_REQ1 = bytes.fromhex("010405b60305c2230505066b0490521104064e130702c6122901")
L2TPNS_REQ2 = bytes.fromhex("010405b60305c2230505066b049052")


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


def rng(seed: int = 7) -> Callable[[int], bytes]:
    r = random.Random(seed)
    return r.randbytes


class One:
    """One LCP whose output is recorded; the test plays the peer by hand."""

    def __init__(self, config: LCPConfig | None = None, seed: int = 7) -> None:
        self.events = Events()
        self.sent: list[CPPacket] = []
        self.rejected: list[int] = []
        self.lcp = LCP(config or LCPConfig(), self.events,
                       lambda p: self.sent.append(decode_cp(p)), rng(seed),
                       on_protocol_rejected=self.rejected.append)
        self.now = 10.0

    def start(self) -> CPPacket:
        self.lcp.fsm.up(self.now)
        self.lcp.fsm.open(self.now)
        return self.sent[-1]

    def recv(self, code: int, ident: int, data: bytes) -> CPPacket | None:
        before = len(self.sent)
        self.lcp.receive(encode_cp(CPPacket(code, ident, data)), self.now)
        return self.sent[-1] if len(self.sent) > before else None

    def ack_ours(self) -> None:
        req = [p for p in self.sent if p.code == Code.CONFIGURE_REQUEST][-1]
        self.recv(Code.CONFIGURE_ACK, req.identifier, req.data)

    def last_request(self) -> CPPacket:
        return [p for p in self.sent if p.code == Code.CONFIGURE_REQUEST][-1]

    def opened(self, peer_options: bytes = b"") -> None:
        self.start()
        self.ack_ours()
        reply = self.recv(Code.CONFIGURE_REQUEST, 0x10, peer_options)
        assert reply is not None and reply.code == Code.CONFIGURE_ACK
        assert self.lcp.state == State.OPENED


# ---------------------------------------------------------------- our request


def test_default_request_is_mru_and_magic_only() -> None:
    one = One()
    req = one.start()
    opts = decode_options(req.data)
    assert [o.type for o in opts] == [LCPOption.MRU, LCPOption.MAGIC_NUMBER]
    assert opts[0] == u16_option(LCPOption.MRU, 1400)
    assert int.from_bytes(opts[1].data, "big") != 0


def test_full_request_in_type_order() -> None:
    one = One(LCPConfig(mru=1450, accm=0, pfc=True, acfc=True, auth=[MSCHAPV2, PAP]))
    opts = decode_options(one.start().data)
    assert [o.type for o in opts] == [1, 2, 3, 5, 7, 8]
    assert opts[1] == u32_option(LCPOption.ACCM, 0)
    assert opts[2] == Option(LCPOption.AUTH_PROTOCOL, MSCHAPV2)
    one.ack_ours()
    one.recv(Code.CONFIGURE_REQUEST, 1, b"")
    lcp = one.lcp
    assert lcp.state == State.OPENED
    assert (lcp.our_mru, lcp.our_accm, lcp.our_pfc, lcp.our_acfc) == (1450, 0, True, True)
    assert lcp.auth_protocol_ours == MSCHAPV2 and lcp.our_magic != 0
    assert (lcp.peer_mru, lcp.peer_pfc, lcp.peer_acfc, lcp.peer_magic) == (1500, False, False, 0)


# ---------------------------------------------------------------- l2tpns


def test_l2tpns_request_gets_mrru_and_endpoint_discriminator_rejected() -> None:
    one = One(LCPConfig(accept_auth=[CHAP_MD5, PAP]))
    one.start()
    # PPP <- LCP code=1 id=1 010405b6...: we reject exactly 17 and 19, verbatim.
    reply = one.recv(Code.CONFIGURE_REQUEST, 1, L2TPNS_REQ1)
    assert reply == CPPacket(Code.CONFIGURE_REJECT, 1, bytes.fromhex("1104064e130702c6122901"))
    one.ack_ours()
    reply = one.recv(Code.CONFIGURE_REQUEST, 2, L2TPNS_REQ2)
    assert reply == CPPacket(Code.CONFIGURE_ACK, 2, L2TPNS_REQ2)
    lcp = one.lcp
    assert lcp.state == State.OPENED and one.events.log == ["up"]
    assert lcp.peer_mru == 1462 and lcp.peer_magic == 0x6B049052
    assert lcp.auth_protocol_peer == CHAP_MD5 and lcp.auth_protocol_ours is None


def test_l2tpns_chap_naked_with_pap_when_we_only_do_pap() -> None:
    one = One(LCPConfig(accept_auth=[PAP]))
    one.start()
    reply = one.recv(Code.CONFIGURE_REQUEST, 2, L2TPNS_REQ2)
    assert reply is not None and reply.code == Code.CONFIGURE_NAK
    assert decode_options(reply.data) == [Option(LCPOption.AUTH_PROTOCOL, PAP)]
    # l2tpns re-offers PAP (radius_authtypes "chap,pap"): acked.
    again = bytes.fromhex("010405b60304c0230506" "6b049052")
    reply = one.recv(Code.CONFIGURE_REQUEST, 3, again)
    assert reply == CPPacket(Code.CONFIGURE_ACK, 3, again)
    assert one.lcp.auth_protocol_peer == PAP


def test_reject_wins_over_nak() -> None:
    one = One(LCPConfig(accept_auth=[PAP]))
    one.start()
    reply = one.recv(Code.CONFIGURE_REQUEST, 1, L2TPNS_REQ1)  # CHAP unacceptable + 17/19
    assert reply is not None and reply.code == Code.CONFIGURE_REJECT
    assert [o.type for o in decode_options(reply.data)] == [17, 19]


# ---------------------------------------------------------------- SoftEther


def test_softether_rejects_all_but_mru_and_auth() -> None:
    one = One(LCPConfig(accept_auth=[MSCHAPV2, PAP], pfc=True, acfc=True, accm=0))
    req = one.start()
    # SoftEther Configure-Rejects everything but MRU and Auth-Protocol.
    rejected = [o for o in decode_options(req.data) if o.type not in (1, 3)]
    one.recv(Code.CONFIGURE_REJECT, req.identifier, encode_options(rejected))
    req2 = one.last_request()
    assert req2.identifier != req.identifier
    assert decode_options(req2.data) == [u16_option(LCPOption.MRU, 1400)]
    one.ack_ours()
    # Its own request holds only Auth-Protocol: EAP first -> we Nak with MS-CHAPv2.
    reply = one.recv(Code.CONFIGURE_REQUEST, 1, encode_options([Option(3, EAP)]))
    assert reply == CPPacket(Code.CONFIGURE_NAK, 1, encode_options([Option(3, MSCHAPV2)]))
    reply = one.recv(Code.CONFIGURE_REQUEST, 2, encode_options([Option(3, MSCHAPV2)]))
    assert reply is not None and reply.code == Code.CONFIGURE_ACK
    lcp = one.lcp
    assert lcp.state == State.OPENED and lcp.auth_protocol_peer == MSCHAPV2
    assert lcp.our_magic == 0 and not lcp.our_pfc and not lcp.our_acfc
    # It sends Echo-Request with magic 0; we answer with magic 0 (none negotiated).
    reply = one.recv(Code.ECHO_REQUEST, 0x33, b"\x00\x00\x00\x00Aho Baka Manuke")
    assert reply == CPPacket(Code.ECHO_REPLY, 0x33, b"\x00\x00\x00\x00Aho Baka Manuke")


def test_echo_reply_carries_our_negotiated_magic() -> None:
    one = One()
    one.opened()
    reply = one.recv(Code.ECHO_REQUEST, 9, b"\x00\x00\x00\x00xyz")
    assert reply is not None
    assert reply.data == one.lcp.our_magic.to_bytes(4, "big") + b"xyz"


def test_echo_request_before_opened_is_ignored() -> None:
    one = One()
    one.start()
    assert one.recv(Code.ECHO_REQUEST, 9, bytes(4)) is None


# ---------------------------------------------------------------- magic numbers and loops


def test_zero_and_colliding_magic_are_naked() -> None:
    one = One()
    req = one.start()
    ours = decode_options(req.data)[1]
    for magic in (Option(5, bytes(4)), ours):
        reply = one.recv(Code.CONFIGURE_REQUEST, 4, encode_options([magic]))
        assert reply is not None and reply.code == Code.CONFIGURE_NAK
        (suggested,) = decode_options(reply.data)
        assert suggested.type == LCPOption.MAGIC_NUMBER
        assert suggested.data not in (bytes(4), ours.data)


def test_magic_nak_from_peer_is_adopted() -> None:
    one = One()
    req = one.start()
    one.recv(Code.CONFIGURE_NAK, req.identifier, encode_options([u32_option(5, 0x12345678)]))
    assert decode_options(one.last_request().data)[1] == u32_option(5, 0x12345678)


def test_looped_back_link_is_detected() -> None:
    events = Events()
    queue: deque[bytes] = deque()
    lcp = LCP(LCPConfig(loopback_failures=3, fsm=FSMConfig(restart_timer=1)), events,
              queue.append, rng(3))
    lcp.fsm.up(0)
    lcp.fsm.open(0)
    now = 0.0
    for _ in range(200):  # everything we send comes back to us
        if queue:
            lcp.receive(queue.popleft(), now)
        elif (t := lcp.get_timer()) is not None:
            now = t
            lcp.handle_timer(now)
        else:
            break
    assert lcp.failure_reason == "looped back"
    assert lcp.state in (State.CLOSED, State.STOPPED) and events.log[-1] == "finished"


# ---------------------------------------------------------------- echo keepalive


def test_echo_requests_and_failure() -> None:
    one = One(LCPConfig(echo_interval=5, echo_failure=3))
    one.opened()
    t0 = one.now
    assert one.lcp.get_timer() == t0 + 5
    # One answered, then silence.
    one.lcp.handle_timer(t0 + 5)
    echo = one.sent[-1]
    assert echo.code == Code.ECHO_REQUEST
    assert echo.data == one.lcp.our_magic.to_bytes(4, "big")
    assert one.recv(Code.ECHO_REPLY, echo.identifier, b"\x00\x00\x00\x01") is None
    assert one.lcp.echo_replies_received == 1
    for k in range(2, 5):
        one.lcp.handle_timer(t0 + 5 * k)
        assert one.sent[-1].code == Code.ECHO_REQUEST
    assert one.lcp.state == State.OPENED
    one.lcp.handle_timer(t0 + 25)  # 3 unanswered: close
    assert one.sent[-1].code == Code.TERMINATE_REQUEST
    assert one.sent[-1].data == b"echo timeout"
    assert one.lcp.state == State.CLOSING and one.lcp.failure_reason == "echo timeout"
    assert one.lcp.echo_requests_sent == 4


def test_code_reject_of_echo_stops_echoes() -> None:
    one = One(LCPConfig(echo_interval=5))
    one.opened()
    one.lcp.handle_timer(one.now + 5)
    echo = one.sent[-1]
    one.recv(Code.CODE_REJECT, 1, encode_cp(echo))
    assert one.lcp.state == State.OPENED  # RXJ+
    assert one.lcp.get_timer() is None


def test_discard_request_is_silently_discarded() -> None:
    one = One()
    one.opened()
    assert one.recv(Code.DISCARD_REQUEST, 5, b"\x00\x00\x00\x00junk") is None
    assert one.lcp.state == State.OPENED


def test_unknown_code_gets_code_reject() -> None:
    one = One()
    one.opened()
    reply = one.recv(14, 5, b"reset")  # Reset-Request is CCP's, not LCP's
    assert reply == CPPacket(Code.CODE_REJECT, reply.identifier if reply else 0,
                             b"\x0e\x05\x00\x09reset")


# ---------------------------------------------------------------- Protocol-Reject


def test_protocol_reject_sent_only_when_opened_and_truncated() -> None:
    one = One()
    one.start()
    one.lcp.protocol_reject(0x80FD, b"\x01\x01\x00\x04", one.now)
    assert one.sent[-1].code == Code.CONFIGURE_REQUEST  # not Opened: nothing sent
    one.ack_ours()
    one.recv(Code.CONFIGURE_REQUEST, 1, encode_options([u16_option(1, 200)]))
    one.lcp.protocol_reject(0x80FD, bytes(500), one.now)
    rej = one.sent[-1]
    assert rej.code == Code.PROTOCOL_REJECT and rej.data[:2] == b"\x80\xfd"
    assert len(encode_cp(rej)) == 200  # RFC 1661 5.7: within the peer's MRU


def test_protocol_reject_received() -> None:
    one = One()
    one.opened()
    one.recv(Code.PROTOCOL_REJECT, 3, b"\x80\x57\x01\x01\x00\x04")
    assert one.rejected == [PPPProtocol.IPV6CP] and one.lcp.state == State.OPENED
    one.recv(Code.PROTOCOL_REJECT, 4, b"\xc0\x21\x01\x01\x00\x04")  # LCP itself: RXJ-
    assert one.lcp.state == State.STOPPING and one.events.log[-1] == "down"
    assert one.lcp.failure_reason == "peer rejected LCP"


def test_protocol_reject_ignored_unless_opened() -> None:
    one = One()
    one.start()
    one.recv(Code.PROTOCOL_REJECT, 3, b"\xc0\x21")
    assert one.rejected == [] and one.lcp.state == State.REQ_SENT


# ---------------------------------------------------------------- authentication


def test_authenticator_follows_the_peers_suggestion() -> None:
    one = One(LCPConfig(auth=[MSCHAPV2, CHAP_MD5, PAP]))
    req = one.start()
    one.recv(Code.CONFIGURE_NAK, req.identifier, encode_options([Option(3, PAP)]))
    assert Option(3, PAP) in decode_options(one.last_request().data)  # skips CHAP-MD5
    one.ack_ours()
    assert one.lcp.fsm.state == State.ACK_RCVD


def test_authenticator_walks_its_list_when_the_suggestion_is_unknown() -> None:
    one = One(LCPConfig(auth=[MSCHAPV2, CHAP_MD5, PAP]))
    req = one.start()
    one.recv(Code.CONFIGURE_NAK, req.identifier, encode_options([Option(3, EAP)]))
    req = one.last_request()
    assert Option(3, CHAP_MD5) in decode_options(req.data)
    one.recv(Code.CONFIGURE_NAK, req.identifier, encode_options([Option(3, EAP)]))
    req = one.last_request()
    assert Option(3, PAP) in decode_options(req.data)
    one.recv(Code.CONFIGURE_NAK, req.identifier, encode_options([Option(3, EAP)]))
    assert one.lcp.failure_reason == "no common authentication protocol"
    assert one.sent[-1].code == Code.TERMINATE_REQUEST


def test_authenticator_fails_when_auth_is_rejected() -> None:
    one = One(LCPConfig(auth=[CHAP_MD5]))
    req = one.start()
    one.recv(Code.CONFIGURE_REJECT, req.identifier, encode_options([Option(3, CHAP_MD5)]))
    assert one.lcp.failure_reason == "peer refuses authentication"
    assert one.lcp.state == State.CLOSING and one.sent[-1].code == Code.TERMINATE_REQUEST


def test_peer_without_accepted_auth_rejects_auth_protocol() -> None:
    one = One()
    one.start()
    reply = one.recv(Code.CONFIGURE_REQUEST, 1, encode_options([Option(3, PAP)]))
    assert reply == CPPacket(Code.CONFIGURE_REJECT, 1, encode_options([Option(3, PAP)]))


# ---------------------------------------------------------------- other options


def test_peer_options_mru_pfc_acfc_accm_and_unknown() -> None:
    one = One()
    one.start()
    reply = one.recv(Code.CONFIGURE_REQUEST, 1, encode_options([u16_option(1, 64)]))
    assert reply == CPPacket(Code.CONFIGURE_NAK, 1, encode_options([u16_option(1, 128)]))
    reply = one.recv(Code.CONFIGURE_REQUEST, 2, encode_options([Option(7, b"x")]))
    assert reply is not None and reply.code == Code.CONFIGURE_REJECT  # boolean with data
    reply = one.recv(Code.CONFIGURE_REQUEST, 3, encode_options([Option(4, b"\xc0\x25")]))
    assert reply is not None and reply.code == Code.CONFIGURE_REJECT  # no LQR
    good = encode_options([u16_option(1, 1400), u32_option(2, 0), Option(7), Option(8)])
    reply = one.recv(Code.CONFIGURE_REQUEST, 4, good)
    assert reply == CPPacket(Code.CONFIGURE_ACK, 4, good)
    lcp = one.lcp
    assert (lcp.peer_mru, lcp.peer_accm, lcp.peer_pfc, lcp.peer_acfc) == (1400, 0, True, True)


def test_our_mru_nak_and_reject() -> None:
    one = One()
    req = one.start()
    one.recv(Code.CONFIGURE_NAK, req.identifier, encode_options([u16_option(1, 1300)]))
    req = one.last_request()
    assert decode_options(req.data)[0] == u16_option(1, 1300)
    one.recv(Code.CONFIGURE_REJECT, req.identifier, encode_options([u16_option(1, 1300)]))
    one.ack_ours()
    assert one.lcp.our_mru == 1500 and one.lcp.state == State.ACK_RCVD


# ---------------------------------------------------------------- two of ours


def test_server_and_client_negotiate() -> None:
    queue: deque[tuple[int, bytes]] = deque()
    ev = [Events(), Events()]
    server = LCP(LCPConfig(mru=1400, auth=[MSCHAPV2, CHAP_MD5, PAP]), ev[0],
                 lambda p: queue.append((1, p)), rng(1))
    client = LCP(LCPConfig(mru=1410, accept_auth=[CHAP_MD5, PAP]), ev[1],
                 lambda p: queue.append((0, p)), rng(2))
    ends = [server, client]
    for x in ends:
        x.fsm.up(0)
        x.fsm.open(0)
    while queue:
        to, payload = queue.popleft()
        ends[to].receive(payload, 0)
    assert server.state == client.state == State.OPENED
    assert server.auth_protocol_ours == client.auth_protocol_peer == CHAP_MD5
    assert server.peer_mru == client.our_mru == 1410
    assert client.peer_mru == server.our_mru == 1400
    assert server.peer_magic == client.our_magic != 0
    assert client.peer_magic == server.our_magic != 0
    assert ev[0].log == ev[1].log == ["up"]


# ---------------------------------------------------------------- robustness

_code = st.integers(0, 15)
_packets = st.builds(lambda c, i, d: encode_cp(CPPacket(c, i, d)), _code, st.integers(0, 255),
                     st.binary(max_size=40))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_packets, st.binary(max_size=40)), max_size=12),
       st.sampled_from(["start", "opened"]))
def test_garbage_never_raises(payloads: list[bytes], where: str) -> None:
    one = One(LCPConfig(auth=[PAP], accept_auth=[PAP], echo_interval=1))
    if where == "start":
        one.start()
    else:
        one.opened()
    for i, payload in enumerate(payloads):
        one.lcp.receive(payload, one.now + i)
        one.lcp.handle_timer(one.now + i + 0.5)
    assert isinstance(one.lcp.state, State)
