"""The L2TP endpoint: every tunnel behind one UDP port, sans-I/O.

The shell feeds it datagrams (`datagram_received`) and timer ticks
(`handle_timer`), then drains `datagrams_to_send`, `next_events` and re-arms one
timer at `get_timer`. It routes control messages to tunnels by id, data messages
to sessions by id, answers new SCCRQs, enforces limits and counts every dropped
datagram. It never raises on what the network sends.

Refusals (RFC 2661 4.4.2, documented in docs/l2tp.md):
- tunnel limit (overall or per peer): StopCCN result 2 (general error),
  error 4 (insufficient resources), sent once, not retransmitted;
- session limit (per tunnel or overall): CDN result 4 (temporary lack of
  resources), error 4;
- failed tunnel authentication: StopCCN result 4 (not authorized).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from pyl2tp.errors import ParseError
from pyl2tp.l2tp.events import Event, SessionClosed, TunnelClosed
from pyl2tp.l2tp.session import Session, SessionState
from pyl2tp.l2tp.tunnel import Addr, Tunnel, TunnelConfig, TunnelState
from pyl2tp.link import LinkFactory, NullLink
from pyl2tp.wire.l2tp import (
    AVPType,
    ControlMessage,
    ErrorCode,
    MessageType,
    ResultCodeValue,
    StopCCNResult,
    avp,
    data_payload_offset,
    decode_control,
    encode_control,
    message,
    peek,
)

log = logging.getLogger("pyl2tp.l2tp")

#: (datagram, peer address, local address or None)
Datagram = tuple[bytes, Addr, Addr | None]


@dataclass(slots=True)
class EndpointConfig:
    """Limits and the settings new tunnels start from."""

    tunnel: TunnelConfig = field(default_factory=TunnelConfig)
    accept_tunnels: bool = True
    max_tunnels: int = 1000
    max_tunnels_per_peer: int = 100
    max_sessions: int = 10000


@dataclass(slots=True)
class EndpointStats:
    """Counters of what came in and what was dropped, and why."""

    datagrams: int = 0
    control_received: int = 0
    data_received: int = 0
    malformed: int = 0
    unknown_tunnel: int = 0
    unknown_session: int = 0
    wrong_peer: int = 0
    not_sccrq: int = 0
    tunnels_refused: int = 0
    sessions_refused: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class L2TPEndpoint:
    """All tunnels and sessions of one LNS or LAC."""

    def __init__(
        self,
        config: EndpointConfig,
        *,
        random_bytes: Callable[[int], bytes],
        link_factory: LinkFactory = NullLink,
    ) -> None:
        self.config = config
        self.random_bytes = random_bytes
        self.link_factory = link_factory
        self.tunnels: dict[int, Tunnel] = {}
        self.stats = EndpointStats()
        self.session_count = 0
        self._by_peer_tid: dict[tuple[Addr, int], Tunnel] = {}
        self._per_peer: Counter[str] = Counter()
        self._events: list[Event] = []
        self._out: list[Datagram] = []
        self._dirty: dict[int, Tunnel] = {}
        self._timers: list[tuple[float, int]] = []

    # -- input ---------------------------------------------------------------------

    def datagram_received(
        self, data: bytes, peer: Addr, now: float, local: Addr | None = None
    ) -> None:
        """One UDP payload from `peer`. Never raises on bad input: it is counted."""
        self.stats.datagrams += 1
        try:
            is_control, tid, sid = peek(data)
        except ParseError:
            self.stats.malformed += 1
            return
        if not is_control:
            self._data_received(data, peer, tid, sid, now)
            return
        self.stats.control_received += 1
        if tid == 0:
            self._new_tunnel_request(data, peer, local, now)
            return
        tunnel = self.tunnels.get(tid)
        if tunnel is None:
            self.stats.unknown_tunnel += 1
            return
        if tunnel.peer != peer:
            # RFC 2661 8.1: the responder may answer from another port; follow it once.
            if tunnel.state is TunnelState.WAIT_CTL_REPLY and tunnel.peer[0] == peer[0]:
                log.info("%s: peer answers from port %d", tunnel.label, peer[1])
                tunnel.peer = peer
            else:
                self.stats.wrong_peer += 1
                return
        try:
            msg = decode_control(data, secret=tunnel.config.secret)
        except ParseError as exc:
            self.stats.malformed += 1
            log.debug("%s: malformed control message dropped: %s", tunnel.label, exc)
            return
        tunnel.receive(msg, now)
        self._touch(tunnel)

    def _data_received(self, data: bytes, peer: Addr, tid: int, sid: int, now: float) -> None:
        tunnel = self.tunnels.get(tid)
        if tunnel is None:
            self.stats.unknown_tunnel += 1
            return
        if tunnel.peer != peer:
            self.stats.wrong_peer += 1
            return
        session = tunnel.sessions.get(sid)
        if session is None or session.state is not SessionState.ESTABLISHED:
            self.stats.unknown_session += 1
            return
        try:
            start = data_payload_offset(data)
        except ParseError:
            self.stats.malformed += 1
            return
        self.stats.data_received += 1
        tunnel.data_received(now)
        session.frame_received(data[start:], now)

    def _new_tunnel_request(self, data: bytes, peer: Addr, local: Addr | None, now: float) -> None:
        try:
            msg = decode_control(data, secret=self.config.tunnel.secret)
        except ParseError as exc:
            self.stats.malformed += 1
            log.debug("malformed control message from %s:%d dropped: %s", *peer, exc)
            return
        if msg.msg_type != MessageType.SCCRQ:
            # Only an SCCRQ may open a tunnel (tunnel id 0); anything else is noise.
            self.stats.not_sccrq += 1
            return
        peer_tid = msg.get(AVPType.ASSIGNED_TUNNEL_ID)
        if not isinstance(peer_tid, int) or peer_tid == 0:
            self.stats.malformed += 1
            return
        existing = self._by_peer_tid.get((peer, peer_tid))
        if existing is not None:
            # A retransmitted SCCRQ: the tunnel's channel re-acknowledges it.
            existing.receive(msg, now)
            self._touch(existing)
            return
        if not self._tie_break(msg, peer, now):
            return
        why = self._tunnel_refusal(peer)
        if why is not None:
            self.stats.tunnels_refused += 1
            log.warning("SCCRQ from %s:%d refused: %s", *peer, why)
            self._one_shot_stopccn(
                peer,
                local,
                peer_tid,
                StopCCNResult.GENERAL_ERROR,
                ErrorCode.INSUFFICIENT_RESOURCES,
                why,
            )
            return
        tunnel = self._make_tunnel(peer, local, self.config.tunnel, initiator=False, now=now)
        tunnel.sccrq_key = (peer, peer_tid)
        self._by_peer_tid[tunnel.sccrq_key] = tunnel
        tunnel.accept(msg, now)
        self._touch(tunnel)

    def _tie_break(self, msg: ControlMessage, peer: Addr, now: float) -> bool:
        """RFC 2661 4.4.3: resolve SCCRQs crossing between the same pair. True: accept it."""
        theirs = msg.get(AVPType.TIE_BREAKER)
        if not isinstance(theirs, int):
            return True
        accept = True
        for tunnel in list(self.tunnels.values()):
            if not (tunnel.initiator and tunnel.state is TunnelState.WAIT_CTL_REPLY):
                continue
            if tunnel.peer[0] != peer[0] or tunnel.tie_breaker is None:
                continue
            ours = int.from_bytes(tunnel.tie_breaker)
            if ours < theirs:
                accept = False  # we win: silently discard theirs
                continue
            # We lose (or tie): silently discard our tunnel.
            tunnel.discard("tie-breaker", "lost the tie breaker")
            self._touch(tunnel)
            if ours == theirs:
                accept = False
        return accept

    def _tunnel_refusal(self, peer: Addr) -> str | None:
        cfg = self.config
        if not cfg.accept_tunnels:
            return "not accepting tunnels"
        if len(self.tunnels) >= cfg.max_tunnels:
            return f"tunnel limit {cfg.max_tunnels} reached"
        if self._per_peer[peer[0]] >= cfg.max_tunnels_per_peer:
            return f"per-peer tunnel limit {cfg.max_tunnels_per_peer} reached"
        return None

    def _one_shot_stopccn(
        self, peer: Addr, local: Addr | None, peer_tid: int, result: int, error: int, text: str
    ) -> None:
        msg = message(
            MessageType.STOPCCN,
            peer_tid,
            0,
            [
                avp(AVPType.ASSIGNED_TUNNEL_ID, 0),
                avp(AVPType.RESULT_CODE, ResultCodeValue(result, error, text)),
            ],
        )
        msg.nr = 1  # acknowledges the SCCRQ it answers
        self._out.append((encode_control(msg), peer, local))

    # -- commands -------------------------------------------------------------------

    def connect(
        self,
        peer: Addr,
        now: float,
        *,
        local: Addr | None = None,
        config: TunnelConfig | None = None,
    ) -> Tunnel:
        """Open a tunnel to `peer` as initiator (SCCRQ)."""
        tunnel = self._make_tunnel(
            peer, local, config or self.config.tunnel, initiator=True, now=now
        )
        tunnel.start(now)
        self._touch(tunnel)
        return tunnel

    def open_session(self, tunnel: Tunnel, now: float, *, outgoing: bool = False) -> Session:
        """Place a call on an established tunnel (ICRQ, or OCRQ when `outgoing`)."""
        if self.session_count >= self.config.max_sessions:
            raise RuntimeError(f"session limit {self.config.max_sessions} reached")
        session = tunnel.open_session(now, outgoing=outgoing)
        self._touch(tunnel)
        return session

    def close_tunnel(self, tunnel: Tunnel, now: float, message: str | None = None) -> None:
        tunnel.close(now, StopCCNResult.GENERAL_REQUEST, message=message)
        self._touch(tunnel)

    def close_session(self, session: Session, now: float, message: str | None = None) -> None:
        session.disconnect(now, message=message)
        self._touch(session.tunnel)

    def send_frame(self, session: Session, frame: bytes) -> None:
        """Send a PPP frame to the session's peer (queued for `datagrams_to_send`)."""
        session.send_frame(frame)

    def close_all(self, now: float, message: str = "shutting down") -> None:
        for tunnel in list(self.tunnels.values()):
            tunnel.close(now, StopCCNResult.SHUTTING_DOWN, message=message)
            self._touch(tunnel)

    # -- output -------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        # Control messages first: an ICCN must reach the peer before the first PPP
        # frame of its session, or the peer drops the frame as for an unknown session.
        out: list[Datagram] = []
        dirty = self._dirty
        self._dirty = {}
        for tunnel in dirty.values():
            for data in tunnel.datagrams_to_send(now):
                out.append((data, tunnel.peer, tunnel.local))
            if tunnel.state is TunnelState.CLOSED:
                self._remove(tunnel)
            else:
                when = tunnel.get_timer()
                if when is not None:
                    heapq.heappush(self._timers, (when, tunnel.local_id))
        if self._out:
            out.extend(self._out)
            self._out = []
        return out

    def next_events(self) -> list[Event]:
        events = self._events
        self._events = []
        return events

    def get_timer(self) -> float | None:
        timers = self._timers
        while timers:
            when, tid = timers[0]
            tunnel = self.tunnels.get(tid)
            current = tunnel.get_timer() if tunnel is not None else None
            if current == when:
                return when
            heapq.heappop(timers)
            if tunnel is not None and current is not None and current > when:
                heapq.heappush(timers, (current, tid))
        return None

    def handle_timer(self, now: float) -> None:
        timers = self._timers
        due: set[int] = set()
        while timers and timers[0][0] <= now:
            due.add(heapq.heappop(timers)[1])
        for tid in due:
            tunnel = self.tunnels.get(tid)
            if tunnel is not None:
                tunnel.handle_timer(now)
                self._touch(tunnel)

    # -- lookups for the control socket -----------------------------------------------

    def sessions(self) -> list[Session]:
        return [s for t in self.tunnels.values() for s in t.sessions.values()]

    def find_session(self, tunnel_id: int, session_id: int) -> Session | None:
        tunnel = self.tunnels.get(tunnel_id)
        return tunnel.sessions.get(session_id) if tunnel is not None else None

    # -- internals ----------------------------------------------------------------------

    def _make_tunnel(
        self, peer: Addr, local: Addr | None, config: TunnelConfig, *, initiator: bool, now: float
    ) -> Tunnel:
        while True:
            tid = int.from_bytes(self.random_bytes(2))
            if tid and tid not in self.tunnels:
                break
        tunnel = Tunnel(
            local_id=tid,
            peer=peer,
            local=local,
            config=config,
            initiator=initiator,
            now=now,
            random_bytes=self.random_bytes,
            emit=self._emit,
        )
        tunnel.admit_session = self._admit_session
        tunnel.send_data = self._queue_data
        tunnel.on_activity = lambda: self._touch(tunnel)
        self.tunnels[tid] = tunnel
        self._per_peer[peer[0]] += 1
        return tunnel

    def _admit_session(self, session: Session) -> bool:
        """Called by a tunnel for each new session: the overall limit and the link."""
        if self.session_count >= self.config.max_sessions:
            self.stats.sessions_refused += 1
            return False
        self.session_count += 1
        session.link = self.link_factory(session)
        return True

    def _emit(self, event: Event) -> None:
        if isinstance(event, SessionClosed):
            self.session_count -= 1
        self._events.append(event)

    def _queue_data(self, data: bytes, peer: Addr, local: Addr | None) -> None:
        self._out.append((data, peer, local))

    def _touch(self, tunnel: Tunnel) -> None:
        self._dirty[tunnel.local_id] = tunnel

    def _remove(self, tunnel: Tunnel) -> None:
        if self.tunnels.pop(tunnel.local_id, None) is None:
            return
        self._per_peer[tunnel.peer[0]] -= 1
        if self._per_peer[tunnel.peer[0]] <= 0:
            del self._per_peer[tunnel.peer[0]]
        if tunnel.sccrq_key is not None:
            self._by_peer_tid.pop(tunnel.sccrq_key, None)


__all__ = ["Datagram", "EndpointConfig", "EndpointStats", "L2TPEndpoint", "TunnelClosed"]
