"""IPv6 over the VPN: IPv6CP, a /64 per session by router advertisement, ping -6.

The server has `[pool] ipv6 = "2001:2::/48"` and `local_ipv6 = "2001:2::1"`; the client asks
for IPv6 and routes 2001:2::/48 through its TUN. The client forms its global address from
the advertised /64 and its IPv6CP interface identifier.
"""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.integration.ppp_env import (
    CLIENT_IP,
    POOL_NET,
    SERVER_IP,
    User,
    addresses,
    client_toml,
    connected,
    connected_v6,
    ping,
    ppp_protocols,
    routes,
    server_toml,
    tun_name,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

V6_POOL = "2001:2::/48"
LOCAL_V6 = "2001:2::1"
ROUTER_ADVERTISEMENT = "134"  # RFC 4861 4.2


def start_pair(topology: Topology, tmp_path: Path) -> tuple[Netns, Netns, str, ProductProcess,
                                                            ProductProcess, str, str]:
    """Server and IPv6 client configured (not started); (srv, cli, srv_if, server, client,
    server TUN, client TUN)."""
    require_tools("ping", "tcpdump", "tshark")
    srv = topology.host("srv")
    cli = topology.host("cli")
    srv_if, _ = topology.link(srv, f"{SERVER_IP}/24", cli, f"{CLIENT_IP}/24")
    stun, ctun = tun_name("ps"), tun_name("pc")
    server = ProductProcess(
        srv, "server",
        server_toml(tmp_path, [User("alice", "alice-password")], tun=stun,
                    pool={"ipv6": V6_POOL, "local_ipv6": LOCAL_V6}),
        tmp_path,
    )
    client = ProductProcess(
        cli, "client",
        client_toml(tmp_path, "alice", "alice-password", tun=ctun, ipv6=True,
                    routes=[POOL_NET, V6_POOL]),
        tmp_path,
    )
    return srv, cli, srv_if, server, client, stun, ctun


def test_client_gets_a_prefix_and_pings_the_server_over_ipv6(
    topology: Topology, tmp_path: Path
) -> None:
    srv, cli, srv_if, server, client, stun, ctun = start_pair(topology, tmp_path)
    with Capture(srv, tmp_path / "run.pcap", iface=srv_if, bpf="udp port 1701") as cap:
        server.start()
        client.start()
        wait_for(lambda: connected(client), 40, interval=0.1, what="IPCP up on the client")
        printed = wait_for(lambda: connected_v6(client), 30, interval=0.1,
                           what="the client's 'connected: IPv6 address' line")
        mine = IPv6Interface(printed)
        assert mine.network.prefixlen == 64
        assert mine.network.subnet_of(IPv6Network(V6_POOL))
        assert mine.ip != IPv6Address(LOCAL_V6)
        # The kernel's view: the TUN has that global address, and the route to the pool.
        wait_for(lambda: addresses(cli, ctun, 6) == [str(mine.ip)], 15,
                 what=f"{mine.ip} on the client's TUN")
        assert any(a.startswith("fe80:") for a in addresses(cli, ctun, 6, scope="link"))
        wait_for(lambda: any(r.get("dst") == V6_POOL and r.get("dev") == ctun
                             for r in routes(cli, 6)), 10, what=f"a route to {V6_POOL}")
        # The server routes the session's /64 to its TUN and owns 2001:2::1 there.
        assert any(r.get("dst") == str(mine.network) and r.get("dev") == stun
                   for r in routes(srv, 6))
        assert LOCAL_V6 in addresses(srv, stun, 6)
        # Both families work through the one session.
        assert ping(cli, LOCAL_V6, 3) == 3
        assert ping(cli, "198.18.100.1", 3) == 3
        status = server.ctl("status")
        assert status["ppp"]["dataplane"]["sessions_v6"] == 1
        client.stop()
        wait_for(lambda: server.sessions() == [], 15, what="the session freed")
        wait_for(lambda: all(r.get("dst") != str(mine.network) for r in routes(srv, 6)), 10,
                 what=f"the server's route to {mine.network} removed")
    assert client.returncode == 0, client.log_text()
    assert_no_traceback(server.log_text())
    assert_no_traceback(client.log_text())

    pcap = cap.path
    assert tshark_problems(pcap, src=SERVER_IP) == []
    assert tshark_problems(pcap, src=CLIENT_IP) == []
    assert {"ipv6cp", "ipv6"} <= ppp_protocols(pcap)
    # The router advertisement the server sent carried the client's /64.
    ras = tshark_fields(pcap, ["icmpv6.opt.prefix", "icmpv6.opt.prefix.length"],
                        f"ip.src == {SERVER_IP} && icmpv6.type == {ROUTER_ADVERTISEMENT}")
    assert ras and all(row == [str(mine.network.network_address), "64"] for row in ras), ras
    echoes = tshark_fields(pcap, ["ipv6.src"], f"ip.src == {SERVER_IP} && icmpv6.type == 129")
    assert [LOCAL_V6] in echoes


def test_session_prefix_leaves_out_the_servers_own_address(
    topology: Topology, tmp_path: Path
) -> None:
    """The /64 holding `local_ipv6` is the server's: no session may be given it.

    Otherwise that session's anti-spoofing filter accepts packets "from" the server's own
    address, and its interface identifier could even be the server's.
    """
    _, _, _, server, client, _, _ = start_pair(topology, tmp_path)
    server.start()
    client.start()
    printed = wait_for(lambda: connected_v6(client), 40, interval=0.1,
                       what="the client's 'connected: IPv6 address' line")
    assert IPv6Address(LOCAL_V6) not in IPv6Interface(printed).network, (
        f"the client got {printed}, the /64 of the server's own {LOCAL_V6}")
