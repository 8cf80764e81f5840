"""L2TP control connections (tunnels): RFC 2661 5.1, 5.5, 5.7, 6.1-6.5 and 7.2/7.3.

A `Tunnel` is sans-I/O: the endpoint feeds it decoded control messages and the
time, and collects the datagrams it queues. Reliable delivery is the
`ReliableChannel`'s job; this module decides what the messages mean.

States (RFC 2661 7.2): the initiator goes WAIT_CTL_REPLY -> ESTABLISHED, the
responder WAIT_CTL_CONN -> ESTABLISHED; either goes to CLOSING when a StopCCN is
sent or received (lingering, RFC 2661 5.7) and to CLOSED when done.
"""

from __future__ import annotations

import enum
import hmac
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pyl2tp.errors import ParseError
from pyl2tp.l2tp.channel import ChannelConfig, ReliableChannel
from pyl2tp.l2tp.events import Event, TunnelClosed, TunnelEstablished
from pyl2tp.l2tp.session import (
    FRAMING_SYNC,
    MissingAVP,
    Session,
    SessionState,
    describe_result,
    message_name,
)
from pyl2tp.wire.l2tp import (
    AVP,
    AVPType,
    CDNResult,
    ControlMessage,
    ErrorCode,
    MessageType,
    ProtocolVersion,
    ResultCodeValue,
    StopCCNResult,
    avp,
    challenge_response,
    encode_control,
    message,
    unknown_mandatory,
)

log = logging.getLogger("pyl2tp.l2tp")

Addr = tuple[str, int]
RandomBytes = Callable[[int], bytes]

#: RFC 2661 4.4.3: protocol version 1, revision 0.
PROTOCOL_VERSION = ProtocolVersion(1, 0)
#: AVPs that we hide when `hide_avps` is on and a secret is set (RFC 2661 4.3).
HIDEABLE = frozenset(
    {
        AVPType.ASSIGNED_SESSION_ID,
        AVPType.CALL_SERIAL_NUMBER,
        AVPType.CALLED_NUMBER,
        AVPType.CALLING_NUMBER,
        AVPType.TX_CONNECT_SPEED,
        AVPType.MINIMUM_BPS,
        AVPType.MAXIMUM_BPS,
        AVPType.CALL_ERRORS,
        AVPType.ACCM,
    }
)


class TunnelState(enum.Enum):
    WAIT_CTL_REPLY = "wait-ctl-reply"
    WAIT_CTL_CONN = "wait-ctl-conn"
    ESTABLISHED = "established"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(slots=True)
class TunnelConfig:
    """Per-tunnel settings (the `[l2tp]` table, or the client's)."""

    hostname: str = "pyl2tp"
    vendor_name: str = "pyl2tp"
    secret: bytes | None = None
    hide_avps: bool = False
    hello_interval: float = 60.0
    #: a tunnel not established within this time is cleared
    setup_timeout: float = 30.0
    #: RFC 2661 5.7: state kept after StopCCN, one full retransmission cycle
    linger: float = 31.0
    max_sessions: int = 1000
    #: True when we are the LAC (we place incoming calls, answer OCRQ)
    lac: bool = False
    channel: ChannelConfig = field(default_factory=ChannelConfig)


