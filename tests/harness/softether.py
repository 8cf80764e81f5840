"""SoftEther VPN Server (Debian build) as a real L2TP/IPsec and raw L2TP peer in a netns.

The Debian binary has its data paths compiled in (/var/lib/softether, /var/log/softether,
/run/softether), so it runs under ``unshare --mount --propagation private`` with per-test
directories bind-mounted over them; ``vpnserver start --foreground`` is then one process.
A seeded ``vpn_server.config`` keeps it quiet (no DDNS, keep-alive, NAT traversal or Azure,
no OpenVPN/SSTP, one admin TCP listener, IPv4 only, bound to ``listen``), and one ``vpncmd``
batch configures the hub, the user, SecureNAT (198.18.200.1/24 with DHCP, virtual NAT off)
and L2TP over IPsec plus raw L2TP with a PSK.

Known bug of this build (fixed upstream in 5.02.5187): two overlapping L2TP tunnels in one
L2TP instance make the UDP thread spin and stop answering. Raw L2TP has one instance for
every client, so tests open one tunnel at a time and close it before the next.

SoftEther's PPP is passive: it sends no LCP Configure-Request until the client has sent a
PPP frame in the session. ``send_ppp_as`` lets a test send that first frame on behalf of a
client that runs no PPP (our ``[debug] link = "null"``), from the client's own address and
port, so SoftEther starts LCP towards it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import signal
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Self

from .netns import Netns, check_address
from .radius import PeerError, stop_pid

__all__ = ["LCP_CONFIGURE_REQUEST", "SNAT_GATEWAY", "SoftEther", "send_ppp_as", "socket_in"]

BINARY = Path("/usr/libexec/softether/vpnserver/vpnserver")
# Paths compiled into the Debian binary (SE_DBDIR, SE_LOGDIR, SE_PIDDIR).
DB_DIR = Path("/var/lib/softether")
LOG_DIR = Path("/var/log/softether")
PID_DIR = Path("/run/softether")

# SecureNAT's virtual network inside the hub (never SoftEther's 192.168.30.0/24 default).
SNAT_GATEWAY = "198.18.200.1"
SNAT_MASK = "255.255.255.0"
DHCP_RANGE = ("198.18.200.10", "198.18.200.200")

# RFC 1661 5.1: LCP Configure-Request, id 1, MRU 1400 (an option SoftEther accepts),
# in HDLC-like framing: SoftEther wants FF 03 and a 2-byte protocol (no ACFC, no PFC).
LCP_CONFIGURE_REQUEST = bytes.fromhex("ff03c021" "01010008" "01040578")

_UDP = struct.Struct("!HHHH")  # source port, destination port, length, checksum
_L2TP_DATA = struct.Struct("!HHHH")  # flags (L=1, ver 2), length, tunnel, session
_L2TP_DATA_FLAGS = 0x4002
_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000

# Run inside the private mount namespace: $1 db, $2 log, $3 run, $4 binary.
_LAUNCH = (
    f'mount --bind "$1" {DB_DIR} && mount --bind "$2" {LOG_DIR} && '
    f'mount --bind "$3" {PID_DIR} && exec "$4" start --foreground'
)


def seed_config(listen: str, admin_port: int) -> str:
    """vpn_server.config for the first start: what must hold before vpncmd can run."""
    return f"""\
