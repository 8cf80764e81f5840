"""Links, addresses and routes through rtnetlink (pyroute2), plus the forwarding sysctls.

Every operation is idempotent (adding what exists, deleting what is gone: no error) and
raises `NetConfigError` naming the device or route when the kernel refuses. They act on
the network namespace of the calling process.

pyroute2 (0.9) runs its own asyncio loop for the synchronous `IPRoute` API, which cannot
happen on a thread whose loop is running; so from inside a running loop each operation
is handed to one worker thread and waited for. These are control-plane calls (one per
session at most), never on the packet path.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("pyl2tp.io")

__all__ = [
    "NetConfigError",
    "Route",
    "add_address",
    "add_route",
    "default_routes",
    "del_address",
    "del_route",
    "delete_link",
    "enable_forwarding",
    "ipv6_conf",
    "link_exists",
    "link_up",
    "route_to",
]

T = TypeVar("T")

#: linux/if_addr.h: no duplicate address detection (an IPv6 address is usable at once)
IFA_F_NODAD = 0x02
#: linux/rtnetlink.h: the main routing table
RT_TABLE_MAIN = 254
#: linux/rtnetlink.h: RTN_UNICAST
RTN_UNICAST = 1

#: sysctls that make this namespace a router (per network namespace)
FORWARDING_V4 = Path("/proc/sys/net/ipv4/ip_forward")
FORWARDING_V6 = Path("/proc/sys/net/ipv6/conf/all/forwarding")


class NetConfigError(OSError):
    """A link, address or route operation failed; the message says which."""


@dataclass(frozen=True, slots=True)
class Route:
    """One route as the kernel holds it (enough to put it back)."""

    dst: str
    """"default" or a prefix, e.g. "198.18.100.0/24"."""
    gateway: str | None
    ifname: str | None
    metric: int | None = None
    table: int | None = None
    proto: int | None = None
    """Who made it (RTPROT_BOOT 3, RTPROT_STATIC 4, RTPROT_DHCP 16...)."""


_local = threading.local()
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _iproute() -> Any:
    """This thread's IPRoute socket (made on first use)."""
    ipr = getattr(_local, "ipr", None)
    if ipr is None:
        from pyroute2 import IPRoute  # type: ignore[import-untyped]

        ipr = IPRoute()
        _local.ipr = ipr
    return ipr


def _forget_iproute() -> None:
    ipr = getattr(_local, "ipr", None)
    _local.ipr = None
    if ipr is not None:
        try:
            ipr.close()
        except Exception:  # already broken: nothing to release
            log.debug("closing a broken netlink socket failed", exc_info=True)


def _code(exc: BaseException) -> int | None:
    """The errno of a pyroute2 NetlinkError or an OSError, else None."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, OSError):
        return exc.errno
    return None


def _in_thread(fn: Callable[[Any], T]) -> T:
    try:
        return fn(_iproute())
    except NetConfigError:
        raise
    except Exception as exc:
        if _code(exc) is None or (isinstance(exc, OSError) and exc.errno == errno.EBADF):
            _forget_iproute()  # the socket itself may be broken: start afresh next time
        raise


def _run(fn: Callable[[Any], T]) -> T:
    """Run fn(IPRoute) here, or on the worker thread when this thread's loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _in_thread(fn)
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyl2tp-netlink")
        executor = _executor
    return executor.submit(_in_thread, fn).result()


def _fail(exc: BaseException, what: str) -> NetConfigError:
    code = _code(exc) or errno.EIO
    return NetConfigError(code, f"{what}: {os.strerror(code)}")


