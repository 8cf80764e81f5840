"""IPCP, the IPv4 Control Protocol (RFC 1332) with DNS addresses (RFC 1877).

The behaviour follows from which addresses the config holds:

* `peer` set (an LNS): the peer gets exactly that address. Its IP-Address request is
  Configure-Nak'd with `peer` until it asks for it (RFC 1332 3.3; 0.0.0.0 means "assign
  me one"); a request without IP-Address gets the option appended to a Nak once (RFC 1661
  5.3). DNS requests (RFC 1877 1.1, 1.3) are Nak'd with `dns[0]`/`dns[1]`, or rejected
  when we have none.
* `peer` unset (a client): the peer's own address is acked whatever it is (0.0.0.0, a
  request to be assigned one, is rejected: we have none to give).
* `local` set: we ask for that address for ourselves and keep it; `local` unset: we ask
  0.0.0.0 and take the address the peer Naks back. With `request_dns` we also ask for the
  primary and secondary DNS servers (0.0.0.0) and take what the Nak carries.

NBNS, IP-Compression-Protocol (VJ) and the deprecated IP-Addresses option are rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from pyl2tp.ppp.fsm import FSMConfig, FSMEvents, NegotiationFailed, NegotiationFSM, State
from pyl2tp.wire.ppp import Code, IPCPOption, Option, PPPProtocol

__all__ = ["IPCP", "IPCPConfig"]

UNSPECIFIED = IPv4Address(0)
_DNS_OPTIONS = (IPCPOption.PRIMARY_DNS, IPCPOption.SECONDARY_DNS)


@dataclass(slots=True)
class IPCPConfig:
    """Addresses for IPCP. Server: local and peer set; client: both None."""

    local: IPv4Address | None = None  # our address (None: ask the peer for one)
    peer: IPv4Address | None = None  # the address the peer must use (None: whatever it asks)
    dns: list[IPv4Address] = field(default_factory=list)  # to give: primary, secondary
    request_dns: bool = False  # ask the peer for DNS servers (RFC 1877)
    fsm: FSMConfig = field(default_factory=FSMConfig)


def _addr(opt: Option) -> IPv4Address | None:
    return IPv4Address(opt.data) if len(opt.data) == 4 else None


class IPCP:
    """The IPv4 Control Protocol: an OptionNegotiator and its automaton (`fsm`).

    `send(payload)` takes an IPCP packet; the caller frames it with protocol 0x8021.
    Results once the automaton is Opened: `local_address`, `peer_address` and `dns` (the
    DNS servers the peer gave us).
    """

    def __init__(self, config: IPCPConfig, events: FSMEvents, send: Callable[[bytes], None],
                 random_bytes: Callable[[int], bytes] | None = None, *,
                 logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
                 ) -> None:
        self.config = config
        random_id = (lambda: random_bytes(1)[0]) if random_bytes is not None else None
        self.fsm = NegotiationFSM("IPCP", PPPProtocol.IPCP, self, events, send, config.fsm,
                                  random_id=random_id, logger=logger)
        self._want_addr: IPv4Address | None = (
            config.local if config.local is not None else UNSPECIFIED)
        self._want_dns: dict[int, IPv4Address] = (
            dict.fromkeys(_DNS_OPTIONS, UNSPECIFIED) if config.request_dns else {})
        self._appended_addr = False
        self.local_address: IPv4Address | None = config.local
        self.peer_address: IPv4Address | None = None
        self.dns: list[IPv4Address] = []  # DNS servers the peer gave us
        self.given_dns: list[IPv4Address] = []  # DNS servers the peer accepted from us

    @property
    def state(self) -> State:
        """The automaton's state."""
        return self.fsm.state

    # ------------------------------------------------------------ OptionNegotiator

    def request_options(self) -> list[Option]:
        """IP-Address (ours, or 0.0.0.0 to be assigned one), then DNS if asked."""
        opts: list[Option] = []
        if self._want_addr is not None:
            opts.append(Option(IPCPOption.IP_ADDRESS, self._want_addr.packed))
        for kind, addr in self._want_dns.items():
            opts.append(Option(kind, addr.packed))
        return opts

    def check_request(self, options: list[Option]) -> tuple[int, list[Option]]:
        """Judge the peer's request: its address, and DNS servers it asks of us."""
        self.peer_address = None
        self.given_dns = []
        rej: list[Option] = []
        nak: list[Option] = []
        saw_addr = False
        for opt in options:
            t = opt.type
            if t == IPCPOption.IP_ADDRESS:
                saw_addr = True
                self._check_address(opt, rej, nak)
            elif t in _DNS_OPTIONS:
                index = _DNS_OPTIONS.index(t)
                if index >= len(self.config.dns):
                    rej.append(opt)  # RFC 1877: reject what we cannot supply
                    continue
                ours = self.config.dns[index]
                if _addr(opt) == ours:
                    self.given_dns.append(ours)
                else:
                    nak.append(Option(t, ours.packed))
            else:
                # IP-Addresses (deprecated), IP-Compression-Protocol, NBNS, unknown.
                rej.append(opt)
        if not saw_addr and self.config.peer is not None and not self._appended_addr:
            # RFC 1661 5.3: append an option we want the peer to include, once.
            self._appended_addr = True
            nak.append(Option(IPCPOption.IP_ADDRESS, self.config.peer.packed))
        if rej:
            return Code.CONFIGURE_REJECT, rej
        if nak:
            return Code.CONFIGURE_NAK, nak
        return Code.CONFIGURE_ACK, options

    def _check_address(self, opt: Option, rej: list[Option], nak: list[Option]) -> None:
        addr = _addr(opt)
        assigned = self.config.peer
        if assigned is not None:
            if addr == assigned:
                self.peer_address = addr
            else:
                # RFC 1332 3.3: Nak with the address the peer must use.
                nak.append(Option(IPCPOption.IP_ADDRESS, assigned.packed))
        elif addr is None or addr == UNSPECIFIED:
            rej.append(opt)  # the peer wants an address and we have none to give
        else:
            self.peer_address = addr

    def ack_received(self, options: list[Option]) -> bool:
        """Our request was acked: our address and DNS servers are settled."""
        if options != self.request_options():
            return False
        if self._want_addr is not None:
            if self._want_addr == UNSPECIFIED:
                raise NegotiationFailed("peer acked 0.0.0.0: no address assigned")
            self.local_address = self._want_addr
        self.dns = [a for a in self._want_dns.values() if a != UNSPECIFIED]
        return True

    def nak_received(self, options: list[Option]) -> None:
        """Take the address and DNS servers the peer suggests."""
        for opt in options:
            addr = _addr(opt)
            if addr is None or addr == UNSPECIFIED:
                continue
            if opt.type == IPCPOption.IP_ADDRESS:
                if self.config.local is None and self._want_addr is not None:
                    self._want_addr = addr
            elif opt.type in self._want_dns:
                self._want_dns[opt.type] = addr

    def reject_received(self, options: list[Option]) -> None:
        """Stop asking; an address we cannot do without ends the negotiation."""
        for opt in options:
            if opt.type == IPCPOption.IP_ADDRESS:
                self._want_addr = None
                if self.config.local is None:
                    raise NegotiationFailed("peer refuses to assign an address")
            else:
                self._want_dns.pop(opt.type, None)
