"""Main Mode (PSK) between our initiator and our responder, in memory; with and without NAT.

Also holds the in-memory network (:class:`Net`) the other IKE endpoint tests use.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pyl2tp.ike.endpoint import Addr, IKEConfig, IKEEndpoint
from pyl2tp.ike.events import (
    AuthenticationFailed,
    ChildSAEstablished,
    Event,
    IKESAEstablished,
    NegotiationFailed,
)
from pyl2tp.ike.proposals import EncryptionAlgorithm, Group, HashAlgorithm, IkeSuite, Policy
from pyl2tp.wire.isakmp import (
    ExchangeType,
    NatDPayload,
    PayloadType,
    VendorID,
    VendorIDPayload,
    decode_message,
    decode_payloads,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

PSK = b"test-psk-0123"
SERVER = "198.18.0.1"
CLIENT = "198.18.0.2"
NAT_PUBLIC = "198.18.1.1"


def rng(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


@dataclass
class Host:
    ip: str
    ep: IKEEndpoint
    events: list[Event] = field(default_factory=list)
    behind_nat: bool = False

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]


@dataclass
class Sent:
    data: bytes
    src: Addr  # as sent (before NAT)
    dst: Addr
    nat_t: bool


class Net:
    """Hosts by address; hosts behind the NAT share NAT_PUBLIC with mapped ports."""

    def __init__(self) -> None:
        self.hosts: dict[str, Host] = {}
        self.now = 1000.0
        self.log: list[Sent] = []
        self.drop: Callable[[Sent], bool] = lambda s: False
        self._map: dict[Addr, int] = {}  # private (ip, port) -> public port
        self._rev: dict[int, Addr] = {}
        self._next_port = 40000

    def add(self, ip: str, config: IKEConfig, seed: int, *, behind_nat: bool = False) -> Host:
        host = Host(ip, IKEEndpoint(config, random_bytes=rng(seed)), behind_nat=behind_nat)
        self.hosts[ip] = host
        return host

    def _outside(self, host: Host, src: Addr) -> Addr:
        if not host.behind_nat:
            return src
        if src not in self._map:
            self._next_port += 1
            self._map[src] = self._next_port
            self._rev[self._next_port] = src
        return (NAT_PUBLIC, self._map[src])

    def pump(self, rounds: int = 50) -> int:
        """Deliver until nothing is left; return the number of datagrams delivered."""
        count = 0
        for _ in range(rounds):
            moved = False
            for host in list(self.hosts.values()):
                for data, dst, local, nat_t in host.ep.datagrams_to_send(self.now):
                    assert nat_t == (local[1] == 4500)
                    sent = Sent(data, local, dst, nat_t)
                    self.log.append(sent)
                    moved = True
                    if self.drop(sent):
                        continue
                    src = self._outside(host, local)
                    if dst[0] == NAT_PUBLIC:
                        inside = self._rev.get(dst[1])
                        if inside is None:
                            continue
                        dst = inside
                    target = self.hosts.get(dst[0])
                    if target is None:
                        continue
                    count += 1
                    target.ep.datagram_received(data, src, dst, self.now, nat_t=dst[1] == 4500)
            for host in self.hosts.values():
                host.events += host.ep.next_events()
            if not moved:
                break
        return count

    def advance(self, seconds: float, step: float = 0.5) -> None:
        """Run time forward, firing timers and delivering what they send."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for host in self.hosts.values():
                t = host.ep.get_timer()
                if t is not None and t <= self.now:
                    host.ep.handle_timer(self.now)
            self.pump()

    def pcap(self, path: Path) -> Path:
        """Everything delivered so far as a pcap (UDP, non-ESP marker on 4500)."""
        from tests.harness.capture import write_udp_pcap

        return write_udp_pcap(path, [
            (s.src[0], s.src[1], s.dst[0], s.dst[1], (b"\x00" * 4 if s.nat_t else b"") + s.data)
            for s in self.log
        ])


def config(psk: bytes | None = PSK, **kw: object) -> IKEConfig:
    return IKEConfig(psk=psk, **kw)  # type: ignore[arg-type]


def pair(
    *, client_nat: bool = False, client_cfg: IKEConfig | None = None,
    server_cfg: IKEConfig | None = None, client_ip: str = CLIENT,
) -> tuple[Net, Host, Host]:
    net = Net()
    server = net.add(SERVER, server_cfg or config(), 1)
    client = net.add(client_ip, client_cfg or config(), 2, behind_nat=client_nat)
    return net, client, server


