"""The LNS packet path: one TUN device for every session, sessions found by address.

Packets the host routes into the TUN are handed to the session that owns their
destination: an IPv4 session by its /32 (a dict keyed by the 4 address bytes), an IPv6
session by its /64 (keyed by the first 8 bytes of the destination). Packets from sessions
are written to the TUN, where the host's stack routes them on. Each attached address or
prefix gets a route via the TUN so that the kernel sends its traffic to us.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, IPv6Network

from pyl2tp.dataplane import NetOps, PacketDevice

log = logging.getLogger("pyl2tp.dataplane")

__all__ = ["ServerDataplane", "Sink"]

#: where a session's packets go (the session frames them as PPP and sends them)
Sink = Callable[[bytes], None]

#: an attached IPv6 prefix may cover at most this many /64s (dict entries)
MAX_V6_SPAN = 256


def _v6_keys(prefix: IPv6Network) -> list[bytes]:
    """The /64 keys a prefix covers (prefixes from /56 to /64)."""
    if not 64 - 8 <= prefix.prefixlen <= 64:
        raise ValueError(f"{prefix}: session prefixes must be /56 to /64")
    base = int(prefix.network_address) >> 64
    count = 1 << (64 - prefix.prefixlen)
    return [(base + i).to_bytes(8, "big") for i in range(count)]


class ServerDataplane:
    """One TUN for all sessions; destination address -> session sink, by dict lookup."""

    def __init__(
        self,
        *,
        tun_name: str = "pyl2tp0",
        local_v4: IPv4Address | None,
        local_v6: IPv6Address | None = None,
        mtu: int = 1400,
        net: NetOps | None = None,
    ) -> None:
        if net is None:
            from pyl2tp.io import netlink as net_module

            net = net_module
        self._net: NetOps = net
        self.tun_name = tun_name
        self.local_v4 = local_v4
        self.local_v6 = local_v6
        self.mtu = mtu
        self._device: PacketDevice | None = None
        self._owns_device = False
        self._write: Callable[[bytes], None] = self._not_started
        self._v4: dict[bytes, Sink] = {}
        self._v6: dict[bytes, Sink] = {}
        self._v6_prefixes: dict[IPv6Network, Sink] = {}
        #: packets from the TUN whose destination has no session
        self.no_session = 0
        #: packets from sessions that are not IPv4 or IPv6 (or empty)
        self.bad_packets = 0
        #: packets from sessions whose source address is not the session's
        self.spoofed = 0
        #: packets from sessions while no device was open
        self.not_started = 0

    @property
    def ifname(self) -> str:
        """The TUN's actual name (the configured one until started)."""
        return self._device.name if self._device is not None else self.tun_name

    def start(self, device: PacketDevice | None = None) -> None:
        """Open the TUN, address it, set it up with forwarding on, and start reading.

        `device` replaces the TUN (tests); its name is used for addresses and routes.
        """
        if self._device is not None:
            return
        if device is None:
            from pyl2tp.io.tun import TunDevice, open_tun

            fd, name = open_tun(self.tun_name, mtu=self.mtu)
            tun = TunDevice(fd, name, self.tun_packet)
            device = tun
            self._owns_device = True
        else:
            tun = None
        self._device = device
        try:
            name = device.name
            if self.local_v4 is not None:
                self._net.add_address(name, str(self.local_v4), 32)
            if self.local_v6 is not None:
                self._net.add_address(name, str(self.local_v6), 128)
            self._net.link_up(name, self.mtu)
            self._net.enable_forwarding(v4=True, v6=True)
        except BaseException:
            self._device = None
            device.close()
            raise
        self._write = device.write
        if tun is not None:
            tun.start()
        log.info("dataplane %s up: mtu %d, local %s %s", name, self.mtu,
                 self.local_v4, self.local_v6 or "")

    # -- sessions ------------------------------------------------------------------------

    def _require_device(self) -> str:
        if self._device is None:
            raise RuntimeError("the dataplane is not started")
        return self._device.name

    def attach_v4(self, address: IPv4Address, sink: Sink) -> None:
        """Send packets for `address` to `sink`; routes address/32 via the TUN."""
        name = self._require_device()
        key = address.packed
        if key in self._v4:
            raise ValueError(f"{address} is attached to a session already")
        self._net.add_route(f"{address}/32", name)
        self._v4[key] = sink

    def detach_v4(self, address: IPv4Address) -> None:
        """Forget `address`: its route is deleted; unknown addresses are ignored."""
        if self._v4.pop(address.packed, None) is None:
            return
        if self._device is not None:
            self._net.del_route(f"{address}/32", self._device.name)

    def attach_v6(self, prefix: IPv6Network, sink: Sink) -> None:
        """Send packets for `prefix` (a /64, or /56 to /64) to `sink`; routes it via the TUN."""
        name = self._require_device()
        keys = _v6_keys(prefix)
        clash = [k for k in keys if k in self._v6]
        if clash or prefix in self._v6_prefixes:
            raise ValueError(f"{prefix} overlaps a prefix attached to a session already")
        self._net.add_route(str(prefix), name)
        for key in keys:
            self._v6[key] = sink
        self._v6_prefixes[prefix] = sink

    def detach_v6(self, prefix: IPv6Network) -> None:
        """Forget `prefix`: its route is deleted; unknown prefixes are ignored."""
        if self._v6_prefixes.pop(prefix, None) is None:
            return
        for key in _v6_keys(prefix):
            self._v6.pop(key, None)
        if self._device is not None:
            self._net.del_route(str(prefix), self._device.name)

    def session_of(self, packet: bytes) -> Sink | None:
        """The sink the destination of `packet` belongs to (None: no session)."""
        version = packet[0] >> 4 if packet else 0
        if version == 4:
            return self._v4.get(packet[16:20])
        if version == 6:
            return self._v6.get(packet[24:32])
        return None

    # -- the packet path -----------------------------------------------------------------

    def tun_packet(self, packet: bytes) -> None:
        """A packet read from the TUN: to its session's sink, or a counted drop."""
        # The hot path: one slice, one dict lookup, no logging.
        version = packet[0] >> 4
        if version == 4:
            sink = self._v4.get(packet[16:20])
        elif version == 6:
            sink = self._v6.get(packet[24:32])
        else:
            sink = None
        if sink is None:
            self.no_session += 1
            return
        sink(packet)

    def deliver(self, packet: bytes) -> None:
        """An IP packet from a session: into the TUN (not IPv4/IPv6: a counted drop)."""
        version = packet[0] >> 4 if packet else 0
        if version != 4 and version != 6:
            self.bad_packets += 1
            return
        self._write(packet)

    def sender(
        self, v4: IPv4Address | None = None, v6: IPv6Network | None = None
    ) -> Callable[[bytes], None]:
        """A `deliver` for one session that drops packets not from its own addresses.

        IPv4 sources must be `v4`; IPv6 sources must lie in `v6`'s /64s or be link-local.
        """
        v4_src = v4.packed if v4 is not None else None
        v6_srcs = frozenset(_v6_keys(v6)) if v6 is not None else frozenset()
        deliver = self.deliver

        def send(packet: bytes) -> None:
            version = packet[0] >> 4 if packet else 0
            if version == 4:
                ok = v4_src is not None and packet[12:16] == v4_src
            elif version == 6:
                # fe80::/10 link-local sources (neighbour discovery) are fine too
                src = packet[8:16]
                ok = src in v6_srcs or (len(src) == 8 and src[0] == 0xFE and src[1] & 0xC0 == 0x80)
            else:
                ok = True  # deliver counts it
            if not ok:
                self.spoofed += 1
                return
            deliver(packet)

        return send

    def _not_started(self, packet: bytes) -> None:
        self.not_started += 1

    # -- state ---------------------------------------------------------------------------

    @property
    def sessions_v4(self) -> int:
        """How many IPv4 addresses are attached."""
        return len(self._v4)

    @property
    def sessions_v6(self) -> int:
        """How many IPv6 prefixes are attached."""
        return len(self._v6_prefixes)

    @property
    def stats(self) -> dict[str, int]:
        """Counters by name (device counters included when it has them)."""
        out = {
            "sessions_v4": len(self._v4),
            "sessions_v6": len(self._v6_prefixes),
            "no_session": self.no_session,
            "bad_packets": self.bad_packets,
            "spoofed": self.spoofed,
            "not_started": self.not_started,
        }
        device_stats = getattr(self._device, "stats", None)
        if callable(device_stats):
            out.update(device_stats())
        return out

    def close(self) -> None:
        """Forget every session, remove their routes and close the TUN; idempotent."""
        device = self._device
        self._device = None
        self._write = self._not_started
        v4 = list(self._v4)
        v6 = list(self._v6_prefixes)
        self._v4.clear()
        self._v6.clear()
        self._v6_prefixes.clear()
        if device is None:
            return
        if not self._owns_device:
            # A device we did not create outlives us: take our routes off it. (Closing our
            # own TUN makes the kernel drop its routes at once, thousands included.)
            for key in v4:
                self._net.del_route(f"{IPv4Address(key)}/32", device.name)
            for prefix in v6:
                self._net.del_route(str(prefix), device.name)
        device.close()
        log.info("dataplane %s closed", device.name)
