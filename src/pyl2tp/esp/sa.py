"""ESP security associations (RFC 4303): one object per direction, sans-I/O.

An :class:`OutboundSA` turns a payload (a UDP datagram in transport mode, an IP packet
in tunnel mode) into an ESP packet that starts at the SPI; the shell sends it as IP
protocol 50 or as the payload of a UDP/4500 datagram (RFC 3948). An :class:`InboundSA`
does the reverse and raises :class:`ESPError` for a packet to drop, counting the reason.

Crypto contexts are made once per SA (see notes/perf-ceiling): one ``AESGCM`` object, or
one CBC encryptor and decryptor kept across packets plus a keyed HMAC template that is
copied per packet. CBC with a persistent encryptor: its chaining state is the last
ciphertext block it produced, so XOR-ing the first plaintext block with
``IV ^ last_block`` makes the first output block ``E(P1 ^ IV)``, which is plain CBC
under our random IV. Decryption feeds ``IV | ciphertext`` to a persistent decryptor
and drops the first (meaningless) output block.
"""

from __future__ import annotations

import hmac
import os
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pyl2tp.esp.replay import DEFAULT_WINDOW, MAX_WINDOW, ReplayVerdict, ReplayWindow
from pyl2tp.wire.esp import ESP_HEADER, MAX_SEQ, PAD_BYTES

try:  # cryptography >= 43 keeps 3DES in the "decrepit" module
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES

__all__ = [
    "AUTH_SPECS",
    "ENC_SPECS",
    "SEQ_SOFT_LIMIT",
    "AuthAlg",
    "AuthSpec",
    "DropReason",
    "ESPError",
    "ESPParams",
    "EncAlg",
    "EncSpec",
    "InboundSA",
    "InboundStats",
    "OutboundSA",
    "RandomPool",
    "SAExpiredError",
    "auth_name",
    "enc_name",
]

# RFC 4303 3.3.3: rekey well before the 32-bit counter runs out (16 M packets of margin,
# about three minutes at 100 kpps, far more at real rates).
SEQ_SOFT_LIMIT = MAX_SEQ - 0x00FFFFFF

_IV64 = struct.Struct("!Q")


class EncAlg(IntEnum):
    """ESP transform IDs of IKEv1 Quick Mode (RFC 2407 4.4.4, IANA) that we implement."""

    ESP_3DES = 3
    ESP_AES_CBC = 12  # RFC 3602; key length from the Key Length attribute
    ESP_AES_GCM_16 = 20  # RFC 4106, 16-byte ICV


class AuthAlg(IntEnum):
    """IKEv1 Authentication Algorithm attribute values (RFC 2407 4.5, RFC 4868 IANA)."""

    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    HMAC_SHA2_256 = 5
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7


_ENC_NAMES = {EncAlg.ESP_3DES: "3des-cbc", EncAlg.ESP_AES_CBC: "aes-cbc",
              EncAlg.ESP_AES_GCM_16: "aes-gcm-16"}
_AUTH_NAMES = {AuthAlg.HMAC_MD5: "hmac-md5-96", AuthAlg.HMAC_SHA1: "hmac-sha1-96",
               AuthAlg.HMAC_SHA2_256: "hmac-sha256-128", AuthAlg.HMAC_SHA2_384: "hmac-sha384-192",
               AuthAlg.HMAC_SHA2_512: "hmac-sha512-256"}


def enc_name(alg: int) -> str:
    """Our name of an IKEv1 ESP transform ID (ValueError if we do not implement it)."""
    return _ENC_NAMES[EncAlg(alg)]


def auth_name(alg: int | None) -> str:
    """Our name of an IKEv1 authentication attribute value; None (AEAD) is "null".

    ValueError for a value we do not implement.
    """
    return "null" if alg is None else _AUTH_NAMES[AuthAlg(alg)]


@dataclass(frozen=True, slots=True)
class EncSpec:
    """Sizes of an encryption transform, in bytes."""

    key_sizes: tuple[int, ...]  # including the 4-byte salt for GCM (RFC 4106 8.1)
    block: int  # alignment of the encrypted data (RFC 4303 2.4: at least 4)
    iv: int
    icv: int  # the AEAD's own ICV, 0 for CBC
    aead: bool


@dataclass(frozen=True, slots=True)
class AuthSpec:
    """An HMAC integrity transform: hash, key length and truncated ICV length."""

    hash: Callable[[], hashes.HashAlgorithm]
    key_size: int
    icv: int


