"""CHAP-MD5 (RFC 1994): authenticator and peer in memory; loss, re-challenge, garbage."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.ppp.auth import (
    AuthResult,
    for_authenticator,
    make_authenticator,
    make_peer,
)
from pyl2tp.ppp.auth.chap import ChapAuthenticator, ChapPeer
from pyl2tp.ppp.auth.packets import (
    ChapCode,
    decode_chap_value,
    decode_packet,
    encode_chap_message,
    encode_chap_value,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

USERS = {"alice": "secret", "bob": "hunter2"}


class Pair:
    """Authenticator and peer over an in-memory link; the drop predicates take the
    index of a packet in its direction and say whether the link loses it."""

    def __init__(
        self,
        method: str = "chap",
        *,
        user: str = "alice",
        password: str = "secret",
        credentials: Callable[[str], str | None] = USERS.get,
        drop_to_auth: Callable[[int], bool] = lambda i: False,
        drop_to_peer: Callable[[int], bool] = lambda i: False,
        **auth_args: Any,
    ) -> None:
        self.to_auth: list[bytes] = []
        self.to_peer: list[bytes] = []
        self.sent_by_auth: list[tuple[float, bytes]] = []
        self.sent_by_peer: list[tuple[float, bytes]] = []
        self.now = 0.0
        self.drop_to_auth = drop_to_auth
        self.drop_to_peer = drop_to_peer
        self.auth = make_authenticator(
            method,
            credentials=credentials,
            send=self._from_auth,
            random_bytes=random.Random(1).randbytes,
            name="lns1",
            **auth_args,
        )
        self.peer = make_peer(
            method,
            user=user,
            password=password,
            send=self._from_peer,
            random_bytes=random.Random(2).randbytes,
        )
        self.auth.start(self.now)
        self.peer.start(self.now)
        self.pump()

    def _from_auth(self, packet: bytes) -> None:
        index = len(self.sent_by_auth)
        self.sent_by_auth.append((self.now, packet))
        if not self.drop_to_peer(index):
            self.to_peer.append(packet)

    def _from_peer(self, packet: bytes) -> None:
        index = len(self.sent_by_peer)
        self.sent_by_peer.append((self.now, packet))
        if not self.drop_to_auth(index):
            self.to_auth.append(packet)

    def pump(self) -> None:
        while self.to_auth or self.to_peer:
            if self.to_auth:
                self.auth.receive(self.to_auth.pop(0), self.now)
            if self.to_peer:
                self.peer.receive(self.to_peer.pop(0), self.now)

    def run(self, until: float = 100.0) -> None:
        while True:
            timers = [t for t in (self.auth.get_timer(), self.peer.get_timer()) if t is not None]
            if not timers or min(timers) > until:
                return
            self.now = min(timers)
            self.auth.handle_timer(self.now)
            self.peer.handle_timer(self.now)
            self.pump()

    def codes(self, side: str) -> list[int]:
        sent = self.sent_by_auth if side == "auth" else self.sent_by_peer
        return [decode_packet(p).code for _, p in sent]


def md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 2.3, computed independently of the code under test."""
    h = hashlib.md5()
    h.update(bytes([identifier]))
    h.update(secret)
    h.update(challenge)
    return h.digest()


def test_success_and_packet_contents() -> None:
    pair = Pair()
    assert pair.auth.result == AuthResult(True, "alice", "chap login ok for alice")
    assert pair.peer.result is not None and pair.peer.result.success
    # <-- Challenge: 16 random octets and our name
    challenge = decode_packet(pair.sent_by_auth[0][1])
    assert challenge.code == ChapCode.CHALLENGE
    value, name = decode_chap_value(challenge.data)
    assert len(value) == 16 and name == b"lns1"
    # --> Response: MD5(Identifier, secret, Challenge) and the user name
    response = decode_packet(pair.sent_by_peer[0][1])
    assert (response.code, response.identifier) == (ChapCode.RESPONSE, challenge.identifier)
    assert decode_chap_value(response.data) == (
        md5_response(challenge.identifier, b"secret", value),
        b"alice",
    )
    # <-- Success with the same identifier
    success = decode_packet(pair.sent_by_auth[1][1])
    assert (success.code, success.identifier) == (ChapCode.SUCCESS, challenge.identifier)
    assert pair.auth.get_timer() is None and pair.peer.get_timer() is None


