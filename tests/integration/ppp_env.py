"""Shared pieces of the PPP VPN integration tests: configs, waits, pings, iperf3, captures.

Our server (LNS) and our client run as real processes in test namespaces; everything here
drives them from outside through their logs, `pyl2tp ctl` and the namespaces' own tools.
Addresses come only from 198.18.0.0/15 and 2001:2::/48.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.capture import tshark_fields
from tests.harness.netns import Netns, wait_for
from tests.harness.product import ProductProcess

__all__ = [
    "CLIENT_IP",
    "DNS",
    "IPERF_PORT",
    "POOL_LOCAL",
    "POOL_NET",
    "POOL_RANGE",
    "SERVER_IP",
    "Connected",
    "User",
    "addresses",
    "client_toml",
    "connected",
    "connected_v6",
    "count_frames",
    "cpu_seconds",
    "iperf3",
    "ping",
    "ppp_protocols",
    "private_resolv_conf",
    "routes",
    "rss_kib",
    "server_toml",
    "slim_pcap",
    "tun_devices",
    "tun_name",
    "wait_connected",
    "wait_log",
    "whole_capture_problems",
]

SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
POOL_LOCAL = "198.18.100.1"
POOL_RANGE = "198.18.100.10-198.18.100.250"
POOL_NET = "198.18.100.0/24"
DNS = "198.18.0.53"
IPERF_PORT = 5201

#: what a client prints when IPCP is up (src/pyl2tp/lac_ppp.py)
CONNECTED = re.compile(
    r"^connected: address (?P<address>\S+) peer (?P<peer>\S+) dns (?P<dns>.+?)"
    r" \(tunnel (?P<tunnel>\d+) session (?P<session>\d+)\)$",
    re.MULTILINE,
)
CONNECTED_V6 = re.compile(r"^connected: IPv6 address (?P<address>\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class User:
    """One `[[users]]` entry of the server."""

    name: str
    password: str
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Connected:
    """What the client printed when its PPP network phase came up."""

    address: str
    peer: str
    dns: list[str]
    tunnel: int
    session: int


def _value(value: object) -> str:
    """A TOML value: JSON spells strings, numbers, booleans and lists the TOML way."""
    return json.dumps(value)


def _table(name: str, keys: Mapping[str, object]) -> list[str]:
    return [f"[{name}]", *(f"{k} = {_value(v)}" for k, v in keys.items() if v is not None)]


def tun_name(prefix: str, n: int = 0) -> str:
    """An interface name unique to this test process (at most 15 characters)."""
    return f"{prefix}{os.getpid():x}{n:x}"[:15]


def server_toml(
    work: Path,
    users: Sequence[User],
    *,
    listen: Sequence[str] = (SERVER_IP,),
    tun: str = "pyl2tp0",
    l2tp: Mapping[str, object] | None = None,
    ppp: Mapping[str, object] | None = None,
    pool: Mapping[str, object] | None = None,
) -> str:
    """A server config: the pool, DNS and every auth method offered unless overridden."""
    ppp_keys: dict[str, object] = {"auth": ["mschapv2", "chap", "pap"], "dns": [DNS]}
    ppp_keys.update(ppp or {})
    pool_keys: dict[str, object] = {"local": POOL_LOCAL, "range": POOL_RANGE}
    pool_keys.update(pool or {})
    lines = _table(
        "server",
        {
            "listen": list(listen),
            "hostname": "it-lns",
            "control_socket": str(work / "server.sock"),
            "tun": tun,
        },
    )
    lines += _table("l2tp", dict(l2tp or {}))
    lines += _table("ppp", ppp_keys)
    lines += _table("pool", pool_keys)
    for user in users:
        entry = {"name": user.name, "password": user.password, "address": user.address}
        lines += ["[[users]]", *(f"{k} = {_value(v)}" for k, v in entry.items() if v)]
    return "\n".join(lines) + "\n"


def client_toml(
    work: Path,
    user: str,
    password: str,
    *,
    server: str = SERVER_IP,
    auth: str | Sequence[str] = "mschapv2",
    routes: Sequence[str] = (POOL_NET,),
    tun: str = "",
    dns: bool = False,
    ipv6: bool = False,
    extra: Mapping[str, object] | None = None,
) -> str:
    """A single-session client config; `extra` adds [client] keys (timers, reconnect...)."""
    keys: dict[str, object] = {
        "server": server,
        "hostname": "it-lac",
        "control_socket": str(work / "client.sock"),
        "user": user,
        "password": password,
        "auth": auth if isinstance(auth, str) else list(auth),
        "routes": list(routes),
        "tun": tun,
        "dns": dns,
        "ipv6": ipv6,
    }
    keys.update(extra or {})
    return "\n".join(_table("client", keys)) + "\n"


# -- waiting for the client ------------------------------------------------------------------


def connected(client: ProductProcess) -> Connected | None:
    """The latest `connected: ...` line the client printed, parsed (None: not yet)."""
    found = list(CONNECTED.finditer(client.log_text()))
    if not found:
        if client.returncode is not None:
            raise AssertionError(
                f"client exited with {client.returncode}:\n{client.log_text()[-3000:]}"
            )
        return None
    m = found[-1]
    dns = [] if m["dns"] == "none" else [d.strip() for d in m["dns"].split(",")]
    return Connected(m["address"], m["peer"], dns, int(m["tunnel"]), int(m["session"]))


def wait_connected(client: ProductProcess, timeout: float = 40) -> Connected:
    """Wait for the client's `connected:` line; what it said."""
    found: list[Connected] = []

    def up() -> bool:
        now = connected(client)
        if now is not None:
            found.append(now)
        return now is not None

    wait_for(up, timeout, interval=0.1, what=f"the client's 'connected:' line ({client.log_path})")
    return found[-1]


