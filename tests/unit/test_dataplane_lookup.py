"""Dataplane lookups and bookkeeping with a fake kernel: no TUN, no netlink, no root."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyl2tp.dataplane.client import ClientDataplane
from pyl2tp.dataplane.resolver import ResolverConfig
from pyl2tp.dataplane.server import ServerDataplane
from pyl2tp.io.netlink import Route

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

_V4 = struct.Struct("!BBHHHBBH4s4s")
_V6 = struct.Struct("!IHBB16s16s")


def ipv4(src: str, dst: str, payload: bytes = b"x" * 8) -> bytes:
    return _V4.pack(0x45, 0, 20 + len(payload), 1, 0, 64, 17, 0,
                    IPv4Address(src).packed, IPv4Address(dst).packed) + payload


def ipv6(src: str, dst: str, payload: bytes = b"y" * 8) -> bytes:
    return _V6.pack(6 << 28, len(payload), 17, 64,
                    IPv6Address(src).packed, IPv6Address(dst).packed) + payload


class FakeNet:
    """Records every kernel operation; route_to and default routes are scripted."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.routes: set[tuple[str, str]] = set()
        self.path_to: dict[str, tuple[str | None, str | None]] = {}
        self.defaults: list[Route] = []
        self.fail_on: str | None = None

    def _maybe_fail(self, what: str) -> None:
        if self.fail_on == what:
            raise OSError(f"scripted failure: {what}")

    def link_up(self, ifname: str, mtu: int | None = None) -> None:
        self.calls.append(("link_up", ifname, mtu))

    def add_address(self, ifname: str, address: str, prefixlen: int, *,
                    peer: str | None = None) -> None:
        self.calls.append(("add_address", ifname, address, prefixlen, peer))

    def add_route(self, dst: str, ifname: str, *, gateway: str | None = None,
                  table: int | None = None, metric: int | None = None,
                  proto: int | None = None) -> None:
        self._maybe_fail(dst)
        self.calls.append(("add_route", dst, ifname, gateway))
        self.routes.add((dst, ifname))

    def del_route(self, dst: str, ifname: str | None = None, *, gateway: str | None = None,
                  table: int | None = None, metric: int | None = None) -> None:
        self.calls.append(("del_route", dst, ifname))
        self.routes.discard((dst, ifname or ""))

    def route_to(self, dst: str) -> tuple[str | None, str | None]:
        self.calls.append(("route_to", dst))
        return self.path_to.get(dst, (None, None))

    def default_routes(self, family: int = 4) -> list[Route]:
        return list(self.defaults)

    def enable_forwarding(self, *, v4: bool = True, v6: bool = True) -> None:
        self.calls.append(("enable_forwarding", v4, v6))

    def ipv6_conf(self, ifname: str, *, disable: bool | None = None,
                  addr_gen_mode: int | None = None) -> None:
        self.calls.append(("ipv6_conf", ifname, disable, addr_gen_mode))


class FakeDevice:
    def __init__(self, name: str = "tunX") -> None:
        self.name = name
        self.written: list[bytes] = []
        self.closed = False

    def write(self, packet: bytes) -> None:
        assert not self.closed, "write after close"
        self.written.append(packet)

    def close(self) -> None:
        self.closed = True


class Box:
    """A session sink that keeps what it gets."""

    def __init__(self) -> None:
        self.got: list[bytes] = []

    def __call__(self, packet: bytes) -> None:
        self.got.append(packet)


def started(net: FakeNet | None = None) -> tuple[ServerDataplane, FakeNet, FakeDevice]:
    net = net or FakeNet()
    dev = FakeDevice("pl2t0")
    dp = ServerDataplane(tun_name="pl2t0", local_v4=IPv4Address("198.18.100.1"),
                         local_v6=IPv6Address("2001:2::1"), mtu=1380, net=net)
    dp.start(dev)
    return dp, net, dev


# -- server: start ---------------------------------------------------------------------------

