"""Our client against our server with L2TP/IPsec: IKEv1 PSK, ESP transport, L2TP, PPP.

One server namespace and one client namespace on a veth pair; the capture on the
server's veth must show ISAKMP and ESP but no plaintext L2TP, and decrypt cleanly with
the server's key log. Then the failures: a wrong PSK, plain L2TP against `require`, a
replayed ESP packet, and a flood of IKE Main Mode first messages during traffic.
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.integration.ipsec_env import (
    PSK,
    esp_stats,
    ike_stats,
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
    CLIENT_IP,
    POOL_LOCAL,
    SERVER_IP,
    User,
    ping,
    tun_name,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

ALICE = User("alice", "alice-password")
FLOOD_IP = "198.18.1.3"  # a third host, routed through the server
FLOOD_GW = "198.18.1.1"
IPPROTO_ESP = 50
# L2TP control message types (RFC 2661 3.2) every tunnel and session setup carries.
SCCRQ, SCCRP, SCCCN, ICRQ, ICRP, ICCN = 1, 2, 3, 10, 11, 12


@dataclass
class Vpn:
    srv: Netns
    cli: Netns
    srv_if: str
    server: ProductProcess
    client: ProductProcess
    keylog: Path
    client_tun: str


class MakeVpn(Protocol):
    def __call__(self, *, client_psk: str | None = PSK, server_psk: str = PSK,
                 client: dict[str, object] | None = None) -> Vpn: ...


@pytest.fixture
def make_vpn(topology: Topology, tmp_path: Path) -> Iterator[MakeVpn]:
    """Two hosts, one link, and the configs; the test starts the processes."""
    require_tools("ping", "tcpdump", "tshark")

    def make(*, client_psk: str | None = PSK, server_psk: str = PSK,
             client: dict[str, object] | None = None) -> Vpn:
        srv = topology.host("srv")
        cli = topology.host("cli")
        srv_if, _ = topology.link(srv, f"{SERVER_IP}/24", cli, f"{CLIENT_IP}/24")
        keylog = tmp_path / "server.keys"
        server = ProductProcess(
            srv, "server",
            ipsec_server_toml(tmp_path, [ALICE], psk=server_psk, keylog=keylog,
                              tun=tun_name("is")),
            tmp_path,
        )
        extra: dict[str, object] = {"reconnect_initial": 2, "reconnect_cap": 4}
        extra.update(client or {})
        proc = ProductProcess(
            cli, "client",
            ipsec_client_toml(tmp_path, ALICE.name, ALICE.password, psk=client_psk,
                              tun=tun_name("ic"), extra=extra),
            tmp_path,
        )
        return Vpn(srv, cli, srv_if, server, proc, keylog, tun_name("ic"))

    yield make


def l2tp_types(pcap: Path, keylog: Path, src: str) -> set[int]:
    """Control message types `src` sent, as tshark read them after decryption."""
    rows = keyed_fields(pcap, keylog, ["l2tp.avp.message_type"],
                        f"ip.src == {src} && l2tp.avp.message_type")
    return {int(v) for (col,) in rows for v in col.split(",") if v}


def test_ipsec_session_up_and_capture_is_encrypted(make_vpn: MakeVpn, tmp_path: Path) -> None:
    vpn = make_vpn()
    with Capture(vpn.srv, tmp_path / "run.pcap", iface=vpn.srv_if, bpf="") as cap:
        vpn.server.start()
        vpn.client.start()
        up = wait_ipsec_up(vpn.client)
        assert (up.enc, up.auth, up.mode, up.udp_encap) == (
            "aes-gcm-16", "null", "transport", False)
        conn = wait_up(vpn.client, vpn.cli, vpn.client_tun)
        assert conn.peer == POOL_LOCAL
        assert ping(vpn.cli, POOL_LOCAL, 5) == 5
        sessions = wait_for(lambda: [s for s in vpn.server.sessions() if s.get("address")],
                            10, what="the server's session")
        assert len(sessions) == 1
        assert sessions[0]["user"] == ALICE.name
        assert sessions[0]["address"] == conn.address
        assert sessions[0]["ipsec"] == "aes-gcm-16 transport"
        status = ipsec_status(vpn.server)
        assert len(status["sas"]) == 1
        sa = status["sas"][0]
        assert (sa["enc"], sa["auth"], sa["mode"], sa["udp_encap"]) == (
            "aes-gcm-16", "null", "transport", False)
        assert sa["packets_in"] > 0 and sa["packets_out"] > 0
        esp = status["esp"]
        assert esp["esp_in"] > 0 and esp["esp_out"] > 0
        assert esp["dropped"] == esp["unknown_spi"] == esp["plain_l2tp_dropped"] == 0
        log = vpn.server.log_text()
        assert f"PPP user 'alice' over IKE identity {CLIENT_IP}" in log
        vpn.client.stop()
        wait_for(lambda: vpn.server.sessions() == [], 15, what="the session freed")
    assert vpn.client.returncode == 0, vpn.client.log_text()
    assert_no_traceback(vpn.server.log_text())
    assert_no_traceback(vpn.client.log_text())
    assert "KEY LOG ENABLED" in vpn.server.log_text()
    keys = vpn.keylog.read_text()
    assert "ikev1_decryption_table:" in keys and "esp_sa:" in keys
    # The logs carry no key: the PSK never appears, nor any key of the key log.
    for secret in [PSK, *re.findall(r'"0x([0-9a-f]{16,})"', keys)]:
        assert secret not in vpn.server.log_text()
        assert secret not in vpn.client.log_text()

    pcap = cap.path
    # Without keys: ISAKMP and ESP on the wire, no L2TP and no PPP at all.
    assert plain_fields(pcap, ["frame.number"], "isakmp")
    assert len(plain_fields(pcap, ["frame.number"], "esp")) >= 10
    assert plain_fields(pcap, ["frame.number"], "l2tp || ppp || udp.port == 1701") == []
    # With the key log: every L2TP message of both sides is readable and clean.
    assert {SCCRQ, SCCCN, ICRQ, ICCN} <= l2tp_types(pcap, vpn.keylog, CLIENT_IP)
    assert {SCCRP, ICRP} <= l2tp_types(pcap, vpn.keylog, SERVER_IP)
    l2tp_frames = keyed_fields(pcap, vpn.keylog, ["frame.number"], "l2tp")
    esp_frames = keyed_fields(pcap, vpn.keylog, ["frame.number"], "esp")
    assert len(l2tp_frames) == len(esp_frames)  # every ESP packet holds L2TP
    replies = keyed_fields(pcap, vpn.keylog, ["frame.number"],
                           f"ip.src == {SERVER_IP} && ppp && icmp.type == 0")
    assert len(replies) >= 5
    assert keyed_problems(pcap, vpn.keylog, src=SERVER_IP) == []
    assert keyed_problems(pcap, vpn.keylog, src=CLIENT_IP) == []
    # IKE itself decrypts: Quick Mode's hash payload shows only with the key.
    quick_hash = "isakmp.exchangetype == 32 && isakmp.typepayload == 8"
    assert len(keyed_fields(pcap, vpn.keylog, ["frame.number"], quick_hash)) == 3
    assert plain_fields(pcap, ["frame.number"], quick_hash) == []


def test_wrong_psk_is_refused_on_both_sides(make_vpn: MakeVpn) -> None:
    vpn = make_vpn(client_psk="not-the-pre-shared-key")
    vpn.server.start()
    vpn.client.start(wait_socket=False)  # it may give up before its socket answers
    # The responder finds HASH_I wrong in Main Mode message 5, says why, tells the client.
    wait_for(lambda: "pre-shared key mismatch" in vpn.server.log_text(), 20,
             what="the server's pre-shared key mismatch line")
    assert re.search(r"IKE peer 198\.18\.0\.2:500: pre-shared key mismatch",
                     vpn.server.log_text())
    # The client names the reason and gives up: a wrong PSK is not worth retrying.
    wait_for(lambda: vpn.client.returncode is not None, 30, what="the client to give up")
    client_log = vpn.client.log_text()
    assert vpn.client.returncode != 0, client_log
    assert re.search(r"IKE with 198\.18\.0\.1 failed: .*pre-shared key", client_log), client_log
    assert "IPsec up:" not in client_log and "connected:" not in client_log
    status = ipsec_status(vpn.server)
    assert status["sas"] == []
    assert status["ike"]["auth_failed"] >= 1
    assert status["ike"]["child_sas"] == 0 and status["ike"]["ike_sas"] == 0
    assert status["esp"]["esp_in"] == 0
    assert vpn.server.sessions() == [] and vpn.server.tunnels() == []
    assert "esp_sa:" not in (vpn.keylog.read_text() if vpn.keylog.exists() else "")
    for log in (vpn.server.log_text(), client_log):
        assert "not-the-pre-shared-key" not in log and PSK not in log
        assert_no_traceback(log)


def test_plain_l2tp_is_dropped_when_ipsec_is_required(make_vpn: MakeVpn) -> None:
    vpn = make_vpn(client_psk=None, client={"reconnect": False, "retransmit_initial": 0.5,
                                            "retransmit_cap": 1, "max_retries": 3})
    vpn.server.start()
    vpn.client.start()
    wait_for(lambda: esp_stats(vpn.server)["plain_l2tp_dropped"] > 0, 20,
             what="plain L2TP counted as dropped")
    wait_for(lambda: vpn.client.returncode is not None, 40, what="the client to give up")
    assert vpn.client.returncode != 0
    assert "connected:" not in vpn.client.log_text()
    assert vpn.server.tunnels() == [] and vpn.server.sessions() == []
    stats = esp_stats(vpn.server)
    assert stats["plain_l2tp_dropped"] >= 2  # the SCCRQ and its retransmissions
    assert stats["esp_in"] == 0
    assert ipsec_status(vpn.server)["sas"] == []
    assert vpn.server.ctl("status")["tunnels"] == 0
    assert_no_traceback(vpn.server.log_text())


REPLAY_SCRIPT = """
import socket, sys
packet = bytes.fromhex(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for _ in range(int(sys.argv[2])):
    s.sendto(packet, (sys.argv[3], 0))
"""


def esp_packets_from(pcap: Path, src: str) -> list[bytes]:
    """The IPv4 packets (header on) carrying raw ESP from `src` in an Ethernet capture."""
    data = pcap.read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    assert magic == 0xA1B2C3D4, "expected a little-endian microsecond pcap"
    assert struct.unpack_from("<I", data, 20)[0] == 1, "expected an Ethernet capture"
    out, at = [], 24
    source = socket.inet_aton(src)
    while at + 16 <= len(data):
        incl = struct.unpack_from("<I", data, at + 8)[0]
        frame = data[at + 16:at + 16 + incl]
        at += 16 + incl
        ip = frame[14:]
        if frame[12:14] == b"\x08\x00" and len(ip) > 28 and ip[9] == IPPROTO_ESP \
                and ip[12:16] == source:
            out.append(ip[:struct.unpack_from("!H", ip, 2)[0]])
    return out


def test_replayed_esp_packet_is_dropped(make_vpn: MakeVpn, tmp_path: Path) -> None:
    vpn = make_vpn()
    vpn.server.start()
    vpn.client.start()
    wait_up(vpn.client, vpn.cli, vpn.client_tun)
    with Capture(vpn.cli, tmp_path / "esp.pcap", iface=_client_if(vpn), bpf="esp") as cap:
        assert ping(vpn.cli, POOL_LOCAL, 3) == 3
    packets = esp_packets_from(cap.path, CLIENT_IP)
    assert packets, "no ESP packet from the client captured"
    before = esp_stats(vpn.server)
    replays = 5
    vpn.cli.run([sys.executable, "-c", REPLAY_SCRIPT, packets[0].hex(), str(replays),
                 SERVER_IP])
    wait_for(lambda: esp_stats(vpn.server)["dropped"] >= before["dropped"] + replays, 10,
             what="the replayed ESP packets counted as dropped")
    after = esp_stats(vpn.server)
    assert after["dropped"] == before["dropped"] + replays
    assert after["esp_in"] == before["esp_in"] + replays
    assert after["unknown_spi"] == before["unknown_spi"]
    # Traffic still flows through the same SA.
    assert ping(vpn.cli, POOL_LOCAL, 3) == 3
    assert esp_stats(vpn.server)["dropped"] == after["dropped"]
    assert len(ipsec_status(vpn.server)["sas"]) == 1
    assert_no_traceback(vpn.server.log_text())


def _client_if(vpn: Vpn) -> str:
    """The client's end of the veth (Topology names the pair ...a / ...b)."""
    return vpn.srv_if[:-1] + "b"


FLOOD_SCRIPT = """
import os, socket, sys, time
from scapy.layers.inet import IP, UDP
from scapy.layers.isakmp import (ISAKMP, ISAKMP_payload_SA, ISAKMP_payload_Proposal,
                                 ISAKMP_payload_Transform)
src, dst, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
transform = ISAKMP_payload_Transform(transforms=[
    ("Encryption", "AES-CBC"), ("KeyLength", 128), ("Hash", "SHA2-256"),
    ("GroupDesc", "2048MODPgr"), ("Authentication", "PSK"), ("LifeType", "Seconds"),
    ("LifeDuration", 28800)])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(count):
    msg = ISAKMP(init_cookie=os.urandom(8), next_payload=1, exch_type=2) / \\
        ISAKMP_payload_SA(prop=ISAKMP_payload_Proposal(trans_nb=1, trans=transform))
    s.sendto(bytes(IP(src=src, dst=dst) / UDP(sport=1024 + i, dport=500) / msg), (dst, 0))
    if i % 100 == 99:
        time.sleep(0.01)
print("sent", count)
"""


def test_ike_main_mode_flood_does_not_stop_traffic(make_vpn: MakeVpn, topology: Topology,
                                                   tmp_path: Path) -> None:
    vpn = make_vpn()
    flood = topology.host("flood")
    topology.link(vpn.srv, f"{FLOOD_GW}/24", flood, f"{FLOOD_IP}/24")
    flood.run(["ip", "route", "add", "198.18.0.0/24", "via", FLOOD_GW])
    vpn.server.start()
    vpn.client.start()
    wait_up(vpn.client, vpn.cli, vpn.client_tun)
    assert ping(vpn.cli, POOL_LOCAL, 3) == 3
    pinger = vpn.cli.popen(["ping", "-4", "-n", "-c", "40", "-i", "0.2", "-W", "2", POOL_LOCAL],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(1)
    res = flood.run([sys.executable, "-c", FLOOD_SCRIPT, FLOOD_IP, SERVER_IP, "2000"],
                    timeout=120)
    assert "sent 2000" in res.stdout, res.stderr
    out, _ = pinger.communicate(timeout=60)
    m = re.search(rb"(\d+) packets transmitted, (\d+) received", out)
    assert m is not None, out
    assert int(m.group(1)) == 40 and int(m.group(2)) >= 38, out.decode()
    ike = ike_stats(vpn.server)
    assert ike["received"] >= 1000  # the flood reached the IKE endpoint
    assert ike["half_open_refused"] + ike["sent"] >= 1000
    # The established client is untouched: one SA, one session, still pinging.
    assert len(ipsec_status(vpn.server)["sas"]) == 1
    assert len(vpn.server.sessions()) == 1
    assert ping(vpn.cli, POOL_LOCAL, 3) == 3
    assert vpn.client.returncode is None
    assert_no_traceback(vpn.server.log_text())
