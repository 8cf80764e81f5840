"""Diffie-Hellman groups for IKEv1 KE payloads: MODP 2, 14, 15, 16 and ECP 19, 20, 21.

MODP groups (RFC 2409 6.2, RFC 3526) are computed with Python integers: ``cryptography``
has deprecated finite-field DH, and with the short exponents RFC 3526 8 allows (safe
primes) one ``pow`` costs a few milliseconds. ECP groups (RFC 5903) use ``cryptography``.

Wire forms, RFC 5903 7 and 9 (as corrected by its errata, which matches what strongSwan,
Windows and libreswan do): the KE payload of an ECP group is x | y, each coordinate
padded to the field size; the shared secret g^xy is the x coordinate only. MODP public
values and shared secrets are padded to the prime's length.

Randomness is injected: ``generate(rng)`` takes an ``rng(n) -> bytes`` (default
:func:`secrets.token_bytes`), so tests are deterministic.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric import ec

from pyl2tp.errors import ParseError

__all__ = [
    "GROUPS",
    "DHError",
    "DHGroup",
    "DHPrivateKey",
    "EcpGroup",
    "ModpGroup",
    "Rng",
    "get_group",
]

Rng = Callable[[int], bytes]


class DHError(ParseError):
    """A peer's public value is malformed or unacceptable (answer INVALID-KEY-INFORMATION)."""


class DHPrivateKey:
    """An opaque private DH value; its repr never shows the secret."""

    __slots__ = ("_secret", "group")

    def __init__(self, group: int, secret: int | ec.EllipticCurvePrivateKey) -> None:
        self.group = group
        self._secret = secret

    def __repr__(self) -> str:
        return f"<DHPrivateKey group {self.group}>"


class DHGroup(ABC):
    """One DH group: sizes of its values, key generation and the shared secret."""

    number: int
    name: str
    public_size: int  # bytes of the KE payload
    shared_size: int  # bytes of g^xy

    @abstractmethod
    def generate(self, rng: Rng | None = None) -> tuple[DHPrivateKey, bytes]:
        """A new private value and the matching public value (KE payload data)."""

    @abstractmethod
    def shared(self, private: DHPrivateKey, peer_public: bytes) -> bytes:
        """g^xy from our private value and the peer's KE data; DHError if it is bad."""

    def __repr__(self) -> str:
        return f"<DHGroup {self.number} {self.name}>"


class ModpGroup(DHGroup):
    """A MODP group with generator 2 over a safe prime."""

    def __init__(self, number: int, name: str, prime_hex: str, exponent_bits: int) -> None:
        self.number = number
        self.name = name
        self.prime = int(prime_hex.replace(" ", ""), 16)
        self.generator = 2
        self.public_size = (self.prime.bit_length() + 7) // 8
        self.shared_size = self.public_size
        self.exponent_bits = exponent_bits

    def private_from_int(self, x: int) -> tuple[DHPrivateKey, bytes]:
        """Key pair from a given exponent (tests, known-answer checks)."""
        if not 1 < x < self.prime - 1:
            raise ValueError("exponent out of range")
        y = pow(self.generator, x, self.prime)
        return DHPrivateKey(self.number, x), y.to_bytes(self.public_size, "big")

    def generate(self, rng: Rng | None = None) -> tuple[DHPrivateKey, bytes]:
        draw = rng or secrets.token_bytes
        # RFC 3526 8: an exponent of twice the group's strength is enough for safe primes.
        nbytes = (self.exponent_bits + 7) // 8
        x = int.from_bytes(draw(nbytes), "big") >> (nbytes * 8 - self.exponent_bits)
        return self.private_from_int(x | (1 << (self.exponent_bits - 1)))

    def shared(self, private: DHPrivateKey, peer_public: bytes) -> bytes:
        secret = private._secret
        if private.group != self.number or not isinstance(secret, int):
            raise ValueError("private value of another group")
        if len(peer_public) != self.public_size:
            raise DHError(f"group {self.number} public value of {len(peer_public)} bytes")
        y = int.from_bytes(peer_public, "big")
        # 1 < y < p-1 rules out the trivial subgroups {1} and {1, p-1} of a safe prime.
        if not 1 < y < self.prime - 1:
            raise DHError(f"group {self.number} public value out of range")
        return pow(y, secret, self.prime).to_bytes(self.shared_size, "big")


