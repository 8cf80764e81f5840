"""Our client against SoftEther VPN Server's L2TP/IPsec: IKEv1 PSK, Quick Mode, ESP, L2TP, PPP.

SoftEther puts a random NAT-D hash for the client in Main Mode message 4 (peers/softether
README), so a conforming client always thinks it is behind a NAT and moves to UDP 4500;
its ESP integrity is HMAC-SHA1-96 or MD5 only. Raw L2TP on UDP 1701 is off here, so the
session can only come up through IPsec. This build spins when two L2TP tunnels overlap:
one tunnel, no reconnect.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture
from tests.harness.netns import Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.softether import BINARY, SNAT_GATEWAY, SoftEther
from tests.integration.ipsec_env import (
    keyed_fields,
    keyed_problems,
    plain_fields,
    wait_ipsec_up,
)
from tests.interop.ppp_peers import (
    client_toml,
    device_addresses,
    ping,
    tun_name,
    wait_connected,
)

pytestmark = [pytest.mark.peer, pytest.mark.timeout(150)]

LNS_IP = "198.18.46.1"
LAC_IP = "198.18.46.2"
HUB, USER, PASSWORD, PSK = "VPN", "testuser", "testpass", "testpsk"
SNAT_NET = ipaddress.ip_network("198.18.200.0/24")
# L2TP control message types (RFC 2661 3.2).
SCCRQ, SCCRP, SCCCN, ICRQ, ICRP, ICCN = 1, 2, 3, 10, 11, 12


def client_config(work: Path, tun: str, keylog: Path) -> str:
    return client_toml(work, {
        "server": LNS_IP,
        "local": LAC_IP,
        "hostname": "pyl2tp-lac",
        "user": f"{USER}@{HUB}",
        "password": PASSWORD,
        "psk": PSK,
        "auth": "mschapv2",
        "routes": [str(SNAT_NET)],
        "dns": False,
        "tun": tun,
        "reconnect": False,  # a second tunnel next to a lingering one hangs this build
        # SoftEther drops a PPP session after 20 s without a frame from the client.
        "lcp_echo_interval": 5,
    }, {"keylog": str(keylog)})


def test_client_l2tp_ipsec_to_softether(topology: Topology, tmp_path: Path) -> None:
    require_tools("vpncmd", "unshare", "nsenter", "ss", "tcpdump", "tshark", "ping")
    if not BINARY.exists():
        pytest.skip(f"not installed: {BINARY}")
    lns, lac = topology.host("lns"), topology.host("lac")
    topology.link(lns, f"{LNS_IP}/24", lac, f"{LAC_IP}/24")
    server = SoftEther(lns, tmp_path / "softether", listen=LNS_IP, hub=HUB, user=USER,
                       password=PASSWORD, psk=PSK, l2tp_raw=False)
    tun = tun_name("pl2i")
    keylog = tmp_path / "client.keys"
    pcap = tmp_path / "lac.pcap"
    client = ProductProcess(lac, "client", client_config(tmp_path, tun, keylog),
                            tmp_path / "client")
    try:
        server.start()
        assert 1701 not in server.udp_ports()
        with Capture(lac, pcap, iface="any", bpf="udp or esp"):
            client.start()
            ipsec = wait_ipsec_up(client, 40)
            up = wait_connected(client, 40)
            wait_for(lambda: device_addresses(lac, tun), 10, interval=0.2,
                     what=f"an address on {tun}")
            route = lac.run(["ip", "-4", "route", "get", SNAT_GATEWAY]).stdout
            replies = ping(lac, SNAT_GATEWAY, 5)
            sessions = client.sessions()
            hub_sessions = server.admin("SessionList")
            assert client.stop() == 0, "the client did not exit cleanly on SIGTERM"
        # Still answering afterwards: our tunnel and SAs did not wedge the server.
        assert {500, 4500} <= server.udp_ports()
    finally:
        client.stop()
        server.stop()
        print(f"--- client log\n{client.log_text()[-6000:]}\n"
              f"--- softether log\n{server.log_text()[-6000:]}")

    # IKE and Quick Mode: SoftEther's forced NAT-T, its SHA-1 ESP integrity.
    assert ipsec.udp_encap, "SoftEther's NAT-D makes every client use UDP 4500"
    assert (ipsec.enc, ipsec.auth, ipsec.mode) == ("aes-cbc", "hmac-sha1-96", "transport")
    # PPP over it: a SecureNAT DHCP lease, the gateway as peer, pings answered.
    assert ipaddress.ip_address(up.address) in SNAT_NET, up
    assert up.peer == SNAT_GATEWAY
    assert f"dev {tun} " in route, route
    assert replies == 5, "no echo replies from SecureNAT's gateway through L2TP/IPsec"
    assert len(sessions) == 1 and sessions[0]["address"] == up.address
    assert USER.upper() in hub_sessions.upper() and "L2TP" in hub_sessions, hub_sessions
    assert "authentication by mschapv2" in client.log_text()
    assert_no_traceback(client.log_text())

    # On the wire: IKE, then ESP in UDP 4500 only; no L2TP or PPP in the clear.
    assert plain_fields(pcap, ["frame.number"], "isakmp")
    assert len(plain_fields(pcap, ["frame.number"], "udp.port == 4500 && esp")) >= 10
    assert plain_fields(pcap, ["frame.number"], "esp && !udp") == []
    assert plain_fields(pcap, ["frame.number"], "l2tp || ppp || udp.port == 1701") == []
    # Our key log opens every ESP packet both ways: the L2TP setup and the pings.
    sent = {int(v) for (col,) in keyed_fields(pcap, keylog, ["l2tp.avp.message_type"],
                                              f"ip.src == {LAC_IP} && l2tp.avp.message_type")
            for v in col.split(",") if v}
    got = {int(v) for (col,) in keyed_fields(pcap, keylog, ["l2tp.avp.message_type"],
                                             f"ip.src == {LNS_IP} && l2tp.avp.message_type")
           for v in col.split(",") if v}
    assert {SCCRQ, SCCCN, ICRQ, ICCN} <= sent, sent
    assert {SCCRP, ICRP} <= got, got
    echo = keyed_fields(pcap, keylog, ["icmp.type"],
                        f"ppp && icmp && ip.dst == {SNAT_GATEWAY}")
    assert len(echo) >= 5
    assert keyed_problems(pcap, keylog, src=LAC_IP) == []
    assert keyed_problems(pcap, keylog, src=LNS_IP) == []
