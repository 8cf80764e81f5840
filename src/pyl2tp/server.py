"""The LNS: an L2TP endpoint on UDP 1701, a control socket, signal handling."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import TYPE_CHECKING, Any

from pyl2tp.config import ServerConfig, load_server_config
from pyl2tp.control import CommandError, ControlServer
from pyl2tp.errors import ConfigError
from pyl2tp.io.udp import EndpointDriver
from pyl2tp.l2tp.channel import ChannelConfig
from pyl2tp.l2tp.endpoint import EndpointConfig, L2TPEndpoint
from pyl2tp.l2tp.events import Event, SessionClosed, SessionEstablished, TunnelClosed
from pyl2tp.l2tp.tunnel import TunnelConfig
from pyl2tp.link import LINKS, LinkFactory
from pyl2tp.ppp.link import PPPAuthenticated
from pyl2tp.views import session_view, tunnel_view

if TYPE_CHECKING:
    from pyl2tp.io.ipsec import IPsecDriver
    from pyl2tp.lns_ppp import ServerPPP
    from pyl2tp.sites import SiteManager

log = logging.getLogger("pyl2tp.server")

#: how long shutdown waits for StopCCNs to be acknowledged
SHUTDOWN_GRACE = 3.0


def endpoint_config(config: ServerConfig) -> EndpointConfig:
    """The L2TP settings of a server configuration."""
    l2tp = config.l2tp
    return EndpointConfig(
        tunnel=TunnelConfig(
            hostname=config.server.hostname,
            vendor_name=l2tp.vendor_name,
            secret=l2tp.secret.encode() if l2tp.secret is not None else None,
            hide_avps=l2tp.hide_avps,
            hello_interval=l2tp.hello_interval,
            linger=l2tp.linger,
            max_sessions=l2tp.max_sessions_per_tunnel,
            lac=False,
            channel=ChannelConfig(
                receive_window=l2tp.receive_window,
                retransmit_initial=l2tp.retransmit_initial,
                retransmit_cap=l2tp.retransmit_cap,
                max_retries=l2tp.max_retries,
                ack_delay=l2tp.ack_delay,
            ),
        ),
        max_tunnels=l2tp.max_tunnels,
        max_tunnels_per_peer=l2tp.max_tunnels_per_peer,
        max_sessions=l2tp.max_sessions,
    )


class Server:
    """An LNS: owns the endpoint, its sockets and the control socket."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.ppp: ServerPPP | None = None
        factory: LinkFactory
        if config.debug.link == "ppp":
            from pyl2tp.lns_ppp import ServerPPP

            self.ppp = ServerPPP(config)
            factory = self.ppp.link_factory
        else:
            factory = LINKS[config.debug.link]
        self.endpoint = L2TPEndpoint(
            endpoint_config(config), random_bytes=os.urandom, link_factory=factory
        )
        self.driver: EndpointDriver | None = None
        self.ipsec: IPsecDriver | None = None
        self.sites: SiteManager | None = None
        self.control: ControlServer | None = None
        self.stopping = asyncio.Event()

    async def start(self) -> None:
        self.driver = EndpointDriver(self.endpoint, self.on_event)
        if self.ppp is not None:
            self.ppp.start(self.driver.request_flush, self.driver.now)
        for host in self.config.server.listen:
            addr = await self.driver.listen(host, self.config.server.port)
            log.info("listening on %s:%d", *addr)
        ipsec = self.config.ipsec
        if ipsec.enabled:
            from pyl2tp.ipsec_setup import make_ipsec

            if self.config.sites:
                from pyl2tp.sites import SiteManager

                self.sites = SiteManager(self.config)

            self.ipsec = make_ipsec(
                self.driver,
                psk=ipsec.psk,
                certificate=ipsec.certificate,
                private_key=ipsec.private_key,
                ca=ipsec.ca,
                crl=ipsec.crl,
                require=ipsec.require,
                dpd_delay=ipsec.dpd_delay,
                dpd_timeout=ipsec.dpd_timeout,
                ike_lifetime=ipsec.ike_lifetime,
                sa_lifetime=ipsec.sa_lifetime,
                sa_lifetime_kb=ipsec.sa_lifetime_kb,
                aggressive=ipsec.aggressive,
                legacy=ipsec.legacy,
                keylog_path=self.config.debug.keylog,
                tunnel_policy=self.sites.policy if self.sites is not None else None,
            )
            for host in self.config.server.listen:
                await self.ipsec.listen(host)
            if self.sites is not None:
                await self.sites.start(self.ipsec)
        self.control = ControlServer(
            self.config.server.control_socket,
            {
                "status": self._status,
                "tunnels": self._tunnels,
                "sessions": self._sessions,
                "disconnect": self._disconnect,
                "reload": self._reload,
            },
        )
        await self.control.start()

    def on_event(self, event: Event) -> None:
        if self.ppp is not None:
            self.ppp.on_event(event)
        if isinstance(event, SessionEstablished):
            log.info("%s: session up", event.session.label)
        elif isinstance(event, PPPAuthenticated) and self.ipsec is not None:
            child = self.ipsec.layer.child_for(event.session.tunnel.peer)
            identity = child.peer_id if child is not None else "none"
            # The issue asks for the IKE identity and the PPP user together.
            log.info(
                "%s: PPP user %r over IKE identity %s", event.session.label, event.user, identity
            )
        elif isinstance(event, SessionClosed):
            log.info("%s: session down (%s: %s)", event.session.label, event.cause, event.reason)
        elif isinstance(event, TunnelClosed):
            log.info("%s: tunnel down (%s: %s)", event.tunnel.label, event.cause, event.reason)

    async def stop(self) -> None:
        """StopCCN to every peer, wait briefly for their acks, close sockets."""
        driver = self.driver
        if self.ipsec is not None and driver is not None:
            self.endpoint.close_all(driver.now())
            driver.transmit()
            await asyncio.sleep(0.2)  # the StopCCNs leave through ESP before the SAs go
            if self.sites is not None:
                self.sites.close()
            self.ipsec.ike.delete_all(driver.now())
            self.ipsec.transmit()
            self.ipsec.close()
        if driver is not None:
            self.endpoint.close_all(driver.now())
            driver.transmit()
            deadline = driver.now() + SHUTDOWN_GRACE
            while self._unacked() and driver.now() < deadline:
                await asyncio.sleep(0.05)
            driver.close()
        if self.ppp is not None:
            self.ppp.close()
        if self.control is not None:
            await self.control.close()

    def _unacked(self) -> bool:
        return any(not t.channel.idle and not t.closed for t in self.endpoint.tunnels.values())

    # -- control socket handlers ------------------------------------------------------

    def _now(self) -> float:
        assert self.driver is not None
        return self.driver.now()

    async def _status(self, args: dict[str, Any]) -> Any:
        return {
            "role": "lns",
            "pid": os.getpid(),
            "listen": [f"{h}:{self.config.server.port}" for h in self.config.server.listen],
            "tunnels": len(self.endpoint.tunnels),
            "sessions": self.endpoint.session_count,
            "stats": self.endpoint.stats.as_dict(),
            "ppp": self.ppp.status() if self.ppp is not None else None,
            "ipsec": self._ipsec_status(),
        }

    def _ipsec_status(self) -> dict[str, Any] | None:
        if self.ipsec is None:
            return None
        return {
            "sas": self.ipsec.layer.views(),
            "esp": self.ipsec.layer.stats.as_dict(),
            "ike": self.ipsec.ike.stats.as_dict(),
            "sites": self.sites.status() if self.sites is not None else None,
        }

    async def _tunnels(self, args: dict[str, Any]) -> Any:
        now = self._now()
        return [tunnel_view(t, now) for t in self.endpoint.tunnels.values()]

    async def _sessions(self, args: dict[str, Any]) -> Any:
        now = self._now()
        layer = self.ipsec.layer if self.ipsec is not None else None
        return [
            session_view(s, now, layer.sa_summary(s.tunnel.peer) if layer is not None else None)
            for s in self.endpoint.sessions()
        ]

    async def _disconnect(self, args: dict[str, Any]) -> Any:
        return disconnect(self.endpoint, self.driver, args)

    async def _reload(self, args: dict[str, Any]) -> Any:
        """Re-read the users ([[users]] and chap-secrets) from the config file.

        Sessions already up keep their addresses; new logins use the new users.
        Everything else in the file needs a restart.
        """
        if self.ppp is None:
            raise CommandError("reload: no PPP here ([debug] link is not \"ppp\")")
        try:
            config = load_server_config(self.config.source)
            count = self.ppp.reload_users(config)
        except ConfigError as exc:
            raise CommandError(f"reload: {exc}") from None
        log.info("reloaded %d users from %s", count, self.config.source)
        return {"users": count}