def test_start_addresses_the_device_and_turns_forwarding_on() -> None:
    dp, net, _ = started()
    assert ("add_address", "pl2t0", "198.18.100.1", 32, None) in net.calls
    assert ("add_address", "pl2t0", "2001:2::1", 128, None) in net.calls
    assert ("link_up", "pl2t0", 1380) in net.calls
    assert ("enable_forwarding", True, True) in net.calls
    assert dp.ifname == "pl2t0"


def test_start_failure_closes_the_device() -> None:
    class Broken(FakeNet):
        def link_up(self, ifname: str, mtu: int | None = None) -> None:
            raise OSError("no")

    dev = FakeDevice()
    dp = ServerDataplane(local_v4=IPv4Address("198.18.100.1"), net=Broken())
    with pytest.raises(OSError):
        dp.start(dev)
    assert dev.closed
    with pytest.raises(RuntimeError):
        dp.attach_v4(IPv4Address("198.18.100.10"), Box())


def test_before_start_nothing_is_written_and_attach_refuses() -> None:
    dp = ServerDataplane(local_v4=IPv4Address("198.18.100.1"), net=FakeNet())
    dp.deliver(ipv4("198.18.100.10", "198.18.0.1"))
    assert dp.stats["not_started"] == 1
    with pytest.raises(RuntimeError):
        dp.attach_v4(IPv4Address("198.18.100.10"), Box())


# -- server: the TUN read path ---------------------------------------------------------------

def test_v4_packets_find_their_session_by_destination() -> None:
    dp, net, _ = started()
    a, b = Box(), Box()
    dp.attach_v4(IPv4Address("198.18.100.10"), a)
    dp.attach_v4(IPv4Address("198.18.100.11"), b)
    assert ("198.18.100.10/32", "pl2t0") in net.routes
    assert ("198.18.100.11/32", "pl2t0") in net.routes
    to_a = ipv4("198.18.0.9", "198.18.100.10")
    to_b = ipv4("198.18.100.10", "198.18.100.11")  # the source does not matter
    dp.tun_packet(to_a)
    dp.tun_packet(to_b)
    dp.tun_packet(ipv4("198.18.0.9", "198.18.100.12"))
    assert a.got == [to_a] and a.got[0] is to_a
    assert b.got == [to_b]
    assert dp.no_session == 1
    assert dp.stats["sessions_v4"] == 2


def test_v6_packets_find_their_session_by_slash64() -> None:
    dp, net, _ = started()
    s = Box()
    dp.attach_v6(IPv6Network("2001:2:0:1::/64"), s)
    assert ("2001:2:0:1::/64", "pl2t0") in net.routes
    inside = ipv6("2001:2::1", "2001:2:0:1:aaaa:bbbb:cccc:dddd")
    dp.tun_packet(inside)
    dp.tun_packet(ipv6("2001:2::1", "2001:2:0:2::1"))
    # a v4 session with the same leading bytes is a different table
    dp.tun_packet(ipv4("198.18.0.9", "32.1.0.2"))
    assert s.got == [inside]
    assert dp.no_session == 2


def test_v6_prefix_shorter_than_64_covers_each_slash64() -> None:
    dp, _, _ = started()
    s = Box()
    dp.attach_v6(IPv6Network("2001:2:0:10::/60"), s)
    for sub in range(16):
        dp.tun_packet(ipv6("2001:2::1", f"2001:2:0:{0x10 + sub:x}::5"))
    dp.tun_packet(ipv6("2001:2::1", "2001:2:0:20::5"))
    assert len(s.got) == 16 and dp.no_session == 1
    dp.detach_v6(IPv6Network("2001:2:0:10::/60"))
    dp.tun_packet(ipv6("2001:2::1", "2001:2:0:13::5"))
    assert len(s.got) == 16 and dp.no_session == 2


