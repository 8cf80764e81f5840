"""One re-armable deadline on the asyncio loop, for a sans-I/O core's `get_timer()`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("pyl2tp.io")


class DeadlineTimer:
    """Calls `fire(now)` once at the deadline last given to `arm`; re-arming moves it."""

    __slots__ = ("_fire", "_handle", "_loop", "_when", "name")

    def __init__(self, fire: Callable[[float], None], name: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._fire = fire
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None
        self.name = name

    def arm(self, when: float | None) -> None:
        """Fire at `when` (loop time), or never with None; unchanged deadlines cost nothing."""
        if when == self._when:
            return
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._when = when
        if when is not None:
            self._handle = self._loop.call_at(when, self._run)

    def cancel(self) -> None:
        self.arm(None)

    def _run(self) -> None:
        self._handle = None
        self._when = None
        try:
            self._fire(self._loop.time())
        except Exception:  # a bug must not take the daemon down; make it loud
            log.exception("unexpected error in the %s timer", self.name)