ENC_SPECS: dict[str, EncSpec] = {
    "aes-gcm-16": EncSpec((20, 28, 36), 4, 8, 16, True),  # RFC 4106
    "aes-cbc": EncSpec((16, 24, 32), 16, 16, 0, False),  # RFC 3602
    "3des-cbc": EncSpec((24,), 8, 8, 0, False),  # RFC 2451; off by default in policy
}
AUTH_SPECS: dict[str, AuthSpec] = {
    "hmac-md5-96": AuthSpec(hashes.MD5, 16, 12),  # RFC 2403
    "hmac-sha1-96": AuthSpec(hashes.SHA1, 20, 12),  # RFC 2404
    "hmac-sha256-128": AuthSpec(hashes.SHA256, 32, 16),  # RFC 4868 2.3: truncated to half
    "hmac-sha384-192": AuthSpec(hashes.SHA384, 48, 24),
    "hmac-sha512-256": AuthSpec(hashes.SHA512, 64, 32),
}


@dataclass(frozen=True, slots=True)
class ESPParams:
    """Everything one direction of an ESP SA needs; the keys never appear in repr().

    ``local``/``peer`` and the ports are the outer addresses (for the shell and the key
    log); lifetimes of 0 mean "no limit" (the sequence-number limit always applies).
    """

    spi: int
    enc: str
    enc_key: bytes = field(repr=False)
    auth: str
    auth_key: bytes = field(repr=False)
    mode: Literal["transport", "tunnel"]
    udp_encap: bool = False
    local: str = ""
    peer: str = ""
    local_port: int = 4500
    peer_port: int = 4500
    replay_window: int = DEFAULT_WINDOW
    soft_packets: int = 0
    hard_packets: int = 0
    soft_bytes: int = 0
    hard_bytes: int = 0

    @property
    def transform(self) -> str:
        """The algorithms as people read them: ``aes-cbc/hmac-sha1-96``, or ``aes-gcm-16``
        alone for AEAD."""
        return self.enc if self.auth == "null" else f"{self.enc}/{self.auth}"

    def __post_init__(self) -> None:
        if not 0 < self.spi <= 0xFFFFFFFF:
            raise ValueError(f"SPI {self.spi:#x} out of range")
        if self.spi <= 255:  # RFC 4303 2.1: 1..255 are reserved by IANA
            raise ValueError(f"SPI {self.spi} is reserved (1..255)")
        spec = ENC_SPECS.get(self.enc)
        if spec is None:
            raise ValueError(f"unknown ESP encryption {self.enc!r}")
        if len(self.enc_key) not in spec.key_sizes:
            raise ValueError(f"{self.enc} key must be {spec.key_sizes} bytes, "
                             f"not {len(self.enc_key)}")
        if spec.aead:
            if self.auth != "null" or self.auth_key:
                raise ValueError(f"{self.enc} is an AEAD: auth must be 'null' without a key")
        else:
            auth = AUTH_SPECS.get(self.auth)
            if auth is None:  # RFC 4303 3.2: we never offer confidentiality without integrity
                raise ValueError(f"{self.enc} needs an integrity algorithm, not {self.auth!r}")
            if len(self.auth_key) != auth.key_size:
                raise ValueError(f"{self.auth} key must be {auth.key_size} bytes, "
                                 f"not {len(self.auth_key)}")
        if self.mode not in ("transport", "tunnel"):
            raise ValueError(f"mode must be transport or tunnel, not {self.mode!r}")
        if not 0 <= self.replay_window <= MAX_WINDOW:
            raise ValueError(f"replay window {self.replay_window} out of range 0..{MAX_WINDOW}")

    @property
    def spec(self) -> EncSpec:
        """Sizes of the encryption transform."""
        return ENC_SPECS[self.enc]

    @property
    def icv_size(self) -> int:
        """Bytes of ICV at the end of every packet."""
        spec = ENC_SPECS[self.enc]
        return spec.icv if spec.aead else AUTH_SPECS[self.auth].icv

    @property
    def overhead(self) -> int:
        """ESP bytes added to a payload at most: header, IV, worst padding, trailer, ICV."""
        spec = ENC_SPECS[self.enc]
        return ESP_HEADER.size + spec.iv + spec.block - 1 + 2 + self.icv_size


