"""Assembling IPsec for a server or a client: IKE settings from the config, the drivers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from pyl2tp.dataplane.ipsec import IPsecLayer
from pyl2tp.esp import RandomPool
from pyl2tp.ike.endpoint import IKEConfig, IKEEndpoint
from pyl2tp.ike.events import Event
from pyl2tp.ike.proposals import Policy
from pyl2tp.io.ipsec import IPsecDriver
from pyl2tp.io.udp import EndpointDriver
from pyl2tp.keylog import KeyLog

log = logging.getLogger("pyl2tp.ipsec")


def make_ipsec(
    l2tp: EndpointDriver,
    *,
    psk: str,
    require: bool,
    dpd_delay: float,
    dpd_timeout: float,
    ike_lifetime: float,
    sa_lifetime: float,
    legacy: bool = False,
    keylog_path: str | None = None,
    on_event: Callable[[Event], None] | None = None,
) -> IPsecDriver:
    """An IPsec driver bound to `l2tp`: IKE with a PSK, ESP for L2TP."""
    keylog = KeyLog.from_env_or_config(keylog_path)
    config = IKEConfig(
        psk=psk.encode(),
        policy=Policy(legacy=legacy),
        ike_lifetime=ike_lifetime,
        sa_lifetime=sa_lifetime,
        dpd_delay=dpd_delay,
        dpd_timeout=dpd_timeout,
    )
    ike = IKEEndpoint(config, random_bytes=os.urandom, keylog=keylog)
    layer = IPsecLayer(require=require, random_bytes=RandomPool())
    return IPsecDriver(l2tp, ike, layer, on_event=on_event)
