"""The asyncio shell around an `L2TPEndpoint`: non-blocking UDP sockets and one timer.

It feeds datagrams and timer ticks in, then, in a fixed rhythm, sends what the
endpoint queued, hands events to the owner and re-arms the timer. No protocol
logic lives here.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from pyl2tp.io.timer import DeadlineTimer
from pyl2tp.l2tp.endpoint import L2TPEndpoint
from pyl2tp.l2tp.events import Event
from pyl2tp.l2tp.tunnel import Addr

log = logging.getLogger("pyl2tp.io")


#: a receive buffer that absorbs bursts (many tunnels' HELLOs, a flood of SCCRQs)
RECEIVE_BUFFER = 4 * 1024 * 1024
#: Linux SO_RCVBUFFORCE (asm-generic/socket.h); the socket module does not export it
SO_RCVBUFFORCE = 33


def grow_receive_buffer(sock: socket.socket) -> None:
    """Ask for RECEIVE_BUFFER; as root past net.core.rmem_max (SO_RCVBUFFORCE)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


#: datagrams read per wake-up before the queued output is flushed
BURST = 64


class EndpointDriver:
    """Runs an endpoint on non-blocking UDP sockets watched by the asyncio loop.

    Each readable socket is drained in bursts (up to BURST datagrams), then what
    the endpoint queued goes out in one pass: per-packet work stays in the
    endpoint, and the loop's own per-datagram machinery is bypassed.
    """

    def __init__(
        self, endpoint: L2TPEndpoint, on_event: Callable[[Event], None] | None = None
    ) -> None:
        self.endpoint = endpoint
        self.on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._sockets: dict[Addr, socket.socket] = {}
        self._default: socket.socket | None = None
        self._timer = DeadlineTimer(self._on_timer, "L2TP")
        self._flush_pending = False
        self.send_errors = 0
        self.receive_errors = 0
        #: IPsec's hook: takes a datagram to send through ESP (True) or leaves it (False)
        self.outbound_hook: Callable[[bytes, Addr, Addr | None], bool] | None = None
        #: IPsec's filter for plain L2TP from the network: False drops it (`require`)
        self.plain_filter: Callable[[Addr], bool] | None = None

    def now(self) -> float:
        return self._loop.time()

    async def listen(self, host: str, port: int) -> Addr:
        """Bind one UDP socket; returns its local address."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            grow_receive_buffer(sock)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        local = sock.getsockname()
        addr: Addr = (local[0], local[1])
        self._sockets[addr] = sock
        if self._default is None:
            self._default = sock
        self._loop.add_reader(sock.fileno(), self._readable, sock, addr)
        return addr

    def _readable(self, sock: socket.socket, local: Addr) -> None:
        endpoint = self.endpoint
        now = self.now()
        recvfrom = sock.recvfrom
        plain_filter = self.plain_filter
        for _ in range(BURST):
            try:
                data, peer = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ICMP errors surface here on Linux; the channel's retries cover them.
                self.receive_errors += 1
                log.debug("socket %s:%d: %s", *local, exc)
                continue
            if plain_filter is not None and not plain_filter((peer[0], peer[1])):
                continue
            try:
                endpoint.datagram_received(data, (peer[0], peer[1]), now, local)
            except Exception:  # a bug must not take the daemon down; make it loud
                log.exception("unexpected error handling a datagram from %s:%d", *peer[:2])
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

    def inject(self, data: bytes, peer: Addr, local: Addr, now: float) -> None:
        """An L2TP datagram that arrived another way (decrypted from ESP); flush later."""
        try:
            self.endpoint.datagram_received(data, peer, now, local)
        except Exception:
            log.exception("unexpected error handling a datagram from %s:%d", *peer)

    def _send(self, datagrams: list[tuple[bytes, Addr, Addr | None]]) -> None:
        sockets = self._sockets
        default = self._default
        hook = self.outbound_hook
        for data, peer, local in datagrams:
            if hook is not None and hook(data, peer, local):
                continue
            sock = sockets.get(local, default) if local is not None else default
            if sock is None:
                self.send_errors += 1
                continue
            try:
                sock.sendto(data, peer)
            except OSError:  # a full buffer or an unreachable peer: a counted drop
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
        self._timer.arm(self.endpoint.get_timer())

    def _on_timer(self, now: float) -> None:
        try:
            self.endpoint.handle_timer(now)
        finally:
            self.transmit()

    def close(self) -> None:
        self._timer.cancel()
        for sock in self._sockets.values():
            self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        self._default = None
