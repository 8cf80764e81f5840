"""Self-test of the Linux client VM, and our LNS against the stock Linux L2TP/PPP stack.

1. The VM boots a stock Debian kernel whose L2TP, PPP and ESP modules load, and reaches
   the test namespace over its TAP.
2. xl2tpd in kernel mode (l2tp_ppp) + pppd 2.4.9, with no IPsec, connect to our server:
   MS-CHAPv2 login (pppd checks our authenticator response), IPCP gives an address from
   the pool, and the guest pings the server's pool.local through ppp0; `ctl sessions`
   shows the user and that address; a hang-up from the guest removes the session.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path

import pytest

from tests.harness.linuxvm import ImageUnavailable, LinuxVM, VMImage, require_image
from tests.harness.linuxvm.build import apt_sources, find_mirrors, resolve_modules
from tests.harness.linuxvm.guest import guest_cmd, guest_files
from tests.harness.netns import Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback

pytestmark = [pytest.mark.vm, pytest.mark.timeout(600)]

HOST_IP = "198.18.1.1"
GUEST_IP = "198.18.1.2/24"
POOL_LOCAL = "198.18.100.1"
POOL_FIRST, POOL_LAST = "198.18.100.10", "198.18.100.50"
DNS = "198.18.0.53"
USER, PASSWORD = "vmuser", "vmpass"
CONNECT_WAIT = 150  # seconds: TCG is ~10x slower than the host for process start and PPP


@pytest.fixture(scope="module")
def image() -> VMImage:
    """The VM image, built once (~60 s) and cached; skip with the reason if impossible."""
    return require_image()


def test_build_helpers(tmp_path: Path) -> None:
    """Mirror discovery (both apt formats) and module dependency resolution."""
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# deb http://198.18.9.9/old bookworm main\n"
        "deb-src http://198.18.9.1/src bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://198.18.9.2/debian bookworm-updates main\n")
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://198.18.9.3/disabled\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb deb-src\n# a comment\nURIs: http://198.18.9.4/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://198.18.9.5/debian-security\nSuites: bookworm-security\n")
    assert apt_sources(apt)[0] == ("http://198.18.9.2/debian", ["bookworm-updates"])
    mirrors = find_mirrors("bookworm", apt)
    assert mirrors.main == "http://198.18.9.4/debian"
    assert mirrors.updates == "http://198.18.9.2/debian"
    assert mirrors.security == "http://198.18.9.5/debian-security"
    with pytest.raises(ImageUnavailable, match="trixie"):
        find_mirrors("trixie", apt)

    dep = ("kernel/net/l2tp/l2tp_ppp.ko: kernel/net/l2tp/l2tp_core.ko "
           "kernel/drivers/net/ppp/pppox.ko\nkernel/net/l2tp/l2tp_core.ko:\n"
           "kernel/drivers/net/ppp/pppox.ko:\nkernel/crypto/crypto-x.ko.xz:\n")
    files, missing = resolve_modules(dep, "kernel/crypto/aes.ko\n",
                                     ["l2tp-ppp", "aes", "crypto_x", "nope"])
    assert files == ["kernel/net/l2tp/l2tp_core.ko", "kernel/drivers/net/ppp/pppox.ko",
                     "kernel/net/l2tp/l2tp_ppp.ko", "kernel/crypto/crypto-x.ko.xz"]
    assert missing == ["nope"]


def test_boot_modules_and_ping(image: VMImage, topology: Topology, tmp_path: Path) -> None:
    """Boot; the kernel L2TP/PPP/ESP modules are loaded; the namespace answers a ping."""
    ns = topology.host("vm")
    cmd = """\
for m in l2tp_ppp l2tp_core l2tp_netlink ppp_generic pppox esp4 xfrm_user xfrm_algo af_key; do
    grep -q "^$m " /proc/modules && echo "module-loaded $m"
