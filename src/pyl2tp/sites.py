"""Site-to-site tunnels in the server: the site TUN device, its routes, the initiator's
supervision and the status view (the packet work is :mod:`pyl2tp.dataplane.sites`).

Every ``[[sites]]`` entry is a peer gateway; tunnel-mode child SAs with it carry IPv4
between the ``local`` and ``remote`` networks. Packets for the remote networks are routed
into one TUN device (``[ipsec] site_tun``), encrypted and sent to the site's peer; ESP from
the peer is decrypted, checked against the child's selectors and written to the device.
A site with ``initiate = true`` runs Main Mode and one Quick Mode per (local, remote) pair
at start, and again (with back-off) whenever a tunnel is missing: deleted, failed, or the
peer declared dead by DPD. Rekeying is the IKE endpoint's, as for L2TP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

from pyl2tp.dataplane.ipsec import promote_after
from pyl2tp.dataplane.sites import Site, SitePolicy, SiteTable
from pyl2tp.esp import RandomPool
from pyl2tp.ike.events import (
    AuthenticationFailed,
    ChildSADeleted,
    ChildSAEstablished,
    Event,
    IKESADeleted,
    NegotiationFailed,
    PeerDead,
)
from pyl2tp.io import netlink
from pyl2tp.io.tun import TunDevice, open_tun

if TYPE_CHECKING:
    from pyl2tp.config import ServerConfig
    from pyl2tp.io.ipsec import IPsecDriver

__all__ = ["SiteManager"]

log = logging.getLogger("pyl2tp.sites")

#: MTU of the site device: room for ESP, UDP and the outer IPv4 header within 1500
SITE_MTU = 1400
#: an initiating site with a tunnel missing tries again after this, doubling up to the cap
RETRY_INITIAL = 1.0
RETRY_CAP = 60.0
#: and checks its tunnels at least this often
WATCH_INTERVAL = 30.0


class _Supervisor:
    """Retry state of one initiating site."""

    __slots__ = ("delay", "due", "handle")

    def __init__(self) -> None:
        self.delay = RETRY_INITIAL
        self.handle: asyncio.TimerHandle | None = None
        self.due = 0.0  # when ``handle`` fires


class SiteManager:
    """The sites of one server: policy for IKE, SA table, TUN device, routes, initiation."""

    def __init__(self, config: ServerConfig) -> None:
        sites = [
            Site(s.name, s.peer, tuple(s.local), tuple(s.remote), s.initiate)
            for s in config.sites
        ]
        self.policy = SitePolicy(sites)
        self.table = SiteTable(self.policy, random_bytes=RandomPool())
        self.tun_name = config.ipsec.site_tun
        self.listen = list(config.server.listen)
        self.tun: TunDevice | None = None
        self.ipsec: IPsecDriver | None = None
        self._routes: list[str] = []
        self._watch: dict[str, _Supervisor] = {s.name: _Supervisor() for s in sites if s.initiate}
        self._up: dict[str, float] = {}  # site name -> when its first tunnel came up
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, ipsec: IPsecDriver) -> None:
        """Open the site device, route the remote networks into it, start initiating."""
        self._loop = asyncio.get_running_loop()
        self.ipsec = ipsec
        fd, name = open_tun(self.tun_name, mtu=SITE_MTU)
        self.tun = TunDevice(fd, name, self._from_device)
        try:
            netlink.link_up(name, SITE_MTU)
            netlink.enable_forwarding(v4=True, v6=False)
            for site in self.policy.sites:
                for remote in site.remote:
                    netlink.add_route(remote, name)
                    self._routes.append(remote)
        except BaseException:
            self.close()
            raise
        ipsec.sites = self
        self.tun.start()
        for site in self.policy.sites:
            log.info(
                "site %s: peer %s, %s <-> %s%s", site.name, site.peer, ",".join(site.local),
                ",".join(site.remote), ", initiating" if site.initiate else ", responding",
            )
            if site.initiate:
                self._kick(site)
        ipsec.transmit()

    def close(self) -> None:
        """Stop initiating, remove the routes and the device (the SAs go with IKE)."""
        for sup in self._watch.values():
            if sup.handle is not None:
                sup.handle.cancel()
                sup.handle = None
        if self.ipsec is not None:
            self.ipsec.sites = None
        tun = self.tun
        if tun is not None:
            for remote in self._routes:
                with contextlib.suppress(OSError):
                    netlink.del_route(remote, tun.name)
            self._routes.clear()
            tun.close()
            self.tun = None

    # -- packets ----------------------------------------------------------------------------

    def _from_device(self, packet: bytes) -> None:
        out = self.table.encapsulate(packet)
        ipsec = self.ipsec
        if ipsec is None:
            return
        if out is None:
            if self.table.starved:
                self._starved()
            return
        data, dest, udp, host = out
        ipsec.send_esp(data, dest, udp, host)
        if self.table.soft_limited or self.table.hard_limited:
            ipsec.call_soon_transmit()

    def esp_received(self, packet: bytes, source: tuple[str, int]) -> None:
        """ESP on a site's SA (the IPsec driver checked the SPI is ours)."""
        inner = self.table.decapsulate(packet, source)
        if inner is not None and self.tun is not None:
            self.tun.write(inner)
        if (self.table.soft_limited or self.table.hard_limited) and self.ipsec is not None:
            self.ipsec.call_soon_transmit()

    def _starved(self) -> None:
        """Packets for an initiating site without an SA: try now unless a retry is due."""
        names, self.table.starved = self.table.starved, set()
        for name in names:
            sup = self._watch.get(name)
            if sup is not None and sup.delay == RETRY_INITIAL:  # not while backing off
                self._kick(self.policy.by_name[name])
                if self.ipsec is not None:
                    self.ipsec.call_soon_transmit()

    # -- IKE --------------------------------------------------------------------------------

    def ike_event(self, event: Event) -> bool:
        """An IKE event: True when it installed or removed a site's SA (the driver then
        leaves it alone)."""
        if isinstance(event, ChildSAEstablished) and event.child.mode == "tunnel":
            return self._child_up(event)
        if isinstance(event, ChildSADeleted) and self.table.owns(event.child.inbound.spi):
            self._child_down(event)
            return True
        peer = getattr(event, "peer", None)
        site = self.policy.by_peer.get(peer[0]) if isinstance(peer, tuple) else None
        if site is None:
            return False
        if isinstance(event, NegotiationFailed | AuthenticationFailed):
            what = event.notify if isinstance(event, NegotiationFailed) else event.reason
            log.warning("site %s: negotiation with %s failed (%s)", site.name, site.peer, what)
            self._retry(site)
        elif isinstance(event, PeerDead):
            assert self.ipsec is not None
            others = [
                i for i in self.ipsec.ike.ike_sas()
                if i.peer[0] == site.peer and i.cookies != event.cookies
                and i.state == "established"
            ]
            if others:  # e.g. both ends initiated at once: a stale ISAKMP SA went quiet
                log.info("site %s: an older ISAKMP SA with %s got no DPD answer; another one "
                         "is up", site.name, site.peer)
            else:
                log.warning("site %s: peer %s is dead (DPD)", site.name, site.peer)
            self._retry(site)
        elif isinstance(event, IKESADeleted) and event.reason != "rekeyed":
            self._retry(site)
        return False

    def _child_up(self, event: ChildSAEstablished) -> bool:
        child = event.child
        rekey = child.selectors is not None and self.table.has_sender(child.selectors)
        site = self.table.install(child, defer_send=event.initiator)
        if site is None:
            return False
        assert self.ipsec is not None and self._loop is not None and child.selectors is not None
        if event.initiator:
            self._loop.call_later(promote_after(event.rtt), self.table.promote, child)
        if child.udp_encap:
            self.ipsec.start_keepalives()
        first = site.name not in self._up
        if first:
            self._up[site.name] = self.ipsec.now()
        log.info(
            "site %s: tunnel %s <-> %s %s with %s (ESP in %08x out %08x %s%s)%s",
            site.name, child.selectors.local, child.selectors.remote,
            "rekeyed" if rekey else "up", site.peer, child.inbound.spi, child.outbound.spi,
            child.outbound.transform, " in UDP 4500" if child.udp_encap else "",
            ": site up" if first else "",
        )
        sup = self._watch.get(site.name)
        if sup is not None:
            if all(self.table.has_sender(p) for p in site.pairs()):
                sup.delay = RETRY_INITIAL
            self._kick(site)  # the other pairs, on this ISAKMP SA
        return True

    def _child_down(self, event: ChildSADeleted) -> None:
        child = event.child
        site = self.table.remove(child)
        if site is None or child.selectors is None:
            return
        if event.reason == "rekeyed" or self.table.has_sender(child.selectors):
            log.debug(
                "site %s: replaced SA in %08x out %08x deleted (%s)", site.name,
                child.inbound.spi, child.outbound.spi, event.reason,
            )
            return  # its successor carries on
        log.info(
            "site %s: tunnel %s <-> %s down (%s)", site.name, child.selectors.local,
            child.selectors.remote, event.reason,
        )
        if not self.table.children_of(site) and self._up.pop(site.name, None) is not None:
            log.warning("site %s: down (%s)", site.name, event.reason)
        self._retry(site)

    def _retry(self, site: Site) -> None:
        """An initiating site tries again after its back-off (doubling, capped)."""
        sup = self._watch.get(site.name)
        if sup is None or self._loop is None:
            return
        delay = sup.delay
        if sup.handle is not None:
            if sup.due <= self._loop.time() + delay:
                return  # a retry (or the watchdog) comes sooner anyway
            sup.handle.cancel()
        sup.delay = min(sup.delay * 2, RETRY_CAP)
        self._schedule(sup, site, delay)

    def _schedule(self, sup: _Supervisor, site: Site, delay: float) -> None:
        assert self._loop is not None
        sup.due = self._loop.time() + delay
        sup.handle = self._loop.call_later(delay, self._retry_due, site)

    def _retry_due(self, site: Site) -> None:
        sup = self._watch[site.name]
        sup.handle = None
        self._kick(site)
        if self.ipsec is not None:
            self.ipsec.transmit()

    def _kick(self, site: Site) -> None:
        """Start what is missing: Main Mode, or Quick Mode for each pair without an SA."""
        ipsec = self.ipsec
        sup = self._watch.get(site.name)
        if ipsec is None or sup is None or self._loop is None:
            return
        if sup.handle is None:  # the watchdog: look again later in any case
            self._schedule(sup, site, WATCH_INTERVAL)
        ike = ipsec.ike
        now = ipsec.now()
        missing = [
            p for p in site.pairs()
            if not self.table.has_sender(p) and not ike.tunnel_pending(site.peer, p)
        ]
        if not missing:
            return
        states = [i.state for i in ike.ike_sas() if i.peer[0] == site.peer]
        if "established" in states:
            for pair in missing:
                ike.start_tunnel(site.peer, pair, now)
        elif not states:
            log.info("site %s: connecting to %s", site.name, site.peer)
            ike.initiate(site.peer, now, local=(self._source(site.peer), 500), tunnel=missing[0])

    def _source(self, peer: str) -> str:
        """Our address towards ``peer``: the listen address, or the kernel's choice."""
        specific = [h for h in self.listen if h != "0.0.0.0"]
        if specific:
            return specific[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((peer, 500))
                return str(probe.getsockname()[0])
            except OSError:
                return "0.0.0.0"

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """`pyl2tp ctl status`: the device and every site with its SAs and counters."""
        assert self.ipsec is not None
        now = self.ipsec.now()
        ike = self.ipsec.ike
        out: dict[str, dict[str, Any]] = {}  # by name: `ctl status` prints site.key lines
        for site in self.policy.sites:
            sas = self.table.sa_views(site)
            if sas:
                state = "up"
            elif any(i.peer[0] == site.peer for i in ike.ike_sas()):
                state = "connecting"
            else:
                state = "down"
            since = self._up.get(site.name)
            out[site.name] = {
                "name": site.name,
                "peer": site.peer,
                "local": list(site.local),
                "remote": list(site.remote),
                "initiate": site.initiate,
                "state": state,
                "uptime": None if since is None else round(now - since, 1),
                "sas": sas,
                **site.stats.as_dict(),
            }
        tun = self.tun
        return {
            "tun": tun.name if tun is not None else None,
            "device": tun.stats() if tun is not None else None,
            "unknown_site": self.table.unknown_site,
            "sites": out,
        }
