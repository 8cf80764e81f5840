"""Router solicitations and advertisements on a PPP link (RFC 4861 4.1/4.2, RFC 5072 5).

IPv6CP only agrees on interface identifiers; the session's /64 prefix reaches
the client in a Router Advertisement with one Prefix Information option
(autonomous), as on any IPv6-over-PPP access link. Sans-I/O: bytes in, bytes out.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address, IPv6Network

ICMPV6 = 58
ROUTER_SOLICITATION = 133
ROUTER_ADVERTISEMENT = 134
ALL_NODES = IPv6Address("ff02::1")
ALL_ROUTERS = IPv6Address("ff02::2")
#: RFC 4861 6.2.1 defaults, in seconds
ROUTER_LIFETIME = 1800
VALID_LIFETIME = 86400
PREFERRED_LIFETIME = 14400

_IPV6_HEADER = struct.Struct("!IHBB16s16s")
_RA = struct.Struct("!BBHBBHII")
_PREFIX_OPTION = struct.Struct("!BBBBIII16s")
_MTU_OPTION = struct.Struct("!BBHI")


def link_local(interface_id: bytes) -> IPv6Address:
    """fe80::/64 plus the 8-byte IPv6CP interface identifier (RFC 5072 5)."""
    return IPv6Address(b"\xfe\x80" + bytes(6) + interface_id)


def _checksum(src: bytes, dst: bytes, payload: bytes) -> int:
    pseudo = src + dst + struct.pack("!IxxxB", len(payload), ICMPV6)
    data = pseudo + payload
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv6(src: IPv6Address, dst: IPv6Address, icmp: bytes) -> bytes:
    s, d = src.packed, dst.packed
    csum = _checksum(s, d, icmp)
    icmp = icmp[:2] + struct.pack("!H", csum) + icmp[4:]
    # Version 6, hop limit 255 as neighbour discovery requires (RFC 4861 6.1.2).
    return _IPV6_HEADER.pack(6 << 28, len(icmp), ICMPV6, 255, s, d) + icmp


def router_advertisement(
    source: IPv6Address,
    prefix: IPv6Network,
    *,
    mtu: int | None = None,
    dst: IPv6Address = ALL_NODES,
) -> bytes:
    """A whole IPv6 packet: RA with the prefix (on-link, autonomous) and the link MTU."""
    body = _RA.pack(ROUTER_ADVERTISEMENT, 0, 0, 64, 0, ROUTER_LIFETIME, 0, 0)
    body += _PREFIX_OPTION.pack(
        3,
        4,
        prefix.prefixlen,
        0xC0,
        VALID_LIFETIME,
        PREFERRED_LIFETIME,
        0,
        prefix.network_address.packed,
    )
    if mtu is not None:
        body += _MTU_OPTION.pack(5, 1, 0, mtu)
    return _ipv6(source, dst, body)


def router_solicitation(source: IPv6Address) -> bytes:
    """A whole IPv6 packet: RS to all routers, with no options."""
    return _ipv6(source, ALL_ROUTERS, struct.pack("!BBHI", ROUTER_SOLICITATION, 0, 0, 0))


def icmp_type(packet: bytes) -> int | None:
    """The ICMPv6 type of an IPv6 packet without extension headers, else None."""
    if len(packet) < 41 or packet[0] >> 4 != 6 or packet[6] != ICMPV6:
        return None
    return packet[40]


def parse_router_advertisement(packet: bytes) -> tuple[IPv6Address, IPv6Network] | None:
    """(router's address, first autonomous /64 prefix) of a valid RA, else None."""
    if icmp_type(packet) != ROUTER_ADVERTISEMENT or packet[7] != 255:
        return None
    length = struct.unpack_from("!H", packet, 4)[0]
    icmp = packet[40 : 40 + length]
    if len(icmp) < _RA.size or _checksum(packet[8:24], packet[24:40], icmp) != 0:
        return None
    router = IPv6Address(packet[8:24])
    offset = _RA.size
    while offset + 2 <= len(icmp):
        kind, units = icmp[offset], icmp[offset + 1]
        if units == 0 or offset + units * 8 > len(icmp):
            return None
        if kind == 3 and units == 4:
            plen, flags = icmp[offset + 2], icmp[offset + 3]
            raw = icmp[offset + 16 : offset + 32]
            if flags & 0x40 and plen == 64:
                return router, IPv6Network((raw, 64), strict=False)
        offset += units * 8
    return None
