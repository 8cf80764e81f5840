"""LCP, the Link Control Protocol (RFC 1661 5-6): options, keepalive, link maintenance.

`LCP` is the OptionNegotiator behind an RFC 1661 automaton (`ppp/fsm.py`) plus what only
LCP has: Echo-Request/Reply keepalive with a failure limit, Protocol-Reject in both
directions, Discard-Request, and Magic-Number loop detection.

Options: MRU, ACCM, Auth-Protocol, Magic-Number, PFC and ACFC are understood; everything
else (Quality-Protocol, Callback, multilink MRRU and Endpoint Discriminator, ...) is
Configure-Rejected. Over L2TP the ACCM is meaningless (RFC 2661 4.4.6 leaves it to the
LAC), so we never ask for it by default and ack whatever the peer asks.

Auth-Protocol works both ways. As authenticator we ask for `LCPConfig.auth[0]` and walk
down the list on Configure-Nak (preferring what the peer suggests); a Configure-Reject of
Auth-Protocol means the peer will not authenticate, and the link is closed. As the
authenticated peer we ack a protocol listed in `accept_auth` and Nak anything else with our
preferred one (RFC 1661 6.2); with an empty `accept_auth` we reject the option.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pyl2tp.ppp.fsm import (
    Event,
    FSMConfig,
    FSMEvents,
    NegotiationFailed,
    NegotiationFSM,
    State,
)
from pyl2tp.wire.ppp import (
    Code,
    CPPacket,
    LCPOption,
    Option,
    PPPProtocol,
    echo_data,
    encode_cp,
    option_u16,
    option_u32,
    parse_echo,
    parse_protocol_reject,
    protocol_reject_data,
    u16_option,
    u32_option,
)

__all__ = ["DEFAULT_MRU", "LCP", "MIN_MRU", "LCPConfig"]

log = logging.getLogger("pyl2tp.ppp")

DEFAULT_MRU = 1500  # RFC 1661 6.1
MIN_MRU = 128  # the smallest MRU we agree to send with (pppd's MINMRU)
DEFAULT_ACCM = 0xFFFFFFFF  # RFC 1662 7.1


@dataclass(slots=True)
class LCPConfig:
    """What LCP asks for and accepts. Durations are seconds."""

    mru: int = 1400  # MRU we ask for; 0: don't ask
    accm: int | None = None  # ACCM we ask for; None: don't ask (meaningless over L2TP)
    magic: bool = True  # ask for a Magic-Number
    pfc: bool = False  # ask for Protocol-Field-Compression (SoftEther rejects it)
    acfc: bool = False  # ask for Address-and-Control-Field-Compression
    # As authenticator: Auth-Protocol option data we offer, in preference order, e.g.
    # [b"\xc2\x23\x81", b"\xc2\x23\x05", b"\xc0\x23"]; empty: no authentication required.
    auth: list[bytes] = field(default_factory=list)
    # As the authenticated peer: Auth-Protocol data we accept, in our preference order.
    accept_auth: list[bytes] = field(default_factory=list)
    echo_interval: float = 30.0  # 0: no Echo-Requests
    echo_failure: int = 4  # unanswered Echo-Requests before the link is closed
    loopback_failures: int = 5  # Magic-Number collisions before declaring a looped link
    fsm: FSMConfig = field(default_factory=FSMConfig)


class LCP:
    """The Link Control Protocol: an OptionNegotiator, its automaton (`fsm`) and keepalive.

    `send(payload)` takes an LCP packet (Code/Identifier/Length/Data); the caller frames it
    with protocol 0xC021. `random_bytes(n)` supplies Magic-Numbers and Identifiers.
    `on_protocol_rejected(protocol)` is called when the peer Protocol-Rejects a protocol
    other than LCP; the caller stops that protocol (e.g. `ipcp.fsm.protocol_rejected(now)`).
    """

    def __init__(self, config: LCPConfig, events: FSMEvents, send: Callable[[bytes], None],
                 random_bytes: Callable[[int], bytes], *,
                 on_protocol_rejected: Callable[[int], None] | None = None,
                 logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
                 ) -> None:
        self.config = config
        self.user_events = events
        self.random_bytes = random_bytes
        self.on_protocol_rejected = on_protocol_rejected
        self.log = logger if logger is not None else log
        self._send = send
        self.fsm = NegotiationFSM("LCP", PPPProtocol.LCP, self, self, send, config.fsm,
                                  random_id=lambda: random_bytes(1)[0], logger=logger)
        self.fsm.extra_codes.update({
            Code.PROTOCOL_REJECT: self._rcv_protocol_reject,
            Code.ECHO_REQUEST: self._rcv_echo_request,
            Code.ECHO_REPLY: self._rcv_echo_reply,
            Code.DISCARD_REQUEST: self._rcv_discard_request,
        })
        self.fsm.on_code_rejected = self._code_rejected
        # What we ask for (shrinks on Configure-Reject, changes on Configure-Nak).
        self._want_mru = config.mru
        self._want_accm = config.accm
        self._want_magic = config.magic
        self._want_pfc = config.pfc
        self._want_acfc = config.acfc
        self._auth_tried: list[bytes] = []
        self._auth: bytes | None = config.auth[0] if config.auth else None
        self._magic = self._new_magic(0)
        self._last_nak_magic: int | None = None  # the Magic-Number we last Nak'd the peer with
        self._loops = 0
        # Negotiated results, valid once the automaton is Opened.
        self.peer_mru = DEFAULT_MRU  # largest packet we may send
        self.our_mru = DEFAULT_MRU  # largest packet the peer may send (what it acked)
        self.peer_accm = DEFAULT_ACCM
        self.our_accm = DEFAULT_ACCM
        self.auth_protocol_ours: bytes | None = None  # the peer authenticates to us with it
        self.auth_protocol_peer: bytes | None = None  # we authenticate to the peer with it
        self.peer_pfc = False  # the peer may send us compressed Protocol fields
        self.peer_acfc = False
        self.our_pfc = False  # we may send compressed Protocol fields
        self.our_acfc = False
        self.our_magic = 0
        self.peer_magic = 0
        # Keepalive.
        self._echo_deadline: float | None = None
        self._echo_outstanding = 0
        self._echo_enabled = config.echo_interval > 0
        self.echo_requests_sent = 0
        self.echo_replies_received = 0

    # ------------------------------------------------------------ driving

    @property
    def state(self) -> State:
        """The automaton's state."""
        return self.fsm.state

    @property
    def failure_reason(self) -> str | None:
        """Why the link finished (the automaton's failure_reason)."""
        return self.fsm.failure_reason

    def receive(self, payload: bytes, now: float) -> None:
        """An LCP packet from the peer."""
        self.fsm.receive(payload, now)

    def get_timer(self) -> float | None:
        """The earliest of the Restart timer and the echo timer."""
        deadlines = [t for t in (self.fsm.get_timer(), self._echo_deadline) if t is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Fire whichever of the Restart and echo timers is due."""
        self.fsm.handle_timer(now)
        if self._echo_deadline is not None and now >= self._echo_deadline:
            self._echo_tick(now)

    def close(self, now: float, reason: bytes = b"") -> None:
        """Terminate the link (Close event; `reason` is the Terminate-Request data)."""
        self.fsm.close(now, reason)

    def protocol_reject(self, protocol: int, packet: bytes, now: float) -> None:
        """Send a Protocol-Reject for a frame of an unsupported protocol (RFC 1661 5.7).

        Only in the Opened state; the rejected information is truncated to the peer's MRU.
        """
        if self.fsm.state != State.OPENED:
            return
        room = max(0, self.peer_mru - 6)  # Code/Id/Length + Rejected-Protocol
        data = protocol_reject_data(protocol, packet[:room])
        self._send(encode_cp(CPPacket(Code.PROTOCOL_REJECT, self.fsm.next_id(), data)))

    # ------------------------------------------------------------ FSMEvents (wrapped)

    def this_layer_up(self, fsm: NegotiationFSM) -> None:
        """Opened: start the keepalive, then tell the caller."""
        fsm.echo_magic = self.our_magic
        fsm.peer_mru = self.peer_mru
        self._echo_outstanding = 0
        if self._echo_enabled:
            self._echo_deadline = fsm.now + self.config.echo_interval
        self.user_events.this_layer_up(fsm)

    def this_layer_down(self, fsm: NegotiationFSM) -> None:
        """Leaving Opened: stop the keepalive, then tell the caller."""
        self._echo_deadline = None
        self.user_events.this_layer_down(fsm)

    def this_layer_started(self, fsm: NegotiationFSM) -> None:
        """Forwarded to the caller."""
        self.user_events.this_layer_started(fsm)

    def this_layer_finished(self, fsm: NegotiationFSM) -> None:
        """Forwarded to the caller."""
        self._echo_deadline = None
        self.user_events.this_layer_finished(fsm)

    # ------------------------------------------------------------ OptionNegotiator

    def request_options(self) -> list[Option]:
        """Our Configure-Request: the options we still want, in RFC 1661 type order."""
        opts: list[Option] = []
        if self._want_mru:
            opts.append(u16_option(LCPOption.MRU, self._want_mru))
        if self._want_accm is not None:
            opts.append(u32_option(LCPOption.ACCM, self._want_accm))
        if self._auth is not None:
            opts.append(Option(LCPOption.AUTH_PROTOCOL, self._auth))
        if self._want_magic:
            opts.append(u32_option(LCPOption.MAGIC_NUMBER, self._magic))
        if self._want_pfc:
            opts.append(Option(LCPOption.PFC))
        if self._want_acfc:
            opts.append(Option(LCPOption.ACFC))
        return opts

    def check_request(self, options: list[Option]) -> tuple[int, list[Option]]:
        """Judge the peer's Configure-Request and record what an Ack would agree to."""
        self.peer_mru = DEFAULT_MRU
        self.peer_accm = DEFAULT_ACCM
        self.auth_protocol_peer = None
        self.peer_magic = 0
        self.peer_pfc = self.peer_acfc = False
        rej: list[Option] = []
        nak: list[Option] = []
        for opt in options:
            t = opt.type
            if t == LCPOption.MRU:
                mru = option_u16(opt)
                if mru is None or mru < MIN_MRU:
                    nak.append(u16_option(LCPOption.MRU, MIN_MRU if mru else DEFAULT_MRU))
                else:
                    self.peer_mru = mru
            elif t == LCPOption.ACCM:
                accm = option_u32(opt)
                if accm is None:
                    nak.append(u32_option(LCPOption.ACCM, 0))
                else:
                    self.peer_accm = accm
            elif t == LCPOption.AUTH_PROTOCOL:
                if not self.config.accept_auth:
                    rej.append(opt)  # we authenticate to nobody
                elif opt.data in self.config.accept_auth:
                    self.auth_protocol_peer = opt.data
                else:
                    # RFC 1661 6.2 / 5.3: Nak with the protocol we would rather use.
                    nak.append(Option(LCPOption.AUTH_PROTOCOL, self.config.accept_auth[0]))
            elif t == LCPOption.MAGIC_NUMBER:
                self._check_magic(opt, nak)
            elif t in (LCPOption.PFC, LCPOption.ACFC):
                if opt.data:
                    rej.append(opt)  # boolean options: reject, never Nak (RFC 1661 5.3)
                elif t == LCPOption.PFC:
                    self.peer_pfc = True
                else:
                    self.peer_acfc = True
            else:
                rej.append(opt)  # Quality-Protocol, MRRU, Endpoint Discriminator, unknown
        if rej:
            return Code.CONFIGURE_REJECT, rej
        if nak:
            return Code.CONFIGURE_NAK, nak
        return Code.CONFIGURE_ACK, options

    def _check_magic(self, opt: Option, nak: list[Option]) -> None:
        magic = option_u32(opt)
        if magic is not None and magic != 0 and not (self._want_magic and magic == self._magic):
            self.peer_magic = magic
            self._loops = 0
            return
        if magic is not None and magic != 0:
            # RFC 1661 6.4: the peer's number equals ours: maybe a looped-back link.
            self._count_loop()
        # RFC 1661 6.4: a zero Magic-Number MUST be Nak'd; so must a collision.
        self._last_nak_magic = self._new_magic()
        nak.append(u32_option(LCPOption.MAGIC_NUMBER, self._last_nak_magic))

    def _count_loop(self) -> None:
        self._loops += 1
        if self._loops >= self.config.loopback_failures:
            raise NegotiationFailed("looped back")

    def ack_received(self, options: list[Option]) -> bool:
        """The peer acked our request: record what it agreed to."""
        if options != self.request_options():
            return False
        self.our_mru = self._want_mru or DEFAULT_MRU
        self.our_accm = DEFAULT_ACCM if self._want_accm is None else self._want_accm
        self.auth_protocol_ours = self._auth
        self.our_magic = self._magic if self._want_magic else 0
        self.our_pfc = self._want_pfc
        self.our_acfc = self._want_acfc
        return True

    def nak_received(self, options: list[Option]) -> None:
        """Adopt the peer's suggestions for the options we ask for."""
        auth_suggested: list[bytes] = []
        for opt in options:
            t = opt.type
            if t == LCPOption.MRU and self._want_mru:
                mru = option_u16(opt)
                if mru is not None and mru >= MIN_MRU:
                    self._want_mru = mru
            elif t == LCPOption.ACCM and self._want_accm is not None:
                accm = option_u32(opt)
                if accm is not None:
                    self._want_accm |= accm  # RFC 1662 7.1: a union of both maps
            elif t == LCPOption.AUTH_PROTOCOL and self._auth is not None:
                auth_suggested.append(opt.data)
            elif t == LCPOption.MAGIC_NUMBER and self._want_magic:
                magic = option_u32(opt)
                if magic is None or magic == 0 or magic == self._last_nak_magic:
                    # RFC 1661 6.4: our own Nak came back: likelier a loop; new number.
                    if magic is not None and magic != 0:
                        self._count_loop()
                    self._magic = self._new_magic()
                else:
                    self._magic = magic
        if auth_suggested:
            self._next_auth(auth_suggested)

    def _next_auth(self, suggested: list[bytes]) -> None:
        if self._auth is not None:
            self._auth_tried.append(self._auth)
        left = [a for a in self.config.auth if a not in self._auth_tried]
        if not left:
            raise NegotiationFailed("no common authentication protocol")
        # RFC 1661 6.2: next most desirable; prefer one the peer said it can do.
        self._auth = next((a for a in left if a in suggested), left[0])
        self.log.debug("LCP: peer Nak'd Auth-Protocol, now asking %s", self._auth.hex())

    def reject_received(self, options: list[Option]) -> None:
        """Stop asking for what the peer rejected; authentication cannot be dropped."""
        for opt in options:
            t = opt.type
            if t == LCPOption.MRU:
                self._want_mru = 0
            elif t == LCPOption.ACCM:
                self._want_accm = None
            elif t == LCPOption.AUTH_PROTOCOL:
                raise NegotiationFailed("peer refuses authentication")
            elif t == LCPOption.MAGIC_NUMBER:
                self._want_magic = False
            elif t == LCPOption.PFC:
                self._want_pfc = False
            elif t == LCPOption.ACFC:
                self._want_acfc = False

    # ------------------------------------------------------------ link maintenance

    def _rcv_protocol_reject(self, packet: CPPacket, now: float) -> None:
        # RFC 1661 5.7: silently discarded in any state other than Opened.
        if self.fsm.state != State.OPENED:
            self.fsm.drops["Protocol-Reject while not Opened"] += 1
            return
        protocol, _info = parse_protocol_reject(packet.data)
        if protocol == PPPProtocol.LCP:
            self.fsm.failure_reason = "peer rejected LCP"
            self.fsm.event(Event.RXJ_MINUS, now, packet)
            return
        self.log.info("LCP: peer rejected protocol 0x%04x", protocol)
        self.fsm.event(Event.RXJ_PLUS, now, packet)
        if self.on_protocol_rejected is not None:
            self.on_protocol_rejected(protocol)

    def _rcv_echo_request(self, packet: CPPacket, now: float) -> None:
        magic, _data = parse_echo(packet.data)
        if self.our_magic and magic == self.our_magic and self.fsm.state == State.OPENED:
            # RFC 1661 6.4: our own number coming back: the link may be looped.
            self.fsm.drops["Echo-Request with our Magic-Number"] += 1
            return
        self.fsm.event(Event.RXR, now, packet)  # ser in Opened, nothing elsewhere

    def _rcv_echo_reply(self, packet: CPPacket, now: float) -> None:
        magic, _data = parse_echo(packet.data)
        if self.fsm.state == State.OPENED:
            if self.our_magic and magic == self.our_magic:
                self.fsm.drops["Echo-Reply with our Magic-Number"] += 1
            else:
                self._echo_outstanding = 0
                self.echo_replies_received += 1
        self.fsm.event(Event.RXR, now, packet)

    def _rcv_discard_request(self, packet: CPPacket, now: float) -> None:
        parse_echo(packet.data)
        self.fsm.event(Event.RXR, now, packet)  # RFC 1661 5.9: silently discard

    def _code_rejected(self, code: int) -> None:
        if code == Code.ECHO_REQUEST:
            # RFC 1661 4.3 RXJ+: stop sending the rejected packet type.
            self._echo_enabled = False
            self._echo_deadline = None

    def _echo_tick(self, now: float) -> None:
        self._echo_deadline = None
        if self.fsm.state != State.OPENED or not self._echo_enabled:
            return
        if self._echo_outstanding >= self.config.echo_failure:
            self.log.info("LCP: %d Echo-Requests unanswered, closing the link",
                          self._echo_outstanding)
            self.fsm.failure_reason = "echo timeout"
            self.fsm.close(now, b"echo timeout")
            return
        ident = self.fsm.next_id()
        # RFC 1661 5.8: zero unless a Magic-Number was negotiated.
        self._send(encode_cp(CPPacket(Code.ECHO_REQUEST, ident, echo_data(self.our_magic))))
        self._echo_outstanding += 1
        self.echo_requests_sent += 1
        self._echo_deadline = now + self.config.echo_interval

    def _new_magic(self, avoid: int | None = None) -> int:
        """A random non-zero Magic-Number different from ours (RFC 1661 6.4)."""
        avoid = self._magic if avoid is None else avoid
        while True:
            magic = int.from_bytes(self.random_bytes(4), "big")
            if magic not in (0, avoid):
                return magic
