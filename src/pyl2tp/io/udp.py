"""The asyncio shell around an `L2TPEndpoint`: UDP sockets and one timer.

It feeds datagrams and timer ticks in, then, in a fixed rhythm, sends what the
endpoint queued, hands events to the owner and re-arms the timer. No protocol
logic lives here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from pyl2tp.l2tp.endpoint import L2TPEndpoint
from pyl2tp.l2tp.events import Event
from pyl2tp.l2tp.tunnel import Addr

log = logging.getLogger("pyl2tp.io")


#: a receive buffer that absorbs bursts (many tunnels' HELLOs, a flood of SCCRQs)
RECEIVE_BUFFER = 4 * 1024 * 1024
#: Linux SO_RCVBUFFORCE (asm-generic/socket.h); the socket module does not export it
SO_RCVBUFFORCE = 33


def _grow_receive_buffer(sock: socket.socket) -> None:
    """Ask for RECEIVE_BUFFER; as root past net.core.rmem_max (SO_RCVBUFFORCE)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


class _Protocol(asyncio.DatagramProtocol):
    __slots__ = ("_driver", "_local")

    def __init__(self, driver: EndpointDriver, local: Addr) -> None:
        self._driver = driver
        self._local = local

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self._driver.datagram_received(data, (addr[0], addr[1]), self._local)

    def error_received(self, exc: Exception) -> None:
        # ICMP unreachable and the like: the reliable channel's retries cover it.
        log.debug("socket %s:%d: %s", *self._local, exc)


class EndpointDriver:
    """Runs an endpoint on asyncio UDP sockets."""

    def __init__(
        self, endpoint: L2TPEndpoint, on_event: Callable[[Event], None] | None = None
    ) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._transports: dict[Addr, asyncio.DatagramTransport] = {}
        self._default: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._flush_pending = False
        self.send_errors = 0

    def now(self) -> float:
        return self._loop.time()

    async def listen(self, host: str, port: int) -> Addr:
        """Bind one UDP socket; returns its local address."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _grow_receive_buffer(sock)
        sock.bind((host, port))
        local = sock.getsockname()
        addr: Addr = (local[0], local[1])
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Protocol(self, addr), sock=sock
        )
        self._transports[addr] = transport
        if self._default is None:
            self._default = transport
        return addr

    def datagram_received(self, data: bytes, peer: Addr, local: Addr) -> None:
        try:
            self.endpoint.datagram_received(data, peer, self.now(), local)
        except Exception:  # a bug must not take the daemon down; make it loud
            log.exception("unexpected error handling a datagram from %s:%d", *peer)
        self.transmit()

    def transmit(self) -> None:
        """Send what the endpoint queued, deliver events, re-arm the timer.

        Event handlers may act on the endpoint (open a session when a tunnel comes
        up), so sending and event delivery repeat until both are drained.
        """
        endpoint = self.endpoint
        for _ in range(16):
            self._send(endpoint.datagrams_to_send(self.now()))
            events = endpoint.next_events()
            if not events:
                break
            for event in events:
                if self.on_event is None:
                    continue
                try:
                    self.on_event(event)
                except Exception:
                    log.exception("event handler failed on %r", event)
        self._arm()

    def _send(self, datagrams: list[tuple[bytes, Addr, Addr | None]]) -> None:
        for data, peer, local in datagrams:
            transport = self._transports.get(local) if local is not None else None
            if transport is None:
                transport = self._default
            if transport is None or transport.is_closing():
                self.send_errors += 1
                continue
            try:
                transport.sendto(data, peer)
            except OSError:
                self.send_errors += 1

    def request_flush(self) -> None:
        """Flush once the current burst of work is done (TUN reads queue data this way)."""
        if not self._flush_pending:
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        self.transmit()

    def _arm(self) -> None:
        when = self.endpoint.get_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.endpoint.handle_timer(self.now())
        except Exception:
            log.exception("unexpected error in the L2TP timer")
        self.transmit()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        self._default = None
