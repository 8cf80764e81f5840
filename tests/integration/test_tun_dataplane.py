"""Real TUN devices, routes and pings inside network namespaces.

The test process stays in the host namespace; the asyncio side runs in the namespace as
this same file executed as a script (`ip netns exec NS python test_tun_dataplane.py ROLE`),
driven by one-line commands on its stdin. Its "sessions" are in-memory loopbacks that
answer ICMP echo requests, so a ping through the dataplane proves both directions.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.harness.netns import Netns, Topology

pytestmark = [pytest.mark.netns, pytest.mark.timeout(60)]

HERE = Path(__file__).resolve()
SERVER_TUN = "pl2s0"
CLIENT_TUN = "pl2c0"
LOCAL_V4 = "198.18.100.1"
LOCAL_V6 = "2001:2:0:ff::1"
SESSIONS_V4 = ["198.18.100.10", "198.18.100.11"]
SESSION_V6 = "2001:2:0:1::/64"
VPN_SERVER = "198.18.1.1"  # the client's VPN server: behind its gateway, never reached
GATEWAY = "198.18.0.254"


# -- ICMP echo: the loopback "sessions" and a fallback pinger --------------------------------

def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_reply(packet: bytes) -> bytes | None:
    """The echo reply to an IPv4 or IPv6 echo request (None for anything else)."""
    version = packet[0] >> 4
    if version == 4:
        ihl = (packet[0] & 0x0F) * 4
        if packet[9] != 1 or len(packet) < ihl + 8 or packet[ihl] != 8:
            return None
        out = bytearray(packet)
        out[12:16], out[16:20] = packet[16:20], packet[12:16]
        out[8] = 64
        out[10:12] = b"\0\0"
        out[10:12] = checksum(bytes(out[:ihl])).to_bytes(2, "big")
        out[ihl] = 0  # echo reply
        out[ihl + 2:ihl + 4] = b"\0\0"
        out[ihl + 2:ihl + 4] = checksum(bytes(out[ihl:])).to_bytes(2, "big")
        return bytes(out)
    if version == 6:
        if packet[6] != 58 or len(packet) < 48 or packet[40] != 128:
            return None
        out = bytearray(packet)
        out[8:24], out[24:40] = packet[24:40], packet[8:24]
        out[40] = 129  # echo reply
        out[42:44] = b"\0\0"
        body = bytes(out[40:])
        pseudo = bytes(out[8:40]) + struct.pack("!I3xB", len(body), 58)
        out[42:44] = checksum(pseudo + body).to_bytes(2, "big")
        return bytes(out)
    return None


def raw_ping(address: str, count: int) -> int:
    """Echo replies received for `count` requests (raw ICMP socket; needs root)."""
    v6 = ":" in address
    family = socket.AF_INET6 if v6 else socket.AF_INET
    proto = socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP
    ident = os.getpid() & 0xFFFF
    received = 0
    with socket.socket(family, socket.SOCK_RAW, proto) as sock:
        for seq in range(count):
            body = struct.pack("!HH", ident, seq) + b"pyl2tp-ping" * 4
            if v6:
                msg = struct.pack("!BBH", 128, 0, 0) + body  # the kernel sums ICMPv6
            else:
                head = struct.pack("!BBH", 8, 0, 0)
                msg = struct.pack("!BBH", 8, 0, checksum(head + body)) + body
            try:
                sock.sendto(msg, (address, 0))
            except OSError:
                continue
            deadline = time.monotonic() + 2
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data = sock.recv(65535)
                icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
                if icmp[0] == (129 if v6 else 0) and icmp[4:8] == struct.pack("!HH", ident, seq):
                    received += 1
                    break
    return received


def ping(ns: Netns, address: str, count: int = 3) -> int:
    """Replies to `count` pings of `address` from inside `ns` (iputils ping if present)."""
    if shutil.which("ping"):
        family = "-6" if ":" in address else "-4"
        res = ns.run(["ping", family, "-n", "-c", str(count), "-i", "0.2", "-W", "2", address],
                     check=False)
        for line in res.stdout.splitlines():
            if "packets transmitted" in line:
                return int(line.split(",")[1].split()[0])
        return 0
    res = ns.run([sys.executable, str(HERE), "ping", address, str(count)], check=False)
    return int(res.stdout.strip() or 0)


# -- the in-namespace side ---------------------------------------------------------------------

class Echo:
    """A session that answers ICMP echo through `reply_to`."""

    def __init__(self) -> None:
        self.seen = 0
        self.answered = 0
        self.reply_to: Callable[[bytes], None] = lambda packet: None

    def __call__(self, packet: bytes) -> None:
        self.seen += 1  # the kernel's own IPv6 chatter (router solicitations...) included
        reply = echo_reply(packet)
        if reply is not None:
            self.answered += 1
            self.reply_to(reply)


async def serve_commands(handle: Callable[[str], str | None]) -> None:
    """Read stdin lines, print each answer; stdin closed or "quit" ends it."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    buf = b""

    def readable() -> None:
        nonlocal buf
        chunk = os.read(0, 4096)
        if not chunk:
            loop.remove_reader(0)
            if not done.done():
                done.set_result(None)
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            answer = handle(line.decode().strip())
            if answer is None:
                loop.remove_reader(0)
                if not done.done():
                    done.set_result(None)
                return
            print(answer, flush=True)

    loop.add_reader(0, readable)
    await done


