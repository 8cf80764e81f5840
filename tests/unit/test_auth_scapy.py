"""Every PAP/CHAP packet we build decodes the same in scapy, and scapy's decode in ours."""

from __future__ import annotations

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

scapy_ppp = pytest.importorskip("scapy.layers.ppp")

from scapy.layers.ppp import (  # noqa: E402
    HDLC,
    PPP,
    PPP_CHAP,
    PPP_PAP,
    PPP_CHAP_ChallengeResponse,
    PPP_PAP_Request,
    PPP_PAP_Response,
)

from pyl2tp.ppp.auth import make_authenticator, make_peer  # noqa: E402
from pyl2tp.ppp.auth.packets import (  # noqa: E402
    ChapCode,
    PapCode,
    decode_chap_value,
    decode_packet,
    decode_pap_request,
    decode_pap_response,
    encode_chap_message,
    encode_chap_value,
    encode_pap_request,
    encode_pap_response,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

ids = st.integers(0, 255)
short = st.binary(max_size=255)


# --- ours -> scapy ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(ids, short, short)
def test_pap_request_in_scapy(identifier: int, peer_id: bytes, password: bytes) -> None:
    raw = encode_pap_request(identifier, peer_id, password)
    pkt = PPP_PAP(raw)
    assert isinstance(pkt, PPP_PAP_Request)
    assert (pkt.code, pkt.id, pkt.len) == (1, identifier, len(raw))
    assert (pkt.username, pkt.password) == (peer_id, password)
    assert bytes(pkt) == raw


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([PapCode.AUTHENTICATE_ACK, PapCode.AUTHENTICATE_NAK]), ids, short)
def test_pap_response_in_scapy(code: int, identifier: int, message: bytes) -> None:
    raw = encode_pap_response(code, identifier, message)
    pkt = PPP_PAP(raw)
    assert isinstance(pkt, PPP_PAP_Response)
    assert (pkt.code, pkt.id, pkt.len, pkt.message) == (code, identifier, len(raw), message)
    assert bytes(pkt) == raw


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([ChapCode.CHALLENGE, ChapCode.RESPONSE]),
    ids,
    st.binary(min_size=1, max_size=255),
    st.binary(max_size=100),
)
def test_chap_value_packets_in_scapy(code: int, identifier: int, value: bytes, name: bytes) -> None:
    raw = encode_chap_value(code, identifier, value, name)
    pkt = PPP_CHAP(raw)
    assert isinstance(pkt, PPP_CHAP_ChallengeResponse)
    assert (pkt.code, pkt.id, pkt.len) == (code, identifier, len(raw))
    assert (pkt.value_size, pkt.value, pkt.optional_name) == (len(value), value, name)
    assert bytes(pkt) == raw


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([ChapCode.SUCCESS, ChapCode.FAILURE]), ids, st.binary(max_size=200))
def test_chap_message_packets_in_scapy(code: int, identifier: int, message: bytes) -> None:
    raw = encode_chap_message(code, identifier, message)
    pkt = PPP_CHAP(raw)
    assert (pkt.code, pkt.id, pkt.len, pkt.data) == (code, identifier, len(raw), message)
    assert bytes(pkt) == raw


def _one_exchange(
    method: str, password: str, sent_auth: list[bytes], sent_peer: list[bytes]
) -> None:
    queue: list[tuple[str, bytes]] = []

    def from_auth(packet: bytes) -> None:
        sent_auth.append(packet)
        queue.append(("peer", packet))

    def from_peer(packet: bytes) -> None:
        sent_peer.append(packet)
        queue.append(("auth", packet))

    auth = make_authenticator(
        method,
        credentials={"alice": "secret"}.get,
        send=from_auth,
        random_bytes=random.Random(4).randbytes,
        name="lns1",
    )
    peer = make_peer(
        method,
        user="alice",
        password=password,
        send=from_peer,
        random_bytes=random.Random(5).randbytes,
    )
    auth.start(0.0)
    peer.start(0.0)
    while queue:
        where, packet = queue.pop(0)
        (auth if where == "auth" else peer).receive(packet, 0.0)
    assert auth.result is not None and peer.result is not None
    assert auth.result.success == (password == "secret")


def _exchange(method: str) -> tuple[list[bytes], list[bytes]]:
    """Every packet both machines sent in one successful and one failed exchange."""
    sent_auth: list[bytes] = []
    sent_peer: list[bytes] = []
    for password in ("secret", "wrong"):
        _one_exchange(method, password, sent_auth, sent_peer)
    return sent_auth, sent_peer


