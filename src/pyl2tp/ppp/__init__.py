"""PPP (RFC 1661 family), sans-I/O: the option-negotiation automaton, LCP, IPCP, IPv6CP.

`fsm.NegotiationFSM` is RFC 1661's automaton, written once; `lcp.LCP`, `ipcp.IPCP` and
`ipv6cp.IPv6CP` are the option negotiators that drive it. `auth/` holds PAP, CHAP and
MS-CHAPv2, and `link.py` composes them into the PPP phases over an L2TP session.
"""

from pyl2tp.ppp.fsm import (
    FSMConfig,
    FSMEvents,
    NegotiationFailed,
    NegotiationFSM,
    OptionNegotiator,
    State,
)
from pyl2tp.ppp.ipcp import IPCP, IPCPConfig
from pyl2tp.ppp.ipv6cp import IPv6CP, IPv6CPConfig
from pyl2tp.ppp.lcp import LCP, LCPConfig

__all__ = [
    "IPCP",
    "LCP",
    "FSMConfig",
    "FSMEvents",
    "IPCPConfig",
    "IPv6CP",
    "IPv6CPConfig",
    "LCPConfig",
    "NegotiationFSM",
    "NegotiationFailed",
    "OptionNegotiator",
    "State",
]
