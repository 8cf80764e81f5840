"""Our client running PPP against l2tpns, a user-space LNS that authenticates via FreeRADIUS.

l2tpns offers CHAP-MD5 and, after a Nak, PAP (``radius_authtypes "chap,pap"``); it hands out
the RADIUS Framed-IP-Address in IPCP together with its primary and secondary DNS, and
answers ping on its TUN address. So a client that accepts only CHAP (or only PAP) must come
up with exactly that address and those servers, and ping l2tpns through its own TUN.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.l2tpns import L2tpns
from tests.harness.netns import Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.radius import FreeRadius
from tests.interop.ppp_peers import (
    capture_drops,
    client_toml,
    device_addresses,
    ping,
    private_resolv_conf,
    stopccn_problems,
    tun_name,
    wait_connected,
)

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

LNS_IP = "198.18.44.1"
LAC_IP = "198.18.44.2"
LNS_LOCAL = "198.18.41.1"  # l2tpns's TUN address: its IPCP address, answers ping
LNS_POOL = "198.18.41.10-198.18.41.50"
LNS_DNS = ("198.18.41.53", "198.18.41.54")
USER, PASSWORD, ADDRESS = "carol", "carol-radius-pass", "198.18.41.23"
# PPP protocol numbers (RFC 1661, RFC 1334, RFC 1994, RFC 1332) as tshark's ppp.protocol.
PROTO_PAP, PROTO_CHAP = 0xC023, 0xC223
RESOLV_ORIGINAL = "nameserver 198.18.44.99\n"


def client_config(work: Path, auth: str, tun: str) -> str:
    return client_toml(work, {
        "server": LNS_IP,
        "port": 1701,
        "local": LAC_IP,
        "hostname": "pyl2tp-lac",
        "user": USER,
        "password": PASSWORD,
        "auth": auth,
        "routes": ["198.18.41.0/24"],
        "dns": True,
        "tun": tun,
        "reconnect": False,
        "hello_interval": 60,
    })


def ppp_protocols_from(pcap: Path, src: str) -> set[int]:
    """PPP protocol numbers of the frames `src` sent in L2TP data messages."""
    rows = tshark_fields(pcap, ["ppp.protocol"], f"ip.src == {src} && ppp")
    return {int(p, 0) for row in rows for p in row[0].split(",") if p}


@pytest.mark.parametrize("auth", ["chap", "pap"])
def test_client_ppp_to_l2tpns(topology: Topology, tmp_path: Path, auth: str) -> None:
    require_tools("l2tpns", "freeradius", "radclient", "tcpdump", "tshark", "ping")
    lns, lac = topology.host("lns"), topology.host("lac")
    topology.link(lns, f"{LNS_IP}/24", lac, f"{LAC_IP}/24")
    radius = FreeRadius(lns, tmp_path / "radius", [(USER, PASSWORD, ADDRESS)])
    l2tpns = L2tpns(lns, tmp_path / "l2tpns", bind=LNS_IP, secret=None, radius=radius,
                    local_ip=LNS_LOCAL, pool=LNS_POOL, dns=LNS_DNS)
    tun = tun_name("pl2c")
    pcap = tmp_path / "lac.pcap"
    client = ProductProcess(lac, "client", client_config(tmp_path, auth, tun),
                            tmp_path / "client")
    try:
        radius.start()
        l2tpns.start()
        with private_resolv_conf(lac, RESOLV_ORIGINAL) as resolv, \
                Capture(lac, pcap, iface="any", bpf="udp port 1701") as capture:
            client.start()
            up = wait_connected(client, 40)
            wait_for(lambda: device_addresses(lac, tun), 10, interval=0.2,
                     what=f"an address on {tun}")
            tun_addresses = device_addresses(lac, tun)
            resolv_text = resolv.read_text()
            sessions = client.sessions()
            # Through our TUN: the route to 198.18.41.0/24 (and the peer) points into it.
            route = lac.run(["ip", "-4", "route", "get", LNS_LOCAL]).stdout
            replies = ping(lac, LNS_LOCAL, 3)
            after = client.sessions()
            assert client.stop() == 0, "the client did not exit cleanly on SIGTERM"
            restored = resolv.read_text()
    finally:
        client.stop()
        l2tpns.stop()
        radius.stop()
        print(f"--- client log\n{client.log_text()[-6000:]}\n"
              f"--- l2tpns log\n{l2tpns.log_text()[-6000:]}")

    # IPCP: the RADIUS Framed-IP-Address, l2tpns's own address, its two DNS servers.
    assert up.address == ADDRESS
    assert up.peer == LNS_LOCAL
    assert up.dns == list(LNS_DNS)
    assert tun_addresses == [f"{ADDRESS} peer {LNS_LOCAL}/32"]
    for server in LNS_DNS:
        assert f"nameserver {server}" in resolv_text, resolv_text
    assert restored == RESOLV_ORIGINAL, "the client did not put resolv.conf back"
    assert f"dev {tun} " in route, route
    assert replies == 3, "no echo replies from l2tpns through our TUN"

    assert len(sessions) == 1
    assert sessions[0]["address"] == ADDRESS
    assert sessions[0]["user"] == USER
    assert after[0]["tx_bytes"] > sessions[0]["tx_bytes"]
    assert after[0]["rx_bytes"] > sessions[0]["rx_bytes"]
    assert_no_traceback(client.log_text())

    log = l2tpns.log_text()
    method = {"chap": "CHAP", "pap": "PAP"}[auth]
    assert f"{method} User {USER} authentication allowed." in log
    assert "IPCP: Opened, session is now active" in log
    assert f"authentication by {auth}" in client.log_text()
    # The authentication that ran is the one the client accepts, and nothing else.
    ours = ppp_protocols_from(pcap, LAC_IP)
    assert (PROTO_PAP if auth == "chap" else PROTO_CHAP) not in ours
    if capture_drops(capture) == 0:  # else a packet's absence proves nothing
        assert (PROTO_CHAP if auth == "chap" else PROTO_PAP) in ours
        icmp = tshark_fields(pcap, ["ip.src", "ip.dst", "icmp.type"], "icmp")
        inner = [[r[0].split(",")[-1], r[1].split(",")[-1], r[2]] for r in icmp]
        assert [ADDRESS, LNS_LOCAL, "8"] in inner
        assert [LNS_LOCAL, ADDRESS, "0"] in inner
        assert stopccn_problems(pcap, LAC_IP, LNS_IP) == []
    assert tshark_problems(pcap, src=LAC_IP) == []
