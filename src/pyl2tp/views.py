"""JSON views of tunnels and sessions for the control socket (DESIGN.md fields)."""

from __future__ import annotations

from typing import Any

from pyl2tp.l2tp.session import Session
from pyl2tp.l2tp.tunnel import Tunnel


def tunnel_view(tunnel: Tunnel, now: float) -> dict[str, Any]:
    """`tunnels --json`: one object per tunnel."""
    return {
        "tunnel_id": tunnel.local_id,
        "peer_tunnel_id": tunnel.peer_id,
        "peer": tunnel.peer_label,
        "hostname": tunnel.peer_hostname,
        "vendor": tunnel.peer_vendor,
        "sessions": len(tunnel.sessions),
        "state": tunnel.state.value,
        "role": "initiator" if tunnel.initiator else "responder",
        "authenticated": tunnel.config.secret is not None,
        "uptime": _uptime(tunnel.established_at, now),
        "retransmits": tunnel.channel.stats.retransmitted,
    }


def session_view(session: Session, now: float, ipsec: str | None = None) -> dict[str, Any]:
    """`sessions --json`: one object per session."""
    return {
        "tunnel_id": session.tunnel.local_id,
        "session_id": session.local_id,
        "peer_tunnel_id": session.tunnel.peer_id,
        "peer_session_id": session.peer_id,
        "peer": session.tunnel.peer_label,
        "user": session.user,
        "address": session.address,
        "state": session.state.value,
        "uptime": _uptime(session.established_at, now),
        "rx_bytes": session.rx_bytes,
        "tx_bytes": session.tx_bytes,
        "rx_packets": session.rx_packets,
        "tx_packets": session.tx_packets,
        "ipsec": ipsec,
    }


def _uptime(since: float | None, now: float) -> float:
    return round(now - since, 1) if since is not None else 0.0
