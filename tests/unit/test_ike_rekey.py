"""IKEv1 rekeying: child SAs (soft lifetime, ESP soft limit) and ISAKMP SAs, make-before-break."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from tests.unit.test_ike_mainmode import SERVER, Host, Net, config, connect, pair
from tests.unit.test_ike_quick import assert_paired, assert_traffic

from pyl2tp.dataplane.ipsec import IPsecLayer
from pyl2tp.ike.endpoint import GRACE_MAX, GRACE_MIN, REKEY_FRACTION
from pyl2tp.ike.events import (
    ChildSADeleted,
    ChildSAEstablished,
    IKESADeleted,
    IKESAEstablished,
)
from pyl2tp.ike.quick import KB_SOFT_FRACTION
from pyl2tp.ike.sa import ChildSA, IKEConfig

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

SA_LIFE = 20.0
IKE_LIFE = 30.0


def rekeying(**kw: object) -> IKEConfig:
    args: dict[str, object] = {"sa_lifetime": SA_LIFE, "ike_lifetime": IKE_LIFE, **kw}
    return config(rekey=True, **args)


def children(host: Host) -> list[ChildSA]:
    return [e.child for e in host.of(ChildSAEstablished)]


def by_out(host: Host) -> dict[int, ChildSA]:
    return {c.outbound.spi: c for c in host.ep.child_sas()}


class Dataplane:
    """An IPsecLayer per host, fed with the endpoint's events (as the shell does)."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.layer = IPsecLayer(require=True, random_bytes=random.Random(5).randbytes)
        self.seen = 0
        self.peer: tuple[str, int] | None = None

    def sync(self) -> None:
        for ev in self.host.events[self.seen :]:
            if isinstance(ev, ChildSAEstablished):
                self.peer = self.layer.install(ev.child, defer_send=ev.initiator)
            elif isinstance(ev, ChildSADeleted):
                self.layer.remove(ev.child)
        self.seen = len(self.host.events)

    def send_to(self, other: Dataplane) -> None:
        """One L2TP datagram through ESP; it must decrypt on the other side."""
        assert self.peer is not None and self.layer.has_sa(self.peer)
        wrapped = self.layer.encapsulate(b"\xc8\x02hello", self.peer)
        assert wrapped is not None
        packet, _dest, udp = wrapped
        # the source the receiver sees: the (NAT-mapped) UDP source, or the address
        source = other.peer if udp and other.peer is not None else (self.host.ip, 0)
        got = other.layer.decapsulate(packet, source)
        assert got is not None, "ESP packet did not decrypt on the other side (gap)"
        assert got[0] == b"\xc8\x02hello"


def run_with_traffic(net: Net, a: Dataplane, b: Dataplane, seconds: float) -> None:
    """Advance in small steps; after every step, and whenever an IKE message is on the
    wire (e.g. QM3 sent, not yet received), traffic flows both ways without loss."""

    def in_flight(_sent: object) -> bool:
        for dp in (a, b):  # the shell installs SAs as soon as the endpoint reports them
            dp.host.events += dp.host.ep.next_events()
            dp.sync()
        if a.peer is not None and b.peer is not None:
            a.send_to(b)
            b.send_to(a)
        return False

    net.drop = in_flight
    end = net.now + seconds
    while net.now < end:
        net.advance(0.25, step=0.25)
        a.sync()
        b.sync()
        a.send_to(b)
        b.send_to(a)


def test_child_rekey_at_soft_lifetime_and_old_deleted_after_grace() -> None:
    net, client, server = pair(client_cfg=rekeying(), server_cfg=rekeying())
    connect(net, client)
    first_c, first_s = children(client)[0], children(server)[0]
    start = first_c.created
    net.advance(SA_LIFE * REKEY_FRACTION - 1.0)
    assert len(children(client)) == 1  # not before the soft lifetime
    net.advance(1.5)
    assert len(children(client)) == 2 and len(children(server)) == 2
    new_c, new_s = children(client)[1], children(server)[1]
    assert_paired(new_c, new_s)
    assert_traffic(new_c, new_s)
    assert new_c.created == pytest.approx(start + SA_LIFE * REKEY_FRACTION, abs=0.6)
    # grace period: both pairs alive, the old still decrypts
    assert {c.inbound.spi for c in client.ep.child_sas()} == {
        first_c.inbound.spi, new_c.inbound.spi
    }
    assert_traffic(first_c, first_s)
    assert not client.of(ChildSADeleted) and not server.of(ChildSADeleted)
    net.advance(GRACE_MIN + 0.25)
    assert [(e.child.inbound.spi, e.reason) for e in client.of(ChildSADeleted)] == [
        (first_c.inbound.spi, "rekeyed")
    ]
    assert [(e.child.inbound.spi, e.reason) for e in server.of(ChildSADeleted)] == [
        (first_s.inbound.spi, "deleted by peer")
    ]
    # deleted before its hard lifetime
    assert net.now < start + SA_LIFE
    assert [c.inbound.spi for c in server.ep.child_sas()] == [new_s.inbound.spi]


