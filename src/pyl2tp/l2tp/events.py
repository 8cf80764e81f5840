"""Events the L2TP control plane hands to its shell, named in the past tense."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyl2tp.l2tp.session import Session
    from pyl2tp.l2tp.tunnel import Tunnel
    from pyl2tp.wire.l2tp import ACCMValue, CallErrors


@dataclass(slots=True)
class Event:
    """Base class of control-plane events."""


@dataclass(slots=True)
class TunnelEstablished(Event):
    tunnel: Tunnel


@dataclass(slots=True)
class TunnelClosed(Event):
    tunnel: Tunnel
    #: who ended it: "peer" (StopCCN received), "local", "timeout" (no ack), "refused"
    cause: str
    reason: str
    #: the StopCCN result code sent or received (RFC 2661 4.4.2), None when none was
    result: int | None = None


@dataclass(slots=True)
class SessionEstablished(Event):
    session: Session


@dataclass(slots=True)
class SessionClosed(Event):
    session: Session
    cause: str
    reason: str


@dataclass(slots=True)
class CallErrorsReported(Event):
    """WEN received (RFC 2661 6.13)."""

    session: Session
    errors: CallErrors


@dataclass(slots=True)
class LinkInfoSet(Event):
    """SLI received (RFC 2661 6.14)."""

    session: Session
    accm: ACCMValue