class EcpGroup(DHGroup):
    """An ECP group over a NIST prime curve (RFC 5903)."""

    def __init__(self, number: int, name: str, curve: ec.EllipticCurve, order: int) -> None:
        self.number = number
        self.name = name
        self.curve = curve
        self.order = order
        self.coordinate_size = (curve.key_size + 7) // 8
        self.public_size = 2 * self.coordinate_size
        self.shared_size = self.coordinate_size

    def private_from_int(self, d: int) -> tuple[DHPrivateKey, bytes]:
        """Key pair from a given scalar (tests, known-answer checks)."""
        if not 0 < d < self.order:
            raise ValueError("scalar out of range")
        key = ec.derive_private_key(d, self.curve)
        numbers = key.public_key().public_numbers()
        size = self.coordinate_size
        public = numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")
        return DHPrivateKey(self.number, key), public

    def generate(self, rng: Rng | None = None) -> tuple[DHPrivateKey, bytes]:
        draw = rng or secrets.token_bytes
        # 64 extra bits make the reduction bias negligible (FIPS 186-4 B.4.1).
        d = int.from_bytes(draw(self.coordinate_size + 8), "big") % (self.order - 1) + 1
        return self.private_from_int(d)

    def shared(self, private: DHPrivateKey, peer_public: bytes) -> bytes:
        key = private._secret
        if private.group != self.number or not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError("private value of another group")
        if len(peer_public) != self.public_size:
            raise DHError(f"group {self.number} public value of {len(peer_public)} bytes")
        try:
            # Rejects coordinates >= p and points not on the curve.
            peer = ec.EllipticCurvePublicKey.from_encoded_point(self.curve, b"\x04" + peer_public)
        except ValueError:
            raise DHError(f"group {self.number} public value is not on the curve") from None
        # RFC 5903 9 (errata 9): the shared secret is the x coordinate alone.
        return key.exchange(ec.ECDH(), peer)


