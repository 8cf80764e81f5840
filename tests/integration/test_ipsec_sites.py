"""Site-to-site: two `pyl2tp server` processes as IPsec gateways with a LAN host behind each.

    host-a 198.18.10.2 -- .10.1 gw-a 198.18.0.1 ==== 198.18.0.2 gw-b .20.1 -- 198.18.20.2 host-b

Gateway A initiates (`initiate = true`), B answers; pings cross the tunnel-mode ESP both
ways, `ctl status` shows the site up with its counters on both sides. A site asking for
wider selectors than the responder allows is refused with a log line naming them. When B
restarts, A brings the tunnel back by itself. A NAT variant puts A behind a masquerading
router (UDP-encapsulated tunnel mode).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback, pyl2tp_bin
from tests.integration.ipsec_env import ipsec_client_toml, ipsec_server_toml, wait_up
from tests.integration.ppp_env import POOL_LOCAL, User, ping, tun_name

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

GW_A, GW_B = "198.18.0.1", "198.18.0.2"
NET_A, NET_B = "198.18.10.0/24", "198.18.20.0/24"
HOST_A, HOST_B = "198.18.10.2", "198.18.20.2"
NAT_OUTSIDE = "198.18.0.254"


@dataclass
class Net:
    gw_a: Netns
    gw_b: Netns
    host_a: Netns
    host_b: Netns
    peer_of_b: str  # where B sees A (the NAT's address in the NAT variant)


def build(topology: Topology, *, nat: bool = False) -> Net:
    gw_a, gw_b = topology.host("gwa"), topology.host("gwb")
    host_a, host_b = topology.host("hosta"), topology.host("hostb")
    if nat:
        router = topology.host("nat")
        topology.link(gw_a, "198.18.1.2/24", router, "198.18.1.1/24")
        out_if, _ = topology.link(router, f"{NAT_OUTSIDE}/24", gw_b, f"{GW_B}/24")
        router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        router.run(["nft", f"add table ip nat; add chain ip nat post {{ type nat hook "
                           f"postrouting priority 100; }}; add rule ip nat post oifname "
                           f"{out_if} masquerade"])
        gw_a.run(["ip", "route", "add", "198.18.0.0/24", "via", "198.18.1.1"])
    else:
        topology.link(gw_a, f"{GW_A}/24", gw_b, f"{GW_B}/24")
    topology.link(host_a, "198.18.10.2/24", gw_a, "198.18.10.1/24")
    topology.link(host_b, "198.18.20.2/24", gw_b, "198.18.20.1/24")
    host_a.run(["ip", "route", "add", NET_B, "via", "198.18.10.1"])
    host_b.run(["ip", "route", "add", NET_A, "via", "198.18.20.1"])
    return Net(gw_a, gw_b, host_a, host_b, NAT_OUTSIDE if nat else GW_A)


def gateway_toml(work: Path, me: str | Sequence[str], tag: str,
                 sites: Sequence[Mapping[str, object]],
                 ipsec: Mapping[str, object] | None = None, users: Sequence[User] = ()) -> str:
    text = ipsec_server_toml(
        work, users, listen=(me,) if isinstance(me, str) else me, tun=tun_name(f"l{tag}"),
        ipsec={"site_tun": tun_name(f"s{tag}"), "dpd_delay": 2, "dpd_timeout": 6,
               **(ipsec or {})},
    )
    for site in sites:
        text += "[[sites]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in site.items())
    return text


def start(ns: Netns, work: Path, me: str | Sequence[str], tag: str,
          sites: Sequence[Mapping[str, object]], ipsec: Mapping[str, object] | None = None,
          users: Sequence[User] = ()) -> ProductProcess:
    proc = ProductProcess(ns, "server", gateway_toml(work, me, tag, sites, ipsec, users), work)
    proc.start()
    return proc


def site_status(gw: ProductProcess, name: str) -> dict[str, Any]:
    sites = gw.ctl("status")["ipsec"]["sites"]
    assert sites is not None, "no sites in ctl status"
    found: dict[str, Any] = sites["sites"][name]
    assert found["name"] == name
    return found


def wait_site_up(gw: ProductProcess, name: str, timeout: float = 20) -> dict[str, Any]:
    return wait_for(lambda: (s := site_status(gw, name))["state"] == "up" and s, timeout,
                    what=f"site {name} up on {gw.ns.name}")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return tmp_path


def a_site(peer: str = GW_B, local: Sequence[str] = (NET_A,)) -> dict[str, object]:
    return {"name": "site-b", "peer": peer, "local": list(local), "remote": [NET_B],
            "initiate": True}


def b_site(peer: str = GW_A) -> dict[str, object]:
    return {"name": "site-a", "peer": peer, "local": [NET_B], "remote": [NET_A]}


def _check_crossing(net: Net, a: ProductProcess, b: ProductProcess, *, udp: bool) -> None:
    sa = wait_site_up(a, "site-b")
    sb = wait_site_up(b, "site-a")
    assert ping(net.host_a, HOST_B, 5) == 5
    assert ping(net.host_b, HOST_A, 5) == 5
    sa, sb = site_status(a, "site-b"), site_status(b, "site-a")
    for s in (sa, sb):
        assert s["packets_in"] >= 10 and s["packets_out"] >= 10, s
        assert s["bytes_in"] > 0 and s["bytes_out"] > 0, s
        assert s["policy_dropped"] == 0 and s["esp_dropped"] == 0, s
        assert len(s["sas"]) == 1 and s["sas"][0]["udp_encap"] is udp, s
    assert sa["sas"][0]["local"] == NET_A and sa["sas"][0]["remote"] == NET_B
    assert sb["sas"][0]["local"] == NET_B and sb["sas"][0]["remote"] == NET_A
    assert "site site-b: tunnel 198.18.10.0/24 <-> 198.18.20.0/24 up" in a.log_text()
    assert "site site-a: tunnel 198.18.20.0/24 <-> 198.18.10.0/24 up" in b.log_text()
    # the L2TP data path saw none of it
    assert a.ctl("status")["ipsec"]["esp"]["not_l2tp"] == 0
    assert b.ctl("status")["ipsec"]["esp"]["not_l2tp"] == 0


def test_site_to_site_ping_both_ways_and_restart(work: Path) -> None:
    with Topology("s2s") as topo:
        net = build(topo)
        b = start(net.gw_b, work / "b", GW_B, "b", [b_site()])
        a = start(net.gw_a, work / "a", GW_A, "a", [a_site()])
        try:
            _check_crossing(net, a, b, udp=False)
            # routes into the site device on both gateways
            routes = net.gw_a.run(["ip", "-4", "route", "show", NET_B]).stdout
            assert tun_name("sa") in routes
            # B goes away (Delete sent) and comes back: A brings the site up again itself.
            b.stop()
            wait_for(lambda: site_status(a, "site-b")["state"] != "up", 10,
                     what="site down on A")
            assert "site site-b: down" in a.log_text()
            b = start(net.gw_b, work / "b2", GW_B, "b", [b_site()])
            wait_site_up(a, "site-b", 30)
            wait_site_up(b, "site-a")
            assert ping(net.host_a, HOST_B, 3) == 3
            assert ping(net.host_b, HOST_A, 3) == 3
        finally:
            a.stop()
            b.stop()
        routes = net.gw_a.run(["ip", "-4", "route", "show", NET_B]).stdout
        assert routes.strip() == "", routes  # removed at stop
        for gw in (a, b):
            assert_no_traceback(gw.log_text())


def test_wider_selectors_are_refused(work: Path) -> None:
    with Topology("s2s-wide") as topo:
        net = build(topo)
        b = start(net.gw_b, work / "b", GW_B, "b", [b_site()])
        # A asks for 198.18.10.0/23 behind it: B allows only 198.18.10.0/24.
        a = start(net.gw_a, work / "a", GW_A, "a", [a_site(local=("198.18.10.0/23",))])
        try:
            wait_for(lambda: "refused" in b.log_text(), 15, what="refusal in B's log")
            assert ("tunnel 198.18.20.0/24 <-> 198.18.10.0/23 refused: not inside the "
                    "networks of its site") in b.log_text()
            wait_for(lambda: "site site-b: negotiation with 198.18.0.2 failed "
                     "(INVALID-ID-INFORMATION)" in a.log_text(), 10, what="failure on A")
            assert site_status(a, "site-b")["sas"] == []
            assert site_status(b, "site-a")["state"] != "up"
            assert ping(net.host_a, HOST_B, 2, deadline=3) == 0
            assert site_status(a, "site-b")["no_sa"] >= 1
        finally:
            a.stop()
            b.stop()
        for gw in (a, b):
            assert_no_traceback(gw.log_text())


def test_site_to_site_through_nat(work: Path) -> None:
    with Topology("s2s-nat") as topo:
        net = build(topo, nat=True)
        b = start(net.gw_b, work / "b", GW_B, "b", [b_site(NAT_OUTSIDE)])
        a = start(net.gw_a, work / "a", "198.18.1.2", "a", [a_site()])
        try:
            _check_crossing(net, a, b, udp=True)
        finally:
            a.stop()
            b.stop()
        for gw in (a, b):
            assert_no_traceback(gw.log_text())


def test_peer_declared_dead_then_back(work: Path) -> None:
    """B dies without a word (SIGKILL): A's DPD declares it dead, the site goes down, and
    A sets the tunnel up again when B is back."""
    with Topology("s2s-dpd") as topo:
        net = build(topo)
        b = start(net.gw_b, work / "b", GW_B, "b", [b_site()])
        a = start(net.gw_a, work / "a", GW_A, "a", [a_site()])
        try:
            wait_site_up(a, "site-b")
            assert ping(net.host_a, HOST_B, 2) == 2
            b.kill()
            wait_for(lambda: "site site-b: peer 198.18.0.2 is dead (DPD)" in a.log_text(), 15,
                     what="DPD verdict on A")
            assert "site site-b: down (peer dead)" in a.log_text()
            assert site_status(a, "site-b")["sas"] == []
            b = start(net.gw_b, work / "b2", GW_B, "b", [b_site()])
            wait_site_up(a, "site-b", 30)
            assert ping(net.host_a, HOST_B, 3) == 3
            assert ping(net.host_b, HOST_A, 3) == 3
        finally:
            a.stop()
            b.stop()
        for gw in (a, b):
            assert_no_traceback(gw.log_text())


def test_l2tp_client_on_a_site_gateway(work: Path) -> None:
    """Gateway B also serves an L2TP/IPsec client (transport mode) while the site is up."""
    user = User("alice", "alice-password")
    with Topology("s2s-l2tp") as topo:
        net = build(topo)
        cli = topo.host("cli")
        topo.link(cli, "198.18.30.2/24", net.gw_b, "198.18.30.1/24")
        b = start(net.gw_b, work / "b", (GW_B, "198.18.30.1"), "b", [b_site()], users=[user])
        a = start(net.gw_a, work / "a", GW_A, "a", [a_site()])
        tun = tun_name("c")
        client = ProductProcess(
            cli, "client",
            ipsec_client_toml(work / "c", user.name, user.password, server="198.18.30.1",
                              tun=tun),
            work / "c",
        )
        client.start()
        try:
            wait_up(client, cli, tun)
            wait_site_up(a, "site-b")
            wait_site_up(b, "site-a")
            assert ping(cli, POOL_LOCAL, 3) == 3
            assert ping(net.host_a, HOST_B, 3) == 3
            status = b.ctl("status")["ipsec"]
            modes = sorted(sa["mode"] for sa in status["sas"])
            assert modes == ["transport"], status["sas"]  # the site's SA is not an L2TP one
            assert status["sites"]["sites"]["site-a"]["packets_in"] >= 3
            # the readable form: one line per key
            text = b.ns.run([pyl2tp_bin(), "ctl", "-s", b.control_socket, "status"]).stdout
            assert "ipsec.sites.sites.site-a.state: up" in text, text
            assert "ipsec.sites.sites.site-a.peer: 198.18.0.1" in text, text
        finally:
            client.stop()
            a.stop()
            b.stop()
        for proc in (a, b, client):
            assert_no_traceback(proc.log_text())


def test_site_rekeys_without_loss(work: Path) -> None:
    """A short SA lifetime on the initiator: it rekeys make-before-break (85 % of 5 s),
    pings keep flowing across two rekeys, the old SAs go and the site never goes down."""
    with Topology("s2s-rekey") as topo:
        net = build(topo)
        b = start(net.gw_b, work / "b", GW_B, "b", [b_site()])
        a = start(net.gw_a, work / "a", GW_A, "a", [a_site()], ipsec={"sa_lifetime": 5})
        try:
            wait_site_up(a, "site-b")
            first = site_status(a, "site-b")["sas"][0]["spi_in"]
            res = net.host_a.run(["ping", "-n", "-c", "50", "-i", "0.2", "-W", "1", HOST_B],
                                 check=False, timeout=40)
            assert " 0% packet loss" in res.stdout, res.stdout
            assert a.log_text().count("site site-b: tunnel 198.18.10.0/24 <-> "
                                      "198.18.20.0/24 rekeyed") >= 2
            assert b.log_text().count("site site-a: tunnel 198.18.20.0/24 <-> "
                                      "198.18.10.0/24 rekeyed") >= 2
            for gw, name in ((a, "site-b"), (b, "site-a")):
                assert "down" not in gw.log_text(), gw.log_text()[-2000:]
                sas = site_status(gw, name)["sas"]
                assert 1 <= len(sas) <= 2, sas  # the newest, and perhaps one in its grace
            assert first not in [s["spi_in"] for s in site_status(a, "site-b")["sas"]]
        finally:
            a.stop()
            b.stop()
        for gw in (a, b):
            assert_no_traceback(gw.log_text())


def test_two_remote_networks_one_isakmp_sa(work: Path) -> None:
    """A site with two remote networks: one Main Mode, one tunnel per (local, remote) pair,
    each network reachable through its own child SA."""
    with Topology("s2s-two") as topo:
        net = build(topo)
        host_b2 = topo.host("hostb2")
        topo.link(host_b2, "198.18.21.2/24", net.gw_b, "198.18.21.1/24")
        host_b2.run(["ip", "route", "add", NET_A, "via", "198.18.21.1"])
        net.host_a.run(["ip", "route", "add", "198.18.21.0/24", "via", "198.18.10.1"])
        nets_b = [NET_B, "198.18.21.0/24"]
        b = start(net.gw_b, work / "b", GW_B, "b", [{**b_site(), "local": nets_b}])
        a = start(net.gw_a, work / "a", GW_A, "a", [{**a_site(), "remote": nets_b}])
        try:
            wait_for(lambda: len(site_status(a, "site-b")["sas"]) == 2, 20,
                     what="two tunnels on A")
            assert ping(net.host_a, HOST_B, 3) == 3
            assert ping(net.host_a, "198.18.21.2", 3) == 3
            assert ping(host_b2, HOST_A, 3) == 3
            sas = site_status(a, "site-b")["sas"]
            assert sorted(s["remote"] for s in sas) == nets_b
            assert all(s["packets_out"] >= 3 and s["packets_in"] >= 3 for s in sas), sas
            assert a.log_text().count("starting Main Mode") == 1
        finally:
            a.stop()
            b.stop()
        for gw in (a, b):
            assert_no_traceback(gw.log_text())


def test_both_ends_initiate(work: Path) -> None:
    """Both gateways initiate at once: each holds the other's negotiation when it
    authenticates, so neither sends INITIAL-CONTACT and no SA is dropped; traffic crosses
    both ways."""
    with Topology("s2s-both") as topo:
        net = build(topo)
        b = start(net.gw_b, work / "b", GW_B, "b", [{**b_site(), "initiate": True}])
        a = start(net.gw_a, work / "a", GW_A, "a", [a_site()])
        try:
            wait_site_up(a, "site-b")
            wait_site_up(b, "site-a")
            assert ping(net.host_a, HOST_B, 3) == 3
            assert ping(net.host_b, HOST_A, 3) == 3
            assert site_status(a, "site-b")["state"] == "up"
            assert site_status(b, "site-a")["state"] == "up"
        finally:
            a.stop()
            b.stop()
        for gw in (a, b):
            assert_no_traceback(gw.log_text())
            assert "INITIAL-CONTACT" not in gw.log_text()
