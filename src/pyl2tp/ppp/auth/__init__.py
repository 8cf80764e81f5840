"""PPP authentication, sans-I/O: PAP (RFC 1334), CHAP-MD5 (RFC 1994), MS-CHAPv2 (RFC 2759).

Each method has two machines: an *authenticator* that checks the peer (server role) and
a *peer* that proves who we are (client role). Both take PAP/CHAP packets without the PPP
protocol field through ``receive(payload, now)``, hand packets out through the ``send``
callback given at construction, and expose ``get_timer()``/``handle_timer(now)``. The
decision appears in ``result`` (an :class:`AuthResult`); a later failed CHAP re-challenge
replaces a success with a failure. Hostile input never raises: it is counted in
``drops`` by reason.

When both ends authenticate with the same protocol, one PPP protocol number carries both
directions; :func:`for_authenticator` tells the link which machine a packet is for.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Protocol

from .base import AuthLogger, AuthResult, Credentials
from .chap import ChapAuthenticator, ChapPeer
from .mschapv2 import MsChapV2Authenticator, MsChapV2Peer
from .packets import AuthProtocol, ChapAlgorithm, ChapCode, PapCode
from .pap import PapAuthenticator, PapPeer

__all__ = [
    "AUTH_OPTION",
    "AUTH_PROTOCOL",
    "METHODS",
    "AuthPeer",
    "AuthProtocol",
    "AuthResult",
    "Authenticator",
    "ChapAlgorithm",
    "Credentials",
    "for_authenticator",
    "make_authenticator",
    "make_peer",
    "method_of",
]

AUTH_OPTION: dict[str, bytes] = {
    "pap": b"\xc0\x23",
    "chap": b"\xc2\x23\x05",
    "mschapv2": b"\xc2\x23\x81",
}
"""Data of the LCP Auth-Protocol option (RFC 1661 6.2) for each method."""

AUTH_PROTOCOL: dict[str, int] = {
    "pap": AuthProtocol.PAP,
    "chap": AuthProtocol.CHAP,
    "mschapv2": AuthProtocol.CHAP,
}
"""PPP protocol number that carries each method's packets."""

METHODS: tuple[str, ...] = tuple(AUTH_OPTION)

_BY_OPTION = {data: method for method, data in AUTH_OPTION.items()}


def method_of(option_data: bytes) -> str | None:
    """The method named by an Auth-Protocol option's data, or None if we have none."""
    return _BY_OPTION.get(bytes(option_data))


def for_authenticator(protocol: int, payload: bytes) -> bool:
    """True if a PAP/CHAP packet goes to our authenticator, False if to our peer machine.

    PAP Authenticate-Request and CHAP Response travel from the peer being checked to
    the authenticator; every other code travels the other way.
    """
    if not payload:
        return False
    if protocol == AuthProtocol.PAP:
        return payload[0] == PapCode.AUTHENTICATE_REQUEST
    if protocol == AuthProtocol.CHAP:
        return payload[0] == ChapCode.RESPONSE
    return False


class Authenticator(Protocol):
    """Checks the peer (server role)."""

    @property
    def protocol(self) -> int:
        """0xC023 or 0xC223."""

    @property
    def method(self) -> str:
        """'pap', 'chap' or 'mschapv2'."""

    result: AuthResult | None
    """Set once decided; a failed re-challenge replaces a success."""
    drops: Counter[str]

    def start(self, now: float) -> None:
        """CHAP: send the Challenge. PAP: wait for Authenticate-Request."""

    def receive(self, payload: bytes, now: float) -> None:
        """One packet from the peer (without the PPP protocol field)."""

    def get_timer(self) -> float | None:
        """Absolute time of the next timer event, or None."""

    def handle_timer(self, now: float) -> None:
        """Retransmit, time out, or re-challenge."""


class AuthPeer(Protocol):
    """Proves who we are (client role)."""

    @property
    def protocol(self) -> int:
        """0xC023 or 0xC223."""

    @property
    def method(self) -> str:
        """'pap', 'chap' or 'mschapv2'."""

    result: AuthResult | None
    drops: Counter[str]

    def start(self, now: float) -> None:
        """PAP: send Authenticate-Request. CHAP: wait for a Challenge."""

    def receive(self, payload: bytes, now: float) -> None:
        """One packet from the authenticator (without the PPP protocol field)."""

    def get_timer(self) -> float | None:
        """Absolute time of the next timer event, or None."""

    def handle_timer(self, now: float) -> None:
        """Retransmit or time out."""


def make_authenticator(
    method: str,
    *,
    credentials: Credentials,
    send: Callable[[bytes], None],
    random_bytes: Callable[[int], bytes],
    name: str = "pyl2tp",
    rechallenge_interval: float = 0.0,
    restart_timer: float = 3.0,
    max_attempts: int = 10,
    logger: AuthLogger | None = None,
) -> Authenticator:
    """The server-side machine for ``method`` ('pap', 'chap' or 'mschapv2').

    ``name`` is sent in CHAP Challenges; ``rechallenge_interval`` (seconds, 0 = never)
    applies to CHAP and MS-CHAPv2 only.
    """
    if method == "pap":
        return PapAuthenticator(
            credentials=credentials,
            send=send,
            random_bytes=random_bytes,
            restart_timer=restart_timer,
            max_attempts=max_attempts,
            logger=logger,
        )
    if method in ("chap", "mschapv2"):
        cls = ChapAuthenticator if method == "chap" else MsChapV2Authenticator
        return cls(
            credentials=credentials,
            send=send,
            random_bytes=random_bytes,
            name=name,
            rechallenge_interval=rechallenge_interval,
            restart_timer=restart_timer,
            max_attempts=max_attempts,
            logger=logger,
        )
    raise ValueError(f"unknown authentication method {method!r}; use one of {METHODS}")


def make_peer(
    method: str,
    *,
    user: str,
    password: str,
    send: Callable[[bytes], None],
    random_bytes: Callable[[int], bytes],
    restart_timer: float = 3.0,
    max_attempts: int = 10,
    logger: AuthLogger | None = None,
) -> AuthPeer:
    """The client-side machine for ``method`` ('pap', 'chap' or 'mschapv2')."""
    classes: dict[str, type[PapPeer] | type[ChapPeer]] = {
        "pap": PapPeer,
        "chap": ChapPeer,
        "mschapv2": MsChapV2Peer,
    }
    cls = classes.get(method)
    if cls is None:
        raise ValueError(f"unknown authentication method {method!r}; use one of {METHODS}")
    return cls(
        user=user,
        password=password,
        send=send,
        random_bytes=random_bytes,
        restart_timer=restart_timer,
        max_attempts=max_attempts,
        logger=logger,
    )