def test_wrong_password() -> None:
    pair = Pair(password="wrong")
    assert pair.auth.result == AuthResult(False, "alice", "bad password for alice")
    assert pair.codes("auth") == [ChapCode.CHALLENGE, ChapCode.FAILURE]
    assert pair.peer.result is not None and not pair.peer.result.success
    assert pair.peer.result.message == "chap Failure: Access denied"


def test_unknown_user() -> None:
    pair = Pair(user="mallory")
    assert pair.auth.result == AuthResult(False, "mallory", "unknown user mallory")
    assert pair.codes("auth") == [ChapCode.CHALLENGE, ChapCode.FAILURE]
    assert pair.peer.result is not None and not pair.peer.result.success


def test_lost_challenges_each_retransmission_is_new() -> None:
    pair = Pair(drop_to_peer=lambda i: i < 2)
    pair.run()
    assert pair.auth.result is not None and pair.auth.result.success
    assert pair.peer.result is not None and pair.peer.result.success
    challenges = [(t, decode_packet(p)) for t, p in pair.sent_by_auth if p[0] == ChapCode.CHALLENGE]
    assert [t for t, _ in challenges] == [0.0, 3.0, 6.0]
    # RFC 1994 4.1: Identifier and Value change for every Challenge sent.
    ids = [c.identifier for _, c in challenges]
    assert ids == [ids[0], (ids[0] + 1) & 0xFF, (ids[0] + 2) & 0xFF]
    assert len({decode_chap_value(c.data)[0] for _, c in challenges}) == 3


def test_lost_response_is_retransmitted_by_the_challenge() -> None:
    pair = Pair(drop_to_auth=lambda i: i == 0)
    pair.run()
    assert pair.auth.result is not None and pair.auth.result.success
    assert pair.peer.result is not None and pair.peer.result.success
    # The peer repeated its response at 3 s, and the new challenge came at 3 s too.
    assert pair.codes("auth") == [1, 1, 3]
    assert pair.auth.drops["stale identifier"] == 1


def test_lost_success_repeated_response_gets_same_answer() -> None:
    pair = Pair(drop_to_peer=lambda i: i == 1)
    assert pair.peer.result is None
    pair.run()
    assert pair.peer.result is not None and pair.peer.result.success
    # RFC 1994 4.1: the repeated Response (same identifier) got the same Success.
    assert pair.auth.drops["repeated response"] == 1
    assert pair.codes("auth") == [1, 3, 3]
    assert pair.sent_by_auth[1][1] == pair.sent_by_auth[2][1]
    assert pair.sent_by_peer[1][0] == 3.0


def test_lost_failure_repeated_response_still_fails() -> None:
    pair = Pair(password="wrong", drop_to_peer=lambda i: i == 1)
    pair.run()
    assert pair.codes("auth") == [1, 4, 4]
    assert pair.peer.result is not None and not pair.peer.result.success


def test_stale_response_is_dropped() -> None:
    sent: list[bytes] = []
    auth = ChapAuthenticator(
        credentials=USERS.get, send=sent.append, random_bytes=random.Random(5).randbytes
    )
    auth.start(0.0)
    first = decode_packet(sent[0])
    value, _ = decode_chap_value(first.data)
    auth.handle_timer(3.0)  # second challenge, new identifier
    late = md5_response(first.identifier, b"secret", value)
    auth.receive(encode_chap_value(ChapCode.RESPONSE, first.identifier, late, b"alice"), 3.1)
    assert auth.result is None and auth.drops["stale identifier"] == 1
    second = decode_packet(sent[1])
    value2, _ = decode_chap_value(second.data)
    good = md5_response(second.identifier, b"secret", value2)
    auth.receive(encode_chap_value(ChapCode.RESPONSE, second.identifier, good, b"alice"), 3.2)
    assert auth.result is not None and auth.result.success


