"""The packet path between the host's IP stack (a TUN device) and PPP sessions.

`ServerDataplane` shares one TUN among all of an LNS's sessions and finds a session by
the destination address of each packet (a dict lookup); `ClientDataplane` owns a client's
TUN, its routes and its DNS servers. Both reach the kernel through `NetOps` (the
`pyl2tp.io.netlink` module in production, a fake in unit tests) and move packets through a
`PacketDevice` (a `pyl2tp.io.tun.TunDevice`, or a fake).
"""

from __future__ import annotations

from typing import Protocol

from pyl2tp.io.netlink import Route

__all__ = ["NetOps", "PacketDevice"]


class PacketDevice(Protocol):
    """Where IP packets leave the dataplane towards the host (a TUN device)."""

    @property
    def name(self) -> str: ...

    def write(self, packet: bytes) -> None: ...

    def close(self) -> None: ...


class NetOps(Protocol):
    """The kernel configuration the dataplanes need (`pyl2tp.io.netlink` implements it)."""

    def link_up(self, ifname: str, mtu: int | None = None) -> None: ...

    def add_address(
        self, ifname: str, address: str, prefixlen: int, *, peer: str | None = None
    ) -> None: ...

    def add_route(
        self,
        dst: str,
        ifname: str,
        *,
        gateway: str | None = None,
        table: int | None = None,
        metric: int | None = None,
        proto: int | None = None,
    ) -> None: ...

    def del_route(
        self,
        dst: str,
        ifname: str | None = None,
        *,
        gateway: str | None = None,
        table: int | None = None,
        metric: int | None = None,
    ) -> None: ...

    def route_to(self, dst: str) -> tuple[str | None, str | None]: ...

    def default_routes(self, family: int = 4) -> list[Route]: ...

    def enable_forwarding(self, *, v4: bool = True, v6: bool = True) -> None: ...

    def ipv6_conf(
        self, ifname: str, *, disable: bool | None = None, addr_gen_mode: int | None = None
    ) -> None: ...
