"""IKEv1 cryptography: PRFs, key derivation, HASHes, IVs and ISAKMP body encryption.

Everything RFC 2409 computes, as pure functions over bytes, plus two small objects made
once per ISAKMP SA: :class:`IkeCipher` (the negotiated CBC cipher and key) and
:class:`IkeSACrypto` (that cipher plus the IV chains of RFC 2409 Appendix B).

Notation (RFC 2409 3.2): ``prf`` is the HMAC of the negotiated hash (no IKEv1 peer we
meet negotiates a separate PRF), g^xi / g^xr are the KE payload data, Ni_b / Nr_b the
nonce payload bodies, CKY-I / CKY-R the cookies, and SAi_b / IDii_b / IDir_b payload
bodies without their generic headers, exactly as sent.

No secret is ever logged; :class:`Phase1Keys` hides its values in repr().
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from pyl2tp.errors import ParseError
from pyl2tp.ike.proposals import HASH_NAMES, EncryptionAlgorithm, HashAlgorithm

__all__ = [
    "IkeCipher",
    "IkeSACrypto",
    "Phase1Keys",
    "Prf",
    "derive_phase1_keys",
    "expand_key",
    "hash_i",
    "hash_r",
    "informational_hash",
    "keymat",
    "nat_d_hash",
    "pad",
    "phase1_iv",
    "phase2_iv",
    "quick_hash1",
    "quick_hash2",
    "quick_hash3",
    "skeyid_psk",
    "skeyid_signature",
]

_MID = struct.Struct(">I")


class Prf:
    """The negotiated hash: ``prf(key, data)`` is its HMAC, ``hash(data)`` the plain hash."""

    __slots__ = ("_name", "algorithm", "digest_size")

    def __init__(self, algorithm: HashAlgorithm | int) -> None:
        try:
            self._name = HASH_NAMES[HashAlgorithm(algorithm)]
        except (KeyError, ValueError):
            raise ValueError(f"hash algorithm {algorithm} is not supported") from None
        self.algorithm = HashAlgorithm(algorithm)
        self.digest_size = hashlib.new(self._name).digest_size

    def __call__(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self._name)

    def hash(self, data: bytes) -> bytes:
        """The plain hash (phase-1 IVs, NAT-D)."""
        return hashlib.new(self._name, data).digest()


# -- phase 1 key material (RFC 2409 5) --------------------------------------------------


def skeyid_psk(prf: Prf, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    """RFC 2409 5: SKEYID = prf(pre-shared-key, Ni_b | Nr_b)."""
    return prf(psk, ni_b + nr_b)


def skeyid_signature(prf: Prf, ni_b: bytes, nr_b: bytes, gxy: bytes) -> bytes:
    """RFC 2409 5: SKEYID = prf(Ni_b | Nr_b, g^xy) for signature authentication."""
    return prf(ni_b + nr_b, gxy)


@dataclass(frozen=True, slots=True, repr=False)
class Phase1Keys:
    """SKEYID and its derivatives, and the ISAKMP SA's encryption key."""

    skeyid: bytes
    skeyid_d: bytes  # keys phase-2 SAs (KEYMAT)
    skeyid_a: bytes  # authenticates phase-2 and informational messages
    skeyid_e: bytes
    enc_key: bytes  # "Ka": SKEYID_e expanded/truncated to the cipher's key length

    def __repr__(self) -> str:
        return f"<Phase1Keys {len(self.enc_key) * 8}-bit key>"


def derive_phase1_keys(
    prf: Prf, skeyid: bytes, gxy: bytes, cky_i: bytes, cky_r: bytes, key_length: int
) -> Phase1Keys:
    """SKEYID_d/a/e (RFC 2409 5) and the encryption key of ``key_length`` bytes (App. B)."""
    cookies = cky_i + cky_r
    d = prf(skeyid, gxy + cookies + b"\x00")
    a = prf(skeyid, d + gxy + cookies + b"\x01")
    e = prf(skeyid, a + gxy + cookies + b"\x02")
    return Phase1Keys(skeyid, d, a, e, expand_key(prf, e, key_length))


def expand_key(prf: Prf, skeyid_e: bytes, length: int) -> bytes:
    """RFC 2409 Appendix B: Ka = K1 | K2 | ... when SKEYID_e is too short, else its head.

    K1 = prf(SKEYID_e, 0) (a single zero octet), Kn = prf(SKEYID_e, Kn-1).
    """
    if len(skeyid_e) >= length:
        return skeyid_e[:length]
    out = b""
    block = b"\x00"
    while len(out) < length:
        block = prf(skeyid_e, block)
        out += block
    return out[:length]


