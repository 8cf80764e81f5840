"""Our client running PPP against SoftEther VPN Server's raw L2TP (no IPsec) on UDP 1701.

SoftEther's PPP is passive (it waits for the client's first LCP frame), offers EAP, then
MS-CHAPv2, then PAP, and takes the user as ``user@HUB``. IPCP hands out an address that
SoftEther leased from SecureNAT's DHCP inside the hub (198.18.200.x), with the SecureNAT
gateway 198.18.200.1 as the peer and DNS server; the gateway answers ping. This build spins
when two L2TP tunnels overlap, so every test has its own SoftEther and exactly one tunnel,
and the client neither reconnects nor leaves before its StopCCN is acknowledged.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.netns import Topology
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.softether import BINARY, SNAT_GATEWAY, SoftEther
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

LNS_IP = "198.18.45.1"
LAC_IP = "198.18.45.2"
HUB, USER, PASSWORD = "VPN", "testuser", "testpass"
SNAT_NET = ipaddress.ip_network("198.18.200.0/24")
# PPP protocol numbers as tshark's ppp.protocol: PAP (RFC 1334), CHAP (RFC 1994), EAP.
PROTO_PAP, PROTO_CHAP, PROTO_EAP = 0xC023, 0xC223, 0xC227
CHAP_MSCHAPV2 = 0x81  # RFC 2759: the CHAP algorithm of the Authentication-Protocol option
RESOLV_ORIGINAL = "nameserver 198.18.45.99\n"


def client_config(work: Path, auth: str, tun: str) -> str:
    return client_toml(work, {
        "server": LNS_IP,
        "port": 1701,
        "local": LAC_IP,
        "hostname": "pyl2tp-lac",
        "user": f"{USER}@{HUB}",
        "password": PASSWORD,
        "auth": auth,
        "routes": [str(SNAT_NET)],
        "dns": True,
        "tun": tun,
        "reconnect": False,  # a second tunnel next to a lingering one hangs this build
        "hello_interval": 60,
        # SoftEther drops a PPP session after 20 s without a frame from the client.
        "lcp_echo_interval": 5,
    }, {"link": "ppp"})


def acked_auth(pcap: Path) -> list[tuple[int, int | None]]:
    """(protocol, CHAP algorithm) of the Authentication-Protocol options we acknowledged."""
    acked = {row[0] for row in tshark_fields(
        pcap, ["ppp.identifier"], f"ip.src == {LAC_IP} && lcp && ppp.code == 2")}
    requests = tshark_fields(pcap, ["ppp.identifier", "lcp.opt.auth_protocol",
                                    "lcp.opt.algorithm"],
                             f"ip.src == {LNS_IP} && lcp && ppp.code == 1")
    return [(int(proto, 0), int(alg) if alg else None)
            for ident, proto, alg in requests if ident in acked and proto]


@pytest.mark.parametrize("auth", ["mschapv2", "pap"])
def test_client_ppp_to_softether(topology: Topology, tmp_path: Path, auth: str) -> None:
    require_tools("vpncmd", "unshare", "nsenter", "ss", "tcpdump", "tshark", "ping")
    if not BINARY.exists():
        pytest.skip(f"not installed: {BINARY}")
    lns, lac = topology.host("lns"), topology.host("lac")
    topology.link(lns, f"{LNS_IP}/24", lac, f"{LAC_IP}/24")
    server = SoftEther(lns, tmp_path / "softether", listen=LNS_IP, hub=HUB, user=USER,
                       password=PASSWORD)
    tun = tun_name("pl2s")
    pcap = tmp_path / "lac.pcap"
    client = ProductProcess(lac, "client", client_config(tmp_path, auth, tun),
                            tmp_path / "client")
    try:
        server.start()
        with private_resolv_conf(lac, RESOLV_ORIGINAL) as resolv, \
                Capture(lac, pcap, iface="any", bpf="udp port 1701") as capture:
            client.start()
            run = exercise_client(client, lac, tun, SNAT_GATEWAY, resolv)
            # SoftEther's own view: one PPP session of our user in the hub.
            hub_sessions = server.admin("SessionList")
            assert client.stop() == 0, "the client did not exit cleanly on SIGTERM"
            restored = resolv.read_text()
        # Still answering afterwards: our tunnel did not wedge the server.
        assert {500, 4500, 1701} <= server.udp_ports()
    finally:
        client.stop()
        server.stop()
        print(f"--- client log\n{client.log_text()[-6000:]}\n"
              f"--- softether log\n{server.log_text()[-6000:]}")

    # IPCP: a SecureNAT DHCP lease, the gateway as peer and DNS server.
    up = run.up
    assert ipaddress.ip_address(up.address) in SNAT_NET, up
    assert up.address != SNAT_GATEWAY
    check_client_run(run, tun=tun, peer=SNAT_GATEWAY, dns=[SNAT_GATEWAY],
                     user=f"{USER}@{HUB}")
    assert restored == RESOLV_ORIGINAL, "the client did not put resolv.conf back"
    assert USER.upper() in hub_sessions.upper() and "L2TP" in hub_sessions, hub_sessions
    assert_no_traceback(client.log_text())

    assert f"authentication by {auth}" in client.log_text()
    # The method that ran is the one the client accepts: MS-CHAPv2 is CHAP algorithm 0x81.
    ours = ppp_protocols_from(pcap, LAC_IP)
    assert PROTO_EAP not in ours
    assert (PROTO_PAP if auth == "mschapv2" else PROTO_CHAP) not in ours
    if capture_drops(capture) == 0:  # else a packet's absence proves nothing
        if auth == "mschapv2":
            assert PROTO_CHAP in ours
            assert acked_auth(pcap) == [(PROTO_CHAP, CHAP_MSCHAPV2)]
        else:
            assert PROTO_PAP in ours
            assert acked_auth(pcap) == [(PROTO_PAP, None)]
        check_icmp_through(pcap, up.address, SNAT_GATEWAY)
        # RFC 2661 5.7: our StopCCN was acknowledged (and SoftEther's answer acked).
        assert stopccn_problems(pcap, LAC_IP, LNS_IP) == []
    assert tshark_problems(pcap, src=LAC_IP) == []
