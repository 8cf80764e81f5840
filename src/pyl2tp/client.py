"""The client (a voluntary LAC), as a library and as `pyl2tp client`.

`L2TPClient` runs one endpoint on one UDP socket; one process can open many
tunnels and many sessions through it (tests and the load generator do).
`run_client` keeps the configured tunnels and sessions up, reconnecting with
exponential backoff, until SIGTERM, or until a failure that retrying cannot fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyl2tp.config import ClientConfig
from pyl2tp.control import ControlServer
from pyl2tp.dataplane.ipsec import l2tp_peer_of
from pyl2tp.errors import ConfigError
from pyl2tp.io.udp import EndpointDriver
from pyl2tp.l2tp.channel import ChannelConfig
from pyl2tp.l2tp.endpoint import EndpointConfig, L2TPEndpoint
from pyl2tp.l2tp.events import (
    Event,
    SessionClosed,
    SessionEstablished,
    TunnelClosed,
    TunnelEstablished,
)
from pyl2tp.l2tp.session import Session, SessionState
from pyl2tp.l2tp.tunnel import Addr, Tunnel, TunnelConfig, TunnelState
from pyl2tp.link import LINKS, LinkFactory, NullLink
from pyl2tp.server import disconnect
from pyl2tp.views import session_view, tunnel_view
from pyl2tp.wire.l2tp import StopCCNResult

if TYPE_CHECKING:
    from pyl2tp.io.ipsec import IPsecDriver
    from pyl2tp.lac_ppp import ClientPPP

log = logging.getLogger("pyl2tp.client")

#: exit statuses of `pyl2tp client`
EXIT_OK = 0
EXIT_GAVE_UP = 1
EXIT_REFUSED = 3


class ConnectFailed(Exception):
    """A tunnel or session did not come up; `fatal` when retrying cannot help."""

    def __init__(self, reason: str, *, fatal: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fatal = fatal


class L2TPClient:
    """Opens tunnels and sessions to LNSs from one UDP socket."""

    def __init__(
        self,
        tunnel_config: TunnelConfig,
        *,
        link_factory: LinkFactory = NullLink,
        local: Addr = ("0.0.0.0", 0),
        max_sessions: int = 100_000,
    ) -> None:
        tunnel_config.lac = True
        self.endpoint = L2TPEndpoint(
            EndpointConfig(
                tunnel=tunnel_config,
                accept_tunnels=False,
                max_tunnels=65535,
                max_tunnels_per_peer=65535,
                max_sessions=max_sessions,
            ),
            random_bytes=os.urandom,
            link_factory=link_factory,
        )
        self.local = local
        self.driver: EndpointDriver | None = None
        self.local_addr: Addr | None = None
        self.listeners: list[Callable[[Event], None]] = []
        self._waiters: dict[int, asyncio.Future[None]] = {}
        self._closed: dict[int, asyncio.Event] = {}

    async def start(self) -> Addr:
        """Bind the UDP socket; returns the local address."""
        self.driver = EndpointDriver(self.endpoint, self._on_event)
        self.local_addr = await self.driver.listen(*self.local)
        return self.local_addr

    def now(self) -> float:
        assert self.driver is not None, "start() first"
        return self.driver.now()

    async def open_tunnel(self, server: Addr, *, timeout: float = 60.0) -> Tunnel:
        """Bring a tunnel up (SCCRQ/SCCRP/SCCCN); raises ConnectFailed."""
        assert self.driver is not None, "start() first"
        tunnel = self.endpoint.connect(server, self.now(), local=self.local_addr)
        await self._wait(tunnel, timeout)
        return tunnel

    async def open_session(self, tunnel: Tunnel, *, timeout: float = 30.0) -> Session:
        """Place an incoming call (ICRQ/ICRP/ICCN) on an established tunnel."""
        assert self.driver is not None, "start() first"
        try:
            session = self.endpoint.open_session(tunnel, self.now())
        except RuntimeError as exc:
            raise ConnectFailed(str(exc)) from exc
        await self._wait(session, timeout)
        return session

    async def wait_closed(self, thing: Tunnel | Session) -> None:
        """Return once the tunnel or session is gone."""
        if _is_closed(thing):
            return
        await self._closed.setdefault(id(thing), asyncio.Event()).wait()

    def close_tunnel(self, tunnel: Tunnel) -> None:
        assert self.driver is not None
        self.endpoint.close_tunnel(tunnel, self.now(), "client closing")
        self.driver.transmit()

    def close_session(self, session: Session) -> None:
        assert self.driver is not None
        self.endpoint.close_session(session, self.now(), "client closing")
        self.driver.transmit()

    async def close(self, grace: float = 2.0) -> None:
        """StopCCN on every tunnel, wait for acks up to `grace` seconds, close the socket."""
        driver = self.driver
        if driver is None:
            return
        self.endpoint.close_all(driver.now(), "client exiting")
        driver.transmit()
        deadline = driver.now() + grace
        while driver.now() < deadline and any(
            not t.closed and not t.channel.idle for t in self.endpoint.tunnels.values()
        ):
            await asyncio.sleep(0.05)
        driver.close()
        self.driver = None

    # -- internals ---------------------------------------------------------------------

    async def _wait(self, thing: Tunnel | Session, timeout: float) -> None:
        assert self.driver is not None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[id(thing)] = future
        self.driver.transmit()
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise ConnectFailed(f"no answer within {timeout:.0f}s") from None
        finally:
            self._waiters.pop(id(thing), None)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, TunnelEstablished):
            self._resolve(event.tunnel, None)
        elif isinstance(event, SessionEstablished):
            self._resolve(event.session, None)
        elif isinstance(event, TunnelClosed):
            # RFC 2661 4.4.2 result 4: not authorized; retrying with the same secret cannot help.
            fatal = event.result == StopCCNResult.NOT_AUTHORIZED
            failure = ConnectFailed(f"tunnel closed ({event.cause}): {event.reason}", fatal=fatal)
            self._resolve(event.tunnel, failure)
            self._mark_closed(event.tunnel)
        elif isinstance(event, SessionClosed):
            self._resolve(
                event.session, ConnectFailed(f"session closed ({event.cause}): {event.reason}")
            )
            self._mark_closed(event.session)
        for listener in self.listeners:
            listener(event)

    def _resolve(self, thing: object, error: ConnectFailed | None) -> None:
        future = self._waiters.get(id(thing))
        if future is None or future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def _mark_closed(self, thing: object) -> None:
        event = self._closed.pop(id(thing), None)
        if event is not None:
            event.set()


def _is_closed(thing: Tunnel | Session) -> bool:
    if isinstance(thing, Tunnel):
        return thing.state is TunnelState.CLOSED
    return thing.state is SessionState.CLOSED


def tunnel_config(config: ClientConfig) -> TunnelConfig:
    c = config.client
    return TunnelConfig(
        hostname=c.hostname,
        secret=c.secret.encode() if c.secret is not None else None,
        hide_avps=c.hide_avps,
        hello_interval=c.hello_interval,
        lac=True,
        channel=ChannelConfig(
            receive_window=c.receive_window,
            retransmit_initial=c.retransmit_initial,
            retransmit_cap=c.retransmit_cap,
            max_retries=c.max_retries,
        ),
    )


class ClientRunner:
    """`pyl2tp client`: keeps `tunnels` x `sessions` up and serves the control socket."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        c = config.client
        self.ppp: ClientPPP | None = None
        factory: LinkFactory
        if config.debug.link == "ppp":
            from pyl2tp.lac_ppp import ClientPPP

            self.ppp = ClientPPP(config)
            factory = self.ppp.link_factory
        else:
            factory = LINKS[config.debug.link]
        self.client = L2TPClient(
            tunnel_config(config),
            link_factory=factory,
            local=(c.local or "0.0.0.0", c.local_port),
        )
        if self.ppp is not None:
            self.client.listeners.append(self.ppp.on_event)
            self.ppp.on_fatal = self._refused
        self.server: Addr = (c.server, c.port)
        self.ipsec: IPsecDriver | None = None
        self._sa_waiter: asyncio.Future[Addr] | None = None
        self.stopping = asyncio.Event()
        self.exit_status = EXIT_OK

    async def run(self) -> int:
        c = self.config.client
        await self.client.start()
        if self.ppp is not None:
            assert self.client.driver is not None
            self.ppp.start(self.client.driver.request_flush)
        if c.psk is not None or c.certificate is not None:
            await self._start_ipsec(c.psk)
        control = ControlServer(
            c.control_socket,
            {
                "status": self._status,
                "tunnels": self._tunnels,
                "sessions": self._sessions,
                "disconnect": self._disconnect,
            },
        )
        await control.start()
        tasks = [asyncio.create_task(self._keep_tunnel(i)) for i in range(c.tunnels)]
        try:
            await self.stopping.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.client.close()
            if self.ipsec is not None:
                self.ipsec.ike.delete_all(self.ipsec.now())
                self.ipsec.transmit()
                self.ipsec.close()
            if self.ppp is not None:
                self.ppp.close()
            await control.close()
        return self.exit_status

    async def _start_ipsec(self, psk: str | None) -> None:
        from pyl2tp.ipsec_setup import make_ipsec

        c = self.config.client
        assert self.client.driver is not None
        self.ipsec = make_ipsec(
            self.client.driver,
            psk=None if c.certificate is not None else psk,
            certificate=c.certificate,
            private_key=c.private_key,
            ca=c.ca,
            crl=c.crl,
            require=True,
            dpd_delay=c.dpd_delay,
            dpd_timeout=c.dpd_timeout,
            ike_lifetime=c.ike_lifetime,
            sa_lifetime=c.sa_lifetime,
            sa_lifetime_kb=c.sa_lifetime_kb,
            legacy=c.legacy,
            keylog_path=self.config.debug.keylog,
            on_event=self._ipsec_event,
        )
        self._local_ip = c.local or _source_address(c.server)
        await self.ipsec.listen(self._local_ip)

    async def _secure_path(self) -> Addr:
        """IKE Main Mode and Quick Mode to the server; returns the L2TP peer of the ESP SA."""
        ipsec = self.ipsec
        assert ipsec is not None
        for child in ipsec.ike.child_sas():
            if child.peer[0] == self.server[0]:
                return l2tp_peer_of(child)
        self._sa_waiter = asyncio.get_running_loop().create_future()
        ipsec.ike.initiate(self.server[0], ipsec.now(), local=(self._local_ip, 500))
        ipsec.transmit()
        try:
            return await asyncio.wait_for(self._sa_waiter, 60)
        except TimeoutError:
            raise ConnectFailed("IKE: no security association within 60 s") from None
        finally:
            self._sa_waiter = None

    def _ipsec_event(self, event: object) -> None:
        from pyl2tp.ike.events import AuthenticationFailed, ChildSAEstablished, NegotiationFailed

        waiter = self._sa_waiter
        if isinstance(event, ChildSAEstablished):
            print(
                f"IPsec up: {event.child.outbound.transform}"
                f" {event.child.mode}{' in UDP 4500' if event.child.udp_encap else ''}",
                flush=True,
            )
            if waiter is not None and not waiter.done():
                waiter.set_result(l2tp_peer_of(event.child))
        elif isinstance(event, AuthenticationFailed):
            hint = "" if "certificate" in event.reason else " (wrong pre-shared key?)"
            log.error("IKE with %s failed: %s%s", self.server[0], event.reason, hint)
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectFailed(f"IKE: {event.reason}", fatal=True))
        elif isinstance(event, NegotiationFailed) and waiter is not None and not waiter.done():
            waiter.set_exception(ConnectFailed(f"IKE negotiation failed: {event}"))

    def _refused(self, reason: str) -> None:
        log.error("%s", reason)
        self.stop(EXIT_REFUSED)

    def stop(self, status: int = EXIT_OK) -> None:
        if not self.stopping.is_set():
            self.exit_status = status
            self.stopping.set()

    async def _keep_tunnel(self, index: int) -> None:
        c = self.config.client
        delay = c.reconnect_initial
        while True:
            try:
                server = await self._secure_path() if self.ipsec is not None else self.server
                tunnel = await self.client.open_tunnel(server)
            except ConnectFailed as exc:
                if exc.fatal:
                    log.error("tunnel to %s:%d refused: %s", *self.server, exc.reason)
                    self.stop(EXIT_REFUSED)
                    return
                log.warning("tunnel to %s:%d failed: %s", *self.server, exc.reason)
                if not c.reconnect:
                    self.stop(EXIT_GAVE_UP)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, c.reconnect_cap)
                continue
            delay = c.reconnect_initial
            print(
                f"tunnel {tunnel.local_id} up to {tunnel.peer_label}"
                f" (peer tunnel {tunnel.peer_id})",
                flush=True,
            )
            keepers = [asyncio.create_task(self._keep_session(tunnel)) for _ in range(c.sessions)]
            try:
                await self.client.wait_closed(tunnel)
            finally:
                for task in keepers:
                    task.cancel()
            log.warning("%s: tunnel down: %s", tunnel.label, tunnel.close_reason)
            if not c.reconnect:
                self.stop(EXIT_GAVE_UP)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, c.reconnect_cap)

    async def _keep_session(self, tunnel: Tunnel) -> None:
        c = self.config.client
        delay = c.reconnect_initial
        while tunnel.state is TunnelState.ESTABLISHED:
            try:
                session = await self.client.open_session(tunnel)
            except ConnectFailed as exc:
                log.warning("%s: session failed: %s", tunnel.label, exc.reason)
            else:
                delay = c.reconnect_initial
                print(f"session {tunnel.local_id}/{session.local_id} up", flush=True)
                await self.client.wait_closed(session)
            if not c.reconnect:
                self.stop(EXIT_GAVE_UP)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, c.reconnect_cap)

    async def _status(self, args: dict[str, Any]) -> Any:
        ep = self.client.endpoint
        return {
            "role": "lac",
            "pid": os.getpid(),
            "server": f"{self.server[0]}:{self.server[1]}",
            "local": f"{self.client.local_addr[0]}:{self.client.local_addr[1]}"
            if self.client.local_addr
            else None,
            "tunnels": len(ep.tunnels),
            "sessions": ep.session_count,
            "stats": ep.stats.as_dict(),
            "ipsec": (
                {"sas": self.ipsec.layer.views(), "esp": self.ipsec.layer.stats.as_dict()}
                if self.ipsec is not None
                else None
            ),
        }

    async def _tunnels(self, args: dict[str, Any]) -> Any:
        now = self.client.now()
        return [tunnel_view(t, now) for t in self.client.endpoint.tunnels.values()]

    async def _sessions(self, args: dict[str, Any]) -> Any:
        now = self.client.now()
        layer = self.ipsec.layer if self.ipsec is not None else None
        return [
            session_view(s, now, layer.sa_summary(s.tunnel.peer) if layer is not None else None)
            for s in self.client.endpoint.sessions()
        ]

    async def _disconnect(self, args: dict[str, Any]) -> Any:
        return disconnect(self.client.endpoint, self.client.driver, args)


def _source_address(server: str) -> str:
    """Our address on the route to `server` (a connected UDP socket sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((server, 500))
        address: str = sock.getsockname()[0]
        return address


async def run_client(config: ClientConfig) -> int:
    """Run `pyl2tp client` until SIGTERM/SIGINT or an unrecoverable failure."""
    runner = ClientRunner(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    try:
        return await runner.run()
    except ConfigError as exc:  # a certificate, key or CRL file read at start
        log.error("%s", exc)
        return 2
    except OSError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_GAVE_UP
