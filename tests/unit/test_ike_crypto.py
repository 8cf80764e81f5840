"""Unit tests for pyl2tp.ike.crypto: PRFs, key derivation, hashes, IVs, body encryption.

Known answers come from RFC 2202/4231 and from independent implementations (the
stdlib ``hmac``/``hashlib`` formulas written out here, pycryptodome for the ciphers);
tests/unit/test_ike_samples.py checks the same functions against strongSwan's keys.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from Crypto.Cipher import AES, DES3
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac

from pyl2tp.errors import ParseError
from pyl2tp.ike.crypto import (
    IkeCipher,
    IkeSACrypto,
    Prf,
    derive_phase1_keys,
    expand_key,
    hash_i,
    hash_r,
    informational_hash,
    keymat,
    nat_d_hash,
    pad,
    phase1_iv,
    phase2_iv,
    quick_hash1,
    quick_hash2,
    quick_hash3,
    skeyid_psk,
    skeyid_signature,
)
from pyl2tp.ike.proposals import EncryptionAlgorithm, HashAlgorithm
from pyl2tp.wire.isakmp import (
    HashPayload,
    IDPayload,
    ISAKMPHeader,
    NoncePayload,
    decode_message,
    decode_payloads,
    encode_message,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

ALL_HASHES = [
    HashAlgorithm.MD5,
    HashAlgorithm.SHA1,
    HashAlgorithm.SHA2_256,
    HashAlgorithm.SHA2_384,
    HashAlgorithm.SHA2_512,
]
NAMES = {1: "md5", 2: "sha1", 4: "sha256", 5: "sha384", 6: "sha512"}

# RFC 2202 / RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
JEFE = {
    HashAlgorithm.MD5: "750c783e6ab0b503eaa86e310a5db738",
    HashAlgorithm.SHA1: "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
    HashAlgorithm.SHA2_256: "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    HashAlgorithm.SHA2_384: "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47"
    "e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649",
    HashAlgorithm.SHA2_512: "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
    "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
}
C_HASHES = {
    1: hashes.MD5,
    2: hashes.SHA1,
    4: hashes.SHA256,
    5: hashes.SHA384,
    6: hashes.SHA512,
}


def ref_hmac(alg: int, key: bytes, data: bytes) -> bytes:
    """HMAC from the cryptography package, as an independent implementation."""
    h = c_hmac.HMAC(key, C_HASHES[alg]())
    h.update(data)
    return h.finalize()


@pytest.mark.parametrize("alg", ALL_HASHES)
def test_prf_known_answers(alg: HashAlgorithm) -> None:
    prf = Prf(alg)
    assert prf(b"Jefe", b"what do ya want for nothing?").hex() == JEFE[alg]
    assert prf(b"k" * 200, b"d" * 77) == ref_hmac(alg, b"k" * 200, b"d" * 77)
    assert prf.hash(b"abc") == hashlib.new(NAMES[alg], b"abc").digest()
    assert prf.digest_size == len(prf.hash(b""))


def test_prf_rejects_unsupported_hashes() -> None:
    with pytest.raises(ValueError):
        Prf(HashAlgorithm.TIGER)
    with pytest.raises(ValueError):
        Prf(99)


def test_skeyid_formulas() -> None:
    prf = Prf(HashAlgorithm.SHA1)
    ni, nr, gxy = b"I" * 16, b"R" * 32, b"G" * 128
    assert skeyid_psk(prf, b"psk", ni, nr) == ref_hmac(2, b"psk", ni + nr)
    assert skeyid_signature(prf, ni, nr, gxy) == ref_hmac(2, ni + nr, gxy)


@pytest.mark.parametrize("alg", ALL_HASHES)
def test_phase1_key_derivation_formulas(alg: HashAlgorithm) -> None:
    """RFC 2409 5: SKEYID_d/a/e chained through prf(SKEYID, ... | CKY-I | CKY-R | 0/1/2)."""
    prf = Prf(alg)
    skeyid, gxy, ci, cr = b"S" * 20, b"\x00\x07" * 64, b"c" * 8, b"r" * 8
    keys = derive_phase1_keys(prf, skeyid, gxy, ci, cr, 32)
    d = ref_hmac(alg, skeyid, gxy + ci + cr + b"\x00")
    a = ref_hmac(alg, skeyid, d + gxy + ci + cr + b"\x01")
    e = ref_hmac(alg, skeyid, a + gxy + ci + cr + b"\x02")
    assert (keys.skeyid, keys.skeyid_d, keys.skeyid_a, keys.skeyid_e) == (skeyid, d, a, e)
    assert len(keys.enc_key) == 32
    assert keys.enc_key == expand_key(prf, e, 32)
    assert repr(keys) == "<Phase1Keys 256-bit key>"  # no secret in logs


def test_key_expansion_appendix_b() -> None:
    """Ka = K1 | K2 with K1 = prf(SKEYID_e, 0), K2 = prf(SKEYID_e, K1) when too short."""
    prf = Prf(HashAlgorithm.SHA1)  # 20-byte SKEYID_e, AES-256 needs 32
    e = bytes(range(20))
    k1 = ref_hmac(2, e, b"\x00")
    k2 = ref_hmac(2, e, k1)
    assert expand_key(prf, e, 32) == (k1 + k2)[:32]
    k3 = ref_hmac(2, e, k2)
    assert expand_key(prf, e, 50) == (k1 + k2 + k3)[:50]
    assert expand_key(prf, e, 16) == e[:16]  # long enough: the leftmost bytes
    assert expand_key(prf, e, 20) == e


def test_hash_i_and_hash_r_orders() -> None:
    prf = Prf(HashAlgorithm.SHA2_256)
    gxi, gxr, ci, cr, sa, idi, idr = b"x" * 4, b"y" * 4, b"c" * 8, b"r" * 8, b"SA", b"II", b"IR"
    assert hash_i(prf, b"K", gxi, gxr, ci, cr, sa, idi) == ref_hmac(
        4, b"K", gxi + gxr + ci + cr + sa + idi
    )
    assert hash_r(prf, b"K", gxi, gxr, ci, cr, sa, idr) == ref_hmac(
        4, b"K", gxr + gxi + cr + ci + sa + idr
    )


def test_ivs() -> None:
    prf = Prf(HashAlgorithm.SHA1)
    assert phase1_iv(prf, b"gi", b"gr", 16) == hashlib.sha1(b"gigr").digest()[:16]
    assert phase1_iv(prf, b"gi", b"gr", 8) == hashlib.sha1(b"gigr").digest()[:8]
    mid = 0xDEADBEEF
    assert (
        phase2_iv(prf, b"L" * 16, mid, 16)
        == (hashlib.sha1(b"L" * 16 + struct.pack(">I", mid)).digest()[:16])
    )


def test_quick_mode_hashes() -> None:
    prf = Prf(HashAlgorithm.SHA2_512)
    a, mid, rest, ni, nr = b"A" * 64, 7, b"payloads", b"ni", b"nr"
    m = struct.pack(">I", mid)
    assert quick_hash1(prf, a, mid, rest) == ref_hmac(6, a, m + rest)
    assert quick_hash2(prf, a, mid, ni, rest) == ref_hmac(6, a, m + ni + rest)
    assert quick_hash3(prf, a, mid, ni, nr) == ref_hmac(6, a, b"\x00" + m + ni + nr)
    assert informational_hash(prf, a, mid, rest) == quick_hash1(prf, a, mid, rest)


def test_keymat_expansion() -> None:
    """RFC 2409 5.5: K1 = prf(d, [gqm |] proto | SPI | Ni | Nr), Kn = prf(d, Kn-1 | ...)."""
    prf = Prf(HashAlgorithm.SHA1)
    d, spi, ni, nr, gqm = b"D" * 20, b"\x12\x34\x56\x78", b"i" * 16, b"r" * 16, b"g" * 256
    seed = b"\x03" + spi + ni + nr
    k1 = ref_hmac(2, d, seed)
    k2 = ref_hmac(2, d, k1 + seed)
    k3 = ref_hmac(2, d, k2 + seed)
    assert keymat(prf, d, 3, spi, ni, nr, 16) == k1[:16]
    assert keymat(prf, d, 3, spi, ni, nr, 52) == (k1 + k2 + k3)[:52]
    pfs = ref_hmac(2, d, gqm + seed)
    assert keymat(prf, d, 3, spi, ni, nr, 20, gqm) == pfs
    assert keymat(prf, d, 3, spi, ni, nr, 40, gqm)[20:] == ref_hmac(2, d, pfs + gqm + seed)


def test_nat_d_hash() -> None:
    prf = Prf(HashAlgorithm.SHA1)
    ci, cr = b"c" * 8, b"r" * 8
    assert (
        nat_d_hash(prf, ci, cr, "198.18.0.1", 4500)
        == hashlib.sha1(ci + cr + bytes([198, 18, 0, 1]) + b"\x11\x94").digest()
    )
    v6 = nat_d_hash(prf, ci, cr, "2001:2::1", 500)
    assert (
        v6
        == hashlib.sha1(
            ci + cr + bytes.fromhex("20010002" + "00" * 11 + "01") + b"\x01\xf4"
        ).digest()
    )


@pytest.mark.parametrize("block", [8, 16])
def test_padding_rule(block: int) -> None:
    """RFC 2409 App. B: zeros, always at least one byte, last byte = count of the others."""
    for n in range(3 * block):
        data = b"\xaa" * n
        padded = pad(data, block)
        count = len(padded) - n
        assert len(padded) % block == 0 and 1 <= count <= block
        assert padded[:n] == data
        assert padded[-1] == count - 1
        assert padded[n:-1] == bytes(count - 1)


def test_aes_cbc_against_pycryptodome() -> None:
    for size in (16, 24, 32):
        key, iv, data = bytes(range(size)), b"\x01" * 16, bytes(range(64))
        cipher = IkeCipher(EncryptionAlgorithm.AES_CBC, key)
        assert cipher.block_size == 16
        expected = AES.new(key, AES.MODE_CBC, iv).encrypt(data)
        assert cipher.encrypt(iv, data) == expected
        assert cipher.decrypt(iv, expected) == data


def test_3des_cbc_against_pycryptodome() -> None:
    key = bytes.fromhex("0123456789abcdef23456789abcdef01456789abcdef0123")
    iv, data = b"\x02" * 8, b"sixteen bytes!!!" * 3
    cipher = IkeCipher(EncryptionAlgorithm.TRIPLE_DES_CBC, key)
    assert cipher.block_size == 8
    expected = DES3.new(key, DES3.MODE_CBC, iv).encrypt(data)
    assert cipher.encrypt(iv, data) == expected
    assert cipher.decrypt(iv, expected) == data
    assert "TripleDES" in repr(cipher) and key.hex() not in repr(cipher)


def test_cipher_rejects_bad_keys_and_lengths() -> None:
    with pytest.raises(ValueError):
        IkeCipher(EncryptionAlgorithm.AES_CBC, b"\x00" * 15)
    with pytest.raises(ValueError):
        IkeCipher(EncryptionAlgorithm.TRIPLE_DES_CBC, b"\x00" * 16)
    with pytest.raises(ValueError):
        IkeCipher(EncryptionAlgorithm.DES_CBC, b"\x00" * 8)
    cipher = IkeCipher(EncryptionAlgorithm.AES_CBC, b"\x00" * 16)
    for bad in (b"", b"\x00" * 15, b"\x00" * 17):
        with pytest.raises(ParseError):
            cipher.decrypt(b"\x00" * 16, bad)


def _pair() -> tuple[IkeSACrypto, IkeSACrypto]:
    prf = Prf(HashAlgorithm.SHA2_256)
    iv = phase1_iv(prf, b"gxi", b"gxr", 16)
    key = b"K" * 32
    mk = lambda: IkeSACrypto(IkeCipher(EncryptionAlgorithm.AES_CBC, key), prf, iv)  # noqa: E731
    return mk(), mk()


def test_iv_chains_between_two_peers() -> None:
    """Main Mode chains on M-ID 0; each Quick Mode starts from hash(last p1 block | M-ID)."""
    ini, rsp = _pair()
    prf = ini.prf
    first_iv = ini.iv(0)
    mm5 = ini.encrypt(0, b"ID+HASH_I")
    assert len(mm5) == 16 and ini.iv(0) == mm5[-16:]
    assert AES.new(b"K" * 32, AES.MODE_CBC, first_iv).decrypt(mm5) == pad(b"ID+HASH_I", 16)
    assert rsp.decrypt(0, mm5)[:9] == b"ID+HASH_I"
    mm6 = rsp.encrypt(0, b"ID+HASH_R" * 3)
    assert ini.decrypt(0, mm6)[:27] == b"ID+HASH_R" * 3
    assert ini.iv(0) == rsp.iv(0) == mm6[-16:]

    # Two Quick Mode exchanges interleaved, each with its own chain.
    m1, m2 = 0x11111111, 0x22222222
    assert ini.iv(m1) == phase2_iv(prf, mm6[-16:], m1, 16)
    qa = ini.encrypt(m1, b"QM1-a")
    qb = ini.encrypt(m2, b"QM1-b")
    assert rsp.decrypt(m2, qb)[:5] == b"QM1-b"
    assert rsp.decrypt(m1, qa)[:5] == b"QM1-a"
    ra = rsp.encrypt(m1, b"QM2-a")
    assert ini.decrypt(m1, ra)[:5] == b"QM2-a"
    assert ini.iv(m1) == rsp.iv(m1) == ra[-16:]
    assert ini.iv(0) == mm6[-16:]  # phase-1 chain untouched by phase 2

    ini.forget(m1)
    assert ini.iv(m1) == phase2_iv(prf, mm6[-16:], m1, 16)


def test_decrypt_without_advancing_and_retransmissions() -> None:
    ini, rsp = _pair()
    msg = ini.encrypt(5, b"informational")
    before = rsp.iv(5)
    plain = rsp.decrypt(5, msg, advance=False)
    assert plain[:13] == b"informational" and rsp.iv(5) == before
    rsp.advance(5, msg)
    assert rsp.iv(5) == msg[-16:]
    # decrypting the same bytes again with the advanced IV garbles the first block
    assert rsp.decrypt(5, msg, advance=False)[:13] != b"informational"


def test_remembered_exchanges_are_bounded() -> None:
    prf = Prf(HashAlgorithm.SHA1)
    cipher = IkeCipher(EncryptionAlgorithm.AES_CBC, b"k" * 16)
    sa = IkeSACrypto(cipher, prf, b"\x00" * 16, max_exchanges=3)
    for mid in range(1, 6):
        sa.encrypt(mid, b"x")
    assert len(sa._ivs) == 3 and set(sa._ivs) == {3, 4, 5}
    with pytest.raises(ValueError):
        IkeSACrypto(cipher, prf, b"\x00" * 8)


def test_encrypted_message_round_trip() -> None:
    ini, rsp = _pair()
    header = ISAKMPHeader(b"i" * 8, b"r" * 8, 32, message_id=42)
    payloads = [HashPayload(b"h" * 32), NoncePayload(b"n" * 20), IDPayload.fqdn("x")]
    data = encode_message(header, payloads, encrypt=ini.encrypt_for(42))
    got, body = decode_message(data)
    assert got.encrypted and len(body) % 16 == 0
    plain = rsp.decrypt(got.message_id, body)
    assert decode_payloads(got.next_payload, plain, padded=True) == payloads
    assert hmac.compare_digest(rsp.iv(42), ini.iv(42))
