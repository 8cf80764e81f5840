"""Informational exchanges: Delete both ways, DPD both ways, INITIAL-CONTACT, notifies."""

from __future__ import annotations

import pytest
from tests.unit.test_ike_mainmode import CLIENT, SERVER, Net, Sent, config, connect, pair
from tests.unit.test_ike_quick import child_of

from pyl2tp.ike.events import (
    ChildSADeleted,
    IKESADeleted,
    IKESAEstablished,
    NegotiationFailed,
    PeerDead,
)
from pyl2tp.wire.isakmp import (
    ExchangeType,
    ISAKMPHeader,
    NotifyPayload,
    NotifyType,
    decode_message,
    encode_message,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


def informational(net: Net, start: int = 0) -> list[Sent]:
    return [
        s for s in net.log[start:]
        if decode_message(s.data)[0].exchange == ExchangeType.INFORMATIONAL
    ]


@pytest.mark.parametrize("side", ["client", "server"])
def test_delete_child_both_ways(side: str) -> None:
    net, client, server = pair()
    connect(net, client)
    deleter, other = (client, server) if side == "client" else (server, client)
    child = child_of(deleter)
    deleter.ep.delete_child(child, net.now)
    net.pump()
    assert [e.reason for e in deleter.of(ChildSADeleted)] == ["deleted locally"]
    assert [e.reason for e in other.of(ChildSADeleted)] == ["deleted by peer"]
    gone = other.of(ChildSADeleted)[0].child
    assert gone.outbound.spi == child.inbound.spi
    assert deleter.ep.child_sas() == [] and other.ep.child_sas() == []
    # the ISAKMP SA stays
    assert len(other.ep.ike_sas()) == 1 and not other.of(IKESADeleted)


@pytest.mark.parametrize("side", ["client", "server"])
def test_delete_all_both_ways(side: str) -> None:
    net, client, server = pair()
    connect(net, client)
    deleter, other = (client, server) if side == "client" else (server, client)
    deleter.ep.delete_all(net.now)
    net.pump()
    assert other.ep.ike_sas() == [] and other.ep.child_sas() == []
    assert [e.reason for e in other.of(IKESADeleted)] == ["deleted by peer"]


def test_dpd_alive_peer_stays() -> None:
    net, client, server = pair(server_cfg=config(dpd_delay=10.0, dpd_timeout=50.0))
    connect(net, client)
    net.advance(200, step=1.0)
    assert not server.of(PeerDead) and not client.of(PeerDead)
    assert server.ep.stats.dpd_sent >= 3
    for s in informational(net):
        assert decode_message(s.data)[0].encrypted
    assert server.ep.child_sas() and client.ep.child_sas()


def test_dpd_detects_dead_peer() -> None:
    net, client, server = pair(server_cfg=config(dpd_delay=10.0, dpd_timeout=50.0))
    connect(net, client)
    cookies = child_of(server).ike_cookies
    start = net.now
    del net.hosts[CLIENT]  # the client vanishes
    net.advance(80, step=1.0)
    dead = server.of(PeerDead)
    assert len(dead) == 1 and dead[0].cookies == cookies and dead[0].peer == (CLIENT, 500)
    assert [e.reason for e in server.of(ChildSADeleted)] == ["peer dead"]
    assert server.ep.ike_sas() == [] and server.ep.child_sas() == []
    assert server.ep.stats.dpd_sent >= 2
    # R-U-THEREs only after dpd_delay of silence
    first = net.log.index(informational(net)[0])
    assert first > 0 and start + 10 <= net.now


def test_dpd_initiator_side() -> None:
    net, client, _server = pair(client_cfg=config(dpd_delay=5.0, dpd_timeout=20.0))
    connect(net, client)
    del net.hosts[SERVER]
    net.advance(30, step=1.0)
    assert len(client.of(PeerDead)) == 1 and client.ep.child_sas() == []


def test_traffic_keeps_dpd_quiet() -> None:
    net, client, server = pair(server_cfg=config(dpd_delay=10.0, dpd_timeout=50.0))
    connect(net, client)
    child = child_of(server)
    del net.hosts[CLIENT]
    for _ in range(100):
        server.ep.child_traffic(child, net.now)
        net.advance(1.0, step=1.0)
    assert not server.of(PeerDead) and server.ep.stats.dpd_sent == 0


def test_esp_counter_keeps_dpd_quiet_and_its_stop_brings_dpd() -> None:
    """The shell's inbound ESP counter (`IKEConfig.inbound_packets`) proves the peer alive
    (RFC 3706 5); when it stops growing, R-U-THERE follows and the peer is found dead."""
    packets = {"n": 0}
    cfg = config(dpd_delay=10.0, dpd_timeout=50.0)
    cfg.inbound_packets = lambda child: packets["n"]
    net, client, server = pair(server_cfg=cfg)
    connect(net, client)
    del net.hosts[CLIENT]  # IKE goes nowhere: only the ESP counter speaks for the client
    for _ in range(100):
        packets["n"] += 3
        net.advance(1.0, step=1.0)
    assert not server.of(PeerDead) and server.ep.stats.dpd_sent == 0
    net.advance(70.0, step=1.0)  # the counter stands still: probes, then dead
    assert server.ep.stats.dpd_sent > 0 and len(server.of(PeerDead)) == 1


def test_initial_contact_drops_old_sas() -> None:
    """A client that restarts sends INITIAL-CONTACT; its old SAs go."""
    net, client, server = pair()
    connect(net, client)
    old = child_of(server)
    # the client "reboots": a new endpoint at the same address
    fresh = net.add(CLIENT, config(), 42)
    connect(net, fresh)
    assert len(server.of(IKESAEstablished)) == 2
    deleted = server.of(ChildSADeleted)
    assert [e.reason for e in deleted] == ["INITIAL-CONTACT"] and deleted[0].child == old
    assert [e.reason for e in server.of(IKESADeleted)] == ["INITIAL-CONTACT"]
    assert len(server.ep.ike_sas()) == 1 and len(server.ep.child_sas()) == 1


def test_clear_notify_from_softether_style_peer() -> None:
    """NO-PROPOSAL-CHOSEN with fresh cookies and ours in the SPI ends the attempt."""
    net = Net()
    client = net.add(CLIENT, config(), 2)
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500), l2tp=False)
    (mm1, peer, local, _), = client.ep.datagrams_to_send(net.now)
    cky_i = decode_message(mm1)[0].initiator_cookie
    notify = NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN, cky_i + bytes(8))
    msg = encode_message(ISAKMPHeader(b"R" * 8, bytes(8), ExchangeType.INFORMATIONAL), [notify])
    client.ep.datagram_received(msg, peer, local, net.now, nat_t=False)
    events = client.ep.next_events()
    assert [e.notify for e in events if isinstance(e, NegotiationFailed)] == ["NO-PROPOSAL-CHOSEN"]
    assert client.ep.ike_sas() == []


