"""ESP anti-replay window (RFC 4303 3.4.3 and Appendix A), 32-bit sequence numbers.

Theory of operation: ``top`` is the highest sequence number authenticated so far; bit i
of ``bitmap`` says whether ``top - i`` was received (bit 0 is ``top`` itself)::

    too old          |<-------- window (size bits) -------->|   new: moves the window
    ... top-size     | top-size+1  ...  top-1   top         |   top+1 ...
                     | bit size-1  ...  bit 1   bit 0       |

The receiver calls :meth:`ReplayWindow.check` *before* verifying the ICV and
:meth:`ReplayWindow.update` only *after* the ICV verified (RFC 4303 3.4.3), so a forged
packet can neither be accepted twice nor move the window. Sequence numbers never wrap:
without ESN the sender must not cycle the counter (RFC 4303 3.3.3), so a number ``top``
or more below is simply old. A Python int is the bitmap; shifting a 1024-bit int costs
about as much as a word operation in C.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["DEFAULT_WINDOW", "MAX_WINDOW", "ReplayVerdict", "ReplayWindow"]

DEFAULT_WINDOW = 64  # RFC 4303 3.4.3: a window of 32 MUST be supported, 64 is the default
MAX_WINDOW = 4096  # our limit: larger windows only cost memory, but nobody needs them


class ReplayVerdict(IntEnum):
    """What :meth:`ReplayWindow.check` found."""

    OK = 0  # new, or inside the window and not yet seen
    DUPLICATE = 1  # inside the window, already received
    TOO_OLD = 2  # left of the window (or 0, which is never sent: RFC 4303 3.3.3)


class ReplayWindow:
    """Sliding window of ``size`` sequence numbers; ``size`` 0 turns the check off.

    RFC 4303 3.4.3: the receiver may disable anti-replay (e.g. for manually keyed SAs);
    then every number is accepted.
    """

    __slots__ = ("_mask", "bitmap", "size", "top")

    def __init__(self, size: int = DEFAULT_WINDOW) -> None:
        if not 0 <= size <= MAX_WINDOW:
            raise ValueError(f"replay window must be 0..{MAX_WINDOW}, not {size}")
        self.size = size
        self.top = 0  # no packet yet: every number from 1 is new
        self.bitmap = 0
        self._mask = (1 << size) - 1

    def check(self, seq: int) -> ReplayVerdict:
        """Would ``seq`` be accepted? Does not change the window."""
        top = self.top
        if seq > top:
            return ReplayVerdict.OK
        if not self.size:
            return ReplayVerdict.OK if seq else ReplayVerdict.TOO_OLD
        diff = top - seq
        if diff >= self.size or seq == 0:
            return ReplayVerdict.TOO_OLD
        if (self.bitmap >> diff) & 1:
            return ReplayVerdict.DUPLICATE
        return ReplayVerdict.OK

    def update(self, seq: int) -> None:
        """Mark ``seq`` received (call only once its ICV verified)."""
        top = self.top
        if seq > top:
            shift = seq - top
            # Bits shifted past the window fall off through the mask.
            self.bitmap = ((self.bitmap << shift) | 1) & self._mask if shift < self.size else 1
            self.top = seq
        else:
            diff = top - seq
            if diff < self.size:
                self.bitmap |= 1 << diff

    def seen(self, seq: int) -> bool:
        """True if ``seq`` is inside the window and marked received."""
        diff = self.top - seq
        return 0 <= diff < self.size and bool((self.bitmap >> diff) & 1)
