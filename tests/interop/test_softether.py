"""Our LAC (client) against SoftEther VPN Server's raw L2TP (no IPsec) on UDP 1701.

SoftEther's PPP is passive: it starts LCP only after the client's first PPP frame. Our
client runs PPP (``[debug] link = "ppp"``) and sends its LCP Configure-Request itself, so
SoftEther's Configure-Ack and Configure-Request must arrive in our session (rx_bytes > 0).
This SoftEther build hangs when two L2TP tunnels overlap in one instance, so the test opens
exactly one tunnel and the client does not reconnect. (test_ppp_softether.py checks the
whole PPP connection: authentication, IPCP, a ping.)
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.netns import Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.softether import BINARY, SoftEther

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

LNS_IP = "198.18.43.1"
LAC_IP = "198.18.43.2"


def client_config(work: Path) -> str:
    """client.toml: one tunnel with one session running PPP, no reconnect."""
    config: dict[str, Any] = {
        "server": LNS_IP,
        "port": 1701,
        "local": LAC_IP,
        "hostname": "pyl2tp-lac",
        "user": "testuser@VPN",  # SoftEther's user@hub
        "password": "testpass",
        "dns": False,  # leave the namespace's resolv.conf (the host's) alone
        "control_socket": str(work / "client.sock"),
        "tunnels": 1,
        "sessions": 1,
        "hello_interval": 60,
        "reconnect": False,  # a second tunnel next to a lingering one hangs this build
    }
    lines = ["[client]", *(f"{k} = {json.dumps(v)}" for k, v in config.items())]
    lines += ["", "[debug]", 'link = "ppp"', ""]
    return "\n".join(lines)


def established(client: ProductProcess, received: bool) -> list[dict[str, Any]]:
    """The sessions once every one is established (and has received bytes), else []."""
    sessions = client.sessions()
    if all(s["state"] == "established" and (s["rx_bytes"] > 0 or not received)
           for s in sessions):
        return sessions
    return []


def test_lac_to_softether_raw_l2tp(topology: Topology, tmp_path: Path) -> None:
    require_tools("vpncmd", "unshare", "nsenter", "ss", "tcpdump", "tshark")
    if not BINARY.exists():
        pytest.skip(f"not installed: {BINARY}")
    lns, lac = topology.host("lns"), topology.host("lac")
    topology.link(lns, f"{LNS_IP}/24", lac, f"{LAC_IP}/24")
    server = SoftEther(lns, tmp_path / "softether", listen=LNS_IP)
    pcap = tmp_path / "lac.pcap"
    client = ProductProcess(lac, "client", client_config(tmp_path), tmp_path / "client")
    try:
        server.start()
        with Capture(lac, pcap, iface="any", bpf="udp port 1701"):
            client.start()
            wait_for(lambda: established(client, received=False), 20, interval=0.2,
                     what="an established session")
            tunnels = client.tunnels()
            sessions = wait_for(lambda: established(client, received=True), 10, interval=0.2,
                                what="SoftEther's LCP frames in our session")
            client.stop()
        # Still answering afterwards: our tunnel did not wedge the server.
        assert {500, 4500, 1701} <= server.udp_ports()
        assert "SessionList" in server.admin("SessionList")
    finally:
        client.stop()
        server.stop()

    assert len(tunnels) == 1 and len(sessions) == 1
    tunnel, session = tunnels[0], sessions[0]
    assert tunnel["state"] == "established"
    assert tunnel["peer"] == f"{LNS_IP}:1701"
    # SoftEther's SCCRP Host Name is the machine's (UTS namespace's) host name.
    assert tunnel["hostname"] == socket.gethostname()
    assert tunnel["sessions"] == 1
    assert session["tunnel_id"] == tunnel["tunnel_id"]
    assert session["peer"] == f"{LNS_IP}:1701"
    assert_no_traceback(client.log_text())
    lcp_from_us = tshark_fields(pcap, ["ppp.code"], f"ip.src == {LAC_IP} && lcp")
    assert "1" in {row[0] for row in lcp_from_us}, "our client sent no LCP Configure-Request"
    lcp_to_us = tshark_fields(pcap, ["ppp.code"], f"ip.src == {LNS_IP} && lcp")
    assert {"1", "2"} <= {row[0] for row in lcp_to_us}, "no LCP Configure-Request/Ack"
    assert tshark_problems(pcap, src=LAC_IP) == []
