"""Events of the IKE endpoint (past tense): what the shell and the dataplane act on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from pyl2tp.ike.sa import Addr, ChildSA

__all__ = [
    "AuthenticationFailed",
    "ChildSADeleted",
    "ChildSAEstablished",
    "Event",
    "IKESADeleted",
    "IKESAEstablished",
    "NegotiationFailed",
    "PeerDead",
]


@dataclass(frozen=True, slots=True)
class IKESAEstablished:
    """Main Mode finished: the peer is authenticated."""

    peer: Addr
    cookies: bytes
    peer_id: str
    suite_name: str


@dataclass(frozen=True, slots=True)
class ChildSAEstablished:
    """Quick Mode finished: a pair of ESP SAs is ready for the dataplane.

    ``initiator``: we sent QM3; the peer may not have the SA yet, so a shell replacing an
    older SA of the same peer keeps sending on the older one until the new one has carried
    a packet from the peer, or about ``rtt`` (QM1 to QM2) has passed and QM3 must have
    arrived, or the older one is deleted.
    """

    child: ChildSA
    initiator: bool = False
    rtt: float = 0.0  # initiator: seconds from our QM1 to the peer's QM2


@dataclass(frozen=True, slots=True)
class ChildSADeleted:
    """A pair of ESP SAs is gone (peer's Delete, ours, lifetime, INITIAL-CONTACT, DPD)."""

    child: ChildSA
    reason: str


@dataclass(frozen=True, slots=True)
class IKESADeleted:
    """An ISAKMP SA is gone (or a half-open exchange was given up)."""

    peer: Addr
    cookies: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class AuthenticationFailed:
    """HASH_I or HASH_R did not verify: most often a pre-shared key mismatch."""

    peer: Addr
    reason: str


@dataclass(frozen=True, slots=True)
class PeerDead:
    """RFC 3706: the peer answered no R-U-THERE within the DPD timeout."""

    peer: Addr
    cookies: bytes


@dataclass(frozen=True, slots=True)
class NegotiationFailed:
    """An exchange failed: a notify received or sent (e.g. NO-PROPOSAL-CHOSEN), or a timeout."""

    peer: Addr
    notify: str


Event: TypeAlias = (
    IKESAEstablished
    | ChildSAEstablished
    | ChildSADeleted
    | IKESADeleted
    | AuthenticationFailed
    | PeerDead
    | NegotiationFailed
)
