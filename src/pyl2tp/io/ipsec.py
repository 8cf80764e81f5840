"""The asyncio shell of IPsec: UDP 500 and 4500, raw ESP, the IKE timer, and the
hooks that carry L2TP through ESP.

IKE messages go to the `IKEEndpoint`; ESP packets (raw protocol 50, or UDP 4500
after the non-ESP-marker check of RFC 3948) go to the `IPsecLayer`, whose L2TP
datagrams are fed to the L2TP endpoint as if they came from the SA's L2TP peer.
The L2TP driver asks `send_l2tp` first for every datagram it sends.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyl2tp.dataplane.ipsec import IPsecLayer, promote_after
from pyl2tp.esp import IKE_MARKER, classify_4500, keepalive
from pyl2tp.ike.endpoint import ChildSA, IKEEndpoint
from pyl2tp.ike.events import ChildSADeleted, ChildSAEstablished, Event
from pyl2tp.io.timer import DeadlineTimer
from pyl2tp.io.udp import BURST, EndpointDriver, grow_receive_buffer

if TYPE_CHECKING:
    from pyl2tp.sites import SiteManager

log = logging.getLogger("pyl2tp.ipsec")

Addr = tuple[str, int]
IKE_PORT = 500
NAT_T_PORT = 4500
IPPROTO_ESP = 50
#: RFC 3948 4: keepalives every 20 s keep a NAT mapping open
KEEPALIVE_INTERVAL = 20.0


class IPsecDriver:
    """IKE and ESP sockets for one L2TP driver."""

    def __init__(
        self,
        l2tp: EndpointDriver,
        ike: IKEEndpoint,
        layer: IPsecLayer,
        *,
        on_event: Callable[[Event], None] | None = None,
        rekey: bool = True,
    ) -> None:
        self.l2tp = l2tp
        ike.config.rekey = rekey  # rekey before expiry (the sans-I/O default is off)
        ike.config.inbound_packets = self._inbound_packets  # RFC 3706 5: traffic is life
        self.ike = ike
        self.layer = layer
        self.on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._ike: dict[str, socket.socket] = {}
        self._natt: dict[str, socket.socket] = {}
        self._raw: dict[str, socket.socket] = {}
        self._timer = DeadlineTimer(self._on_timer, "IKE")
        self._keepalive: asyncio.TimerHandle | None = None
        self.send_errors = 0
        #: site-to-site tunnels (tunnel-mode ESP), when the server has [[sites]]
        self.sites: SiteManager | None = None
        l2tp.outbound_hook = self.send_l2tp
        if layer.require:
            l2tp.plain_filter = self._plain_l2tp

    def _inbound_packets(self, child: ChildSA) -> int:
        """ESP packets received so far on `child` (L2TP or site tunnel)."""
        count = self.layer.inbound_packets(child)
        if self.sites is not None:
            count += self.sites.table.inbound_packets(child)
        return count

    async def listen(self, host: str) -> None:
        """UDP 500 and 4500 and raw ESP on `host`."""
        for port, table in ((IKE_PORT, self._ike), (NAT_T_PORT, self._natt)):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                grow_receive_buffer(sock)
                sock.bind((host, port))
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
            table[host] = sock
            self._loop.add_reader(sock.fileno(), self._readable_udp, sock, (host, port))
        try:
            raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_ESP)
            grow_receive_buffer(raw)
            raw.bind((host, 0))
            raw.setblocking(False)
        except OSError as exc:  # no CAP_NET_RAW: NAT-T (UDP 4500) still works
            log.warning("raw ESP socket on %s unavailable (%s): only ESP in UDP 4500", host, exc)
            return
        self._raw[host] = raw
        self._loop.add_reader(raw.fileno(), self._readable_raw, raw, host)
        log.info("IKE on %s:500 and :4500, raw ESP on %s", host, host)

    def close(self) -> None:
        self._timer.cancel()
        if self._keepalive is not None:
            self._keepalive.cancel()
        for table in (self._ike, self._natt, self._raw):
            for sock in table.values():
                self._loop.remove_reader(sock.fileno())
                sock.close()
            table.clear()

    def now(self) -> float:
        return self._loop.time()

    # -- input ------------------------------------------------------------------------------

    def _readable_udp(self, sock: socket.socket, local: Addr) -> None:
        now = self.now()
        natt = local[1] == NAT_T_PORT
        delivered = False
        for _ in range(BURST):
            try:
                data, src = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            peer: Addr = (src[0], src[1])
            if not natt:
                self._to_ike(data, peer, local, now, nat_t=False)
                continue
            kind = classify_4500(data)
            if kind == "ike":
                self._to_ike(data[len(IKE_MARKER) :], peer, local, now, nat_t=True)
                # Install what this message finished (Quick Mode 3) before the next datagram
                # of the burst: it may be the first ESP packet of the new SA.
                self.transmit()
            elif kind == "esp":
                delivered |= self._to_l2tp(data, peer, local, now)
        self.transmit()
        if delivered:
            self.l2tp.transmit()

    def _readable_raw(self, sock: socket.socket, host: str) -> None:
        now = self.now()
        delivered = False
        for _ in range(BURST):
            try:
                data, src = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            if len(data) < 20:
                continue
            header = (data[0] & 0x0F) * 4  # raw IPv4 sockets deliver the IP header
            delivered |= self._to_l2tp(data[header:], (src[0], 0), (host, 0), now)
        if delivered:
            self.l2tp.transmit()

    def _to_ike(self, data: bytes, peer: Addr, local: Addr, now: float, *, nat_t: bool) -> None:
        try:
            self.ike.datagram_received(data, peer, local, now, nat_t=nat_t)
        except Exception:  # a bug must not take the daemon down; make it loud
            log.exception("unexpected error handling IKE from %s:%d", *peer)

    def _to_l2tp(self, packet: bytes, source: Addr, local: Addr, now: float) -> bool:
        sites = self.sites
        if sites is not None and sites.table.owns(int.from_bytes(packet[:4])):
            sites.esp_received(packet, source)
            return False
        result = self.layer.decapsulate(packet, source)
        if result is None:
            return False
        data, l2tp_peer = result
        if self.layer.soft_limited or self.layer.hard_limited:
            self._loop.call_soon(self.transmit)
        self.l2tp.inject(data, l2tp_peer, (local[0], 1701), now)
        return True

    def _plain_l2tp(self, peer: Addr) -> bool:
        """`[ipsec] require`: plain L2TP is dropped and counted."""
        self.layer.stats.plain_l2tp_dropped += 1
        return False

    # -- output -----------------------------------------------------------------------------

    def send_l2tp(self, data: bytes, peer: Addr, local: Addr | None) -> bool:
        """The L2TP driver's hook: True when the datagram went into ESP (or was dropped)."""
        wrapped = self.layer.encapsulate(data, peer)
        if wrapped is None:
            if self.layer.require:
                self.layer.stats.no_sa += 1
                return True
            return False
        packet, dest, udp = wrapped
        self.send_esp(packet, dest, udp, local[0] if local is not None else None)
        if self.layer.soft_limited or self.layer.hard_limited:
            self._loop.call_soon(self.transmit)
        return True

    def send_esp(self, packet: bytes, dest: Addr, udp: bool, host: str | None) -> None:
        """An ESP packet to `dest`: in UDP 4500 or raw, from `host`'s socket if we have one."""
        table = self._natt if udp else self._raw
        sock = table.get(host) if host is not None else None
        if sock is None and table:
            sock = next(iter(table.values()))
        if sock is None:
            self.send_errors += 1
            return
        try:
            sock.sendto(packet, dest)
        except OSError:
            self.send_errors += 1

    def call_soon_transmit(self) -> None:
        """Run `transmit` from the loop soon (ESP limits reached inside a packet handler)."""
        self._loop.call_soon(self.transmit)

    def transmit(self) -> None:
        """Send IKE output, handle IKE events, re-arm the IKE timer."""
        ike = self.ike
        if self.layer.soft_limited:
            soft, self.layer.soft_limited = self.layer.soft_limited, []
            for child in soft:
                ike.child_soft_limit(child, self.now())
        if self.layer.hard_limited:
            hard, self.layer.hard_limited = self.layer.hard_limited, []
            for child in hard:
                ike.child_hard_limit(child, self.now())
        if self.sites is not None:
            sites = self.sites.table
            soft, sites.soft_limited = sites.soft_limited, []
            hard, sites.hard_limited = sites.hard_limited, []
            for child in soft:
                ike.child_soft_limit(child, self.now())
            for child in hard:
                ike.child_hard_limit(child, self.now())
        for data, peer, local, nat_t in ike.datagrams_to_send(self.now()):
            table = self._natt if nat_t else self._ike
            sock = table.get(local[0]) or (next(iter(table.values())) if table else None)
            if sock is None:
                self.send_errors += 1
                continue
            try:
                sock.sendto(IKE_MARKER + data if nat_t else data, peer)
            except OSError:
                self.send_errors += 1
        for event in ike.next_events():
            if self.sites is not None and self.sites.ike_event(event):
                pass  # a site's tunnel: the site manager installed or removed it
            elif isinstance(event, ChildSAEstablished):
                child = event.child
                # the IKE endpoint key-logs it
                l2tp_peer = self.layer.install(child, defer_send=event.initiator)
                if event.initiator:
                    # Our QM3 reaches the peer about half a round trip after we sent it;
                    # traffic that flows only our way never proves it, so stop waiting then.
                    self._loop.call_later(promote_after(event.rtt), self.layer.promote, child)
                log.info(
                    "ESP SA up with %s (id %s): in %08x out %08x %s %s%s",
                    f"{l2tp_peer[0]}:{l2tp_peer[1]}",
                    child.peer_id,
                    child.inbound.spi,
                    child.outbound.spi,
                    child.outbound.transform,
                    child.mode,
                    " in UDP 4500" if child.udp_encap else "",
                )
                if child.udp_encap:
                    self.start_keepalives()
            elif isinstance(event, ChildSADeleted):
                self.layer.remove(event.child)
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception:
                    log.exception("IKE event handler failed on %r", event)
        self._arm()

    def _arm(self) -> None:
        self._timer.arm(self.ike.get_timer())

    def _on_timer(self, now: float) -> None:
        try:
            self.ike.handle_timer(now)
        finally:
            self.transmit()

    def start_keepalives(self) -> None:
        """RFC 3948 4: keep NAT mappings open while a UDP-encapsulated SA exists."""
        if self._keepalive is None:
            self._keepalive = self._loop.call_later(KEEPALIVE_INTERVAL, self._send_keepalives)

    def _send_keepalives(self) -> None:
        """RFC 3948 4: a one-byte 0xFF datagram to every UDP-encapsulated peer."""
        self._keepalive = None
        peers = {c.peer: c.local[0] for c in self.ike.child_sas() if c.udp_encap}
        for peer, host in peers.items():
            sock = self._natt.get(host) or (next(iter(self._natt.values())) if self._natt else None)
            if sock is not None:
                try:
                    sock.sendto(keepalive(), peer)
                except OSError:
                    self.send_errors += 1
        if peers:
            self.start_keepalives()
