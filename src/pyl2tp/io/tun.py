"""TUN devices: open one, and an asyncio reader/writer around its file descriptor.

The device is layer 3 (`IFF_TUN`) without the packet-information prefix (`IFF_NO_PI`):
every read returns one IP packet and every write takes one. The fd is non-blocking; the
reader drains it in bursts so that one loop wakeup costs one `epoll_wait` for many packets
(syscalls dominate the packet path, see benchmarks/).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
import struct
from collections.abc import Callable

log = logging.getLogger("pyl2tp.io")

__all__ = ["BURST", "IFNAMSIZ", "TunDevice", "open_tun", "set_mtu"]

# linux/if_tun.h
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
# linux/sockios.h
SIOCSIFMTU = 0x8922
#: linux/if.h: interface names are at most 15 characters plus the NUL
IFNAMSIZ = 16

#: struct ifreq with ifr_flags (TUNSETIFF)
_IFREQ_FLAGS = struct.Struct("16sH22x")
#: struct ifreq with ifr_mtu (SIOCSIFMTU)
_IFREQ_MTU = struct.Struct("16si20x")

#: packets read per loop wakeup at most, so one busy device cannot starve the others
BURST = 64
#: bytes asked of each read: the largest IP packet, so none is ever truncated
READ_SIZE = 65535


def _check_name(name: str) -> bytes:
    raw = name.encode()
    if len(raw) >= IFNAMSIZ or "/" in name or any(c.isspace() for c in name):
        raise ValueError(f"bad interface name {name!r} (at most {IFNAMSIZ - 1} bytes)")
    return raw


def set_mtu(ifname: str, mtu: int) -> None:
    """Set a device's MTU with SIOCSIFMTU (no netlink needed)."""
    raw = _check_name(ifname)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            fcntl.ioctl(sock.fileno(), SIOCSIFMTU, _IFREQ_MTU.pack(raw, mtu))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot set MTU {mtu} on {ifname}: {exc.strerror}") from exc


def open_tun(name: str = "", *, mtu: int | None = None) -> tuple[int, str]:
    """Create (or attach to) a TUN device; returns (non-blocking fd, actual name).

    An empty name lets the kernel choose ("tun0", "tun1"...); a name with "%d" is a
    template. The device lives as long as the fd stays open. Needs CAP_NET_ADMIN.
    """
    raw = _check_name(name)
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot open /dev/net/tun: {exc.strerror}") from exc
    try:
        try:
            ifr = fcntl.ioctl(fd, TUNSETIFF, _IFREQ_FLAGS.pack(raw, IFF_TUN | IFF_NO_PI))
        except OSError as exc:
            what = name or "a TUN device"
            raise OSError(exc.errno, f"cannot create {what}: {exc.strerror}") from exc
        actual = _IFREQ_FLAGS.unpack(ifr)[0].rstrip(b"\0").decode()
        if mtu is not None:
            set_mtu(actual, mtu)
    except BaseException:
        os.close(fd)
        raise
    return fd, actual


class TunDevice:
    """An open TUN fd on the running asyncio loop: packets in via a callback, out by write."""

    __slots__ = (
        "_loop",
        "_on_packet",
        "_reading",
        "fd",
        "name",
        "read_size",
        "rx_dropped",
        "rx_errors",
        "rx_packets",
        "tx_dropped",
        "tx_packets",
    )

    def __init__(self, fd: int, name: str, on_packet: Callable[[bytes], None]) -> None:
        self.fd = fd
        self.name = name
        self._on_packet = on_packet
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self.read_size = READ_SIZE
        #: packets read from the device and handed to on_packet
        self.rx_packets = 0
        #: packets read but lost because on_packet raised
        self.rx_dropped = 0
        #: read errors other than "nothing to read"
        self.rx_errors = 0
        #: packets written to the device
        self.tx_packets = 0
        #: packets the device refused (queue full, device down, bad packet)
        self.tx_dropped = 0

    def start(self) -> None:
        """Register the reader on the running loop."""
        if self._reading or self.fd < 0:
            return
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.fd, self._readable)
        self._reading = True

    def _readable(self) -> None:
        # Drain up to BURST packets: one wakeup, many reads, until EAGAIN.
        fd = self.fd
        size = self.read_size
        on_packet = self._on_packet
        read = os.read
        n = 0
        try:
            while n < BURST:
                packet = read(fd, size)
                if not packet:
                    break
                n += 1
                try:
                    on_packet(packet)
                except Exception:  # a bug in a consumer must not stop the reader
                    self.rx_dropped += 1
                    log.exception("%s: packet handler failed", self.name)
        except BlockingIOError:
            pass
        except OSError as exc:
            self.rx_errors += 1
            log.warning("%s: read failed: %s", self.name, exc)
        self.rx_packets += n

    def write(self, packet: bytes) -> None:
        """Write one IP packet; a refusal (EAGAIN, ENOBUFS, EIO...) is a counted drop."""
        try:
            os.write(self.fd, packet)
        except OSError:
            self.tx_dropped += 1
            return
        self.tx_packets += 1

    def close(self) -> None:
        """Stop reading and close the fd (a non-persistent device disappears with it)."""
        if self._reading and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.fd)
        self._reading = False
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1

    def stats(self) -> dict[str, int]:
        """The counters, by name."""
        return {
            "rx_packets": self.rx_packets,
            "rx_dropped": self.rx_dropped,
            "rx_errors": self.rx_errors,
            "tx_packets": self.tx_packets,
            "tx_dropped": self.tx_dropped,
        }
