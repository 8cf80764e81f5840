"""The stock Linux L2TP/IPsec client (strongSwan + xl2tpd + pppd, kernel ESP) -> our server.

The guest is the qemu VM of tests/harness/linuxvm: charon (IKEv1 Main Mode, then Quick
Mode for a transport-mode SA on udp/1701, installed into the kernel's xfrm), xl2tpd in
kernel mode and pppd with MS-CHAPv2, as tests/harness/linuxvm/guest.py writes them. Our
server runs in a test namespace with `[ipsec] enabled` and `require` (L2TP only through an
ESP SA) and a key log.

Checked: the guest's `ipsec statusall` shows the IKE SA ESTABLISHED and the child SA
INSTALLED, TRANSPORT; ppp0 gets an address from our pool; pings go both ways over it
(guest -> pool.local through ppp0, server namespace -> the guest's PPP address); `ctl
sessions` names the user and the ESP transform; the capture holds ESP and no cleartext
L2TP, and with the server's key log tshark decrypts IKE and ESP with no problem.
Variants: PSK with raw ESP (protocol 50); PSK with NAT-T forced by charon's
`forceencaps=yes` (ESP in UDP 4500, RFC 3948); PSK behind a real NAT (the VM behind an
nftables masquerade in a router namespace: NAT detection, RFC 3947, then ESP in UDP 4500,
the capture on the server's side); RSA certificates from a test CA instead of the PSK
(RFC 2409 5.1, identities the certificates' DNs).
Then the VM and our own client (`pyl2tp client`, PSK, in a namespace of its own) behind the
same masquerade at once: two ISAKMP SAs, two ESP SAs in UDP 4500 and two L2TP tunnels from
one address, told apart by the NAT-mapped ports; both ping both ways, both send their
Deletes at the end.
A byte-identical IKE retransmission is left out of the tshark check (see _retransmissions).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pyl2tp.keylog import tshark_options
from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.linuxvm import LinuxVM, VMImage, VMResult, require_image
from tests.harness.linuxvm.guest import GuestCert, guest_cert, guest_cmd, guest_files
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.pki import make_cert, write_ca, write_pair
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.integration.ipsec_env import ipsec_client_toml, wait_ipsec_up, wait_up
from tests.integration.ppp_env import ping, tun_name

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]

HOST_IP = "198.18.1.1"
GUEST_ADDR = "198.18.1.2"
GUEST_IP = f"{GUEST_ADDR}/24"
POOL_LOCAL = "198.18.100.1"
POOL_FIRST, POOL_LAST = "198.18.100.10", "198.18.100.50"
DNS = "198.18.0.53"
USER, PASSWORD = "vmuser", "vmpass-1"
PSK = "vmpsk"
# Behind the NAT: the VM's TAP is in a router namespace that masquerades onto this link.
NAT_OUTSIDE = "198.18.2.1"
NAT_SERVER_IP = "198.18.2.2"
# The certificate variant: CNs of the server's and the guest's certificates.
SERVER_CN, GUEST_CN = "vpn.test", "linuxvm-client"
CONNECT_WAIT = 180  # seconds: boot + IKE + L2TP + PPP under TCG (~10x slower than the host)


def _toml(value: object) -> str:
    return json.dumps(value)  # JSON strings and lists are valid TOML


@dataclass(frozen=True, slots=True)
class ServerCert:
    """Paths of the server's certificate, key and trusted CA (PEM)."""

    certificate: str
    private_key: str
    ca: str


def _server_toml(work: Path, listen: str, *, cert: ServerCert | None = None,
                 users: Sequence[tuple[str, str]] = ((USER, PASSWORD),)) -> str:
    """Our LNS with IPsec required; PSK, or with `cert` RSA signatures only (no psk)."""
    auth = (f"psk = {_toml(PSK)}\n" if cert is None else
            f"certificate = {_toml(cert.certificate)}\nprivate_key = "
            f"{_toml(cert.private_key)}\nca = {_toml(cert.ca)}\n")
    accounts = "".join(f"\n[[users]]\nname = {_toml(name)}\npassword = {_toml(password)}\n"
                       for name, password in users)
    return f"""\
[server]
listen = [{_toml(listen)}]
hostname = "pyl2tp-lns"
control_socket = {_toml(str(work / "server.sock"))}
tun = "pyl2tp0"

[ipsec]
enabled = true
{auth}require = true

[ppp]
auth = ["mschapv2"]
dns = [{_toml(DNS)}]

[pool]
local = {_toml(POOL_LOCAL)}
range = {_toml(f"{POOL_FIRST}-{POOL_LAST}")}
{accounts}
[debug]
keylog = {_toml(str(work / "keylog.txt"))}
"""


