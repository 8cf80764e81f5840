"""Our client as a library: open tunnels and sessions from one process, send frames.

Run inside a namespace by the integration tests:
    python lac_driver.py SERVER TUNNELS SESSIONS FRAMES [SECRET]
It opens TUNNELS x SESSIONS, sends FRAMES distinct PPP-like frames on every
session to a server whose link echoes them, checks each comes back exactly,
prints one JSON line with the counts and exits 0 only if all came back.
"""

from __future__ import annotations

import asyncio
import json
import sys

from pyl2tp.client import L2TPClient
from pyl2tp.l2tp.session import Session
from pyl2tp.l2tp.tunnel import TunnelConfig
from pyl2tp.link import NullLink


class Collect(NullLink):
    """A link that records the frames it receives."""

    __slots__ = ("frames",)

    def __init__(self, session: Session) -> None:
        self.frames: list[bytes] = []

    def frame_received(self, frame: bytes, now: float) -> None:
        self.frames.append(frame)


async def main(server: str, tunnels: int, sessions: int, frames: int, secret: str | None) -> int:
    client = L2TPClient(
        TunnelConfig(hostname="lac-driver", secret=secret.encode() if secret else None),
        link_factory=Collect,
    )
    await client.start()
    opened: list[Session] = []
    for _ in range(tunnels):
        tunnel = await client.open_tunnel((server, 1701), timeout=20)
        for _ in range(sessions):
            opened.append(await client.open_session(tunnel, timeout=20))
    sent = 0
    for session in opened:
        for i in range(frames):
            frame = (
                b"\xff\x03\xc0\x21"
                + session.local_id.to_bytes(2)
                + i.to_bytes(2)
                + bytes(range(40))
            )
            assert client.driver is not None
            client.endpoint.send_frame(session, frame)
            sent += 1
        assert client.driver is not None
        client.driver.transmit()
    deadline = asyncio.get_running_loop().time() + 10

    def complete() -> bool:
        return all(len(s.link.frames) >= frames for s in opened)  # type: ignore[attr-defined]

    while not complete() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    good = 0
    for session in opened:
        want = [
            b"\xff\x03\xc0\x21" + session.local_id.to_bytes(2) + i.to_bytes(2) + bytes(range(40))
            for i in range(frames)
        ]
        got = session.link.frames  # type: ignore[attr-defined]
        good += sum(1 for w in want if w in got)
    print(json.dumps({"sessions": len(opened), "sent": sent, "echoed": good}), flush=True)
    await client.close()
    return 0 if good == sent else 1


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(
        asyncio.run(
            main(
                args[0],
                int(args[1]),
                int(args[2]),
                int(args[3]),
                args[4] if len(args) > 4 else None,
            )
        )
    )