def connect(net: Net, client: Host, l2tp: bool = True) -> None:
    client.ep.initiate(SERVER, net.now, local=(client.ip, 500), l2tp=l2tp)
    net.pump()


def suite_policy(suite: IkeSuite) -> Policy:
    return Policy(initiator_ike=(suite,))


# -- tests -----------------------------------------------------------------------------


# every phase-1 suite the default policy proposes and accepts
SUITES = list(Policy().initiator_ike)


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s.name)
def test_main_mode_each_suite(suite: IkeSuite) -> None:
    net, client, server = pair(client_cfg=config(policy=suite_policy(suite)))
    connect(net, client, l2tp=False)
    ce, se = client.of(IKESAEstablished), server.of(IKESAEstablished)
    assert len(ce) == 1 and len(se) == 1
    assert ce[0].suite_name == se[0].suite_name == suite.name
    assert ce[0].cookies == se[0].cookies
    assert se[0].peer == (CLIENT, 500) and se[0].peer_id == CLIENT
    assert ce[0].peer_id == SERVER
    # six messages, nothing more (no Quick Mode asked for)
    assert [decode_message(s.data)[0].exchange for s in net.log] == [ExchangeType.MAIN] * 6
    assert [s.nat_t for s in net.log] == [False] * 6
    info = client.ep.ike_sas()
    assert len(info) == 1 and info[0].state == "established" and info[0].initiator


def test_3des_legacy_suite() -> None:
    suite = IkeSuite(EncryptionAlgorithm.TRIPLE_DES_CBC, 192, HashAlgorithm.SHA1, Group.MODP1024)
    net, client, server = pair(
        client_cfg=config(policy=Policy(legacy=True, initiator_ike=(suite,))),
        server_cfg=config(policy=Policy(legacy=True)),
    )
    connect(net, client, l2tp=False)
    assert server.of(IKESAEstablished)[0].suite_name == "3des-sha1-modp1024"
    # the default policy refuses it
    net, client, server = pair(
        client_cfg=config(policy=Policy(legacy=True, initiator_ike=(suite,)))
    )
    connect(net, client, l2tp=False)
    assert not server.of(IKESAEstablished)
    assert server.of(NegotiationFailed)[0].notify == "NO-PROPOSAL-CHOSEN"
    assert client.of(NegotiationFailed)[0].notify == "NO-PROPOSAL-CHOSEN"
    assert client.ep.ike_sas() == [] and server.ep.ike_sas() == []


def test_vendor_ids_and_nat_d_sent() -> None:
    net, client, _server = pair()
    connect(net, client, l2tp=False)
    mm1 = decode_payloads(*_first_and_body(net.log[0].data))
    vids = {p.data for p in mm1 if isinstance(p, VendorIDPayload)}
    assert {VendorID.NAT_T_RFC3947, VendorID.NAT_T_DRAFT_02N, VendorID.DPD} <= vids
    mm3 = decode_payloads(*_first_and_body(net.log[2].data))
    natd = [p for p in mm3 if isinstance(p, NatDPayload)]
    assert len(natd) == 2 and not natd[0].draft
    mm2 = decode_payloads(*_first_and_body(net.log[1].data))
    answered = [p.data for p in mm2 if isinstance(p, VendorIDPayload)]
    assert answered == [VendorID.NAT_T_RFC3947, VendorID.DPD]


def test_fqdn_identities() -> None:
    net, client, server = pair(
        client_cfg=config(local_id="alice@example.test"),
        server_cfg=config(local_id="vpn.example.test"),
    )
    connect(net, client)
    assert server.of(IKESAEstablished)[0].peer_id == "alice@example.test"
    assert client.of(IKESAEstablished)[0].peer_id == "vpn.example.test"
    assert server.of(ChildSAEstablished)[0].child.peer_id == "alice@example.test"


def test_draft_nat_t_peer_gets_draft_payload_numbers() -> None:
    """A peer that sends only a draft NAT-T VID gets NAT-D as payload 130."""
    net, client, server = pair()
    client.ep._vendor_ids = lambda: [  # type: ignore[method-assign]
        VendorIDPayload(VendorID.NAT_T_DRAFT_02N), VendorIDPayload(VendorID.DPD)
    ]
    connect(net, client, l2tp=False)
    assert server.of(IKESAEstablished)
    header, body = decode_message(net.log[3].data)
    types = [p.payload_type for p in decode_payloads(header.next_payload, body)]
    assert types.count(PayloadType.NAT_D_DRAFT) == 2 and PayloadType.NAT_D not in types
    header, body = decode_message(net.log[1].data)
    answered = [p.data for p in decode_payloads(header.next_payload, body)
                if isinstance(p, VendorIDPayload)]
    assert answered == [VendorID.NAT_T_DRAFT_02N, VendorID.DPD]


