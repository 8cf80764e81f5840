"""PPP links inside L2TP sessions between two in-memory endpoints: phases, auth, IPCP, IPv6."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Network

import pytest
from tests.unit.test_l2tp_endpoint import LNS_ADDR, Net, rng

from pyl2tp.aaa.pool import AddressPool, PrefixPool
from pyl2tp.l2tp.endpoint import EndpointConfig, L2TPEndpoint
from pyl2tp.l2tp.events import SessionClosed
from pyl2tp.l2tp.session import Session, SessionState
from pyl2tp.l2tp.tunnel import TunnelConfig
from pyl2tp.ppp.link import Phase, PPPDown, PPPIPv6Up, PPPLink, PPPNetworkUp, PPPSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

USERS = {"alice": "alice-pw", "bob": "bob-pw"}
LOCAL = IPv4Address("198.18.100.1")


def build(
    methods: list[str],
    accept: list[str],
    user: str = "alice",
    password: str = "alice-pw",
    *,
    ipv6: bool = False,
    pool_size: int = 10,
) -> tuple[Net, AddressPool]:
    pool = AddressPool(IPv4Address("198.18.100.10"), IPv4Address("198.18.100.10") + pool_size - 1)
    prefixes = PrefixPool(IPv6Network("2001:2::/48"))
    server = PPPSettings(
        server=True,
        random_bytes=rng(11),
        auth_methods=methods,
        credentials=USERS.get,
        hostname="lns",
        dns=[IPv4Address("198.18.0.53"), IPv4Address("198.18.0.54")],
        local_v4=LOCAL,
        allocate_v4=lambda u: pool.allocate(u),
        release_v4=pool.release,
        allocate_v6=(lambda u: prefixes.allocate(u)) if ipv6 else None,
        release_v6=prefixes.release if ipv6 else None,
    )
    client = PPPSettings(
        server=False,
        random_bytes=rng(12),
        user=user,
        password=password,
        accept_auth=accept,
        ipv6=ipv6,
    )

    def server_link(session: Session) -> PPPLink:
        link = PPPLink(session, server)
        link.ip_sink = None
        return link

    lac = L2TPEndpoint(
        EndpointConfig(tunnel=TunnelConfig(hostname="lac", lac=True), accept_tunnels=False),
        random_bytes=rng(1),
        link_factory=lambda s: PPPLink(s, client),
    )
    lns = L2TPEndpoint(
        EndpointConfig(tunnel=TunnelConfig(hostname="lns")),
        random_bytes=rng(2),
        link_factory=server_link,
    )
    return Net(lac, lns), pool


def connect(net: Net) -> tuple[Session, Session]:
    tunnel = net.lac.connect(LNS_ADDR, net.now)
    net.pump()
    session = net.lac.open_session(tunnel, net.now)
    net.pump()
    net.advance(10)
    return session, net.lns.sessions()[0] if net.lns.sessions() else session


@pytest.mark.parametrize("method", ["pap", "chap", "mschapv2"])
def test_each_auth_method_reaches_the_network_phase(method: str) -> None:
    net, pool = build(["mschapv2", "chap", "pap"], [method])
    client_session, server_session = connect(net)
    client_link = client_session.link
    server_link = server_session.link
    assert isinstance(client_link, PPPLink) and isinstance(server_link, PPPLink)
    assert server_link.user == "alice" and server_session.user == "alice"
    assert client_link.phase is Phase.NETWORK and server_link.phase is Phase.NETWORK
    assert client_link.local_v4 == server_link.peer_v4 == IPv4Address("198.18.100.10")
    assert client_link.peer_v4 == LOCAL
    assert client_link.dns == [IPv4Address("198.18.0.53"), IPv4Address("198.18.0.54")]
    ups = net.of("lns", PPPNetworkUp) + net.of("lac", PPPNetworkUp)
    assert len(ups) == 2
    assert pool.in_use == 1


@pytest.mark.parametrize("method", ["pap", "chap", "mschapv2"])
def test_wrong_password_is_refused_and_the_call_cleared(method: str) -> None:
    net, pool = build([method], [method], password="wrong")
    client_session, _ = connect(net)
    net.advance(30)
    assert client_session.state is SessionState.CLOSED
    assert not net.lns.sessions()
    closed = [e for e in net.of("lns", SessionClosed) if isinstance(e, SessionClosed)]
    assert closed and "authentication failed" in closed[0].reason
    assert pool.in_use == 0
    assert not net.of("lns", PPPNetworkUp)


def test_server_order_and_nak_choose_a_common_method() -> None:
    # The server prefers MS-CHAPv2, the client only does PAP: the client Naks, the server
    # moves down its list to PAP.
    net, _ = build(["mschapv2", "chap", "pap"], ["pap"])
    _client_session, server_session = connect(net)
    assert isinstance(server_session.link, PPPLink)
    assert server_session.link.phase is Phase.NETWORK
    assert server_session.link.lcp.auth_protocol_ours == b"\xc0\x23"


def test_ip_packets_cross_once_up() -> None:
    net, _ = build(["chap"], ["chap"])
    client_session, server_session = connect(net)
    got: list[bytes] = []
    server_link = server_session.link
    client_link = client_session.link
    assert isinstance(server_link, PPPLink) and isinstance(client_link, PPPLink)
    server_link.ip_sink = got.append
    client_link.ip_sink = lambda p: None
    packet = bytes([0x45]) + bytes(19) + b"payload"
    client_link.send_ip(packet)
    net.pump()
    assert got == [packet]


def test_pool_exhaustion_gives_cdn_result_4() -> None:
    net, pool = build(["pap"], ["pap"], pool_size=1)
    connect(net)
    tunnel = next(iter(net.lac.tunnels.values()))
    second = net.lac.open_session(tunnel, net.now)
    net.pump()
    net.advance(20)
    assert second.state is SessionState.CLOSED
    closed = [e for e in net.of("lac", SessionClosed) if isinstance(e, SessionClosed)]
    assert closed and "result 4" in closed[-1].reason
    assert pool.in_use == 1


def test_session_close_releases_address_and_reports_down() -> None:
    net, pool = build(["pap"], ["pap"])
    client_session, _server_session = connect(net)
    net.lac.close_session(client_session, net.now)
    net.pump()
    assert pool.in_use == 0
    downs = [e for e in net.of("lns", PPPDown) if isinstance(e, PPPDown)]
    assert downs and downs[0].address == IPv4Address("198.18.100.10")


def test_lcp_echo_failure_clears_the_call() -> None:
    net, pool = build(["pap"], ["pap"])
    _client_session, server_session = connect(net)
    net.drop = lambda side, data: side == "lac" and len(data) > 12 and data[0] & 0x80 == 0
    net.advance(30 * 6)
    assert server_session.state is SessionState.CLOSED
    assert pool.in_use == 0


def test_ipv6_prefix_reaches_the_client() -> None:
    net, _ = build(["chap"], ["chap"], ipv6=True)
    client_session, server_session = connect(net)
    client_link = client_session.link
    server_link = server_session.link
    assert isinstance(client_link, PPPLink) and isinstance(server_link, PPPLink)
    assert server_link.prefix_v6 == IPv6Network("2001:2::/64") or server_link.prefix_v6 is not None
    assert client_link.prefix_v6 == server_link.prefix_v6
    ups = [e for e in net.of("lac", PPPIPv6Up) if isinstance(e, PPPIPv6Up)]
    assert ups and ups[-1].prefix == server_link.prefix_v6


@pytest.mark.parametrize("method", ["pap", "chap", "mschapv2"])
def test_client_knows_its_login_was_refused(method: str) -> None:
    net, _ = build([method], [method], password="wrong")
    _client_session, _ = connect(net)
    net.advance(30)
    downs = [e for e in net.of("lac", PPPDown) if isinstance(e, PPPDown)]
    assert downs and downs[0].link.auth_failed


def test_a_normal_hangup_is_not_an_auth_failure() -> None:
    net, _ = build(["chap"], ["chap"])
    client_session, _ = connect(net)
    net.lac.close_session(client_session, net.now)
    net.pump()
    downs = [e for e in net.of("lac", PPPDown) if isinstance(e, PPPDown)]
    assert downs and not downs[0].link.auth_failed