# Software Configuration File (seeded by the pyl2tp test harness)
declare root
{{
\tuint ConfigRevision 0
\tbool IPsecMessageDisplayed true
\tdeclare DDnsClient
\t{{
\t\tbool Disabled true
\t}}
\tdeclare ListenerList
\t{{
\t\tdeclare Listener0
\t\t{{
\t\t\tbool DisableDos false
\t\t\tbool Enabled true
\t\t\tuint Port {admin_port}
\t\t}}
\t}}
\tdeclare ServerConfiguration
\t{{
\t\tbool DisableNatTraversal true
\t\tbool DisableIPv6Listener true
\t\tbool DisableJsonRpcWebApi true
\t\tbool EnableVpnAzure false
\t\tbool EnableVpnOverDns false
\t\tbool EnableVpnOverIcmp false
\t\tbool UseKeepConnect false
\t\tstring KeepConnectHost 127.0.0.1
\t\tbool NoLinuxArpFilter true
\t\tbool NoHighPriorityProcess true
\t\tstring ListenIP {listen}
\t\tstring PortsUDP $
\t\tstring UsernameHubSeparator @
\t\tstring CipherName ~DEFAULT~
\t\tbool UseWebUI false
\t\tdeclare Proto
\t\t{{
\t\t\tdeclare OpenVPN
\t\t\t{{
\t\t\t\tbool Enabled false
\t\t\t}}
\t\t\tdeclare SSTP
\t\t\t{{
\t\t\t\tbool Enabled false
\t\t\t}}
\t\t}}
\t}}
}}
"""


def socket_in(ns: Netns, kind: int, proto: int = 0) -> socket.socket:
    """An AF_INET socket that lives in ``ns`` (its use needs no further setns).

    setns(2) moves only the calling thread, so a short-lived thread enters the namespace
    and makes the socket; a socket keeps its namespace for its whole life.
    """
    made: list[socket.socket | BaseException] = []

    def enter_and_make() -> None:
        try:
            fd = os.open(f"/run/netns/{ns.name}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {ns.name}: {os.strerror(err)}")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, kind, proto))
        except BaseException as exc:
            made.append(exc)

    worker = threading.Thread(target=enter_and_make, name=f"setns-{ns.name}")
    worker.start()
    worker.join()
    result = made[0]
    if isinstance(result, BaseException):
        raise result
    return result


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_datagram(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    """A UDP header (RFC 768, checksum over the IPv4 pseudo-header) plus ``payload``."""
    length = _UDP.size + len(payload)
    pseudo = (
        ipaddress.IPv4Address(src[0]).packed + ipaddress.IPv4Address(dst[0]).packed
        + struct.pack("!BBH", 0, socket.IPPROTO_UDP, length)
    )
    header = _UDP.pack(src[1], dst[1], length, 0)
    checksum = _checksum(pseudo + header + payload) or 0xFFFF
    return _UDP.pack(src[1], dst[1], length, checksum) + payload


def send_ppp_as(
    ns: Netns, src: tuple[str, int], dst: tuple[str, int], tunnel: int, session: int,
    frame: bytes,
) -> None:
    """Send one PPP ``frame`` in an L2TP data message (RFC 2661 3.1) from ``src``.

    ``src`` is another process's bound address and port in ``ns``; a raw socket makes the
    datagram, so the peer's answer goes to that process. ``tunnel`` and ``session`` are the
    peer's ids (the header carries the receiver's ids).
    """
    check_address(dst[0])
    l2tp = _L2TP_DATA.pack(_L2TP_DATA_FLAGS, _L2TP_DATA.size + len(frame), tunnel, session)
    with socket_in(ns, socket.SOCK_RAW, socket.IPPROTO_UDP) as raw:
        raw.bind((src[0], 0))
        raw.sendto(udp_datagram(src, dst, l2tp + frame), (dst[0], 0))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


class SoftEther:
    """One vpnserver in ``ns``: hub, user, PSK, raw L2TP on ``listen``:1701."""

    def __init__(
        self,
        ns: Netns,
        workdir: Path,
        *,
        listen: str,
        hub: str = "VPN",
        user: str = "testuser",
        password: str = "testpass",
        psk: str = "testpsk",
        admin_password: str = "adminpass",
        admin_port: int = 5555,
        l2tp_raw: bool = True,
    ) -> None:
        for value in (hub, user, password, psk, admin_password):
            if not value or any(c.isspace() or c in '"/' for c in value):
                raise ValueError("SoftEther names and passwords: no spaces, quotes or '/'")
        check_address(listen)  # test ranges only
        self.ns = ns
        self.workdir = Path(workdir)
        self.listen = listen
        self.hub = hub
        self.user = user
        self.password = password
        self.psk = psk
        self.admin_password = admin_password
        self.admin_port = admin_port
        self.l2tp_raw = l2tp_raw
        self.out_path = self.workdir / "vpnserver.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._pid: int | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running vpnserver, or None."""
        return self._pid

    def udp_ports(self) -> set[int]:
        """UDP ports the server has bound on its listen address (or the wildcard)."""
        if self._pid is None:
            return set()
        out = self.ns.run(["ss", "-Hlnup"], check=False).stdout
        ports: set[int] = set()
        for line in out.splitlines():
            fields = line.split()
            if f"pid={self._pid}," not in line or len(fields) < 4:
                continue
            host, _, port = fields[3].rpartition(":")
            if host in (self.listen, "0.0.0.0", "*") and port.isdigit():
                ports.add(int(port))
        return ports

    def _tcp_listening(self, port: int) -> bool:
        out = self.ns.run(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout
        return bool(out.strip())

    def _read_pid_file(self) -> int | None:
        for path in (self.workdir / "run").glob(".pid_*"):
            text = "".join(c for c in path.read_text(errors="replace") if c.isdigit())
            if text:
                return int(text)
        return None

    def _check_alive(self, what: str) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise PeerError(
                f"vpnserver exited with {self._proc.returncode} {what}:\n{self.log_text()[-3000:]}"
            )

    def _wait(self, done: bool | None, deadline: float, what: str) -> None:
        if done:
            return
        self._check_alive(f"while waiting for {what}")
        if time.monotonic() > deadline:
            raise PeerError(f"SoftEther: timed out waiting for {what}\n{self.log_text()[-3000:]}")
        time.sleep(0.1)

    def start(self, timeout: float = 40) -> None:
        """Seed the config, start vpnserver, configure it, wait for UDP 500/4500(/1701)."""
        if self._proc is not None:
            raise PeerError("SoftEther already started")
        for sub in ("db", "log", "run"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.workdir / "db" / "vpn_server.config").write_text(
            seed_config(self.listen, self.admin_port)
        )
        for mountpoint in (DB_DIR, LOG_DIR, PID_DIR):
            mountpoint.mkdir(parents=True, exist_ok=True)  # empty; the package expects them
        self._out = self.out_path.open("wb")
        argv = [
            "unshare", "--mount", "--propagation", "private", "sh", "-c", _LAUNCH, "sh",
            str(self.workdir / "db"), str(self.workdir / "log"), str(self.workdir / "run"),
            str(BINARY),
        ]
        self._proc = self.ns.popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        pid = None
        while pid is None:
            pid = self._read_pid_file()
            self._wait(pid is not None, deadline, "the PID file")
        if pid != self._proc.pid:
            raise PeerError(f"vpnserver PID file says {pid}, we started {self._proc.pid}")
        if os.readlink(f"/proc/{pid}/exe") != str(BINARY):
            raise PeerError(f"PID {pid} is not {BINARY}")
        self._pid = pid
        while not self._tcp_listening(self.admin_port):
            self._wait(False, deadline, f"the admin listener on TCP {self.admin_port}")
        self._configure(timeout=max(5.0, deadline - time.monotonic()))
        want = {500, 4500} | ({1701} if self.l2tp_raw else set())
        while not want <= self.udp_ports():
            self._wait(False, deadline, f"UDP ports {sorted(want)}")

    def _batch(self) -> str:
        lo, hi = DHCP_RANGE
        gw = SNAT_GATEWAY
        return "\n".join([
            f"HubCreate {self.hub} /PASSWORD:{self.admin_password}",
            f"Hub {self.hub}",
            f"UserCreate {self.user} /GROUP:none /REALNAME:none /NOTE:none",
            f"UserPasswordSet {self.user} /PASSWORD:{self.password}",
            # SecureNAT stays a virtual host only: nothing leaves through the namespace.
            "ExtOptionSet DisableKernelModeSecureNAT /VALUE:1",
            "ExtOptionSet DisableIpRawModeSecureNAT /VALUE:1",
            "ExtOptionSet ManageOnlyPrivateIP /VALUE:0",
            f"SecureNatHostSet /MAC:none /IP:{gw} /MASK:{SNAT_MASK}",
            f"DhcpSet /START:{lo} /END:{hi} /MASK:{SNAT_MASK} /EXPIRE:7200 /GW:{gw} "
            f"/DNS:{gw} /DNS2:none /DOMAIN:none /LOG:yes",
            "NatDisable",
            "SecureNatEnable",
            f"IPsecEnable /L2TP:yes /L2TPRAW:{_yes(self.l2tp_raw)} /ETHERIP:no "
            f"/PSK:{self.psk} /DEFAULTHUB:{self.hub}",
            f"ServerPasswordSet {self.admin_password}",
            "",
        ])

    def _vpncmd(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        # In the server's mount namespace too: vpncmd writes lang.config into the DB dir.
        assert self._pid is not None
        argv = [
            "nsenter", "-t", str(self._pid), "-m", "-n",
            "vpncmd", f"{self.listen}:{self.admin_port}", "/SERVER", *args,
        ]
        return subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False,
        )

    def _configure(self, timeout: float) -> None:
        batch = self.workdir / "vpncmd-setup.txt"
        batch.write_text(self._batch())
        done = self._vpncmd([f"/IN:{batch}"], timeout)
        (self.workdir / "vpncmd-setup.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0 or "Error occurred" in done.stdout:
            raise PeerError(f"vpncmd setup failed ({done.returncode}):\n{done.stdout[-3000:]}")

    def admin(self, command: str, *, hub: bool = True, timeout: float = 30) -> str:
        """Run one vpncmd command and return its output.

        ``hub=True`` runs it as the hub's administrator (e.g. "SessionList"), ``hub=False``
        as the server's (e.g. "IPsecGet").
        """
        scope = [f"/HUB:{self.hub}"] if hub else []
        done = self._vpncmd(
            [f"/PASSWORD:{self.admin_password}", *scope, "/CMD", *command.split()], timeout
        )
        if done.returncode != 0:
            raise PeerError(f"vpncmd {command!r} failed ({done.returncode}):\n{done.stdout}")
        return done.stdout

    def log_text(self) -> str:
        """The console output, then the server and security logs, so far."""
        parts: list[str] = []
        paths = [self.out_path]
        for sub in ("server_log", "security_log"):
            paths += sorted((self.workdir / "log" / sub).rglob("*.log"))
        for path in paths:
            try:
                parts.append(f"==> {path.relative_to(self.workdir)} <==\n")
                parts.append(path.read_text(errors="replace"))
            except FileNotFoundError:
                continue
        return "".join(parts)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM (a clean stop takes about 2 s), then SIGKILL for a hung server, by PID."""
        if self._proc is not None:
            stop_pid(self._proc, [(signal.SIGTERM, grace)])
            self._proc = None
            self._pid = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
