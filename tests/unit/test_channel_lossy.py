"""Two reliable channels over a simulated lossy, reordering, duplicating link.

Everything runs on a simulated clock that jumps to the next event (a datagram arriving or a
channel timer), so minutes of protocol time take milliseconds.
"""

from __future__ import annotations

import heapq
import random
import struct
from dataclasses import dataclass, field

import pytest

from pyl2tp.l2tp.channel import ChannelConfig, ReliableChannel

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

_HDR = struct.Struct("!HHHHHH")


@dataclass
class Link:
    """Datagrams in flight between two endpoints, with loss, duplication and jitter."""

    rng: random.Random
    loss: float = 0.0
    duplicate: float = 0.0
    jitter: float = 0.05
    late: float = 0.0  # chance of a long delay (arrives after the retransmission)
    cutoff: float | None = None  # from this time on every datagram is lost
    queue: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    counter: int = 0
    carried: int = 0

    def transmit(self, now: float, dst: int, data: bytes) -> None:
        if self.cutoff is not None and now >= self.cutoff:
            return
        if self.rng.random() < self.loss:
            return
        copies = 2 if self.rng.random() < self.duplicate else 1
        for _ in range(copies):
            delay = 0.005 + self.rng.random() * self.jitter
            if self.rng.random() < self.late:
                delay += 1.5
            self.counter += 1
            heapq.heappush(self.queue, (now + delay, self.counter, dst, data))
            self.carried += 1

    def next_time(self) -> float | None:
        return self.queue[0][0] if self.queue else None


@dataclass
class Side:
    """One endpoint: a channel, its application's outgoing backlog and what it delivered."""

    name: bytes
    channel: ReliableChannel[bytes]
    total: int
    queued_upto: int = 0
    delivered: list[bytes] = field(default_factory=list)
    sent_after_cutoff: int = 0
    failed_at: float | None = None

    def payload(self, i: int) -> bytes:
        return self.name + b"%06d" % i

    def expected(self) -> list[bytes]:
        return [self.payload(i) for i in range(self.total)]


def encode(payload: bytes) -> bytes:
    return _HDR.pack(0xC802, 12 + len(payload), 1, 0, 0, 0) + payload


def receive(side: Side, data: bytes, now: float) -> None:
    flags, length, tunnel, session, ns, nr = _HDR.unpack_from(data)
    assert flags == 0xC802 and length == len(data)
    item = data[12:] if length > 12 else None
    if item is None:
        assert tunnel == 1 and session == 0
    side.delivered += side.channel.receive(ns, nr, item, now)


