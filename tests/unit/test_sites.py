"""Site-to-site, sans-I/O: the responder's tunnel policy (only a site's peer, only inside its
networks), and the site table (selector lookup, RFC 4301 5.2 inbound check, rekey)."""

from __future__ import annotations

import logging
import struct

import pytest
from tests.unit.test_ike_mainmode import CLIENT, SERVER, Host, Net, config, pair

from pyl2tp.dataplane.sites import IPV4, Site, SitePolicy, SiteTable
from pyl2tp.esp import OutboundSA
from pyl2tp.ike.events import ChildSAEstablished, NegotiationFailed
from pyl2tp.ike.sa import ChildSA, TunnelSelectors

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

NET_A, NET_B = "198.18.46.0/24", "198.18.45.0/24"  # behind the client (A), the server (B)
TS = TunnelSelectors(NET_A, NET_B)  # A's view


def site_b() -> Site:
    """The server's view of gateway A."""
    return Site("a", CLIENT, (NET_B,), (NET_A,))


def site_a() -> Site:
    """The client's view of gateway B."""
    return Site("b", SERVER, (NET_A,), (NET_B,), initiate=True)


def gateways(client_ip: str = CLIENT) -> tuple[Net, Host, Host, SitePolicy]:
    policy = SitePolicy([site_b()])
    net, client, server = pair(server_cfg=config(tunnel_policy=policy), client_ip=client_ip)
    return net, client, server, policy


def children(host: Host) -> list[ChildSA]:
    return [e.child for e in host.of(ChildSAEstablished)]


def ipv4(src: str, dst: str, payload: bytes = b"ping") -> bytes:
    def raw(a: str) -> bytes:
        return bytes(int(x) for x in a.split("."))

    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 1, 0, 64, 1, 0)
    return header + raw(src) + raw(dst) + payload


def rng(n: int) -> bytes:
    return bytes(n)


# -- the policy ------------------------------------------------------------------------------


def test_policy_by_peer_and_networks() -> None:
    policy = SitePolicy([site_b(), Site("c", "198.18.0.9", ("198.18.45.0/24",),
                                        ("198.18.50.0/24", "198.18.51.0/24"))])
    assert policy.tunnel_peer(CLIENT) and policy.tunnel_peer("198.18.0.9")
    assert not policy.tunnel_peer("198.18.0.3")
    ok = policy.tunnel_allowed
    assert ok(CLIENT, TunnelSelectors(NET_B, NET_A))
    assert ok(CLIENT, TunnelSelectors("198.18.45.7/32", "198.18.46.128/25"))  # narrower
    assert not ok(CLIENT, TunnelSelectors(NET_B, "198.18.46.0/23"))  # wider
    assert not ok(CLIENT, TunnelSelectors(NET_A, NET_B))  # swapped
    assert not ok("198.18.0.3", TunnelSelectors(NET_B, NET_A))  # no site
    assert not ok(CLIENT, TunnelSelectors(NET_B, "198.18.50.0/24"))  # another site's network
    assert ok("198.18.0.9", TunnelSelectors(NET_B, "198.18.51.0/24"))
    assert not ok(CLIENT, TunnelSelectors("2001:2::/64", "2001:2:1::/64"))
    assert policy.site_for(int.from_bytes(bytes([198, 18, 51, 3]))) is policy.by_name["c"]
    assert policy.site_for(int.from_bytes(bytes([198, 18, 52, 3]))) is None
    assert site_a().pairs() == [TS]


@pytest.mark.parametrize(
    "ts", [TS, TunnelSelectors("198.18.46.5/32", "198.18.45.128/25")], ids=["same", "narrower"]
)
def test_responder_accepts_inside_a_site(ts: TunnelSelectors) -> None:
    net, client, server, _ = gateways()
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500), tunnel=ts)
    net.pump()
    (c,), (s,) = children(client), children(server)
    assert c.mode == s.mode == "tunnel"
    assert c.selectors == ts and s.selectors == ts.swapped()


def test_responder_refuses_wider_selectors(caplog: pytest.LogCaptureFixture) -> None:
    net, client, server, _ = gateways()
    caplog.set_level(logging.WARNING, "pyl2tp.ike")
    client.ep.initiate(
        SERVER, net.now, local=(CLIENT, 500), tunnel=TunnelSelectors("198.18.46.0/23", NET_B)
    )
    net.pump()
    assert not children(client) and not children(server)
    assert server.of(NegotiationFailed)[0].notify == "INVALID-ID-INFORMATION"
    assert (
        f"IKE peer {CLIENT}:500: tunnel 198.18.45.0/24 <-> 198.18.46.0/23 refused: "
        "not inside the networks of its site"
    ) in caplog.text


def test_responder_refuses_tunnels_from_another_peer() -> None:
    net, client, server, _ = gateways(client_ip="198.18.0.3")
    client.ep.initiate(SERVER, net.now, local=("198.18.0.3", 500), tunnel=TS)
    net.pump()
    assert not children(server)
    assert server.of(NegotiationFailed)[0].notify == "NO-PROPOSAL-CHOSEN"


def test_l2tp_transport_unchanged_with_a_policy() -> None:
    net, client, server, _ = gateways(client_ip="198.18.0.3")
    client.ep.initiate(SERVER, net.now, local=("198.18.0.3", 500))
    net.pump()
    (s,) = children(server)
    assert s.mode == "transport" and s.selectors is None