def _index(ipr: Any, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise NetConfigError(errno.ENODEV, f"no network device {ifname!r}")
    return int(found[0])


def _ifname(ipr: Any, index: int) -> str | None:
    try:
        links = ipr.get_links(index)
    except Exception:
        return None
    if not links:
        return None
    name = links[0].get_attr("IFLA_IFNAME")
    return str(name) if name is not None else None


def _prefix(dst: str, gateway: str | None = None) -> tuple[str, int]:
    """Normalise "default" and bare addresses to a prefix; returns (prefix, family)."""
    if dst in ("default", "default4", "0/0"):
        v6 = gateway is not None and ":" in gateway
        return ("::/0", 10) if v6 else ("0.0.0.0/0", 2)
    if dst == "default6":
        return "::/0", 10
    net = ipaddress.ip_network(dst, strict=False)
    return str(net), (10 if net.version == 6 else 2)


def link_exists(ifname: str) -> bool:
    """Whether a device of this name exists in this namespace."""
    return _run(lambda ipr: bool(ipr.link_lookup(ifname=ifname)))


def link_up(ifname: str, mtu: int | None = None) -> None:
    """Set a device up (and its MTU when given)."""

    def op(ipr: Any) -> None:
        index = _index(ipr, ifname)
        kw: dict[str, Any] = {"state": "up"}
        if mtu is not None:
            kw["mtu"] = mtu
        try:
            ipr.link("set", index=index, **kw)
        except Exception as exc:
            raise _fail(exc, f"cannot set {ifname} up (mtu {mtu})") from exc

    _run(op)


def add_address(ifname: str, address: str, prefixlen: int, *, peer: str | None = None) -> None:
    """Put an address on a device; with `peer`, a point-to-point address (local peer P)."""
    family = 10 if ipaddress.ip_address(address).version == 6 else 2
    shown = f"{address}/{prefixlen}" + (f" peer {peer}" if peer else "")

    def op(ipr: Any) -> None:
        index = _index(ipr, ifname)
        kw: dict[str, Any] = {"index": index, "family": family, "prefixlen": prefixlen}
        if peer is not None:
            kw["local"] = address
            kw["address"] = peer
        else:
            kw["address"] = address
        if family == 10:
            kw["flags"] = IFA_F_NODAD
        try:
            ipr.addr("replace", **kw)
        except Exception as exc:
            if _code(exc) == errno.EEXIST:
                return
            raise _fail(exc, f"cannot add address {shown} to {ifname}") from exc

    _run(op)


def del_address(ifname: str, address: str, prefixlen: int, *, peer: str | None = None) -> None:
    """Remove an address from a device; gone already (or no device) is fine."""
    family = 10 if ipaddress.ip_address(address).version == 6 else 2

    def op(ipr: Any) -> None:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        kw: dict[str, Any] = {"index": found[0], "family": family, "prefixlen": prefixlen}
        if peer is not None:
            kw["local"] = address
            kw["address"] = peer
        else:
            kw["address"] = address
        try:
            ipr.addr("del", **kw)
        except Exception as exc:
            if _code(exc) in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ESRCH, errno.ENODEV):
                return
            raise _fail(exc, f"cannot remove address {address} from {ifname}") from exc

    _run(op)


def add_route(
    dst: str,
    ifname: str,
    *,
    gateway: str | None = None,
    table: int | None = None,
    metric: int | None = None,
    proto: int | None = None,
) -> None:
    """Route `dst` ("default" or a prefix) via `ifname` (and `gateway`); replaces a match."""
    prefix, family = _prefix(dst, gateway)
    shown = f"{prefix} dev {ifname}" + (f" via {gateway}" if gateway else "")
    if table is not None:
        shown += f" table {table}"

    def op(ipr: Any) -> None:
        index = _index(ipr, ifname)
        kw: dict[str, Any] = {"dst": prefix, "oif": index, "family": family}
        if gateway is not None:
            kw["gateway"] = gateway
        if table is not None:
            kw["table"] = table
        if metric is not None:
            kw["priority"] = metric
        if proto is not None:
            kw["proto"] = proto
        try:
            ipr.route("replace", **kw)
        except Exception as exc:
            raise _fail(exc, f"cannot add route {shown}") from exc

    _run(op)


def del_route(
    dst: str,
    ifname: str | None = None,
    *,
    gateway: str | None = None,
    table: int | None = None,
    metric: int | None = None,
) -> None:
    """Delete a route (on `ifname` when given); a route or device already gone is fine."""
    prefix, family = _prefix(dst, gateway)
    shown = prefix + (f" dev {ifname}" if ifname else "")

    def op(ipr: Any) -> None:
        kw: dict[str, Any] = {"dst": prefix, "family": family}
        if ifname is not None:
            found = ipr.link_lookup(ifname=ifname)
            if not found:
                return  # the kernel removed the device's routes with it
            kw["oif"] = found[0]
        if gateway is not None:
            kw["gateway"] = gateway
        if table is not None:
            kw["table"] = table
        if metric is not None:
            kw["priority"] = metric
        try:
            ipr.route("del", **kw)
        except Exception as exc:
            if _code(exc) in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                return
            raise _fail(exc, f"cannot delete route {shown}") from exc

    _run(op)


