"""Our client against our server with PPP: auth methods, addresses, DNS, pings, iperf3.

One server namespace and one client namespace joined by a veth pair; the client makes a
TUN with its IPCP address and a route to the pool. Every run is captured on the server's
veth and must dissect cleanly in tshark.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.integration.ppp_env import (
    CLIENT_IP,
    DNS,
    POOL_LOCAL,
    POOL_NET,
    SERVER_IP,
    Connected,
    User,
    addresses,
    client_toml,
    count_frames,
    iperf3,
    ping,
    ppp_protocols,
    private_resolv_conf,
    routes,
    server_toml,
    slim_pcap,
    tun_devices,
    tun_name,
    wait_connected,
    wait_log,
    whole_capture_problems,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

METHODS = ("pap", "chap", "mschapv2")
ALICE = User("alice", "alice-password")
FIXED = User("fixed", "fixed-password", address="198.18.100.5")
USERS = (ALICE, FIXED)
RESOLV_BEFORE = "nameserver 198.18.0.99\n"

# PPP numbers as tshark shows them (RFC 1334, RFC 1994, RFC 2759).
PAP_PROTOCOL = "0xc023"
CHAP_PROTOCOL = "0xc223"
CHAP_MD5 = "5"
CHAP_MSV2 = "129"  # 0x81
PAP_NAK = "3"
CHAP_FAILURE = "4"
LCP_CONF_ACK = 2
CDN = 14
EXIT_REFUSED = 3  # `pyl2tp client`: the server refused us (src/pyl2tp/client.py)
CDN_GENERAL_ERROR = "2"  # RFC 2661 4.4.2; ppp/link.py: authentication failed


@dataclass
class Vpn:
    srv: Netns
    cli: Netns
    srv_if: str
    server: ProductProcess
    client: ProductProcess
    client_tun: str
    resolv: Path


class MakeVpn(Protocol):
    def __call__(self, user: str, password: str, auth: str, **client: object) -> Vpn: ...


@pytest.fixture
def make_vpn(topology: Topology, tmp_path: Path) -> Iterator[MakeVpn]:
    """Builds the two hosts and the configs; the test starts the processes.

    The client gets `dns = true` and a private /etc/resolv.conf to write the servers to.
    """
    require_tools("ping", "tcpdump", "tshark")
    with contextlib.ExitStack() as stack:

        def make(user: str, password: str, auth: str, **client: object) -> Vpn:
            srv = topology.host("srv")
            cli = topology.host("cli")
            srv_if, _ = topology.link(srv, f"{SERVER_IP}/24", cli, f"{CLIENT_IP}/24")
            ctun = tun_name("pc")
            server = ProductProcess(
                srv, "server", server_toml(tmp_path, USERS, tun=tun_name("ps")), tmp_path
            )
            config = client_toml(tmp_path, user, password, auth=auth, tun=ctun, dns=True,
                                 extra=client)
            proc = ProductProcess(cli, "client", config, tmp_path)
            resolv = stack.enter_context(private_resolv_conf(cli, RESOLV_BEFORE))
            return Vpn(srv, cli, srv_if, server, proc, ctun, resolv)

        yield make


def wait_up(vpn: Vpn, timeout: float = 40) -> Connected:
    """Wait for the client's `connected:` line, its TUN address and its pool route."""
    conn = wait_connected(vpn.client, timeout)
    wait_for(lambda: addresses(vpn.cli, vpn.client_tun) == [conn.address], 10,
             what=f"{conn.address} on the client's TUN {vpn.client_tun}")
    wait_for(lambda: any(r.get("dst") == POOL_NET and r.get("dev") == vpn.client_tun
                         for r in routes(vpn.cli)), 10, what=f"a route to {POOL_NET}")
    return conn


def in_use(server: ProductProcess) -> int:
    value: int = server.ctl("status")["ppp"]["pool_in_use"]
    return value


def addressed(server: ProductProcess) -> list[dict[str, Any]]:
    return [s for s in server.sessions() if s.get("address")]


