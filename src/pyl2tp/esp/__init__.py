"""ESP in user space (RFC 4303): SAs, anti-replay window, UDP encapsulation (RFC 3948)."""

from pyl2tp.esp.replay import DEFAULT_WINDOW, ReplayVerdict, ReplayWindow
from pyl2tp.esp.sa import (
    AuthAlg,
    DropReason,
    EncAlg,
    ESPError,
    ESPParams,
    InboundSA,
    InboundStats,
    OutboundSA,
    RandomPool,
    SAExpiredError,
    auth_name,
    enc_name,
)
from pyl2tp.esp.udpencap import (
    IKE_MARKER,
    NAT_T_PORT,
    classify_4500,
    fix_transport_checksum,
    keepalive,
    unwrap_ike,
    wrap_ike,
)

__all__ = [
    "DEFAULT_WINDOW",
    "IKE_MARKER",
    "NAT_T_PORT",
    "AuthAlg",
    "DropReason",
    "ESPError",
    "ESPParams",
    "EncAlg",
    "InboundSA",
    "InboundStats",
    "OutboundSA",
    "RandomPool",
    "ReplayVerdict",
    "ReplayWindow",
    "SAExpiredError",
    "auth_name",
    "classify_4500",
    "enc_name",
    "fix_transport_checksum",
    "keepalive",
    "unwrap_ike",
    "wrap_ike",
]
