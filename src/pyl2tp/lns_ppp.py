"""The LNS's PPP service: users, address pools, the TUN dataplane, one PPPLink per session.

`server.py` owns the L2TP side; this module gives each new session its PPP link
and turns the links' events into routes on the shared TUN device.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import Any

from pyl2tp.aaa.pool import AddressPool, PrefixPool
from pyl2tp.aaa.users import UserDB
from pyl2tp.config import ServerConfig
from pyl2tp.dataplane.server import ServerDataplane
from pyl2tp.l2tp.events import Event
from pyl2tp.l2tp.session import Session
from pyl2tp.ppp.fsm import FSMConfig
from pyl2tp.ppp.link import PPPDown, PPPIPv6Up, PPPLink, PPPNetworkUp, PPPSettings

log = logging.getLogger("pyl2tp.server")


class ServerPPP:
    """Everything the LNS needs to run PPP in its sessions."""

    def __init__(self, config: ServerConfig) -> None:
        c = config
        self.users = UserDB.from_config(c.users, c.aaa.chap_secrets, server_name=c.server.hostname)
        self.local_v4 = IPv4Address(c.pool.local) if c.pool.local else None
        self.pool: AddressPool | None = None
        if c.pool.range is not None:
            first, last = (IPv4Address(p) for p in c.pool.range.split("-"))
            exclude = {*self.users.fixed_addresses(), *([self.local_v4] if self.local_v4 else [])}
            self.pool = AddressPool(first, last, exclude=exclude)
        self.local_v6 = IPv6Address(c.pool.local_ipv6) if c.pool.local_ipv6 else None
        self.prefixes: PrefixPool | None = None
        if c.pool.ipv6:
            network = IPv6Network(c.pool.ipv6)
            # The /64 holding the server's own address is never a session's.
            own = IPv6Network((self.local_v6, 64), strict=False) if self.local_v6 else None
            own_64 = [own] if own is not None and own.subnet_of(network) else []
            self.prefixes = PrefixPool(network, exclude=own_64)
        self._fixed_in_use: set[IPv4Address] = set()
        self.dataplane = ServerDataplane(
            tun_name=c.server.tun, local_v4=self.local_v4, local_v6=self.local_v6, mtu=c.ppp.mtu
        )
        self.settings = PPPSettings(
            server=True,
            random_bytes=os.urandom,
            mru=c.ppp.mtu,
            fsm=FSMConfig(),
            echo_interval=c.ppp.lcp_echo_interval,
            echo_failure=c.ppp.lcp_echo_failure,
            auth_methods=list(c.ppp.auth),
            credentials=self.users.credentials,
            hostname=c.server.hostname,
            rechallenge_interval=c.ppp.chap_rechallenge,
            dns=[IPv4Address(d) for d in c.ppp.dns if ":" not in d],
            local_v4=self.local_v4,
            allocate_v4=self.allocate,
            release_v4=self.release,
            allocate_v6=self._allocate_v6 if self.prefixes is not None else None,
            release_v6=self._release_v6 if self.prefixes is not None else None,
        )
        self.flush: Callable[[], None] = lambda: None
        self._now: Callable[[], float] = lambda: 0.0

    def reload_users(self, config: ServerConfig) -> int:
        """Take the users of `config` for new logins; returns how many there are."""
        users = UserDB.from_config(
            config.users, config.aaa.chap_secrets, server_name=config.server.hostname
        )
        self.users = users
        self.settings.credentials = users.credentials
        return len(users)

    def start(self, flush: Callable[[], None], clock: Callable[[], float]) -> None:
        """Open the TUN device; `flush` sends what sessions queued (the UDP driver's)."""
        self.flush = flush
        self._now = clock
        self.dataplane.start()

    def close(self) -> None:
        self.dataplane.close()

    def link_factory(self, session: Session) -> PPPLink:
        return PPPLink(session, self.settings)

    # -- addresses ----------------------------------------------------------------------

    def allocate(self, user: str) -> IPv4Address | None:
        """The user's fixed address if configured, else one from the pool (sticky per user)."""
        entry = self.users.lookup(user)
        fixed = entry.address if entry is not None else None
        if self.pool is not None:
            return self.pool.allocate(user, fixed=fixed)
        # No pool: only users with a fixed address can connect.
        if fixed is None or fixed in self._fixed_in_use:
            return None
        self._fixed_in_use.add(fixed)
        return fixed

    def release(self, address: IPv4Address) -> None:
        if self.pool is not None:
            self.pool.release(address)
        else:
            self._fixed_in_use.discard(address)

    def _allocate_v6(self, user: str) -> IPv6Network | None:
        assert self.prefixes is not None
        return self.prefixes.allocate(user)

    def _release_v6(self, prefix: IPv6Network) -> None:
        assert self.prefixes is not None
        self.prefixes.release(prefix)

    # -- link events ----------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        dp = self.dataplane
        if isinstance(event, PPPNetworkUp):
            link = event.link
            try:
                dp.attach_v4(event.peer, self._sink(link))
            except (ValueError, OSError) as exc:
                log.error("%s: cannot route %s: %s", event.session.label, event.peer, exc)
                link.close(self._now(), "address unavailable")
                return
            # Packets from the session must come from its own addresses (anti-spoofing).
            link.ip_sink = dp.sender(v4=event.peer, v6=link.prefix_v6)
            log.info("%s: user %r has %s", event.session.label, link.user, event.peer)
        elif isinstance(event, PPPIPv6Up):
            link = event.link
            if event.prefix is not None:
                try:
                    dp.attach_v6(event.prefix, self._sink(link))
                except (ValueError, OSError) as exc:
                    log.error("%s: cannot route %s: %s", event.session.label, event.prefix, exc)
                    return
                link.ip_sink = dp.sender(v4=link.peer_v4, v6=event.prefix)
        elif isinstance(event, PPPDown):
            if event.address is not None:
                dp.detach_v4(event.address)
            if event.prefix is not None:
                dp.detach_v6(event.prefix)

    def _sink(self, link: PPPLink) -> Callable[[bytes], None]:
        send_ip = link.send_ip
        flush = self.flush

        def sink(packet: bytes) -> None:
            send_ip(packet)
            flush()

        return sink

    def status(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "pool_size": pool.size if pool is not None else 0,
            "pool_in_use": pool.in_use if pool is not None else 0,
            "dataplane": self.dataplane.stats,
        }
