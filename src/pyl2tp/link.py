"""The seam between an L2TP session and what runs over it (PPP, or a diagnostic link).

A session hands every PPP frame it receives to its `Link`; the link sends frames
back through the `FrameSender` it was given. PPP plugs in here later; until then
`NullLink` counts frames and `EchoLink` reflects them (a loopback for tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

FrameSender = Callable[[bytes], None]


class Link(Protocol):
    """What a session drives: frames in, close notification."""

    def frame_received(self, frame: bytes, now: float) -> None:
        """One PPP frame (HDLC address/control included when the peer sent them)."""

    def session_closed(self) -> None:
        """The session is gone: release whatever the link holds."""


LinkFactory = Callable[[FrameSender], Link]


class NullLink:
    """Accepts frames and drops them (counted by the session)."""

    __slots__ = ()

    def __init__(self, send: FrameSender) -> None:
        del send

    def frame_received(self, frame: bytes, now: float) -> None:
        return None

    def session_closed(self) -> None:
        return None


class EchoLink:
    """Sends every received frame straight back: a diagnostic loopback."""

    __slots__ = ("_send",)

    def __init__(self, send: FrameSender) -> None:
        self._send = send

    def frame_received(self, frame: bytes, now: float) -> None:
        self._send(frame)

    def session_closed(self) -> None:
        return None


LINKS: dict[str, LinkFactory] = {"null": NullLink, "echo": EchoLink}
