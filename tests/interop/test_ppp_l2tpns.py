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
from tests.harness.capture import Capture, tshark_problems
from tests.harness.l2tpns import L2tpns
from tests.harness.netns import Topology
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.radius import FreeRadius
from tests.interop.ppp_peers import (
    capture_drops,
    check_client_run,
    check_icmp_through,
    client_toml,
    exercise_client,
    ppp_protocols_from,
    private_resolv_conf,
    stopccn_problems,
    tun_name,
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
            # Through our TUN: the route to 198.18.41.0/24 (and the peer) points into it.
            run = exercise_client(client, lac, tun, LNS_LOCAL, resolv)
            assert client.stop() == 0, "the client did not exit cleanly on SIGTERM"
            restored = resolv.read_text()
    finally:
        client.stop()
        l2tpns.stop()
        radius.stop()
        print(f"--- client log\n{client.log_text()[-6000:]}\n"
              f"--- l2tpns log\n{l2tpns.log_text()[-6000:]}")

    # IPCP: the RADIUS Framed-IP-Address, l2tpns's own address, its two DNS servers.
    assert run.up.address == ADDRESS
    check_client_run(run, tun=tun, peer=LNS_LOCAL, dns=list(LNS_DNS), user=USER)
    assert restored == RESOLV_ORIGINAL, "the client did not put resolv.conf back"
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
        check_icmp_through(pcap, ADDRESS, LNS_LOCAL)
        assert stopccn_problems(pcap, LAC_IP, LNS_IP) == []
    assert tshark_problems(pcap, src=LAC_IP) == []