def test_no_response_fails_after_max_challenges() -> None:
    pair = Pair(drop_to_peer=lambda i: True)
    pair.run()
    assert isinstance(pair.auth, ChapAuthenticator)
    assert pair.auth.challenges_sent == 10
    assert pair.sent_by_auth[-1][0] == 27.0
    assert pair.auth.result == AuthResult(False, "", "no Response to 10 chap Challenges")
    # The peer never saw a Challenge and gave up after restart_timer * max_attempts.
    assert pair.peer.result == AuthResult(False, "alice", "no chap Challenge within 30 s")


def test_peer_gives_up_without_success_or_failure() -> None:
    sent: list[bytes] = []
    peer = ChapPeer(user="alice", password="secret", send=sent.append, random_bytes=bytes)
    peer.start(0.0)
    peer.receive(encode_chap_value(ChapCode.CHALLENGE, 7, b"x" * 16, b"lns"), 0.0)
    for t in range(3, 40, 3):
        peer.handle_timer(float(t))
    assert len(sent) == 10 and len(set(sent)) == 1  # the same Response repeated
    assert peer.result == AuthResult(
        False, "alice", "no chap Success or Failure after 10 Responses"
    )


def test_rechallenge_success() -> None:
    pair = Pair(rechallenge_interval=60.0)
    assert pair.auth.get_timer() == 60.0
    pair.run(until=130.0)
    assert isinstance(pair.auth, ChapAuthenticator)
    assert pair.auth.challenges_sent == 3  # 0 s, 60 s, 120 s
    assert [t for t, p in pair.sent_by_auth if p[0] == 1] == [0.0, 60.0, 120.0]
    assert pair.auth.result == AuthResult(True, "alice", "chap login ok for alice")
    assert pair.peer.result is not None and pair.peer.result.success
    assert pair.auth.get_timer() == 180.0


def test_rechallenge_with_wrong_secret_fails() -> None:
    pair = Pair(rechallenge_interval=60.0)
    assert pair.auth.result is not None and pair.auth.result.success
    assert isinstance(pair.peer, ChapPeer)
    pair.peer._password = "changed"  # the peer no longer knows the secret
    pair.run(until=100.0)
    assert pair.auth.result == AuthResult(False, "alice", "bad password for alice")
    assert pair.codes("auth") == [1, 3, 1, 4]
    assert pair.peer.result is not None and not pair.peer.result.success
    assert pair.auth.get_timer() is None  # no more re-challenges after a failure


def test_rechallenge_unanswered_fails() -> None:
    pair = Pair(rechallenge_interval=60.0)
    pair.drop_to_peer = lambda i: i >= 2  # the link dies after the first success
    pair.run(until=200.0)
    assert pair.auth.result == AuthResult(False, "alice", "no Response to 10 chap Challenges")
    assert pair.sent_by_auth[-1][0] == 60.0 + 27.0


def test_rechallenge_answered_by_another_user_fails() -> None:
    sent: list[bytes] = []
    auth = ChapAuthenticator(
        credentials=USERS.get,
        send=sent.append,
        random_bytes=random.Random(3).randbytes,
        rechallenge_interval=10.0,
    )

    def answer(user: bytes, secret: bytes, now: float) -> None:
        challenge = decode_packet(sent[-1])
        value, _ = decode_chap_value(challenge.data)
        response = md5_response(challenge.identifier, secret, value)
        auth.receive(encode_chap_value(2, challenge.identifier, response, user), now)

    auth.start(0.0)
    answer(b"alice", b"secret", 0.1)
    assert auth.result is not None and auth.result.success
    auth.handle_timer(10.1)
    answer(b"bob", b"hunter2", 10.2)  # valid for bob, but the link belongs to alice
    assert auth.result == AuthResult(False, "bob", "re-challenge answered as bob, not alice")


