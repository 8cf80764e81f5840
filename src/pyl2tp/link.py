"""The seam between an L2TP session and what runs over it (PPP, or a diagnostic link).

A session hands every PPP frame it receives to its `Link`; the link sends frames
back through the `FrameSender` it was given. PPP plugs in here later; until then
`NullLink` counts frames and `EchoLink` reflects them (a loopback for tests).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pyl2tp.l2tp.session import Session

FrameSender = Callable[[bytes], None]


class Link(Protocol):
    """What a session drives: start, frames in, timers, close notification.

    A link sends frames with `session.send_frame`, ends the call with
    `session.disconnect(...)`, and calls `session.tunnel.on_activity()` after
    anything that changed its timer outside `handle_timer`.
    """

    def started(self, now: float) -> None:
        """The session is established: begin (PPP sends its first LCP request)."""

    def frame_received(self, frame: bytes, now: float) -> None:
        """One PPP frame (HDLC address/control included when the peer sent them)."""

    def get_timer(self) -> float | None:
        """The link's next deadline, if any."""

    def handle_timer(self, now: float) -> None:
        """Called at or after `get_timer()`."""

    def session_closed(self) -> None:
        """The session is gone: release whatever the link holds."""


LinkFactory = Callable[["Session"], Link]


class NullLink:
    """Accepts frames and drops them (counted by the session)."""

    __slots__ = ()

    def __init__(self, session: Session | None = None) -> None:
        del session

    def started(self, now: float) -> None:
        return None

    def frame_received(self, frame: bytes, now: float) -> None:
        return None

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None:
        return None

    def session_closed(self) -> None:
        return None


class EchoLink(NullLink):
    """Sends every received frame straight back: a diagnostic loopback."""

    __slots__ = ("_send",)

    def __init__(self, session: Session) -> None:
        self._send: FrameSender = session.send_frame

    def frame_received(self, frame: bytes, now: float) -> None:
        self._send(frame)


LINKS: dict[str, LinkFactory] = {"null": NullLink, "echo": EchoLink}