def hash_i(
    prf: Prf,
    skeyid: bytes,
    gxi: bytes,
    gxr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idii_b: bytes,
) -> bytes:
    """RFC 2409 5: HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b)."""
    return prf(skeyid, gxi + gxr + cky_i + cky_r + sai_b + idii_b)


def hash_r(
    prf: Prf,
    skeyid: bytes,
    gxi: bytes,
    gxr: bytes,
    cky_i: bytes,
    cky_r: bytes,
    sai_b: bytes,
    idir_b: bytes,
) -> bytes:
    """RFC 2409 5: HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b).

    Arguments are in initiator/responder order; the swap is done here.
    """
    return prf(skeyid, gxr + gxi + cky_r + cky_i + sai_b + idir_b)


def phase1_iv(prf: Prf, gxi: bytes, gxr: bytes, block_size: int) -> bytes:
    """RFC 2409 App. B: the first phase-1 IV is hash(g^xi | g^xr), cut to the block size."""
    return prf.hash(gxi + gxr)[:block_size]


def phase2_iv(prf: Prf, last_phase1_block: bytes, message_id: int, block_size: int) -> bytes:
    """RFC 2409 App. B: a Quick Mode / informational exchange starts with
    hash(last phase-1 CBC output block | M-ID)."""
    return prf.hash(last_phase1_block + _MID.pack(message_id))[:block_size]


# -- phase 2 (RFC 2409 5.5, 5.7) ----------------------------------------------------------


def quick_hash1(prf: Prf, skeyid_a: bytes, message_id: int, after_hash: bytes) -> bytes:
    """HASH(1) = prf(SKEYID_a, M-ID | SA | Ni [| KE] [| IDci | IDcr]).

    ``after_hash`` is every payload after the HASH payload, generic headers included,
    padding excluded (what :func:`pyl2tp.wire.isakmp.encode_payloads` of them returns).
    """
    return prf(skeyid_a, _MID.pack(message_id) + after_hash)


def quick_hash2(
    prf: Prf, skeyid_a: bytes, message_id: int, ni_b: bytes, after_hash: bytes
) -> bytes:
    """HASH(2) = prf(SKEYID_a, M-ID | Ni_b | SA | Nr [| KE] [| IDci | IDcr])."""
    return prf(skeyid_a, _MID.pack(message_id) + ni_b + after_hash)


def quick_hash3(prf: Prf, skeyid_a: bytes, message_id: int, ni_b: bytes, nr_b: bytes) -> bytes:
    """HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b)."""
    return prf(skeyid_a, b"\x00" + _MID.pack(message_id) + ni_b + nr_b)


def informational_hash(prf: Prf, skeyid_a: bytes, message_id: int, after_hash: bytes) -> bytes:
    """RFC 2409 5.7: HASH(1) = prf(SKEYID_a, M-ID | N/D) of an informational exchange."""
    return quick_hash1(prf, skeyid_a, message_id, after_hash)


def keymat(
    prf: Prf,
    skeyid_d: bytes,
    protocol: int,
    spi: bytes,
    ni_b: bytes,
    nr_b: bytes,
    length: int,
    gqm_xy: bytes = b"",
) -> bytes:
    """RFC 2409 5.5: KEYMAT for one direction of a phase-2 SA, ``length`` bytes.

    K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b) and
    Kn = prf(SKEYID_d, Kn-1 | [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b). ``spi`` is the
    SPI the receiving side chose; ``gqm_xy`` the Quick Mode DH secret with PFS. ESP takes
    the encryption key first, then the integrity key (AES-GCM: key then 4-byte salt).
    """
    seed = gqm_xy + bytes([protocol]) + spi + ni_b + nr_b
    out = b""
    block = b""
    while len(out) < length:
        block = prf(skeyid_d, block + seed)
        out += block
    return out[:length]


def nat_d_hash(
    prf: Prf,
    cky_i: bytes,
    cky_r: bytes,
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | str,
    port: int,
) -> bytes:
    """RFC 3947 3.2: HASH(CKY-I | CKY-R | IP | Port) with the negotiated hash (not HMAC)."""
    ip = ipaddress.ip_address(address)
    return prf.hash(cky_i + cky_r + ip.packed + port.to_bytes(2, "big"))


# -- ISAKMP body encryption (RFC 2409 App. B) -------------------------------------------


def pad(plaintext: bytes, block_size: int) -> bytes:
    """RFC 2409 App. B padding: zeros up to a block boundary, always at least one byte,
    the last holding the number of padding bytes before it."""
    count = block_size - len(plaintext) % block_size
    return plaintext + bytes(count - 1) + bytes([count - 1])


