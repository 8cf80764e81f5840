"""A PPP peer spoken by the test with scapy, through xl2tpd's stand-in pppd.

scapy is the independent codec (peers/scapy/README.md): every frame our side sends is parsed
by scapy, and every frame the test sends is built by scapy. Frames travel as PPP in
HDLC-like framing (``ff 03`` + 2-byte protocol; RFC 1662 3.1), exactly what the stand-in
relays (it strips and adds the async-HDLC flags, escapes and FCS itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from scapy.layers.ppp import HDLC, PPP, PPP_LCP_Echo
from scapy.packet import Packet

from tests.harness.xl2tpd import Xl2tpd

__all__ = ["PROTO_CHAP", "PROTO_IP", "PROTO_IPCP", "PROTO_LCP", "PPPPeer"]

# PPP protocol numbers (RFC 1661 7, RFC 1332, RFC 1994).
PROTO_IP, PROTO_LCP, PROTO_IPCP, PROTO_CHAP = 0x0021, 0xC021, 0x8021, 0xC223
ADDRESS_CONTROL = b"\xff\x03"  # RFC 1662 3.1: All-Stations address, UI control
ECHO_REQUEST, ECHO_REPLY = 9, 10  # RFC 1661 5.8


class PPPPeer:
    """The far end of a PPP link: sends scapy packets, waits for parsed frames.

    LCP Echo-Requests are answered as they come (with `magic`, RFC 1661 5.8), so a test
    that waits for something else keeps the link alive.
    """

    def __init__(self, bridge: Xl2tpd, magic: int) -> None:
        self.bridge = bridge
        self.magic = magic
        #: every frame received, as (raw bytes after ff 03, parsed), in order
        self.received: list[tuple[bytes, Packet]] = []
        #: frames scapy does not re-encode to the same bytes (length/option encoding bugs)
        self.reencode_mismatches: list[str] = []
        self.echoes_answered = 0
        self._pending: list[Packet] = []

    def send(self, layer: Packet) -> Packet:
        """Send PPP(`layer`) (scapy sets the protocol from the layer); returns the packet."""
        packet = PPP() / layer if not isinstance(layer, PPP) else layer
        self.bridge.send_frame(bytes(HDLC() / packet))
        return packet

    def _receive(self, timeout: float) -> Packet | None:
        try:
            frame = self.bridge.recv_frame(timeout)
        except TimeoutError:
            return None
        if not frame.startswith(ADDRESS_CONTROL):
            raise AssertionError(f"frame without ff 03 (we never asked for ACFC): {frame.hex()}")
        body = frame[2:]
        packet = PPP(body)
        self.received.append((body, packet))
        if bytes(packet) != body:
            self.reencode_mismatches.append(f"{body.hex()} -> {bytes(packet).hex()}")
        return packet

    def expect(self, match: Callable[[Packet], bool], timeout: float, what: str) -> Packet:
        """The first frame (buffered or new) that `match`es; others stay buffered."""
        deadline = time.monotonic() + timeout
        while True:
            for i, packet in enumerate(self._pending):
                if match(packet):
                    return self._pending.pop(i)
            remaining = deadline - time.monotonic()
            new = self._receive(remaining) if remaining > 0 else None
            if new is None:
                pending = "; ".join(p.summary() for p in self._pending) or "none"
                raise AssertionError(f"no {what} within {timeout:g}s; other frames: {pending}")
            if new.proto == PROTO_LCP and new.payload.code == ECHO_REQUEST:
                self.send(PPP_LCP_Echo(code=ECHO_REPLY, id=new.payload.id,
                                       magic_number=self.magic, data=new.payload.data))
                self.echoes_answered += 1
                continue
            self._pending.append(new)

    def expect_code(self, proto: int, code: int, timeout: float, what: str,
                    ident: int | None = None) -> Packet:
        """The next frame of `proto` with `code` (and `ident`); its PPP payload layer."""
        def match(p: Packet) -> bool:
            return bool(p.proto == proto and p.payload.code == code
                        and (ident is None or p.payload.id == ident))
        packet: Packet = self.expect(match, timeout, what).payload
        return packet

    def pending(self) -> list[Packet]:
        """Frames received and not yet taken by `expect`."""
        return list(self._pending)
