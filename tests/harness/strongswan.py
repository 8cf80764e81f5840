"""strongSwan charon (kernel-libipsec) as an IKEv1 peer, and a tiny tunnel-mode gateway
around our IKE.

charon runs in a test namespace with its own tmpfs /run (its pid file is fixed) and its
own vici socket; ``swanctl`` talks to it. libipsec does ESP in user space, always
UDP-encapsulated on 4500 (strongSwan 5.9.8; charon fakes NAT-D so NAT-T is forced), in
tunnel mode only.

``python -m tests.harness.strongswan OUT LOCAL_IP PSK [--peer IP] [--tunnel LOCAL REMOTE]
[--inner ADDR] [--aggressive]`` runs our :class:`pyl2tp.ike.endpoint.IKEEndpoint` on
LOCAL_IP:500/4500, initiating to ``--peer`` if given (a tunnel-mode child between the
``--tunnel`` subnets, else L2TP transport), answering Aggressive Mode if ``--aggressive``,
with ``IKEConfig.sa_lifetime_kb``, ``sa_lifetime``, ``pfs_group`` and ``rekey`` from
``--sa-lifetime-kb``, ``--sa-lifetime``, ``--pfs`` and ``--rekey`` (ESP hard limits are
reported to the endpoint as the daemon's shell does).
With ``--tunnel`` it is also a gateway: a TUN device holds ``--inner`` (/32) with a route
to the remote subnet; ESP from the peer (UDP 4500) is decrypted with
:class:`pyl2tp.esp.InboundSA` and the inner packet written to the TUN, packets read from
the TUN are encrypted with an :class:`pyl2tp.esp.OutboundSA` and sent to the peer. One JSON
line per IKE event, and per ESP packet (the first few with their bytes), goes to OUT.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.harness.netns import Netns, wait_for

__all__ = ["CHARON", "Charon", "charon_keys"]

CHARON = "/usr/lib/ipsec/charon"


class Charon:
    """One charon in ``ns``; IKEv1 PSK connection ``sc`` with child ``net``."""

    def __init__(self, ns: Netns, work: Path, *, me: str, peer: str, psk: str,
                 local_ts: str, remote_ts: str, mode: str, ident: str = "ss@sc",
                 aggressive: bool = False, child_extra: str = "",
                 esp_proposals: str = "aes128-sha256") -> None:
        """``child_extra``: more swanctl.conf lines for the child (e.g. ``life_bytes``)."""
        self.ns = ns
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.conf = work / "strongswan.conf"
        self.vici = f"unix://{work}/charon.vici"
        self.log_path = work / "charon.log"
        self.conf.write_text(f"""charon {{
  load_modular = no
  load = random nonce openssl aes sha1 sha2 md5 hmac kdf gmp pem pkcs1 x509 pubkey \
kernel-libipsec kernel-netlink socket-default vici updown
  install_routes = yes
  filelog {{
    sc {{
      path = {self.log_path}
      default = 1
      ike = 4
      chd = 4
      knl = 2
      esp = 2
      flush_line = yes
    }}
  }}
  plugins {{
    vici {{
      socket = {self.vici}
    }}
    kernel-libipsec {{
      allow_peer_ts = yes
    }}
    socket-default {{
      fwmark = 0x5c
    }}
    kernel-netlink {{
      fwmark = !0x5c
    }}
  }}
}}
swanctl {{
  load = random nonce openssl pem pkcs1 x509 pubkey
}}
""")
        self.swanctl_conf = work / "swanctl.conf"
        self.swanctl_conf.write_text(f"""connections {{
  sc {{
    version = 1
    aggressive = {"yes" if aggressive else "no"}
    local_addrs = {me}
    remote_addrs = {peer}
    proposals = aes128-sha256-modp2048
    dpd_delay = 5s
    local {{
      auth = psk
      id = {ident}
    }}
    remote {{
      auth = psk
    }}
    children {{
      net {{
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        esp_proposals = {esp_proposals}
        mode = {mode}
        {child_extra}
      }}
    }}
  }}
}}
secrets {{
  ike-sc {{
    secret = "{psk}"
  }}
}}
""")
        self.env = {**os.environ, "STRONGSWAN_CONF": str(self.conf)}
        for d in ("x509", "x509ca", "pubkey", "private", "rsa", "ecdsa", "pkcs8", "pkcs12"):
            (work / d).mkdir(exist_ok=True)
        self.log_path.write_text("")
        ns.popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             f"mount -t tmpfs sc-run /run && exec {CHARON}"],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: self._swanctl("--stats", check=False).returncode == 0, 15)
        self._swanctl("--load-all", "--file", str(self.swanctl_conf))

    def _swanctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.ns.run(["swanctl", *args, "--uri", self.vici], check=check, env=self.env)

    def initiate(self) -> subprocess.CompletedProcess[str]:
        return self._swanctl("--initiate", "--child", "net", "--timeout", "20", check=False)

    def list_sas(self) -> str:
        return self._swanctl("--list-sas").stdout

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _hexdump_after(lines: list[str], i: int) -> bytes:
    n = int(re.search(r"=> (\d+) bytes", lines[i]).group(1))  # type: ignore[union-attr]
    out = ""
    for line in lines[i + 1:]:
        m = re.search(r"\]\s+\d+: ((?:[0-9A-F]{2} ){1,8}(?:\s*(?:[0-9A-F]{2} ){0,8}))", line)
        if not m or len(out) >= 2 * n:
            break
        out += m.group(1).replace(" ", "")
    return bytes.fromhex(out[: 2 * n])


def charon_keys(log: str) -> dict[str, bytes]:
    """The first child SA's ESP keys charon logged at level 4."""
    lines = log.splitlines()
    keys: dict[str, bytes] = {}
    names = ("encryption initiator key", "encryption responder key",
             "integrity initiator key", "integrity responder key")
    for i, line in enumerate(lines):
        for name in names:
            if f"] {name} =>" in line and name not in keys:
                keys[name] = _hexdump_after(lines, i)
    return keys