def route_to(dst: str) -> tuple[str | None, str | None]:
    """(gateway, ifname) the kernel uses now to reach `dst`; (None, None) if unreachable."""

    def op(ipr: Any) -> tuple[str | None, str | None]:
        try:
            answer = ipr.route("get", dst=dst)
        except Exception as exc:
            if _code(exc) in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ESRCH):
                return None, None
            raise _fail(exc, f"cannot look up the route to {dst}") from exc
        if not answer:
            return None, None
        msg = answer[0]
        gateway = msg.get("RTA_GATEWAY")
        oif = msg.get("RTA_OIF")
        ifname = _ifname(ipr, int(oif)) if oif is not None else None
        return (str(gateway) if gateway is not None else None), ifname

    return _run(op)


def default_routes(family: int = 4) -> list[Route]:
    """The unicast default routes of the main table (IPv4, or IPv6 with family=6)."""
    af = 10 if family == 6 else 2

    def op(ipr: Any) -> list[Route]:
        try:
            dump = list(ipr.route("dump", family=af))
        except Exception as exc:
            raise _fail(exc, "cannot list routes") from exc
        out = []
        for msg in dump:
            if msg["dst_len"] != 0 or msg["type"] != RTN_UNICAST:
                continue
            table = msg.get("RTA_TABLE") or msg["table"]
            if table != RT_TABLE_MAIN:
                continue
            oif = msg.get("RTA_OIF")
            gateway = msg.get("RTA_GATEWAY")
            metric = msg.get("RTA_PRIORITY")
            out.append(
                Route(
                    dst="default",
                    gateway=str(gateway) if gateway is not None else None,
                    ifname=_ifname(ipr, int(oif)) if oif is not None else None,
                    metric=int(metric) if metric is not None else None,
                    table=None,
                    proto=int(msg["proto"]),
                )
            )
        return out

    return _run(op)


def delete_link(ifname: str) -> None:
    """Delete a device; one that is gone already is fine."""

    def op(ipr: Any) -> None:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            return
        try:
            ipr.link("del", index=found[0])
        except Exception as exc:
            if _code(exc) == errno.ENODEV:
                return
            raise _fail(exc, f"cannot delete device {ifname}") from exc

    _run(op)


def enable_forwarding(*, v4: bool = True, v6: bool = True) -> None:
    """Turn on IP forwarding in this namespace (IPv6 skipped when the kernel lacks it)."""
    targets = [(FORWARDING_V4, v4, True), (FORWARDING_V6, v6, False)]
    for path, wanted, required in targets:
        if not wanted:
            continue
        try:
            if path.read_text().strip() == "1":
                continue
            path.write_text("1\n")
        except FileNotFoundError:
            if required:
                raise NetConfigError(errno.ENOENT, f"no sysctl {path}") from None
            log.debug("no %s: IPv6 forwarding not enabled", path)
        except OSError as exc:
            raise NetConfigError(exc.errno, f"cannot enable forwarding ({path}): {exc}") from exc


#: per-device IPv6 sysctls (this namespace)
IPV6_CONF = Path("/proc/sys/net/ipv6/conf")
#: addr_gen_mode: no automatic link-local address (we set the negotiated one)
ADDR_GEN_MODE_NONE = 1


def ipv6_conf(
    ifname: str, *, disable: bool | None = None, addr_gen_mode: int | None = None
) -> None:
    """Set a device's IPv6 sysctls (disable_ipv6, addr_gen_mode); no IPv6 at all is fine."""
    base = IPV6_CONF / ifname
    if "/" in ifname or ifname in ("", ".", ".."):
        raise ValueError(f"bad interface name {ifname!r}")
    values = [("addr_gen_mode", addr_gen_mode), ("disable_ipv6", disable)]
    for key, value in values:
        if value is None:
            continue
        path = base / key
        try:
            path.write_text(f"{int(value)}\n")
        except FileNotFoundError:
            if not IPV6_CONF.exists():
                return  # a kernel without IPv6
            raise NetConfigError(errno.ENODEV, f"no IPv6 settings for {ifname}") from None
        except OSError as exc:
            raise NetConfigError(exc.errno, f"cannot set {key} on {ifname}: {exc}") from exc