def check_clean_capture(pcap: Path) -> None:
    assert tshark_problems(pcap, src=SERVER_IP) == []
    assert tshark_problems(pcap, src=CLIENT_IP) == []
    assert count_frames(pcap, "ppp && _ws.malformed") == 0


@pytest.mark.parametrize("method", METHODS)
def test_session_up_with_each_auth_method(make_vpn: MakeVpn, tmp_path: Path,
                                          method: str) -> None:
    vpn = make_vpn(ALICE.name, ALICE.password, method)
    with Capture(vpn.srv, tmp_path / "run.pcap", iface=vpn.srv_if, bpf="udp port 1701") as cap:
        vpn.server.start()
        vpn.client.start()
        conn = wait_up(vpn)
        sessions = wait_for(lambda: addressed(vpn.server), 10, what="the server's session")
        assert len(sessions) == 1
        assert sessions[0]["user"] == ALICE.name
        assert sessions[0]["address"] == conn.address
        assert sessions[0]["state"] == "established"
        assert conn.peer == POOL_LOCAL
        assert conn.dns == [DNS]  # the server's [ppp] dns, as the client logged it
        assert f"nameserver {DNS}" in vpn.resolv.read_text()
        assert f"authentication by {method}" in vpn.server.log_text()
        assert in_use(vpn.server) == 1
        assert ping(vpn.cli, POOL_LOCAL, 3) == 3
        vpn.client.stop()
        wait_for(lambda: vpn.server.sessions() == [], 15, what="the session freed")
        assert in_use(vpn.server) == 0
    assert vpn.client.returncode == 0, vpn.client.log_text()
    assert vpn.resolv.read_text() == RESOLV_BEFORE  # the client put the original back
    assert_no_traceback(vpn.server.log_text())
    assert_no_traceback(vpn.client.log_text())

    pcap = cap.path
    check_clean_capture(pcap)
    protocols = ppp_protocols(pcap)
    assert {"lcp", "ipcp", "ip"} <= protocols
    assert ("pap" if method == "pap" else "chap") in protocols
    # The LCP Configure-Ack the client sent names the method agreed on.
    acks = tshark_fields(
        pcap, ["lcp.opt.auth_protocol", "lcp.opt.algorithm"],
        f"ip.src == {CLIENT_IP} && lcp && ppp.code == {LCP_CONF_ACK} && lcp.opt.auth_protocol",
    )
    expected = {"pap": [PAP_PROTOCOL, ""], "chap": [CHAP_PROTOCOL, CHAP_MD5],
                "mschapv2": [CHAP_PROTOCOL, CHAP_MSV2]}[method]
    assert acks and all(row == expected for row in acks), acks
    replies = count_frames(pcap, f"ppp && ip.src == {SERVER_IP} && icmp.type == 0")
    assert replies >= 3


def test_user_with_fixed_address_gets_it(make_vpn: MakeVpn, tmp_path: Path) -> None:
    vpn = make_vpn(FIXED.name, FIXED.password, "mschapv2")
    with Capture(vpn.srv, tmp_path / "run.pcap", iface=vpn.srv_if, bpf="udp port 1701") as cap:
        vpn.server.start()
        vpn.client.start()
        conn = wait_up(vpn)
        assert conn.address == FIXED.address
        sessions = wait_for(lambda: addressed(vpn.server), 10, what="the server's session")
        assert [(s["user"], s["address"]) for s in sessions] == [(FIXED.name, FIXED.address)]
        assert addresses(vpn.cli, vpn.client_tun) == [FIXED.address]
        assert ping(vpn.cli, POOL_LOCAL, 3) == 3
        vpn.client.stop()
        wait_for(lambda: vpn.server.sessions() == [], 15, what="the session freed")
    check_clean_capture(cap.path)
    assert_no_traceback(vpn.server.log_text())


