"""What every authentication machine shares: the result, the credentials type, drops."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

__all__ = ["AuthLogger", "AuthResult", "Credentials", "Machine", "MachineArgs", "printable"]

Credentials = Callable[[str], str | None]
"""User name -> clear-text password (server side); None means an unknown user."""

AuthLogger = logging.Logger | logging.LoggerAdapter[Any]

_LOG = logging.getLogger("pyl2tp.ppp.auth")


class MachineArgs(TypedDict):
    """The keyword arguments every machine takes (see :class:`Machine`)."""

    send: Callable[[bytes], None]
    random_bytes: Callable[[int], bytes]
    restart_timer: NotRequired[float]
    max_attempts: NotRequired[int]
    logger: NotRequired[AuthLogger | None]


@dataclass(slots=True, frozen=True)
class AuthResult:
    """The outcome of one authentication, and a reason a person can read."""

    success: bool
    """True when the peer (or we) proved the identity."""
    user: str
    """The user name the decision is about ('' when no name was seen)."""
    message: str
    """Human reason, e.g. 'bad password for alice', 'unknown user bob'. Never a secret."""


def printable(raw: bytes, limit: int = 64) -> str:
    """Bytes from the wire as a short text safe to log (no control characters)."""
    text = raw[:limit].decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text + ("..." if len(raw) > limit else "")


class Machine:
    """Base of the PAP/CHAP/MS-CHAPv2 machines: I/O hooks, result, timer, drop counters.

    ``send`` transmits one packet (PPP payload); ``random_bytes`` gives identifiers and
    challenges; ``restart_timer`` seconds between retransmissions, ``max_attempts`` sends
    before giving up (RFC 1661 4.6 Restart timer and Max-Configure, reused here).
    """

    protocol: int = 0
    method: str = ""

    def __init__(
        self,
        *,
        send: Callable[[bytes], None],
        random_bytes: Callable[[int], bytes],
        restart_timer: float = 3.0,
        max_attempts: int = 10,
        logger: AuthLogger | None = None,
    ) -> None:
        if restart_timer <= 0:
            raise ValueError("restart_timer must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._send = send
        self._random = random_bytes
        self.restart_timer = restart_timer
        self.max_attempts = max_attempts
        self._log: AuthLogger = logger if logger is not None else _LOG
        self.result: AuthResult | None = None
        self.drops: Counter[str] = Counter()
        """Packets dropped, by reason ('malformed', 'stale identifier', ...)."""
        self._deadline: float | None = None
        self._started = False

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` next wants to run (absolute time), or None."""
        return self._deadline

    def _drop(self, reason: str) -> None:
        self.drops[reason] += 1
        self._log.debug("%s: dropped a packet: %s", self.method, reason)

    def _decide(self, result: AuthResult) -> None:
        self.result = result
        if result.success:
            self._log.info("%s: %s", self.method, result.message)
        else:
            self._log.warning("%s: %s", self.method, result.message)

    def _next_identifier(self, current: int | None) -> int:
        """A fresh identifier: random first, then counting up (mod 256)."""
        if current is None:
            return self._random(1)[0]
        return (current + 1) & 0xFF

    def _begin(self) -> None:
        if self._started:
            raise RuntimeError(f"{self.method} machine started twice")
        self._started = True
