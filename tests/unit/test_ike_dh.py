"""Unit tests for pyl2tp.ike.dh: group parameters, agreement both ways, peer validation."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import dh, ec

from pyl2tp.errors import ParseError
from pyl2tp.ike.dh import GROUPS, DHError, EcpGroup, ModpGroup, get_group

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

ALL = sorted(GROUPS)
MODP = [n for n in ALL if isinstance(GROUPS[n], ModpGroup)]
ECP = [n for n in ALL if isinstance(GROUPS[n], EcpGroup)]


def seeded_rng(seed: int) -> Callable[[int], bytes]:
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def pi_fixed(bits: int) -> int:
    """floor(pi * 2^bits), from Machin's formula with integer arithmetic."""
    guard = 64
    one = 1 << (bits + guard)

    def atan_inv(x: int) -> int:
        total = term = one // x
        n, sign = 1, -1
        while term:
            term //= x * x
            total += sign * (term // (2 * n + 1))
            sign, n = -sign, n + 1
        return total

    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> guard


def is_probable_prime(n: int, rounds: int = 8) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    rnd = random.Random(n)
    for _ in range(rounds):
        x = pow(rnd.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


# RFC 2409 6.2 and RFC 3526: p = 2^n - 2^(n-64) - 1 + 2^64 * ([2^(n-130) pi] + k).
PRIME_FORMULA = {2: (1024, 129093), 14: (2048, 124476), 15: (3072, 1690314), 16: (4096, 240904)}


@pytest.mark.parametrize("number", MODP)
def test_modp_prime_is_the_rfc_formula(number: int) -> None:
    group = GROUPS[number]
    assert isinstance(group, ModpGroup)
    n, k = PRIME_FORMULA[number]
    expected = 2**n - 2 ** (n - 64) - 1 + 2**64 * (pi_fixed(n - 130) + k)
    assert group.prime == expected
    assert group.public_size == n // 8 == group.shared_size
    assert group.generator == 2


@pytest.mark.parametrize("number", [2, 14])
def test_modp_prime_is_safe(number: int) -> None:
    group = GROUPS[number]
    assert isinstance(group, ModpGroup)
    p = group.prime
    assert is_probable_prime(p, 4)
    assert is_probable_prime((p - 1) // 2, 4)


@pytest.mark.parametrize("number", ALL)
def test_agreement_both_ways(number: int) -> None:
    group = GROUPS[number]
    a, pub_a = group.generate(seeded_rng(1))
    b, pub_b = group.generate(seeded_rng(2))
    assert len(pub_a) == len(pub_b) == group.public_size
    s1 = group.shared(a, pub_b)
    s2 = group.shared(b, pub_a)
    assert s1 == s2
    assert len(s1) == group.shared_size
    assert pub_a != pub_b


@pytest.mark.parametrize("number", ALL)
def test_generation_is_driven_by_the_injected_rng(number: int) -> None:
    group = GROUPS[number]
    _, p1 = group.generate(seeded_rng(7))
    _, p2 = group.generate(seeded_rng(7))
    _, p3 = group.generate(seeded_rng(8))
    assert p1 == p2 != p3
    _, p4 = group.generate()  # default: the OS random source
    assert len(p4) == group.public_size


@pytest.mark.parametrize("number", MODP)
def test_modp_against_cryptography(number: int) -> None:
    group = GROUPS[number]
    assert isinstance(group, ModpGroup)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # finite-field DH is deprecated in cryptography
        params = dh.DHParameterNumbers(group.prime, 2).parameters()
        theirs = params.generate_private_key()
        their_y = theirs.public_key().public_numbers().y
        ours, our_pub = group.generate(seeded_rng(3))
        our_key = dh.DHPublicNumbers(int.from_bytes(our_pub, "big"), params.parameter_numbers())
        expected = theirs.exchange(our_key.public_key())
    shared = group.shared(ours, their_y.to_bytes(group.public_size, "big"))
    assert shared == expected.rjust(group.shared_size, b"\x00")


def test_modp_known_exponent() -> None:
    group = GROUPS[14]
    assert isinstance(group, ModpGroup)
    priv, pub = group.private_from_int(2)
    assert int.from_bytes(pub, "big") == 4
    _, peer = group.private_from_int(3)
    # (2^3)^2 = 64, padded to the prime's length
    assert group.shared(priv, peer) == (64).to_bytes(256, "big")


@pytest.mark.parametrize("number", ECP)
def test_ecp_against_cryptography(number: int) -> None:
    group = GROUPS[number]
    assert isinstance(group, EcpGroup)
    theirs = ec.generate_private_key(group.curve)
    nums = theirs.public_key().public_numbers()
    size = group.coordinate_size
    their_ke = nums.x.to_bytes(size, "big") + nums.y.to_bytes(size, "big")
    ours, our_ke = group.generate(seeded_rng(4))
    peer = ec.EllipticCurvePublicNumbers(
        int.from_bytes(our_ke[:size], "big"), int.from_bytes(our_ke[size:], "big"), group.curve
    ).public_key()
    assert group.shared(ours, their_ke) == theirs.exchange(ec.ECDH(), peer)


# RFC 5903 8.1 and 8.2 test vectors: i, g^i (x|y), r, g^r (x|y), g^ir x coordinate.
RFC5903 = {
    19: (
        "C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
        "DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180"
        "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
        "C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
        "D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63"
        "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
        "D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE",
    ),
    20: (
        "099F3C7034D4A2C699884D73A375A67F7624EF7C6B3C0F160647B67414DCE655"
        "E35B538041E649EE3FAEF896783AB194",
        "667842D7D180AC2CDE6F74F37551F55755C7645C20EF73E31634FE72B4C55EE6"
        "DE3AC808ACB4BDB4C88732AEE95F41AA9482ED1FC0EEB9CAFC4984625CCFC23F"
        "65032149E0E144ADA024181535A0F38EEB9FCFF3C2C947DAE69B4C634573A81C",
        "41CB0779B4BDB85D47846725FBEC3C9430FAB46CC8DC5060855CC9BDA0AA2942"
        "E0308312916B8ED2960E4BD55A7448FC",
        "E558DBEF53EECDE3D3FCCFC1AEA08A89A987475D12FD950D83CFA41732BC509D"
        "0D1AC43A0336DEF96FDA41D0774A3571DCFBEC7AACF3196472169E838430367F"
        "66EEBE3C6E70C416DD5F0C68759DD1FFF83FA40142209DFF5EAAD96DB9E6386C",
        "11187331C279962D93D604243FD592CB9D0A926F422E47187521287E7156C5C4"
        "D603135569B9E9D09CF5D4A270F59746",
    ),
}


@pytest.mark.parametrize("number", sorted(RFC5903))
def test_ecp_rfc5903_vectors(number: int) -> None:
    """KE payload = x | y, shared secret = x only (RFC 5903 7, 9 with errata)."""
    group = GROUPS[number]
    assert isinstance(group, EcpGroup)
    i, gi, r, gr, gir = (bytes.fromhex(v) for v in RFC5903[number])
    priv_i, pub_i = group.private_from_int(int.from_bytes(i, "big"))
    priv_r, pub_r = group.private_from_int(int.from_bytes(r, "big"))
    assert pub_i == gi
    assert pub_r == gr
    assert group.shared(priv_i, gr) == gir
    assert group.shared(priv_r, gi) == gir


@pytest.mark.parametrize("number", MODP)
def test_modp_rejects_bad_public_values(number: int) -> None:
    group = GROUPS[number]
    assert isinstance(group, ModpGroup)
    priv, pub = group.generate(seeded_rng(5))
    size, p = group.public_size, group.prime
    for y in (0, 1, p - 1, p, p + 1, 2 ** (8 * size) - 1):
        with pytest.raises(DHError):
            group.shared(priv, y.to_bytes(size, "big"))
    with pytest.raises(DHError):
        group.shared(priv, pub[1:])  # RFC 2409: padded to the prime's length
    with pytest.raises(DHError):
        group.shared(priv, b"\x00" + pub)
    assert group.shared(priv, (2).to_bytes(size, "big"))  # smallest valid value


@pytest.mark.parametrize("number", ECP)
def test_ecp_rejects_bad_points(number: int) -> None:
    group = GROUPS[number]
    assert isinstance(group, EcpGroup)
    priv, pub = group.generate(seeded_rng(6))
    size = group.coordinate_size
    off_curve = pub[:-1] + bytes([pub[-1] ^ 1])
    zeros = bytes(2 * size)
    huge = b"\xff" * (2 * size)
    for bad in (off_curve, zeros, huge, pub[:-1], pub + b"\x00", pub[:size]):
        with pytest.raises(DHError) as info:
            group.shared(priv, bad)
        assert isinstance(info.value, ParseError)


def test_private_key_repr_hides_secret_and_group_mismatch() -> None:
    priv, _ = GROUPS[19].generate(seeded_rng(9))
    assert repr(priv) == "<DHPrivateKey group 19>"
    _, pub14 = GROUPS[14].generate(seeded_rng(9))
    with pytest.raises(ValueError):
        GROUPS[14].shared(priv, pub14)


def test_get_group() -> None:
    assert get_group(14) is GROUPS[14]
    assert set(GROUPS) >= {2, 14, 15, 16, 19, 20}
    with pytest.raises(ValueError):
        get_group(1)  # MODP768 is not implemented
    with pytest.raises(ValueError):
        get_group(5)