CLIENT_CMD = guest_cmd(POOL_LOCAL, ipsec=True, hangup_wait=120)


@pytest.fixture(scope="module")
def image() -> VMImage:
    """The VM image, built once (~60 s) and cached; skip with the reason if impossible."""
    return require_image()


@contextlib.contextmanager
def _tshark_keys(keylog: Path, confdir: Path) -> Iterator[None]:
    """tshark (as the capture helpers run it) decrypts with the server's key log.

    The helpers take no `-o` options, so the same settings go into a private personal
    configuration directory (WIRESHARK_CONFIG_DIR): the `esp_sa` and
    `ikev1_decryption_table` UAT files and the ESP preferences.
    """
    opts = tshark_options(keylog)
    values = [opts[i + 1] for i in range(0, len(opts), 2)]
    tables: dict[str, list[str]] = {}
    prefs: list[str] = []
    for value in values:
        if value.startswith("uat:"):
            table, _, record = value.removeprefix("uat:").partition(":")
            tables.setdefault(table, []).append(record)
        else:
            name, _, setting = value.partition(":")
            prefs.append(f"{name}: {setting}")
    confdir.mkdir(parents=True, exist_ok=True)
    (confdir / "preferences").write_text("\n".join(prefs) + "\n")
    for table, records in tables.items():
        (confdir / table).write_text("\n".join(records) + "\n")
    old = os.environ.get("WIRESHARK_CONFIG_DIR")
    os.environ["WIRESHARK_CONFIG_DIR"] = str(confdir)
    try:
        yield
    finally:
        if old is None:
            del os.environ["WIRESHARK_CONFIG_DIR"]
        else:
            os.environ["WIRESHARK_CONFIG_DIR"] = old


def _ping_from(ns: Netns, address: str) -> str:
    res = ns.run(["ping", "-c", "3", "-W", "5", "-i", "0.5", address], check=False, timeout=30)
    return str(res.stdout) + str(res.stderr)


def _masquerade(topology: Topology, router: Netns) -> tuple[Netns, str]:
    """A server namespace behind `router`, which masquerades its inside onto the link.

    Returns the server namespace and its end of the link (where the capture runs).
    """
    lns = topology.host("lns")
    out_if, lns_if = topology.link(router, f"{NAT_OUTSIDE}/24", lns, f"{NAT_SERVER_IP}/24")
    router.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    router.run(["nft", "add table ip nat; add chain ip nat post { type nat hook postrouting "
                f"priority 100; }}; add rule ip nat post oifname {out_if} masquerade"])
    return lns, lns_if


def _server_cert(work: Path) -> tuple[ServerCert, GuestCert]:
    """A test CA, the server's certificate (CN=vpn.test) and the guest's, both from it."""
    work.mkdir(parents=True, exist_ok=True)
    ca = make_cert("pyl2tp vm test CA", None, ca=True)
    certificate, private_key = write_pair(work, "server", make_cert(SERVER_CN, ca, ca=False))
    server = ServerCert(certificate, private_key, write_ca(work, "ca", ca))
    return server, guest_cert(make_cert(GUEST_CN, ca, ca=False), ca, f"CN={SERVER_CN}")


def _guest_up(vm: LinuxVM, server: ProductProcess) -> str:
    """Wait for the guest's ppp0 and its ping of pool.local; the guest's PPP address."""
    up = vm.wait_guest_file("ppp-up", CONNECT_WAIT).split()
    assert up != ["ipsec-failed"], (
        f"IKE failed\n{vm.result().describe(200)}\n--- server ---\n"
        f"{server.log_text()[-4000:]}")
    assert len(up) == 3, (f"ppp0 did not come up: {up}\n{vm.result().describe()}\n"
                          f"--- server ---\n{server.log_text()[-4000:]}")
    address, peer, rc_ping = up
    assert peer == POOL_LOCAL
    assert ipaddress.IPv4Address(POOL_FIRST) <= ipaddress.IPv4Address(address) \
        <= ipaddress.IPv4Address(POOL_LAST)
    assert rc_ping == "0", vm.result().describe()
    return address


