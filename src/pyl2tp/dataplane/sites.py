"""Site-to-site tunnels (tunnel-mode ESP between gateways), sans-I/O.

A site is a peer gateway and the networks on each side (``local`` behind us, ``remote``
behind it). :class:`SitePolicy` tells the IKE responder which tunnels a peer may have
(RFC 4301 4.4.1: the SPD decides). :class:`SiteTable` holds the installed tunnel-mode
child SAs: inbound, an ESP packet is decrypted and its inner IPv4 packet must lie inside
the child's selectors (RFC 4301 5.2: source in remote, destination in local) before it
goes to the site device; outbound, an IPv4 packet read from the device is matched by
destination (longest remote prefix first) and source to a child SA and encrypted with
next header 4 (RFC 4303 2.6). Lookups are dict and short-list work; drops are counted.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

from pyl2tp.dataplane.ipsec import LimitReports
from pyl2tp.esp import ESPError, InboundSA, OutboundSA, SAExpiredError
from pyl2tp.ike.sa import ChildSA, TunnelSelectors

__all__ = ["IPV4", "Site", "SitePolicy", "SiteStats", "SiteTable"]

Addr = tuple[str, int]
#: RFC 4303 2.6: the next header of a tunnelled IPv4 packet (IP-in-IP, protocol 4)
IPV4 = 4
_Net = tuple[int, int]  # (network, mask) as integers


def _net(text: str) -> _Net:
    n = ipaddress.IPv4Network(text)
    return int(n.network_address), int(n.netmask)


def _within(inner: str, outer: str) -> bool:
    a, b = ipaddress.ip_network(inner), ipaddress.ip_network(outer)
    return a.version == b.version == 4 and a.subnet_of(b)


@dataclass(slots=True)
class SiteStats:
    """Counters of one site (`pyl2tp ctl status`)."""

    packets_in: int = 0  # inner packets delivered to the site device
    bytes_in: int = 0
    packets_out: int = 0  # inner packets encrypted to the peer
    bytes_out: int = 0
    policy_dropped: int = 0  # RFC 4301 5.2: inner packet outside the child's selectors
    no_sa: int = 0  # a packet for the site while it has no SA for it
    esp_dropped: int = 0  # replay, ICV, padding, expired SA, not IPv4 inside

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class Site:
    """One configured site and its counters."""

    name: str
    peer: str
    local: tuple[str, ...]
    remote: tuple[str, ...]
    initiate: bool = False
    stats: SiteStats = field(default_factory=SiteStats)

    def pairs(self) -> list[TunnelSelectors]:
        """One tunnel per (local, remote) network pair: what an initiator asks for."""
        return [TunnelSelectors(loc, rem) for loc in self.local for rem in self.remote]


class SitePolicy:
    """The sites by peer address; the IKE responder's tunnel policy (`TunnelPolicy`)."""

    def __init__(self, sites: Sequence[Site]) -> None:
        self.sites = list(sites)
        self.by_peer = {s.peer: s for s in self.sites}
        self.by_name = {s.name: s for s in self.sites}
        self._remote = [(_net(r), s) for s in self.sites for r in s.remote]

    def tunnel_peer(self, peer_ip: str) -> bool:
        return peer_ip in self.by_peer

    def tunnel_allowed(self, peer_ip: str, selectors: TunnelSelectors) -> bool:
        """Inside one (local, remote) pair of the peer's site; narrower is fine."""
        site = self.by_peer.get(peer_ip)
        if site is None:
            return False
        return any(_within(selectors.local, loc) for loc in site.local) and any(
            _within(selectors.remote, rem) for rem in site.remote
        )

    def site_for(self, dst: int) -> Site | None:
        """The site whose remote networks hold ``dst`` (configured, not negotiated)."""
        for (net, mask), site in self._remote:
            if dst & mask == net:
                return site
        return None


@dataclass(slots=True, eq=False)
class _Tunnel:
    child: ChildSA
    site: Site
    inbound: InboundSA
    outbound: OutboundSA
    local: _Net
    remote: _Net
    dest: Addr  # where ESP goes: (peer, NAT-mapped port) in UDP, (peer, 0) raw
    host: str  # our address on this SA (the socket to send from)
    defer_send: bool = False
    soft_reported: bool = False
    hard_reported: bool = False


