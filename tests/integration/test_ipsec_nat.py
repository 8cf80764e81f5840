"""L2TP/IPsec through a NAT: NAT-T detection, ESP in UDP 4500, two clients behind one address.

client ns -> nat ns (nftables masquerade onto the server's link) -> server ns. The server
sees every client as the NAT's address 198.18.0.254; a second client behind the same
address gets its own NAT-mapped ports, so its own IKE and ESP SAs and its own L2TP tunnel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.integration.ipsec_env import (
    esp_stats,
    ipsec_client_toml,
    ipsec_server_toml,
    ipsec_status,
    keyed_fields,
    keyed_problems,
    plain_fields,
    wait_ipsec_up,
    wait_up,
)
from tests.integration.ppp_env import (
    POOL_LOCAL,
    SERVER_IP,
    User,
    ping,
    tun_name,
    )

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

NAT_OUTSIDE = "198.18.0.254"  # the address every client behind the NAT shows
USERS = (User("alice", "alice-password"), User("bob", "bob-password"))
NAT_T_PORT = 4500


@dataclass
class NatNet:
    srv: Netns
    nat: Netns
    srv_if: str
    clients: list[Netns]


def build(topology: Topology, n_clients: int) -> NatNet:
    """The server, the NAT router and `n_clients` client hosts each on its own inside link."""
    srv = topology.host("srv")
    nat = topology.host("nat")
    srv_if, out_if = topology.link(srv, f"{SERVER_IP}/24", nat, f"{NAT_OUTSIDE}/24")
    nat.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    nat.run(["nft", f"add table ip nat; add chain ip nat post {{ type nat hook postrouting "
                    f"priority 100; }}; add rule ip nat post oifname {out_if} masquerade"])
    clients = []
    for n in range(n_clients):
        cli = topology.host(f"cli{n}")
        topology.link(nat, f"198.18.{10 + n}.1/24", cli, f"198.18.{10 + n}.2/24")
        cli.run(["ip", "route", "add", "198.18.0.0/24", "via", f"198.18.{10 + n}.1"])
        clients.append(cli)
    return NatNet(srv, nat, srv_if, clients)


def start_server(net: NatNet, work: Path, keylog: Path) -> ProductProcess:
    server = ProductProcess(
        net.srv, "server",
        ipsec_server_toml(work, USERS, keylog=keylog, tun=tun_name("ns")), work,
    )
    server.start()
    return server


def start_client(ns: Netns, work: Path, user: User, n: int) -> ProductProcess:
    work.mkdir(parents=True, exist_ok=True)
    client = ProductProcess(
        ns, "client",
        ipsec_client_toml(work, user.name, user.password, tun=tun_name("nc", n),
                          extra={"reconnect_initial": 2, "reconnect_cap": 4}),
        work,
    )
    client.start()
    return client


def peers(server: ProductProcess) -> list[tuple[str, int]]:
    """(ip, port) of the server's sessions that have an address."""
    out = []
    for s in server.sessions():
        if s.get("address"):
            ip, _, port = str(s["peer"]).rpartition(":")
            out.append((ip, int(port)))
    return out


def check_capture(pcap: Path, keylog: Path, sources: Sequence[str]) -> None:
    # No key: IKE and ESP in UDP 4500, nothing readable of L2TP or PPP.
    assert plain_fields(pcap, ["frame.number"], f"udp.port == {NAT_T_PORT} && esp")
    assert plain_fields(pcap, ["frame.number"], "l2tp || ppp") == []
    assert plain_fields(pcap, ["frame.number"], "esp && !udp") == []  # never raw ESP
    # With the server's key log every ESP packet opens to L2TP, cleanly.
    assert len(keyed_fields(pcap, keylog, ["frame.number"], "l2tp")) == \
        len(keyed_fields(pcap, keylog, ["frame.number"], "esp"))
    for src in sources:
        assert keyed_problems(pcap, keylog, src=src) == []