@pytest.mark.parametrize("nat", [False, True], ids=["direct", "nat"])
def test_three_child_rekeys_no_gap_under_traffic(nat: bool) -> None:
    net, client, server = pair(
        client_nat=nat,
        client_cfg=rekeying(ike_lifetime=1000.0),
        server_cfg=rekeying(ike_lifetime=1000.0),
    )
    a, b = Dataplane(client), Dataplane(server)
    connect(net, client)
    run_with_traffic(net, a, b, 3 * SA_LIFE * REKEY_FRACTION + 5)
    assert len(children(client)) == 4 and len(children(server)) == 4
    assert not [e for e in server.of(ChildSADeleted) if e.reason == "lifetime expired"]
    assert len(client.ep.child_sas()) == 1 and len(server.ep.child_sas()) == 1
    assert len(a.layer) == len(b.layer) == 1
    assert all(c.udp_encap == nat for c in children(client) + children(server))


def test_ike_rekey_children_live_on() -> None:
    net, client, server = pair(client_cfg=rekeying(), server_cfg=rekeying())
    a, b = Dataplane(client), Dataplane(server)
    connect(net, client)
    first_ike = client.of(IKESAEstablished)[0].cookies
    run_with_traffic(net, a, b, IKE_LIFE * REKEY_FRACTION + 1)
    assert len(client.of(IKESAEstablished)) == 2 and len(server.of(IKESAEstablished)) == 2
    second_ike = client.of(IKESAEstablished)[1].cookies
    assert second_ike != first_ike
    # the old ISAKMP SA was deleted on both sides; only the new one is left
    assert [e.cookies for e in client.of(IKESADeleted)] == [first_ike]
    assert [e.cookies for e in server.of(IKESADeleted)] == [first_ike]
    assert [i.cookies for i in client.ep.ike_sas()] == [second_ike]
    assert [i.cookies for i in server.ep.ike_sas()] == [second_ike]
    # no INITIAL-CONTACT on a rekey: the server kept every child SA the client uses
    assert not [e for e in server.of(ChildSADeleted) if e.reason == "INITIAL-CONTACT"]
    # later Quick Modes run on the new ISAKMP SA, and the grace Delete still works
    run_with_traffic(net, a, b, SA_LIFE)
    later = [c for c in children(client) if c.ike_cookies == second_ike]
    assert later and later[-1] is children(client)[-1]
    assert not [e for e in server.of(ChildSADeleted) if e.reason == "lifetime expired"]
    # a second IKE rekey happens too
    run_with_traffic(net, a, b, IKE_LIFE)
    assert len(server.of(IKESAEstablished)) >= 3
    assert len(server.ep.ike_sas()) == 1


def test_seq_soft_limit_triggers_rekey() -> None:
    net, client, server = pair(
        client_cfg=rekeying(sa_lifetime=3600.0), server_cfg=rekeying(sa_lifetime=3600.0)
    )
    connect(net, client)
    first = children(client)[0]
    # the ESP layer reports the soft limit (e.g. OutboundSA.soft_limit_reached)
    layer = IPsecLayer(require=True, random_bytes=random.Random(1).randbytes)
    small = replace(first, outbound=replace(first.outbound, soft_packets=3))
    peer = layer.install(small)
    for _ in range(3):
        assert layer.encapsulate(b"x", peer) is not None
    assert [c.inbound.spi for c in layer.soft_limited] == [first.inbound.spi]
    client.ep.child_soft_limit(first, net.now)
    net.pump()
    assert len(children(client)) == 2 and len(children(server)) == 2
    assert_paired(children(client)[1], children(server)[1])
    net.advance(GRACE_MAX + 1)
    assert [e.child.inbound.spi for e in client.of(ChildSADeleted)] == [first.inbound.spi]
    # a second report of the same SA does nothing
    client.ep.child_soft_limit(first, net.now)
    net.pump()
    assert len(children(client)) == 2