@pytest.mark.parametrize("prefix", ["2001:2::/48", "2001:2:0:1::/80", "2001:2:0:1::1/128"])
def test_v6_prefix_lengths_outside_56_to_64_are_refused(prefix: str) -> None:
    dp, net, _ = started()
    with pytest.raises(ValueError):
        dp.attach_v6(IPv6Network(prefix), Box())
    assert not any(c[0] == "add_route" for c in net.calls)


def test_overlapping_or_double_attach_is_refused() -> None:
    dp, net, _ = started()
    first = Box()
    dp.attach_v4(IPv4Address("198.18.100.10"), first)
    dp.attach_v6(IPv6Network("2001:2:0:1::/64"), first)
    routes = len(net.routes)
    with pytest.raises(ValueError):
        dp.attach_v4(IPv4Address("198.18.100.10"), Box())
    with pytest.raises(ValueError):
        dp.attach_v6(IPv6Network("2001:2:0::/60"), Box())
    assert len(net.routes) == routes
    packet = ipv4("198.18.0.9", "198.18.100.10")
    dp.tun_packet(packet)
    assert first.got == [packet]


def test_detach_removes_route_and_entry() -> None:
    dp, net, _ = started()
    s = Box()
    dp.attach_v4(IPv4Address("198.18.100.10"), s)
    dp.attach_v6(IPv6Network("2001:2:0:1::/64"), s)
    dp.detach_v4(IPv4Address("198.18.100.10"))
    dp.detach_v6(IPv6Network("2001:2:0:1::/64"))
    assert ("del_route", "198.18.100.10/32", "pl2t0") in net.calls
    assert ("del_route", "2001:2:0:1::/64", "pl2t0") in net.calls
    assert not net.routes
    dp.tun_packet(ipv4("198.18.0.9", "198.18.100.10"))
    dp.tun_packet(ipv6("2001:2::1", "2001:2:0:1::1"))
    assert s.got == [] and dp.no_session == 2
    calls = len(net.calls)
    dp.detach_v4(IPv4Address("198.18.100.10"))  # unknown now: nothing happens
    assert len(net.calls) == calls
    dp.attach_v4(IPv4Address("198.18.100.10"), s)  # free again
    assert ("198.18.100.10/32", "pl2t0") in net.routes


@pytest.mark.parametrize("packet", [b"\x45", b"\x45" + bytes(15), bytes(40), b"\xf0" * 40,
                                    b"\x60" + bytes(20)])
def test_short_or_unknown_tun_packets_are_counted_drops(packet: bytes) -> None:
    dp, _, _ = started()
    dp.attach_v4(IPv4Address("0.0.0.0"), Box())  # would match zero bytes at 16:20
    before = dp.no_session
    dp.tun_packet(packet)
    assert dp.no_session == before + 1


def test_scapy_built_packets_are_routed_by_their_destination() -> None:
    scapy = pytest.importorskip("scapy.all")
    dp, _, _ = started()
    a, b = Box(), Box()
    dp.attach_v4(IPv4Address("198.18.100.10"), a)
    dp.attach_v6(IPv6Network("2001:2:0:7::/64"), b)
    p4 = bytes(scapy.IP(src="198.18.0.9", dst="198.18.100.10", options=[scapy.IPOption_NOP()])
               / scapy.ICMP())
    p6 = bytes(scapy.IPv6(src="2001:2::1", dst="2001:2:0:7::42") / scapy.ICMPv6EchoRequest())
    dp.tun_packet(p4)
    dp.tun_packet(p6)
    assert a.got == [p4] and b.got == [p6]


@settings(max_examples=200, deadline=None)
@given(
    attached=st.sets(st.integers(0, 255), max_size=20),
    probes=st.lists(st.integers(0, 255), max_size=30),
)
def test_lookup_matches_a_reference_model(attached: set[int], probes: list[int]) -> None:
    dp, _, _ = started()
    boxes = {}
    for last in attached:
        boxes[last] = Box()
        dp.attach_v4(IPv4Address(f"198.18.100.{last}"), boxes[last])
    for last in probes:
        dp.tun_packet(ipv4("198.18.0.9", f"198.18.100.{last}"))
    for last, box in boxes.items():
        assert len(box.got) == probes.count(last)
    assert dp.no_session == sum(1 for p in probes if p not in attached)


