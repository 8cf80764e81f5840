"""Reliable delivery of L2TP control messages (RFC 2661 5.8 and Appendix A), sans-I/O.

Theory of operation
-------------------
The channel sits between the tunnel FSM and the socket. It never parses AVPs: it works on
whole encoded control messages whose 12-byte header has fixed offsets
(flags/ver, length, tunnel, session, Ns, Nr) and owns the Ns/Nr bytes ``[8:12]``, which it
rewrites on every transmission so that Nr is always current.

Sending: :meth:`ReliableChannel.send` gives a message the next Ns and queues it. A message
goes on the wire (from :meth:`ReliableChannel.datagrams_to_send`) once fewer than
``min(cwnd, peer window)`` messages are unacknowledged. Each transmitted message has its own
retransmission deadline; :meth:`ReliableChannel.handle_timer` doubles its timeout on each
retransmission up to ``retransmit_cap`` and fails the channel when a message has been
retransmitted ``max_retries`` times without an acknowledgement.

Receiving: the tunnel FSM parses a datagram and calls :meth:`ReliableChannel.receive` with
its Ns, Nr and the parsed message (``None`` for a ZLB). Nr is a cumulative acknowledgement;
Ns orders the message: in-order messages are delivered with any queued successors,
messages ahead within our receive window are queued, duplicates are dropped and
acknowledged at once, anything else is dropped and counted.

Acknowledging: every data message carries the current Nr. When Nr has advanced and no
data message goes out within ``ack_delay``, a ZLB carries it instead.

All sequence arithmetic is modulo 65536 (RFC 2661 5.8). Time comes in as ``now``; the
channel holds no clock, socket or randomness.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = [
    "DEFAULT_PEER_WINDOW",
    "HEADER_LEN",
    "MAX_WINDOW",
    "SEQ_MOD",
    "ZLB_FLAGS",
    "ChannelConfig",
    "ChannelStats",
    "ReliableChannel",
    "seq_add",
    "seq_diff",
    "seq_le",
    "seq_lt",
]

T = TypeVar("T")

# --- specification constants -------------------------------------------------------------
SEQ_MOD = 65536  # RFC 2661 5.8: Ns/Nr are free-running counters modulo 65536
_SEQ_HALF = 32768  # RFC 2661 5.8: "less than or equal" spans the preceding 32767 values
HEADER_LEN = 12  # control header with L and S bits: flags, length, tunnel, session, Ns, Nr
ZLB_FLAGS = 0xC802  # T=1 (control), L=1 (length), S=1 (sequence), Ver=2
DEFAULT_PEER_WINDOW = 4  # RFC 2661 4.4.3: no Receive Window Size AVP means a window of 4

# --- implementation constants ------------------------------------------------------------
# Sequence comparisons are only meaningful within half the sequence space, so no window
# (ours or the peer's) may exceed 32767 messages.
MAX_WINDOW = _SEQ_HALF - 1

_NS_OFFSET = 8
_NS_NR = struct.Struct("!HH")
_ZLB = struct.Struct("!HHHHHH")


def seq_add(a: int, n: int) -> int:
    """Return ``a + n`` modulo 65536."""
    return (a + n) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """Return how far ``a`` is ahead of ``b``, in 0..65535 (``(a - b) mod 65536``)."""
    return (a - b) % SEQ_MOD


def seq_lt(a: int, b: int) -> bool:
    """True if sequence number ``a`` comes before ``b`` (within half the space, RFC 2661 5.8)."""
    return 0 < (b - a) % SEQ_MOD < _SEQ_HALF


def seq_le(a: int, b: int) -> bool:
    """True if ``a`` equals ``b`` or comes before it (RFC 2661 5.8)."""
    return (b - a) % SEQ_MOD < _SEQ_HALF


@dataclass(slots=True)
class ChannelConfig:
    """Timers and limits of one control channel (``[l2tp]`` keys of the same names)."""

    receive_window: int = 8
    """Receive Window Size we advertise: how many messages the peer may have outstanding."""
    retransmit_initial: float = 1.0
    """First retransmission timeout, seconds (RFC 2661 5.8 recommends 1)."""
    retransmit_cap: float = 8.0
    """Cap on the doubling retransmission timeout, seconds (RFC 2661 5.8: at least 8)."""
    max_retries: int = 5
    """Retransmissions of one message before the channel fails (RFC 2661 5.8 recommends 5)."""
    ack_delay: float = 0.1
    """Wait for a data message to carry Nr before sending a ZLB ack, seconds."""

    def __post_init__(self) -> None:
        if not 1 <= self.receive_window <= MAX_WINDOW:
            raise ValueError(f"receive_window must be 1..{MAX_WINDOW}")
        if self.retransmit_initial <= 0:
            raise ValueError("retransmit_initial must be positive")
        if self.retransmit_cap < self.retransmit_initial:
            raise ValueError("retransmit_cap must be at least retransmit_initial")
        if self.max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if self.ack_delay < 0:
            raise ValueError("ack_delay must not be negative")


@dataclass(slots=True)
class ChannelStats:
    """Counters of one control channel."""

    sent: int = 0
    """Data messages transmitted for the first time."""
    retransmitted: int = 0
    """Retransmissions of data messages."""
    received: int = 0
    """Data (non-ZLB) messages received, whatever became of them."""
    delivered: int = 0
    """Messages handed to the upper layer."""
    duplicates: int = 0
    """Messages dropped because they were already received."""
    out_of_window: int = 0
    """Messages dropped because their Ns lay beyond our receive window."""
    zlb_sent: int = 0
    """ZLB acknowledgements sent."""
    zlb_received: int = 0
    """ZLB acknowledgements received."""


@dataclass(slots=True)
class _Outgoing:
    """One queued or unacknowledged data message."""

    ns: int
    data: bytearray
    timeout: float
    deadline: float = 0.0
    retries: int = 0
    due: bool = False  # retransmission fired, waiting for datagrams_to_send


class ReliableChannel(Generic[T]):
    """The reliable control-message transport of one tunnel (RFC 2661 5.8).

    Drive it with :meth:`send`, :meth:`receive` and :meth:`handle_timer`; after each of
    them call :meth:`datagrams_to_send` and re-arm a timer at :meth:`get_timer`.
    """

    def __init__(
        self,
        config: ChannelConfig,
        *,
        peer_window: int = DEFAULT_PEER_WINDOW,
        initial_ns: int = 0,
        initial_nr: int = 0,
    ) -> None:
        """Make a channel. ``initial_ns``/``initial_nr`` are for tests (RFC 2661 5.8: both 0)."""
        self._config = config
        self.peer_tunnel_id: int = 0
        """Tunnel id written into ZLB acks (the peer's Assigned Tunnel ID; 0 until known)."""
        self.stats = ChannelStats()
        self._peer_window = _clamp_window(peer_window)
        # RFC 2661 Appendix A: CWND starts at one packet, SSTHRESH at the advertised window.
        self._cwnd = 1.0
        self._ssthresh = float(self._peer_window)
        self._congested = False  # a retransmission timeout has set ssthresh
        self._next_ns = initial_ns % SEQ_MOD
        self._expected_nr = initial_nr % SEQ_MOD
        self._unacked: deque[_Outgoing] = deque()  # transmitted, oldest first
        self._queued: deque[_Outgoing] = deque()  # waiting for the send window
        self._reorder: dict[int, T] = {}  # Ns -> message received ahead of expected_nr
        self._ack_deadline: float | None = None
        self._now = 0.0  # latest clock value seen, for ack_now()
        self._failed = False

    # --- properties ----------------------------------------------------------------------

    @property
    def failed(self) -> bool:
        """A message went unacknowledged after ``max_retries`` retransmissions.

        RFC 2661 5.8: the tunnel and all its sessions must then be cleared. A failed channel
        sends nothing more and ignores input.
        """
        return self._failed

    @property
    def idle(self) -> bool:
        """Nothing unacknowledged, nothing queued, no acknowledgement owed."""
        return not self._unacked and not self._queued and self._ack_deadline is None

    @property
    def next_ns(self) -> int:
        """The Ns the next :meth:`send` will use."""
        return self._next_ns

    @property
    def expected_nr(self) -> int:
        """The Ns we expect next from the peer (our Nr)."""
        return self._expected_nr

    @property
    def peer_window(self) -> int:
        """The peer's receive window size in use."""
        return self._peer_window

    @property
    def cwnd(self) -> float:
        """Congestion window (RFC 2661 Appendix A)."""
        return self._cwnd

    @property
    def ssthresh(self) -> float:
        """Slow-start threshold (RFC 2661 Appendix A)."""
        return self._ssthresh

    @property
    def send_window(self) -> int:
        """How many messages may be unacknowledged now: ``min(cwnd, peer window)``."""
        return min(self._peer_window, int(self._cwnd))

    @property
    def in_flight(self) -> int:
        """Messages transmitted and not yet acknowledged."""
        return len(self._unacked)

    @property
    def queued(self) -> int:
        """Messages waiting for the send window."""
        return len(self._queued)

    # --- configuration -------------------------------------------------------------------

    def set_peer_window(self, size: int) -> None:
        """Use the peer's Receive Window Size AVP value.

        RFC 2661 5.8 calls 0 invalid and 4.4.3 makes an absent AVP mean 4; we treat 0 (or
        less) as absent rather than fail the tunnel here. Values above 32767 are clamped so
        that modulo-65536 comparisons stay sound.
        """
        self._peer_window = _clamp_window(size)
        if not self._congested:
            # RFC 2661 Appendix A: SSTHRESH starts at the advertised window.
            self._ssthresh = float(self._peer_window)
        self._cwnd = min(self._cwnd, float(self._peer_window))

    # --- sending -------------------------------------------------------------------------

    def send(self, message: bytes, now: float) -> None:
        """Queue one encoded control message (not a ZLB) for reliable delivery.

        It takes the next Ns and goes out from :meth:`datagrams_to_send` as soon as the send
        window allows. After failure the message is dropped: the tunnel is being cleared.
        """
        if len(message) <= HEADER_LEN:
            raise ValueError("a control message needs a 12-byte header and at least one AVP")
        self._now = max(self._now, now)
        if self._failed:
            return
        entry = _Outgoing(self._next_ns, bytearray(message), self._config.retransmit_initial)
        # RFC 2661 5.8: each message takes the next sequence number; a ZLB takes none.
        self._next_ns = seq_add(self._next_ns, 1)
        self._queued.append(entry)

    def ack_now(self) -> None:
        """Acknowledge on the next :meth:`datagrams_to_send` (a ZLB if no message carries Nr)."""
        self._schedule_ack(self._now)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        """Return due retransmissions, new messages the window allows, and a due ZLB ack."""
        self._now = max(self._now, now)
        if self._failed:
            return []
        out: list[bytes] = []
        for entry in self._unacked:
            if entry.due:
                # RFC 2661 5.8: a retransmission keeps its Ns but carries the current Nr.
                entry.due = False
                out.append(self._stamp(entry))
                self.stats.retransmitted += 1
        window = self.send_window
        while self._queued and len(self._unacked) < window:
            entry = self._queued.popleft()
            entry.deadline = now + entry.timeout
            self._unacked.append(entry)
            out.append(self._stamp(entry))
            self.stats.sent += 1
        if out:
            # RFC 2661 5.8: Nr piggybacked on a message is the acknowledgement.
            self._ack_deadline = None
        elif self._ack_deadline is not None and now >= self._ack_deadline:
            out.append(self._zlb())
            self._ack_deadline = None
            self.stats.zlb_sent += 1
        return out

    # --- receiving -----------------------------------------------------------------------

    def receive(self, ns: int, nr: int, item: T | None, now: float) -> list[T]:
        """Take one received control message's Ns and Nr; ``item`` is None for a ZLB.

        Returns the messages now deliverable, in order, each exactly once.
        """
        self._now = max(self._now, now)
        if self._failed:
            return []
        self._process_ack(nr)
        if item is None:
            # RFC 2661 5.8: a ZLB takes no sequence slot, so it never advances our Nr.
            self.stats.zlb_received += 1
            return []
        self.stats.received += 1
        ns %= SEQ_MOD
        ahead = seq_diff(ns, self._expected_nr)
        if ahead == 0:
            delivered = [item]
            self._expected_nr = seq_add(ns, 1)
            while self._reorder:
                nxt = self._reorder.pop(self._expected_nr, None)
                if nxt is None:
                    break
                delivered.append(nxt)
                self._expected_nr = seq_add(self._expected_nr, 1)
            self.stats.delivered += len(delivered)
            self._schedule_ack(now + self._config.ack_delay)
            return delivered
        if ahead >= _SEQ_HALF:
            # RFC 2661 5.8: Ns at or before the last received one is a duplicate; it is
            # dropped but MUST be acknowledged (our earlier ack may have been lost).
            self.stats.duplicates += 1
            self._schedule_ack(now)
            return []
        if ahead < self._config.receive_window:
            # RFC 2661 5.8: out-of-order messages may be queued for in-order delivery.
            if ns in self._reorder:
                self.stats.duplicates += 1
            else:
                self._reorder[ns] = item
            self._schedule_ack(now + self._config.ack_delay)
            return []
        self.stats.out_of_window += 1
        return []

    # --- timers --------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """Earliest deadline (retransmission or delayed ack); None if nothing is pending."""
        if self._failed:
            return None
        deadline = self._ack_deadline
        for entry in self._unacked:
            if deadline is None or entry.deadline < deadline:
                deadline = entry.deadline
        return deadline

    def handle_timer(self, now: float) -> None:
        """Fire due retransmissions (exponential backoff, capped); due acks go out next send."""
        self._now = max(self._now, now)
        if self._failed:
            return
        config = self._config
        timed_out = False
        for entry in self._unacked:
            if entry.due or entry.deadline > now:
                continue
            if entry.retries >= config.max_retries:
                # RFC 2661 5.8: no response after several retransmissions: clear the tunnel.
                self._failed = True
                self._ack_deadline = None
                return
            # RFC 2661 5.8: each retransmission backs off exponentially, up to a cap.
            entry.retries += 1
            entry.timeout = min(entry.timeout * 2, config.retransmit_cap)
            entry.deadline = now + entry.timeout
            entry.due = True
            timed_out = True
        if timed_out:
            # RFC 2661 Appendix A: on retransmission, half of CWND goes to SSTHRESH and
            # CWND restarts at one (slow start again).
            self._ssthresh = max(self._cwnd / 2, 1.0)
            self._cwnd = 1.0
            self._congested = True

    # --- internals -----------------------------------------------------------------------

    def _process_ack(self, nr: int) -> None:
        """Free the messages a cumulative Nr acknowledges and open the congestion window."""
        if not self._unacked:
            return
        # RFC 2661 5.8: Nr is the next Ns the peer expects, so it acknowledges every Ns
        # before it. An Nr that acknowledges nothing new, or something never sent, is ignored.
        acked = seq_diff(nr, self._unacked[0].ns)
        if acked == 0 or acked > len(self._unacked):
            return
        for _ in range(acked):
            self._unacked.popleft()
            # RFC 2661 Appendix A: +1 per ack in slow start, +1/CWND in congestion
            # avoidance; CWND never exceeds the advertised window. We count each message
            # a cumulative Nr acknowledges as one ack.
            if self._cwnd < self._ssthresh:
                self._cwnd += 1.0
            else:
                self._cwnd += 1.0 / self._cwnd
            self._cwnd = min(self._cwnd, float(self._peer_window))

    def _schedule_ack(self, deadline: float) -> None:
        if self._ack_deadline is None or deadline < self._ack_deadline:
            self._ack_deadline = deadline

    def _stamp(self, entry: _Outgoing) -> bytes:
        _NS_NR.pack_into(entry.data, _NS_OFFSET, entry.ns, self._expected_nr)
        return bytes(entry.data)

    def _zlb(self) -> bytes:
        # RFC 2661 5.8: a ZLB carries the next Ns to be sent without consuming it (App. B.2).
        ns = self._queued[0].ns if self._queued else self._next_ns
        return _ZLB.pack(ZLB_FLAGS, HEADER_LEN, self.peer_tunnel_id, 0, ns, self._expected_nr)


def _clamp_window(size: int) -> int:
    if size <= 0:
        return DEFAULT_PEER_WINDOW
    return min(size, MAX_WINDOW)