# -- our endpoint on real sockets (run inside a namespace) -----------------------------------

ESP_LOGGED = 5  # ESP packets whose bytes go to OUT (the test decrypts one itself)
_IPV4 = 4  # ESP next header of a tunnelled IPv4 packet (RFC 4303 2.6)


def _params(p: Any) -> dict[str, Any]:
    return {"spi": p.spi, "enc": p.enc, "enc_key": p.enc_key.hex(), "auth": p.auth,
            "auth_key": p.auth_key.hex(), "mode": p.mode, "udp_encap": p.udp_encap,
            "hard_bytes": p.hard_bytes}


def _event_json(ev: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"event": type(ev).__name__}
    child = getattr(ev, "child", None)
    if child is not None:
        out.update(inbound=_params(child.inbound), outbound=_params(child.outbound),
                   peer=list(child.peer), mode=child.mode, peer_id=child.peer_id,
                   selectors=None if child.selectors is None
                   else [child.selectors.local, child.selectors.remote])
    for name in ("peer_id", "suite_name", "reason", "notify"):
        if hasattr(ev, name):
            out[name] = getattr(ev, name)
    return out


class Gateway:
    """Tunnel-mode ESP between a TUN device and the peer's UDP 4500 (RFC 3948)."""

    def __init__(self, inner: str, remote: str, sock: socket.socket) -> None:
        from pyl2tp.io.tun import open_tun

        self.fd, self.name = open_tun("gw%d")
        for argv in (["ip", "addr", "add", f"{inner}/32", "dev", self.name],
                     ["ip", "link", "set", self.name, "up"],
                     ["ip", "route", "add", remote, "dev", self.name, "src", inner]):
            subprocess.run(argv, check=True)
        self.sock = sock
        self.inbound: dict[int, tuple[Any, Any]] = {}  # (InboundSA, ChildSA) by SPI
        self.outbound: Any = None  # (OutboundSA, peer address) of the newest child
        self.esp_in = self.esp_out = self.dropped = 0
        self.hard_limited: list[Any] = []  # children past an ESP hard limit, to report

    def child_up(self, child: Any) -> None:
        from pyl2tp.esp import InboundSA, OutboundSA

        self.inbound[child.inbound.spi] = (InboundSA(child.inbound), child)
        self.outbound = (OutboundSA(child.outbound, os.urandom), child.peer, child)

    def child_down(self, child: Any) -> None:
        self.inbound.pop(child.inbound.spi, None)
        if self.outbound is not None and self.outbound[0].spi == child.outbound.spi:
            self.outbound = None

    def esp_received(self, packet: bytes) -> Any:
        """Decrypt and deliver one ESP packet; the child SA it came on, or None."""
        from pyl2tp.esp import ESPError

        entry = self.inbound.get(int.from_bytes(packet[:4], "big"))
        if entry is None:
            self.dropped += 1
            return None
        sa, child = entry
        try:
            next_header, inner = sa.decrypt(packet)
        except ESPError:
            self.dropped += 1
            return None
        if next_header != _IPV4:
            self.dropped += 1
            return None
        self.esp_in += 1
        os.write(self.fd, inner)
        if sa.hard_limit_reached and child not in self.hard_limited:
            self.hard_limited.append(child)
        return child

    def tun_readable(self) -> None:
        from pyl2tp.esp import SAExpiredError

        while True:
            try:
                packet = os.read(self.fd, 65535)
            except BlockingIOError:
                return
            if self.outbound is None:
                self.dropped += 1
                continue
            sa, peer, child = self.outbound
            try:
                self.sock.sendto(sa.encrypt(packet, _IPV4), peer)
            except SAExpiredError:
                self.dropped += 1
                continue
            self.esp_out += 1
            if sa.hard_limit_reached and child not in self.hard_limited:
                self.hard_limited.append(child)