@pytest.mark.parametrize("method", ["pap", "chap", "mschapv2"])
def test_machine_output_in_scapy(method: str) -> None:
    sent_auth, sent_peer = _exchange(method)
    assert len(sent_auth) >= 2 and len(sent_peer) >= 2
    proto = 0xC023 if method == "pap" else 0xC223
    for raw in sent_auth + sent_peer:
        # The whole PPP frame as it goes into L2TP: FF 03, protocol, packet.
        frame = HDLC(b"\xff\x03" + proto.to_bytes(2, "big") + raw)
        assert frame[PPP].proto == proto
        layer = frame[PPP].payload
        ours = decode_packet(raw)
        assert (layer.code, layer.id, layer.len) == (ours.code, ours.identifier, len(raw))
        if method == "pap" and ours.code == 1:
            assert (layer.username, layer.password) == decode_pap_request(ours.data)
        elif method == "pap":
            assert layer.message == decode_pap_response(ours.data)
        elif ours.code in (1, 2):
            value, name = decode_chap_value(ours.data)
            assert (layer.value, layer.optional_name) == (value, name)
        else:
            assert layer.data == ours.data
        assert bytes(layer) == raw


# --- scapy -> ours ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(ids, short, short)
def test_scapy_pap_request_in_ours(identifier: int, peer_id: bytes, password: bytes) -> None:
    raw = bytes(PPP_PAP_Request(id=identifier, username=peer_id, password=password))
    packet = decode_packet(raw)
    assert (packet.code, packet.identifier) == (1, identifier)
    assert decode_pap_request(packet.data) == (peer_id, password)
    assert encode_pap_request(identifier, peer_id, password) == raw


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([2, 3]), ids, short)
def test_scapy_pap_response_in_ours(code: int, identifier: int, message: bytes) -> None:
    raw = bytes(PPP_PAP_Response(code=code, id=identifier, message=message))
    packet = decode_packet(raw)
    assert (packet.code, packet.identifier) == (code, identifier)
    assert decode_pap_response(packet.data) == message


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 2]), ids, st.binary(min_size=1, max_size=255), st.binary(max_size=80))
def test_scapy_chap_in_ours(code: int, identifier: int, value: bytes, name: bytes) -> None:
    raw = bytes(
        PPP_CHAP_ChallengeResponse(code=code, id=identifier, value=value, optional_name=name)
    )
    packet = decode_packet(raw)
    assert (packet.code, packet.identifier) == (code, identifier)
    assert decode_chap_value(packet.data) == (value, name)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([3, 4]), ids, st.binary(max_size=100))
def test_scapy_chap_message_in_ours(code: int, identifier: int, message: bytes) -> None:
    raw = bytes(PPP_CHAP(code=code, id=identifier, data=message))
    packet = decode_packet(raw)
    assert (packet.code, packet.identifier, packet.data) == (code, identifier, message)


def test_scapy_built_pap_login_is_accepted() -> None:
    sent: list[bytes] = []
    auth = make_authenticator(
        "pap", credentials={"alice": "secret"}.get, send=sent.append, random_bytes=bytes
    )
    auth.start(0.0)
    frame = bytes(
        HDLC() / PPP(proto=0xC023) / PPP_PAP_Request(id=42, username=b"alice", password=b"secret")
    )
    auth.receive(frame[4:], 0.1)
    assert auth.result is not None and auth.result.success
    reply = PPP_PAP(sent[0])
    assert isinstance(reply, PPP_PAP_Response) and (reply.code, reply.id) == (2, 42)


def test_scapy_built_chap_response_is_accepted() -> None:
    sent: list[bytes] = []
    auth = make_authenticator(
        "chap",
        credentials={"alice": "secret"}.get,
        send=sent.append,
        random_bytes=random.Random(9).randbytes,
    )
    auth.start(0.0)
    challenge = PPP_CHAP(sent[0])
    assert isinstance(challenge, PPP_CHAP_ChallengeResponse) and challenge.code == 1
    digest = hashlib.md5(bytes([challenge.id]) + b"secret" + challenge.value).digest()
    response = PPP_CHAP_ChallengeResponse(
        code=2, id=challenge.id, value=digest, optional_name=b"alice"
    )
    auth.receive(bytes(response), 0.1)
    assert auth.result is not None and auth.result.success
    success = PPP_CHAP(sent[1])
    assert (success.code, success.id) == (3, challenge.id)


def test_scapy_built_chap_challenge_is_answered() -> None:
    sent: list[bytes] = []
    peer = make_peer("chap", user="alice", password="secret", send=sent.append, random_bytes=bytes)
    peer.start(0.0)
    peer.receive(
        bytes(PPP_CHAP_ChallengeResponse(code=1, id=77, value=b"v" * 16, optional_name=b"lns")), 0.0
    )
    response = PPP_CHAP(sent[0])
    assert (response.code, response.id, response.optional_name) == (2, 77, b"alice")
    assert response.value == hashlib.md5(bytes([77]) + b"secret" + b"v" * 16).digest()
    peer.receive(bytes(PPP_CHAP(code=3, id=77, data=b"ok")), 0.1)
    assert peer.result is not None and peer.result.success
