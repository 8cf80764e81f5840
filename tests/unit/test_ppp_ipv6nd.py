"""Router solicitation/advertisement packets, checked against scapy as an independent codec."""

from __future__ import annotations

from ipaddress import IPv6Address, IPv6Network

import pytest
from scapy.layers.inet6 import (
    ICMPv6ND_RA,
    ICMPv6ND_RS,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    IPv6,
)

from pyl2tp.ppp.ipv6nd import (
    ROUTER_ADVERTISEMENT,
    ROUTER_SOLICITATION,
    icmp_type,
    link_local,
    parse_router_advertisement,
    router_advertisement,
    router_solicitation,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

IID = bytes.fromhex("0211223344556677")
PREFIX = IPv6Network("2001:2:0:7::/64")


def test_link_local_from_interface_id() -> None:
    assert link_local(IID) == IPv6Address("fe80::211:2233:4455:6677")


def test_router_advertisement_decodes_in_scapy() -> None:
    data = router_advertisement(link_local(IID), PREFIX, mtu=1400)
    pkt = IPv6(data)
    assert pkt.src == "fe80::211:2233:4455:6677" and pkt.dst == "ff02::1" and pkt.hlim == 255
    ra = pkt[ICMPv6ND_RA]
    assert ra.routerlifetime == 1800
    info = pkt[ICMPv6NDOptPrefixInfo]
    assert info.prefix == "2001:2:0:7::" and info.prefixlen == 64 and info.A == 1 and info.L == 1
    assert pkt[ICMPv6NDOptMTU].mtu == 1400
    cksum = ra.cksum
    del pkt[ICMPv6ND_RA].cksum
    assert IPv6(bytes(pkt))[ICMPv6ND_RA].cksum == cksum
    assert icmp_type(data) == ROUTER_ADVERTISEMENT


def test_scapy_router_advertisement_parses_in_ours() -> None:
    pkt = (
        IPv6(src="fe80::1", dst="ff02::1", hlim=255)
        / ICMPv6ND_RA()
        / ICMPv6NDOptMTU(mtu=1400)
        / ICMPv6NDOptPrefixInfo(prefix="2001:2:0:9::", prefixlen=64, A=1, L=1)
    )
    assert parse_router_advertisement(bytes(pkt)) == (
        IPv6Address("fe80::1"),
        IPv6Network("2001:2:0:9::/64"),
    )


def test_bad_advertisements_are_ignored() -> None:
    good = bytearray(router_advertisement(link_local(IID), PREFIX))
    wrong_hops = bytearray(good)
    wrong_hops[7] = 64
    assert parse_router_advertisement(bytes(wrong_hops)) is None  # RFC 4861 6.1.2
    bad_sum = bytearray(good)
    bad_sum[42] ^= 0xFF
    assert parse_router_advertisement(bytes(bad_sum)) is None
    assert parse_router_advertisement(bytes(good[:50])) is None
    zero_len = bytearray(good)
    zero_len[40 + 16 + 1] = 0  # option length 0 is invalid (RFC 4861 4.6)
    assert parse_router_advertisement(bytes(zero_len)) is None
    assert parse_router_advertisement(b"") is None


def test_router_solicitation_decodes_in_scapy() -> None:
    data = router_solicitation(link_local(IID))
    pkt = IPv6(data)
    assert pkt.dst == "ff02::2" and ICMPv6ND_RS in pkt
    assert icmp_type(data) == ROUTER_SOLICITATION