# -- server: the session -> TUN path ---------------------------------------------------------

def test_deliver_writes_ip_packets_and_drops_garbage() -> None:
    dp, _, dev = started()
    good4 = ipv4("198.18.100.10", "198.18.0.9")
    good6 = ipv6("2001:2:0:1::1", "2001:2::9")
    for packet in (good4, b"", b"\x00" * 20, b"\x50" * 20, good6, b"\xff"):
        dp.deliver(packet)
    assert dev.written == [good4, good6]
    assert dp.bad_packets == 4


def test_sender_drops_spoofed_sources() -> None:
    dp, _, dev = started()
    send = dp.sender(IPv4Address("198.18.100.10"), IPv6Network("2001:2:0:1::/64"))
    own4 = ipv4("198.18.100.10", "198.18.0.9")
    own6 = ipv6("2001:2:0:1::abcd", "2001:2::9")
    link_local = ipv6("fe80::1", "ff02::2")
    for packet in (own4, ipv4("198.18.100.11", "198.18.0.9"), own6,
                   ipv6("2001:2:0:2::1", "2001:2::9"), link_local, ipv6("fec0::1", "ff02::2")):
        send(packet)
    assert dev.written == [own4, own6, link_local]
    assert dp.spoofed == 3
    v4_only = dp.sender(IPv4Address("198.18.100.12"))
    v4_only(own6)
    assert dp.spoofed == 4


# -- server: close ---------------------------------------------------------------------------

def test_close_removes_routes_and_closes_the_device_once() -> None:
    dp, net, dev = started()
    dp.attach_v4(IPv4Address("198.18.100.10"), Box())
    dp.attach_v6(IPv6Network("2001:2:0:1::/64"), Box())
    dp.close()
    assert not net.routes
    assert dev.closed
    dp.deliver(ipv4("198.18.100.10", "198.18.0.9"))
    assert dev.written == [] and dp.not_started == 1
    dp.close()
    assert dp.stats["sessions_v4"] == 0 and dp.stats["sessions_v6"] == 0


# -- client ----------------------------------------------------------------------------------

def make_client(routes: list[str], net: FakeNet, tmp_path: Path,
                dev: FakeDevice | None = None) -> tuple[ClientDataplane, FakeDevice, list[object]]:
    dev = dev or FakeDevice("pl2c0")
    opened: list[object] = []

    def opener(name: str, mtu: int, on_packet: object) -> FakeDevice:
        opened.append((name, mtu, on_packet))
        return dev

    resolver = ResolverConfig(resolv_conf=tmp_path / "resolv.conf", state_dir=tmp_path / "run",
                              use_resolved=False)
    cdp = ClientDataplane(tun_name="pl2c0", server="198.18.1.1", routes=routes, mtu=1400,
                          net=net, resolver=resolver, open_device=opener)
    return cdp, dev, opened


def test_client_up_with_prefix_routes(tmp_path: Path) -> None:
    net = FakeNet()
    cdp, dev, opened = make_client(["198.18.100.0/24", "2001:2:0:5::/64"], net, tmp_path)
    sink = Box()
    cdp.up(IPv4Address("198.18.100.10"), IPv4Address("198.18.100.1"), sink, mtu=1360,
           local_v6_id=bytes.fromhex("0011223344556677"))
    assert opened == [("pl2c0", 1360, sink)]
    assert ("add_address", "pl2c0", "198.18.100.10", 32, "198.18.100.1") in net.calls
    assert ("add_address", "pl2c0", "fe80::11:2233:4455:6677", 64, None) in net.calls
    assert ("ipv6_conf", "pl2c0", None, 1) in net.calls  # no kernel-made link-local
    assert ("link_up", "pl2c0", 1360) in net.calls
    assert net.routes == {("198.18.100.0/24", "pl2c0"), ("2001:2:0:5::/64", "pl2c0")}
    assert not any(c[0] == "route_to" for c in net.calls)  # no default: nothing pinned
    packet = ipv4("198.18.100.10", "198.18.100.1")
    cdp.deliver(packet)
    assert dev.written == [packet]
    cdp.down()
    assert not net.routes and dev.closed
    cdp.deliver(packet)
    assert cdp.dropped == 1
    cdp.down()  # idempotent