def _check_guest(result: VMResult, statusall: str, server_ip: str, address: str, *,
                 udp_encap: bool, cert: bool) -> None:
    """strongSwan's view (Main Mode done, transport SA installed) and the guest's log."""
    assert result.status == 0, result.describe()
    assert re.search(rf"vpn\[\d+\]: ESTABLISHED .*{re.escape(GUEST_ADDR)}.*"
                     rf"{re.escape(server_ip)}", statusall), statusall
    assert re.search(r"vpn\{\d+\}:\s+INSTALLED, TRANSPORT", statusall), statusall
    assert ("ESP in UDP SPIs" in statusall) == udp_encap, statusall
    assert re.search(r"AES_CBC_(128|256)/HMAC_SHA1_96", statusall), statusall
    if cert:
        # both ends authenticated by RSA signature over the certificates' DNs
        assert re.search(rf"ESTABLISHED .*\[CN={GUEST_CN}\].*\[CN={re.escape(SERVER_CN)}\]",
                         statusall), statusall
        assert "pre-shared key" not in statusall, statusall
        assert re.search(rf"remote: \[CN={re.escape(SERVER_CN)}\] uses public key "
                         "authentication", statusall), statusall
    else:
        assert "pre-shared key" in statusall, statusall
    out = result.output
    assert "Using l2tp kernel support" in out, result.describe()
    assert "CHAP authentication succeeded" in out, result.describe()
    assert f"local  IP address {address}" in out, result.describe()
    assert re.search(rf"^route-to-pool: {re.escape(POOL_LOCAL)} dev ppp0 ", out, re.M), out
    assert "3 packets transmitted, 3 received" in out, result.describe()
    assert "mode transport" in out, result.describe()  # ip xfrm state


def _check_wire(pcap: Path, keylog: Path, confdir: Path, server_ip: str, seen_guest: str, *,
                udp_encap: bool, pings: int, nat_ports: Collection[str] = ()) -> None:
    """The capture: ESP only (raw, or in UDP 4500), nothing of L2TP in the clear; with the
    server's keys tshark decrypts IKE and ESP and finds nothing wrong in what we sent.

    `pings`: ICMP echo requests plus replies expected inside ESP; `nat_ports`: the NAT's
    outside ports the server's ESP in UDP goes to besides 4500.
    """
    esp_rows = tshark_fields(pcap, ["ip.src", "ip.dst", "udp.dstport", "esp.spi"], "esp")
    directions = {(src, dst) for src, dst, _port, _spi in esp_rows}
    assert directions == {(seen_guest, server_ip), (server_ip, seen_guest)}, esp_rows[:10]
    ports = {port for _src, _dst, port, _spi in esp_rows}
    assert ports == ({"4500", *nat_ports} if udp_encap else {""}), ports
    assert tshark_fields(pcap, ["frame.number"], "l2tp || udp.port == 1701") == []
    isakmp_ports = {p for (p,) in tshark_fields(pcap, ["udp.dstport"], "isakmp")}
    assert "500" in isakmp_ports, isakmp_ports

    text = keylog.read_text()
    assert "ikev1_decryption_table:" in text and "esp_sa:" in text
    resent = _retransmissions(pcap)  # without the keys
    with _tshark_keys(keylog, confdir):
        inner = tshark_fields(pcap, ["ip.src", "esp.icv_good", "l2tp.tunnel"], "l2tp")
        # transport mode: ip.src is the outer header, then any IP carried in PPP
        outer = {src.split(",")[0] for src, _icv, _t in inner}
        assert outer == {seen_guest, server_ip}, inner[:10]
        assert all(icv.split(",")[0] == "1" for _src, icv, _t in inner), inner[:10]
        chap = tshark_fields(pcap, ["chap.code"], "chap")
        assert {"1", "2", "3"} <= {code for (code,) in chap}, chap  # MS-CHAPv2 in ESP
        icmp = tshark_fields(pcap, ["icmp.type"], "icmp && esp")
        assert len(icmp) >= pings, icmp
        # Quick Mode decrypted (RFC 2409 5.5): SA, nonce and the udp/1701 IDs both ways
        qm = tshark_fields(pcap, ["ip.src", "isakmp.typepayload"], "isakmp.exchangetype == 32")
        full = {src for src, kinds in qm if {"1", "5", "10"} <= set(kinds.split(","))}
        assert full == {seen_guest, server_ip}, qm
        problems = [p for p in tshark_problems(pcap, src=server_ip)
                    if int(p.split(":")[0].removeprefix("frame ")) not in resent]
        assert problems == [], problems


