"""MD4 and single DES, which OpenSSL 3 no longer offers, for MS-CHAPv2 (RFC 2759).

Both come from pycryptodome. MD4 is checked against RFC 1320's test suite and the DES
key expansion against RFC 2759 section 9.3 in the unit tests.
"""

from __future__ import annotations

from Crypto.Cipher import DES
from Crypto.Hash import MD4

__all__ = ["des_encrypt_block", "expand_des_key", "md4"]


def md4(data: bytes) -> bytes:
    """The 16-byte MD4 digest of ``data`` (RFC 1320)."""
    return MD4.new(data).digest()


def expand_des_key(key7: bytes) -> bytes:
    """Spread a 7-byte (56-bit) key over 8 bytes and set odd parity in each low bit.

    RFC 2759 8.6 and 9.3: every eighth bit is a parity bit; each octet has an odd number
    of bits set.
    """
    if len(key7) != 7:
        raise ValueError("a DES key expands from exactly 7 bytes")
    bits = int.from_bytes(key7, "big")
    out = bytearray(8)
    for i in range(8):
        seven = (bits >> (49 - 7 * i)) & 0x7F
        byte = seven << 1
        # Odd parity: the low bit makes the count of set bits odd.
        out[i] = byte | (bin(seven).count("1") + 1) % 2
    return bytes(out)


def des_encrypt_block(key7: bytes, block: bytes) -> bytes:
    """DES-encrypt one 8-byte block with a 7-byte key (RFC 2759 8.6 DesEncrypt)."""
    if len(block) != 8:
        raise ValueError("DES encrypts 8-byte blocks")
    return DES.new(expand_des_key(key7), DES.MODE_ECB).encrypt(block)