class SiteTable(LimitReports):
    """Installed tunnel-mode child SAs: by inbound SPI and by (remote, local) selectors."""

    def __init__(self, policy: SitePolicy, *, random_bytes: Callable[[int], bytes]) -> None:
        super().__init__()
        self.policy = policy
        self.random_bytes = random_bytes
        self._by_spi: dict[int, _Tunnel] = {}
        #: the SA that sends, per selectors (a rekey replaces it; the old one still decrypts)
        self._senders: dict[TunnelSelectors, _Tunnel] = {}
        #: (mask, {remote network: senders}), longest prefix first; rebuilt on change
        self._routes: list[tuple[int, dict[int, list[_Tunnel]]]] = []
        #: sites that dropped a packet for want of an SA since the shell last looked
        self.starved: set[str] = set()
        self.unknown_site = 0  # packets from the device for no configured site

    # -- SAs --------------------------------------------------------------------------------

    def install(self, child: ChildSA, *, defer_send: bool = False) -> Site | None:
        """Start using a tunnel-mode ``child``; None (not installed) when its peer is no
        site or it has no selectors. ``defer_send``: a rekey we initiated keeps the older SA
        sending until the peer uses the new one or `promote` is called."""
        site = self.policy.by_peer.get(child.peer[0])
        sel = child.selectors
        if site is None or sel is None or child.mode != "tunnel":
            return None
        try:
            local, remote = _net(sel.local), _net(sel.remote)
        except ValueError:  # IPv6 selectors: not carried by sites
            return None
        dest = child.peer if child.udp_encap else (child.peer[0], 0)
        entry = _Tunnel(
            child, site, InboundSA(child.inbound),
            OutboundSA(child.outbound, self.random_bytes), local, remote, dest, child.local[0],
        )
        self._by_spi[child.inbound.spi] = entry
        if defer_send and sel in self._senders:
            entry.defer_send = True
        else:
            self._senders[sel] = entry
            self._rebuild()
        return site

    def promote(self, child: ChildSA) -> None:
        entry = self._by_spi.get(child.inbound.spi)
        if entry is not None and entry.defer_send and child.selectors is not None:
            entry.defer_send = False
            self._senders[child.selectors] = entry
            self._rebuild()

    def remove(self, child: ChildSA) -> Site | None:
        entry = self._by_spi.pop(child.inbound.spi, None)
        if entry is None:
            return None
        sel = child.selectors
        assert sel is not None
        if self._senders.get(sel) is entry:
            del self._senders[sel]
            others = [e for e in self._by_spi.values() if e.child.selectors == sel]
            if others:  # fall back to the newest SA left for the same selectors
                newest = max(others, key=lambda e: e.child.created)
                newest.defer_send = False
                self._senders[sel] = newest
            self._rebuild()
        return entry.site

    def inbound_packets(self, child: ChildSA) -> int:
        """Packets that decrypted on `child`'s inbound SA (0 if it is not installed)."""
        entry = self._by_spi.get(child.inbound.spi)
        return entry.inbound.stats.packets if entry is not None else 0

    def owns(self, spi: int) -> bool:
        return spi in self._by_spi

    def children_of(self, site: Site) -> list[ChildSA]:
        return [e.child for e in self._by_spi.values() if e.site is site]

    def has_sender(self, selectors: TunnelSelectors) -> bool:
        return selectors in self._senders

    def _rebuild(self) -> None:
        by_mask: dict[int, dict[int, list[_Tunnel]]] = {}
        for entry in self._senders.values():
            net, mask = entry.remote
            by_mask.setdefault(mask, {}).setdefault(net, []).append(entry)
        self._routes = sorted(by_mask.items(), key=lambda item: -item[0])

    # -- packets ----------------------------------------------------------------------------

    def decapsulate(self, packet: bytes, source: Addr) -> bytes | None:
        """An ESP packet (from its SPI on) of an installed tunnel: the inner IPv4 packet,
        or None (dropped and counted)."""
        entry = self._by_spi.get(int.from_bytes(packet[:4]))
        if entry is None:
            return None
        stats = entry.site.stats
        try:
            next_header, inner = entry.inbound.decrypt(packet)
        except ESPError:
            stats.esp_dropped += 1
            return None
        self._limits(entry, entry.inbound.soft_limit_reached, entry.inbound.hard_limit_reached)
        if next_header != IPV4 or len(inner) < 20 or inner[0] >> 4 != 4:
            stats.esp_dropped += 1
            return None
        # RFC 4301 5.2: the inner header must match the SA's selectors.
        src = int.from_bytes(inner[12:16])
        dst = int.from_bytes(inner[16:20])
        rnet, rmask = entry.remote
        lnet, lmask = entry.local
        if src & rmask != rnet or dst & lmask != lnet:
            stats.policy_dropped += 1
            return None
        if entry.defer_send:
            self.promote(entry.child)  # the peer uses the new SA: it has it
        if entry.child.udp_encap and source != entry.dest and source[0] == entry.dest[0]:
            entry.dest = source  # the NAT moved the peer's mapping (RFC 3947 5.2 spirit)
        stats.packets_in += 1
        stats.bytes_in += len(inner)
        return inner

    def encapsulate(self, packet: bytes) -> tuple[bytes, Addr, bool, str] | None:
        """An IPv4 packet read from the site device: (ESP packet, destination,
        UDP-encapsulated, our address), or None (no SA: dropped and counted)."""
        if len(packet) < 20 or packet[0] >> 4 != 4:
            self.unknown_site += 1
            return None
        src = int.from_bytes(packet[12:16])
        dst = int.from_bytes(packet[16:20])
        for mask, table in self._routes:
            candidates = table.get(dst & mask)
            if candidates is None:
                continue
            for entry in candidates:
                net, lmask = entry.local
                if src & lmask == net:
                    return self._seal(entry, packet)
        site = self.policy.site_for(dst)
        if site is None:
            self.unknown_site += 1
        else:
            site.stats.no_sa += 1
            self.starved.add(site.name)
        return None

    def _seal(self, entry: _Tunnel, packet: bytes) -> tuple[bytes, Addr, bool, str] | None:
        stats = entry.site.stats
        try:
            sealed = entry.outbound.encrypt(packet, IPV4)
        except SAExpiredError:
            stats.esp_dropped += 1
            return None
        self._limits(entry, entry.outbound.soft_limit_reached, entry.outbound.hard_limit_reached)
        stats.packets_out += 1
        stats.bytes_out += len(packet)
        return sealed, entry.dest, entry.child.udp_encap, entry.host

    # -- views ------------------------------------------------------------------------------

    def sa_views(self, site: Site) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for e in self._by_spi.values():
            if e.site is not site:
                continue
            c = e.child
            assert c.selectors is not None
            out.append(
                {
                    "local": c.selectors.local,
                    "remote": c.selectors.remote,
                    "spi_in": f"{c.inbound.spi:08x}",
                    "spi_out": f"{c.outbound.spi:08x}",
                    "transform": c.outbound.transform,
                    "udp_encap": c.udp_encap,
                    "sending": self._senders.get(c.selectors) is e,
                    "packets_in": e.inbound.stats.packets,
                    "packets_out": e.outbound.packets,
                }
            )
        return out