@pytest.mark.parametrize("mode", ["esp", "forceencaps", "masquerade", "cert"],
                         ids=["esp", "natt-forceencaps", "natt-masquerade", "cert"])
def test_linux_l2tp_ipsec_client_to_our_server(image: VMImage, topology: Topology,
                                               tmp_path: Path, mode: str) -> None:
    """strongSwan + xl2tpd + pppd in the VM: IKEv1, transport ESP, L2TP, PPP, pings.

    esp: PSK, ESP as IP protocol 50; forceencaps: PSK, charon floats to UDP 4500 without a
    NAT; masquerade: PSK, the VM sits behind an nftables masquerade, both sides detect the
    NAT (RFC 3947) and ESP goes in UDP 4500 (RFC 3948); cert: as esp, but both ends prove
    themselves with RSA signatures and certificates from one test CA (no PSK configured).
    """
    nat = mode == "masquerade"
    udp_encap = mode in ("forceencaps", "masquerade")
    server_ip = NAT_SERVER_IP if nat else HOST_IP
    seen_guest = NAT_OUTSIDE if nat else GUEST_ADDR  # the guest's address as the server sees it
    first = topology.host("nat" if nat else "lns")
    work = tmp_path / "w"
    pcap = tmp_path / "wire.pcap"
    server_cert, credentials = _server_cert(tmp_path / "pki") if mode == "cert" else (None, None)
    files = guest_files(server_ip, USER, PASSWORD, psk=None if credentials else PSK,
                        cert=credentials, forceencaps=mode == "forceencaps")
    with LinuxVM(first, tmp_path / "vm", guest_ip=GUEST_IP, host_ip=HOST_IP, files=files,
                 cmd=CLIENT_CMD, timeout=420, image=image) as vm:
        tap = vm.attach()  # the server binds its address before the VM boots
        ns, wire = _masquerade(topology, first) if nat else (first, tap)
        server = ProductProcess(ns, "server", _server_toml(work, server_ip, cert=server_cert),
                                work)
        capture = Capture(ns, pcap, iface=wire, bpf="udp or ip proto 50")
        try:
            capture.start()
            server.start()
            vm.start()
            address = _guest_up(vm, server)
            # the other way: the server namespace pings the guest's PPP address
            pong = _ping_from(ns, address)
            assert re.search(r"3 packets transmitted, 3 received", pong), pong

            statusall = vm.guest_file("statusall.txt") or ""
            sessions = server.sessions()
            status = server.ctl("status")
            vm.flag("hangup")
            result = vm.wait()
            wait_for(lambda: server.sessions() == [], 30, interval=0.5,
                     what="the session to go after the guest's hang-up")
        finally:
            capture.stop()
            server.stop()
    server_log = server.log_text()
    _check_guest(result, statusall, server_ip, address, udp_encap=udp_encap,
                 cert=credentials is not None)

    # our server's view
    assert [(s["user"], s["address"]) for s in sessions] == [(USER, address)], sessions
    assert str(sessions[0]["peer"]).startswith(seen_guest + ":"), sessions
    ipsec_desc = sessions[0]["ipsec"]
    assert ipsec_desc is not None and "transport" in ipsec_desc, sessions
    assert ipsec_desc.startswith("aes-cbc/hmac-sha1-96"), sessions
    assert ("udp-encap" in ipsec_desc) == udp_encap, sessions
    esp_counts = status["ipsec"]["esp"]
    assert esp_counts["esp_in"] > 0 and esp_counts["esp_out"] > 0, status
    assert esp_counts["plain_l2tp_dropped"] == 0, status
    # The guest's IKE identity: with a PSK its own address (also behind the NAT), with a
    # certificate the certificate's DN; logged with the PPP user (issue 4, policy).
    identity = f"CN={GUEST_CN}" if credentials else GUEST_ADDR
    assert f"PPP user '{USER}' over IKE identity {identity}" in server_log, server_log[-3000:]
    if credentials:
        assert re.search(rf"ISAKMP SA established \([^)]*id CN={GUEST_CN}", server_log), \
            server_log[-3000:]
        assert status["ipsec"]["ike"]["auth_failed"] == 0, status
    assert_no_traceback(server_log)

    # both pings, 3 requests + 3 replies each, inside ESP
    _check_wire(pcap, work / "keylog.txt", tmp_path / "wsconf", server_ip, seen_guest,
                udp_encap=udp_encap, pings=12)

