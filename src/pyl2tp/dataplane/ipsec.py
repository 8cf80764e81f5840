"""L2TP inside ESP: the SA tables and the transport-mode wrapping, sans-I/O.

Inbound, an ESP packet is looked up by SPI, decrypted and checked (anti-replay,
ICV, padding: `esp.sa`), and its inner UDP datagram to port 1701 becomes an L2TP
datagram from the "L2TP peer" of that SA. Outbound, an L2TP datagram for an L2TP
peer that has an SA is wrapped in UDP and ESP.

The L2TP peer of an SA is the address the L2TP layer keys the tunnel by: with
UDP encapsulation the peer's outer address and NAT-mapped port (so several
clients behind one NAT address stay apart), without it the peer's address and
its inner UDP port.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

from pyl2tp.errors import ParseError
from pyl2tp.esp import ESPError, InboundSA, OutboundSA, SAExpiredError
from pyl2tp.ike.sa import ChildSA
from pyl2tp.wire.esp import transport_inner, transport_strip

log = logging.getLogger("pyl2tp.esp")

Addr = tuple[str, int]
UDP = 17
L2TP_PORT = 1701


@dataclass(slots=True)
class IPsecStats:
    """Counters of the ESP data path (`pyl2tp ctl status`)."""

    esp_in: int = 0
    esp_out: int = 0
    unknown_spi: int = 0
    dropped: int = 0  # replay, ICV, padding...: the SA's own stats say which
    not_l2tp: int = 0
    plain_l2tp_dropped: int = 0  # `[ipsec] require`: L2TP that did not come through ESP
    no_sa: int = 0  # L2TP to send to a peer without an SA while IPsec is required

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class _Installed:
    child: ChildSA
    inbound: InboundSA
    outbound: OutboundSA
    l2tp_peer: Addr
    inner_port: int = L2TP_PORT  # the peer's inner UDP port, learnt from its packets
    local_ip: str = ""
    peer_ip: str = ""
    defer_send: bool = False  # a rekey we initiated: send on it once the peer uses it
    soft_reported: bool = False
    hard_reported: bool = False


class _Limited(Protocol):
    child: ChildSA
    soft_reported: bool
    hard_reported: bool


class LimitReports:
    """Child SAs past their soft ESP limit (rekey) or hard one (delete), each reported
    once per SA; the shell drains both lists."""

    def __init__(self) -> None:
        self.soft_limited: list[ChildSA] = []
        self.hard_limited: list[ChildSA] = []

    def _limits(self, entry: _Limited, soft: bool, hard: bool) -> None:
        if hard and not entry.hard_reported:
            entry.hard_reported = True
            self.hard_limited.append(entry.child)
        elif soft and not entry.soft_reported:
            entry.soft_reported = True
            self.soft_limited.append(entry.child)


#: a rekey we initiated sends on the new SA once the peer has used it, or after the Quick
#: Mode round trip plus a margin (QM3 has arrived by then), within these bounds (seconds)
PROMOTE_MARGIN = 0.02
PROMOTE_MIN = 0.05
PROMOTE_MAX = 1.0


def promote_after(rtt: float) -> float:
    """Seconds after a rekey we initiated until the new SA sends even if the peer has not
    used it yet (traffic one way only); ``rtt`` is QM1 to QM2."""
    return min(max(rtt + PROMOTE_MARGIN, PROMOTE_MIN), PROMOTE_MAX)


def l2tp_peer_of(child: ChildSA) -> Addr:
    """The address the L2TP layer uses for the peer behind `child`."""
    if child.udp_encap:
        return child.peer
    return (child.peer[0], L2TP_PORT)


class IPsecLayer(LimitReports):
    """Installed child SAs by inbound SPI and by L2TP peer."""

    def __init__(self, *, require: bool, random_bytes: Callable[[int], bytes]) -> None:
        super().__init__()
        self.require = require
        self.random_bytes = random_bytes
        self.stats = IPsecStats()
        self._by_spi: dict[int, _Installed] = {}
        self._by_peer: dict[Addr, _Installed] = {}

    def install(self, child: ChildSA, *, defer_send: bool = False) -> Addr:
        """Start using `child`; returns its L2TP peer. A newer SA for a peer replaces the older
        for sending; the older keeps decrypting until it is deleted (no loss on rekey).

        ``defer_send`` (we initiated the rekey; the peer may not have the SA yet): the older
        SA keeps sending until a packet arrives on the newer one, the shell calls `promote`,
        or the older is removed."""
        entry = _Installed(
            child=child,
            inbound=InboundSA(child.inbound),
            outbound=OutboundSA(child.outbound, self.random_bytes),
            l2tp_peer=l2tp_peer_of(child),
            local_ip=child.local[0],
            peer_ip=child.peer[0],
        )
        self._by_spi[child.inbound.spi] = entry
        if defer_send and entry.l2tp_peer in self._by_peer:
            entry.defer_send = True
        else:
            self._by_peer[entry.l2tp_peer] = entry
        return entry.l2tp_peer

    def promote(self, child: ChildSA) -> None:
        """Send on `child` from now on, if `install` deferred it and it is still there."""
        entry = self._by_spi.get(child.inbound.spi)
        if entry is not None and entry.defer_send:
            entry.defer_send = False
            self._by_peer[entry.l2tp_peer] = entry

    def remove(self, child: ChildSA) -> None:
        entry = self._by_spi.pop(child.inbound.spi, None)
        if entry is not None and self._by_peer.get(entry.l2tp_peer) is entry:
            del self._by_peer[entry.l2tp_peer]
            # Fall back to another live SA of the same peer (the newest), if one remains.
            for other in self._by_spi.values():
                if other.l2tp_peer == entry.l2tp_peer:
                    self._by_peer[entry.l2tp_peer] = other
                    other.defer_send = False

    def inbound_packets(self, child: ChildSA) -> int:
        """Packets that decrypted on `child`'s inbound SA (0 if it is not installed)."""
        entry = self._by_spi.get(child.inbound.spi)
        return entry.inbound.stats.packets if entry is not None else 0

    def has_sa(self, l2tp_peer: Addr) -> bool:
        return l2tp_peer in self._by_peer

    def child_for(self, l2tp_peer: Addr) -> ChildSA | None:
        entry = self._by_peer.get(l2tp_peer)
        return entry.child if entry is not None else None

    def __len__(self) -> int:
        return len(self._by_spi)

    # -- inbound ---------------------------------------------------------------------------

    def decapsulate(self, packet: bytes, source: Addr) -> tuple[bytes, Addr] | None:
        """An ESP packet (from its SPI on) from `source`: (L2TP datagram, L2TP peer) or None."""
        self.stats.esp_in += 1
        if len(packet) < 8:
            self.stats.dropped += 1
            return None
        spi = int.from_bytes(packet[:4])
        entry = self._by_spi.get(spi)
        if entry is None:
            self.stats.unknown_spi += 1
            return None
        try:
            next_header, inner = entry.inbound.decrypt(packet)
        except ESPError:
            self.stats.dropped += 1
            return None
        if next_header != UDP or entry.child.mode != "transport":
            self.stats.not_l2tp += 1
            return None
        try:
            udp = transport_strip(inner)
        except ParseError:
            self.stats.not_l2tp += 1
            return None
        if udp.dport != L2TP_PORT:
            self.stats.not_l2tp += 1
            return None
        entry.inner_port = udp.sport
        self._limits(entry, entry.inbound.soft_limit_reached, entry.inbound.hard_limit_reached)
        if entry.defer_send:
            # The peer sends on the new SA, so it has it: switch sending over.
            self.promote(entry.child)
        if entry.child.udp_encap and source != entry.l2tp_peer and source[0] == entry.peer_ip:
            # The NAT moved the peer's mapping: follow it (RFC 3947 5.2 spirit).
            self._move(entry, source)
        return udp.payload, entry.l2tp_peer

    def _move(self, entry: _Installed, source: Addr) -> None:
        if self._by_peer.get(entry.l2tp_peer) is entry:
            del self._by_peer[entry.l2tp_peer]
        entry.l2tp_peer = source
        self._by_peer[source] = entry

    # -- outbound --------------------------------------------------------------------------

    def encapsulate(self, data: bytes, l2tp_peer: Addr) -> tuple[bytes, Addr, bool] | None:
        """An L2TP datagram for `l2tp_peer`: (ESP packet, where to send it, UDP-encapsulated).

        None when the peer has no SA (the caller sends plain L2TP unless IPsec is required).
        """
        entry = self._by_peer.get(l2tp_peer)
        if entry is None:
            return None
        # IPv4 inner checksum 0 is allowed (RFC 768) and NAT makes it moot (RFC 3948 3.1.2).
        segment = transport_inner(
            entry.local_ip, entry.peer_ip, data, dport=entry.inner_port, checksum=False
        )
        try:
            packet = entry.outbound.encrypt(segment, UDP)
        except SAExpiredError:
            self.stats.dropped += 1
            return None
        self.stats.esp_out += 1
        self._limits(
            entry, entry.outbound.soft_limit_reached, entry.outbound.hard_limit_reached
        )
        child = entry.child
        if child.udp_encap:
            return packet, entry.l2tp_peer, True
        return packet, (child.peer[0], 0), False

    def views(self) -> list[dict[str, object]]:
        """The installed SAs for `pyl2tp ctl`."""
        out: list[dict[str, object]] = []
        for entry in self._by_spi.values():
            c = entry.child
            out.append(
                {
                    "peer": f"{entry.l2tp_peer[0]}:{entry.l2tp_peer[1]}",
                    "peer_id": c.peer_id,
                    "spi_in": f"{c.inbound.spi:08x}",
                    "spi_out": f"{c.outbound.spi:08x}",
                    "enc": c.inbound.enc,
                    "auth": c.inbound.auth,
                    "mode": c.mode,
                    "udp_encap": c.udp_encap,
                    "packets_in": entry.inbound.stats.packets,
                    "packets_out": entry.outbound.packets,
                }
            )
        return out

    def sa_summary(self, l2tp_peer: Addr) -> str | None:
        """`aes-cbc/hmac-sha1-96 transport udp-encap` for the session view, or None."""
        entry = self._by_peer.get(l2tp_peer)
        if entry is None:
            return None
        c = entry.child
        return f"{c.outbound.transform} {c.mode}{' udp-encap' if c.udp_encap else ''}"
