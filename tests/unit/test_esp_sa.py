"""ESP SAs (RFC 4303): every transform round trip, the packet layout checked against an
independent reference built from the primitives, drop reasons and counters, padding
checks, sequence-number exhaustion and lifetimes; plus the wire helpers (trailer, inner
UDP and its checksum) and the RFC 3948 port-4500 helpers.
"""

from __future__ import annotations

import hmac
import random
import struct
from collections.abc import Callable

import pytest
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.errors import ParseError
from pyl2tp.esp import (
    AuthAlg,
    DropReason,
    EncAlg,
    ESPError,
    ESPParams,
    InboundSA,
    OutboundSA,
    RandomPool,
    SAExpiredError,
    auth_name,
    classify_4500,
    enc_name,
    fix_transport_checksum,
    keepalive,
    unwrap_ike,
    wrap_ike,
)
from pyl2tp.esp.sa import AUTH_SPECS, ENC_SPECS, SEQ_SOFT_LIMIT, _reset_pools_after_fork
from pyl2tp.wire.esp import (
    MAX_SEQ,
    NextHeader,
    build_trailer,
    decode_header,
    decode_udp,
    encode_udp,
    ones_sum,
    strip_trailer,
    transport_inner,
    transport_strip,
    udp_checksum,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

SPI = 0xC0FFEE01
HASHES = {"hmac-md5-96": "md5", "hmac-sha1-96": "sha1", "hmac-sha256-128": "sha256",
          "hmac-sha384-192": "sha384", "hmac-sha512-256": "sha512"}

# (encryption, key length, integrity): every transform and key size we implement.
TRANSFORMS = [
    ("aes-gcm-16", 20, "null"), ("aes-gcm-16", 28, "null"), ("aes-gcm-16", 36, "null"),
    ("aes-cbc", 16, "hmac-sha1-96"), ("aes-cbc", 24, "hmac-sha256-128"),
    ("aes-cbc", 32, "hmac-sha256-128"), ("aes-cbc", 32, "hmac-sha384-192"),
    ("aes-cbc", 32, "hmac-sha512-256"), ("aes-cbc", 16, "hmac-md5-96"),
    ("3des-cbc", 24, "hmac-sha1-96"), ("3des-cbc", 24, "hmac-md5-96"),
]
IDS = [f"{e}-{k}-{a}" for e, k, a in TRANSFORMS]


def rng(seed: int = 1) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def params(enc: str, klen: int, auth: str, *, seed: int = 7, **kw: object) -> ESPParams:
    r = random.Random(seed)
    akey = r.randbytes(AUTH_SPECS[auth].key_size) if auth != "null" else b""
    return ESPParams(spi=SPI, enc=enc, enc_key=r.randbytes(klen), auth=auth, auth_key=akey,
                     mode="transport", **kw)  # type: ignore[arg-type]


def pair(p: ESPParams, seed: int = 1) -> tuple[OutboundSA, InboundSA]:
    return OutboundSA(p, rng(seed)), InboundSA(p)


def reference_open(p: ESPParams, packet: bytes) -> tuple[int, int, bytes]:
    """(seq, next header, payload) decrypted with fresh primitives: an independent check."""
    spec = ENC_SPECS[p.enc]
    spi, seq = struct.unpack("!II", packet[:8])
    assert spi == p.spi
    iv = packet[8:8 + spec.iv]
    if spec.aead:
        plain = AESGCM(p.enc_key[:-4]).decrypt(p.enc_key[-4:] + iv, packet[16:], packet[:8])
    else:
        icv = AUTH_SPECS[p.auth].icv
        tag = hmac.digest(p.auth_key, packet[:-icv], HASHES[p.auth])[:icv]
        assert tag == packet[-icv:], "ICV"
        alg = TripleDES(p.enc_key) if p.enc == "3des-cbc" else algorithms.AES(p.enc_key)
        dec = Cipher(alg, modes.CBC(iv)).decryptor()
        plain = dec.update(packet[8 + spec.iv:-icv]) + dec.finalize()
    padlen = plain[-2]
    assert plain[-2 - padlen:-2] == bytes(range(1, padlen + 1)), "padding 1, 2, 3..."
    assert (len(plain)) % spec.block == 0
    return seq, plain[-1], plain[:-2 - padlen]


def forge(p: ESPParams, seq: int, plain: bytes, iv: bytes | None = None) -> bytes:
    """An ESP packet with a valid ICV around arbitrary decrypted data (bad trailers...)."""
    spec = ENC_SPECS[p.enc]
    header = struct.pack("!II", p.spi, seq)
    if spec.aead:
        iv = iv or struct.pack("!Q", seq)
        return header + iv + AESGCM(p.enc_key[:-4]).encrypt(p.enc_key[-4:] + iv, plain, header)
    iv = iv or bytes(range(spec.iv))
    alg = TripleDES(p.enc_key) if p.enc == "3des-cbc" else algorithms.AES(p.enc_key)
    enc = Cipher(alg, modes.CBC(iv)).encryptor()
    body = header + iv + enc.update(plain) + enc.finalize()
    icv = AUTH_SPECS[p.auth].icv
    return body + hmac.digest(p.auth_key, body, HASHES[p.auth])[:icv]


# --- round trips and layout ---------------------------------------------------------------

@pytest.mark.parametrize(("enc", "klen", "auth"), TRANSFORMS, ids=IDS)
def test_round_trip_every_size(enc: str, klen: int, auth: str) -> None:
    p = params(enc, klen, auth)
    out, inb = pair(p)
    spec = ENC_SPECS[enc]
    for n in [*range(0, 70), 1400, 1500]:
        payload = bytes((n + i) & 0xFF for i in range(n))
        nh = (NextHeader.UDP, NextHeader.IPV4, NextHeader.IPV6)[n % 3]
        packet = out.encrypt(payload, nh)
        # RFC 4303 2.4: header, IV, padded data of whole blocks (4-byte aligned), ICV.
        data_len = len(packet) - 8 - spec.iv - p.icv_size
        assert data_len % spec.block == 0 and data_len % 4 == 0
        assert data_len - n - 2 < spec.block  # minimal padding
        assert decode_header(packet) == (SPI, out.seq)
        assert reference_open(p, packet) == (out.seq, nh, payload)
        assert inb.decrypt(packet) == (nh, payload)
    assert out.seq == out.packets == 72
    assert inb.stats.packets == 72 and inb.stats.bytes == out.bytes == sum(range(70)) + 2900
    assert inb.window.top == 72


@pytest.mark.parametrize(("enc", "klen", "auth"), TRANSFORMS, ids=IDS)
def test_decrypts_independently_built_packets(enc: str, klen: int, auth: str) -> None:
    p = params(enc, klen, auth)
    inb = InboundSA(p)
    for seq, payload in enumerate((b"", b"a", b"L2TP" * 100), start=1):
        trailer = build_trailer(len(payload), ENC_SPECS[enc].block, 17)
        assert inb.decrypt(forge(p, seq, payload + trailer)) == (17, payload)


def test_sequence_numbers_and_gcm_iv() -> None:
    p = params("aes-gcm-16", 20, "null")
    out = OutboundSA(p, rng())
    packets = [out.encrypt(b"x", 17) for _ in range(3)]
    assert [decode_header(x)[1] for x in packets] == [1, 2, 3]  # RFC 4303 3.3.3: starts at 1
    assert [x[8:16] for x in packets] == [struct.pack("!Q", s) for s in (1, 2, 3)]


def test_cbc_ivs_come_from_the_injected_random_and_differ() -> None:
    p = params("aes-cbc", 16, "hmac-sha1-96")
    source = random.Random(5)
    drawn: list[bytes] = []

    def random_bytes(n: int) -> bytes:
        drawn.append(source.randbytes(n))
        return drawn[-1]

    out = OutboundSA(p, random_bytes)
    packets = [out.encrypt(b"same payload", 17) for _ in range(4)]
    assert [x[8:24] for x in packets] == drawn[1:]  # drawn[0] seeded the encryptor
    assert len({x[24:] for x in packets}) == 4  # same payload, different ciphertexts
    # Deterministic given the random source: another SA with the same source agrees.
    again = OutboundSA(p, rng(5))
    assert [again.encrypt(b"same payload", 17) for _ in range(4)] == packets


def test_random_pool_slices_fresh_bytes_and_forgets_them_after_fork() -> None:
    pool = RandomPool(chunk=64)
    draws = [pool(16) for _ in range(12)]  # three chunks
    assert all(len(d) == 16 for d in draws) and len(set(draws)) == 12
    assert len(pool(100)) == 100  # larger than a chunk
    pool(8)
    buffered = pool._buf
    _reset_pools_after_fork()  # what a child process runs after fork()
    assert len(buffered) == 64 and pool._buf == b""
    assert pool(8) != buffered[8:16]  # not the bytes the parent hands out next
    out, inb = pair(params("aes-cbc", 16, "hmac-sha1-96"))
    out = OutboundSA(out.params, RandomPool())
    assert inb.decrypt(out.encrypt(b"pool", 17)) == (17, b"pool")


def test_dummy_packet_is_returned_as_next_header_59() -> None:
    out, inb = pair(params("aes-gcm-16", 36, "null"))
    assert inb.decrypt(out.encrypt(b"", NextHeader.NO_NEXT_HEADER)) == (59, b"")


def test_overhead_bounds_every_packet() -> None:
    for enc, klen, auth in TRANSFORMS:
        p = params(enc, klen, auth)
        out = OutboundSA(p, rng())
        assert max(len(out.encrypt(bytes(n), 4)) - n for n in range(40)) == p.overhead


# --- drops --------------------------------------------------------------------------------

@pytest.mark.parametrize(("enc", "klen", "auth"), TRANSFORMS, ids=IDS)
def test_any_flipped_bit_fails_the_icv_and_leaves_the_window(enc: str, klen: int,
                                                             auth: str) -> None:
    p = params(enc, klen, auth)
    out, inb = pair(p)
    packet = out.encrypt(b"payload bytes" * 3, 17)
    for pos in range(4, len(packet)):  # every byte but the SPI (sequence, IV, data, ICV)
        bad = bytearray(packet)
        bad[pos] ^= 0x80  # (0x01 would turn sequence number 1 into 0: "too old")
        with pytest.raises(ESPError) as err:
            inb.decrypt(bytes(bad))
        assert err.value.reason is DropReason.ICV, pos
    assert inb.stats.auth_failed == len(packet) - 4
    assert inb.window.top == 0 and inb.stats.packets == 0
    assert inb.decrypt(packet) == (17, b"payload bytes" * 3)


def test_short_bad_spi_bad_length_and_replay_are_counted() -> None:
    p = params("aes-cbc", 32, "hmac-sha256-128")
    out, inb = pair(p)
    packet = out.encrypt(b"hello", 17)
    cases = [
        (packet[:8 + 16 + 16 + 16 - 1], DropReason.SHORT),
        (struct.pack("!I", SPI + 1) + packet[4:], DropReason.BAD_SPI),
        (packet[:-16] + b"\0" * 4 + packet[-16:], DropReason.BAD_LENGTH),
    ]
    for bad, reason in cases:
        with pytest.raises(ESPError) as err:
            inb.decrypt(bad)
        assert err.value.reason is reason
    assert inb.stats.malformed == 3 and inb.stats.auth_failed == 0
    assert inb.decrypt(packet) == (17, b"hello")
    with pytest.raises(ESPError) as err:
        inb.decrypt(packet)
    assert err.value.reason is DropReason.REPLAY_DUPLICATE
    assert inb.stats.replayed == 1 and inb.stats.packets == 1


@pytest.mark.parametrize(("enc", "klen", "auth"), [TRANSFORMS[0], TRANSFORMS[3], TRANSFORMS[9]],
                         ids=["gcm", "aes-cbc", "3des"])
def test_padding_checks(enc: str, klen: int, auth: str) -> None:
    p = params(enc, klen, auth)
    inb = InboundSA(p)
    block = ENC_SPECS[enc].block
    good_pad = build_trailer(3, block, 17)
    padlen = good_pad[-2]
    assert padlen > 0
    # RFC 4303 2.4: padding bytes must be 1, 2, 3...
    wrong = bytes(padlen) + good_pad[-2:]
    # Pad Length larger than the data.
    too_long = b"abc" + bytes(range(1, padlen + 1)) + bytes((200, 17))
    with pytest.raises(ESPError) as err:
        inb.decrypt(forge(p, 1, b"abc" + wrong))
    assert err.value.reason is DropReason.PADDING
    with pytest.raises(ESPError) as err:
        inb.decrypt(forge(p, 2, too_long))
    assert err.value.reason is DropReason.PAD_LENGTH
    assert inb.stats.bad_padding == 2 and inb.stats.auth_failed == 0
    # The ICVs verified, so the window moved (RFC 4303 3.4.3): those numbers are used up.
    assert inb.window.top == 2 and inb.window.seen(1)
    # Padding of any legal length (not only the minimal one) is accepted.
    longer = b"abc" + bytes(range(1, padlen + block + 1)) + bytes((padlen + block, 17))
    assert inb.decrypt(forge(p, 3, longer)) == (17, b"abc")


def test_inbound_sa_decrypts_out_of_order_packets() -> None:
    out, inb = pair(params("aes-cbc", 16, "hmac-sha1-96"))
    packets = [out.encrypt(bytes([i]) * 20, 17) for i in range(10)]
    order = [3, 0, 9, 1, 2, 8, 4, 7, 5, 6]
    assert [inb.decrypt(packets[i])[1][0] for i in order] == order


# --- sequence-number overflow and lifetimes ------------------------------------------------

def test_sequence_number_never_cycles() -> None:
    out, inb = pair(params("aes-gcm-16", 20, "null"))
    out.seq = MAX_SEQ - 2
    assert out.soft_limit_reached and not out.hard_limit_reached
    last = [out.encrypt(b"x", 17), out.encrypt(b"y", 17)]
    assert decode_header(last[-1])[1] == MAX_SEQ
    assert out.hard_limit_reached
    with pytest.raises(SAExpiredError) as err:  # RFC 4303 3.3.3: never wrap to 0
        out.encrypt(b"z", 17)
    assert err.value.reason is DropReason.SEQ_EXHAUSTED
    assert out.seq == MAX_SEQ
    inb.window.top = MAX_SEQ - 3
    assert [inb.decrypt(x) for x in last] == [(17, b"x"), (17, b"y")]
    assert inb.window.top == MAX_SEQ and inb.soft_limit_reached


def test_soft_sequence_limit_is_before_the_end() -> None:
    out = OutboundSA(params("aes-gcm-16", 20, "null"), rng())
    out.seq = SEQ_SOFT_LIMIT - 1
    assert not out.soft_limit_reached
    out.encrypt(b"x", 17)
    assert out.soft_limit_reached and not out.hard_limit_reached


def test_packet_and_byte_lifetimes() -> None:
    p = params("aes-cbc", 16, "hmac-sha1-96", soft_packets=2, hard_packets=3,
               soft_bytes=0, hard_bytes=0)
    out, inb = pair(p)
    flags = []
    for _ in range(3):
        inb.decrypt(out.encrypt(b"12345", 17))
        flags.append((out.soft_limit_reached, out.hard_limit_reached))
    assert flags == [(False, False), (True, False), (True, True)]
    assert inb.soft_limit_reached and inb.hard_limit_reached
    with pytest.raises(SAExpiredError):
        out.encrypt(b"x", 17)

    p = params("aes-gcm-16", 20, "null", soft_bytes=100, hard_bytes=150)
    out, inb = pair(p)
    out.encrypt(bytes(99), 17)
    assert not out.soft_limit_reached
    out.encrypt(bytes(50), 17)  # crosses the soft limit and reaches 149
    assert out.soft_limit_reached and not out.hard_limit_reached
    out.encrypt(bytes(10), 17)  # the packet that crosses the hard limit still goes
    assert out.hard_limit_reached
    with pytest.raises(SAExpiredError) as err:
        out.encrypt(b"x", 17)
    assert err.value.reason is DropReason.LIFETIME


# --- parameters ---------------------------------------------------------------------------

def test_params_validation_and_repr_hides_keys() -> None:
    p = params("aes-cbc", 32, "hmac-sha256-128")
    text = repr(p)
    assert p.enc_key.hex() not in text and p.auth_key.hex() not in text
    assert "aes-cbc" in text and str(SPI) in text
    good = {"spi": SPI, "enc": "aes-cbc", "enc_key": bytes(16), "auth": "hmac-sha1-96",
            "auth_key": bytes(20), "mode": "transport"}
    ESPParams(**good)  # type: ignore[arg-type]
    for change in ({"enc_key": bytes(15)}, {"auth_key": bytes(16)}, {"auth": "null"},
                   {"enc": "aes-gcm-16", "enc_key": bytes(20)},  # AEAD with an HMAC
                   {"enc": "des-cbc"}, {"spi": 0}, {"spi": 255}, {"spi": 1 << 32},
                   {"mode": "beet"}, {"replay_window": -1}, {"replay_window": 5000}):
        with pytest.raises(ValueError):
            ESPParams(**{**good, **change})  # type: ignore[arg-type]


def test_ike_numbers_map_to_names() -> None:
    assert enc_name(EncAlg.ESP_AES_CBC) == "aes-cbc" and enc_name(20) == "aes-gcm-16"
    assert enc_name(3) == "3des-cbc"
    assert auth_name(AuthAlg.HMAC_SHA2_256) == "hmac-sha256-128" and auth_name(None) == "null"
    assert auth_name(2) == "hmac-sha1-96" and auth_name(7) == "hmac-sha512-256"
    with pytest.raises(ValueError):
        enc_name(2)  # ESP_DES: not implemented


# --- wire helpers ------------------------------------------------------------------------

def test_trailer_codec() -> None:
    assert build_trailer(1, 4, 17) == b"\x01\x01\x11"
    assert build_trailer(2, 4, 4) == b"\x00\x04"
    assert build_trailer(0, 16, 17) == bytes(range(1, 15)) + b"\x0e\x11"
    assert strip_trailer(b"ab\x01\x02\x02\x11") == (17, b"ab")
    for bad in (b"", b"\x11", b"ab\x01\x03\x02\x11", b"\x05\x11", b"a\x01\x02\x03\x04"):
        with pytest.raises(ParseError):
            strip_trailer(bad)


def naive_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=300))
def test_ones_sum_matches_the_word_loop(data: bytes) -> None:
    residue = ones_sum(data)
    folded = 0xFFFF - naive_checksum(data)  # the folded one's-complement sum
    assert residue == folded % 0xFFFF


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_udp_checksum_matches_the_rfc_768_definition(payload: bytes, sport: int,
                                                     dport: int) -> None:
    src, dst = "198.18.0.1", "198.18.7.9"
    segment = encode_udp(src, dst, sport, dport, payload)
    pseudo = bytes([198, 18, 0, 1, 198, 18, 7, 9, 0, 17]) + struct.pack("!H", len(segment))
    expected = naive_checksum(pseudo + segment[:6] + b"\0\0" + segment[8:]) or 0xFFFF
    assert struct.unpack("!H", segment[6:8])[0] == expected
    assert decode_udp(segment, src, dst, verify=True).payload == payload


