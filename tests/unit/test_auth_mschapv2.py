"""MS-CHAPv2 (RFC 2759): section 9 vectors, MD4 (RFC 1320), MPPE keys (RFC 3079), and
authenticator <-> peer in memory."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.aaa.users import UserDB, UserEntry
from pyl2tp.ppp.auth import AuthResult, make_authenticator, make_peer
from pyl2tp.ppp.auth.crypto import des_encrypt_block, expand_des_key, md4
from pyl2tp.ppp.auth.mschapv2 import (
    MsChapV2Authenticator,
    MsChapV2Failure,
    MsChapV2Peer,
    challenge_hash,
    challenge_response,
    check_authenticator_response,
    generate_authenticator_response,
    generate_nt_response,
    get_asymmetric_start_key,
    get_master_key,
    hash_nt_password_hash,
    nt_password_hash,
    parse_failure,
    strip_domain,
)
from pyl2tp.ppp.auth.packets import (
    ChapCode,
    decode_chap_value,
    decode_packet,
    encode_chap_message,
    encode_chap_value,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# RFC 2759 9.2: user "User", password "clientPass".
USER = b"User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
CHALLENGE = bytes.fromhex("D02E4386BCE91226")
PASSWORD_HASH = bytes.fromhex("44EBBA8D5312B8D611474411F56989AE")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
PASSWORD_HASH_HASH = bytes.fromhex("41C00C584BD2D91C4017A2A12FA59F3F")
AUTHENTICATOR_RESPONSE = b"S=407A5589115FD0D6209F510FE9C04566932CDA56"


# --- RFC vectors ----------------------------------------------------------------------


def test_rfc2759_password_is_utf16le() -> None:
    assert PASSWORD.encode("utf-16-le") == bytes.fromhex("63006C00690065006E0074005000610073007300")


def test_rfc2759_challenge_hash() -> None:
    assert challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER) == CHALLENGE


def test_rfc2759_nt_password_hash() -> None:
    assert nt_password_hash(PASSWORD) == PASSWORD_HASH


def test_rfc2759_challenge_response() -> None:
    assert challenge_response(CHALLENGE, PASSWORD_HASH) == NT_RESPONSE


def test_rfc2759_generate_nt_response() -> None:
    assert generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD) == NT_RESPONSE


def test_rfc2759_hash_nt_password_hash() -> None:
    assert hash_nt_password_hash(PASSWORD_HASH) == PASSWORD_HASH_HASH


def test_rfc2759_authenticator_response() -> None:
    got = generate_authenticator_response(
        PASSWORD, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER
    )
    assert got == AUTHENTICATOR_RESPONSE
    assert len(got) == 42
    args = (PASSWORD, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER)
    assert check_authenticator_response(*args, AUTHENTICATOR_RESPONSE)
    assert check_authenticator_response(*args, AUTHENTICATOR_RESPONSE.lower())
    assert not check_authenticator_response(*args, b"S=" + b"0" * 40)


def test_rfc2759_des_key_parity_example() -> None:
    # RFC 2759 9.3, password "MyPw".
    pw_hash = nt_password_hash("MyPw")
    assert pw_hash == bytes.fromhex("FC156AF7EDCD6C0EDDE3337D427F4EAC")
    assert expand_des_key(pw_hash[:7]) == bytes.fromhex("FD0B5B5E7F6E34D9")
    assert expand_des_key(pw_hash[7:14]) == bytes.fromhex("0E6E796737EA08FE")
    for key in (expand_des_key(pw_hash[:7]), expand_des_key(pw_hash[7:14])):
        assert all(bin(b).count("1") % 2 == 1 for b in key)


def test_des_block_against_fips81_example() -> None:
    # FIPS 81 / "Now is the time for all" example: key 0123456789ABCDEF (parity set).
    # Its 56 key bits (each octet without its parity bit) are the 7 bytes 00451338957377.
    key7 = bytes.fromhex("00451338957377")
    assert expand_des_key(key7) == bytes.fromhex("0123456789ABCDEF")
    ciphertext = des_encrypt_block(key7, b"Now is t")
    assert ciphertext == bytes.fromhex("3FA40E8A984D4815")
    with pytest.raises(ValueError):
        des_encrypt_block(key7, b"short")
    with pytest.raises(ValueError):
        expand_des_key(b"123")


@pytest.mark.parametrize(
    ("message", "digest"),
    [
        (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
        (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
        (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
        (b"message digest", "d9130a8164549fe818874806e1c7014b"),
        (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
        (
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            "043f8582f241db351ce627e153e7f0e4",
        ),
        (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
    ],
)
def test_md4_rfc1320_suite(message: bytes, digest: str) -> None:
    assert md4(message).hex() == digest


def test_rfc3079_master_and_start_keys() -> None:
    master = get_master_key(PASSWORD_HASH_HASH, NT_RESPONSE)
    assert master == bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
    # RFC 3079 3.5.3: the server's 128-bit send start key.
    send128 = get_asymmetric_start_key(master, 16, is_send=True, is_server=True)
    assert send128 == bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")
    # RFC 3079 3.5.1: the 40/56-bit start key is the first 8 octets.
    assert get_asymmetric_start_key(master, 8, is_send=True, is_server=True) == bytes.fromhex(
        "8B7CDC149B993A1B"
    )
    # The client's receive key is the server's send key, and the other way round.
    assert get_asymmetric_start_key(master, 16, is_send=False, is_server=False) == send128
    client_send = get_asymmetric_start_key(master, 16, is_send=True, is_server=False)
    assert client_send != send128
    assert get_asymmetric_start_key(master, 16, is_send=False, is_server=True) == client_send
    with pytest.raises(ValueError):
        get_asymmetric_start_key(master, 5, is_send=True, is_server=True)


def test_strip_domain() -> None:
    assert strip_domain(b"CORP\\alice") == b"alice"
    assert strip_domain(b"alice") == b"alice"
    assert strip_domain(b"alice@VPN") == b"alice@VPN"  # SoftEther hashes the full name


# --- Failure message ------------------------------------------------------------------


def test_parse_failure_fields() -> None:
    msg = b"E=691 R=0 C=" + b"AB" * 16 + b" V=3 M=Access denied, try again"
    assert parse_failure(msg) == MsChapV2Failure(
        error=691,
        retry=False,
        challenge=b"\xab" * 16,
        version=3,
        message="Access denied, try again",
    )
    # SoftEther: no M= part.
    assert parse_failure(b"E=691 R=0 C=" + b"00" * 16 + b" V=3").message == ""
    assert parse_failure(b"E=648 R=1").retry is True


@given(st.binary(max_size=120))
def test_parse_failure_never_raises(message: bytes) -> None:
    result = parse_failure(message)
    assert result.challenge is None or len(result.challenge) == 16


# --- in-memory exchanges --------------------------------------------------------------


class Link:
    """Delivers packets between the two machines at once, losing chosen ones."""

    def __init__(
        self,
        *,
        user: str = "alice",
        password: str = "secret",
        users: dict[str, str] | None = None,
        lose_to_peer: set[int] | None = None,
        lose_to_auth: set[int] | None = None,
        rechallenge: float = 0.0,
    ) -> None:
        db = users if users is not None else {"alice": "secret"}
        self.from_auth: list[bytes] = []
        self.from_peer: list[bytes] = []
        self.queue: list[tuple[str, bytes]] = []
        self.lose_to_peer = lose_to_peer or set()
        self.lose_to_auth = lose_to_auth or set()
        self.auth = MsChapV2Authenticator(
            credentials=db.get,
            send=self._auth_sends,
            random_bytes=random.Random(11).randbytes,
            name="lns1",
            rechallenge_interval=rechallenge,
        )
        self.peer = MsChapV2Peer(
            user=user,
            password=password,
            send=self._peer_sends,
            random_bytes=random.Random(12).randbytes,
        )
        self.now = 0.0
        self.auth.start(0.0)
        self.peer.start(0.0)
        self.pump()

    def _auth_sends(self, packet: bytes) -> None:
        if len(self.from_auth) not in self.lose_to_peer:
            self.queue.append(("peer", packet))
        self.from_auth.append(packet)

    def _peer_sends(self, packet: bytes) -> None:
        if len(self.from_peer) not in self.lose_to_auth:
            self.queue.append(("auth", packet))
        self.from_peer.append(packet)

    def pump(self) -> None:
        while self.queue:
            where, packet = self.queue.pop(0)
            (self.auth if where == "auth" else self.peer).receive(packet, self.now)

    def run(self, until: float) -> None:
        while True:
            timers = [t for t in (self.auth.get_timer(), self.peer.get_timer()) if t is not None]
            if not timers or min(timers) > until:
                return
            self.now = min(timers)
            self.auth.handle_timer(self.now)
            self.peer.handle_timer(self.now)
            self.pump()


def test_success_verifies_both_ways_and_shares_master_key() -> None:
    link = Link()
    assert link.auth.result == AuthResult(True, "alice", "mschapv2 login ok for alice")
    assert link.peer.result == AuthResult(True, "alice", "mschapv2 Success: Access granted")
    challenge = decode_packet(link.from_auth[0])
    value, name = decode_chap_value(challenge.data)
    assert len(value) == 16 and name == b"lns1"
    # --> Response: Peer-Challenge 16, Reserved 8 (zero), NT-Response 24, Flags 0; name
    response = decode_packet(link.from_peer[0])
    rvalue, rname = decode_chap_value(response.data)
    assert len(rvalue) == 49 and rname == b"alice"
    assert rvalue[16:24] == bytes(8) and rvalue[48] == 0
    assert rvalue[24:48] == generate_nt_response(value, rvalue[:16], b"alice", "secret")
    # <-- Success: S=<40 hex> M=...
    success = decode_packet(link.from_auth[1])
    assert success.code == ChapCode.SUCCESS and success.identifier == challenge.identifier
    expected = generate_authenticator_response(
        "secret", rvalue[24:48], rvalue[:16], value, b"alice"
    )
    assert success.data == expected + b" M=Access granted"
    assert link.auth.mppe_master_key is not None
    assert link.auth.mppe_master_key == link.peer.mppe_master_key
    assert link.auth.mppe_master_key == get_master_key(
        hash_nt_password_hash(nt_password_hash("secret")), rvalue[24:48]
    )


def test_wrong_password_failure_message() -> None:
    link = Link(password="wrong")
    assert link.auth.result == AuthResult(False, "alice", "bad password for alice")
    failure = decode_packet(link.from_auth[1])
    assert failure.code == ChapCode.FAILURE
    assert re.fullmatch(rb"E=691 R=0 C=[0-9A-F]{32} V=3 M=Access denied", failure.data)
    assert link.peer.result == AuthResult(
        False, "alice", "mschapv2 Failure E=691 (authentication failure): Access denied"
    )
    assert link.peer.mppe_master_key is None and link.auth.mppe_master_key is None


def test_unknown_user() -> None:
    link = Link(user="mallory")
    assert link.auth.result == AuthResult(False, "mallory", "unknown user mallory")
    assert link.peer.result is not None and not link.peer.result.success


def test_domain_prefix_is_not_hashed_but_is_looked_up() -> None:
    users = UserDB([UserEntry("alice", "secret")])
    link = Link(user="CORP\\alice")
    assert link.auth.result is not None and not link.auth.result.success  # dict lookup
    sent: list[bytes] = []
    auth = MsChapV2Authenticator(
        credentials=users.credentials, send=sent.append, random_bytes=random.Random(1).randbytes
    )
    auth.start(0.0)
    challenge = decode_packet(sent[0])
    value, _ = decode_chap_value(challenge.data)
    peer_challenge = b"p" * 16
    # RFC 2759 8.2: the hash covers the name without "CORP\".
    nt = generate_nt_response(value, peer_challenge, b"alice", "secret")
    response = peer_challenge + bytes(8) + nt + b"\x00"
    auth.receive(
        encode_chap_value(ChapCode.RESPONSE, challenge.identifier, response, b"CORP\\alice"),
        0.1,
    )
    assert auth.result == AuthResult(True, "CORP\\alice", "mschapv2 login ok for CORP\\alice")


def test_peer_rejects_a_server_that_does_not_know_the_password() -> None:
    sent: list[bytes] = []
    peer = MsChapV2Peer(
        user="alice", password="secret", send=sent.append, random_bytes=random.Random().randbytes
    )
    peer.start(0.0)
    peer.receive(encode_chap_value(ChapCode.CHALLENGE, 3, b"c" * 16, b"evil"), 0.0)
    assert len(sent) == 1
    # A rogue server cannot compute S= without the password, so it sends a guess.
    peer.receive(encode_chap_message(ChapCode.SUCCESS, 3, b"S=" + b"A" * 40 + b" M=hi"), 0.1)
    assert peer.result == AuthResult(
        False, "alice", "MS-CHAPv2 authenticator response is wrong: the server is not genuine"
    )
    assert peer.mppe_master_key is None


def test_peer_rejects_success_without_authenticator_response() -> None:
    peer = MsChapV2Peer(user="a", password="b", send=lambda p: None, random_bytes=bytes)
    peer.start(0.0)
    peer.receive(encode_chap_value(ChapCode.CHALLENGE, 3, b"c" * 16, b"x"), 0.0)
    peer.receive(encode_chap_message(ChapCode.SUCCESS, 3, b"Welcome"), 0.1)
    assert peer.result is not None and not peer.result.success
    assert "without an authenticator response" in peer.result.message


def test_softether_style_success_without_message() -> None:
    # SoftEther sends "S=<40 hex>" only, and hashes the full name "alice@VPN".
    sent: list[bytes] = []
    peer = MsChapV2Peer(
        user="alice@VPN", password="pw", send=sent.append, random_bytes=lambda n: b"\x01" * n
    )
    peer.start(0.0)
    peer.receive(encode_chap_value(ChapCode.CHALLENGE, 1, b"\x02" * 16, b"se"), 0.0)
    value, _ = decode_chap_value(decode_packet(sent[0]).data)
    auth = generate_authenticator_response(
        "pw", value[24:48], value[:16], b"\x02" * 16, b"alice@VPN"
    )
    peer.receive(encode_chap_message(ChapCode.SUCCESS, 1, auth), 0.1)
    assert peer.result == AuthResult(True, "alice@VPN", "mschapv2 Success")


def test_peer_drops_challenge_of_wrong_size() -> None:
    sent: list[bytes] = []
    peer = MsChapV2Peer(user="a", password="b", send=sent.append, random_bytes=bytes)
    peer.start(0.0)
    peer.receive(encode_chap_value(ChapCode.CHALLENGE, 1, b"c" * 8, b"x"), 0.0)
    assert sent == [] and peer.drops["bad challenge"] == 1


def test_lost_response_and_lost_success() -> None:
    link = Link(lose_to_auth={0}, lose_to_peer={2})
    assert link.auth.result is None
    link.run(until=60.0)
    assert link.auth.result is not None and link.auth.result.success
    assert link.peer.result is not None and link.peer.result.success
    assert link.auth.mppe_master_key == link.peer.mppe_master_key
    codes = [p[0] for p in link.from_auth]
    assert codes == [1, 1, 3, 3]  # challenge, re-sent challenge, success lost, success again


def test_rechallenge_keeps_success_and_can_fail() -> None:
    link = Link(rechallenge=30.0)
    link.run(until=70.0)
    assert [p[0] for p in link.from_auth] == [1, 3, 1, 3, 1, 3]
    assert link.auth.result is not None and link.auth.result.success
    link.peer._password = "other"
    link.run(until=100.0)
    assert link.auth.result == AuthResult(False, "alice", "bad password for alice")


def test_factory_builds_mschapv2_machines() -> None:
    auth = make_authenticator("mschapv2", credentials=dict().get, send=print, random_bytes=bytes)
    peer = make_peer("mschapv2", user="u", password="p", send=print, random_bytes=bytes)
    assert isinstance(auth, MsChapV2Authenticator) and isinstance(peer, MsChapV2Peer)
    assert auth.protocol == peer.protocol == 0xC223
    assert auth.method == peer.method == "mschapv2"


@settings(max_examples=30, deadline=None)
@given(
    user=st.text(min_size=1, max_size=20).filter(lambda s: "\\" not in s),
    password=st.text(max_size=30),
)
def test_any_user_and_password_round_trip(user: str, password: str) -> None:
    link = Link(user=user, password=password, users={user: password})
    assert link.auth.result is not None and link.auth.result.success
    assert link.peer.result is not None and link.peer.result.success
