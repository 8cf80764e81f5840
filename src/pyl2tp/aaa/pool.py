"""Address pools: IPv4 addresses and IPv6 prefixes for sessions, never given out twice.

Both pools share one allocator over slot numbers ``0..size-1``. Slots never handed out
yet are taken in ascending order by a cursor (lazy: a /48 split into /64s is not a list
of 65536 prefixes); released slots go to the back of a FIFO free list and are reused
only after the untouched ones run out, oldest first. That keeps a user's previous slot
free as long as possible, and with ``sticky`` on, a user who comes back gets it again if
it is still free. Every operation is O(1) amortised.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv6Network

__all__ = ["AddressPool", "PrefixPool"]

_LOG = logging.getLogger("pyl2tp.aaa")


class _Slots:
    """Which of ``size`` slots are in use; excluded slots are never handed out on their own.

    Invariant: each slot that is not excluded is exactly one of in use (``used``),
    released (``free``), or untouched (at or past ``cursor`` and in neither).
    """

    def __init__(self, size: int, excluded: set[int], sticky: bool) -> None:
        self.size = size
        self.excluded = excluded
        self.sticky = sticky
        self.used: dict[int, str | None] = {}
        self.free: OrderedDict[int, None] = OrderedDict()
        self.cursor = 0
        self.last: dict[str, int] = {}  # user -> slot last given (sticky)

    def take(self, slot: int, user: str | None) -> bool:
        """Mark ``slot`` in use if it is not; excluded slots may be taken this way."""
        if slot in self.used:
            return False
        self.free.pop(slot, None)
        self.used[slot] = user
        return True

    def take_any(self, user: str | None) -> int | None:
        """The user's previous slot if free, else an untouched one, else a released one."""
        if self.sticky and user is not None:
            slot = self.last.get(user)
            if slot is not None and slot not in self.excluded and self.take(slot, user):
                return slot
        while self.cursor < self.size and (
            self.cursor in self.used or self.cursor in self.free or self.cursor in self.excluded
        ):
            self.cursor += 1
        if self.cursor < self.size:
            slot = self.cursor
            self.cursor += 1
        elif self.free:
            slot, _ = self.free.popitem(last=False)
        else:
            return None
        self.used[slot] = user
        if user is not None:
            self.last[user] = slot
        return slot

    def give_back(self, slot: int) -> bool:
        """Release ``slot``; False if it was not in use."""
        if slot not in self.used:
            return False
        del self.used[slot]
        # A slot past the cursor counts as untouched again: the cursor will find it.
        if slot not in self.excluded and slot < self.cursor:
            self.free[slot] = None
        return True

    def owner(self, slot: int) -> str | None:
        return self.used.get(slot)