def test_start_tunnel_on_an_established_isakmp_sa() -> None:
    net, client, _server, _ = gateways()
    assert not client.ep.start_tunnel(SERVER, TS, net.now)  # no ISAKMP SA yet
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500), tunnel=TS)
    net.pump()
    narrow = TunnelSelectors(NET_A, "198.18.45.128/25")
    assert client.ep.start_tunnel(SERVER, narrow, net.now)
    assert client.ep.tunnel_pending(SERVER, narrow)
    net.pump()
    assert not client.ep.tunnel_pending(SERVER, narrow)
    assert [c.selectors for c in children(client)] == [TS, narrow]
    assert len(client.ep.ike_sas()) == 1  # one ISAKMP SA carries both


# -- the table --------------------------------------------------------------------------------


def tables() -> tuple[Net, Host, Host, SiteTable, SiteTable]:
    net, client, server, policy = gateways()
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500), tunnel=TS)
    net.pump()
    a = SiteTable(SitePolicy([site_a()]), random_bytes=rng)
    b = SiteTable(policy, random_bytes=rng)
    assert a.install(children(client)[0]) is a.policy.sites[0]
    assert b.install(children(server)[0]) is policy.sites[0]
    return net, client, server, a, b


def test_packets_cross_both_ways() -> None:
    _, client, _, a, b = tables()
    there = ipv4("198.18.46.2", "198.18.45.2", b"hello B")
    out = a.encapsulate(there)
    assert out is not None
    esp, dest, udp, host = out
    assert (dest, udp, host) == ((SERVER, 0), False, CLIENT)
    assert int.from_bytes(esp[:4]) == children(client)[0].outbound.spi
    assert b.owns(int.from_bytes(esp[:4]))
    assert b.decapsulate(esp, (CLIENT, 0)) == there
    back = ipv4("198.18.45.2", "198.18.46.2", b"hello A")
    out = b.encapsulate(back)
    assert out is not None
    assert a.decapsulate(out[0], (SERVER, 0)) == back
    sa, sb = a.policy.sites[0].stats, b.policy.sites[0].stats
    assert (sa.packets_out, sa.bytes_out, sa.packets_in, sa.bytes_in) == (1, 27, 1, 27)
    assert (sb.packets_out, sb.packets_in) == (1, 1)
    assert b.decapsulate(esp, (CLIENT, 0)) is None  # replayed
    assert sb.esp_dropped == 1


def test_inbound_selector_check() -> None:
    """RFC 4301 5.2: a valid ESP packet whose inner header lies outside the SA's selectors
    is dropped (a peer may not inject traffic for networks it was not given)."""
    _, client, _, _, b = tables()
    sender = OutboundSA(children(client)[0].outbound, rng)
    for src, dst in (("198.18.47.2", "198.18.45.2"), ("198.18.46.2", "198.18.44.2")):
        assert b.decapsulate(sender.encrypt(ipv4(src, dst), IPV4), (CLIENT, 0)) is None
    assert b.policy.sites[0].stats.policy_dropped == 2
    # not IPv4 inside (next header 41: IPv6) is dropped too
    assert b.decapsulate(sender.encrypt(ipv4("198.18.46.2", "198.18.45.2"), 41), (CLIENT, 0)) \
        is None
    assert b.policy.sites[0].stats.esp_dropped == 1
    ok = ipv4("198.18.46.9", "198.18.45.9")
    assert b.decapsulate(sender.encrypt(ok, IPV4), (CLIENT, 0)) == ok


def test_no_sa_is_counted_per_site() -> None:
    a = SiteTable(SitePolicy([site_a()]), random_bytes=rng)
    assert a.encapsulate(ipv4("198.18.46.2", "198.18.45.2")) is None
    assert a.policy.sites[0].stats.no_sa == 1 and a.starved == {"b"}
    assert a.encapsulate(ipv4("198.18.46.2", "198.18.99.2")) is None  # no site at all
    assert a.encapsulate(b"\x60" + bytes(39)) is None  # IPv6
    assert a.unknown_site == 2


def test_source_outside_local_has_no_sa() -> None:
    _, _, _, a, _ = tables()
    assert a.encapsulate(ipv4("198.18.47.2", "198.18.45.2")) is None
    assert a.policy.sites[0].stats.no_sa == 1


def test_longest_prefix_and_rekey() -> None:
    net, client, _, a, _ = tables()
    first = children(client)[0]
    narrow = TunnelSelectors(NET_A, "198.18.45.128/25")
    client.ep.start_tunnel(SERVER, narrow, net.now)
    net.pump()
    second = children(client)[1]
    a.install(second)

    def spi_for(dst: str) -> int:
        out = a.encapsulate(ipv4("198.18.46.2", dst))
        assert out is not None
        return int.from_bytes(out[0][:4])

    assert spi_for("198.18.45.200") == second.outbound.spi  # the /25 wins
    assert spi_for("198.18.45.5") == first.outbound.spi
    # a rekey of the /24 we initiated: the old SA sends until promoted
    client.ep.start_tunnel(SERVER, TS, net.now)
    net.pump()
    third = children(client)[2]
    a.install(third, defer_send=True)
    assert spi_for("198.18.45.5") == first.outbound.spi
    a.promote(third)
    assert spi_for("198.18.45.5") == third.outbound.spi
    assert a.has_sender(TS)
    a.remove(third)  # back to the older one while it lives
    assert spi_for("198.18.45.5") == first.outbound.spi
    assert a.remove(first) is a.policy.sites[0]
    assert not a.has_sender(TS)
    assert a.encapsulate(ipv4("198.18.46.2", "198.18.45.5")) is None
    assert [v["remote"] for v in a.sa_views(a.policy.sites[0])] == ["198.18.45.128/25"]


def test_install_ignores_children_of_no_site() -> None:
    _, client, _, _, _ = tables()
    other = SiteTable(SitePolicy([Site("x", "198.18.0.77", (NET_A,), (NET_B,))]),
                      random_bytes=rng)
    assert other.install(children(client)[0]) is None
    assert not other.owns(children(client)[0].inbound.spi)