@pytest.mark.parametrize("method", METHODS)
def test_wrong_password_is_refused(make_vpn: MakeVpn, tmp_path: Path, method: str) -> None:
    # The client may give up (exit 3) or retry; a long reconnect delay keeps a second
    # attempt out of the assertions below.
    vpn = make_vpn(
        ALICE.name, "not-the-password", method, reconnect_initial=60, reconnect_cap=60
    )
    with Capture(vpn.srv, tmp_path / "run.pcap", iface=vpn.srv_if, bpf="udp port 1701") as cap:
        vpn.server.start()
        vpn.client.start(wait_socket=False)
        wait_log(vpn.server, "authentication failed", 40)
        wait_for(lambda: vpn.server.sessions() == [], 15, what="the session cleared")
        assert in_use(vpn.server) == 0
        assert tun_devices(vpn.cli) == []  # no TUN, no address
        assert "connected:" not in vpn.client.log_text()
        if vpn.client.returncode is not None:
            assert vpn.client.returncode == EXIT_REFUSED, vpn.client.log_text()
            assert "refused" in vpn.client.log_text()
    log = vpn.server.log_text()
    assert f"authentication by {method}" in log
    assert "user 'alice' has" not in log
    assert "not-the-password" not in log and "not-the-password" not in vpn.client.log_text()
    assert_no_traceback(log)
    assert_no_traceback(vpn.client.log_text())

    pcap = cap.path
    check_clean_capture(pcap)
    # The server said no in the auth protocol; the call was cleared with result code 2 (both
    # ends terminate LCP at once, so either may send the CDN first).
    if method == "pap":
        refusal = f"ip.src == {SERVER_IP} && pap.code == {PAP_NAK}"
    else:
        refusal = f"ip.src == {SERVER_IP} && chap.code == {CHAP_FAILURE}"
    assert count_frames(pcap, refusal) >= 1
    cdns = tshark_fields(pcap, ["ip.src", "l2tp.result_code"], f"l2tp.avp.message_type == {CDN}")
    assert cdns and all(result == CDN_GENERAL_ERROR for _, result in cdns), cdns
    assert "ipcp" not in ppp_protocols(pcap)


@pytest.mark.timeout(240)
def test_iperf3_through_the_tunnel(make_vpn: MakeVpn, tmp_path: Path,
                                   record_property: Any) -> None:
    require_tools("iperf3", "ss")
    vpn = make_vpn(ALICE.name, ALICE.password, "mschapv2")
    with Capture(vpn.srv, tmp_path / "run.pcap", iface=vpn.srv_if, bpf="udp port 1701") as cap:
        vpn.server.start()
        vpn.client.start()
        wait_up(vpn)
        assert ping(vpn.cli, POOL_LOCAL, 3) == 3
        result = iperf3(vpn.srv, vpn.cli, POOL_LOCAL, 10, tmp_path)
        sessions = vpn.server.sessions()
        vpn.client.stop()
        wait_for(lambda: vpn.server.sessions() == [], 15, what="the session freed")
    received = result["end"]["sum_received"]
    sent = result["end"]["sum_sent"]
    mbps = received["bits_per_second"] / 1e6
    print(f"\niperf3 TCP client -> server through the tunnel: {mbps:.1f} Mbit/s received "
          f"({received['bytes']} bytes in {received['seconds']:.1f} s), "
          f"{sent.get('retransmits', 0)} retransmits")
    record_property("iperf3_mbit_s", round(mbps, 1))
    assert received["bytes"] > 0 and mbps > 0
    assert received["seconds"] >= 9
    assert sessions[0]["rx_bytes"] >= received["bytes"]  # the payload went through the session
    assert_no_traceback(vpn.server.log_text())
    assert_no_traceback(vpn.client.log_text())

    # The bulk transfer's TCP losses are not faults of ours: check the whole capture with
    # TCP analysis off, and everything but the transfer with tshark_problems.
    pcap = cap.path
    assert whole_capture_problems(pcap) == []
    ip_frames = count_frames(pcap, f"ppp && tcp.port == 5201 && ip.src == {CLIENT_IP}")
    assert ip_frames > 1000, ip_frames  # the transfer is in the capture
    check_clean_capture(slim_pcap(pcap, tmp_path / "slim.pcap"))
    pcap.unlink()  # some 400 MB; a failing run keeps it for a look