def _first_and_body(data: bytes) -> tuple[int, bytes]:
    header, body = decode_message(data)
    return header.next_payload, body


def test_nat_detected_and_float_to_4500() -> None:
    net, client, server = pair(client_nat=True)
    connect(net, client, l2tp=False)
    se = server.of(IKESAEstablished)
    assert len(se) == 1
    # MM1-MM4 on 500, MM5/MM6 on 4500 (RFC 3947 4)
    assert [s.nat_t for s in net.log] == [False] * 4 + [True] * 2
    assert net.log[4].dst == (SERVER, 4500) and net.log[4].src == (CLIENT, 4500)
    assert se[0].peer[0] == "198.18.1.1" and se[0].peer[1] != 4500  # NAT-mapped port
    sinfo = server.ep.ike_sas()[0]
    assert sinfo.nat_t and sinfo.peer == se[0].peer
    srv = server.ep._sas[se[0].cookies]
    assert srv.nat_peer and not srv.nat_local
    cli = client.ep._sas[se[0].cookies]
    assert cli.nat_local and not cli.nat_peer


def test_no_nat_t_when_disabled() -> None:
    net, client, server = pair(client_nat=True, client_cfg=config(nat_t=False))
    connect(net, client, l2tp=False)
    assert server.of(IKESAEstablished)
    assert all(not s.nat_t for s in net.log)
    mm3 = decode_payloads(*_first_and_body(net.log[2].data))
    assert not any(isinstance(p, NatDPayload) for p in mm3)


@pytest.mark.parametrize("side", ["client", "server"])
def test_wrong_psk(side: str, caplog: pytest.LogCaptureFixture) -> None:
    bad = config(psk=b"other-secret-9876")
    kwargs = {"client_cfg": bad} if side == "client" else {"server_cfg": bad}
    net, client, server = pair(**kwargs)  # type: ignore[arg-type]
    with caplog.at_level("WARNING", logger="pyl2tp.ike"):
        connect(net, client)
    # The responder checks HASH_I first: it detects the mismatch either way.
    fails = server.of(AuthenticationFailed)
    assert len(fails) == 1 and fails[0].peer == (CLIENT, 500)
    assert fails[0].reason == "pre-shared key mismatch (HASH_I wrong)"
    assert f"IKE peer {CLIENT}:500: pre-shared key mismatch (HASH_I wrong)" in caplog.text
    assert not server.of(IKESAEstablished) and not client.of(IKESAEstablished)
    assert not server.of(ChildSAEstablished) and not client.of(ChildSAEstablished)
    assert server.ep.ike_sas() == [] and server.ep.stats.auth_failed == 1
    # the responder says so in the clear, so the initiator learns why at once
    assert [e.reason for e in client.of(AuthenticationFailed)] == [
        "pre-shared key mismatch (peer sent AUTHENTICATION-FAILED)"
    ]
    assert client.ep.ike_sas() == [] and client.ep.get_timer() is None
    assert "other-secret" not in caplog.text and PSK.decode() not in caplog.text