def test_rekey_off_by_default_child_lives_out_its_lifetime() -> None:
    net, client, server = pair(server_cfg=config(sa_lifetime=20.0))
    connect(net, client)
    net.advance(21)
    assert len(children(client)) == 1
    assert [e.reason for e in server.of(ChildSADeleted)] == ["lifetime expired"]


def test_responder_keeps_old_child_until_peer_deletes() -> None:
    """A responder never deletes a child the peer still uses before its hard lifetime."""
    net, client, server = pair(client_cfg=rekeying(), server_cfg=rekeying())
    connect(net, client)
    first_s = children(server)[0]
    # the client rekeys but its Delete is lost: the server keeps the old SA to its end
    net.drop = lambda s: s.src[0] != SERVER and len(children(server)) == 2
    net.advance(SA_LIFE * REKEY_FRACTION + GRACE_MIN + 0.5)
    assert len(children(server)) == 2
    assert first_s.inbound.spi in {c.inbound.spi for c in server.ep.child_sas()}
    net.drop = lambda s: False
    net.advance(SA_LIFE)
    assert first_s.inbound.spi not in {c.inbound.spi for c in server.ep.child_sas()}


def test_rekey_retried_after_quick_mode_timeout() -> None:
    net, client, server = pair(client_cfg=rekeying(ike_lifetime=1000.0), server_cfg=rekeying())
    connect(net, client)
    first = children(client)[0]
    blocked = [True]
    net.drop = lambda s: blocked[0] and s.src[0] == SERVER
    net.advance(SA_LIFE * REKEY_FRACTION + 0.5)
    assert len(children(client)) == 1
    blocked[0] = False
    net.advance(2.5)  # the retransmitted QM1 gets through
    assert len(children(client)) == 2
    assert by_out(client)[children(client)[1].outbound.spi].ike_cookies == first.ike_cookies
    assert_paired(children(client)[1], children(server)[1])
    assert client.ep.stats.retransmits >= 1


def test_kilobyte_lifetime_soft_limit_rekeys() -> None:
    """A kilobyte lifetime (RFC 2407 4.5) gives the ESP SAs a byte soft limit; reaching it
    in either direction reports the child, and the report starts a rekey."""
    cfg = rekeying(sa_lifetime=3600.0, sa_lifetime_kb=4)
    net, client, server = pair(client_cfg=cfg, server_cfg=rekeying(sa_lifetime=3600.0))
    a, b = Dataplane(client), Dataplane(server)
    connect(net, client)
    a.sync()
    b.sync()
    first = children(client)[0]
    soft = int(4 * 1024 * KB_SOFT_FRACTION)
    assert first.outbound.soft_bytes == first.inbound.soft_bytes == soft
    assert children(server)[0].outbound.soft_bytes == 0  # the initiator rekeys
    assert a.peer is not None
    sent = 0
    while not a.layer.soft_limited:
        b.send_to(a)  # inbound bytes count too
        sent += 1
        assert sent < 1000
    assert sent >= 20  # not at once: after some kilobytes
    assert [c.inbound.spi for c in a.layer.soft_limited] == [first.inbound.spi]
    client.ep.child_soft_limit(a.layer.soft_limited.pop(), net.now)
    net.pump()
    assert len(children(client)) == 2 and len(children(server)) == 2
    assert_paired(children(client)[1], children(server)[1])


def test_one_way_traffic_moves_to_the_new_sa_when_promoted() -> None:
    """Traffic only from the initiator: the peer never proves it has the new SA, so the
    shell promotes it after the Quick Mode round trip (`IPsecLayer.promote`); until then
    the older SA sends, and afterwards the newer one, which the peer decrypts."""
    net, client, server = pair(client_cfg=rekeying(ike_lifetime=1000.0),
                               server_cfg=rekeying(ike_lifetime=1000.0))
    a, b = Dataplane(client), Dataplane(server)
    connect(net, client)
    a.sync()
    b.sync()
    first = children(client)[0]
    net.advance(SA_LIFE * REKEY_FRACTION + 0.5)
    a.sync()
    b.sync()
    new = next(e for e in client.of(ChildSAEstablished) if e.child is not first)
    assert new.initiator and 0.0 <= new.rtt < 1.0
    assert a.layer.child_for(a.peer) is first  # deferred: nothing came back on the new SA
    a.send_to(b)
    a.layer.promote(new.child)
    assert a.layer.child_for(a.peer) is new.child
    a.send_to(b)
    a.layer.promote(new.child)  # twice, or after removal: nothing happens
    a.layer.remove(new.child)
    a.layer.promote(new.child)
    assert a.layer.child_for(a.peer) is first