class Tunnel:
    """One control connection and its sessions."""

    def __init__(
        self,
        *,
        local_id: int,
        peer: Addr,
        local: Addr | None,
        config: TunnelConfig,
        initiator: bool,
        now: float,
        random_bytes: RandomBytes,
        emit: Callable[[Event], None],
    ) -> None:
        self.local_id = local_id
        self.peer_id = 0
        self.peer = peer
        self.local = local
        self.config = config
        self.initiator = initiator
        self.random_bytes = random_bytes
        self.emit = emit
        self.state = TunnelState.WAIT_CTL_REPLY if initiator else TunnelState.WAIT_CTL_CONN
        self.created = now
        self.established_at: float | None = None
        self.peer_hostname = ""
        self.peer_vendor = ""
        self.peer_framing = 0
        self.peer_bearer = 0
        self.tie_breaker: bytes | None = None
        self.sessions: dict[int, Session] = {}
        self.channel: ReliableChannel[ControlMessage] = ReliableChannel(config.channel)
        #: where data messages go: set by the endpoint to its output queue
        self.send_data: Callable[[bytes, Addr, Addr | None], None] = _no_data_path
        #: called when something changed that the endpoint must flush or re-time
        self.on_activity: Callable[[], None] = _nothing
        self.close_cause = ""
        self.close_reason = ""
        self.close_result: int | None = None
        self._challenge: bytes | None = None  # the challenge we sent
        self._last_rx = now
        self._deadline: float | None = now + config.setup_timeout
        self._serial = 0
        #: set by the endpoint: admits a new session (overall limit, link) or refuses it
        self.admit_session: Callable[[Session], bool] = lambda session: True
        #: the (peer, peer tunnel id) of the SCCRQ a responder answered
        self.sccrq_key: tuple[Addr, int] | None = None
        self._handlers: dict[int, Callable[[ControlMessage, float], None]] = {
            MessageType.SCCRP: self._on_sccrp,
            MessageType.SCCCN: self._on_scccn,
            MessageType.STOPCCN: self._on_stopccn,
            MessageType.HELLO: self._on_hello,
            MessageType.ICRQ: self._on_icrq,
            MessageType.OCRQ: self._on_ocrq,
        }

    def __repr__(self) -> str:
        return f"<Tunnel {self.local_id} {self.state.value} peer {self.peer_label}>"

    @property
    def peer_label(self) -> str:
        return f"{self.peer[0]}:{self.peer[1]}"

    @property
    def label(self) -> str:
        """`tunnel T peer ip:port`, for log lines."""
        return f"tunnel {self.local_id} peer {self.peer_label}"

    @property
    def closed(self) -> bool:
        return self.state is TunnelState.CLOSED

    # -- starting ---------------------------------------------------------------

    def start(self, now: float) -> None:
        """Initiator: send SCCRQ (RFC 2661 5.1)."""
        avps = self._identity_avps()
        self.tie_breaker = self.random_bytes(8)
        # RFC 2661 4.4.3: Tie Breaker, M=0, never hidden.
        avps.append(avp(AVPType.TIE_BREAKER, int.from_bytes(self.tie_breaker), mandatory=False))
        if self.config.secret is not None:
            self._challenge = self.random_bytes(16)
            avps.append(avp(AVPType.CHALLENGE, self._challenge))
        self._send(MessageType.SCCRQ, 0, avps, now)
        log.info("%s: SCCRQ sent", self.label)

    def accept(self, msg: ControlMessage, now: float) -> None:
        """Responder: take the first SCCRQ (already decoded) and answer it."""
        self._last_rx = now
        delivered = self.channel.receive(msg.ns, msg.nr, msg, now)
        if not delivered:
            self._fail_setup(now, "SCCRQ out of sequence")
            return
        try:
            self._on_sccrq(msg, now)
        except MissingAVP as exc:
            self.close(now, StopCCNResult.GENERAL_ERROR, ErrorCode.BAD_VALUE, str(exc))

    # -- the endpoint's verbs -------------------------------------------------------

    def receive(self, msg: ControlMessage, now: float) -> None:
        """A decoded control message from this tunnel's peer."""
        self._last_rx = now
        if self.state is TunnelState.CLOSED:
            return
        for item in self.channel.receive(msg.ns, msg.nr, None if msg.is_zlb else msg, now):
            if self.closed:  # an earlier message in this batch ended the tunnel
                break
            self._deliver(item, now)
        self._check_channel(now)

    def data_received(self, now: float) -> None:
        """Any data message counts as life for the HELLO timer (RFC 2661 5.5)."""
        self._last_rx = now

    def datagrams_to_send(self, now: float) -> list[bytes]:
        if self.state is TunnelState.CLOSED:
            return []
        return self.channel.datagrams_to_send(now)

    def get_timer(self) -> float | None:
        if self.state is TunnelState.CLOSED:
            return None
        times = [t for t in (self.channel.get_timer(), self._deadline) if t is not None]
        if self.state is TunnelState.ESTABLISHED:
            if self.config.hello_interval > 0:
                times.append(self._last_rx + self.config.hello_interval)
            for session in self.sessions.values():
                when = session.link.get_timer()
                if when is not None:
                    times.append(when)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        if self.state is TunnelState.CLOSED:
            return
        self.channel.handle_timer(now)
        if self._check_channel(now):
            return
        if self._deadline is not None and now >= self._deadline:
            if self.state is TunnelState.CLOSING:
                self._finish("linger over")
            else:
                log.warning("%s: not established after %.0fs", self.label, now - self.created)
                self.close(now, StopCCNResult.GENERAL_ERROR, message="setup timed out")
            return
        if (
            self.state is TunnelState.ESTABLISHED
            and self.config.hello_interval > 0
            and now >= self._last_rx + self.config.hello_interval
        ):
            # RFC 2661 5.5/6.5: HELLO after a quiet period; its loss kills the tunnel.
            self._last_rx = now
            self._send(MessageType.HELLO, 0, [], now)
        if self.state is TunnelState.ESTABLISHED:
            for session in list(self.sessions.values()):
                when = session.link.get_timer()
                if when is not None and when <= now:
                    session.link.handle_timer(now)

    # -- sessions -------------------------------------------------------------------

    def open_session(self, now: float, *, outgoing: bool = False, called: str = "") -> Session:
        """Place a call: ICRQ as LAC, or OCRQ as LNS (`outgoing`)."""
        if self.state is not TunnelState.ESTABLISHED:
            raise RuntimeError(f"{self.label}: cannot open a session in state {self.state.value}")
        session = self._new_session(incoming=outgoing, now=now)
        if session is None:
            raise RuntimeError(f"{self.label}: session limit reached")
        if outgoing:
            session.start_outgoing(called, now)
        else:
            session.start_incoming(now)
        return session

    def forget_session(self, session: Session) -> None:
        self.sessions.pop(session.local_id, None)

    def send_session_message(
        self, mt: MessageType, peer_session: int, avps: Iterable[AVP], now: float
    ) -> None:
        if self.state is not TunnelState.ESTABLISHED:
            return
        self._send(mt, peer_session, list(avps), now)

    def transmit_data(self, data: bytes) -> None:
        self.send_data(data, self.peer, self.local)

    # -- closing ----------------------------------------------------------------------

    def close(
        self,
        now: float,
        result: int = StopCCNResult.GENERAL_REQUEST,
        error: int | None = None,
        message: str | None = None,
    ) -> None:
        """Send StopCCN and linger (RFC 2661 5.7)."""
        if self.state in (TunnelState.CLOSING, TunnelState.CLOSED):
            return
        rc = ResultCodeValue(result, error, message)
        reason = describe_result(rc)
        self.close_result = result
        log.info("%s: StopCCN sent: %s", self.label, reason)
        self._send(
            MessageType.STOPCCN,
            0,
            [avp(AVPType.ASSIGNED_TUNNEL_ID, self.local_id), avp(AVPType.RESULT_CODE, rc)],
            now,
        )
        self._closing(now, "local", reason)

    # -- message handlers ---------------------------------------------------------------

    def _deliver(self, msg: ControlMessage, now: float) -> None:
        mt = msg.msg_type
        if self.state is TunnelState.CLOSING:
            # RFC 2661 5.7: after StopCCN only acknowledgements go out; calls are not answered.
            if mt == MessageType.STOPCCN:
                self.channel.ack_now()
            return
        bad = unknown_mandatory(msg)
        if bad is not None:
            # RFC 2661 4.1: an unknown M-bit AVP ends the session or tunnel it belongs to.
            what = f"unknown mandatory AVP vendor {bad.vendor} type {bad.type}"
            session = self.sessions.get(msg.session_id) if msg.session_id else None
            if session is not None:
                session.disconnect(
                    now, CDNResult.GENERAL_ERROR, ErrorCode.UNKNOWN_MANDATORY_AVP, what
                )
            else:
                self.close(now, StopCCNResult.GENERAL_ERROR, ErrorCode.UNKNOWN_MANDATORY_AVP, what)
            return
        handler = self._handlers.get(mt) if mt is not None else None
        try:
            if handler is not None:
                handler(msg, now)
            elif mt in _SESSION_MESSAGES:
                self._to_session(msg, now)
            else:
                first = msg.avps[0]
                if first.mandatory:
                    # RFC 2661 3.2: unknown message type with M bit set clears the tunnel.
                    self.close(
                        now, StopCCNResult.GENERAL_ERROR, message=f"unknown message type {mt}"
                    )
                else:
                    log.info("%s: ignoring unknown message type %s", self.label, mt)
        except (MissingAVP, ParseError) as exc:
            log.warning("%s: bad %s: %s", self.label, message_name(mt), exc)
            session = self.sessions.get(msg.session_id) if msg.session_id else None
            if session is not None:
                session.disconnect(now, CDNResult.GENERAL_ERROR, ErrorCode.BAD_VALUE, str(exc))
            else:
                self.close(now, StopCCNResult.GENERAL_ERROR, ErrorCode.BAD_VALUE, str(exc))

    def _on_sccrq(self, msg: ControlMessage, now: float) -> None:
        self._learn_peer(msg)
        version = msg.get(AVPType.PROTOCOL_VERSION)
        if version != PROTOCOL_VERSION:
            # RFC 2661 4.4.2: result 5, error code = highest version we support.
            self.close(now, StopCCNResult.UNSUPPORTED_VERSION, 1, "only L2TP version 1.0")
            return
        avps = self._identity_avps()
        challenge = msg.get(AVPType.CHALLENGE)
        secret = self.config.secret
        if isinstance(challenge, bytes):
            if secret is None:
                self.close(now, StopCCNResult.NOT_AUTHORIZED, message="no secret for challenge")
                return
            avps.append(
                avp(
                    AVPType.CHALLENGE_RESPONSE,
                    challenge_response(MessageType.SCCRP, secret, challenge),
                )
            )
        if secret is not None:
            # RFC 2661 5.1.1: we authenticate the peer too.
            self._challenge = self.random_bytes(16)
            avps.append(avp(AVPType.CHALLENGE, self._challenge))
        self._send(MessageType.SCCRP, 0, avps, now)
        log.info("%s: SCCRQ from %r, SCCRP sent", self.label, self.peer_hostname)

    def _on_sccrp(self, msg: ControlMessage, now: float) -> None:
        if self.state is not TunnelState.WAIT_CTL_REPLY:
            log.info("%s: ignoring SCCRP in state %s", self.label, self.state.value)
            return
        self._learn_peer(msg)
        if msg.get(AVPType.PROTOCOL_VERSION) != PROTOCOL_VERSION:
            self.close(now, StopCCNResult.UNSUPPORTED_VERSION, 1, "only L2TP version 1.0")
            return
        secret = self.config.secret
        if not self._peer_authenticated(msg, MessageType.SCCRP, now):
            return
        avps: list[AVP] = []
        challenge = msg.get(AVPType.CHALLENGE)
        if isinstance(challenge, bytes):
            if secret is None:
                log.warning("%s: peer asks for tunnel authentication; no secret set", self.label)
                self.close(now, StopCCNResult.NOT_AUTHORIZED, message="no secret for challenge")
                return
            avps.append(
                avp(
                    AVPType.CHALLENGE_RESPONSE,
                    challenge_response(MessageType.SCCCN, secret, challenge),
                )
            )
        self._send(MessageType.SCCCN, 0, avps, now)
        self._establish(now)

    def _on_scccn(self, msg: ControlMessage, now: float) -> None:
        if self.state is not TunnelState.WAIT_CTL_CONN:
            log.info("%s: ignoring SCCCN in state %s", self.label, self.state.value)
            return
        if self._peer_authenticated(msg, MessageType.SCCCN, now):
            self._establish(now)

    def _peer_authenticated(self, msg: ControlMessage, mt: MessageType, now: float) -> bool:
        """Check the answer to our Challenge, if we sent one (RFC 2661 5.1.1).

        A missing or wrong response ends the tunnel with StopCCN result 4 (not authorized).
        """
        if self._challenge is None:
            return True
        assert self.config.secret is not None
        response = msg.get(AVPType.CHALLENGE_RESPONSE)
        expected = challenge_response(mt, self.config.secret, self._challenge)
        if isinstance(response, bytes) and hmac.compare_digest(response, expected):
            return True
        what = "missing" if response is None else "wrong"
        log.warning("%s: tunnel authentication failed: %s challenge response", self.label, what)
        self.close(now, StopCCNResult.NOT_AUTHORIZED, message=f"{what} challenge response")
        return False

    def _on_stopccn(self, msg: ControlMessage, now: float) -> None:
        rc = msg.get(AVPType.RESULT_CODE)
        reason = describe_result(rc)
        self.close_result = rc.result if isinstance(rc, ResultCodeValue) else None
        log.info("%s: StopCCN received: %s", self.label, reason)
        # RFC 2661 5.7: acknowledge, keep state for a retransmission cycle.
        self.channel.ack_now()
        self._closing(now, "peer", reason)

    def _on_hello(self, msg: ControlMessage, now: float) -> None:
        return None  # the channel's ack is the whole answer (RFC 2661 6.5)

    def _on_icrq(self, msg: ControlMessage, now: float) -> None:
        # RFC 2661 5.2.1: the LAC places incoming calls, the LNS answers them.
        session = self._answerable_call(msg, now, "ICRQ", as_lac=False)
        if session is not None:
            session.on_icrq(msg, now)

    def _on_ocrq(self, msg: ControlMessage, now: float) -> None:
        # RFC 2661 5.2.2: the LNS asks the LAC to place an outgoing call.
        session = self._answerable_call(msg, now, "OCRQ", as_lac=True)
        if session is not None:
            session.on_ocrq(msg, now)

    def _answerable_call(
        self, msg: ControlMessage, now: float, name: str, *, as_lac: bool
    ) -> Session | None:
        """A new session for a call request, or None after refusing it with CDN."""
        if self.config.lac != as_lac or self.state is not TunnelState.ESTABLISHED:
            self._refuse_call(msg, now, CDNResult.GENERAL_ERROR, f"{name} not accepted here")
            return None
        # The session's direction is the RFC's: an ICRQ is incoming at the LNS.
        session = self._new_session(incoming=not as_lac, now=now)
        if session is None:
            self._refuse_call(msg, now, CDNResult.TEMPORARY_NO_RESOURCES, "session limit reached")
        return session

    def _to_session(self, msg: ControlMessage, now: float) -> None:
        session = self.sessions.get(msg.session_id)
        if session is None:
            if msg.msg_type != MessageType.CDN:
                log.info(
                    "%s: %s for unknown session %d dropped",
                    self.label,
                    message_name(msg.msg_type),
                    msg.session_id,
                )
            return
        session.handle(msg, now)

    def _refuse_call(self, msg: ControlMessage, now: float, result: int, text: str) -> None:
        """Answer a call request we will not take with CDN (RFC 2661 4.4.2 result codes)."""
        peer_session = msg.get(AVPType.ASSIGNED_SESSION_ID)
        if not isinstance(peer_session, int):
            raise MissingAVP(AVPType.ASSIGNED_SESSION_ID)
        error = (
            ErrorCode.INSUFFICIENT_RESOURCES if result == CDNResult.TEMPORARY_NO_RESOURCES else None
        )
        log.warning("%s: call refused: %s", self.label, text)
        self._send(
            MessageType.CDN,
            peer_session,
            [
                avp(AVPType.RESULT_CODE, ResultCodeValue(result, error, text)),
                avp(AVPType.ASSIGNED_SESSION_ID, 0),
            ],
            now,
        )

    # -- internals ------------------------------------------------------------------------

    def _identity_avps(self) -> list[AVP]:
        cfg = self.config
        return [
            avp(AVPType.PROTOCOL_VERSION, PROTOCOL_VERSION),
            avp(AVPType.HOST_NAME, cfg.hostname),
            avp(AVPType.FRAMING_CAPABILITIES, FRAMING_SYNC | 2),
            avp(AVPType.BEARER_CAPABILITIES, 1 | 2, mandatory=True),
            avp(AVPType.FIRMWARE_REVISION, 0x0100, mandatory=False),
            avp(AVPType.VENDOR_NAME, cfg.vendor_name, mandatory=False),
            avp(AVPType.ASSIGNED_TUNNEL_ID, self.local_id),
            avp(AVPType.RECEIVE_WINDOW_SIZE, cfg.channel.receive_window),
        ]

    def _learn_peer(self, msg: ControlMessage) -> None:
        tid = msg.get(AVPType.ASSIGNED_TUNNEL_ID)
        if not isinstance(tid, int) or tid == 0:
            raise MissingAVP(AVPType.ASSIGNED_TUNNEL_ID)
        self.peer_id = tid
        self.channel.peer_tunnel_id = tid
        host = msg.get(AVPType.HOST_NAME)
        self.peer_hostname = host if isinstance(host, str) else ""
        vendor = msg.get(AVPType.VENDOR_NAME)
        self.peer_vendor = vendor if isinstance(vendor, str) else ""
        framing = msg.get(AVPType.FRAMING_CAPABILITIES)
        self.peer_framing = framing if isinstance(framing, int) else 0
        bearer = msg.get(AVPType.BEARER_CAPABILITIES)
        self.peer_bearer = bearer if isinstance(bearer, int) else 0
        window = msg.get(AVPType.RECEIVE_WINDOW_SIZE)
        # RFC 2661 5.8: absent means a window of 4.
        self.channel.set_peer_window(window if isinstance(window, int) and window > 0 else 4)

    def _establish(self, now: float) -> None:
        self.state = TunnelState.ESTABLISHED
        self.established_at = now
        self._deadline = None
        log.info(
            "%s: established (peer tunnel %d, host %r)",
            self.label,
            self.peer_id,
            self.peer_hostname,
        )
        self.emit(TunnelEstablished(self))

    def _closing(self, now: float, cause: str, reason: str) -> None:
        self.state = TunnelState.CLOSING
        self.close_cause = cause
        self.close_reason = reason
        self._deadline = now + self.config.linger
        # RFC 2661 6.4: StopCCN clears every session implicitly.
        for session in list(self.sessions.values()):
            session.drop(cause, f"tunnel closed: {reason}")

    def _finish(self, why: str) -> None:
        if self.state is TunnelState.CLOSED:
            return
        for session in list(self.sessions.values()):
            session.drop(self.close_cause or "timeout", why)
        self.state = TunnelState.CLOSED
        log.info("%s: closed (%s)", self.label, why)
        self.emit(
            TunnelClosed(
                self, self.close_cause or "timeout", self.close_reason or why, self.close_result
            )
        )

    def _fail_setup(self, now: float, why: str) -> None:
        self.discard("refused", why)

    def discard(self, cause: str, reason: str) -> None:
        """Drop the tunnel silently, sending nothing (RFC 2661 4.4.3 tie breaker loser)."""
        self.close_cause = cause
        self.close_reason = reason
        self._finish(reason)

    def _check_channel(self, now: float) -> bool:
        """Tear down on a dead channel (RFC 2661 5.8); finish a StopCCN we sent once acked."""
        if self.channel.failed:
            if self.state is not TunnelState.CLOSING:
                log.warning("%s: peer stopped acknowledging; tunnel down", self.label)
                self.close_cause = "timeout"
                self.close_reason = "no acknowledgement from peer"
            self._finish(self.close_reason)
            return True
        if self.state is TunnelState.CLOSING and self.close_cause == "local" and self.channel.idle:
            self._finish("StopCCN acknowledged")
            return True
        return False

    def _new_session(self, *, incoming: bool, now: float) -> Session | None:
        if len(self.sessions) >= self.config.max_sessions:
            return None
        while True:
            sid = int.from_bytes(self.random_bytes(2))
            if sid and sid not in self.sessions:
                break
        self._serial = (self._serial + 1) & 0xFFFFFFFF
        session = Session(self, sid, incoming=incoming, serial=self._serial, now=now)
        if not self.admit_session(session):
            return None
        self.sessions[sid] = session
        return session

    def _send(self, mt: MessageType, peer_session: int, avps: list[AVP], now: float) -> None:
        cfg = self.config
        if cfg.hide_avps and cfg.secret is not None:
            avps = [a if a.type not in HIDEABLE else _hidden(a) for a in avps]
        msg = message(mt, self.peer_id, peer_session, avps)
        data = encode_control(msg, secret=cfg.secret, random_bytes=self.random_bytes)
        self.channel.send(data, now)


def _no_data_path(data: bytes, peer: Addr, local: Addr | None) -> None:
    raise RuntimeError("tunnel has no data path (not attached to an endpoint)")


def _nothing() -> None:
    return None


def _hidden(a: AVP) -> AVP:
    return AVP(a.type, a.value, vendor=a.vendor, mandatory=a.mandatory, hidden=True)


_SESSION_MESSAGES = frozenset(
    {
        MessageType.ICRP,
        MessageType.ICCN,
        MessageType.OCRP,
        MessageType.OCCN,
        MessageType.CDN,
        MessageType.WEN,
        MessageType.SLI,
    }
)


__all__ = ["Addr", "SessionState", "Tunnel", "TunnelConfig", "TunnelState"]
