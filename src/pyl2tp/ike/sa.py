"""IKE SA and child SA records, the endpoint's configuration and counters.

:class:`ChildSA` is the public, immutable result of a Quick Mode (two ESP directions).
:class:`IKESA` and :class:`QuickExchange` are the mutable negotiation state the endpoint
keeps per ISAKMP SA and per Quick Mode message ID; none of their secrets reach repr().
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pyl2tp.esp import ESPParams
from pyl2tp.ike.certs import Credentials
from pyl2tp.ike.crypto import IkeSACrypto, Phase1Keys, Prf
from pyl2tp.ike.dh import DHPrivateKey
from pyl2tp.ike.proposals import Phase1Choice, Phase2Choice, Policy
from pyl2tp.wire.isakmp import IDPayload, SAPayload

__all__ = [
    "IKESA",
    "Addr",
    "ChildSA",
    "IKEConfig",
    "IKESAInfo",
    "IKEStats",
    "Outstanding",
    "QuickExchange",
    "RekeyState",
    "TunnelPolicy",
    "TunnelSelectors",
]

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TunnelSelectors:
    """A tunnel-mode child's traffic selectors, seen from our side: the networks behind
    us (``local``) and behind the peer (``remote``), e.g. ``"198.18.46.0/24"``; a host
    is a /32 (/128). Sent as IDci/IDcr of type ID_IPV4_ADDR_SUBNET or ID_IPV6_ADDR_SUBNET
    (RFC 2407 4.6.2), any protocol and port."""

    local: str
    remote: str

    def __post_init__(self) -> None:
        a = ipaddress.ip_network(self.local)  # ValueError for host bits or bad text
        b = ipaddress.ip_network(self.remote)
        if a.version != b.version:
            raise ValueError("tunnel selectors of different address families")

    def swapped(self) -> TunnelSelectors:
        """The same child as the peer sees it."""
        return TunnelSelectors(self.remote, self.local)


class TunnelPolicy(Protocol):
    """Which tunnel-mode children a responder accepts (site-to-site): by the peer's
    address, then by the selectors it asks for (seen from our side)."""

    def tunnel_peer(self, peer_ip: str) -> bool:
        """Whether ``peer_ip`` may have tunnel-mode children at all."""
        ...

    def tunnel_allowed(self, peer_ip: str, selectors: TunnelSelectors) -> bool:
        """Whether ``selectors`` lie inside what ``peer_ip`` is allowed."""
        ...


@dataclass(slots=True)
class IKEConfig:
    """What the IKE endpoint accepts and how it times out."""

    psk: bytes | None = field(default=None, repr=False)  # one global pre-shared key
    # RSA signatures with X.509 certificates (RFC 2409 5.1) instead of the PSK when set
    credentials: Credentials | None = field(default=None, repr=False)
    policy: Policy = field(default_factory=Policy)
    ike_lifetime: float = 28800.0
    sa_lifetime: float = 3600.0
    # child SAs: also a kilobyte lifetime (RFC 2407 4.5; 0: none). The initiator proposes
    # it; a responder takes the lower of it and the peer's, and says so when ours is lower.
    sa_lifetime_kb: int = 0
    # RFC 3706: R-U-THERE after dpd_delay of silence; the peer is dead after dpd_timeout.
    dpd_delay: float = 30.0
    dpd_timeout: float = 150.0
    # The shell's count of ESP packets received on a child SA: when it grew since the last
    # look the peer is alive and no R-U-THERE is sent (RFC 3706 5). None: IKE traffic only.
    inbound_packets: Callable[[ChildSA], int] | None = None
    retransmit_initial: float = 1.0
    retransmit_max: int = 5
    max_half_open: int = 1000
    max_half_open_per_peer: int = 10
    nat_t: bool = True
    tunnel_ok: bool = False  # responder: accept tunnel mode in Quick Mode, any selectors
    # responder: accept tunnel mode from the peers and selectors this policy allows
    tunnel_policy: TunnelPolicy | None = field(default=None, repr=False)
    l2tp_port: int = 1701
    pfs_group: int | None = None  # initiator: propose PFS with this DH group in Quick Mode
    local_id: str | None = None  # our phase-1 identity: FQDN or user@FQDN; None = address
    aggressive: bool = False  # responder: answer Aggressive Mode (exposes HASH_R offline)
    # initiator: rekey child and ISAKMP SAs before they expire (make-before-break); off,
    # SAs live out their lifetime and are deleted. The asyncio shell turns it on.
    rekey: bool = False


@dataclass(slots=True, frozen=True)
class ChildSA:
    """One Quick Mode result: an inbound and an outbound ESP SA with the same peer."""

    peer: Addr  # (peer ip, 4500 or NAT-mapped port) with NAT-T, else (peer ip, 0)
    local: Addr  # our address (and 4500 with NAT-T)
    udp_encap: bool
    mode: str  # "transport" | "tunnel"
    inbound: ESPParams
    outbound: ESPParams
    peer_id: str  # the peer's phase-1 identity
    nat_oa: tuple[str, str] | None  # (initiator's, responder's) original addresses
    lifetime: float
    created: float
    ike_cookies: bytes  # icookie + rcookie of the IKE SA it belongs to
    lifetime_kb: int = 0  # negotiated kilobyte lifetime (0: none)
    selectors: TunnelSelectors | None = None  # tunnel mode with subnet or address IDs


@dataclass(frozen=True, slots=True)
class IKESAInfo:
    """A read-only summary of an ISAKMP SA (for ctl)."""

    peer: Addr
    local: Addr
    cookies: bytes
    initiator: bool
    state: str
    peer_id: str
    suite_name: str
    nat_t: bool
    created: float


@dataclass
class IKEStats:
    """Counters; drops are counted, never logged per packet.

    No slots, so ``vars(stats)`` gives the counters (``as_dict`` does the same).
    """

    received: int = 0
    sent: int = 0
    malformed: int = 0
    unknown_cookie: int = 0
    auth_failed: int = 0
    retransmits: int = 0
    duplicates: int = 0
    half_open_refused: int = 0
    no_proposal: int = 0
    aggressive_refused: int = 0
    timeouts: int = 0
    ike_sas: int = 0
    child_sas: int = 0
    dpd_sent: int = 0
    peers_dead: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


@dataclass(slots=True)
class Outstanding:
    """A message we sent and resend until the answer comes."""

    data: bytes
    next_at: float
    interval: float
    tries: int = 0


@dataclass(slots=True, repr=False)
class QuickExchange:
    """State of one Quick Mode exchange (one message ID)."""

    message_id: int
    initiator: bool
    our_spi: bytes
    ni_b: bytes = b""
    nr_b: bytes = b""
    dh: DHPrivateKey | None = None
    gqm_xy: bytes = b""
    choice: Phase2Choice | None = None
    lifetime: float = 0.0
    lifetime_kb: int = 0  # negotiated kilobyte lifetime (0: none)
    ids: tuple[IDPayload, ...] = ()  # initiator: IDci, IDcr as sent (RFC 2409 5.5: echoed)
    nat_oa: tuple[str, str] | None = None
    offered: SAPayload | None = None  # initiator: our SA payload
    state: str = "start"
    created: float = 0.0
    outstanding: Outstanding | None = None
    replaces: int | None = None  # initiator rekey: inbound SPI of the child it replaces
    selectors: TunnelSelectors | None = None  # tunnel mode: the IDs (ours, as sent/echoed)


@dataclass(slots=True, repr=False)
class IKESA:
    """One ISAKMP SA and the negotiation that builds it."""

    icookie: bytes
    rcookie: bytes
    initiator: bool  # True if we started Main Mode
    peer: Addr
    local: Addr
    created: float
    nat_t: bool = False  # talking on 4500 (non-ESP marker)
    state: str = "start"  # "mm1".."mm6", "established", "dead"
    last_seen: float = 0.0
    traffic_seen: int = 0  # inbound ESP packets on our children at the last DPD look
    l2tp: bool = False  # initiator: start Quick Mode for L2TP after Main Mode
    tunnel: TunnelSelectors | None = None  # initiator: or a tunnel-mode Quick Mode
    # phase 1 negotiation
    sai_b: bytes = b""
    choice: Phase1Choice | None = None
    prf: Prf | None = None
    dh: DHPrivateKey | None = None
    gxi: bytes = b""
    gxr: bytes = b""
    ni_b: bytes = b""
    nr_b: bytes = b""
    idii_b: bytes = b""  # Aggressive Mode: the initiator's ID body from AM1
    keys: Phase1Keys | None = None
    crypto: IkeSACrypto | None = None
    nat_t_draft: bool | None = None  # None: peer sent no NAT-T VID; True: a draft one only
    nat_t_vid: bytes = b""  # the NAT-T Vendor ID we answer with
    peer_dpd: bool = False
    natd_in: list[bytes] = field(default_factory=list)
    nat_local: bool = False  # we are behind a NAT
    nat_peer: bool = False  # the peer is behind a NAT
    peer_id: str = ""
    peer_dn: str | None = None  # subject of the peer's verified certificate (RFC 4514)
    lifetime: float = 0.0
    established_at: float = 0.0
    initial_contact: bool = False
    half_key: tuple[bytes, Addr] | None = None  # responder: its entry in the MM1 index
    # rekeying (initiator): the ISAKMP SA this one replaces; a successor was started
    rekey_of: bytes | None = None
    rekeyed: bool = False
    # retransmission and duplicate detection
    outstanding: Outstanding | None = None
    answers: dict[bytes, bytes | None] = field(default_factory=dict)
    quick: dict[int, QuickExchange] = field(default_factory=dict)
    # RFC 3706 DPD
    dpd_seq: int = 0
    dpd_pending: int | None = None
    dpd_next: float = 0.0

    @property
    def cookies(self) -> bytes:
        return self.icookie + self.rcookie

    @property
    def established(self) -> bool:
        return self.state == "established"

    @property
    def nat(self) -> bool:
        """A NAT was detected on either side (RFC 3947 3.2)."""
        return self.nat_local or self.nat_peer

    @property
    def suite_name(self) -> str:
        return self.choice.suite.name if self.choice is not None else ""

    def info(self) -> IKESAInfo:
        return IKESAInfo(
            self.peer,
            self.local,
            self.cookies,
            self.initiator,
            self.state,
            self.peer_id,
            self.suite_name,
            self.nat_t,
            self.created,
        )


@dataclass(slots=True)
class RekeyState:
    """Rekey timers of one child SA (by inbound SPI)."""

    initiator: bool  # we ran the Quick Mode: we rekey it
    rekey_at: float  # soft lifetime: start a new Quick Mode
    rekeying: bool = False  # a replacement Quick Mode is running or done
    delete_at: float | None = None  # replaced: Delete after the grace period
