"""The client's packet path: its own TUN with the assigned address, routes and DNS.

`up` makes the device once IPCP is done: the assigned address point-to-point with the
server's, the MTU from the negotiated MRU, and the configured routes. For a "default"
route, the route to the VPN server is first pinned as a host route via the current path
(otherwise the tunnel's own packets would be routed into the tunnel), then the default
route is replaced by one via the TUN; `down` puts the old default back.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Sequence
from ipaddress import IPv4Address, IPv6Address

from pyl2tp.dataplane import NetOps, PacketDevice
from pyl2tp.dataplane.resolver import ResolverConfig
from pyl2tp.io.netlink import ADDR_GEN_MODE_NONE, Route

log = logging.getLogger("pyl2tp.dataplane")

__all__ = ["DEFAULT", "ClientDataplane", "DeviceOpener"]

#: the route name meaning "everything through the VPN"
DEFAULT = "default"

#: opens the TUN: (name, mtu, on_packet) -> a started device
DeviceOpener = Callable[[str, int, Callable[[bytes], None]], PacketDevice]


def _open_tun(name: str, mtu: int, on_packet: Callable[[bytes], None]) -> PacketDevice:
    from pyl2tp.io.tun import TunDevice, open_tun

    fd, actual = open_tun(name, mtu=mtu)
    tun = TunDevice(fd, actual, on_packet)
    tun.start()
    return tun


def _link_local(interface_id: bytes) -> str:
    """fe80::/64 with an IPv6CP interface identifier (RFC 5072 4.1)."""
    if len(interface_id) != 8:
        raise ValueError("an IPv6 interface identifier is 8 bytes")
    return str(IPv6Address(b"\xfe\x80" + bytes(6) + interface_id))


class ClientDataplane:
    """A client's TUN, its routes and its resolver settings, for one connection."""

    def __init__(
        self,
        *,
        tun_name: str = "",
        server: str,
        routes: list[str],
        mtu: int,
        net: NetOps | None = None,
        resolver: ResolverConfig | None = None,
        open_device: DeviceOpener = _open_tun,
    ) -> None:
        if net is None:
            from pyl2tp.io import netlink as net_module

            net = net_module
        for route in routes:
            if route != DEFAULT:
                ipaddress.ip_network(route, strict=False)  # ValueError names a bad prefix
        self._net: NetOps = net
        self.tun_name = tun_name
        self.server = server
        self.routes = list(routes)
        self.mtu = mtu
        self.resolver = resolver if resolver is not None else ResolverConfig()
        self._open_device = open_device
        self._device: PacketDevice | None = None
        self._write: Callable[[bytes], None] = self._drop
        self._host_route: str | None = None  # the device of the pinned route to the server
        self._old_defaults: list[Route] = []
        self._installed: list[str] = []
        #: packets from the session while the TUN was not up
        self.dropped = 0
        self.local: IPv4Address | None = None
        self.peer: IPv4Address | None = None

    @property
    def ifname(self) -> str | None:
        """The TUN's actual name while up."""
        return self._device.name if self._device is not None else None

    @property
    def is_up(self) -> bool:
        """Whether the device is open."""
        return self._device is not None

    def up(
        self,
        local: IPv4Address,
        peer: IPv4Address,
        sink: Callable[[bytes], None],
        *,
        local_v6_id: bytes | None = None,
        dns: Sequence[IPv4Address | IPv6Address] = (),
        mtu: int | None = None,
    ) -> None:
        """Open and configure the TUN; packets read from it go to `sink` (the session).

        On failure everything done so far is undone and the error raised.
        """
        if self._device is not None:
            raise RuntimeError("the client dataplane is up already")
        if mtu is not None:
            self.mtu = mtu
        net = self._net
        device = self._open_device(self.tun_name, self.mtu, sink)
        self._device = device
        name = device.name
        try:
            net.add_address(name, str(local), 32, peer=str(peer))
            if local_v6_id is None:
                # No IPv6CP: keep the kernel's IPv6 chatter (solicitations, MLD) off the link.
                net.ipv6_conf(name, disable=True)
            else:
                # RFC 5072 5: the link-local address comes from the negotiated identifier.
                net.ipv6_conf(name, addr_gen_mode=ADDR_GEN_MODE_NONE)
                net.add_address(name, _link_local(local_v6_id), 64)
            net.link_up(name, self.mtu)
            self.local, self.peer = local, peer
            for route in self.routes:
                if route == DEFAULT:
                    self._route_default(name)
                else:
                    net.add_route(route, name)
                    self._installed.append(route)
        except BaseException:
            self.down()
            raise
        self._write = device.write
        if dns:
            try:
                self.resolver.apply(dns, tag=name, ifname=name)
            except OSError as exc:  # the tunnel works without our DNS servers: say so
                log.warning("%s: DNS servers not set: %s", name, exc)
        log.info("%s up: %s peer %s, mtu %d, routes %s", name, local, peer, self.mtu,
                 ", ".join(self.routes) or "none")

    def _route_default(self, name: str) -> None:
        net = self._net
        gateway, via = net.route_to(self.server)
        if via is None:
            raise OSError(f"no route to the VPN server {self.server}: cannot pin it")
        if via == name:
            raise OSError(f"the route to the VPN server {self.server} already uses {name}")
        # Pinned first: once the default points into the TUN, the server is behind it.
        net.add_route(self.server, via, gateway=gateway)
        self._host_route = via
        self._old_defaults = [r for r in net.default_routes(4) if r.ifname != name]
        net.add_route(DEFAULT, name)
        self._installed.append(DEFAULT)

    def deliver(self, packet: bytes) -> None:
        """An IP packet from the session into the TUN."""
        self._write(packet)

    def _drop(self, packet: bytes) -> None:
        self.dropped += 1

    def down(self) -> None:
        """Remove routes, restore the old default and DNS, close the TUN; idempotent."""
        device = self._device
        self._write = self._drop
        try:
            self.resolver.restore()
        except OSError as exc:
            log.warning("DNS settings not restored: %s", exc)
        net = self._net
        name = device.name if device is not None else None
        for route in reversed(self._installed):
            self._quietly(net.del_route, route, name)
        self._installed.clear()
        for old in self._old_defaults:
            if old.ifname is None:
                continue
            try:
                net.add_route(DEFAULT, old.ifname, gateway=old.gateway, metric=old.metric,
                              proto=old.proto)
            except OSError as exc:
                log.warning("old default route via %s not restored: %s", old.ifname, exc)
        self._old_defaults = []
        if self._host_route is not None:
            self._quietly(net.del_route, self.server, self._host_route)
            self._host_route = None
        self._device = None
        if device is not None:
            device.close()
            log.info("%s down", device.name)

    @staticmethod
    def _quietly(op: Callable[[str, str | None], None], dst: str, ifname: str | None) -> None:
        try:
            op(dst, ifname)
        except OSError as exc:
            log.warning("cannot delete route %s: %s", dst, exc)
