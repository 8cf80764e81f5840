"""PAP (RFC 1334): authenticator and peer in memory, with loss and hostile input."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.ppp.auth import (
    AUTH_OPTION,
    AuthResult,
    for_authenticator,
    make_authenticator,
    make_peer,
    method_of,
)
from pyl2tp.ppp.auth.packets import (
    PapCode,
    decode_packet,
    decode_pap_request,
    decode_pap_response,
    encode_pap_request,
    encode_pap_response,
)
from pyl2tp.ppp.auth.pap import PapAuthenticator, PapPeer

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

USERS = {"alice": "secret", "bob": "hunter2"}


class Pair:
    """Authenticator and peer joined by an in-memory link that can drop packets.

    ``drop_to_auth``/``drop_to_peer`` hold the indexes (0-based, per direction) of the
    packets the link loses.
    """

    def __init__(
        self,
        *,
        user: str = "alice",
        password: str = "secret",
        drop_to_auth: Callable[[int], bool] = lambda i: False,
        drop_to_peer: Callable[[int], bool] = lambda i: False,
    ) -> None:
        self.to_auth: list[bytes] = []
        self.to_peer: list[bytes] = []
        self.sent_by_auth: list[tuple[float, bytes]] = []
        self.sent_by_peer: list[tuple[float, bytes]] = []
        self.now = 0.0
        self._drop_to_auth = drop_to_auth
        self._drop_to_peer = drop_to_peer
        self.auth = PapAuthenticator(
            credentials=USERS.get,
            send=self._from_auth,
            random_bytes=random.Random(1).randbytes,
        )
        self.peer = PapPeer(
            user=user,
            password=password,
            send=self._from_peer,
            random_bytes=random.Random(2).randbytes,
        )

    def _from_auth(self, packet: bytes) -> None:
        index = len(self.sent_by_auth)
        self.sent_by_auth.append((self.now, packet))
        if not self._drop_to_peer(index):
            self.to_peer.append(packet)

    def _from_peer(self, packet: bytes) -> None:
        index = len(self.sent_by_peer)
        self.sent_by_peer.append((self.now, packet))
        if not self._drop_to_auth(index):
            self.to_auth.append(packet)

    def pump(self) -> None:
        while self.to_auth or self.to_peer:
            if self.to_auth:
                self.auth.receive(self.to_auth.pop(0), self.now)
            if self.to_peer:
                self.peer.receive(self.to_peer.pop(0), self.now)

    def run(self, until: float = 100.0) -> None:
        self.auth.start(self.now)
        self.peer.start(self.now)
        self.pump()
        while True:
            timers = [t for t in (self.auth.get_timer(), self.peer.get_timer()) if t is not None]
            if not timers or min(timers) > until:
                return
            self.now = min(timers)
            self.auth.handle_timer(self.now)
            self.peer.handle_timer(self.now)
            self.pump()


def test_option_data_and_inverse() -> None:
    assert AUTH_OPTION["pap"] == b"\xc0\x23"
    assert method_of(b"\xc0\x23") == "pap"
    assert method_of(b"\xc2\x23\x05") == "chap"
    assert method_of(b"\xc2\x23\x81") == "mschapv2"
    assert method_of(b"\xc2\x27") is None  # EAP, offered by SoftEther first
    assert method_of(b"\xc2\x23\x80") is None  # MS-CHAPv1


def test_success() -> None:
    pair = Pair()
    pair.run()
    assert pair.auth.result == AuthResult(True, "alice", "PAP login ok for alice")
    assert pair.peer.result is not None and pair.peer.result.success
    assert pair.peer.result.message == "PAP Authenticate-Ack: Login ok"
    # --> Authenticate-Request carrying our name and password
    assert len(pair.sent_by_peer) == 1
    packet = decode_packet(pair.sent_by_peer[0][1])
    assert packet.code == PapCode.AUTHENTICATE_REQUEST
    assert decode_pap_request(packet.data) == (b"alice", b"secret")
    # <-- Authenticate-Ack with the request's identifier
    reply = decode_packet(pair.sent_by_auth[0][1])
    assert (reply.code, reply.identifier) == (PapCode.AUTHENTICATE_ACK, packet.identifier)
    assert pair.auth.get_timer() is None and pair.peer.get_timer() is None


def test_wrong_password() -> None:
    pair = Pair(password="nope")
    pair.run()
    assert pair.auth.result == AuthResult(False, "alice", "bad password for alice")
    assert pair.peer.result is not None and not pair.peer.result.success
    assert "Authenticate-Nak" in pair.peer.result.message
    assert decode_packet(pair.sent_by_auth[0][1]).code == PapCode.AUTHENTICATE_NAK


def test_unknown_user() -> None:
    pair = Pair(user="mallory")
    pair.run()
    assert pair.auth.result == AuthResult(False, "mallory", "unknown user mallory")
    assert pair.peer.result is not None and not pair.peer.result.success
    # The wire does not tell an unknown user from a bad password.
    wrong = Pair(password="nope")
    wrong.run()
    assert pair.sent_by_auth[0][1][4:] == wrong.sent_by_auth[0][1][4:]


def test_lost_request_is_retransmitted_with_new_identifier() -> None:
    pair = Pair(drop_to_auth=lambda i: i < 2)
    pair.run()
    assert pair.auth.result is not None and pair.auth.result.success
    assert pair.peer.result is not None and pair.peer.result.success
    times = [t for t, _ in pair.sent_by_peer]
    assert times == [0.0, 3.0, 6.0]
    ids = [decode_packet(p).identifier for _, p in pair.sent_by_peer]
    # RFC 1334 2.2.1: the Identifier changes with every request.
    assert len(set(ids)) == 3 and ids[1] == (ids[0] + 1) & 0xFF


def test_lost_ack_gets_same_answer_again() -> None:
    pair = Pair(drop_to_peer=lambda i: i == 0)
    pair.run()
    assert pair.peer.result is not None and pair.peer.result.success
    assert pair.auth.drops["repeated request"] == 1
    assert [decode_packet(p).code for _, p in pair.sent_by_auth] == [2, 2]
    second_req = decode_packet(pair.sent_by_peer[1][1])
    assert decode_packet(pair.sent_by_auth[1][1]).identifier == second_req.identifier


def test_repeated_request_after_nak_is_still_nak() -> None:
    sent: list[bytes] = []
    auth = make_authenticator(
        "pap", credentials=USERS.get, send=sent.append, random_bytes=random.Random(0).randbytes
    )
    auth.start(0.0)
    auth.receive(encode_pap_request(1, b"alice", b"wrong"), 0.0)
    # RFC 1334: a later request gets the same reply code, even with the right password.
    auth.receive(encode_pap_request(2, b"alice", b"secret"), 1.0)
    assert [decode_packet(p).code for p in sent] == [3, 3]
    assert [decode_packet(p).identifier for p in sent] == [1, 2]
    assert auth.result is not None and not auth.result.success


def test_peer_gives_up_after_max_attempts() -> None:
    pair = Pair(drop_to_auth=lambda i: True)
    pair.run()
    assert pair.peer.result is not None and not pair.peer.result.success
    assert pair.peer.result.message == "no answer to 10 PAP Authenticate-Requests"
    assert len(pair.sent_by_peer) == 10
    assert pair.sent_by_peer[-1][0] == 27.0
    # The authenticator waited restart_timer * max_attempts for a request.
    assert pair.auth.result == AuthResult(False, "", "no PAP Authenticate-Request within 30 s")


def test_shorter_timers_are_honoured() -> None:
    sent: list[bytes] = []
    peer = make_peer(
        "pap",
        user="alice",
        password="x",
        send=sent.append,
        random_bytes=random.Random(0).randbytes,
        restart_timer=0.5,
        max_attempts=3,
    )
    peer.start(10.0)
    assert peer.get_timer() == 10.5
    peer.handle_timer(10.2)  # early wake-up: nothing happens
    assert len(sent) == 1
    for t in (10.5, 11.0, 11.5):
        peer.handle_timer(t)
    assert len(sent) == 3
    assert peer.result is not None and not peer.result.success


def test_peer_ignores_reply_with_unknown_identifier() -> None:
    sent: list[bytes] = []
    peer = PapPeer(
        user="alice", password="secret", send=sent.append, random_bytes=lambda n: b"\x10" * n
    )
    peer.start(0.0)
    assert decode_packet(sent[0]).identifier == 0x10
    peer.receive(encode_pap_response(PapCode.AUTHENTICATE_ACK, 0x11, b""), 0.1)
    assert peer.result is None and peer.drops["stale identifier"] == 1
    # A reply to an earlier (retransmitted) request is fine: ids 0x10, 0x11 are both ours.
    peer.handle_timer(3.0)
    peer.receive(encode_pap_response(PapCode.AUTHENTICATE_ACK, 0x10, b"hi"), 3.1)
    assert peer.result == AuthResult(True, "alice", "PAP Authenticate-Ack: hi")


def test_empty_ack_data_is_accepted() -> None:
    # Some authenticators send an Ack with no Msg-Length octet at all.
    peer = PapPeer(user="a", password="b", send=lambda p: None, random_bytes=lambda n: bytes(n))
    peer.start(0.0)
    peer.receive(b"\x02\x00\x00\x04", 0.1)
    assert peer.result is not None and peer.result.success


def test_codec_rejects_inconsistent_lengths() -> None:
    from pyl2tp.errors import ParseError

    for bad in (b"", b"\x01\x00", b"\x01\x00\x00\x03", b"\x01\x00\x00\x09\x00"):
        with pytest.raises(ParseError):
            decode_packet(bad)
    for bad_data in (b"", b"\x05ab", b"\x01a\x05b", b"\x01a\x01bX"):
        with pytest.raises(ParseError):
            decode_pap_request(bad_data)
    with pytest.raises(ParseError):
        decode_pap_response(b"\x05ab")
    # Octets past Length are padding (RFC 1661 5).
    packet = decode_packet(encode_pap_response(2, 9, b"ok") + b"\x00\x00")
    assert decode_pap_response(packet.data) == b"ok"
    with pytest.raises(ValueError):
        encode_pap_request(1, b"x" * 256, b"")


def test_routing_between_machines() -> None:
    assert for_authenticator(0xC023, encode_pap_request(1, b"a", b"b"))
    assert not for_authenticator(0xC023, encode_pap_response(2, 1, b""))
    assert not for_authenticator(0xC023, b"")


def test_misuse_is_reported() -> None:
    with pytest.raises(ValueError):
        make_peer("eap", user="a", password="b", send=print, random_bytes=bytes)
    with pytest.raises(ValueError):
        make_authenticator("eap", credentials=USERS.get, send=print, random_bytes=bytes)
    with pytest.raises(ValueError):
        PapPeer(user="a" * 300, password="b", send=print, random_bytes=bytes)
    peer = PapPeer(user="a", password="b", send=lambda p: None, random_bytes=bytes)
    peer.start(0.0)
    with pytest.raises(RuntimeError):
        peer.start(0.0)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_garbage_never_raises(packets: list[bytes]) -> None:
    sent: list[bytes] = []
    auth = PapAuthenticator(
        credentials=USERS.get, send=sent.append, random_bytes=random.Random(0).randbytes
    )
    peer = PapPeer(
        user="alice", password="secret", send=sent.append, random_bytes=lambda n: bytes(n)
    )
    auth.start(0.0)
    peer.start(0.0)
    for i, packet in enumerate(packets):
        auth.receive(packet, float(i))
        peer.receive(packet, float(i))
        auth.handle_timer(float(i))
        peer.handle_timer(float(i))
    for machine in (auth, peer):
        if machine.result is None:
            assert machine.get_timer() is not None