class DropReason(StrEnum):
    """Why an inbound packet was dropped (the ``reason`` of :class:`ESPError`)."""

    SHORT = "short"
    BAD_SPI = "bad-spi"
    REPLAY_DUPLICATE = "replay-duplicate"
    REPLAY_TOO_OLD = "replay-too-old"
    BAD_LENGTH = "bad-length"  # ciphertext not a whole number of blocks
    ICV = "icv-mismatch"
    PAD_LENGTH = "bad-pad-length"
    PADDING = "bad-padding"
    SEQ_EXHAUSTED = "seq-exhausted"  # outbound: the SA may not send any more
    LIFETIME = "lifetime-expired"  # outbound: hard byte limit reached


class ESPError(Exception):
    """A packet refused by an SA; ``reason`` is a :class:`DropReason`."""

    def __init__(self, reason: DropReason, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"{reason}: {detail}" if detail else str(reason))


class SAExpiredError(ESPError):
    """The outbound SA reached a hard limit (RFC 4303 3.3.3): rekey, then send on the new SA."""


class RandomPool:
    """A ``random_bytes`` for production: ``os.urandom`` read in chunks, handed out in slices.

    One getrandom() call per ~250 CBC IVs instead of one per packet. A child process
    drops the buffer it inherited at fork(), so two processes never share IVs.
    """

    __slots__ = ("__weakref__", "_buf", "_chunk", "_pos")

    def __init__(self, chunk: int = 4096) -> None:
        self._chunk = chunk
        self._buf = b""
        self._pos = 0
        _POOLS.add(self)

    def __call__(self, size: int) -> bytes:
        pos = self._pos
        end = pos + size
        if end > len(self._buf):
            self._buf = os.urandom(max(self._chunk, size))
            pos, end = 0, size
        self._pos = end
        return self._buf[pos:end]

    def _forget(self) -> None:
        self._buf = b""
        self._pos = 0


_POOLS: weakref.WeakSet[RandomPool] = weakref.WeakSet()


def _reset_pools_after_fork() -> None:
    for pool in list(_POOLS):
        pool._forget()


os.register_at_fork(after_in_child=_reset_pools_after_fork)


class _GcmTransform:
    """AES-GCM with a 16-byte ICV (RFC 4106): one AESGCM object for the SA's life."""

    __slots__ = ("_decrypt", "_encrypt", "_salt")

    def __init__(self, key: bytes) -> None:
        aead = AESGCM(key[:-4])
        self._encrypt = aead.encrypt
        self._decrypt = aead.decrypt
        self._salt = key[-4:]  # RFC 4106 8.1: the last 4 bytes of the keying material

    def seal(self, header: bytes, seq: int, plain: bytes) -> bytes:
        # RFC 4106 3.1: the IV must be unique per key; the sequence number is (it never
        # cycles). RFC 4106 5: the AAD is SPI | Sequence Number (32-bit, no ESN).
        iv = _IV64.pack(seq)
        return header + iv + self._encrypt(self._salt + iv, plain, header)

    def open(self, packet: bytes, view: memoryview, size: int) -> bytes | None:
        try:
            return self._decrypt(self._salt + packet[8:16], view[16:size], view[:8])
        except InvalidTag:
            return None


class _CbcHmacTransform:
    """AES-CBC (RFC 3602) or 3DES-CBC (RFC 2451) with an HMAC ICV (RFC 2404, RFC 4868).

    One CBC encryptor and one decryptor for the SA's life, and a keyed HMAC template
    copied per packet (see the module docstring for the IV handling).
    """

    __slots__ = ("_block", "_chain", "_decrypt", "_encrypt", "_icv", "_mac", "_random")

    def __init__(self, params: ESPParams, random_bytes: Callable[[int], bytes]) -> None:
        algorithm = (TripleDES(params.enc_key) if params.enc == "3des-cbc"
                     else algorithms.AES(params.enc_key))
        self._block = block = ENC_SPECS[params.enc].block
        self._random = random_bytes
        chain = random_bytes(block)
        self._chain = int.from_bytes(chain, "big")
        enc: CipherContext = Cipher(algorithm, modes.CBC(chain)).encryptor()
        dec: CipherContext = Cipher(algorithm, modes.CBC(chain)).decryptor()
        self._encrypt = enc.update
        self._decrypt = dec.update
        spec = AUTH_SPECS[params.auth]
        self._mac = c_hmac.HMAC(params.auth_key, spec.hash())
        self._icv = spec.icv

    def seal(self, header: bytes, seq: int, plain: bytes) -> bytes:
        block = self._block
        iv = self._random(block)  # RFC 3602 3: unpredictable per packet
        # plain always fills whole blocks, so the encryptor never holds a partial block.
        first = (int.from_bytes(plain[:block], "big") ^ int.from_bytes(iv, "big")
                 ^ self._chain)
        out = self._encrypt(first.to_bytes(block, "big") + plain[block:])
        self._chain = int.from_bytes(out[-block:], "big")
        body = header + iv + out
        mac = self._mac.copy()
        mac.update(body)
        # RFC 2404 / RFC 4868 2.3: the ICV is the leftmost 96 bits / half of the HMAC.
        return body + mac.finalize()[:self._icv]

    def open(self, packet: bytes, view: memoryview, size: int) -> bytes | None:
        icv = self._icv
        mac = self._mac.copy()
        mac.update(view[:size - icv])
        if not hmac.compare_digest(mac.finalize()[:icv], view[size - icv:size]):
            return None
        # The first output block is garbage: it belongs to the previous packet's chain.
        # Its length is a block multiple (checked by the caller), so nothing stays buffered.
        return self._decrypt(view[ESP_HEADER.size:size - icv])[self._block:]


