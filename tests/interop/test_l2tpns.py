"""Our LAC (client) against l2tpns, a user-space LNS that authenticates through FreeRADIUS.

With ``[debug] link = "null"`` our client runs no PPP; it only counts the frames it gets.
l2tpns starts LCP as soon as the session is up, so its Configure-Request must arrive in our
session (rx_bytes > 0). Tunnel authentication (RFC 2661 5.1.1) is tried with and without a
shared secret: l2tpns uses its secret only when the LAC sends a Challenge.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.l2tpns import L2tpns
from tests.harness.netns import Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.radius import FreeRadius

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

LNS_IP = "198.18.42.1"
LAC_IP = "198.18.42.2"
LNS_HOSTNAME = "l2tpns-peer"
USER, PASSWORD, ADDRESS = "alice", "alice-pass", "198.18.41.11"

# RFC 2661 4.4.1 message types and 4.4.3 AVP types seen in the capture.
SCCRQ, SCCRP = 1, 2
AVP_CHALLENGE, AVP_CHALLENGE_RESPONSE = 11, 13


def client_config(work: Path, secret: str | None) -> str:
    """client.toml: one tunnel with one session to l2tpns, PPP frames only counted."""
    config: dict[str, Any] = {
        "server": LNS_IP,
        "port": 1701,
        "local": LAC_IP,
        "hostname": "pyl2tp-lac",
        "user": USER,
        "password": PASSWORD,
        "control_socket": str(work / "client.sock"),
        "tunnels": 1,
        "sessions": 1,
        "hello_interval": 60,
    }
    if secret is not None:
        config["secret"] = secret
    # json.dumps gives TOML-compatible basic strings and numbers.
    lines = ["[client]", *(f"{k} = {json.dumps(v)}" for k, v in config.items())]
    lines += ["", "[debug]", 'link = "null"', ""]
    return "\n".join(lines)


def established(client: ProductProcess) -> list[dict[str, Any]]:
    """The sessions once every one is established and has received bytes, else []."""
    sessions = client.sessions()
    if all(s["state"] == "established" and s["rx_bytes"] > 0 for s in sessions):
        return sessions
    return []


def avp_types(pcap: Path, src: str, message_type: int) -> set[int]:
    """AVP types in the control messages of ``message_type`` sent by ``src``."""
    rows = tshark_fields(
        pcap, ["l2tp.avp.type"], f"ip.src == {src} && l2tp.avp.message_type == {message_type}"
    )
    assert rows, f"no message type {message_type} from {src} in the capture"
    return {int(t) for row in rows for t in row[0].split(",") if t}


@pytest.mark.parametrize("secret", [None, "tunnel-secret-42"], ids=["no-secret", "secret"])
def test_lac_to_l2tpns(topology: Topology, tmp_path: Path, secret: str | None) -> None:
    require_tools("l2tpns", "freeradius", "radclient", "tcpdump", "tshark")
    lns, lac = topology.host("lns"), topology.host("lac")
    topology.link(lns, f"{LNS_IP}/24", lac, f"{LAC_IP}/24")
    radius = FreeRadius(lns, tmp_path / "radius", [(USER, PASSWORD, ADDRESS)])
    l2tpns = L2tpns(
        lns, tmp_path / "l2tpns", bind=LNS_IP, secret=secret, radius=radius,
        hostname=LNS_HOSTNAME,
    )
    pcap = tmp_path / "lac.pcap"
    client = ProductProcess(lac, "client", client_config(tmp_path, secret), tmp_path / "client")
    try:
        radius.start()
        l2tpns.start()
        with Capture(lac, pcap, iface="any", bpf="udp port 1701"):
            client.start()
            sessions = wait_for(lambda: established(client), 20, interval=0.2,
                                what="an established session that received l2tpns's LCP")
            tunnels = client.tunnels()
            client.stop()
    finally:
        client.stop()
        l2tpns.stop()
        radius.stop()

    assert len(tunnels) == 1 and len(sessions) == 1
    tunnel, session = tunnels[0], sessions[0]
    assert tunnel["state"] == "established"
    assert tunnel["peer"] == f"{LNS_IP}:1701"
    assert tunnel["hostname"] == LNS_HOSTNAME
    assert tunnel["sessions"] == 1
    assert session["tunnel_id"] == tunnel["tunnel_id"]
    assert session["peer"] == f"{LNS_IP}:1701"

    log = l2tpns.log_text()
    # l2tpns logs the LAC's address, our Assigned Tunnel ID and the id it gave the tunnel.
    assert f"New tunnel from {LAC_IP}:" in log
    assert f"ID {tunnel['peer_tunnel_id']}\n" in log
    assert f"Remote tunnel id = {tunnel['tunnel_id']}\n" in log
    assert f"assigned session = {session['session_id']}\n" in log
    assert "Received ICCN" in log
    if secret is not None:
        assert "LAC requested CHAP authentication for tunnel" in log
    assert_no_traceback(client.log_text())

    # RFC 2661 5.1.1: with a secret our SCCRQ carries a Challenge and l2tpns answers it.
    sccrq_avps = avp_types(pcap, LAC_IP, SCCRQ)
    sccrp_avps = avp_types(pcap, LNS_IP, SCCRP)
    assert (AVP_CHALLENGE in sccrq_avps) == (secret is not None)
    assert (AVP_CHALLENGE_RESPONSE in sccrp_avps) == (secret is not None)
    assert tshark_problems(pcap, src=LAC_IP) == []