def disconnect(endpoint: L2TPEndpoint, driver: EndpointDriver | None, args: dict[str, Any]) -> Any:
    """`ctl disconnect`: a tunnel (StopCCN) or one session (CDN)."""
    assert driver is not None
    tid = args.get("tunnel_id")
    sid = args.get("session_id")
    if not isinstance(tid, int):
        raise CommandError("disconnect: tunnel_id (an integer) is required")
    tunnel = endpoint.tunnels.get(tid)
    if tunnel is None:
        raise CommandError(f"disconnect: no tunnel {tid}")
    now = driver.now()
    if sid is None:
        endpoint.close_tunnel(tunnel, now, "disconnected by administrator")
    else:
        session = tunnel.sessions.get(sid) if isinstance(sid, int) else None
        if session is None:
            raise CommandError(f"disconnect: no session {sid} in tunnel {tid}")
        endpoint.close_session(session, now, "disconnected by administrator")
    driver.transmit()
    return {"disconnected": {"tunnel_id": tid, "session_id": sid}}


async def run_server(config: ServerConfig) -> int:
    """Run an LNS until SIGTERM or SIGINT; returns the exit status."""
    try:
        server = Server(config)
        await server.start()
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return 1
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, server.stopping.set)
    log.info("LNS %r ready", config.server.hostname)
    await server.stopping.wait()
    log.info("shutting down")
    await server.stop()
    return 0
