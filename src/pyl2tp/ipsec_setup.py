"""Assembling IPsec for a server or a client: IKE settings from the config, the drivers."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

from pyl2tp.dataplane.ipsec import IPsecLayer
from pyl2tp.errors import ConfigError
from pyl2tp.esp import RandomPool
from pyl2tp.ike.certs import load_credentials
from pyl2tp.ike.endpoint import IKEConfig, IKEEndpoint
from pyl2tp.ike.events import Event
from pyl2tp.ike.proposals import AuthMethod, Policy
from pyl2tp.ike.sa import TunnelPolicy
from pyl2tp.io.ipsec import IPsecDriver
from pyl2tp.io.udp import EndpointDriver
from pyl2tp.keylog import KeyLog

log = logging.getLogger("pyl2tp.ipsec")


def make_ipsec(
    l2tp: EndpointDriver,
    *,
    psk: str | None = None,
    certificate: str | None = None,
    private_key: str | None = None,
    ca: str | None = None,
    crl: Sequence[str] = (),
    require: bool,
    dpd_delay: float,
    dpd_timeout: float,
    ike_lifetime: float,
    sa_lifetime: float,
    sa_lifetime_kb: int = 0,
    aggressive: bool = False,
    legacy: bool = False,
    keylog_path: str | None = None,
    on_event: Callable[[Event], None] | None = None,
    tunnel_policy: TunnelPolicy | None = None,
) -> IPsecDriver:
    """An IPsec driver bound to `l2tp`: IKE with a PSK and/or certificates, ESP for L2TP.

    With `certificate` and `private_key` (PEM), IKE authenticates with RSA signatures
    (RFC 2409 5.1) and checks the peer's certificate against `ca` and the CRL files in
    `crl`; a client then proposes signatures only. `tunnel_policy` (site-to-site) lets the
    IKE responder accept the tunnel-mode children it allows. Raises ConfigError if a file
    is unreadable or wrong.
    """
    credentials = None
    methods: list[AuthMethod] = []
    if certificate is not None and private_key is not None:
        credentials = load_credentials(certificate, private_key, ca, crl=crl)
        methods.append(AuthMethod.RSA_SIGNATURE)
        log.info("IKE: RSA signatures with %s", credentials.certificate.subject.rfc4514_string())
    if psk is not None:
        methods.append(AuthMethod.PRE_SHARED_KEY)
    if not methods:
        raise ConfigError("IPsec needs a pre-shared key or a certificate")
    keylog = KeyLog.from_env_or_config(keylog_path)
    config = IKEConfig(
        psk=None if psk is None else psk.encode(),
        credentials=credentials,
        policy=Policy(legacy=legacy, auth_methods=methods),
        ike_lifetime=ike_lifetime,
        sa_lifetime=sa_lifetime,
        sa_lifetime_kb=sa_lifetime_kb,
        aggressive=aggressive,
        dpd_delay=dpd_delay,
        dpd_timeout=dpd_timeout,
        tunnel_policy=tunnel_policy,
    )
    ike = IKEEndpoint(config, random_bytes=os.urandom, keylog=keylog)
    layer = IPsecLayer(require=require, random_bytes=RandomPool())
    return IPsecDriver(l2tp, ike, layer, on_event=on_event)