def test_client_default_pins_the_server_first_and_restores_the_old_default(
    tmp_path: Path,
) -> None:
    net = FakeNet()
    net.path_to["198.18.1.1"] = ("198.18.0.254", "veth0")
    old = Route(dst="default", gateway="198.18.0.254", ifname="veth0", metric=100)
    net.defaults = [old]
    cdp, _, _ = make_client(["default"], net, tmp_path)
    cdp.up(IPv4Address("198.18.100.10"), IPv4Address("198.18.100.1"), Box())
    assert ("ipv6_conf", "pl2c0", True, None) in net.calls  # no IPv6CP: IPv6 off
    adds = [c for c in net.calls if c[0] == "add_route"]
    assert adds == [("add_route", "198.18.1.1", "veth0", "198.18.0.254"),
                    ("add_route", "default", "pl2c0", None)]
    net.calls.clear()
    cdp.down()
    assert net.calls == [
        ("del_route", "default", "pl2c0"),
        ("add_route", "default", "veth0", "198.18.0.254"),
        ("del_route", "198.18.1.1", "veth0"),
    ]


def test_client_default_without_a_path_to_the_server_fails_clean(tmp_path: Path) -> None:
    net = FakeNet()
    cdp, dev, _ = make_client(["default"], net, tmp_path)
    with pytest.raises(OSError, match=r"198\.18\.1\.1"):
        cdp.up(IPv4Address("198.18.100.10"), IPv4Address("198.18.100.1"), Box())
    assert dev.closed and not cdp.is_up and not net.routes


def test_client_failure_midway_undoes_everything(tmp_path: Path) -> None:
    net = FakeNet()
    net.fail_on = "198.18.200.0/24"
    cdp, dev, _ = make_client(["198.18.100.0/24", "198.18.200.0/24"], net, tmp_path)
    with pytest.raises(OSError, match="scripted"):
        cdp.up(IPv4Address("198.18.100.10"), IPv4Address("198.18.100.1"), Box(),
               dns=[IPv4Address("198.18.0.53")])
    assert not net.routes and dev.closed
    assert not (tmp_path / "resolv.conf").exists()


def test_client_dns_written_and_restored(tmp_path: Path) -> None:
    (tmp_path / "resolv.conf").write_text("nameserver 198.18.0.99\n")
    cdp, _, _ = make_client(["198.18.100.0/24"], FakeNet(), tmp_path)
    cdp.up(IPv4Address("198.18.100.10"), IPv4Address("198.18.100.1"), Box(),
           dns=[IPv4Address("198.18.0.53"), IPv4Address("198.18.0.54")])
    text = (tmp_path / "resolv.conf").read_text()
    assert "nameserver 198.18.0.53\nnameserver 198.18.0.54\n" in text
    assert "198.18.0.99" not in text
    cdp.down()
    assert (tmp_path / "resolv.conf").read_text() == "nameserver 198.18.0.99\n"


def test_client_rejects_bad_route_names() -> None:
    with pytest.raises(ValueError):
        ClientDataplane(server="198.18.1.1", routes=["198.18.100.0/33"], mtu=1400, net=FakeNet())
    # addresses/prefixes of both families are fine
    cdp = ClientDataplane(server="198.18.1.1", routes=["default", "198.18.1.0/24", "2001:2::/48"],
                          mtu=1400, net=FakeNet())
    assert cdp.routes == ["default", "198.18.1.0/24", "2001:2::/48"] and not cdp.is_up