class AddressPool:
    """IPv4 addresses ``first..last`` for the sessions of one server.

    ``exclude`` holds addresses never handed out on their own: the server's address and
    the users' fixed addresses. A fixed address (in the range or not) is given with
    ``allocate(fixed=...)`` and is still never given to two sessions at once.
    """

    def __init__(
        self,
        first: IPv4Address,
        last: IPv4Address,
        *,
        exclude: Iterable[IPv4Address] = (),
        sticky: bool = True,
    ) -> None:
        if last < first:
            raise ValueError(f"empty address range {first}-{last}")
        self.first = first
        self.last = last
        self._base = int(first)
        count = int(last) - int(first) + 1
        excluded = {int(a) - self._base for a in exclude if first <= a <= last}
        self._slots = _Slots(count, excluded, sticky)
        self._outside: dict[IPv4Address, str | None] = {}  # fixed addresses off the range
        self.size = count - len(excluded)
        """Addresses the pool can hand out dynamically."""

    @property
    def in_use(self) -> int:
        """Addresses given out now, fixed ones included."""
        return len(self._slots.used) + len(self._outside)

    def _slot(self, address: IPv4Address) -> int | None:
        if self.first <= address <= self.last:
            return int(address) - self._base
        return None

    def allocate(
        self, user: str | None = None, *, fixed: IPv4Address | None = None
    ) -> IPv4Address | None:
        """An address for a new session, or None if none is free.

        With ``fixed``, exactly that address or None if it is in use. Otherwise the
        user's previous address if still free (sticky), else the lowest never-used one,
        else the one released longest ago.
        """
        if fixed is not None:
            slot = self._slot(fixed)
            if slot is None:
                if fixed in self._outside:
                    return None
                self._outside[fixed] = user
                return fixed
            return fixed if self._slots.take(slot, user) else None
        slot = self._slots.take_any(user)
        if slot is None:
            _LOG.warning("address pool %s-%s exhausted", self.first, self.last)
            return None
        return IPv4Address(self._base + slot)

    def release(self, address: IPv4Address) -> None:
        """Give ``address`` back; releasing a free address is a logged no-op."""
        slot = self._slot(address)
        if slot is None:
            released = address in self._outside
            self._outside.pop(address, None)
        else:
            released = self._slots.give_back(slot)
        if not released:
            _LOG.debug("release of %s, which is not in use", address)

    def contains(self, address: IPv4Address) -> bool:
        """True if ``address`` lies in ``first..last`` (excluded addresses included)."""
        return self.first <= address <= self.last

    def is_allocated(self, address: IPv4Address) -> bool:
        """True if ``address`` is given to a session now."""
        slot = self._slot(address)
        return address in self._outside if slot is None else slot in self._slots.used

    def owner(self, address: IPv4Address) -> str | None:
        """The user ``address`` was given to (None if free or given without a user)."""
        slot = self._slot(address)
        return self._outside.get(address) if slot is None else self._slots.owner(slot)


class PrefixPool:
    """IPv6 prefixes of ``prefix_len`` bits (default /64) out of ``network``, per session."""

    def __init__(
        self,
        network: IPv6Network,
        prefix_len: int = 64,
        *,
        exclude: Iterable[IPv6Network] = (),
        sticky: bool = True,
    ) -> None:
        if not network.prefixlen <= prefix_len <= 128:
            raise ValueError(f"cannot cut /{prefix_len} prefixes out of {network}")
        self.network = network
        self.prefix_len = prefix_len
        self._shift = 128 - prefix_len
        self._base = int(network.network_address)
        excluded = set()
        for prefix in exclude:
            slot = self._slot(prefix)
            if slot is None:
                raise ValueError(f"{prefix} is not a /{prefix_len} inside {network}")
            excluded.add(slot)
        count = 1 << (prefix_len - network.prefixlen)
        self._slots = _Slots(count, excluded, sticky)
        self.size = count - len(excluded)
        """Prefixes the pool can hand out."""

    @property
    def in_use(self) -> int:
        """Prefixes given out now."""
        return len(self._slots.used)

    def _slot(self, prefix: IPv6Network) -> int | None:
        if prefix.prefixlen != self.prefix_len or not prefix.subnet_of(self.network):
            return None
        return (int(prefix.network_address) - self._base) >> self._shift

    def _prefix(self, slot: int) -> IPv6Network:
        return IPv6Network((self._base + (slot << self._shift), self.prefix_len))

    def allocate(self, user: str | None = None) -> IPv6Network | None:
        """A prefix for a new session (the user's previous one if free), or None."""
        slot = self._slots.take_any(user)
        if slot is None:
            _LOG.warning("prefix pool %s exhausted", self.network)
            return None
        return self._prefix(slot)

    def release(self, prefix: IPv6Network) -> None:
        """Give ``prefix`` back; releasing a free prefix is a logged no-op."""
        slot = self._slot(prefix)
        if slot is None or not self._slots.give_back(slot):
            _LOG.debug("release of %s, which is not in use", prefix)

    def contains(self, prefix: IPv6Network) -> bool:
        """True if ``prefix`` is one of this pool's prefixes."""
        return self._slot(prefix) is not None

    def is_allocated(self, prefix: IPv6Network) -> bool:
        """True if ``prefix`` is given to a session now."""
        slot = self._slot(prefix)
        return slot is not None and slot in self._slots.used