def test_client_behind_nat_uses_udp_4500(topology: Topology, tmp_path: Path) -> None:
    require_tools("nft", "ping", "tcpdump", "tshark")
    net = build(topology, 1)
    keylog = tmp_path / "server.keys"
    with Capture(net.srv, tmp_path / "nat.pcap", iface=net.srv_if, bpf="") as cap:
        server = start_server(net, tmp_path / "srv", keylog)
        client = start_client(net.clients[0], tmp_path / "cli0", USERS[0], 0)
        up = wait_ipsec_up(client)
        assert up.udp_encap and up.mode == "transport"
        assert "in UDP 4500" in client.log_text()
        conn = wait_up(client, net.clients[0], tun_name("nc", 0))
        assert ping(net.clients[0], POOL_LOCAL, 5) == 5
        [(peer_ip, peer_port)] = wait_for(lambda: peers(server), 10, what="the session")
        assert peer_ip == NAT_OUTSIDE
        sessions = server.sessions()
        assert sessions[0]["ipsec"].endswith("transport udp-encap")
        assert sessions[0]["address"] == conn.address
        [sa] = ipsec_status(server)["sas"]
        assert sa["udp_encap"] is True and sa["peer"] == f"{peer_ip}:{peer_port}"
        assert sa["peer_id"] == "198.18.10.2"  # the client's own address, behind the NAT
        stats = esp_stats(server)
        assert stats["esp_in"] > 0 and stats["dropped"] == 0
        # The first ESP packet may share a read burst with Quick Mode message 3: the SA
        # must be installed before it is looked up.
        assert stats["unknown_spi"] == 0
        client.stop()
        wait_for(lambda: server.sessions() == [], 15, what="the session freed")
    assert client.returncode == 0, client.log_text()
    assert_no_traceback(server.log_text())
    assert_no_traceback(client.log_text())
    # IKE floated to 4500 (RFC 3947 4): the Quick Mode ran there.
    quick = plain_fields(cap.path, ["udp.dstport"], f"ip.src == {NAT_OUTSIDE} && isakmp "
                         "&& isakmp.exchangetype == 32")
    assert quick and all(row == [str(NAT_T_PORT)] for row in quick), quick
    check_capture(cap.path, keylog, [SERVER_IP, NAT_OUTSIDE])


def test_two_clients_behind_one_nat_address(topology: Topology, tmp_path: Path) -> None:
    require_tools("nft", "ping", "tcpdump", "tshark")
    net = build(topology, 2)
    keylog = tmp_path / "server.keys"
    with Capture(net.srv, tmp_path / "nat2.pcap", iface=net.srv_if, bpf="") as cap:
        server = start_server(net, tmp_path / "srv", keylog)
        clients = [start_client(ns, tmp_path / f"cli{n}", USERS[n], n)
                   for n, ns in enumerate(net.clients)]
        conns = [wait_up(c, ns, tun_name("nc", n))
                 for n, (c, ns) in enumerate(zip(clients, net.clients, strict=True))]
        for c in clients:
            assert wait_ipsec_up(c, 5).udp_encap
        assert conns[0].address != conns[1].address
        for ns in net.clients:
            assert ping(ns, POOL_LOCAL, 5) == 5
        wait_for(lambda: len(peers(server)) == 2, 15, what="two sessions")
        found = peers(server)
        assert {ip for ip, _ in found} == {NAT_OUTSIDE}
        assert len({port for _, port in found}) == 2, found
        sessions = server.sessions()
        assert {s["user"] for s in sessions} == {"alice", "bob"}
        assert len({s["tunnel_id"] for s in sessions}) == 2
        assert all(str(s["ipsec"]).endswith("udp-encap") for s in sessions)
        sas = ipsec_status(server)["sas"]
        assert len(sas) == 2
        assert {sa["peer"] for sa in sas} == {f"{ip}:{port}" for ip, port in found}
        assert len({sa["spi_in"] for sa in sas}) == 2
        assert {sa["peer_id"] for sa in sas} == {"198.18.10.2", "198.18.11.2"}
        # Both at once, again: neither SA disturbed the other.
        for ns in net.clients:
            assert ping(ns, POOL_LOCAL, 3) == 3
        assert all(sa["packets_in"] > 0 for sa in ipsec_status(server)["sas"])
        stats = esp_stats(server)
        assert stats["dropped"] == 0 and stats["unknown_spi"] == 0
        for c in clients:
            c.stop()
        wait_for(lambda: server.sessions() == [], 15, what="both sessions freed")
    for c in clients:
        assert c.returncode == 0, c.log_text()
        assert_no_traceback(c.log_text())
    assert_no_traceback(server.log_text())
    check_capture(cap.path, keylog, [SERVER_IP, NAT_OUTSIDE])