async def run_server() -> None:
    from pyl2tp.dataplane.server import ServerDataplane

    dp = ServerDataplane(tun_name=SERVER_TUN, local_v4=IPv4Address(LOCAL_V4),
                         local_v6=IPv6Address(LOCAL_V6), mtu=1400)
    dp.start()
    echoes: dict[str, Echo] = {}
    for address in SESSIONS_V4:
        echoes[address] = echo = Echo()
        echo.reply_to = dp.sender(v4=IPv4Address(address))
        dp.attach_v4(IPv4Address(address), echo)
    echoes[SESSION_V6] = echo = Echo()
    echo.reply_to = dp.sender(v6=IPv6Network(SESSION_V6))
    dp.attach_v6(IPv6Network(SESSION_V6), echo)
    print(f"READY {dp.ifname}", flush=True)

    def handle(line: str) -> str | None:
        cmd, _, arg = line.partition(" ")
        if cmd == "detach4":
            dp.detach_v4(IPv4Address(arg))
            return "OK"
        if cmd == "detach6":
            dp.detach_v6(IPv6Network(arg))
            return "OK"
        if cmd == "stats":
            seen = {k: e.answered for k, e in echoes.items()}
            return "STATS " + json.dumps({**dp.stats, "seen": seen})
        return None

    try:
        await serve_commands(handle)
    finally:
        dp.close()
    print("BYE", flush=True)


async def run_client(routes: str, state: str, v6_id: str) -> None:
    from pyl2tp.dataplane.client import ClientDataplane
    from pyl2tp.dataplane.resolver import ResolverConfig

    resolver = ResolverConfig(resolv_conf=Path(state) / "resolv.conf",
                              state_dir=Path(state) / "run", use_resolved=False)
    cdp = ClientDataplane(tun_name=CLIENT_TUN, server=VPN_SERVER, routes=routes.split(","),
                          mtu=1400, resolver=resolver)
    peer = Echo()  # the far end of the tunnel: answers whatever it is pinged for
    peer.reply_to = cdp.deliver
    cdp.up(IPv4Address("198.18.100.10"), IPv4Address(LOCAL_V4), peer,
           dns=[IPv4Address("198.18.0.53")], mtu=1380,
           local_v6_id=bytes.fromhex(v6_id) if v6_id != "-" else None)
    print(f"READY {cdp.ifname}", flush=True)

    def handle(line: str) -> str | None:
        if line == "down":
            cdp.down()
            return "DOWN"
        if line == "stats":
            return "STATS " + json.dumps({"answered": peer.answered, "seen": peer.seen,
                                          "dropped": cdp.dropped})
        return None

    try:
        await serve_commands(handle)
    finally:
        cdp.down()
    print("BYE", flush=True)


# -- the test-process side ---------------------------------------------------------------------