def test_peer_answers_retransmitted_challenge_identically() -> None:
    sent: list[bytes] = []
    peer = ChapPeer(user="alice", password="secret", send=sent.append, random_bytes=bytes)
    peer.start(0.0)
    challenge = encode_chap_value(ChapCode.CHALLENGE, 9, b"c" * 16, b"lns")
    peer.receive(challenge, 0.0)
    peer.receive(challenge, 0.5)
    assert len(sent) == 2 and sent[0] == sent[1]
    peer.receive(encode_chap_message(ChapCode.SUCCESS, 8, b""), 0.6)  # wrong id
    assert peer.result is None and peer.drops["stale identifier"] == 1
    peer.receive(encode_chap_message(ChapCode.SUCCESS, 9, b"welcome"), 0.7)
    assert peer.result == AuthResult(True, "alice", "chap Success: welcome")
    peer.receive(encode_chap_message(ChapCode.SUCCESS, 9, b"welcome"), 0.8)
    assert peer.drops["reply without a Response"] == 1


def test_success_before_any_response_is_ignored() -> None:
    peer = ChapPeer(user="alice", password="secret", send=lambda p: None, random_bytes=bytes)
    peer.start(0.0)
    peer.receive(encode_chap_message(ChapCode.SUCCESS, 0, b""), 0.1)
    assert peer.result is None


def test_response_with_wrong_size_fails() -> None:
    sent: list[bytes] = []
    auth = ChapAuthenticator(credentials=USERS.get, send=sent.append, random_bytes=bytes)
    auth.start(0.0)
    ident = decode_packet(sent[0]).identifier
    auth.receive(encode_chap_value(ChapCode.RESPONSE, ident, b"short", b"alice"), 0.1)
    assert auth.result == AuthResult(False, "alice", "malformed chap Response from alice")


def test_routing_between_machines() -> None:
    assert for_authenticator(0xC223, encode_chap_value(2, 1, b"v", b""))
    for code in (1, 3, 4):
        assert not for_authenticator(0xC223, bytes([code, 1, 0, 4]))
    assert not for_authenticator(0xC021, b"\x02\x01\x00\x04")


def _packets() -> st.SearchStrategy[bytes]:
    """Well-formed and broken CHAP packets with any code, identifier and fields."""
    valued = st.builds(
        encode_chap_value,
        st.integers(0, 255),
        st.integers(0, 255),
        st.binary(min_size=1, max_size=60),
        st.binary(max_size=20),
    )
    message = st.builds(
        encode_chap_message, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=60)
    )
    return st.one_of(valued, message, st.binary(max_size=70))


@settings(max_examples=300, deadline=None)
@given(st.lists(_packets(), max_size=10), st.sampled_from(["chap", "mschapv2"]))
def test_garbage_never_raises(packets: list[bytes], method: str) -> None:
    sent: list[bytes] = []
    auth = make_authenticator(
        method,
        credentials=USERS.get,
        send=sent.append,
        random_bytes=random.Random(0).randbytes,
        rechallenge_interval=1.0,
    )
    peer = make_peer(method, user="alice", password="secret", send=sent.append, random_bytes=bytes)
    auth.start(0.0)
    peer.start(0.0)
    for i, packet in enumerate(packets):
        auth.receive(packet, float(i))
        peer.receive(packet, float(i))
        auth.handle_timer(float(i))
        peer.handle_timer(float(i))
    # Nothing forged from random bytes authenticates: no valid proof of the password.
    assert auth.result is None or not auth.result.success
    if method == "mschapv2":  # the peer also checks the server's proof
        assert peer.result is None or not peer.result.success
    assert all(len(p) >= 4 for p in sent)