done
[ -c /dev/ppp ] && echo "dev-ppp present"
uname -r
ping -c 3 -W 3 198.18.1.1
"""
    with LinuxVM(ns, tmp_path / "vm", guest_ip=GUEST_IP, host_ip=HOST_IP, cmd=cmd,
                 timeout=120, image=image) as vm:
        result = vm.run()
    assert result.status == 0, result.describe()
    loaded = set(re.findall(r"^module-loaded (\S+)$", result.output, re.M))
    assert loaded == {"l2tp_ppp", "l2tp_core", "l2tp_netlink", "ppp_generic", "pppox", "esp4",
                      "xfrm_user", "xfrm_algo", "af_key"}, result.describe()
    assert "dev-ppp present" in result.output
    assert image.kernel_release in result.output
    assert re.search(r"3 packets transmitted, 3 received", result.output), result.describe()
    assert "PYL2TP-VM-READY" in result.console and "PYL2TP-VM-EXIT rc=0" in result.console
    # lsmod as the guest saw it after the command, collected by /init
    assert re.search(r"^l2tp_ppp\s", result.state, re.M), result.state
    assert not vm.running and vm.pid is not None


def _server_toml(work: Path) -> str:
    def toml(value: object) -> str:
        return json.dumps(value)  # JSON strings and lists are valid TOML

    return f"""\
[server]
listen = [{toml(HOST_IP)}]
hostname = "pyl2tp-lns"
control_socket = {toml(str(work / "server.sock"))}
tun = "pyl2tp0"

[ppp]
auth = ["mschapv2", "chap", "pap"]
dns = [{toml(DNS)}]

[pool]
local = {toml(POOL_LOCAL)}
range = {toml(f"{POOL_FIRST}-{POOL_LAST}")}

[[users]]
name = {toml(USER)}
password = {toml(PASSWORD)}
"""


def test_kernel_l2tp_client_to_our_server(image: VMImage, topology: Topology,
                                          tmp_path: Path) -> None:
    """xl2tpd (kernel L2TP) + pppd (MS-CHAPv2) in the VM get an address from our LNS."""
    ns = topology.host("lns")
    work = tmp_path / "w"
    # the classic Linux client without IPsec: xl2tpd LAC (kernel mode) + pppd, MS-CHAPv2 only
    files = guest_files(HOST_IP, USER, PASSWORD)
    cmd = guest_cmd(POOL_LOCAL, ipsec=False)
    with LinuxVM(ns, tmp_path / "vm", guest_ip=GUEST_IP, host_ip=HOST_IP,
                 files=files, cmd=cmd, timeout=300, image=image) as vm:
        vm.attach()  # the server binds the TAP's address before the VM boots
        server = ProductProcess(ns, "server", _server_toml(work), work)
        try:
            server.start()
            vm.start()
            up = vm.wait_guest_file("ppp-up", CONNECT_WAIT).split()
            assert len(up) == 3, f"ppp0 did not come up: {up}\n{vm.result().describe()}"
            address, peer, rc_ping = up
            assert peer == POOL_LOCAL
            assert ipaddress.IPv4Address(POOL_FIRST) <= ipaddress.IPv4Address(address) \
                <= ipaddress.IPv4Address(POOL_LAST)
            assert rc_ping == "0", vm.result().describe()

            sessions = server.sessions()
            assert [(s["user"], s["address"]) for s in sessions] == [(USER, address)], sessions
            assert sessions[0]["peer"].startswith(GUEST_IP.split("/")[0] + ":")
            assert sessions[0]["rx_bytes"] > 0 and sessions[0]["tx_bytes"] > 0, sessions
            tunnels = server.tunnels()
            assert [t["hostname"] for t in tunnels] == ["linuxvm"], tunnels

            vm.flag("hangup")
            result = vm.wait()
            wait_for(lambda: server.sessions() == [], 20, interval=0.5,
                     what="the session to go after the guest's hang-up")
        finally:
            server.stop()
    assert result.status == 0, result.describe()
    out = result.output
    assert "Using l2tp kernel support" in out, result.describe()  # xl2tpd: kernel mode
    assert re.search(r"^Session \d+ in tunnel \d+", out, re.M), result.describe()
    assert "auth chap MS-v2" in out, result.describe()  # LCP: our MS-CHAPv2 request
    assert "CHAP authentication succeeded" in out, result.describe()
    assert f"local  IP address {address}" in out and f"remote IP address {POOL_LOCAL}" in out
    assert re.search(rf"^route-to-pool: {re.escape(POOL_LOCAL)} dev ppp0 ", out, re.M), out
    assert f"primary   DNS address {DNS}" in out, result.describe()  # IPCP (RFC 1877)
    assert "3 packets transmitted, 3 received" in out, result.describe()
    assert_no_traceback(server.log_text())
