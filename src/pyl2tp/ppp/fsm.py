"""The PPP option-negotiation automaton (RFC 1661 4), shared by LCP, IPCP, IPv6CP and CCP.

Theory of operation
-------------------
`TRANSITIONS` is RFC 1661 4.1's state transition table: (state, event) -> (actions, new
state). A missing cell is the RFC's "-" (illegal event: logged, counted, no transition).
`NegotiationFSM` turns inputs into events and runs the table:

* administrative and lower-layer inputs: `up`, `down`, `open`, `close` (Up, Down, Open,
  Close events);
* the Restart timer: `get_timer()` / `handle_timer(now)` (TO+ while the Restart counter is
  above zero, TO- otherwise);
* packets: `receive(payload, now)` decodes Code/Identifier/Length/Data and classifies it
  (RCR+/RCR- through the protocol's `OptionNegotiator`, RCA, RCN, RTR, RTA, RXJ+/RXJ-; codes
  in `extra_codes` go to the protocol, e.g. LCP's Echo-Request; anything else is RUC).

Actions that send packets do so through `send(payload)`; the caller prepends the PPP
Protocol field. The layer actions (tlu, tld, tls, tlf) call the `FSMEvents` object after the
new state is set, so a callback sees the automaton in its new state. Inputs that arrive
while an event is being processed (a callback closing the layer, a synchronous in-memory
peer answering) are queued and processed in order afterwards.

Choices the RFC leaves open: a new Identifier for every Configure-Request and
Terminate-Request (RFC 1661 5.1 allows reuse only for retransmissions); once one valid
reply to a Configure-Request has been processed, further replies with its Identifier are
out of sequence and discarded (RFC 1661 4.3 RCA/RCN), so a duplicated Configure-Ack cannot
renegotiate an open link; the Open event never restarts an open link (the "r" option is not
taken); the passive "p" option of TO- is `FSMConfig.passive`.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from pyl2tp.errors import ParseError
from pyl2tp.wire.ppp import (
    Code,
    CPPacket,
    Option,
    decode_cp,
    decode_options,
    echo_data,
    encode_cp,
    encode_options,
)

__all__ = [
    "TIMER_STATES",
    "TRANSITIONS",
    "Action",
    "Event",
    "FSMConfig",
    "FSMEvents",
    "NegotiationFSM",
    "NegotiationFailed",
    "OptionNegotiator",
    "State",
]

log = logging.getLogger("pyl2tp.ppp")


class State(IntEnum):
    """Automaton states (RFC 1661 4.2)."""

    INITIAL = 0
    STARTING = 1
    CLOSED = 2
    STOPPED = 3
    CLOSING = 4
    STOPPING = 5
    REQ_SENT = 6
    ACK_RCVD = 7
    ACK_SENT = 8
    OPENED = 9


class Event(IntEnum):
    """Automaton events (RFC 1661 4.3)."""

    UP = 0
    DOWN = 1
    OPEN = 2
    CLOSE = 3
    TO_PLUS = 4
    TO_MINUS = 5
    RCR_PLUS = 6
    RCR_MINUS = 7
    RCA = 8
    RCN = 9
    RTR = 10
    RTA = 11
    RUC = 12
    RXJ_PLUS = 13
    RXJ_MINUS = 14
    RXR = 15


class Action(IntEnum):
    """Automaton actions (RFC 1661 4.4)."""

    TLU = 0  # This-Layer-Up
    TLD = 1  # This-Layer-Down
    TLS = 2  # This-Layer-Started
    TLF = 3  # This-Layer-Finished
    IRC = 4  # Initialize-Restart-Count
    ZRC = 5  # Zero-Restart-Count
    SCR = 6  # Send-Configure-Request
    SCA = 7  # Send-Configure-Ack
    SCN = 8  # Send-Configure-Nak (or -Reject)
    STR = 9  # Send-Terminate-Request
    STA = 10  # Send-Terminate-Ack
    SCJ = 11  # Send-Code-Reject
    SER = 12  # Send-Echo-Reply


# RFC 1661 4.1, as printed there: states across (0 Initial ... 9 Opened), events down;
# "-" is an illegal event, otherwise "actions/new-state"; column 9 (Opened) continues on
# the line below each row. Footnotes: [p] passive option
# (FSMConfig.passive), [r] restart option (not taken), [x] crossed connection.
_RFC1661_TABLE = """
      0     1          2          3              4      5      6          7          8
      9