def test_wrong_hash_r_detected_by_initiator(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the responder's HASH_R is wrong, the initiator detects it."""
    import pyl2tp.ike.phase1 as phase1

    net, client, server = pair()
    real_hash_r, real_mm5 = phase1.hash_r, server.ep._mm5_received

    def bad_mm5(*args: object) -> None:
        monkeypatch.setattr(phase1, "hash_r", lambda *a: bytes(len(real_hash_r(*a))))
        try:
            real_mm5(*args)  # type: ignore[arg-type]
        finally:
            monkeypatch.setattr(phase1, "hash_r", real_hash_r)

    monkeypatch.setattr(server.ep, "_mm5_received", bad_mm5)
    connect(net, client)
    fails = client.of(AuthenticationFailed)
    assert len(fails) == 1 and "HASH_R wrong" in fails[0].reason
    assert not client.of(IKESAEstablished) and not client.of(ChildSAEstablished)
    assert client.ep.ike_sas() == [] and client.ep.stats.auth_failed == 1


def _aggressive_exchange(server_cfg: IKEConfig, psk: bytes = PSK) -> tuple[Host, list[bytes]]:
    """Play a PSK Aggressive Mode initiator by hand against our responder."""
    from pyl2tp.ike.crypto import (
        IkeCipher,
        IkeSACrypto,
        Prf,
        derive_phase1_keys,
        hash_i,
        hash_r,
        phase1_iv,
        skeyid_psk,
    )
    from pyl2tp.ike.dh import get_group
    from pyl2tp.wire.isakmp import (
        HashPayload,
        IDPayload,
        ISAKMPHeader,
        KEPayload,
        NoncePayload,
        encode_message,
        encode_payload_body,
        split_payloads,
    )

    net = Net()
    server = net.add(SERVER, server_cfg, 1)
    suite = SUITES[0]
    sa = Policy(initiator_ike=(suite,)).phase1_sa()
    group = get_group(suite.group)
    dh, gxi = group.generate(rng(5))
    ni = rng(6)(32)
    idii = IDPayload.from_address(CLIENT, 17, 500)
    cky_i = b"I" * 8
    am1 = encode_message(
        ISAKMPHeader(cky_i, bytes(8), ExchangeType.AGGRESSIVE),
        [sa, KEPayload(gxi), NoncePayload(ni), idii, VendorIDPayload(VendorID.DPD)],
    )
    peer, local = (CLIENT, 500), (SERVER, 500)
    server.ep.datagram_received(am1, peer, local, net.now, nat_t=False)
    replies = [d for d, *_ in server.ep.datagrams_to_send(net.now)]
    server.events += server.ep.next_events()
    if not replies:
        return server, replies
    header, body = decode_message(replies[0])
    raws = split_payloads(header.next_payload, body)
    by_type = {r.type: r for r in raws}
    gxr = by_type[PayloadType.KE].body
    nr = by_type[PayloadType.NONCE].body
    prf = Prf(suite.hash)
    cky_r = header.responder_cookie
    skeyid = skeyid_psk(prf, psk, ni, nr)
    keys = derive_phase1_keys(
        prf, skeyid, group.shared(dh, gxr), cky_i, cky_r, suite.key_bits // 8
    )
    sai_b = encode_payload_body(sa)
    expected_r = hash_r(prf, skeyid, gxi, gxr, cky_i, cky_r, sai_b, by_type[PayloadType.ID].body)
    assert (by_type[PayloadType.HASH].body == expected_r) == (psk == PSK)
    crypto = IkeSACrypto(IkeCipher(suite.encryption, keys.enc_key), prf,
                         phase1_iv(prf, gxi, gxr, 16))
    digest = hash_i(prf, skeyid, gxi, gxr, cky_i, cky_r, sai_b, encode_payload_body(idii))
    am3 = encode_message(
        ISAKMPHeader(cky_i, cky_r, ExchangeType.AGGRESSIVE), [HashPayload(digest)],
        encrypt=crypto.encrypt_for(0),
    )
    server.ep.datagram_received(am3, peer, local, net.now, nat_t=False)
    server.events += server.ep.next_events()
    return server, replies


def test_aggressive_mode_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pyl2tp.ike"):
        server, replies = _aggressive_exchange(config())
        assert replies == [] and server.ep.ike_sas() == [] and not server.events
        assert server.ep.stats.aggressive_refused == 1
        # said once per peer and minute, counted every time
        _aggressive_exchange_again(server)
        assert server.ep.stats.aggressive_refused == 2
    lines = [r.getMessage() for r in caplog.records if "Aggressive Mode refused" in r.getMessage()]
    assert lines == [f"IKE peer {CLIENT}:500: Aggressive Mode refused (it is off: [ipsec] "
                     "aggressive); set the client to Main Mode"]


def _aggressive_exchange_again(server: Host) -> None:
    from pyl2tp.wire.isakmp import ISAKMPHeader, NoncePayload, encode_message

    am1 = encode_message(ISAKMPHeader(b"J" * 8, bytes(8), ExchangeType.AGGRESSIVE),
                         [Policy().phase1_sa(), NoncePayload(bytes(32))])
    server.ep.datagram_received(am1, (CLIENT, 500), (SERVER, 500), 10.0, nat_t=False)
    assert server.ep.datagrams_to_send(10.0) == []


def test_aggressive_mode_responder_when_configured() -> None:
    server, replies = _aggressive_exchange(config(aggressive=True))
    assert len(replies) == 1
    est = server.of(IKESAEstablished)
    assert len(est) == 1 and est[0].peer_id == CLIENT
    assert server.ep.ike_sas()[0].state == "established"


def test_aggressive_mode_wrong_psk() -> None:
    server, _ = _aggressive_exchange(config(aggressive=True), psk=b"another-key-5555")
    assert [e.reason for e in server.of(AuthenticationFailed)] == [
        "pre-shared key mismatch (HASH_I wrong)"
    ]
    assert server.ep.ike_sas() == []
