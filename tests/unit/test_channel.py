"""Unit tests for the reliable control channel (RFC 2661 5.8, Appendix A)."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyl2tp.l2tp.channel import (
    MAX_WINDOW,
    ChannelConfig,
    ReliableChannel,
    seq_add,
    seq_diff,
    seq_le,
    seq_lt,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

_HDR = struct.Struct("!HHHHHH")
Channel = ReliableChannel[bytes]


def msg(payload: bytes, tunnel: int = 7) -> bytes:
    """An encoded control message with zero Ns/Nr (the channel fills them in)."""
    return _HDR.pack(0xC802, 12 + len(payload), tunnel, 0, 0, 0) + payload


def split(datagram: bytes) -> tuple[int, int, bytes | None]:
    """(Ns, Nr, payload or None for a ZLB) of one datagram."""
    flags, length, _tid, _sid, ns, nr = _HDR.unpack_from(datagram)
    assert flags == 0xC802
    assert length == len(datagram)
    return ns, nr, (datagram[12:] if length > 12 else None)


def feed(channel: Channel, datagram: bytes, now: float) -> list[bytes]:
    ns, nr, item = split(datagram)
    return channel.receive(ns, nr, item, now)


def make(**kw: float) -> Channel:
    peer_window = int(kw.pop("peer_window", 4))
    return ReliableChannel(ChannelConfig(**kw), peer_window=peer_window)  # type: ignore[arg-type]


# --- sequence arithmetic ---------------------------------------------------------------


def test_seq_helpers_rfc_example() -> None:
    # RFC 2661 5.8: with last received 15, 0..15 and 32784..65535 are "less or equal".
    assert all(seq_le(x, 15) for x in range(16))
    assert all(seq_le(x, 15) for x in range(32784, 65536))
    assert not any(seq_le(x, 15) for x in range(16, 32784))
    assert seq_lt(65535, 0)
    assert not seq_lt(0, 65535)
    assert not seq_lt(5, 5)
    assert seq_le(5, 5)
    assert seq_add(65535, 1) == 0
    assert seq_diff(1, 65535) == 2


@given(st.integers(0, 65535), st.integers(1, 32767))
def test_seq_lt_property(a: int, n: int) -> None:
    b = seq_add(a, n)
    assert seq_lt(a, b)
    assert not seq_lt(b, a)
    assert seq_diff(b, a) == n


# --- delivery --------------------------------------------------------------------------


def test_in_order_delivery_and_ack() -> None:
    a, b = make(), make()
    out: list[bytes] = []
    for i in range(3):
        a.send(msg(b"m%d" % i), 0.0)
    now = 0.0
    for _ in range(10):
        for d in a.datagrams_to_send(now):
            out += feed(b, d, now)
        for d in b.datagrams_to_send(now + 0.1):
            feed(a, d, now + 0.1)
        now += 0.1
    assert out == [b"m0", b"m1", b"m2"]
    assert a.idle and b.idle
    assert a.next_ns == 3 and b.expected_nr == 3
    assert b.stats.delivered == 3 and b.stats.received == 3
    assert a.stats.sent == 3 and a.stats.retransmitted == 0
    assert a.stats.zlb_received == b.stats.zlb_sent > 0


def test_duplicate_is_dropped_and_acked_at_once() -> None:
    a, b = make(), make()
    a.send(msg(b"x"), 0.0)
    (d,) = a.datagrams_to_send(0.0)
    assert feed(b, d, 0.0) == [b"x"]
    assert b.datagrams_to_send(0.0) == []  # delayed ack not yet due
    assert b.get_timer() == pytest.approx(0.1)
    # RFC 2661 5.8: a duplicate MUST be acknowledged; it is not delivered again.
    assert feed(b, d, 0.01) == []
    assert b.stats.duplicates == 1
    (zlb,) = b.datagrams_to_send(0.01)
    assert split(zlb) == (0, 1, None)
    assert b.stats.zlb_sent == 1
    assert b.datagrams_to_send(0.5) == []  # the ack is not repeated
    assert b.idle


def test_out_of_order_queued_then_delivered_in_order() -> None:
    b = make(receive_window=4)
    assert b.receive(2, 0, b"two", 0.0) == []
    assert b.receive(1, 0, b"one", 0.0) == []
    assert b.receive(2, 0, b"two", 0.0) == []  # queued duplicate
    assert b.stats.duplicates == 1
    assert b.receive(0, 0, b"zero", 0.0) == [b"zero", b"one", b"two"]
    assert b.expected_nr == 3
    assert b.receive(3, 0, b"three", 0.0) == [b"three"]
    assert b.stats.delivered == 4


def test_beyond_receive_window_is_dropped() -> None:
    b = make(receive_window=4)
    assert b.receive(4, 0, b"far", 0.0) == []  # expected 0, window covers 0..3
    assert b.stats.out_of_window == 1
    assert b.receive(3, 0, b"edge", 0.0) == []
    assert b.stats.out_of_window == 1
    assert b.receive(0, 0, b"a", 0.0) == [b"a"]
    assert b.receive(1, 0, b"b", 0.0) == [b"b"]
    assert b.receive(2, 0, b"c", 0.0) == [b"c", b"edge"]
    assert b.receive(4, 0, b"far", 0.0) == [b"far"]  # in order now


def test_zlb_never_delivers_or_advances_but_acks() -> None:
    a = make()
    a.send(msg(b"x"), 0.0)
    a.datagrams_to_send(0.0)
    assert a.in_flight == 1
    # A ZLB's Ns is the sender's next Ns, here 0; and our expected Nr stays 0.
    assert a.receive(0, 1, None, 0.1) == []
    assert a.expected_nr == 0
    assert a.in_flight == 0 and a.idle
    assert a.stats.zlb_received == 1 and a.stats.received == 0
    # A ZLB with an odd Ns still acks nothing more and changes nothing.
    assert a.receive(9, 1, None, 0.2) == []
    assert a.expected_nr == 0


def test_bogus_and_stale_nr_are_ignored() -> None:
    a = make(peer_window=4)
    for i in range(3):
        a.send(msg(b"%d" % i), 0.0)
    a.datagrams_to_send(0.0)
    assert a.in_flight == 1  # cwnd 1
    a.receive(0, 5, None, 0.1)  # acks messages never sent
    assert a.in_flight == 1 and a.cwnd == 1.0
    a.receive(0, 65535, None, 0.1)  # stale
    assert a.in_flight == 1
    a.receive(0, 1, None, 0.1)
    assert a.in_flight == 0 and a.cwnd == 2.0


# --- windows and congestion ------------------------------------------------------------


def _rounds(a: Channel, total: int) -> list[int]:
    """Send ``total`` messages, acking each burst at once; return the burst sizes."""
    for i in range(total):
        a.send(msg(b"%d" % i), 0.0)
    bursts = []
    now = 0.0
    while not a.idle:
        now += 0.01
        burst = a.datagrams_to_send(now)
        assert len(burst) == a.in_flight <= min(a.peer_window, a.cwnd)
        bursts.append(len(burst))
        a.receive(0, a.next_ns - a.queued, None, now)  # cumulative ZLB ack of all sent
    return bursts


def test_peer_window_limits_unacked() -> None:
    a = make(peer_window=4)
    assert a.ssthresh == 4
    # Slow start: 1, 2, then the peer's window of 4 caps it.
    assert _rounds(a, 15) == [1, 2, 4, 4, 4]
    assert a.cwnd == 4.0


def test_window_all_queued_only_four_out() -> None:
    a = make(peer_window=4)
    assert _rounds(a, 4) == [1, 2, 1]  # warm up: cwnd grows to the cap
    assert a.cwnd == 4.0
    for i in range(10):
        a.send(msg(b"%d" % i), 1.0)
    out = a.datagrams_to_send(1.0)
    assert [split(d)[0] for d in out] == [4, 5, 6, 7]
    assert a.datagrams_to_send(1.1) == []
    assert a.in_flight == 4 and a.queued == 6
    a.receive(0, 6, None, 1.2)  # two acknowledged: two more may go
    assert [split(d)[0] for d in a.datagrams_to_send(1.2)] == [8, 9]


def test_slow_start_then_congestion_avoidance() -> None:
    a = make(peer_window=8)
    assert _rounds(a, 1 + 2 + 4 + 8) == [1, 2, 4, 8]
    assert a.cwnd == 8.0  # capped at the peer window


def test_cwnd_collapse_on_timeout_and_regrowth() -> None:
    a = make(peer_window=8)
    _rounds(a, 1 + 2 + 4)
    assert a.cwnd == 8.0
    for i in range(8):
        a.send(msg(b"%d" % i), 10.0)
    assert len(a.datagrams_to_send(10.0)) == 8
    a.handle_timer(11.0)
    # RFC 2661 Appendix A: SSTHRESH = CWND / 2, CWND = 1.
    assert a.ssthresh == 4.0 and a.cwnd == 1.0
    assert len(a.datagrams_to_send(11.0)) == 8  # every expired message is retransmitted
    assert a.stats.retransmitted == 8
    base = a.next_ns - 8
    expected = [2.0, 3.0, 4.0, 4.25, 4.25 + 1 / 4.25]
    for k, cw in enumerate(expected, start=1):
        a.receive(0, seq_add(base, k), None, 11.5)
        assert a.cwnd == pytest.approx(cw)
    assert a.send_window == 4


def test_set_peer_window_clamps() -> None:
    a = make()
    a.set_peer_window(0)  # invalid per RFC 2661 5.8: treated as absent, i.e. 4
    assert a.peer_window == 4 and a.ssthresh == 4
    a.set_peer_window(16)
    assert a.peer_window == 16 and a.ssthresh == 16
    a.set_peer_window(65535)
    assert a.peer_window == MAX_WINDOW


# --- retransmission --------------------------------------------------------------------


def test_exponential_backoff_exact_and_failure() -> None:
    a = make()
    a.send(msg(b"lost"), 0.0)
    times = [0.0] if a.datagrams_to_send(0.0) else []
    while (t := a.get_timer()) is not None:
        a.handle_timer(t)
        for d in a.datagrams_to_send(t):
            assert split(d) == (0, 0, b"lost")
            times.append(t)
    assert times == [0.0, 1.0, 3.0, 7.0, 15.0, 23.0]
    assert [y - x for x, y in itertools.pairwise(times)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert a.failed
    assert a.stats.retransmitted == 5
    # Failure comes one capped timeout after the fifth retransmission.
    assert t is None
    assert a.get_timer() is None
    # A failed channel sends nothing more and ignores input.
    a.send(msg(b"more"), 40.0)
    a.ack_now()
    assert a.receive(0, 0, b"late", 40.0) == []
    a.handle_timer(100.0)
    assert a.datagrams_to_send(100.0) == []


def test_failure_time_is_31_seconds() -> None:
    a = make()
    a.send(msg(b"lost"), 0.0)
    a.datagrams_to_send(0.0)
    last = 0.0
    while (t := a.get_timer()) is not None:
        last = t
        a.handle_timer(t)
        a.datagrams_to_send(t)
    assert last == 31.0 and a.failed


def test_backoff_cap_and_retries_configurable() -> None:
    a = make(retransmit_initial=0.5, retransmit_cap=1.5, max_retries=3)
    a.send(msg(b"x"), 0.0)
    a.datagrams_to_send(0.0)
    deadlines = []
    while (t := a.get_timer()) is not None:
        deadlines.append(t)
        a.handle_timer(t)
        a.datagrams_to_send(t)
    assert deadlines == [0.5, 1.5, 3.0, 4.5]
    assert a.failed and a.stats.retransmitted == 3


def test_ack_stops_retransmission() -> None:
    a = make()
    a.send(msg(b"x"), 0.0)
    a.datagrams_to_send(0.0)
    a.handle_timer(1.0)
    assert len(a.datagrams_to_send(1.0)) == 1
    a.receive(0, 1, None, 1.5)
    assert a.get_timer() is None and a.idle
    a.handle_timer(10.0)
    assert a.datagrams_to_send(10.0) == []
    assert not a.failed


def test_retransmission_carries_current_nr() -> None:
    a = make()
    a.send(msg(b"x"), 0.0)
    (first,) = a.datagrams_to_send(0.0)
    assert split(first)[:2] == (0, 0)
    assert a.receive(0, 0, b"peer", 0.5) == [b"peer"]
    a.handle_timer(1.0)
    out = a.datagrams_to_send(1.0)
    # RFC 2661 5.8: same Ns, Nr updated; it carries the ack so no ZLB goes with it.
    assert [split(d) for d in out] == [(0, 1, b"x")]
    assert a.datagrams_to_send(2.0) == []


# --- acknowledgements ------------------------------------------------------------------


def test_nr_piggybacked_no_zlb() -> None:
    b = make()
    assert b.receive(0, 0, b"req", 0.0) == [b"req"]
    b.send(msg(b"reply"), 0.0)
    out = b.datagrams_to_send(0.0)
    assert [split(d) for d in out] == [(0, 1, b"reply")]
    assert b.datagrams_to_send(0.2) == []
    assert b.stats.zlb_sent == 0


def test_delayed_zlb_when_nothing_to_piggyback() -> None:
    b = make(ack_delay=0.25)
    assert b.receive(0, 0, b"req", 10.0) == [b"req"]
    assert not b.idle
    assert b.get_timer() == pytest.approx(10.25)
    assert b.datagrams_to_send(10.2) == []
    b.handle_timer(10.25)
    (zlb,) = b.datagrams_to_send(10.25)
    assert split(zlb) == (0, 1, None)
    assert b.idle and b.get_timer() is None


def test_zlb_bytes_exact() -> None:
    b = ReliableChannel[bytes](ChannelConfig(ack_delay=0.0), initial_ns=5, initial_nr=6)
    b.peer_tunnel_id = 0x1234
    assert b.receive(6, 5, b"m", 0.0) == [b"m"]
    assert b.datagrams_to_send(0.0) == [bytes.fromhex("c802 000c 1234 0000 0005 0007")]


def test_zlb_ns_is_next_untransmitted() -> None:
    # RFC 2661 Appendix B.2: the LNS acks a duplicate ICRQ with a ZLB Nr 3, Ns 2 while its
    # ICRP (Ns 1) is still unacknowledged.
    lns = ReliableChannel[bytes](ChannelConfig(), initial_ns=1, initial_nr=2)
    lns.peer_tunnel_id = 9
    assert lns.receive(2, 1, b"ICRQ", 0.0) == [b"ICRQ"]
    lns.send(msg(b"ICRP"), 0.0)
    assert [split(d) for d in lns.datagrams_to_send(0.0)] == [(1, 3, b"ICRP")]  # lost
    assert lns.receive(2, 1, b"ICRQ", 1.0) == []
    (zlb,) = lns.datagrams_to_send(1.0)
    assert zlb == bytes.fromhex("c802 000c 0009 0000 0002 0003")
    # With a message queued behind a full window, the ZLB's Ns is that message's.
    lns.send(msg(b"queued"), 1.0)
    lns.ack_now()
    (zlb,) = lns.datagrams_to_send(1.0)
    assert split(zlb) == (2, 3, None)
    assert lns.next_ns == 3


def test_ack_now_forces_zlb() -> None:
    a = make()
    a.receive(0, 0, b"m", 3.0)
    a.ack_now()
    timer = a.get_timer()
    assert timer is not None and timer <= 3.0
    (zlb,) = a.datagrams_to_send(3.0)
    assert split(zlb) == (0, 1, None)
    a.ack_now()
    assert len(a.datagrams_to_send(3.0)) == 1  # forced again, even with nothing new
    assert a.stats.zlb_sent == 2


# --- sequence wraparound ---------------------------------------------------------------


def test_wraparound_across_65535() -> None:
    a = ReliableChannel[bytes](ChannelConfig(), peer_window=8, initial_ns=65533)
    b = ReliableChannel[bytes](ChannelConfig(receive_window=8), initial_nr=65533)
    for i in range(6):
        a.send(msg(b"%d" % i), 0.0)
    seen: list[int] = []
    got: list[bytes] = []
    now = 0.0
    while not a.idle:
        for d in a.datagrams_to_send(now):
            seen.append(split(d)[0])
            got += feed(b, d, now)
        now += 0.2
        for d in b.datagrams_to_send(now):
            feed(a, d, now)
    assert seen == [65533, 65534, 65535, 0, 1, 2]
    assert got == [b"0", b"1", b"2", b"3", b"4", b"5"]
    assert b.expected_nr == 3 and a.next_ns == 3
    assert a.stats.retransmitted == 0 and b.stats.duplicates == 0


def test_wraparound_reorder_and_duplicate() -> None:
    b = ReliableChannel[bytes](ChannelConfig(receive_window=4), initial_nr=65534)
    assert b.receive(0, 0, b"c", 0.0) == []
    assert b.receive(65535, 0, b"b", 0.0) == []
    assert b.receive(1, 0, b"d", 0.0) == []
    assert b.receive(2, 0, b"e", 0.0) == []  # 65534 + 4: beyond the window
    assert b.stats.out_of_window == 1
    assert b.receive(65534, 0, b"a", 0.0) == [b"a", b"b", b"c", b"d"]
    assert b.expected_nr == 2
    assert b.receive(65535, 0, b"b", 0.0) == []  # behind across the wrap: duplicate
    assert b.stats.duplicates == 1
    a = ReliableChannel[bytes](ChannelConfig(), peer_window=4, initial_ns=65535)
    a.send(msg(b"x"), 0.0)
    a.send(msg(b"y"), 0.0)
    a.datagrams_to_send(0.0)
    a.receive(0, 0, None, 0.0)  # Nr 0 acks Ns 65535
    assert a.in_flight == 0
    assert [split(d)[0] for d in a.datagrams_to_send(0.0)] == [0]


def test_more_than_65536_messages_lossless() -> None:
    a = ReliableChannel[bytes](ChannelConfig(), peer_window=32)
    b = ReliableChannel[bytes](ChannelConfig(receive_window=32))
    total = 65536 + 300
    payload = msg(b"p")
    got = 0
    now = 0.0
    for i in range(total):
        a.send(payload, now)
        if i % 32 == 31 or i == total - 1:
            for d in a.datagrams_to_send(now):
                got += len(feed(b, d, now))
            now += 0.2
            for d in b.datagrams_to_send(now):
                feed(a, d, now)
    while not a.idle:
        for d in a.datagrams_to_send(now):
            got += len(feed(b, d, now))
        now += 0.2
        for d in b.datagrams_to_send(now):
            feed(a, d, now)
    assert got == total
    assert a.next_ns == b.expected_nr == total % 65536
    assert a.stats.retransmitted == 0 and b.stats.duplicates == 0


# --- API misuse ------------------------------------------------------------------------


def test_send_rejects_zlb_and_short() -> None:
    a = make()
    with pytest.raises(ValueError):
        a.send(msg(b""), 0.0)
    with pytest.raises(ValueError):
        a.send(b"\xc8\x02", 0.0)
    assert a.idle and a.next_ns == 0


@pytest.mark.parametrize(
    "kw",
    [
        {"receive_window": 0},
        {"receive_window": 40000},
        {"retransmit_initial": 0.0},
        {"retransmit_initial": 2.0, "retransmit_cap": 1.0},
        {"max_retries": -1},
        {"ack_delay": -0.1},
    ],
)
def test_config_validation(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ChannelConfig(**kw)  # type: ignore[arg-type]