def run_ours(out_path: str, local_ip: str, psk: str, peer_ip: str | None, *,
             tunnel: tuple[str, str] | None = None, inner: str | None = None,
             aggressive: bool = False, sa_lifetime_kb: int = 0,
             sa_lifetime: float = 3600.0, pfs_group: int | None = None, rekey: bool = False,
             keylog: str | None = None, duration: float = 90.0) -> None:
    from pyl2tp.ike.endpoint import IKEConfig, IKEEndpoint
    from pyl2tp.ike.events import ChildSADeleted, ChildSAEstablished
    from pyl2tp.ike.sa import TunnelSelectors
    from pyl2tp.keylog import KeyLog

    config = IKEConfig(psk=psk.encode(), tunnel_ok=True, aggressive=aggressive,
                       sa_lifetime_kb=sa_lifetime_kb, sa_lifetime=sa_lifetime,
                       pfs_group=pfs_group, rekey=rekey)
    ep = IKEEndpoint(config, random_bytes=os.urandom,
                     keylog=KeyLog(keylog) if keylog else None)
    socks = {}
    for port in (500, 4500):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((local_ip, port))
        socks[port] = s
    gw = Gateway(inner, tunnel[1], socks[4500]) if tunnel and inner else None
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    if peer_ip:
        ts = TunnelSelectors(*tunnel) if tunnel else None
        ep.initiate(peer_ip, time.monotonic(), local=(local_ip, 500), tunnel=ts)
    logged = 0
    readers: list[Any] = [*socks.values(), *([gw.fd] if gw else [])]
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        now = time.monotonic()
        for data, peer, _local, nat_t in ep.datagrams_to_send(now):
            if nat_t:
                socks[4500].sendto(b"\x00\x00\x00\x00" + data, peer)
            else:
                socks[500].sendto(data, peer)
        for ev in ep.next_events():
            if gw is not None and isinstance(ev, ChildSAEstablished):
                gw.child_up(ev.child)
            elif gw is not None and isinstance(ev, ChildSADeleted):
                gw.child_down(ev.child)
            out.write(json.dumps(_event_json(ev)) + "\n")
        timer = ep.get_timer()
        wait = 0.2 if timer is None else max(0.0, min(0.2, timer - now))
        ready, _, _ = select.select(readers, [], [], wait)
        now = time.monotonic()
        for s in ready:
            if gw is not None and s == gw.fd:
                gw.tun_readable()
                continue
            data, addr = s.recvfrom(65535)
            port = s.getsockname()[1]
            if port == 4500:
                if data == b"\xff":  # NAT-keepalive (RFC 3948 2.3)
                    continue
                if data[:4] != b"\x00\x00\x00\x00":  # ESP (RFC 3948 2.2)
                    record: dict[str, Any] = {"event": "esp", "spi": data[:4].hex()}
                    if logged < ESP_LOGGED:
                        record["data"] = data.hex()
                        logged += 1
                    child = gw.esp_received(data) if gw is not None else None
                    if child is not None:
                        ep.child_traffic(child, now)  # RFC 3706 5: traffic, no DPD
                    out.write(json.dumps(record) + "\n")
                    continue
                data = data[4:]
            ep.datagram_received(data, addr, (local_ip, port), now, nat_t=port == 4500)
        while gw is not None and gw.hard_limited:  # as the daemon's shell does
            ep.child_hard_limit(gw.hard_limited.pop(), now)
        timer = ep.get_timer()
        if timer is not None and timer <= now:
            ep.handle_timer(now)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.harness.strongswan")
    ap.add_argument("out")
    ap.add_argument("local_ip")
    ap.add_argument("psk")
    ap.add_argument("--peer", help="initiate to this address")
    ap.add_argument("--tunnel", nargs=2, metavar=("LOCAL_NET", "REMOTE_NET"))
    ap.add_argument("--inner", help="our address inside the tunnel (on the TUN device)")
    ap.add_argument("--aggressive", action="store_true")
    ap.add_argument("--sa-lifetime-kb", type=int, default=0)
    ap.add_argument("--sa-lifetime", type=float, default=3600.0)
    ap.add_argument("--pfs", type=int, help="propose PFS with this DH group")
    ap.add_argument("--rekey", action="store_true")
    ap.add_argument("--keylog", help="write IKE and ESP keys here (tshark's tables)")
    a = ap.parse_args(argv)
    run_ours(a.out, a.local_ip, a.psk, a.peer, tunnel=tuple(a.tunnel) if a.tunnel else None,
             inner=a.inner, aggressive=a.aggressive, sa_lifetime_kb=a.sa_lifetime_kb,
             sa_lifetime=a.sa_lifetime, pfs_group=a.pfs, rekey=a.rekey, keylog=a.keylog)


if __name__ == "__main__":
    main(sys.argv[1:])
