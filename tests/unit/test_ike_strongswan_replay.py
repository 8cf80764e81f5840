"""strongSwan's recorded initiator messages fed to our responder.

The fixtures (tests/fixtures/ike/) hold a whole strongSwan 5.9.8 IKEv1 exchange and the
values charon logged. Our responder is given the recorded randomness of strongSwan's
responder (cookie, nonces, SPI) and, since the DH private value was not logged, a DH
group that returns the recorded public value and the logged shared secret. Where our
answer legitimately differs from strongSwan's (IDir), the IV chain is moved on with the
recorded ciphertext, as strongSwan's initiator saw it. Then strongSwan's HASH_I, HASH(1)
and HASH(3) must verify in our code, and our child SA must hold charon's ESP keys and
decrypt charon's ESP packet.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tests.unit.test_ike_samples import SAMPLES, Exchange, Replay, load

import pyl2tp.ike.phase1 as phase1
from pyl2tp.esp import ESPParams, InboundSA
from pyl2tp.ike.dh import DHPrivateKey
from pyl2tp.ike.endpoint import IKEConfig, IKEEndpoint
from pyl2tp.ike.events import ChildSAEstablished, IKESAEstablished
from pyl2tp.wire.isakmp import (
    KEPayload,
    NoncePayload,
    SAPayload,
    decode_message,
    decode_payloads,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


class RecordedGroup:
    """Stands in for the DH group: strongSwan's responder public value and g^xy."""

    def __init__(self, public: bytes, shared: bytes) -> None:
        self.public, self.secret = public, shared

    def generate(self, rng: object = None) -> tuple[DHPrivateKey, bytes]:
        return DHPrivateKey(0, 0), self.public

    def shared(self, private: DHPrivateKey, peer_public: bytes) -> bytes:
        return self.secret


def scripted(values: list[bytes]) -> Callable[[int], bytes]:
    queue = list(values)

    def rng(n: int) -> bytes:
        return queue.pop(0) if queue else bytes(range(1, n + 1))

    return rng


def addr(m: dict[str, object], side: str) -> tuple[str, int]:
    return str(m[side]), int(m["sport" if side == "src" else "dport"])  # type: ignore[call-overload]


@pytest.mark.parametrize("name", SAMPLES)
def test_our_responder_answers_strongswan(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ex: Exchange = load(name)
    msgs = ex.fixture["messages"]
    r = Replay(ex)
    mm4 = decode_payloads(ex.messages[3][0].next_payload, ex.messages[3][1])
    gxr = next(p.data for p in mm4 if isinstance(p, KEPayload))
    nr = next(p.data for p in mm4 if isinstance(p, NoncePayload))
    r.decrypt(4)
    r.decrypt(5)
    r.decrypt(6)
    _, qm2 = r.decrypt(7)
    qm2_payloads = [raw.decode() for raw in qm2]
    sa_r = next(p for p in qm2_payloads if isinstance(p, SAPayload))
    nr_qm = next(p.data for p in qm2_payloads if isinstance(p, NoncePayload))
    rcookie = ex.messages[1][0].responder_cookie

    group = RecordedGroup(gxr, ex.logged("shared Diffie Hellman secret"))
    monkeypatch.setattr(phase1, "get_group", lambda number: group)
    rng = scripted([rcookie, nr, sa_r.proposals[0].spi, nr_qm])
    ep = IKEEndpoint(IKEConfig(psk=ex.fixture["psk"].encode(), tunnel_ok=True), random_bytes=rng)

    def feed(i: int) -> list[bytes]:
        m = msgs[i]
        ep.datagram_received(
            bytes.fromhex(m["isakmp"]), addr(m, "src"), addr(m, "dst"), 5.0,
            nat_t=m["dport"] == 4500,
        )
        return [d for d, *_ in ep.datagrams_to_send(5.0)]

    mm2 = feed(0)
    assert len(mm2) == 1
    header, body = decode_message(mm2[0])
    assert header.responder_cookie == rcookie
    # our MM2 SA is the echo strongSwan's responder sent
    assert decode_payloads(header.next_payload, body)[0] == r.choice.sa_payload()
    (mm4_ours,) = feed(2)
    ours = decode_payloads(*_first(mm4_ours))
    assert next(p for p in ours if isinstance(p, KEPayload)).data == gxr
    (_mm6_ours,) = feed(4)  # HASH_I verified
    events = ep.next_events()
    est = [e for e in events if isinstance(e, IKESAEstablished)]
    assert len(est) == 1 and est[0].peer_id == "a@sc"
    assert est[0].suite_name == "aes128-sha256-modp2048"
    ike = ep._sas[est[0].cookies]
    assert ike.keys is not None and ike.keys.skeyid_d == ex.logged("SKEYID_d")
    assert ike.nat_t and ike.nat_peer  # charon forces encapsulation: fake NAT-D
    # strongSwan's initiator chained its IV from the MM6 it received
    assert ike.crypto is not None
    ike.crypto.advance(0, ex.messages[5][1])
    (_qm2_ours,) = feed(6)  # HASH(1) verified, proposal accepted
    mid = ex.messages[6][0].message_id
    ike.crypto.advance(mid, ex.messages[7][1])
    assert feed(8) == []  # HASH(3) verified
    children = [e.child for e in ep.next_events() if isinstance(e, ChildSAEstablished)]
    assert len(children) == 1
    child = children[0]
    assert child.udp_encap and child.peer == ("198.18.10.1", 4500)
    assert child.inbound.enc_key == ex.logged("encryption initiator key")
    assert child.inbound.auth_key == ex.logged("integrity initiator key")
    assert child.outbound.enc_key == ex.logged("encryption responder key")
    assert child.outbound.auth_key == ex.logged("integrity responder key")
    # charon's ESP packets open with our SAs (its outbound with a copy of ours)
    to_us, from_us = (bytes.fromhex(p["esp"]) for p in ex.fixture["esp"])
    nh, payload = InboundSA(child.inbound).decrypt(to_us)
    assert nh in (4, 17) and payload
    mirror = ESPParams(
        spi=child.outbound.spi, enc=child.outbound.enc, enc_key=child.outbound.enc_key,
        auth=child.outbound.auth, auth_key=child.outbound.auth_key, mode=child.outbound.mode,
    )
    nh2, payload2 = InboundSA(mirror).decrypt(from_us)
    assert nh2 == nh and payload2


def _first(data: bytes) -> tuple[int, bytes]:
    header, body = decode_message(data)
    return header.next_payload, body