Up    2     irc,scr/6  -          -              -      -      -          -          -
      -
Down  -     -          0          tls/1          0      1      1          1          1
      tld/1
Open  tls/1 1          irc,scr/6  3              5      5      6          7          8
      9
Close 0     tlf/0      2          2              4      4      irc,str/4  irc,str/4  irc,str/4
      tld,irc,str/4
TO+   -     -          -          -              str/4  str/5  scr/6      scr/6      scr/8
      -
TO-   -     -          -          -              tlf/2  tlf/3  tlf/3      tlf/3      tlf/3
      -
RCR+  -     -          sta/2      irc,scr,sca/8  4      5      sca/8      sca,tlu/9  sca/8
      tld,scr,sca/8
RCR-  -     -          sta/2      irc,scr,scn/6  4      5      scn/6      scn/7      scn/6
      tld,scr,scn/6
RCA   -     -          sta/2      sta/3          4      5      irc/7      scr/6      irc,tlu/9
      tld,scr/6
RCN   -     -          sta/2      sta/3          4      5      irc,scr/6  scr/6      irc,scr/8
      tld,scr/6
RTR   -     -          sta/2      sta/3          sta/4  sta/5  sta/6      sta/6      sta/6
      tld,zrc,sta/5
RTA   -     -          2          3              tlf/2  tlf/3  6          6          8
      tld,scr/6
RUC   -     -          scj/2      scj/3          scj/4  scj/5  scj/6      scj/7      scj/8
      scj/9
RXJ+  -     -          2          3              4      5      6          6          8
      9
RXJ-  -     -          tlf/2      tlf/3          tlf/2  tlf/3  tlf/3      tlf/3      tlf/3
      tld,irc,str/5
RXR   -     -          2          3              4      5      6          7          8
      ser/9