class Driver:
    """This file run as ROLE inside a namespace, spoken to line by line."""

    def __init__(self, ns: Netns, work: Path, role: str, *args: str) -> None:
        self.err_path = work / f"{role}.err"
        self._err = open(self.err_path, "wb")  # noqa: SIM115 (closed in close())
        self.proc = ns.popen([sys.executable, str(HERE), role, *args],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err)
        self._buf = b""

    def expect(self, prefix: str, timeout: float = 15) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            if b"\n" in self._buf:
                line, self._buf = self._buf.split(b"\n", 1)
                text = line.decode()
                if text.startswith(prefix):
                    return text[len(prefix):].strip()
                continue
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise AssertionError(f"no {prefix!r} from the driver; stderr:\n{self.stderr()}")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"driver exited; stderr:\n{self.stderr()}")
            self._buf += chunk

    def stderr(self) -> str:
        self._err.flush()
        return self.err_path.read_text(errors="replace")[-4000:]

    def ask(self, line: str, answer: str) -> str:
        stdin: IO[bytes] | None = self.proc.stdin
        assert stdin is not None
        stdin.write(line.encode() + b"\n")
        stdin.flush()
        return self.expect(answer)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.ask("stats", "STATS "))
        return result

    def close(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
        self._err.close()


def routes_of(ns: Netns, *args: str) -> str:
    return ns.run(["ip", *args]).stdout


def test_server_dataplane_routes_pings_to_attached_sessions(
    topology: Topology, tmp_path: Path
) -> None:
    ns = topology.host("srv")
    drv = Driver(ns, tmp_path, "server")
    try:
        assert drv.expect("READY ") == SERVER_TUN
        assert ns.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
        table = routes_of(ns, "-4", "route", "show", "dev", SERVER_TUN)
        assert all(a in table for a in SESSIONS_V4), table
        assert SESSION_V6 in routes_of(ns, "-6", "route", "show", "dev", SERVER_TUN)

        for address in SESSIONS_V4:
            assert ping(ns, address) == 3, drv.stderr()
        assert ping(ns, "2001:2:0:1::1") == 3, drv.stderr()
        stats = drv.stats()
        assert stats["seen"] == {SESSIONS_V4[0]: 3, SESSIONS_V4[1]: 3, SESSION_V6: 3}
        assert stats["spoofed"] == 0 and stats["bad_packets"] == 0
        assert stats["tx_packets"] >= 9 and stats["tx_dropped"] == 0

        # An address of the pool with no session: routed into the TUN, dropped there.
        ns.run(["ip", "route", "add", "198.18.100.0/24", "dev", SERVER_TUN])
        before = stats["no_session"]
        assert ping(ns, "198.18.100.12", count=2) == 0
        stats = drv.stats()
        assert stats["no_session"] >= before + 2
        assert sum(stats["seen"].values()) == 9

        # Detach: the /32 goes, the session sees nothing more.
        drv.ask(f"detach4 {SESSIONS_V4[1]}", "OK")
        assert SESSIONS_V4[1] not in routes_of(ns, "-4", "route", "show", "dev", SERVER_TUN)
        assert SESSIONS_V4[0] in routes_of(ns, "-4", "route", "show", "dev", SERVER_TUN)
        assert ping(ns, SESSIONS_V4[1], count=2) == 0
        assert ping(ns, SESSIONS_V4[0], count=1) == 1
        drv.ask(f"detach6 {SESSION_V6}", "OK")
        assert SESSION_V6 not in routes_of(ns, "-6", "route", "show", "dev", SERVER_TUN)
        stats = drv.stats()
        assert stats["seen"] == {SESSIONS_V4[0]: 4, SESSIONS_V4[1]: 3, SESSION_V6: 3}
        assert stats["sessions_v4"] == 1 and stats["sessions_v6"] == 0

        drv.ask("quit", "BYE")
        assert ns.run(["ip", "link", "show", SERVER_TUN], check=False).returncode != 0
    finally:
        drv.close()


def client_host(topology: Topology) -> Netns:
    """A client namespace whose default route leads to a gateway namespace."""
    cli = topology.host("cli")
    gw = topology.host("gw")
    topology.link(cli, "198.18.0.2/24", gw, f"{GATEWAY}/24")
    cli.run(["ip", "route", "add", "default", "via", GATEWAY])
    return cli


def start_client(cli: Netns, tmp_path: Path, routes: str,
                 v6_id: str = "-") -> tuple[Driver, Path]:
    state = tmp_path / "state"
    state.mkdir()
    (state / "resolv.conf").write_text("nameserver 198.18.0.99\n")
    drv = Driver(cli, tmp_path, "client", routes, str(state), v6_id)
    assert drv.expect("READY ") == CLIENT_TUN
    return drv, state


def test_client_dataplane_with_prefix_routes(topology: Topology, tmp_path: Path) -> None:
    cli = client_host(topology)
    before = routes_of(cli, "-4", "route", "show")
    drv, state = start_client(cli, tmp_path, "198.18.100.0/24", v6_id="0011223344556677")
    try:
        # IPv6CP's identifier makes the only link-local address (RFC 5072 5)
        v6 = routes_of(cli, "-6", "addr", "show", CLIENT_TUN)
        assert "fe80::11:2233:4455:6677/64" in v6 and v6.count("inet6") == 1, v6
        link = routes_of(cli, "link", "show", CLIENT_TUN)
        assert "mtu 1380" in link and "UP" in link
        assert "peer 198.18.100.1/32" in routes_of(cli, "-4", "addr", "show", CLIENT_TUN)
        assert f"dev {CLIENT_TUN}" in routes_of(cli, "-4", "route", "get", "198.18.100.77")
        assert f"via {GATEWAY}" in routes_of(cli, "-4", "route", "get", "198.18.50.1")
        assert "nameserver 198.18.0.53" in (state / "resolv.conf").read_text()
        assert ping(cli, LOCAL_V4) == 3, drv.stderr()  # the peer address
        assert ping(cli, "198.18.100.77") == 3, drv.stderr()
        assert drv.stats()["answered"] == 6

        drv.ask("down", "DOWN")
        assert cli.run(["ip", "link", "show", CLIENT_TUN], check=False).returncode != 0
        assert routes_of(cli, "-4", "route", "show") == before
        assert (state / "resolv.conf").read_text() == "nameserver 198.18.0.99\n"
    finally:
        drv.close()


def test_client_dataplane_default_route_keeps_the_server_reachable(
    topology: Topology, tmp_path: Path
) -> None:
    cli = client_host(topology)
    default_before = routes_of(cli, "-4", "route", "show", "default")
    assert f"via {GATEWAY}" in default_before
    everything_before = routes_of(cli, "-4", "route", "show")
    drv, state = start_client(cli, tmp_path, "default")
    try:
        assert f"dev {CLIENT_TUN}" in routes_of(cli, "-4", "route", "show", "default")
        to_server = routes_of(cli, "-4", "route", "get", VPN_SERVER)
        assert f"via {GATEWAY}" in to_server and CLIENT_TUN not in to_server
        assert f"dev {CLIENT_TUN}" in routes_of(cli, "-4", "route", "get", "198.18.77.7")
        assert ping(cli, "198.18.77.7") == 3, drv.stderr()
        stats = drv.stats()
        # without IPv6CP the link carries no IPv6: the session saw the echoes, nothing else
        assert stats["answered"] == 3 and stats["seen"] == 3, stats
        assert "inet6" not in routes_of(cli, "-6", "addr", "show", CLIENT_TUN)

        drv.ask("down", "DOWN")
        assert routes_of(cli, "-4", "route", "show", "default") == default_before
        assert routes_of(cli, "-4", "route", "show") == everything_before
        assert VPN_SERVER not in routes_of(cli, "-4", "route", "show")
        assert (state / "resolv.conf").read_text() == "nameserver 198.18.0.99\n"
        drv.ask("quit", "BYE")
    finally:
        drv.close()


def test_echo_reply_checksums_are_valid() -> None:
    """The loopback sessions' replies are real ICMP: scapy recomputes the same checksums."""
    scapy = pytest.importorskip("scapy.all")
    req4 = bytes(scapy.IP(src="198.18.100.1", dst="198.18.100.10") / scapy.ICMP(id=7, seq=1)
                 / b"abc")
    rep4 = echo_reply(req4)
    assert rep4 is not None
    parsed = scapy.IP(rep4)
    assert parsed[scapy.ICMP].type == 0 and parsed.dst == "198.18.100.1"
    del parsed.chksum
    del parsed[scapy.ICMP].chksum
    assert bytes(parsed) == rep4
    req6 = bytes(scapy.IPv6(src="2001:2:0:ff::1", dst="2001:2:0:1::1")
                 / scapy.ICMPv6EchoRequest(id=7, seq=1, data=b"abc"))
    rep6 = echo_reply(req6)
    assert rep6 is not None
    parsed6 = scapy.IPv6(rep6)
    assert parsed6.dst == "2001:2:0:ff::1" and parsed6.src == "2001:2:0:1::1"
    del parsed6[scapy.ICMPv6EchoReply].cksum
    assert bytes(parsed6) == rep6


# -- entry point inside a namespace ------------------------------------------------------------

def main(argv: list[str]) -> int:
    role = argv[0]
    if role == "server":
        asyncio.run(run_server())
    elif role == "client":
        asyncio.run(run_client(argv[1], argv[2], argv[3]))
    elif role == "ping":
        ipaddress.ip_address(argv[1])
        print(raw_ping(argv[1], int(argv[2])), flush=True)
    else:
        print(f"unknown role {role}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