def connected_v6(client: ProductProcess) -> str | None:
    """The global IPv6 address (with /64) the client printed, if any."""
    found = list(CONNECTED_V6.finditer(client.log_text()))
    return found[-1]["address"] if found else None


# -- the namespaces' view -------------------------------------------------------------------


def addresses(ns: Netns, ifname: str, family: int = 4, scope: str = "global") -> list[str]:
    """Addresses (without prefix length) of `ifname` in `ns` with the given scope."""
    res = ns.run(["ip", "-j", f"-{family}", "addr", "show", "dev", ifname], check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return []
    out = []
    for link in json.loads(res.stdout):
        for info in link.get("addr_info", []):
            if info.get("scope") == scope:
                out.append(str(info["local"]))
    return out


def tun_devices(ns: Netns) -> list[str]:
    """Names of the TUN devices in `ns`."""
    res = ns.run(["ip", "-j", "link", "show", "type", "tun"], check=False)
    if res.returncode != 0 or not res.stdout.strip():
        return []
    return [str(link["ifname"]) for link in json.loads(res.stdout)]


def routes(ns: Netns, family: int = 4) -> list[dict[str, Any]]:
    """`ip -j route` of the main table in `ns`."""
    res = ns.run(["ip", "-j", f"-{family}", "route", "show"], check=True)
    text = res.stdout.strip()
    result: list[dict[str, Any]] = json.loads(text) if text else []
    return result


def ping(ns: Netns, address: str, count: int = 3, *, deadline: float = 20) -> int:
    """Echo replies to `count` pings of `address` sent from `ns` (iputils ping)."""
    family = "-6" if ":" in address else "-4"
    res = ns.run(
        ["ping", family, "-n", "-c", str(count), "-i", "0.2", "-W", "2",
         "-w", str(int(deadline)), address],
        check=False,
        timeout=deadline + 10,
    )
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", res.stdout)
    return int(m.group(2)) if m else 0


@contextlib.contextmanager
def private_resolv_conf(ns: Netns, text: str = "nameserver 198.18.0.99\n") -> Iterator[Path]:
    """Give `ns` its own /etc/resolv.conf (iproute2 binds /etc/netns/NAME/* over /etc).

    A client with `dns = true` then writes its servers there, never into the host's file.
    """
    folder = Path("/etc/netns") / ns.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "resolv.conf"
    path.write_text(text)
    try:
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):  # only if no other test uses it
            folder.parent.rmdir()


# -- iperf3 ---------------------------------------------------------------------------------