"""
_EVENT_NAMES = {"Up": Event.UP, "Down": Event.DOWN, "Open": Event.OPEN, "Close": Event.CLOSE,
                "TO+": Event.TO_PLUS, "TO-": Event.TO_MINUS, "RCR+": Event.RCR_PLUS,
                "RCR-": Event.RCR_MINUS, "RCA": Event.RCA, "RCN": Event.RCN, "RTR": Event.RTR,
                "RTA": Event.RTA, "RUC": Event.RUC, "RXJ+": Event.RXJ_PLUS,
                "RXJ-": Event.RXJ_MINUS, "RXR": Event.RXR}


def _parse_table(text: str) -> dict[tuple[State, Event], tuple[tuple[Action, ...], State]]:
    """{(state, event): (actions, new state)} from the table text; "-" cells are left out."""
    words = text.split()[10:]  # after the state-number header
    table: dict[tuple[State, Event], tuple[tuple[Action, ...], State]] = {}
    for i in range(0, len(words), 11):
        event = _EVENT_NAMES[words[i]]
        for state, cell in zip(State, words[i + 1:i + 11], strict=True):
            if cell == "-":
                continue
            spec, _, new = cell.rpartition("/")
            actions = tuple(Action[name.upper()] for name in spec.split(",") if name)
            table[(state, event)] = (actions, State(int(new)))
    return table


TRANSITIONS = _parse_table(_RFC1661_TABLE)

# RFC 1661 4.1: the Restart timer runs exactly in the states that have TO events.
TIMER_STATES = frozenset(
    {State.CLOSING, State.STOPPING, State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT})
# States in which a Configure-Ack/Nak/Reject answers our outstanding Configure-Request.
_NEGOTIATING = frozenset({State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT, State.OPENED})
# States in which a Configure-Request gets an answer that depends on its options.
_ANSWERING = frozenset({State.STOPPED, *_NEGOTIATING})
# RFC 1661 4.3 RXJ-: a Code-Reject of a code the automaton needs is catastrophic.
_FUNDAMENTAL_CODES = frozenset(range(Code.CONFIGURE_REQUEST, Code.CODE_REJECT + 1))


@dataclass(slots=True)
class FSMConfig:
    """Restart timer and counters (RFC 1661 4.6; the defaults are the RFC's)."""

    restart_timer: float = 3.0
    max_configure: int = 10
    max_failure: int = 5
    max_terminate: int = 2
    passive: bool = False  # RFC 1661 4.2 Stopped, option [p]: no tlf on TO- while negotiating


class NegotiationFailed(Exception):
    """Raised by a negotiator to give up: the automaton takes a Close event with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OptionNegotiator(Protocol):
    """What each protocol (LCP, IPCP, IPv6CP) provides to the automaton.

    Any method may raise NegotiationFailed to abandon the negotiation.
    """

    def request_options(self) -> list[Option]:
        """Our Configure-Request contents now."""
        ...

    def check_request(self, options: list[Option]) -> tuple[int, list[Option]]:
        """Judge the peer's Configure-Request: (Code.CONFIGURE_ACK|NAK|REJECT, reply options).

        RFC 1661 5.2-5.4: any reject wins, then nak, else ack (echoing the options).
        """
        ...

    def ack_received(self, options: list[Option]) -> bool:
        """The peer acked our request; False if it does not match what we sent."""
        ...

    def nak_received(self, options: list[Option]) -> None:
        """Adapt our next request to the peer's suggestions."""
        ...

    def reject_received(self, options: list[Option]) -> None:
        """Stop asking for these options."""
        ...


class FSMEvents(Protocol):
    """The layer actions of RFC 1661 4.4: tlu, tld, tls, tlf."""

    def this_layer_up(self, fsm: NegotiationFSM) -> None: ...

    def this_layer_down(self, fsm: NegotiationFSM) -> None: ...

    def this_layer_started(self, fsm: NegotiationFSM) -> None: ...

    def this_layer_finished(self, fsm: NegotiationFSM) -> None: ...


_LAYER_ACTIONS = frozenset({Action.TLU, Action.TLD, Action.TLS, Action.TLF})
_NEGATIVE_REPLIES = (Code.CONFIGURE_NAK, Code.CONFIGURE_REJECT)


class NegotiationFSM:
    """One RFC 1661 automaton instance, sans-I/O: packets, events and a clock in, packets out."""

    def __init__(self, name: str, protocol: int, negotiator: OptionNegotiator,
                 events: FSMEvents, send: Callable[[bytes], None], config: FSMConfig, *,
                 random_id: Callable[[], int] | None = None,
                 logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
                 ) -> None:
        self.name = name
        self.protocol = protocol
        self.negotiator = negotiator
        self.events = events
        self.send = send
        self.config = config
        self.log = logger if logger is not None else log
        self.state = State.INITIAL
        self.restart_count = 0
        self.failure_reason: str | None = None
        self.extra_codes: dict[int, Callable[[CPPacket, float], None]] = {}
        self.on_code_rejected: Callable[[int], None] | None = None
        self.echo_magic = 0  # Magic-Number for Echo-Reply (LCP sets it once negotiated)
        self.peer_mru = 1500  # Code-Reject truncation (RFC 1661 5.6)
        self.peer_terminate_data = b""
        self.now = 0.0  # the clock value of the input being processed
        self.drops: Counter[str] = Counter()
        self._id = (random_id() - 1) & 0xFF if random_id is not None else 0
        self._deadline: float | None = None
        self._req_id: int | None = None
        self._req_data = b""
        self._req_answered = True
        self._term_data = b""
        self._naks_sent = 0
        self._packet: CPPacket | None = None
        self._reply: tuple[int, list[Option]] | None = None
        self._queue: deque[Callable[[], None]] = deque()
        self._busy = False

    def __repr__(self) -> str:
        return f"<NegotiationFSM {self.name} {self.state.name}>"

    # ------------------------------------------------------------ inputs

    def up(self, now: float) -> None:
        """The lower layer is ready (Up event)."""
        self._submit(lambda: self._event(Event.UP, now))

    def down(self, now: float) -> None:
        """The lower layer is gone (Down event)."""
        self._submit(lambda: self._event(Event.DOWN, now))

    def open(self, now: float) -> None:
        """Administrative Open."""
        self._submit(lambda: self._open(now))

    def close(self, now: float, reason: bytes = b"") -> None:
        """Administrative Close; `reason` goes into the Terminate-Request data."""
        self._submit(lambda: self._close(now, reason))

    def receive(self, payload: bytes, now: float) -> None:
        """A packet of this protocol (the PPP Information field). Never raises ParseError."""
        self._submit(lambda: self._receive(payload, now))

    def get_timer(self) -> float | None:
        """When handle_timer must be called next (the Restart timer), or None."""
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """Fire the Restart timer if it is due: TO+ or TO-."""
        self._submit(lambda: self._timeout(now))

    def protocol_rejected(self, now: float) -> None:
        """LCP received a Protocol-Reject naming this protocol: RXJ- (RFC 1661 5.7)."""
        self._submit(lambda: self._rxj_minus(now, "protocol rejected by peer"))

    def event(self, event: Event, now: float, packet: CPPacket | None = None) -> None:
        """Run one RFC 1661 event directly (for protocol extensions and tests)."""
        self._submit(lambda: self._event(event, now, packet))

    def next_id(self) -> int:
        """A fresh Identifier for a packet this protocol originates."""
        self._id = (self._id + 1) & 0xFF
        return self._id

    # ------------------------------------------------------------ input processing

    def _submit(self, job: Callable[[], None]) -> None:
        self._queue.append(job)
        if self._busy:
            return  # re-entrant input: processed once the current one is finished
        self._busy = True
        try:
            while self._queue:
                self._queue.popleft()()
        except BaseException:
            self._queue.clear()
            raise
        finally:
            self._busy = False

    def _open(self, now: float) -> None:
        if self.state in (State.INITIAL, State.CLOSED):
            self.failure_reason = None  # a fresh start
            self._naks_sent = 0
        self._event(Event.OPEN, now)

    def _close(self, now: float, reason: bytes) -> None:
        self._term_data = reason
        if self.failure_reason is None and self.state not in (State.INITIAL, State.CLOSED):
            self.failure_reason = reason.decode("utf-8", "replace") or "closed"
        self._event(Event.CLOSE, now)

    def _fail(self, reason: str, now: float) -> None:
        self.log.info("%s: %s", self.name, reason)
        self.failure_reason = reason
        self._term_data = reason.encode()
        self._event(Event.CLOSE, now)

    def _timeout(self, now: float) -> None:
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        if self.restart_count > 0:
            self._event(Event.TO_PLUS, now)
            return
        if self.state in (State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT):
            self.failure_reason = self.failure_reason or "max-configure exceeded: no answer"
        self._event(Event.TO_MINUS, now)

    def _rxj_minus(self, now: float, reason: str) -> None:
        if self.state not in (State.INITIAL, State.STARTING):
            self.failure_reason = reason
        self._event(Event.RXJ_MINUS, now)

    def _drop(self, reason: str, packet: CPPacket | None = None) -> None:
        self.drops[reason] += 1
        self.log.debug("%s: dropped %s (%s) in %s", self.name,
                       _code_name(packet.code) if packet else "packet", reason, self.state.name)

    def _receive(self, payload: bytes, now: float) -> None:
        try:
            packet = decode_cp(payload)
        except ParseError as exc:
            self._drop(f"malformed: {exc.what}")
            return
        code = packet.code
        try:
            if code == Code.CONFIGURE_REQUEST:
                self._rcv_configure_request(packet, now)
            elif code == Code.CONFIGURE_ACK:
                self._rcv_configure_ack(packet, now)
            elif code in _NEGATIVE_REPLIES:
                self._rcv_configure_nak_rej(packet, now)
            elif code == Code.TERMINATE_REQUEST:
                if self.state in _NEGOTIATING and self.failure_reason is None:
                    self.failure_reason = "peer terminated"
                self.peer_terminate_data = packet.data
                self._event(Event.RTR, now, packet)
            elif code == Code.TERMINATE_ACK:
                self._event(Event.RTA, now, packet)
            elif code == Code.CODE_REJECT:
                self._rcv_code_reject(packet, now)
            elif code in self.extra_codes:
                self.extra_codes[code](packet, now)
            else:
                self._event(Event.RUC, now, packet)
        except ParseError as exc:
            self._drop(f"malformed: {exc.what}", packet)
        except NegotiationFailed as exc:
            self._fail(exc.reason, now)

    def _rcv_configure_request(self, packet: CPPacket, now: float) -> None:
        options = decode_options(packet.data)  # RFC 1661 6: overrun -> silently discard
        if self.state not in _ANSWERING:
            # Closed/Closing/Stopping answer every Configure-Request alike (RCR+ == RCR-).
            self._event(Event.RCR_PLUS, now, packet)
            return
        code, reply = self.negotiator.check_request(options)
        if code == Code.CONFIGURE_NAK and self._naks_sent >= self.config.max_failure:
            code, reply = _nak_to_reject(options, reply)
        self._reply = (code, reply)
        event = Event.RCR_PLUS if code == Code.CONFIGURE_ACK else Event.RCR_MINUS
        self._event(event, now, packet)

    def _rcv_configure_ack(self, packet: CPPacket, now: float) -> None:
        if self.state in _NEGOTIATING:
            # RFC 1661 5.2: Identifier and options must match our last Configure-Request.
            if packet.identifier != self._req_id or self._req_answered:
                self._drop("Configure-Ack out of sequence", packet)
                return
            if packet.data != self._req_data:
                self._drop("Configure-Ack does not match our request", packet)
                return
            if not self.negotiator.ack_received(decode_options(packet.data)):
                self._drop("Configure-Ack refused by the negotiator", packet)
                return
            self._req_answered = True
        self._event(Event.RCA, now, packet)

    def _rcv_configure_nak_rej(self, packet: CPPacket, now: float) -> None:
        if self.state in _NEGOTIATING:
            if packet.identifier != self._req_id or self._req_answered:
                self._drop(f"{_code_name(packet.code)} out of sequence", packet)
                return
            options = decode_options(packet.data)
            if packet.code == Code.CONFIGURE_REJECT:
                # RFC 1661 5.4: a subset of our request, neither reordered nor modified.
                if not _is_subsequence(options, decode_options(self._req_data)):
                    self._drop("Configure-Reject is not a subset of our request", packet)
                    return
                self._req_answered = True
                self.negotiator.reject_received(options)
            else:
                self._req_answered = True
                self.negotiator.nak_received(options)
        self._event(Event.RCN, now, packet)

    def _rcv_code_reject(self, packet: CPPacket, now: float) -> None:
        if not packet.data:
            self._drop("empty Code-Reject", packet)
            return
        rejected = packet.data[0]
        if self.on_code_rejected is not None:
            self.on_code_rejected(rejected)
        if rejected in _FUNDAMENTAL_CODES:
            self._rxj_minus(now, f"peer rejected code {_code_name(rejected)}")
        else:
            self._event(Event.RXJ_PLUS, now, packet)

    # ------------------------------------------------------------ the table

    def _event(self, event: Event, now: float, packet: CPPacket | None = None) -> None:
        self.now = now
        old = self.state
        cell = TRANSITIONS.get((old, event))
        if cell is None:
            # RFC 1661 4.4 Illegal-Event: log, no transition, no reset.
            self.drops[f"illegal {event.name} in {old.name}"] += 1
            self.log.debug("%s: illegal event %s in %s", self.name, event.name, old.name)
            return
        actions, new = cell
        if event == Event.TO_MINUS and self.config.passive and old in _NEGOTIATING:
            actions = ()  # [p]: wait passively in Stopped for the peer
        self._packet = packet
        for action in actions:
            if action not in _LAYER_ACTIONS:
                self._perform(action, actions, now)
        self._packet = None
        self._reply = None
        if new != old:
            self.log.debug("%s: %s -> %s (%s)", self.name, old.name, new.name, event.name)
        self.state = new
        if new not in TIMER_STATES:
            self._deadline = None  # RFC 1661 4.1: stopped on leaving the timer states
        for action in actions:
            if action in _LAYER_ACTIONS:
                self._layer_action(action)

    def _perform(self, action: Action, actions: tuple[Action, ...], now: float) -> None:
        packet = self._packet
        if action == Action.IRC:
            # RFC 1661 4.4: Max-Terminate before a Terminate-Request, else Max-Configure.
            term = Action.STR in actions
            self.restart_count = self.config.max_terminate if term else self.config.max_configure
        elif action == Action.ZRC:
            self.restart_count = 0
            self._deadline = now + self.config.restart_timer
        elif action == Action.SCR:
            self._send_configure_request(now)
        elif action == Action.STR:
            self._send(CPPacket(Code.TERMINATE_REQUEST, self.next_id(), self._term_data))
            self.restart_count -= 1
            self._deadline = now + self.config.restart_timer
        elif action == Action.STA:
            ident = packet.identifier if packet is not None else self.next_id()
            self._send(CPPacket(Code.TERMINATE_ACK, ident, b""))
        elif packet is None:
            # sca/scn/scj/ser answer a packet; an event injected without one sends nothing.
            self.log.debug("%s: %s without a packet", self.name, action.name)
        elif action == Action.SCA:
            # RFC 1661 5.2: the acked options are not reordered or modified in any way.
            self._send(CPPacket(Code.CONFIGURE_ACK, packet.identifier, packet.data))
            self._naks_sent = 0
        elif action == Action.SCN:
            if self._reply is not None:
                code, reply = self._reply
                if code == Code.CONFIGURE_NAK:
                    self._naks_sent += 1
                self._send(CPPacket(code, packet.identifier, encode_options(reply)))
        elif action == Action.SCJ:
            # RFC 1661 5.6: a copy of the rejected packet, truncated to the peer's MRU.
            rejected = encode_cp(packet)[:max(0, self.peer_mru - 4)]
            self._send(CPPacket(Code.CODE_REJECT, self.next_id(), rejected))
        elif action == Action.SER and packet.code == Code.ECHO_REQUEST:
            # RFC 1661 4.3 RXR: only an Echo-Request is answered (not Echo-Reply, Discard).
            # RFC 1661 5.8: same Identifier, our Magic-Number, the request's data.
            self._send(CPPacket(Code.ECHO_REPLY, packet.identifier,
                                echo_data(self.echo_magic, packet.data[4:])))

    def _layer_action(self, action: Action) -> None:
        if action == Action.TLU:
            self.failure_reason = None
            self.events.this_layer_up(self)
        elif action == Action.TLD:
            self.events.this_layer_down(self)
        elif action == Action.TLS:
            self.events.this_layer_started(self)
        else:
            self.events.this_layer_finished(self)

    def _send_configure_request(self, now: float) -> None:
        data = encode_options(self.negotiator.request_options())
        # RFC 1661 5.1: a new Identifier whenever the options change or a reply came.
        self._req_id = self.next_id()
        self._req_data = data
        self._req_answered = False
        self._send(CPPacket(Code.CONFIGURE_REQUEST, self._req_id, data))
        self.restart_count -= 1
        self._deadline = now + self.config.restart_timer

    def _send(self, packet: CPPacket) -> None:
        self.send(encode_cp(packet))


def _code_name(code: int) -> str:
    try:
        return Code(code).name
    except ValueError:
        return f"code {code}"


def _is_subsequence(sub: list[Option], full: list[Option]) -> bool:
    it = iter(full)
    return all(any(opt == candidate for candidate in it) for opt in sub)


def _nak_to_reject(request: list[Option], nak: list[Option]) -> tuple[int, list[Option]]:
    """RFC 1661 4.6 Max-Failure: Naks become Rejects and appended options are dropped."""
    naked = {opt.type for opt in nak}
    rejected = [opt for opt in request if opt.type in naked]
    if rejected:
        return Code.CONFIGURE_REJECT, rejected
    return Code.CONFIGURE_ACK, list(request)
