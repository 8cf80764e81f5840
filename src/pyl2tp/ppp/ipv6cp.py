"""IPv6CP, the IPv6 Control Protocol (RFC 5072): interface identifiers for link-local addresses.

Each end asks for its own 64-bit Interface-Identifier (RFC 5072 4.1). A request with a zero
identifier, or with ours, is Configure-Nak'd with a fresh non-zero one (both zero: reject);
any other identifier is acked. A Nak with an identifier different from the one we last
Nak'd the peer with is taken as ours; the same one means our Nak came back (a looped
link), so we pick a new random identifier. IPv6-Compression-Protocol is rejected.
Random identifiers have the "u" (universal/local) bit cleared (RFC 5072 4.1 method 3).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from pyl2tp.ppp.fsm import FSMConfig, FSMEvents, NegotiationFSM, State
from pyl2tp.wire.ppp import Code, IPV6CPOption, Option, PPPProtocol

__all__ = ["IPv6CP", "IPv6CPConfig", "random_interface_id"]

ZERO_ID = bytes(8)


@dataclass(slots=True)
class IPv6CPConfig:
    """Our interface identifier: 8 bytes, or None for a random non-zero one."""

    interface_id: bytes | None = None
    fsm: FSMConfig = field(default_factory=FSMConfig)


def random_interface_id(random_bytes: Callable[[int], bytes], *avoid: bytes | None) -> bytes:
    """A random non-zero identifier, "u" bit cleared, different from every `avoid`."""
    while True:
        raw = bytearray(random_bytes(8))
        raw[0] &= 0xFD  # RFC 5072 4.1: "u" bit (bit 6) is 0 for a random identifier
        iid = bytes(raw)
        if iid != ZERO_ID and iid not in avoid:
            return iid


class IPv6CP:
    """The IPv6 Control Protocol: an OptionNegotiator and its automaton (`fsm`).

    `send(payload)` takes an IPv6CP packet; the caller frames it with protocol 0x8057.
    `random_bytes` defaults to `secrets.token_bytes`. Results once Opened: `local_id` and
    `peer_id` (8 bytes each; `peer_id` is None if the peer sent no identifier).
    """

    def __init__(self, config: IPv6CPConfig, events: FSMEvents, send: Callable[[bytes], None],
                 random_bytes: Callable[[int], bytes] | None = None, *,
                 logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
                 ) -> None:
        self.config = config
        self.random_bytes = random_bytes if random_bytes is not None else secrets.token_bytes
        rb = self.random_bytes
        self.fsm = NegotiationFSM("IPv6CP", PPPProtocol.IPV6CP, self, events, send, config.fsm,
                                  random_id=lambda: rb(1)[0], logger=logger)
        iid = config.interface_id
        if iid is not None and len(iid) != 8:
            raise ValueError("IPv6CP interface identifier must be 8 bytes")
        self.local_id: bytes = iid if iid is not None else random_interface_id(rb)
        self.peer_id: bytes | None = None
        self._want_id = True
        self._last_nak_id: bytes | None = None  # what we last suggested to the peer

    @property
    def state(self) -> State:
        """The automaton's state."""
        return self.fsm.state

    # ------------------------------------------------------------ OptionNegotiator

    def request_options(self) -> list[Option]:
        """Our Interface-Identifier (RFC 5072 4.1: exactly one), unless rejected."""
        if not self._want_id:
            return []
        return [Option(IPV6CPOption.INTERFACE_IDENTIFIER, self.local_id)]

    def check_request(self, options: list[Option]) -> tuple[int, list[Option]]:
        """Ack a unique non-zero identifier; Nak a zero or colliding one (RFC 5072 4.1)."""
        self.peer_id = None
        rej: list[Option] = []
        nak: list[Option] = []
        for opt in options:
            if opt.type != IPV6CPOption.INTERFACE_IDENTIFIER:
                rej.append(opt)  # IPv6-Compression-Protocol, unknown
                continue
            iid = opt.data
            if len(iid) == 8 and iid != ZERO_ID and iid != self.local_id:
                self.peer_id = iid
            elif iid == ZERO_ID and self.local_id == ZERO_ID:
                rej.append(opt)  # RFC 5072 4.1: both zero, no unique identifier possible
            else:
                self._last_nak_id = random_interface_id(self.random_bytes, self.local_id)
                nak.append(Option(IPV6CPOption.INTERFACE_IDENTIFIER, self._last_nak_id))
        if rej:
            return Code.CONFIGURE_REJECT, rej
        if nak:
            return Code.CONFIGURE_NAK, nak
        return Code.CONFIGURE_ACK, options

    def ack_received(self, options: list[Option]) -> bool:
        """The peer agreed to our identifier."""
        return options == self.request_options()

    def nak_received(self, options: list[Option]) -> None:
        """Use the peer's suggestion, unless it is our own Nak coming back."""
        for opt in options:
            if opt.type != IPV6CPOption.INTERFACE_IDENTIFIER or not self._want_id:
                continue
            iid = opt.data
            if len(iid) == 8 and iid != ZERO_ID and iid != self._last_nak_id:
                self.local_id = iid
            else:
                self.local_id = random_interface_id(self.random_bytes, self.local_id,
                                                    self._last_nak_id)

    def reject_received(self, options: list[Option]) -> None:
        """The peer will not negotiate identifiers: keep ours without asking."""
        for opt in options:
            if opt.type == IPV6CPOption.INTERFACE_IDENTIFIER:
                self._want_id = False
