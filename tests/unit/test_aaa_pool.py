"""Address and prefix pools: allocation order, sticky and fixed addresses, exhaustion, and
never a double assignment (hypothesis-driven sequences)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Network

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from pyl2tp.aaa.pool import AddressPool, PrefixPool

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]


def A(n: int) -> IPv4Address:
    return IPv4Address(f"198.18.100.{n}")


def test_lowest_first_and_exhaustion() -> None:
    pool = AddressPool(A(10), A(14), exclude=[A(12), A(1)])
    assert pool.size == 4
    got = [pool.allocate() for _ in range(4)]
    assert got == [A(10), A(11), A(13), A(14)]
    assert pool.allocate() is None
    assert pool.in_use == 4 and pool.is_allocated(A(13)) and not pool.is_allocated(A(12))
    assert pool.contains(A(12)) and pool.contains(A(14)) and not pool.contains(A(15))


def test_release_reuses_oldest_released_after_untouched() -> None:
    pool = AddressPool(A(10), A(15), sticky=False)
    first = [pool.allocate() for _ in range(3)]  # 10, 11, 12
    pool.release(A(11))
    pool.release(A(10))
    # Untouched addresses first, then released ones oldest first.
    assert [pool.allocate() for _ in range(5)] == [A(13), A(14), A(15), A(11), A(10)]
    assert first == [A(10), A(11), A(12)]
    assert pool.allocate() is None


def test_sticky_user_gets_previous_address_back() -> None:
    pool = AddressPool(A(10), A(20))
    a = pool.allocate("alice")
    b = pool.allocate("bob")
    assert (a, b) == (A(10), A(11))
    assert pool.owner(A(10)) == "alice"
    pool.release(A(10))
    assert pool.owner(A(10)) is None
    pool.allocate("carol")
    assert pool.allocate("alice") == A(10)
    # When the old address is taken meanwhile, the user gets another one.
    pool.release(A(11))
    assert pool.allocate(fixed=A(11), user="dave") == A(11)
    assert pool.allocate("bob") == A(13)


def test_fixed_addresses() -> None:
    pool = AddressPool(A(10), A(20), exclude=[A(15)])
    assert pool.allocate("alice", fixed=A(15)) == A(15)  # excluded from dynamic use only
    assert pool.allocate("mallory", fixed=A(15)) is None  # never twice
    assert pool.allocate(fixed=A(12)) == A(12)
    assert pool.allocate(fixed=A(200)) == A(200)  # outside the range is fine too
    assert pool.allocate(fixed=A(200)) is None
    assert pool.in_use == 3
    dynamic = [pool.allocate() for _ in range(9)]  # 11 addresses, 15 excluded, 12 taken
    assert A(12) not in dynamic and A(15) not in dynamic
    assert pool.allocate() is None
    pool.release(A(15))
    assert pool.allocate() is None  # an excluded address never becomes dynamic
    pool.release(A(200))
    assert not pool.is_allocated(A(200)) and pool.owner(A(200)) is None
    pool.release(A(12))
    assert pool.allocate() == A(12)


def test_release_of_free_address_is_a_noop() -> None:
    pool = AddressPool(A(10), A(11))
    pool.release(A(10))
    pool.release(A(99))
    assert pool.in_use == 0
    assert pool.allocate() == A(10)
    pool.release(A(10))
    pool.release(A(10))
    assert [pool.allocate(), pool.allocate(), pool.allocate()] == [A(11), A(10), None]


def test_bad_range() -> None:
    with pytest.raises(ValueError):
        AddressPool(A(20), A(10))


def test_large_pool_is_lazy() -> None:
    pool = AddressPool(IPv4Address("198.18.0.0"), IPv4Address("198.19.255.255"))
    assert pool.size == 131072
    assert pool.allocate() == IPv4Address("198.18.0.0")
    assert pool.allocate(fixed=IPv4Address("198.18.0.1")) == IPv4Address("198.18.0.1")
    assert pool.allocate() == IPv4Address("198.18.0.2")


def test_prefix_pool() -> None:
    pool = PrefixPool(IPv6Network("2001:2::/48"))
    assert pool.size == 65536
    p1 = pool.allocate("alice")
    p2 = pool.allocate("bob")
    assert p1 == IPv6Network("2001:2::/64")
    assert p2 == IPv6Network("2001:2:0:1::/64")
    assert pool.in_use == 2 and pool.is_allocated(p2)
    pool.release(p1)
    pool.release(p1)  # no-op
    pool.release(IPv6Network("2001:3::/64"))  # not ours: no-op
    assert pool.allocate("carol") == IPv6Network("2001:2:0:2::/64")
    assert pool.allocate("alice") == p1  # sticky
    assert not pool.is_allocated(IPv6Network("2001:2:0:9::/64"))
    assert pool.contains(IPv6Network("2001:2:0:9::/64"))
    assert not pool.contains(IPv6Network("2001:2:0:9::/80"))
    assert not pool.contains(IPv6Network("2001:3::/64"))


def test_prefix_pool_exhaustion_and_exclude() -> None:
    pool = PrefixPool(
        IPv6Network("2001:2::/62"), 64, exclude=[IPv6Network("2001:2::/64")], sticky=False
    )
    assert pool.size == 3
    got = [pool.allocate() for _ in range(3)]
    assert IPv6Network("2001:2::/64") not in got and len(set(got)) == 3
    assert pool.allocate() is None
    with pytest.raises(ValueError):
        PrefixPool(IPv6Network("2001:2::/64"), 48)
    with pytest.raises(ValueError):
        PrefixPool(IPv6Network("2001:2::/48"), exclude=[IPv6Network("2001:3::/64")])


def test_huge_prefix_pool_is_lazy() -> None:
    pool = PrefixPool(IPv6Network("2001:2::/32"), 64)
    assert pool.size == 1 << 32
    assert pool.allocate() == IPv6Network("2001:2::/64")


class AddressPoolMachine(RuleBasedStateMachine):
    """A model of which addresses are taken, checked against the pool after every step."""

    FIRST, LAST = 10, 25
    EXCLUDED = frozenset({12, 20})

    def __init__(self) -> None:
        super().__init__()
        self.pool = AddressPool(A(self.FIRST), A(self.LAST), exclude=[A(n) for n in self.EXCLUDED])
        self.taken: dict[IPv4Address, str | None] = {}

    def _dynamic_free(self) -> set[IPv4Address]:
        return {
            A(n)
            for n in range(self.FIRST, self.LAST + 1)
            if n not in self.EXCLUDED and A(n) not in self.taken
        }

    @rule(user=st.sampled_from([None, "alice", "bob", "carol", "dave"]))
    def allocate(self, user: str | None) -> None:
        free = self._dynamic_free()
        got = self.pool.allocate(user)
        if got is None:
            assert not free  # None only when the pool is really exhausted
            return
        assert got in free  # never a double assignment, never an excluded address
        self.taken[got] = user

    @rule(n=st.integers(5, 30), user=st.sampled_from([None, "erin"]))
    def allocate_fixed(self, n: int, user: str | None) -> None:
        got = self.pool.allocate(user, fixed=A(n))
        if A(n) in self.taken:
            assert got is None
        else:
            assert got == A(n)
            self.taken[A(n)] = user

    @rule(n=st.integers(5, 30))
    def release(self, n: int) -> None:
        self.pool.release(A(n))
        self.taken.pop(A(n), None)

    @invariant()
    def agrees_with_model(self) -> None:
        assert self.pool.in_use == len(self.taken)
        for n in range(5, 31):
            assert self.pool.is_allocated(A(n)) == (A(n) in self.taken)
        for address, user in self.taken.items():
            assert self.pool.owner(address) == user


TestAddressPoolModel = AddressPoolMachine.TestCase
TestAddressPoolModel.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


class PrefixPoolMachine(RuleBasedStateMachine):
    """The same property for IPv6 prefixes: a /60 holds sixteen /64s."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = PrefixPool(IPv6Network("2001:2::/60"))
        self.all = set(IPv6Network("2001:2::/60").subnets(new_prefix=64))
        self.taken: set[IPv6Network] = set()

    @rule(user=st.sampled_from([None, "alice", "bob"]))
    def allocate(self, user: str | None) -> None:
        got = self.pool.allocate(user)
        if got is None:
            assert self.taken == self.all
        else:
            assert got in self.all and got not in self.taken
            self.taken.add(got)

    @rule(i=st.integers(0, 17))
    def release(self, i: int) -> None:
        prefix = IPv6Network((int(IPv6Network("2001:2::/64").network_address) + (i << 64), 64))
        self.pool.release(prefix)
        self.taken.discard(prefix)

    @invariant()
    def agrees_with_model(self) -> None:
        assert self.pool.in_use == len(self.taken)


TestPrefixPoolModel = PrefixPoolMachine.TestCase
TestPrefixPoolModel.settings = settings(max_examples=100, stateful_step_count=50, deadline=None)