class IkeCipher:
    """The negotiated CBC cipher and key of one ISAKMP SA (AES-CBC or 3DES-CBC)."""

    __slots__ = ("_algorithm", "block_size")

    def __init__(self, algorithm: EncryptionAlgorithm | int, key: bytes) -> None:
        if algorithm == EncryptionAlgorithm.AES_CBC and len(key) in (16, 24, 32):
            self._algorithm: algorithms.AES | TripleDES = algorithms.AES(key)
            self.block_size = 16
        elif algorithm == EncryptionAlgorithm.TRIPLE_DES_CBC and len(key) == 24:
            self._algorithm = TripleDES(key)
            self.block_size = 8
        else:
            raise ValueError(f"cipher {algorithm} with a {len(key)}-byte key is not supported")

    def __repr__(self) -> str:
        return f"<IkeCipher {type(self._algorithm).__name__}>"

    def encrypt(self, iv: bytes, plaintext: bytes) -> bytes:
        """CBC-encrypt whole blocks."""
        enc = Cipher(self._algorithm, modes.CBC(iv)).encryptor()
        return enc.update(plaintext) + enc.finalize()

    def decrypt(self, iv: bytes, ciphertext: bytes) -> bytes:
        """CBC-decrypt whole blocks; ParseError if the length is not a positive multiple."""
        if not ciphertext or len(ciphertext) % self.block_size:
            raise ParseError(f"encrypted body of {len(ciphertext)} bytes is not whole blocks")
        dec = Cipher(self._algorithm, modes.CBC(iv)).decryptor()
        return dec.update(ciphertext) + dec.finalize()


class IkeSACrypto:
    """Encryption of one ISAKMP SA's messages with the IV chains of RFC 2409 App. B.

    Main/Aggressive Mode (message ID 0) chain from :func:`phase1_iv`; each other message ID
    (Quick Mode, informational) starts from ``hash(last phase-1 CBC block | M-ID)`` taken
    when that ID is first used. After every message, sent or received, the next IV of its
    exchange is the message's last ciphertext block. At most ``max_exchanges`` message IDs
    are remembered (the oldest is forgotten first).
    """

    def __init__(
        self, cipher: IkeCipher, prf: Prf, phase1_iv: bytes, *, max_exchanges: int = 32
    ) -> None:
        if len(phase1_iv) != cipher.block_size:
            raise ValueError("IV size differs from the cipher's block size")
        self.cipher = cipher
        self.prf = prf
        self._phase1 = phase1_iv
        self._ivs: dict[int, bytes] = {}
        self._max = max_exchanges

    def iv(self, message_id: int) -> bytes:
        """The IV the next message of this exchange is encrypted with."""
        if message_id == 0:
            return self._phase1
        iv = self._ivs.get(message_id)
        if iv is None:
            iv = phase2_iv(self.prf, self._phase1, message_id, self.cipher.block_size)
        return iv

    def advance(self, message_id: int, ciphertext: bytes) -> None:
        """Record ``ciphertext`` as the exchange's latest message; its last block is the next IV."""
        last = ciphertext[-self.cipher.block_size :]
        if message_id == 0:
            self._phase1 = last
            return
        self._ivs.pop(message_id, None)
        self._ivs[message_id] = last
        while len(self._ivs) > self._max:
            del self._ivs[next(iter(self._ivs))]

    def forget(self, message_id: int) -> None:
        """Drop the IV of a finished exchange."""
        self._ivs.pop(message_id, None)

    def encrypt(self, message_id: int, plaintext: bytes) -> bytes:
        """Pad, encrypt with the exchange's IV, and advance it."""
        ciphertext = self.cipher.encrypt(
            self.iv(message_id), pad(plaintext, self.cipher.block_size)
        )
        self.advance(message_id, ciphertext)
        return ciphertext

    def encrypt_for(self, message_id: int) -> Callable[[bytes], bytes]:
        """``encrypt`` bound to a message ID, for :func:`pyl2tp.wire.isakmp.encode_message`."""
        return lambda plaintext: self.encrypt(message_id, plaintext)

    def decrypt(self, message_id: int, ciphertext: bytes, *, advance: bool = True) -> bytes:
        """Decrypt a received body (padding left on: decode with ``padded=True``).

        With ``advance=False`` the IV is kept, e.g. until the message's HASH verified; call
        :meth:`advance` then. A retransmitted message must not be decrypted twice.
        """
        plaintext = self.cipher.decrypt(self.iv(message_id), ciphertext)
        if advance:
            self.advance(message_id, ciphertext)
        return plaintext