def test_transport_inner_and_strip() -> None:
    inner = transport_inner("198.18.0.1", "198.18.0.2", b"\xc8\x02l2tp")
    assert inner[:6] == struct.pack("!HHH", 1701, 1701, 8 + 6)
    assert udp_checksum("198.18.0.1", "198.18.0.2", inner[:6] + b"\0\0" + inner[8:]) == \
        struct.unpack("!H", inner[6:8])[0]
    got = transport_strip(inner, "198.18.0.1", "198.18.0.2", verify=True)
    assert (got.sport, got.dport, got.payload) == (1701, 1701, b"\xc8\x02l2tp")
    with pytest.raises(ParseError):  # checked over the wrong addresses
        transport_strip(inner, "198.18.0.3", "198.18.0.2", verify=True)
    assert transport_strip(inner, "198.18.0.3", "198.18.0.2").payload == b"\xc8\x02l2tp"
    no_sum = transport_inner("198.18.0.1", "198.18.0.2", b"x", checksum=False)
    assert no_sum[6:8] == b"\0\0"
    assert transport_strip(no_sum, "198.18.9.9", "198.18.0.2", verify=True).checksum == 0
    v6 = transport_inner("2001:2::1", "2001:2::2", b"x", checksum=False)
    assert v6[6:8] != b"\0\0"  # mandatory over IPv6
    assert decode_udp(v6, "2001:2::1", "2001:2::2", verify=True).payload == b"x"
    for bad in (inner[:7], inner + b"x"):
        with pytest.raises(ParseError):
            transport_strip(bad)


