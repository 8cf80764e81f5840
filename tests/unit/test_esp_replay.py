"""The ESP anti-replay window (RFC 4303 3.4.3, Appendix A).

Boundary cases, numbered:
 1. a fresh window accepts 1 and refuses 0 (never sent)
 2. in-order numbers are accepted once each; every repeat is a duplicate
 3. window edges: top - (W - 1) is inside, top - W is too old ("exactly window old")
 4. a jump of exactly W, of W - 1 and far ahead keeps exactly the right bits
 5. out-of-order arrivals inside the window are accepted once
 6. near 2**32: the last numbers are accepted, nothing wraps back to small numbers
 7. check() never changes the window; update() of a too-old number is a no-op
 8. window sizes 0 (off), 1, 32, 64, 1024 against a set-based model (hypothesis)
 9. through an InboundSA: a forged far-ahead number with a bad ICV does not move the
    window, and a replay of a valid packet is refused after it
10. the window size comes from ESPParams.replay_window
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.esp import DropReason, ESPError, ESPParams, InboundSA, OutboundSA
from pyl2tp.esp.replay import MAX_WINDOW, ReplayVerdict, ReplayWindow
from pyl2tp.wire.esp import MAX_SEQ

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

OK, DUP, OLD = ReplayVerdict.OK, ReplayVerdict.DUPLICATE, ReplayVerdict.TOO_OLD


def accept(w: ReplayWindow, seq: int) -> ReplayVerdict:
    """What an SA does with a packet whose ICV verifies."""
    verdict = w.check(seq)
    if verdict is OK:
        w.update(seq)
    return verdict


def test_1_fresh_window() -> None:
    w = ReplayWindow()
    assert w.size == 64 and w.top == 0
    assert w.check(0) is OLD
    assert accept(w, 1) is OK and w.top == 1
    assert w.check(0) is OLD


def test_2_in_order_and_duplicates() -> None:
    w = ReplayWindow(64)
    assert [accept(w, s) for s in range(1, 201)] == [OK] * 200
    assert [w.check(s) for s in range(137, 201)] == [DUP] * 64
    assert [w.check(s) for s in range(1, 137)] == [OLD] * 136


@pytest.mark.parametrize("size", [1, 32, 64, 1024])
def test_3_window_edges(size: int) -> None:
    w = ReplayWindow(size)
    top = size * 3 + 5
    accept(w, top)
    assert w.check(top) is DUP
    if size > 1:
        assert w.check(top - (size - 1)) is OK  # the left edge, inside
    assert w.check(top - size) is OLD  # exactly window-old
    assert w.check(top - size - 1) is OLD
    assert w.check(top + 1) is OK
    if size > 1:
        assert accept(w, top - (size - 1)) is OK
        assert w.check(top - (size - 1)) is DUP
    # Move by one: the old left edge is now exactly window-old.
    accept(w, top + 1)
    assert w.check(top - (size - 1)) is OLD
    assert w.check(top) is (DUP if size > 1 else OLD)


def test_4_jumps_keep_the_right_bits() -> None:
    w = ReplayWindow(64)
    for s in (1, 2, 3, 10):
        accept(w, s)
    accept(w, 10 + 63)  # jump of W - 1: 10 is now the left edge, still marked
    assert w.check(10) is DUP and w.check(11) is OK and w.check(9) is OLD
    accept(w, 10 + 63 + 64)  # jump of exactly W: everything before falls out
    assert w.seen(10 + 63 + 64) and not w.seen(10 + 63)
    assert w.check(10 + 63) is OLD
    assert w.bitmap == 1
    accept(w, 1_000_000)  # far ahead
    assert w.top == 1_000_000 and w.bitmap == 1
    assert w.check(1_000_000 - 63) is OK and w.check(1_000_000 - 64) is OLD
    assert w.check(10 + 63 + 64) is OLD


def test_5_out_of_order_inside_the_window() -> None:
    w = ReplayWindow(64)
    order = random.Random(3).sample(range(1, 65), 64)
    assert [accept(w, s) for s in order] == [OK] * 64
    assert [accept(w, s) for s in order] == [DUP] * 64
    assert w.bitmap == (1 << 64) - 1


def test_6_near_2_to_the_32() -> None:
    w = ReplayWindow(64)
    for s in (MAX_SEQ - 70, MAX_SEQ - 2, MAX_SEQ):
        assert accept(w, s) is OK
    assert w.top == MAX_SEQ
    assert w.check(MAX_SEQ) is DUP and w.check(MAX_SEQ - 2) is DUP
    assert w.check(MAX_SEQ - 1) is OK and w.check(MAX_SEQ - 63) is OK
    assert w.check(MAX_SEQ - 64) is OLD and w.check(MAX_SEQ - 70) is OLD
    # Without ESN the counter never cycles (RFC 4303 3.3.3): small numbers are old.
    assert w.check(1) is OLD and w.check(0) is OLD


def test_7_check_is_pure_and_old_updates_are_ignored() -> None:
    w = ReplayWindow(32)
    accept(w, 100)
    state = (w.top, w.bitmap)
    for s in (0, 1, 68, 69, 99, 100, 101, 5000):
        w.check(s)
    assert (w.top, w.bitmap) == state
    w.update(68)  # 100 - 32: outside the window
    assert (w.top, w.bitmap) == state
    w.update(69)
    assert w.seen(69) and w.top == 100


def test_window_size_limits() -> None:
    for bad in (-1, MAX_WINDOW + 1):
        with pytest.raises(ValueError):
            ReplayWindow(bad)
    off = ReplayWindow(0)  # RFC 4303 3.4.3: the receiver may turn the check off
    assert [accept(off, s) for s in (5, 5, 1, 5)] == [OK] * 4
    assert off.check(0) is OLD


class Model:
    """The window by definition: a set of seen numbers and the highest one."""

    def __init__(self, size: int) -> None:
        self.size, self.top, self.seen = size, 0, set[int]()

    def accept(self, seq: int) -> ReplayVerdict:
        if self.size == 0:
            verdict = OK if seq > 0 else OLD
        elif seq == 0 or seq <= self.top - self.size:
            verdict = OLD
        elif seq in self.seen:
            verdict = DUP
        else:
            verdict = OK
        if verdict is OK:
            self.seen.add(seq)
            self.top = max(self.top, seq)
        return verdict


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([0, 1, 2, 32, 64, 1024]),
       st.lists(st.one_of(st.integers(0, 300), st.integers(MAX_SEQ - 2000, MAX_SEQ)),
                max_size=300))
def test_8_against_the_model(size: int, seqs: list[int]) -> None:
    w, model = ReplayWindow(size), Model(size)
    for s in sorted(seqs[: len(seqs) // 3]) + seqs[len(seqs) // 3:]:
        assert accept(w, s) is model.accept(s), s
    assert w.top == model.top


def _sa_pair(window: int = 64) -> tuple[OutboundSA, InboundSA]:
    r = random.Random(9)
    p = ESPParams(spi=0x1234_5678, enc="aes-cbc", enc_key=r.randbytes(16), auth="hmac-sha1-96",
                  auth_key=r.randbytes(20), mode="transport", replay_window=window)
    return OutboundSA(p, r.randbytes), InboundSA(p)


def test_9_forged_packets_do_not_move_the_window() -> None:
    out, inb = _sa_pair()
    packets = [out.encrypt(bytes([i]), 17) for i in range(1, 101)]
    assert inb.decrypt(packets[9]) == (17, b"\x0a")  # seq 10
    # A forgery claiming sequence 100 000 (bad ICV): the window must stay at 10.
    forged = bytearray(packets[99])
    forged[4:8] = (100_000).to_bytes(4, "big")
    with pytest.raises(ESPError) as err:
        inb.decrypt(bytes(forged))
    assert err.value.reason is DropReason.ICV
    assert inb.window.top == 10 and not inb.window.seen(100_000)
    assert inb.decrypt(packets[0]) == (17, b"\x01")  # still inside the window
    with pytest.raises(ESPError) as err:
        inb.decrypt(packets[9])
    assert err.value.reason is DropReason.REPLAY_DUPLICATE
    assert inb.decrypt(packets[99]) == (17, b"\x64")
    with pytest.raises(ESPError) as err:
        inb.decrypt(packets[1])  # seq 2: 98 behind a 64-wide window
    assert err.value.reason is DropReason.REPLAY_TOO_OLD
    assert inb.stats.replayed == 2 and inb.stats.auth_failed == 1


def test_10_window_size_from_params() -> None:
    out, inb = _sa_pair(window=1024)
    packets = [out.encrypt(b"", 17) for _ in range(1100)]
    inb.decrypt(packets[-1])
    assert inb.decrypt(packets[1100 - 1024])[0] == 17  # 1023 behind: inside
    with pytest.raises(ESPError):
        inb.decrypt(packets[1100 - 1025])
    out, inb = _sa_pair(window=0)
    packet = out.encrypt(b"again", 17)
    assert inb.decrypt(packet) == inb.decrypt(packet) == (17, b"again")
