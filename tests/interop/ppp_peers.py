"""Shared pieces of the PPP interop tests: client configs, the `connected:` line, pings.

Our client runs as a real process in a test namespace against a real LNS; everything here
looks at it from outside (its stdout, `pyl2tp ctl`, the namespace's own tools). Addresses
come only from 198.18.0.0/15.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.capture import Capture, tshark_fields
from tests.harness.netns import Netns, wait_for
from tests.harness.product import ProductProcess

__all__ = [
    "ClientRun",
    "Connected",
    "capture_drops",
    "check_client_run",
    "check_icmp_through",
    "client_toml",
    "connected",
    "device_addresses",
    "exercise_client",
    "ping",
    "ppp_protocols_from",
    "private_resolv_conf",
    "stopccn_problems",
    "tun_name",
    "wait_connected",
]

#: what a single-session client prints once IPCP is up (src/pyl2tp/lac_ppp.py)
CONNECTED = re.compile(
    r"^connected: address (?P<address>\S+) peer (?P<peer>\S+) dns (?P<dns>.+?)"
    r" \(tunnel (?P<tunnel>\d+) session (?P<session>\d+)\)$",
    re.MULTILINE,
)
STOPCCN = 4  # RFC 2661 3.2 message type
DROPPED = re.compile(r"^(\d+) packets? dropped by kernel$", re.MULTILINE)
PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


@dataclass(frozen=True, slots=True)
class Connected:
    """The client's `connected: ...` line, parsed."""

    address: str
    peer: str
    dns: list[str]
    tunnel: int
    session: int


def tun_name(prefix: str) -> str:
    """A TUN name unique to this test process (at most 15 characters).

    The client's resolver backup in /run/pyl2tp is named after the TUN, so parallel runs
    must not share a name even in separate namespaces.
    """
    return f"{prefix}{os.getpid():x}"[:15]


def client_toml(work: Path, client: Mapping[str, object],
                debug: Mapping[str, object] | None = None) -> str:
    """A client config: `[client]` (with control_socket in `work`) and optional `[debug]`."""
    keys: dict[str, object] = {"control_socket": str(work / "client.sock")}
    keys.update(client)
    # A JSON string, number, bool or list of them is valid TOML.
    lines = ["[client]", *(f"{k} = {json.dumps(v)}" for k, v in keys.items())]
    if debug:
        lines += ["", "[debug]", *(f"{k} = {json.dumps(v)}" for k, v in debug.items())]
    return "\n".join(lines) + "\n"


def connected(client: ProductProcess) -> Connected | None:
    """The latest `connected:` line of the client (None: not yet; raises if it exited)."""
    found = list(CONNECTED.finditer(client.log_text()))
    if not found:
        if client.returncode is not None:
            raise AssertionError(f"client exited with {client.returncode}:\n"
                                 f"{client.log_text()[-3000:]}")
        return None
    m = found[-1]
    dns = [] if m["dns"] == "none" else [d.strip() for d in m["dns"].split(",")]
    return Connected(m["address"], m["peer"], dns, int(m["tunnel"]), int(m["session"]))


def wait_connected(client: ProductProcess, timeout: float = 30) -> Connected:
    """Wait for the client's `connected:` line (IPCP up, TUN made)."""
    up = wait_for(lambda: connected(client), timeout, interval=0.2,
                  what="the client's 'connected:' line")
    assert up is not None
    return up