def iperf3(server_ns: Netns, client_ns: Netns, bind: str, seconds: int, work: Path,
           *, reverse: bool = False, bitrate: str | None = None) -> dict[str, Any]:
    """TCP from `client_ns` to an `iperf3 -s -1` bound to `bind` in `server_ns`; its JSON.

    `reverse` sends from the server to the client instead (iperf3 -R); `bitrate` caps
    the sender (iperf3 -b, e.g. "4M").
    """
    log = work / "iperf3-server.log"
    with open(log, "wb") as out:
        server = server_ns.popen(
            ["iperf3", "-s", "-1", "-B", bind, "-p", str(IPERF_PORT)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: _listening(server_ns, bind, IPERF_PORT), 15, interval=0.1,
                 what="iperf3 -s listening")
        res = client_ns.run(
            ["iperf3", "-c", bind, "-p", str(IPERF_PORT), "-t", str(seconds), "-J",
             "--connect-timeout", "5000", *(["-R"] if reverse else []),
             *(["-b", bitrate] if bitrate else [])],
            check=False, timeout=seconds + 60,
        )
        try:
            result: dict[str, Any] = json.loads(res.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"iperf3 -c: {res.stdout[-2000:]} {res.stderr[-2000:]}") from exc
        if "error" in result:
            raise AssertionError(f"iperf3 -c failed: {result['error']}")
        return result
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=10)
        if server.poll() is None:
            server.kill()
            server.wait()


def _listening(ns: Netns, address: str, port: int) -> bool:
    res = ns.run(["ss", "-Htln", f"sport = :{port}"], check=False)
    return address in res.stdout


# -- captures -------------------------------------------------------------------------------


#: tshark options for a capture holding a bulk TCP transfer: TCP sequence analysis would
#: report the transfer's own losses and retransmits (not faults of our packets), heuristic
#: dissectors mistake its random payload for other protocols (Thrift...), and stream
#: reassembly only costs time.
BULK_OPTIONS = (
    "-o", "tcp.analyze_sequence_numbers:FALSE",
    "-o", "tcp.desegment_tcp_streams:FALSE",
    "-o", "tcp.calculate_timestamps:FALSE",
    "-d", f"tcp.port=={IPERF_PORT},data",
)


def _tshark(pcap: Path, args: Sequence[str], options: Sequence[str] = ()) -> str:
    argv = ["tshark", "-n", "-r", str(pcap), *options, *args]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"tshark failed ({res.returncode}) on {pcap}: {res.stderr[-2000:]}")
    return res.stdout


def slim_pcap(pcap: Path, out: Path, drop: str = f"tcp.port == {IPERF_PORT}") -> Path:
    """Copy `pcap` without the packets matching `drop` (a bulk transfer's segments)."""
    _tshark(pcap, ["-Y", f"!({drop})", "-w", str(out)], BULK_OPTIONS)
    return out


def whole_capture_problems(pcap: Path) -> list[str]:
    """Every frame of `pcap` tshark finds malformed or warns about, bulk TCP analysis off.

    For a capture with a bulk transfer in it, where `tshark_problems` would report the
    transfer's own TCP losses, and the RSTs iperf3 ends its data connections with (a
    warning about TCP, not about us); one line per frame (number, protocol, messages).
    """
    text = _tshark(
        pcap,
        ["-T", "fields", "-E", "separator=\t", "-e", "frame.number", "-e", "_ws.col.Protocol",
         "-e", "_ws.expert.message", "-Y", f"(_ws.malformed || _ws.expert.severity >= warning)"
         f" && !(tcp.connection.rst && tcp.port == {IPERF_PORT})"],
        BULK_OPTIONS,
    )
    return [line for line in text.splitlines() if line.strip()]


def count_frames(pcap: Path, display_filter: str) -> int:
    """How many frames of `pcap` match `display_filter` (bulk TCP analysis off)."""
    text = _tshark(pcap, ["-T", "fields", "-e", "frame.number", "-Y", display_filter],
                   BULK_OPTIONS)
    return sum(1 for line in text.splitlines() if line.strip())


def ppp_protocols(pcap: Path) -> set[str]:
    """The PPP protocol names tshark dissected in `pcap` (lcp, pap, chap, ipcp, ip...)."""
    found: set[str] = set()
    for (stack,) in tshark_fields(pcap, ["frame.protocols"], "ppp"):
        parts = stack.split(":")
        if "ppp" in parts:
            found.update(parts[parts.index("ppp") + 1:][:1])
    return found


# -- processes ------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far, in seconds (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of a process in KiB (/proc/PID/status VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_log(proc: ProductProcess, text: str, timeout: float) -> None:
    """Wait until `text` appears in the process's log."""
    wait_for(lambda: text in proc.log_text(), timeout, interval=0.1,
             what=f"{text!r} in the {proc.role} log")