def test_forged_informational_ignored() -> None:
    """An informational whose HASH does not verify changes nothing."""
    net, client, server = pair()
    connect(net, client)
    client.ep.delete_all(net.now)
    (data, dst, src, nat_t), *_ = client.ep.datagrams_to_send(net.now)
    forged = bytearray(data)
    forged[-1] ^= 1
    server.ep.datagram_received(bytes(forged), src, dst, net.now, nat_t=nat_t)
    assert server.ep.child_sas() and server.ep.stats.malformed == 1
    server.ep.datagram_received(data, src, dst, net.now, nat_t=nat_t)  # the real one works
    assert server.ep.child_sas() == []


def test_nat_mapping_change_followed() -> None:
    """The client's NAT port changes; DPD answers go to the new port (RFC 3947 4)."""
    net, client, server = pair(
        client_nat=True,
        client_cfg=config(dpd_delay=5.0, dpd_timeout=20.0),
        server_cfg=config(dpd_delay=0.0),
    )
    connect(net, client)
    old = server.ep.ike_sas()[0].peer
    net._map.clear()
    net._rev.clear()
    net._next_port = 50000
    net.advance(40, step=1.0)
    assert not client.of(PeerDead)
    new = server.ep.ike_sas()[0].peer
    assert new[0] == old[0] and new[1] != old[1] and new[1] > 50000


def test_both_ends_initiating_keep_both_sas() -> None:
    """Two gateways start Main Mode to each other at once: neither says INITIAL-CONTACT
    (each already holds the other's negotiation), so neither SA is dropped."""
    net = Net()
    server = net.add(SERVER, config(), 1)
    client = net.add(CLIENT, config(), 2)
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500), l2tp=False)
    server.ep.initiate(CLIENT, net.now, local=(SERVER, 500), l2tp=False)
    net.pump()
    for host in (client, server):
        assert len(host.of(IKESAEstablished)) == 2
        assert not host.of(IKESADeleted)
        assert [s.state for s in host.ep.ike_sas()] == ["established", "established"]


def test_initial_contact_spares_an_sa_that_came_up_meanwhile() -> None:
    """INITIAL-CONTACT covers SAs older than the negotiation that carries it; one that came
    up while that negotiation ran stays (the peer could not have meant it)."""
    from pyl2tp.ike.sa import IKESA

    net, client, server = pair()
    connect(net, client, l2tp=False)
    (up,) = server.ep._sas.values()
    started_before = IKESA(b"N" * 8, b"M" * 8, False, up.peer, up.local, up.established_at - 1)
    server.ep._initial_contact(started_before)
    assert [s.cookies for s in server.ep.ike_sas()] == [up.cookies]
    started_after = IKESA(b"O" * 8, b"P" * 8, False, up.peer, up.local, up.established_at + 1)
    server.ep._initial_contact(started_after)
    assert server.ep.ike_sas() == []
    server.events += server.ep.next_events()
    assert [e.reason for e in server.of(IKESADeleted)] == ["INITIAL-CONTACT"]


def test_initial_contact_behind_nat_new_port() -> None:
    """A client behind a NAT reboots (new mapped port): its old SAs go, a neighbour's stay."""
    from tests.unit.test_ike_mainmode import NAT_PUBLIC

    net = Net()
    server = net.add(SERVER, config(), 1)
    a = net.add("198.18.2.2", config(), 2, behind_nat=True)
    b = net.add("198.18.2.3", config(), 3, behind_nat=True)
    connect(net, a)
    connect(net, b)
    old_a = child_of(a)
    net._map.clear()  # the NAT forgets a's mappings; b's too, but b stays quiet
    a2 = net.add("198.18.2.2", config(), 22, behind_nat=True)
    connect(net, a2)
    deleted = server.of(ChildSADeleted)
    assert [e.reason for e in deleted] == ["INITIAL-CONTACT"]
    assert deleted[0].child.outbound.spi == old_a.inbound.spi
    peers = sorted(c.peer_id for c in server.ep.child_sas())
    assert peers == ["198.18.2.2", "198.18.2.3"]
    assert all(c.peer[0] == NAT_PUBLIC for c in server.ep.child_sas())