def _retransmissions(pcap: Path) -> set[int]:
    """Frames repeating an earlier IKE datagram byte for byte (RFC 2408 5: a retransmission).

    tshark 4.0 chains the IKEv1 CBC IV from the previous frame of the exchange, so it
    cannot decrypt an identical resend and marks it malformed: a dissector limit.
    """
    seen: set[str] = set()
    resent: set[int] = set()
    for number, payload in tshark_fields(pcap, ["frame.number", "udp.payload"], "isakmp"):
        if payload in seen:
            resent.add(int(number))
        seen.add(payload)
    return resent


# -- the VM client and our own client behind the same NAT address at once ---------------------

OUR_USER, OUR_PASSWORD = "ouruser", "ourpass-1"
# Our client's host on its own inside link of the router namespace (the VM is on the TAP).
OUR_ROUTER_IP, OUR_CLIENT_ADDR = "198.18.3.1", "198.18.3.2"


def _our_client(topology: Topology, router: Netns, work: Path) -> tuple[Netns, ProductProcess,
                                                                        str]:
    """A namespace behind `router` with our client (PSK, MS-CHAPv2) for NAT_SERVER_IP.

    Returns the namespace, the (not yet started) client and the name of its TUN.
    """
    ns = topology.host("ours")
    topology.link(router, f"{OUR_ROUTER_IP}/24", ns, f"{OUR_CLIENT_ADDR}/24")
    ns.run(["ip", "route", "add", f"{NAT_SERVER_IP}/32", "via", OUR_ROUTER_IP])
    tun = tun_name("mxc")
    client = ProductProcess(
        ns, "client",
        ipsec_client_toml(work, OUR_USER, OUR_PASSWORD, psk=PSK, tun=tun, server=NAT_SERVER_IP,
                          extra={"reconnect_initial": 2, "reconnect_cap": 4}),
        work)
    return ns, client, tun


