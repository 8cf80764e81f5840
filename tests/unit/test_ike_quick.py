"""Quick Mode between our initiator and our responder: ESP SAs that pair up and pass traffic."""

from __future__ import annotations

import pytest
from tests.unit.test_ike_mainmode import (
    CLIENT,
    NAT_PUBLIC,
    SERVER,
    Host,
    config,
    connect,
    pair,
    rng,
)

from pyl2tp.esp import InboundSA, OutboundSA
from pyl2tp.ike.events import ChildSAEstablished, IKESAEstablished, NegotiationFailed
from pyl2tp.ike.proposals import EspSuite, Group, Policy
from pyl2tp.ike.sa import ChildSA
from pyl2tp.wire.isakmp import (
    AuthAlgorithm,
    EncapsulationMode,
    ESPTransformID,
    ExchangeType,
    SAPayload,
    decode_message,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# every ESP suite the default policy proposes and accepts, and one more (SHA2-512)
ESP_SUITES = [
    *Policy().initiator_esp,
    EspSuite(ESPTransformID.ESP_AES_CBC, 128, AuthAlgorithm.HMAC_SHA2_512),
]


def child_of(host: Host) -> ChildSA:
    children = host.of(ChildSAEstablished)
    assert len(children) == 1
    return children[0].child


def assert_paired(a: ChildSA, b: ChildSA) -> None:
    for x, y in ((a.outbound, b.inbound), (a.inbound, b.outbound)):
        assert (x.spi, x.enc, x.auth, x.mode, x.udp_encap) == (
            y.spi, y.enc, y.auth, y.mode, y.udp_encap
        )
        if not x.udp_encap:  # behind the NAT each side sees other addresses
            assert (x.local, x.peer) == (y.peer, y.local)
    assert a.outbound.enc_key == b.inbound.enc_key and a.outbound.auth_key == b.inbound.auth_key
    assert a.inbound.spi != a.outbound.spi
    assert a.ike_cookies == b.ike_cookies


def assert_traffic(a: ChildSA, b: ChildSA) -> None:
    """Packets sealed with one side's outbound SA open with the other's inbound SA."""
    for src, dst in ((a, b), (b, a)):
        out = OutboundSA(src.outbound, rng(9))
        inb = InboundSA(dst.inbound)
        for i in range(3):
            payload = b"L2TP over ESP %d" % i
            assert inb.decrypt(out.encrypt(payload, 17)) == (17, payload)


@pytest.mark.parametrize("nat", [False, True], ids=["direct", "nat"])
@pytest.mark.parametrize("suite", ESP_SUITES, ids=lambda s: s.name)
def test_quick_mode_suites(suite: EspSuite, nat: bool) -> None:
    net, client, server = pair(
        client_nat=nat, client_cfg=config(policy=Policy(initiator_esp=(suite,)))
    )
    connect(net, client)
    c, s = child_of(client), child_of(server)
    assert_paired(c, s)
    assert_traffic(c, s)
    assert c.mode == s.mode == "transport"
    assert c.inbound.enc in ("aes-cbc", "aes-gcm-16")
    assert len(c.inbound.enc_key) == suite.key_bits // 8 + (4 if suite.auth is None else 0)
    assert c.peer_id == SERVER and s.peer_id == CLIENT
    exchanges = [decode_message(x.data)[0].exchange for x in net.log]
    assert exchanges == [ExchangeType.MAIN] * 6 + [ExchangeType.QUICK] * 3
    if nat:
        assert c.udp_encap and s.udp_encap
        assert s.peer[0] == NAT_PUBLIC and s.peer[1] not in (500, 4500)
        assert s.local == (SERVER, 4500) and c.peer == (SERVER, 4500)
        assert s.inbound.peer_port == s.peer[1] and s.outbound.peer_port == s.peer[1]
        assert s.nat_oa == (CLIENT, SERVER)  # NAT-OAi, NAT-OAr
    else:
        assert not c.udp_encap and s.peer == (CLIENT, 0) and c.peer == (SERVER, 0)
        assert s.nat_oa is None
    assert client.ep.child_sas() == [c] and server.ep.child_sas() == [s]


def test_default_policy_picks_first_suite() -> None:
    net, client, server = pair()
    connect(net, client)
    c, s = child_of(client), child_of(server)
    assert_paired(c, s)
    # AES-GCM first: AEAD costs about half of CBC + HMAC per packet (docs/performance.md)
    assert (c.inbound.enc, c.inbound.auth) == ("aes-gcm-16", "null")
    assert len(c.inbound.enc_key) == 36  # 256-bit key + 4-byte salt (RFC 4106 8.1)


def test_pfs() -> None:
    net, client, server = pair(client_cfg=config(pfs_group=Group.MODP2048))
    connect(net, client)
    c, s = child_of(client), child_of(server)
    assert_paired(c, s)
    assert_traffic(c, s)
    # without PFS the keys differ (g^xy(qm) went into KEYMAT)
    net2, client2, _server2 = pair()
    connect(net2, client2)
    assert child_of(client2).inbound.enc_key != c.inbound.enc_key


def test_pfs_required_but_not_offered() -> None:
    net, client, server = pair(server_cfg=config(policy=Policy(require_pfs=True)))
    connect(net, client)
    assert client.of(IKESAEstablished) and not client.of(ChildSAEstablished)
    assert server.of(NegotiationFailed)[0].notify == "NO-PROPOSAL-CHOSEN"
    assert client.of(NegotiationFailed)[0].notify == "NO-PROPOSAL-CHOSEN"
    assert server.ep.stats.no_proposal == 1


def test_responder_lifetime() -> None:
    """We shorten the initiator's lifetime and say so (RFC 2407 4.6.3.1)."""
    net, client, server = pair(
        client_cfg=config(sa_lifetime=7200.0), server_cfg=config(sa_lifetime=600.0)
    )
    connect(net, client)
    c, s = child_of(client), child_of(server)
    assert c.lifetime == s.lifetime == 600.0


def test_lifetime_end_deletes_child() -> None:
    net, client, server = pair(server_cfg=config(sa_lifetime=60.0))
    connect(net, client)
    child_of(client)
    net.advance(61)
    from pyl2tp.ike.events import ChildSADeleted

    gone = server.of(ChildSADeleted)
    assert [e.reason for e in gone] == ["lifetime expired"]
    assert server.ep.child_sas() == [] and client.ep.child_sas() == []


def test_esp_no_common_suite() -> None:
    only512 = EspSuite(ESPTransformID.ESP_AES_CBC, 128, AuthAlgorithm.HMAC_SHA2_512)
    net, client, server = pair(
        client_cfg=config(policy=Policy(initiator_esp=(only512,))),
        server_cfg=config(policy=Policy(esp_auths=[AuthAlgorithm.HMAC_SHA1])),
    )
    connect(net, client)
    assert not client.of(ChildSAEstablished) and not server.of(ChildSAEstablished)
    assert client.of(NegotiationFailed)


def test_transport_only_for_l2tp() -> None:
    net, client, server = pair(client_cfg=config(l2tp_port=1702))
    connect(net, client)
    assert not server.of(ChildSAEstablished)
    assert server.of(NegotiationFailed)[0].notify == "INVALID-ID-INFORMATION"


def test_initiator_proposes_udp_transport_behind_nat() -> None:
    net, client, server = pair(client_nat=True)
    connect(net, client)
    sa = server.ep._sas[child_of(server).ike_cookies]
    assert sa.nat_peer
    qx_modes = {EncapsulationMode.UDP_TRANSPORT}
    assert Policy().match_phase2(
        Policy().phase2_sa(b"\x00\x00\x10\x00", EncapsulationMode.UDP_TRANSPORT), modes=qx_modes
    )


class TunnelPolicy(Policy):
    """Proposes tunnel mode (our initiator proposes transport for L2TP)."""

    def phase2_sa(self, spi: bytes, encapsulation: EncapsulationMode, **kw: object) -> SAPayload:
        return super().phase2_sa(spi, EncapsulationMode.TUNNEL, **kw)  # type: ignore[arg-type]


def test_tunnel_mode_when_allowed() -> None:
    net, client, server = pair(
        client_cfg=config(policy=TunnelPolicy()), server_cfg=config(tunnel_ok=True)
    )
    connect(net, client)
    c, s = child_of(client), child_of(server)
    assert c.mode == s.mode == "tunnel" and c.inbound.mode == "tunnel"
    assert_paired(c, s)
    assert_traffic(c, s)


def test_tunnel_mode_refused_by_default() -> None:
    net, client, server = pair(client_cfg=config(policy=TunnelPolicy()))
    connect(net, client)
    assert not server.of(ChildSAEstablished) and not client.of(ChildSAEstablished)
    assert server.of(NegotiationFailed)[0].notify == "NO-PROPOSAL-CHOSEN"


def test_nat_oa_in_both_directions() -> None:
    from pyl2tp.wire.isakmp import NatOAPayload, split_payloads

    net, client, server = pair(client_nat=True)
    connect(net, client)
    s = child_of(server)
    ike = server.ep._sas[s.ike_cookies]
    assert ike.crypto is not None
    qm = [x for x in net.log if decode_message(x.data)[0].exchange == ExchangeType.QUICK]
    # decrypt QM2 as the client would: the client's IKE SA has the keys and IVs
    cli = client.ep._sas[s.ike_cookies]
    assert cli.crypto is not None
    header, body = decode_message(qm[1].data)
    assert header.encrypted
    # the client's IV after QM2 is QM2's last block, so re-derive from QM1 instead
    from pyl2tp.ike.crypto import IkeSACrypto

    fresh = IkeSACrypto(cli.crypto.cipher, cli.crypto.prf, cli.crypto.iv(0))
    fresh.advance(header.message_id, decode_message(qm[0].data)[1])
    plain = fresh.decrypt(header.message_id, body)
    oas = [r.decode() for r in split_payloads(header.next_payload, plain, padded=True)
           if r.type == 21]
    assert [str(p.ip()) for p in oas if isinstance(p, NatOAPayload)] == [NAT_PUBLIC, SERVER]
