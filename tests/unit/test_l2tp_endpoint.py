"""Tunnels and sessions between two in-memory endpoints (LAC and LNS), no sockets."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from pyl2tp.l2tp.endpoint import EndpointConfig, L2TPEndpoint
from pyl2tp.l2tp.events import (
    CallErrorsReported,
    Event,
    LinkInfoSet,
    SessionClosed,
    SessionEstablished,
    TunnelClosed,
)
from pyl2tp.l2tp.session import SessionState
from pyl2tp.l2tp.tunnel import TunnelConfig, TunnelState
from pyl2tp.link import EchoLink, NullLink
from pyl2tp.wire.l2tp import (
    AVP,
    ACCMValue,
    AVPType,
    CallErrors,
    CDNResult,
    ControlMessage,
    MessageType,
    ResultCodeValue,
    StopCCNResult,
    avp,
    decode_control,
    encode_control,
    encode_data,
    message,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

LAC_ADDR = ("198.18.0.2", 1701)
LNS_ADDR = ("198.18.0.1", 1701)


def rng(seed: int) -> Callable[[int], bytes]:
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


class Net:
    """Moves datagrams between two endpoints; `drop` filters what is lost."""

    def __init__(self, lac: L2TPEndpoint, lns: L2TPEndpoint) -> None:
        self.lac = lac
        self.lns = lns
        self.now = 0.0
        self.events: dict[str, list[Event]] = {"lac": [], "lns": []}
        self.wire: list[tuple[str, bytes]] = []
        self.drop: Callable[[str, bytes], bool] = lambda side, data: False

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for name, src, dst, src_addr in (
                ("lac", self.lac, self.lns, LAC_ADDR),
                ("lns", self.lns, self.lac, LNS_ADDR),
            ):
                for data, _peer, _local in src.datagrams_to_send(self.now):
                    self.wire.append((name, data))
                    moved = True
                    if not self.drop(name, data):
                        dst.datagram_received(data, src_addr, self.now)
                self.events[name].extend(src.next_events())
            if not moved:
                return

    def advance(self, seconds: float) -> None:
        """Run timers up to now + seconds."""
        end = self.now + seconds
        while True:
            timers = [t for t in (self.lac.get_timer(), self.lns.get_timer()) if t is not None]
            if not timers or min(timers) > end:
                break
            self.now = max(self.now, min(timers))
            self.lac.handle_timer(self.now)
            self.lns.handle_timer(self.now)
            self.pump()
        self.now = end
        self.pump()

    def of(self, side: str, kind: type[Event]) -> list[Event]:
        return [e for e in self.events[side] if isinstance(e, kind)]


def make(
    lac_secret: bytes | None = None,
    lns_secret: bytes | None = None,
    *,
    hide: bool = False,
    lns_kw: dict[str, int] | None = None,
    hello: float = 60.0,
) -> Net:
    lac = L2TPEndpoint(
        EndpointConfig(
            tunnel=TunnelConfig(
                hostname="lac", secret=lac_secret, lac=True, hide_avps=hide, hello_interval=hello
            ),
            accept_tunnels=False,
        ),
        random_bytes=rng(1),
        link_factory=NullLink,
    )
    lns = L2TPEndpoint(
        EndpointConfig(
            tunnel=TunnelConfig(
                hostname="lns", secret=lns_secret, hide_avps=hide, hello_interval=hello
            ),
            **(lns_kw or {}),
        ),
        random_bytes=rng(2),
        link_factory=EchoLink,
    )
    return Net(lac, lns)


def up(net: Net) -> tuple[int, int]:
    tunnel = net.lac.connect(LNS_ADDR, net.now)
    net.pump()
    assert tunnel.state is TunnelState.ESTABLISHED
    (server_tunnel,) = net.lns.tunnels.values()
    assert server_tunnel.state is TunnelState.ESTABLISHED
    return tunnel.local_id, server_tunnel.local_id


def test_tunnel_and_sessions_come_up() -> None:
    net = make()
    lac_tid, lns_tid = up(net)
    tunnel = net.lac.tunnels[lac_tid]
    assert tunnel.peer_hostname == "lns"
    assert net.lns.tunnels[lns_tid].peer_hostname == "lac"
    assert tunnel.peer_id == lns_tid
    sessions = [net.lac.open_session(tunnel, net.now) for _ in range(10)]
    net.pump()
    assert all(s.state is SessionState.ESTABLISHED for s in sessions)
    assert len(net.lns.tunnels[lns_tid].sessions) == 10
    assert len(net.of("lns", SessionEstablished)) == 10
    assert len({s.local_id for s in sessions}) == 10
    assert net.lns.session_count == 10


def test_data_frames_cross_and_echo() -> None:
    net = make()
    lac_tid, _ = up(net)
    tunnel = net.lac.tunnels[lac_tid]
    session = net.lac.open_session(tunnel, net.now)
    net.pump()
    received: list[bytes] = []

    class Recorder(NullLink):
        def frame_received(self, frame: bytes, now: float) -> None:
            received.append(frame)

    session.link = Recorder(session)
    frame = b"\xff\x03\xc0\x21\x01\x01\x00\x04"
    net.lac.send_frame(session, frame)
    net.pump()
    assert received == [frame]  # the LNS's EchoLink reflected it
    server_session = net.lns.sessions()[0]
    assert server_session.rx_bytes == len(frame) and server_session.tx_bytes == len(frame)
    assert session.tx_packets == 1 and session.rx_packets == 1


@pytest.mark.parametrize("hide", [False, True])
def test_tunnel_authentication_both_ways(hide: bool) -> None:
    net = make(b"s3cret", b"s3cret", hide=hide)
    lac_tid, _ = up(net)
    session = net.lac.open_session(net.lac.tunnels[lac_tid], net.now)
    net.pump()
    assert session.state is SessionState.ESTABLISHED
    sccrq = decode_control(net.wire[0][1])
    assert sccrq.find(AVPType.CHALLENGE) is not None
    sccrp = decode_control(net.wire[1][1])
    assert sccrp.find(AVPType.CHALLENGE) is not None
    assert sccrp.find(AVPType.CHALLENGE_RESPONSE) is not None
    if hide:
        icrq = next(
            decode_control(d, secret=b"s3cret")
            for _, d in net.wire
            if len(d) > 12 and decode_control(d, secret=b"s3cret").msg_type == MessageType.ICRQ
        )
        hidden = icrq.find(AVPType.ASSIGNED_SESSION_ID)
        assert hidden is not None and hidden.hidden


@pytest.mark.parametrize(
    ("lac_secret", "lns_secret"),
    [(b"right", b"wrong"), (None, b"wrong"), (b"right", None)],
)
def test_wrong_or_missing_secret_is_refused_with_result_4(
    lac_secret: bytes | None, lns_secret: bytes | None
) -> None:
    net = make(lac_secret, lns_secret)
    tunnel = net.lac.connect(LNS_ADDR, net.now)
    net.pump()
    net.advance(40)
    assert tunnel.state is TunnelState.CLOSED
    stops = [
        decode_control(d)
        for _, d in net.wire
        if len(d) > 12 and decode_control(d).msg_type == MessageType.STOPCCN
    ]
    assert stops, "a StopCCN must be sent"
    result = stops[0].get(AVPType.RESULT_CODE)
    assert isinstance(result, ResultCodeValue)
    assert result.result == StopCCNResult.NOT_AUTHORIZED
    assert not net.lns.tunnels and not net.lac.tunnels
    closed = net.of("lac", TunnelClosed)
    assert closed and isinstance(closed[0], TunnelClosed)
    assert closed[0].result == StopCCNResult.NOT_AUTHORIZED


def test_cdn_from_either_side() -> None:
    net = make()
    lac_tid, _ = up(net)
    tunnel = net.lac.tunnels[lac_tid]
    a = net.lac.open_session(tunnel, net.now)
    b = net.lac.open_session(tunnel, net.now)
    net.pump()
    net.lac.close_session(a, net.now)
    net.pump()
    assert a.state is SessionState.CLOSED
    assert len(net.lns.sessions()) == 1
    server_b = net.lns.sessions()[0]
    net.lns.close_session(server_b, net.now, "admin")
    net.pump()
    assert b.state is SessionState.CLOSED
    closed = [e for e in net.of("lac", SessionClosed) if isinstance(e, SessionClosed)]
    assert [e.cause for e in closed] == ["local", "peer"]
    assert net.lns.session_count == 0


def test_outgoing_call_wen_and_sli() -> None:
    net = make()
    _, lns_tid = up(net)
    server_tunnel = net.lns.tunnels[lns_tid]
    outgoing = net.lns.open_session(server_tunnel, net.now, outgoing=True)
    net.pump()
    assert outgoing.state is SessionState.ESTABLISHED
    (lac_session,) = net.lac.sessions()
    assert lac_session.state is SessionState.ESTABLISHED
    assert lac_session.peer_id == outgoing.local_id
    errors = CallErrors(1, 2, 3, 4, 5, 6)
    lac_session.send_wen(errors, net.now)
    net.lac._touch(lac_session.tunnel)
    outgoing.send_sli(ACCMValue(0xFFFFFFFF, 0), net.now)
    net.lns._touch(server_tunnel)
    net.pump()
    wen = net.of("lns", CallErrorsReported)
    assert wen and isinstance(wen[0], CallErrorsReported) and wen[0].errors == errors
    sli = net.of("lac", LinkInfoSet)
    assert sli and isinstance(sli[0], LinkInfoSet) and sli[0].accm == ACCMValue(0xFFFFFFFF, 0)


def test_stopccn_clears_sessions_and_lingers() -> None:
    net = make()
    lac_tid, lns_tid = up(net)
    tunnel = net.lac.tunnels[lac_tid]
    for _ in range(3):
        net.lac.open_session(tunnel, net.now)
    net.pump()
    net.lac.close_tunnel(tunnel, net.now)
    net.pump()
    # The sender is done once its StopCCN is acknowledged.
    assert lac_tid not in net.lac.tunnels
    # The receiver lingers (RFC 2661 5.7) and then forgets the tunnel.
    assert net.lns.tunnels[lns_tid].state is TunnelState.CLOSING
    assert net.lns.session_count == 0
    net.advance(32)
    assert not net.lns.tunnels


def test_dead_peer_detected_by_hello() -> None:
    net = make(hello=5)
    up(net)
    net.lac.open_session(next(iter(net.lac.tunnels.values())), net.now)
    net.pump()
    net.drop = lambda side, data: side == "lac"  # the LAC dies silently
    net.advance(5 + 1 + 2 + 4 + 8 + 8 + 8 + 1)
    assert not net.lns.tunnels
    assert net.lns.session_count == 0
    closed = net.of("lns", TunnelClosed)
    assert closed and isinstance(closed[0], TunnelClosed) and closed[0].cause == "timeout"


def test_tunnel_limits_are_refused_with_stopccn() -> None:
    net = make(lns_kw={"max_tunnels": 2})
    up(net)
    up_second = net.lac.connect(LNS_ADDR, net.now)
    net.pump()
    assert up_second.state is TunnelState.ESTABLISHED
    third = net.lac.connect(LNS_ADDR, net.now)
    net.pump()
    assert third.state is not TunnelState.ESTABLISHED
    last = decode_control(net.wire[-2][1] if net.wire[-1][0] == "lac" else net.wire[-1][1])
    assert last.msg_type == MessageType.STOPCCN
    result = last.get(AVPType.RESULT_CODE)
    assert isinstance(result, ResultCodeValue)
    assert (result.result, result.error) == (2, 4)
    assert net.lns.stats.tunnels_refused == 1


def test_session_limit_is_refused_with_cdn_result_4() -> None:
    net = make(lns_kw={"max_sessions": 2})
    lac_tid, _ = up(net)
    tunnel = net.lac.tunnels[lac_tid]
    sessions = [net.lac.open_session(tunnel, net.now) for _ in range(3)]
    net.pump()
    states = [s.state for s in sessions]
    assert states.count(SessionState.ESTABLISHED) == 2
    assert sessions[2].state is SessionState.CLOSED
    closed = [e for e in net.of("lac", SessionClosed) if isinstance(e, SessionClosed)]
    assert "result 4" in closed[0].reason


def test_unknown_mandatory_avp_tears_down_tunnel() -> None:
    net = make()
    lac_tid, lns_tid = up(net)
    lac_tunnel = net.lac.tunnels[lac_tid]
    # Craft a HELLO carrying an unknown mandatory vendor AVP, as the LAC would send it.
    msg = message(
        MessageType.HELLO, lns_tid, 0, [AVP(type=99, value=b"x", vendor=9, mandatory=True)]
    )
    lac_tunnel.channel.send(encode_control(msg), net.now)
    net.lac._touch(lac_tunnel)
    net.pump()
    server = net.lns.tunnels.get(lns_tid)
    assert server is None or server.state is not TunnelState.ESTABLISHED
    assert lac_tunnel.state is not TunnelState.ESTABLISHED
    stops = [
        decode_control(d)
        for side, d in net.wire
        if side == "lns" and len(d) > 12 and decode_control(d).msg_type == MessageType.STOPCCN
    ]
    rc = stops[0].get(AVPType.RESULT_CODE)
    assert isinstance(rc, ResultCodeValue) and (rc.result, rc.error) == (2, 8)


def test_unknown_optional_avp_is_ignored() -> None:
    net = make()
    lac_tid, lns_tid = up(net)
    lac_tunnel = net.lac.tunnels[lac_tid]
    msg = message(MessageType.HELLO, lns_tid, 0, [AVP(type=99, value=b"x", mandatory=False)])
    lac_tunnel.channel.send(encode_control(msg), net.now)
    net.lac._touch(lac_tunnel)
    net.pump()
    assert net.lns.tunnels[lns_tid].state is TunnelState.ESTABLISHED


def test_garbage_and_wrong_peer_are_counted_not_fatal() -> None:
    net = make()
    lac_tid, lns_tid = up(net)
    lac_tunnel = net.lac.tunnels[lac_tid]
    session = net.lac.open_session(lac_tunnel, net.now)
    net.pump()
    r = random.Random(5)
    for _ in range(500):
        net.lns.datagram_received(r.randbytes(r.randrange(0, 60)), LAC_ADDR, net.now)
    # well-formed data for the tunnel from the wrong address
    net.lns.datagram_received(
        encode_data(lns_tid, session.peer_id, b"\xff\x03"), ("198.18.0.99", 1701), net.now
    )
    stats = net.lns.stats
    assert stats.malformed + stats.unknown_tunnel + stats.not_sccrq + stats.unknown_session > 0
    assert stats.wrong_peer >= 1
    net.pump()
    assert net.lns.tunnels[lns_tid].state is TunnelState.ESTABLISHED
    net.lac.send_frame(session, b"\xff\x03\x00\x21")
    net.pump()
    assert net.lns.sessions()[0].rx_packets == 1


def test_retransmitted_sccrq_makes_one_tunnel() -> None:
    net = make()
    lns_first = {"n": 0}

    def drop_first_sccrp(side: str, data: bytes) -> bool:
        if side == "lns" and lns_first["n"] == 0:
            lns_first["n"] += 1
            return True
        return False

    net.drop = drop_first_sccrp
    tunnel = net.lac.connect(LNS_ADDR, net.now)
    net.pump()
    net.advance(3)
    assert tunnel.state is TunnelState.ESTABLISHED
    assert len(net.lns.tunnels) == 1


def test_tie_breaker_lower_wins() -> None:
    # Both sides initiate at once; exactly one tunnel survives.
    a = L2TPEndpoint(EndpointConfig(tunnel=TunnelConfig(hostname="a")), random_bytes=rng(7))
    b = L2TPEndpoint(EndpointConfig(tunnel=TunnelConfig(hostname="b")), random_bytes=rng(8))
    net = Net(a, b)
    ta = a.connect(LNS_ADDR, 0.0)
    tb = b.connect(LAC_ADDR, 0.0)
    net.pump()
    ours, theirs = int.from_bytes(ta.tie_breaker or b""), int.from_bytes(tb.tie_breaker or b"")
    winner, loser = (ta, tb) if ours < theirs else (tb, ta)
    assert winner.state is TunnelState.ESTABLISHED
    assert loser.state is TunnelState.CLOSED
    assert len(a.tunnels) == 1 and len(b.tunnels) == 1


def test_control_message_for_closed_session_keeps_tunnel() -> None:
    net = make()
    lac_tid, lns_tid = up(net)
    lac_tunnel = net.lac.tunnels[lac_tid]
    msg = message(
        MessageType.CDN,
        lns_tid,
        4242,
        [
            avp(AVPType.RESULT_CODE, ResultCodeValue(CDNResult.ADMINISTRATIVE)),
            avp(AVPType.ASSIGNED_SESSION_ID, 1),
        ],
    )
    lac_tunnel.channel.send(encode_control(msg), net.now)
    net.lac._touch(lac_tunnel)
    net.pump()
    assert net.lns.tunnels[lns_tid].state is TunnelState.ESTABLISHED
    assert isinstance(msg, ControlMessage)


def test_closing_tunnel_answers_no_calls() -> None:
    """An ICRQ crossing our StopCCN gets an ack, not an ICRP or CDN (RFC 2661 5.7)."""
    net = make()
    lac_tid, lns_tid = up(net)
    net.lac.open_session(net.lac.tunnels[lac_tid], net.now)  # ICRQ queued, not yet sent
    net.lns.close_tunnel(net.lns.tunnels[lns_tid], net.now)  # StopCCN queued
    start = len(net.wire)
    net.pump()
    lns_types = [
        decode_control(d).msg_type for side, d in net.wire[start:] if side == "lns" and len(d) > 12
    ]
    assert lns_types == [MessageType.STOPCCN]
    assert lns_tid not in net.lns.tunnels
    assert net.lac.tunnels[lac_tid].state is TunnelState.CLOSING