def device_addresses(ns: Netns, ifname: str) -> list[str]:
    """IPv4 addresses (with /prefix) and their peers ("a peer p/32") on `ifname` in `ns`."""
    res = ns.run(["ip", "-j", "-4", "addr", "show", "dev", ifname], check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return []
    out = []
    for link in json.loads(res.stdout):
        for info in link.get("addr_info", []):
            peer = f" peer {info['address']}/{info['prefixlen']}" if "address" in info else ""
            out.append(f"{info['local']}{peer}")
    return out


def ping(ns: Netns, address: str, count: int = 3, *, deadline: float = 20) -> int:
    """Echo replies to `count` pings of `address` sent from `ns` (iputils ping)."""
    res = ns.run(["ping", "-4", "-n", "-c", str(count), "-i", "0.2", "-W", "2",
                  "-w", str(int(deadline)), address], check=False, timeout=deadline + 10)
    m = PING_SUMMARY.search(res.stdout)
    return int(m.group(2)) if m else 0


@contextlib.contextmanager
def private_resolv_conf(ns: Netns, text: str = "nameserver 198.18.0.99\n") -> Iterator[Path]:
    """Give `ns` its own /etc/resolv.conf (`ip netns exec` binds /etc/netns/NAME/* over /etc).

    A client with `dns = true` started afterwards writes its servers there, never into the
    host's file. Yields the file's path as seen from the host.
    """
    folder = Path("/etc/netns") / ns.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "resolv.conf"
    path.write_text(text)
    try:
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # only when no other test uses /etc/netns
            folder.parent.rmdir()


def capture_drops(capture: Capture) -> int:
    """Packets the kernel dropped before tcpdump read them (from its final statistics).

    A stopped capture with drops lacks packets that were on the wire; checks that a packet
    is *present* hold only when this is 0. (With a 256 KiB snaplen, --immediate-mode rings
    hold few frames, so a starved tcpdump on a loaded machine loses some.)
    """
    text = capture.log_path.read_text(errors="replace")
    m = DROPPED.search(text)
    if m is None:
        raise AssertionError(f"no tcpdump statistics (is the capture stopped?): {text!r}")
    return int(m.group(1))


def _acks(nr: int, ns: int) -> bool:
    """True when Nr acknowledges the message sent with Ns (RFC 2661 5.8, modulo 2**16)."""
    return (nr - ns - 1) % 65536 < 32768


def stopccn_problems(pcap: Path, ours: str, peer: str) -> list[str]:
    """What is missing for a clean close (RFC 2661 5.7); [] when clean.

    Our StopCCN must be acknowledged by a later control message of the peer (a ZLB or its
    own StopCCN), and a StopCCN the peer sent afterwards must be acknowledged by us.
    """
    rows = tshark_fields(pcap, ["ip.src", "l2tp.Ns", "l2tp.Nr", "l2tp.avp.message_type"],
                         "l2tp.type == 1")
    msgs = [(src, int(ns), int(nr), mtype.split(",")[0]) for src, ns, nr, mtype in rows]
    ours_at = [i for i, m in enumerate(msgs) if m[0] == ours and m[3] == str(STOPCCN)]
    if not ours_at:
        return [f"no StopCCN from {ours}"]
    problems = []
    first, ns_stop = ours_at[0], msgs[ours_at[0]][1]
    if not any(m[0] == peer and _acks(m[2], ns_stop) for m in msgs[first + 1:]):
        problems.append(f"{peer} never acknowledged our StopCCN (Ns {ns_stop})")
    for i, (src, ns, _, mtype) in enumerate(msgs[first + 1:], first + 1):
        if src == peer and mtype == str(STOPCCN) and not any(
                m[0] == ours and _acks(m[2], ns) for m in msgs[i + 1:]):
            problems.append(f"we never acknowledged {peer}'s StopCCN (Ns {ns})")
    return problems


@dataclass(frozen=True, slots=True)
class ClientRun:
    """What one connected client showed from outside: its line, TUN, resolver, route, pings."""

    up: Connected
    tun_addresses: list[str]
    resolv_text: str
    route: str
    replies: int
    sessions: list[dict[str, Any]]  # `ctl sessions` before the pings
    after: list[dict[str, Any]]  # and after them


def exercise_client(client: ProductProcess, ns: Netns, tun: str, target: str,
                    resolv: Path, *, timeout: float = 40) -> ClientRun:
    """Wait for `client` to connect and its TUN address, then ping `target` through it."""
    up = wait_connected(client, timeout)
    # The client says `connected:` once its TUN, routes and DNS servers are in place.
    tun_addresses = device_addresses(ns, tun)
    resolv_text = resolv.read_text()
    sessions = client.sessions()
    route = ns.run(["ip", "-4", "route", "get", target]).stdout
    replies = ping(ns, target, 3)
    return ClientRun(up, tun_addresses, resolv_text, route, replies, sessions,
                     client.sessions())


def check_client_run(run: ClientRun, *, tun: str, peer: str, dns: list[str],
                     user: str) -> None:
    """The checks every PPP interop run shares: IPCP's peer and DNS, the TUN, resolv.conf,
    the route into the TUN, three echo replies, and one session that counted them."""
    up = run.up
    assert up.peer == peer and up.dns == dns, up
    assert run.tun_addresses == [f"{up.address} peer {peer}/32"]
    for server in dns:
        assert f"nameserver {server}" in run.resolv_text, run.resolv_text
    assert f"dev {tun} " in run.route, run.route
    assert run.replies == 3, f"no echo replies from {peer} through our TUN"
    assert len(run.sessions) == 1
    assert run.sessions[0]["address"] == up.address
    assert run.sessions[0]["user"] == user
    assert run.after[0]["tx_bytes"] > run.sessions[0]["tx_bytes"]
    assert run.after[0]["rx_bytes"] > run.sessions[0]["rx_bytes"]


def ppp_protocols_from(pcap: Path, src: str) -> set[int]:
    """PPP protocol numbers of the frames `src` sent in L2TP data messages."""
    rows = tshark_fields(pcap, ["ppp.protocol"], f"ip.src == {src} && ppp")
    return {int(p, 0) for row in rows for p in row[0].split(",") if p}


def check_icmp_through(pcap: Path, address: str, peer: str) -> None:
    """The capture holds the echo request from `address` to `peer` inside L2TP, and the reply."""
    icmp = tshark_fields(pcap, ["ip.src", "ip.dst", "icmp.type"], "icmp")
    inner = [[r[0].split(",")[-1], r[1].split(",")[-1], r[2]] for r in icmp]
    assert [address, peer, "8"] in inner, inner
    assert [peer, address, "0"] in inner, inner