@pytest.mark.timeout(420)
def test_linux_client_and_our_client_behind_one_nat(image: VMImage, topology: Topology,
                                                    tmp_path: Path) -> None:
    """The VM's strongSwan client and our own client behind one nftables masquerade, at once.

    Our client starts when the guest is about to run `ipsec up`, so the two Main Modes
    overlap. Both see the NAT (RFC 3947) and float to UDP 4500; the masquerade gives them
    different outside ports, so the server holds two ISAKMP SAs, two ESP SAs and two L2TP
    tunnels from the one address (issue 4). Both pass traffic both ways, then hang up.
    """
    require_tools("nft", "ping", "tcpdump", "tshark")
    router = topology.host("nat")
    work = tmp_path / "w"
    pcap = tmp_path / "wire.pcap"
    files = guest_files(NAT_SERVER_IP, USER, PASSWORD, psk=PSK)
    users = ((USER, PASSWORD), (OUR_USER, OUR_PASSWORD))
    with LinuxVM(router, tmp_path / "vm", guest_ip=GUEST_IP, host_ip=HOST_IP, files=files,
                 cmd=CLIENT_CMD, timeout=300, image=image) as vm:
        vm.attach()
        lns, wire = _masquerade(topology, router)
        ours_ns, ours, tun = _our_client(topology, router, tmp_path / "ours")
        server = ProductProcess(lns, "server", _server_toml(work, NAT_SERVER_IP, users=users),
                                work)
        capture = Capture(lns, pcap, iface=wire, bpf="udp or ip proto 50")
        try:
            capture.start()
            server.start()
            vm.start()
            vm.wait_guest_file("ike-start", CONNECT_WAIT)
            ours.start()
            ours_up = wait_ipsec_up(ours, 60)
            conn = wait_up(ours, ours_ns, tun, 60)
            address = _guest_up(vm, server)
            # all four directions while both are up
            assert ping(ours_ns, POOL_LOCAL, 5) == 5, ours.log_text()[-3000:]
            pong = _ping_from(lns, address)
            assert re.search(r"3 packets transmitted, 3 received", pong), pong
            assert ping(lns, conn.address, 3) == 3

            statusall = vm.guest_file("statusall.txt") or ""
            sessions = server.sessions()
            status = server.ctl("status")
            vm.flag("hangup")
            ours.stop()
            result = vm.wait()
            wait_for(lambda: server.sessions() == [], 30, interval=0.5,
                     what="both sessions to go after the hang-ups")
            # both clients deleted their SAs (Informational Delete, RFC 2408 4.8)
            wait_for(lambda: server.ctl("status")["ipsec"]["sas"] == [], 15, interval=0.5,
                     what="both ESP SAs to go after the clients' Deletes")
        finally:
            capture.stop()
            ours.stop()
            server.stop()
    server_log = server.log_text()
    _check_guest(result, statusall, NAT_SERVER_IP, address, udp_encap=True, cert=False)
    assert ours_up.udp_encap and ours_up.mode == "transport", ours_up
    assert ours.returncode == 0, ours.log_text()[-3000:]
    assert_no_traceback(ours.log_text())
    assert_no_traceback(server_log)

    # the server's view: two sessions from the NAT's address, each on its own tunnel and SA
    by_user = {s["user"]: s for s in sessions}
    assert sorted(by_user) == sorted([USER, OUR_USER]), sessions
    assert by_user[USER]["address"] == address and by_user[OUR_USER]["address"] == conn.address
    assert address != conn.address
    assert len({s["tunnel_id"] for s in sessions}) == 2, sessions
    endpoints = {str(s["peer"]) for s in sessions}
    assert {e.rpartition(":")[0] for e in endpoints} == {NAT_OUTSIDE}, sessions
    assert len(endpoints) == 2, sessions  # the masquerade mapped the two 4500s apart
    for s in sessions:
        desc = s["ipsec"]
        assert desc is not None and desc.endswith("transport udp-encap"), sessions
    sas = status["ipsec"]["sas"]
    assert len(sas) == 2, sas
    assert {sa["peer"] for sa in sas} == endpoints, (sas, sessions)
    assert len({sa["spi_in"] for sa in sas}) == 2 and len({sa["spi_out"] for sa in sas}) == 2
    assert all(sa["udp_encap"] and sa["mode"] == "transport" for sa in sas), sas
    assert all(sa["packets_in"] > 0 and sa["packets_out"] > 0 for sa in sas), sas
    # with a PSK the IKE identity is each client's own address behind the NAT
    assert {sa["peer_id"] for sa in sas} == {GUEST_ADDR, OUR_CLIENT_ADDR}, sas
    esp_counts = status["ipsec"]["esp"]
    assert esp_counts["plain_l2tp_dropped"] == 0 and esp_counts["unknown_spi"] == 0, status
    assert esp_counts["dropped"] == 0, status
    for user, identity in ((USER, GUEST_ADDR), (OUR_USER, OUR_CLIENT_ADDR)):
        assert f"PPP user '{user}' over IKE identity {identity}" in server_log, \
            server_log[-3000:]
    for sa in sas:
        for what in ("child SA in", "ISAKMP SA"):
            assert re.search(rf"IKE peer {re.escape(sa['peer'])}: {what}.* deleted \(deleted "
                             r"by peer\)", server_log), server_log[-3000:]

    # guest: 3+3, server -> guest 3+3, ours: 5+5, server -> ours 3+3, all inside ESP
    _check_wire(pcap, work / "keylog.txt", tmp_path / "wsconf", NAT_SERVER_IP, NAT_OUTSIDE,
                udp_encap=True, pings=28,
                nat_ports={e.rpartition(":")[2] for e in endpoints})