# RFC 2409 6.2 (group 2) and RFC 3526 3-5 (groups 14-16): p = 2^n - 2^(n-64) - 1 +
# 2^64 * ([2^(n-130) pi] + k); tests recompute them from that formula.
_MODP_1024 = (
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74 "
    "020BBEA6 3B139B22 514A0879 8E3404DD EF9519B3 CD3A431B 302B0A6D F25F1437 "
    "4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED "
    "EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE65381 FFFFFFFF FFFFFFFF"
)
_MODP_2048 = (
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74 "
    "020BBEA6 3B139B22 514A0879 8E3404DD EF9519B3 CD3A431B 302B0A6D F25F1437 "
    "4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED "
    "EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05 "
    "98DA4836 1C55D39A 69163FA8 FD24CF5F 83655D23 DCA3AD96 1C62F356 208552BB "
    "9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B "
    "E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718 "
    "3995497C EA956AE5 15D22618 98FA0510 15728E5A 8AACAA68 FFFFFFFF FFFFFFFF"
)
_MODP_3072 = (
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74 "
    "020BBEA6 3B139B22 514A0879 8E3404DD EF9519B3 CD3A431B 302B0A6D F25F1437 "
    "4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED "
    "EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05 "
    "98DA4836 1C55D39A 69163FA8 FD24CF5F 83655D23 DCA3AD96 1C62F356 208552BB "
    "9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B "
    "E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718 "
    "3995497C EA956AE5 15D22618 98FA0510 15728E5A 8AAAC42D AD33170D 04507A33 "
    "A85521AB DF1CBA64 ECFB8504 58DBEF0A 8AEA7157 5D060C7D B3970F85 A6E1E4C7 "
    "ABF5AE8C DB0933D7 1E8C94E0 4A25619D CEE3D226 1AD2EE6B F12FFA06 D98A0864 "
    "D8760273 3EC86A64 521F2B18 177B200C BBE11757 7A615D6C 770988C0 BAD946E2 "
    "08E24FA0 74E5AB31 43DB5BFC E0FD108E 4B82D120 A93AD2CA FFFFFFFF FFFFFFFF"
)
_MODP_4096 = (
    "FFFFFFFF FFFFFFFF C90FDAA2 2168C234 C4C6628B 80DC1CD1 29024E08 8A67CC74 "
    "020BBEA6 3B139B22 514A0879 8E3404DD EF9519B3 CD3A431B 302B0A6D F25F1437 "
    "4FE1356D 6D51C245 E485B576 625E7EC6 F44C42E9 A637ED6B 0BFF5CB6 F406B7ED "
    "EE386BFB 5A899FA5 AE9F2411 7C4B1FE6 49286651 ECE45B3D C2007CB8 A163BF05 "
    "98DA4836 1C55D39A 69163FA8 FD24CF5F 83655D23 DCA3AD96 1C62F356 208552BB "
    "9ED52907 7096966D 670C354E 4ABC9804 F1746C08 CA18217C 32905E46 2E36CE3B "
    "E39E772C 180E8603 9B2783A2 EC07A28F B5C55DF0 6F4C52C9 DE2BCBF6 95581718 "
    "3995497C EA956AE5 15D22618 98FA0510 15728E5A 8AAAC42D AD33170D 04507A33 "
    "A85521AB DF1CBA64 ECFB8504 58DBEF0A 8AEA7157 5D060C7D B3970F85 A6E1E4C7 "
    "ABF5AE8C DB0933D7 1E8C94E0 4A25619D CEE3D226 1AD2EE6B F12FFA06 D98A0864 "
    "D8760273 3EC86A64 521F2B18 177B200C BBE11757 7A615D6C 770988C0 BAD946E2 "
    "08E24FA0 74E5AB31 43DB5BFC E0FD108E 4B82D120 A9210801 1A723C12 A787E6D7 "
    "88719A10 BDBA5B26 99C32718 6AF4E23C 1A946834 B6150BDA 2583E9CA 2AD44CE8 "
    "DBBBC2DB 04DE8EF9 2E8EFC14 1FBECAA6 287C5947 4E6BC05D 99B2964F A090C3A2 "
    "233BA186 515BE7ED 1F612970 CEE2D7AF B81BDD76 2170481C D0069127 D5B05AA9 "
    "93B4EA98 8D8FDDC1 86FFB7DC 90A6C08F 4DF435C9 34063199 FFFFFFFF FFFFFFFF"
)

# Curve orders (FIPS 186-4 D.1.2), for drawing scalars.
_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)
_P384_ORDER = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
    "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
    16,
)
_P521_ORDER = int(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
    "FA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)

# Exponent sizes: the upper end of RFC 3526 8's ranges; group 2 gets 256 bits.
GROUPS: Mapping[int, DHGroup] = MappingProxyType(
    {
        2: ModpGroup(2, "MODP-1024", _MODP_1024, 256),
        14: ModpGroup(14, "MODP-2048", _MODP_2048, 320),
        15: ModpGroup(15, "MODP-3072", _MODP_3072, 420),
        16: ModpGroup(16, "MODP-4096", _MODP_4096, 480),
        19: EcpGroup(19, "ECP-256", ec.SECP256R1(), _P256_ORDER),
        20: EcpGroup(20, "ECP-384", ec.SECP384R1(), _P384_ORDER),
        21: EcpGroup(21, "ECP-521", ec.SECP521R1(), _P521_ORDER),
    }
)


def get_group(number: int) -> DHGroup:
    """The group of a GROUP_DESCRIPTION value; ValueError if we do not implement it."""
    try:
        return GROUPS[number]
    except KeyError:
        raise ValueError(f"DH group {number} is not supported") from None
