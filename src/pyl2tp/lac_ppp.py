"""The client's PPP side: credentials, one PPPLink per session, the TUN while connected."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network

from pyl2tp.config import ClientConfig
from pyl2tp.dataplane.client import ClientDataplane
from pyl2tp.io import netlink
from pyl2tp.l2tp.events import Event
from pyl2tp.l2tp.session import Session
from pyl2tp.ppp.link import PPPDown, PPPIPv6Up, PPPLink, PPPNetworkUp, PPPSettings

log = logging.getLogger("pyl2tp.client")

#: TUN MTU never exceeds this, whatever MRU the server accepts
MAX_MTU = 1500


class ClientPPP:
    """PPP links for the client's sessions; the TUN device when the client runs one session."""

    def __init__(self, config: ClientConfig) -> None:
        c = config.client
        self.config = config
        self.settings = PPPSettings(
            server=False,
            random_bytes=os.urandom,
            echo_interval=c.lcp_echo_interval,
            echo_failure=c.lcp_echo_failure,
            user=c.user or "",
            password=c.password or "",
            accept_auth=list(c.auth),
            request_dns=c.dns,
            ipv6=c.ipv6,
        )
        #: only a single-session client owns a TUN device and routes
        self.use_tun = c.tunnels * c.sessions == 1
        self.dataplane: ClientDataplane | None = None
        self.flush: Callable[[], None] = lambda: None
        #: called with a reason when retrying cannot help (the server refused our login)
        self.on_fatal: Callable[[str], None] = lambda reason: None
        self._pending_v6: tuple[PPPLink, IPv6Network] | None = None

    def start(self, flush: Callable[[], None]) -> None:
        self.flush = flush

    def link_factory(self, session: Session) -> PPPLink:
        return PPPLink(session, self.settings)

    def on_event(self, event: Event) -> None:
        if isinstance(event, PPPNetworkUp):
            if self.use_tun:
                self._tun_up(event)
            # Said once the TUN, its routes and the DNS servers are in place: a script that
            # waits for this line can use the link at once.
            dns = ", ".join(str(d) for d in event.dns) or "none"
            print(
                f"connected: address {event.local} peer {event.peer} dns {dns}"
                f" (tunnel {event.session.tunnel.local_id} session {event.session.local_id})",
                flush=True,
            )
        elif isinstance(event, PPPIPv6Up):
            if event.prefix is not None:
                self._pending_v6 = (event.link, event.prefix)
                self._apply_v6()
        elif isinstance(event, PPPDown):
            log.info("%s: PPP down: %s", event.session.label, event.reason)
            if event.link.auth_failed:
                user = self.settings.user
                self.on_fatal(f"the server refused the login of {user!r}: {event.reason}")
            if self.dataplane is not None and event.link.ip_sink is None:
                self.dataplane.down()
                self.dataplane = None

    def _tun_up(self, event: PPPNetworkUp) -> None:
        c = self.config.client
        link = event.link
        # The TUN carries what the server may receive: its MRU bounds our MTU.
        mtu = min(link.lcp.peer_mru or MAX_MTU, MAX_MTU)
        if self.dataplane is not None:
            self.dataplane.down()
        # IPv6 routes need IPv6 on the TUN, which only IPv6CP turns on.
        routes = [r for r in c.routes if c.ipv6 or ":" not in r]
        dataplane = ClientDataplane(tun_name=c.tun, server=c.server, routes=routes, mtu=mtu)
        send_ip = link.send_ip
        flush = self.flush

        def sink(packet: bytes) -> None:
            send_ip(packet)
            flush()

        v6_id = link.ipv6cp.local_id if c.ipv6 and link.ipv6cp is not None else None
        dataplane.up(
            event.local, event.peer, sink, dns=event.dns if c.dns else [], local_v6_id=v6_id
        )
        link.ip_sink = dataplane.deliver
        self.dataplane = dataplane
        log.info("%s: TUN up with %s, MTU %d", event.session.label, event.local, mtu)
        self._apply_v6()

    def _apply_v6(self) -> None:
        """Give the TUN its global IPv6 address: the advertised /64 plus our identifier."""
        pending = self._pending_v6
        dataplane = self.dataplane
        if pending is None or dataplane is None or dataplane.ifname is None:
            return
        link, prefix = pending
        if link.ipv6cp is None:
            return
        self._pending_v6 = None
        address = IPv6Address(prefix.network_address.packed[:8] + link.ipv6cp.local_id)
        try:
            netlink.add_address(dataplane.ifname, str(address), 64)
        except OSError as exc:
            log.error("%s: cannot set %s/64: %s", dataplane.ifname, address, exc)
            return
        print(f"connected: IPv6 address {address}/64", flush=True)

    def close(self) -> None:
        if self.dataplane is not None:
            self.dataplane.down()
            self.dataplane = None