# --- RFC 3948 helpers ---------------------------------------------------------------------

def test_classify_4500() -> None:
    assert classify_4500(keepalive()) == "keepalive" and keepalive() == b"\xff"
    assert classify_4500(wrap_ike(bytes(28))) == "ike"
    assert classify_4500(struct.pack("!II", SPI, 1) + bytes(40)) == "esp"
    for bad in (b"", b"\x00", b"\xfe", b"\x00\x00\x00\x00", b"\x01\x02\x03\x04\x05"):
        assert classify_4500(bad) == "invalid", bad
    assert unwrap_ike(wrap_ike(b"\x11" * 28)) == b"\x11" * 28
    with pytest.raises(ParseError):
        unwrap_ike(struct.pack("!II", SPI, 1))


def test_transport_checksum_fixup_after_nat() -> None:
    # The client behind a NAT computed the checksum over its private address (NAT-OA).
    private, public, server = "198.18.200.7", "198.18.0.99", "198.18.0.1"
    segment = transport_inner(private, server, b"\xc8\x02 l2tp control")
    with pytest.raises(ParseError):
        decode_udp(segment, public, server, verify=True)
    fixed = fix_transport_checksum(segment, public, server, orig_src=private)
    assert fixed[:6] == segment[:6] and fixed[8:] == segment[8:]
    assert decode_udp(fixed, public, server, verify=True).payload == b"\xc8\x02 l2tp control"
    assert fixed == transport_inner(public, server, b"\xc8\x02 l2tp control")
    # Both ends translated (RFC 3947 NAT-OAi and NAT-OAr).
    seen_as = "198.18.1.1"
    segment = transport_inner(private, seen_as, b"abc")
    fixed = fix_transport_checksum(segment, public, server, orig_src=private, orig_dst=seen_as)
    assert decode_udp(fixed, public, server, verify=True).payload == b"abc"
    # Without NAT-OA: zeroed (RFC 3948 3.1.2); a zero checksum stays zero.
    zeroed = fix_transport_checksum(segment, public, server)
    assert zeroed[6:8] == b"\0\0" and zeroed[8:] == segment[8:]
    assert fix_transport_checksum(zeroed, public, server, orig_src=private) == zeroed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.binary(min_size=4, max_size=4),
       st.binary(min_size=4, max_size=4))
def test_incremental_fixup_equals_recomputing(payload: bytes, a: bytes, b: bytes) -> None:
    server = bytes([198, 18, 0, 1])
    fixed = fix_transport_checksum(transport_inner(a, server, payload), b, server, orig_src=a)
    assert fixed == transport_inner(b, server, payload)