def _no_random(size: int) -> bytes:
    """The randomness of an inbound transform, which never encrypts."""
    return bytes(size)


def _transform(params: ESPParams,
               random_bytes: Callable[[int], bytes]) -> _GcmTransform | _CbcHmacTransform:
    if ENC_SPECS[params.enc].aead:
        return _GcmTransform(params.enc_key)
    return _CbcHmacTransform(params, random_bytes)


class OutboundSA:
    """The sending half of an ESP SA: ``encrypt(payload, next_header)`` -> ESP packet.

    ``random_bytes(n)`` supplies the CBC IVs (RFC 3602 3: unpredictable); AES-GCM uses the
    sequence number as its 8-byte IV, unique per key (RFC 4106 3.1).
    """

    __slots__ = ("_align", "_hard_bytes", "_hard_seq", "_seal", "_soft_bytes", "_soft_seq",
                 "_spi", "_trailers", "bytes", "params", "seq")

    def __init__(self, params: ESPParams, random_bytes: Callable[[int], bytes]) -> None:
        self.params = params
        self.seq = 0  # RFC 4303 3.3.3: the first packet carries 1
        self.bytes = 0
        self._spi = params.spi
        self._align = params.spec.block
        self._hard_seq = min(params.hard_packets or MAX_SEQ, MAX_SEQ)
        self._soft_seq = min(params.soft_packets or SEQ_SOFT_LIMIT, SEQ_SOFT_LIMIT,
                             self._hard_seq)
        self._hard_bytes = params.hard_bytes
        self._soft_bytes = params.soft_bytes
        self._trailers: dict[int, bytes] = {}
        self._seal = _transform(params, random_bytes).seal

    @property
    def spi(self) -> int:
        """The SPI the peer chose for this SA."""
        return self._spi

    @property
    def packets(self) -> int:
        """Packets sent; equal to the last sequence number used."""
        return self.seq

    @property
    def soft_limit_reached(self) -> bool:
        """Time to start a rekey (sequence number, packets or bytes near the end)."""
        return (self.seq >= self._soft_seq
                or (self._soft_bytes > 0 and self.bytes >= self._soft_bytes)
                or self.hard_limit_reached)

    @property
    def hard_limit_reached(self) -> bool:
        """The SA may send no more packets."""
        return self.seq >= self._hard_seq or (self._hard_bytes > 0
                                              and self.bytes >= self._hard_bytes)

    def _trailer(self, padlen: int, next_header: int) -> bytes:
        key = padlen << 8 | next_header
        trailer = self._trailers.get(key)
        if trailer is None:
            trailer = self._trailers[key] = PAD_BYTES[:padlen] + bytes((padlen, next_header))
        return trailer

    def encrypt(self, payload: bytes, next_header: int) -> bytes:
        """The ESP packet (SPI onward) carrying ``payload``.

        Raises :class:`SAExpiredError` past the last sequence number (RFC 4303 3.3.3: the
        counter must not cycle) or the hard byte lifetime.
        """
        seq = self.seq + 1
        if seq > self._hard_seq:
            raise SAExpiredError(DropReason.SEQ_EXHAUSTED, f"SPI {self._spi:#010x}")
        if self._hard_bytes and self.bytes >= self._hard_bytes:
            raise SAExpiredError(DropReason.LIFETIME, f"SPI {self._spi:#010x}")
        self.seq = seq
        size = len(payload)
        self.bytes += size
        # RFC 4303 2.4: pad so the data fills whole blocks and ends on 4 bytes.
        plain = payload + self._trailer(-(size + 2) % self._align, next_header)
        return self._seal(ESP_HEADER.pack(self._spi, seq), seq, plain)


