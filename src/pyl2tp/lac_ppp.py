"""The client's PPP side: credentials, one PPPLink per session, the TUN while connected."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from pyl2tp.config import ClientConfig
from pyl2tp.dataplane.client import ClientDataplane
from pyl2tp.l2tp.events import Event
from pyl2tp.l2tp.session import Session
from pyl2tp.ppp.link import PPPDown, PPPLink, PPPNetworkUp, PPPSettings

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

    def start(self, flush: Callable[[], None]) -> None:
        self.flush = flush

    def link_factory(self, session: Session) -> PPPLink:
        return PPPLink(session, self.settings)

    def on_event(self, event: Event) -> None:
        if isinstance(event, PPPNetworkUp):
            dns = ", ".join(str(d) for d in event.dns) or "none"
            print(
                f"connected: address {event.local} peer {event.peer} dns {dns}"
                f" (tunnel {event.session.tunnel.local_id} session {event.session.local_id})",
                flush=True,
            )
            if self.use_tun:
                self._tun_up(event)
        elif isinstance(event, PPPDown):
            log.info("%s: PPP down: %s", event.session.label, event.reason)
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
        dataplane = ClientDataplane(tun_name=c.tun, server=c.server, routes=list(c.routes), mtu=mtu)
        send_ip = link.send_ip
        flush = self.flush

        def sink(packet: bytes) -> None:
            send_ip(packet)
            flush()

        dataplane.up(event.local, event.peer, sink, dns=event.dns if c.dns else [])
        link.ip_sink = dataplane.deliver
        self.dataplane = dataplane
        log.info("%s: TUN up with %s, MTU %d", event.session.label, event.local, mtu)

    def close(self) -> None:
        if self.dataplane is not None:
            self.dataplane.down()
            self.dataplane = None