def run(
    link: Link,
    config: ChannelConfig,
    total: int,
    rng: random.Random,
    max_steps: int = 500_000,
) -> tuple[Side, Side, float]:
    """Run both directions at once until both are done or no event is left."""
    sides = [
        Side(b"A", ReliableChannel(config, peer_window=config.receive_window), total),
        Side(b"B", ReliableChannel(config, peer_window=config.receive_window), total),
    ]
    for s in sides:
        s.channel.peer_tunnel_id = 1
    now = 0.0
    for _ in range(max_steps):
        for idx, s in enumerate(sides):
            ch = s.channel
            # The application keeps a small, random backlog so send() happens all along.
            want = rng.randint(1, 12)
            while s.queued_upto < total and ch.queued + ch.in_flight < want:
                ch.send(encode(s.payload(s.queued_upto)), now)
                s.queued_upto += 1
            for d in ch.datagrams_to_send(now):
                if link.cutoff is not None and now >= link.cutoff:
                    s.sent_after_cutoff += 1
                link.transmit(now, 1 - idx, d)
            if ch.failed and s.failed_at is None:
                s.failed_at = now
        if all(len(s.delivered) == total and s.channel.idle for s in sides):
            break
        timers = (link.next_time(), *(s.channel.get_timer() for s in sides))
        deadlines = [t for t in timers if t is not None]
        if not deadlines:
            break
        now = max(now, min(deadlines))
        while link.queue and link.queue[0][0] <= now:
            _, _, dst, data = heapq.heappop(link.queue)
            receive(sides[dst], data, now)
        for s in sides:
            timer = s.channel.get_timer()
            if timer is not None and timer <= now:
                s.channel.handle_timer(now)
    else:
        pytest.fail("simulation did not settle")
    a, b = sides
    return a, b, now


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lossy_link_exactly_once_in_order(seed: int) -> None:
    rng = random.Random(seed)
    link = Link(rng, loss=0.2, duplicate=0.1, jitter=0.08, late=0.02)
    config = ChannelConfig(receive_window=8, max_retries=50)
    a, b, now = run(link, config, 1000, rng)
    # Each side delivers everything the other sent, exactly once and in order.
    assert b.delivered == a.expected()
    assert a.delivered == b.expected()
    for s in (a, b):
        st = s.channel.stats
        assert not s.channel.failed and s.channel.idle
        assert st.delivered == 1000
        assert st.sent == 1000
        assert st.retransmitted > 0  # the loss was real
        assert st.duplicates > 0  # so were duplicates and late copies
        assert s.channel.get_timer() is None
    # Piggybacking did some of the acknowledging: fewer ZLBs than messages.
    assert a.channel.stats.zlb_sent + b.channel.stats.zlb_sent < 2000
    assert now > 0


@pytest.mark.parametrize("seed", [4, 5])
def test_total_loss_fails_cleanly(seed: int) -> None:
    rng = random.Random(seed)
    cutoff = 3.0
    link = Link(rng, jitter=0.05, cutoff=cutoff)
    config = ChannelConfig()  # defaults: 1 s initial, cap 8, 5 retries, window 8
    a, b, now = run(link, config, 1000, rng)
    for s in (a, b):
        ch = s.channel
        assert ch.failed
        assert s.failed_at is not None
        # The oldest unacknowledged message fails 1+2+4+8+8+8 = 31 s after it first left.
        assert cutoff + 23.0 <= s.failed_at <= cutoff + 31.0 + 1e-9
        # Nothing more comes out of a failed channel.
        assert ch.get_timer() is None
        assert ch.datagrams_to_send(now + 100.0) == []
        ch.handle_timer(now + 200.0)
        assert ch.datagrams_to_send(now + 200.0) == []
        # Bounded work after the cutoff: at most a window of messages, each retried.
        assert s.sent_after_cutoff <= config.receive_window * (config.max_retries + 1) + 2
        # What was delivered before the link died is an in-order prefix.
        assert 0 < len(s.delivered) < 1000
        other = b if s is a else a
        assert s.delivered == other.expected()[: len(s.delivered)]
    assert not link.queue


def test_lossy_link_default_config_completes_or_fails_cleanly() -> None:
    completions = 0
    seeds = range(10, 18)
    for seed in seeds:
        rng = random.Random(seed)
        link = Link(rng, loss=0.2, duplicate=0.05, jitter=0.05)
        a, b, _now = run(link, ChannelConfig(), 200, rng)
        for s, other in ((a, b), (b, a)):
            # Never a duplicate, never out of order, whatever happened.
            assert s.delivered == other.expected()[: len(s.delivered)]
            assert s.channel.stats.delivered == len(s.delivered)
        if a.delivered == b.expected() and b.delivered == a.expected():
            assert not a.channel.failed and not b.channel.failed
            assert a.channel.idle and b.channel.idle
            completions += 1
        else:
            # It stopped only because a channel gave up (RFC 2661 5.8), and quietly.
            assert a.channel.failed or b.channel.failed
            for s in (a, b):
                if s.channel.failed:
                    assert s.channel.get_timer() is None
    # With 5 retries, 20 % loss each way rarely exhausts a message's retries.
    assert completions >= len(seeds) - 2