@dataclass(slots=True)
class InboundStats:
    """Counters of an inbound SA; drops are counted per reason, never logged per packet."""

    packets: int = 0
    bytes: int = 0
    replayed: int = 0
    auth_failed: int = 0
    bad_padding: int = 0
    malformed: int = 0  # short, wrong SPI, ciphertext length not a block multiple


class InboundSA:
    """The receiving half of an ESP SA: ``decrypt(packet)`` -> (next header, payload).

    Order (RFC 4303 3.4.3): SPI, anti-replay check, ICV, decryption, window update, then
    the padding check. A next header of 59 is a dummy packet the caller drops (RFC 4303 2.6).
    """

    __slots__ = ("_block", "_icv", "_iv", "_min_len", "_open", "_spi", "params", "stats",
                 "window")

    def __init__(self, params: ESPParams) -> None:
        self.params = params
        self.stats = InboundStats()
        self.window = ReplayWindow(params.replay_window)
        self._spi = params.spi
        spec = params.spec
        self._block = spec.block
        self._iv = spec.iv
        self._icv = params.icv_size
        self._open = _transform(params, _no_random).open
        # Header, IV, one block (or 4 bytes) of encrypted data holding the trailer, ICV.
        self._min_len = ESP_HEADER.size + spec.iv + spec.block + self._icv

    @property
    def spi(self) -> int:
        """The SPI we chose for this SA."""
        return self._spi

    @property
    def soft_limit_reached(self) -> bool:
        """The byte or packet soft lifetime has passed: time to rekey."""
        p = self.params
        return ((p.soft_packets > 0 and self.stats.packets >= p.soft_packets)
                or (p.soft_bytes > 0 and self.stats.bytes >= p.soft_bytes)
                or self.window.top >= SEQ_SOFT_LIMIT)

    @property
    def hard_limit_reached(self) -> bool:
        """The byte or packet hard lifetime has passed: the SA should be deleted."""
        p = self.params
        return ((p.hard_packets > 0 and self.stats.packets >= p.hard_packets)
                or (p.hard_bytes > 0 and self.stats.bytes >= p.hard_bytes))

    def _drop(self, reason: DropReason, detail: str = "") -> ESPError:
        stats = self.stats
        if reason is DropReason.ICV:
            stats.auth_failed += 1
        elif reason is DropReason.REPLAY_DUPLICATE or reason is DropReason.REPLAY_TOO_OLD:
            stats.replayed += 1
        elif reason is DropReason.PADDING or reason is DropReason.PAD_LENGTH:
            stats.bad_padding += 1
        else:
            stats.malformed += 1
        return ESPError(reason, detail)

    def decrypt(self, packet: bytes) -> tuple[int, bytes]:
        """(next header, payload) of an ESP packet (SPI onward); ESPError to drop it."""
        size = len(packet)
        if size < self._min_len:
            raise self._drop(DropReason.SHORT, f"{size} bytes")
        spi, seq = ESP_HEADER.unpack_from(packet)
        if spi != self._spi:
            raise self._drop(DropReason.BAD_SPI, f"{spi:#010x}")
        window = self.window
        verdict = window.check(seq)
        if verdict:  # RFC 4303 3.4.3: check before the ICV...
            raise self._drop(DropReason.REPLAY_DUPLICATE if verdict is ReplayVerdict.DUPLICATE
                             else DropReason.REPLAY_TOO_OLD, f"seq {seq}")
        # RFC 4303 2.4: the encrypted data is a whole number of blocks (4 bytes for GCM).
        if (size - ESP_HEADER.size - self._iv - self._icv) % self._block:
            raise self._drop(DropReason.BAD_LENGTH, f"{size} bytes")
        plain = self._open(packet, memoryview(packet), size)
        if plain is None:
            raise self._drop(DropReason.ICV, f"seq {seq}")
        window.update(seq)  # ... and move the window only once the ICV verified.
        # RFC 4303 2.4: Pad Length must fit and the padding must be 1, 2, 3...
        padlen = plain[-2]
        end = len(plain) - 2 - padlen
        if end < 0:
            raise self._drop(DropReason.PAD_LENGTH, f"{padlen}")
        if plain[end:-2] != PAD_BYTES[:padlen]:
            raise self._drop(DropReason.PADDING)
        stats = self.stats
        stats.packets += 1
        stats.bytes += end
        return plain[-1], plain[:end]
