"""TOML configuration for the server and the client: schema, defaults and validation.

Every section is a frozen slots dataclass whose fields carry their own check in
``metadata["check"]``; one generic reader walks the fields, so a key, its default and its
validation are declared once. Every problem raises :class:`ConfigError` naming the file,
the table and key, and the line (found by scanning the text: ``tomllib`` gives no positions).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from pyl2tp import configcheck as c
from pyl2tp.errors import ConfigError

__all__ = [
    "AAASection",
    "ClientConfig",
    "ClientSection",
    "DebugSection",
    "IPsecSection",
    "L2TPSection",
    "PPPSection",
    "PoolSection",
    "ServerConfig",
    "ServerSection",
    "Site",
    "User",
    "client_config_from_args",
    "load_client_config",
    "load_server_config",
    "parse_client_config",
    "parse_server_config",
]

_T = TypeVar("_T")

AUTH_METHODS = ("mschapv2", "chap", "pap")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
LINK_MODES = ("ppp", "null", "echo")


def _k(check: c.Check) -> dict[str, c.Check]:
    """Field metadata carrying the key's check."""
    return {"check": check}


# --- the schema ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerSection:
    """``[server]``: where the LNS listens and how it is run."""

    listen: list[str] = field(
        default_factory=lambda: ["0.0.0.0"], metadata=_k(c.list_of(c.address(), nonempty=True))
    )
    port: int = field(default=1701, metadata=_k(c.integer(1, 65535)))
    hostname: str = field(default_factory=socket.gethostname, metadata=_k(c.string))
    control_socket: str = field(default="/run/pyl2tp/server.sock", metadata=_k(c.string))
    tun: str = field(default="pyl2tp0", metadata=_k(c.ifname))
    log_level: str = field(default="info", metadata=_k(c.choice(LOG_LEVELS)))


@dataclass(frozen=True, slots=True)
class L2TPSection:
    """``[l2tp]``: the control connection (RFC 2661): auth, timers and limits."""

    # RFC 2661 5.1.1: a shared secret authenticates the tunnel (Challenge AVPs).
    secret: str | None = field(default=None, repr=False, metadata=_k(c.string))
    hide_avps: bool = field(default=False, metadata=_k(c.boolean))  # RFC 2661 4.3
    hello_interval: float = field(default=60.0, metadata=_k(c.number(0)))  # 0: no HELLO
    # RFC 2661 5.8: retransmission with exponential back-off, capped, then give up.
    retransmit_initial: float = field(default=1.0, metadata=_k(c.number(0, gt=True)))
    retransmit_cap: float = field(default=8.0, metadata=_k(c.number(0, gt=True)))
    max_retries: int = field(default=5, metadata=_k(c.integer(1)))
    receive_window: int = field(default=8, metadata=_k(c.integer(1, 1024)))
    max_tunnels: int = field(default=1000, metadata=_k(c.integer(1)))
    max_sessions: int = field(default=10000, metadata=_k(c.integer(1)))
    max_sessions_per_tunnel: int = field(default=1000, metadata=_k(c.integer(1, 65535)))
    max_tunnels_per_peer: int = field(default=100, metadata=_k(c.integer(1)))
    ack_delay: float = field(default=0.1, metadata=_k(c.number(0)))
    # RFC 2661 5.7: keep state after StopCCN for a full retransmission cycle (31 s).
    linger: float = field(default=31.0, metadata=_k(c.number(0)))
    vendor_name: str = field(default="pyl2tp", metadata=_k(c.string))


@dataclass(frozen=True, slots=True)
class IPsecSection:
    """``[ipsec]``: IKEv1 + ESP protecting L2TP."""

    enabled: bool = field(default=False, metadata=_k(c.boolean))
    psk: str | None = field(default=None, repr=False, metadata=_k(c.string))
    require: bool = field(default=True, metadata=_k(c.boolean))
    # 3DES and MODP1024 for old Android and old Windows registry settings: weak, off.
    legacy: bool = field(default=False, metadata=_k(c.boolean))
    certificate: str | None = field(default=None, metadata=_k(c.string))
    private_key: str | None = field(default=None, metadata=_k(c.string))
    ca: str | None = field(default=None, metadata=_k(c.string))
    # certificate revocation lists (PEM or DER files), read at start
    crl: list[str] = field(default_factory=list, metadata=_k(c.one_or_list(c.string)))
    dpd_delay: float = field(default=30.0, metadata=_k(c.number(0)))
    dpd_timeout: float = field(default=150.0, metadata=_k(c.number(0, gt=True)))
    ike_lifetime: float = field(default=28800.0, metadata=_k(c.number(0, gt=True)))
    sa_lifetime: float = field(default=3600.0, metadata=_k(c.number(0, gt=True)))
    # ESP SAs also end after this many kilobytes (RFC 2407 4.5); 0: no byte limit.
    sa_lifetime_kb: int = field(default=0, metadata=_k(c.integer(0)))
    # answer Aggressive Mode (RFC 2409 5.4): it sends a hash of the PSK in the clear
    aggressive: bool = field(default=False, metadata=_k(c.boolean))
    # site-to-site: the TUN device that carries the sites' traffic (made only with [[sites]])
    site_tun: str = field(default="pyl2tp-s2s", metadata=_k(c.ifname))


@dataclass(frozen=True, slots=True)
class PPPSection:
    """``[ppp]``: PPP options offered to peers."""

    auth: list[str] = field(
        default_factory=lambda: list(AUTH_METHODS),
        metadata=_k(c.list_of(c.choice(AUTH_METHODS), nonempty=True)),
    )
    dns: list[str] = field(default_factory=list, metadata=_k(c.list_of(c.address())))
    mtu: int = field(default=1400, metadata=_k(c.integer(576, 1500)))
    lcp_echo_interval: float = field(default=30.0, metadata=_k(c.number(0)))  # 0: no echo
    lcp_echo_failure: int = field(default=4, metadata=_k(c.integer(1)))
    chap_rechallenge: float = field(default=0.0, metadata=_k(c.number(0)))  # 0: never


@dataclass(frozen=True, slots=True)
class PoolSection:
    """``[pool]``: the server's in-tunnel address and the client address range."""

    local: str | None = field(default=None, metadata=_k(c.address(4)))
    range: str | None = field(default=None, metadata=_k(c.ipv4_range))
    ipv6: str | None = field(default=None, metadata=_k(c.ipv6_network))
    local_ipv6: str | None = field(default=None, metadata=_k(c.address(6)))


@dataclass(frozen=True, slots=True)
class User:
    """One ``[[users]]`` entry."""

    name: str = field(metadata=_k(c.string))
    password: str = field(repr=False, metadata=_k(c.string))
    address: str | None = field(default=None, metadata=_k(c.address(4)))


def _ipv4_network(v: Any) -> str:
    """An IPv4 network in CIDR form without host bits, like ``"198.18.10.0/24"``."""
    desc = 'an IPv4 network like "198.18.10.0/24" (no host bits)'
    try:
        net = ipaddress.IPv4Network(v) if isinstance(v, str) else None
    except ValueError:
        net = None
    if net is None:
        raise c.fail(desc, v)
    return str(net)


@dataclass(frozen=True, slots=True)
class Site:
    """One ``[[sites]]`` entry: a site-to-site tunnel (tunnel-mode ESP) to a gateway."""

    name: str = field(metadata=_k(c.string))
    peer: str = field(metadata=_k(c.address(4)))  # the other gateway's address
    local: list[str] = field(metadata=_k(c.list_of(_ipv4_network, nonempty=True)))
    remote: list[str] = field(metadata=_k(c.list_of(_ipv4_network, nonempty=True)))
    initiate: bool = field(default=False, metadata=_k(c.boolean))  # false: only respond


@dataclass(frozen=True, slots=True)
class AAASection:
    """``[aaa]``: where else users come from."""

    chap_secrets: str | None = field(default=None, metadata=_k(c.string))


@dataclass(frozen=True, slots=True)
class DebugSection:
    """``[debug]``: diagnostics. ``link = "echo"`` reflects every PPP frame to the peer."""

    keylog: str | None = field(default=None, metadata=_k(c.string))
    link: str = field(default="ppp", metadata=_k(c.choice(LINK_MODES)))


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """A whole server configuration; ``source`` names the file it came from."""

    server: ServerSection
    l2tp: L2TPSection
    ipsec: IPsecSection
    ppp: PPPSection
    pool: PoolSection
    users: list[User]
    aaa: AAASection
    debug: DebugSection
    source: str
    sites: list[Site] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ClientSection:
    """``[client]``: the server to reach, credentials, timers and load-test fan-out."""

    server: str = field(metadata=_k(c.host))
    port: int = field(default=1701, metadata=_k(c.integer(1, 65535)))
    user: str | None = field(default=None, metadata=_k(c.string))
    password: str | None = field(default=None, repr=False, metadata=_k(c.string))
    psk: str | None = field(default=None, repr=False, metadata=_k(c.string))
    # RSA-signature IKE instead of (or besides) the PSK: PEM files, like [ipsec]'s keys
    certificate: str | None = field(default=None, metadata=_k(c.string))
    private_key: str | None = field(default=None, metadata=_k(c.string))
    ca: str | None = field(default=None, metadata=_k(c.string))
    crl: list[str] = field(default_factory=list, metadata=_k(c.one_or_list(c.string)))
    legacy: bool = field(default=False, metadata=_k(c.boolean))
    auth: list[str] = field(
        default_factory=lambda: ["mschapv2"], metadata=_k(c.one_or_list(c.choice(AUTH_METHODS)))
    )
    routes: list[str] = field(default_factory=list, metadata=_k(c.list_of(c.route)))
    secret: str | None = field(default=None, repr=False, metadata=_k(c.string))
    control_socket: str = field(default="/run/pyl2tp/client.sock", metadata=_k(c.string))
    tun: str = field(default="", metadata=_k(c.ifname_or_empty))
    ipv6: bool = field(default=False, metadata=_k(c.boolean))
    dns: bool = field(default=True, metadata=_k(c.boolean))
    hostname: str = field(default_factory=socket.gethostname, metadata=_k(c.string))
    local: str | None = field(default=None, metadata=_k(c.address()))
    local_port: int = field(default=0, metadata=_k(c.integer(0, 65535)))
    tunnels: int = field(default=1, metadata=_k(c.integer(1, 1000)))
    sessions: int = field(default=1, metadata=_k(c.integer(1, 10000)))
    hide_avps: bool = field(default=False, metadata=_k(c.boolean))
    hello_interval: float = field(default=60.0, metadata=_k(c.number(0)))
    retransmit_initial: float = field(default=1.0, metadata=_k(c.number(0, gt=True)))
    retransmit_cap: float = field(default=8.0, metadata=_k(c.number(0, gt=True)))
    max_retries: int = field(default=5, metadata=_k(c.integer(1)))
    receive_window: int = field(default=8, metadata=_k(c.integer(1, 1024)))
    reconnect: bool = field(default=True, metadata=_k(c.boolean))
    reconnect_initial: float = field(default=1.0, metadata=_k(c.number(0, gt=True)))
    reconnect_cap: float = field(default=60.0, metadata=_k(c.number(0, gt=True)))
    log_level: str = field(default="info", metadata=_k(c.choice(LOG_LEVELS)))
    lcp_echo_interval: float = field(default=30.0, metadata=_k(c.number(0)))
    lcp_echo_failure: int = field(default=4, metadata=_k(c.integer(1)))
    dpd_delay: float = field(default=30.0, metadata=_k(c.number(0)))
    dpd_timeout: float = field(default=150.0, metadata=_k(c.number(0, gt=True)))
    ike_lifetime: float = field(default=28800.0, metadata=_k(c.number(0, gt=True)))
    sa_lifetime: float = field(default=3600.0, metadata=_k(c.number(0, gt=True)))
    sa_lifetime_kb: int = field(default=0, metadata=_k(c.integer(0)))


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """A whole client configuration; ``source`` names the file (or the command line)."""

    client: ClientSection
    debug: DebugSection
    source: str


SERVER_TABLES: dict[str, type[Any]] = {
    "server": ServerSection,
    "l2tp": L2TPSection,
    "ipsec": IPsecSection,
    "ppp": PPPSection,
    "pool": PoolSection,
    "users": User,
    "sites": Site,
    "aaa": AAASection,
    "debug": DebugSection,
}
CLIENT_TABLES: dict[str, type[Any]] = {"client": ClientSection, "debug": DebugSection}
_ARRAY_TABLES = frozenset({"users", "sites"})


def _read_table(
    doc: c.Doc,
    raw: Any,
    table: str,
    cls: type[_T],
    schema: Mapping[str, type[Any]],
    index: int | None = None,
) -> _T:
    """Check one table against ``cls``'s fields; unknown and missing keys are errors."""
    if not isinstance(raw, dict):
        raise doc.error(table, None, f"expected a table, got {c.show(raw)}", index)
    fields = {f.name: f for f in dataclasses.fields(cast(Any, cls))}
    for key in raw:
        if key not in fields:
            hint = c.hint(key, list(fields)) or _elsewhere(key, table, schema)
            raise doc.error(table, key, "unknown key" + hint, index)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in raw:
            try:
                values[name] = f.metadata["check"](raw[name])
            except c.Invalid as exc:
                raise doc.error(table, name, str(exc), index) from None
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise doc.error(table, name, "missing (this key is required)", index)
    return cls(**values)


def _elsewhere(key: str, table: str, schema: Mapping[str, type[Any]]) -> str:
    """A hint naming the table where ``key`` belongs, if it belongs to another one."""
    for name, cls in schema.items():
        if name != table and key in {f.name for f in dataclasses.fields(cls)}:
            return f" (it belongs in [{name}])"
    return ""


def _split_tables(doc: c.Doc, data: dict[str, Any], schema: Mapping[str, type[Any]]) -> None:
    """Reject top-level keys that are not known tables."""
    for name, value in data.items():
        if name in schema:
            continue
        hint = c.hint(name, list(schema), table=isinstance(value, dict | list))
        if isinstance(value, dict | list):
            line = doc.line_of(name, None, 0 if isinstance(value, list) else None)
            line = line or doc.line_of(None, name)
            what = f"unknown table [{name}]"
        else:
            line = doc.line_of(None, name)
            what = f"unknown top-level key {json.dumps(name)}"
        where = f"{doc.source}:{line}" if line else doc.source
        raise ConfigError(f"{where}: {what}{hint}")


def _decode(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: TOML syntax error: {exc}") from None


def _read_file(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None


def _check_l2tp(doc: c.Doc, table: str, section: L2TPSection | ClientSection) -> None:
    """Rules across the L2TP keys, shared by ``[l2tp]`` and ``[client]``."""
    # RFC 2661 5.8: the timeout doubles from the initial value up to the cap.
    if section.retransmit_cap < section.retransmit_initial:
        limit = f"{section.retransmit_initial:g}"
        raise doc.error(table, "retransmit_cap", f"must be >= retransmit_initial ({limit})")
    # RFC 2661 4.3: AVP hiding is keyed with the shared secret.
    if section.hide_avps and section.secret is None:
        raise doc.error(table, "hide_avps", "needs secret (AVPs are hidden with it)")


# --- the server --------------------------------------------------------------------------


def _server_from(doc: c.Doc, data: dict[str, Any]) -> ServerConfig:
    _split_tables(doc, data, SERVER_TABLES)
    t: dict[str, Any] = {
        name: _read_table(doc, data.get(name, {}), name, cls, SERVER_TABLES)
        for name, cls in SERVER_TABLES.items()
        if name not in _ARRAY_TABLES
    }
    raw_users = data.get("users", [])
    if not isinstance(raw_users, list):
        raise doc.error("users", None, "expected an array of tables ([[users]])")
    users = [_read_table(doc, u, "users", User, SERVER_TABLES, i) for i, u in enumerate(raw_users)]
    l2tp: L2TPSection = t["l2tp"]
    _check_l2tp(doc, "l2tp", l2tp)
    _check_ipsec(doc, t["ipsec"])
    pool: PoolSection = t["pool"]
    if pool.local is not None and pool.range is not None and _in_range(pool.local, pool.range):
        raise doc.error("pool", "local", f"{pool.local} lies inside range {pool.range}")
    names: set[str] = set()
    addresses: dict[str, str] = {}
    for i, user in enumerate(users):
        if user.name in names:
            raise doc.error("users", "name", f"user {json.dumps(user.name)} is defined twice", i)
        names.add(user.name)
        if user.address is None:
            continue
        if user.address == pool.local:
            raise doc.error("users", "address", f"{user.address} is the pool's local address", i)
        if user.address in addresses:
            other = json.dumps(addresses[user.address])
            raise doc.error("users", "address", f"{user.address} is also given to {other}", i)
        addresses[user.address] = user.name
    raw_sites = data.get("sites", [])
    if not isinstance(raw_sites, list):
        raise doc.error("sites", None, "expected an array of tables ([[sites]])")
    sites = [_read_table(doc, s, "sites", Site, SERVER_TABLES, i) for i, s in enumerate(raw_sites)]
    _check_sites(doc, sites, t["ipsec"])
    return ServerConfig(users=users, source=doc.source, sites=sites, **t)


def _check_sites(doc: c.Doc, sites: list[Site], ipsec: IPsecSection) -> None:
    """Site names unique; no remote network of one site overlaps another site's; a site's
    local and remote networks apart; sites need IPsec."""
    names: set[str] = set()
    peers: dict[str, str] = {}
    remotes: list[tuple[ipaddress.IPv4Network, str]] = []
    for i, site in enumerate(sites):
        if not ipsec.enabled:
            raise doc.error("sites", "name", "a site needs [ipsec] enabled = true", i)
        if site.name in names:
            raise doc.error("sites", "name", f"site {json.dumps(site.name)} is defined twice", i)
        names.add(site.name)
        if site.peer in peers:
            first = json.dumps(peers[site.peer])
            raise doc.error(
                "sites", "peer", f"{site.peer} is also the peer of site {first} "
                "(one site per gateway: list all its networks there)", i,
            )
        peers[site.peer] = site.name
        local = [ipaddress.IPv4Network(n) for n in site.local]
        remote = [ipaddress.IPv4Network(n) for n in site.remote]
        for r in remote:
            for loc in local:
                if r.overlaps(loc):
                    raise doc.error(
                        "sites", "remote", f"{r} overlaps local network {loc} of this site", i
                    )
            for seen, owner in remotes:
                if r.overlaps(seen):
                    where = "this site" if owner == site.name else f"site {json.dumps(owner)}"
                    raise doc.error(
                        "sites", "remote", f"{r} overlaps {seen}, a remote network of {where}", i
                    )
            remotes.append((r, site.name))


def _check_ipsec(doc: c.Doc, ipsec: IPsecSection) -> None:
    if ipsec.certificate is not None and ipsec.private_key is None:
        raise doc.error("ipsec", "certificate", "needs private_key too")
    if ipsec.private_key is not None and ipsec.certificate is None:
        raise doc.error("ipsec", "private_key", "needs certificate too")
    if ipsec.enabled and ipsec.psk is None and ipsec.certificate is None:
        raise doc.error("ipsec", "enabled", "IPsec is on but neither psk nor certificate is set")
    if ipsec.certificate is not None and ipsec.ca is None:
        raise doc.error("ipsec", "certificate", "needs ca too (to verify the peers' certificates)")


def _check_client_certs(doc: c.Doc, client: ClientSection) -> None:
    if client.certificate is not None and client.private_key is None:
        raise doc.error("client", "certificate", "needs private_key too")
    if client.private_key is not None and client.certificate is None:
        raise doc.error("client", "private_key", "needs certificate too")
    if client.certificate is not None and client.ca is None:
        raise doc.error("client", "certificate", "needs ca too (to verify the server)")


def _in_range(address: str, span: str) -> bool:
    lo, hi = (ipaddress.IPv4Address(p) for p in span.split("-"))
    return lo <= ipaddress.IPv4Address(address) <= hi


def parse_server_config(text: str, source: str = "<string>") -> ServerConfig:
    """Parse and validate a server configuration given as TOML text."""
    return _server_from(c.Doc(source, text), _decode(text, source))


def load_server_config(path: str | Path) -> ServerConfig:
    """Read, parse and validate a server configuration file."""
    return parse_server_config(_read_file(path), str(path))


# --- the client --------------------------------------------------------------------------


def _client_from(doc: c.Doc, data: dict[str, Any]) -> ClientConfig:
    _split_tables(doc, data, CLIENT_TABLES)
    if "client" not in data:
        raise ConfigError(f"{doc.source}: [client] table missing (it needs at least server)")
    client = _read_table(doc, data["client"], "client", ClientSection, CLIENT_TABLES)
    debug = _read_table(doc, data.get("debug", {}), "debug", DebugSection, CLIENT_TABLES)
    _check_l2tp(doc, "client", client)
    _check_client_certs(doc, client)
    if client.reconnect_cap < client.reconnect_initial:
        limit = f"{client.reconnect_initial:g}"
        raise doc.error("client", "reconnect_cap", f"must be >= reconnect_initial ({limit})")
    return ClientConfig(client=client, debug=debug, source=doc.source)


def parse_client_config(text: str, source: str = "<string>") -> ClientConfig:
    """Parse and validate a client configuration given as TOML text."""
    return _client_from(c.Doc(source, text), _decode(text, source))


def load_client_config(path: str | Path) -> ClientConfig:
    """Read, parse and validate a client configuration file."""
    return parse_client_config(_read_file(path), str(path))


# Command-line attribute -> (table, key, flag). Attributes absent or None are not overrides.
CLIENT_FLAGS: dict[str, tuple[str, str, str]] = {
    "server": ("client", "server", "--server"),
    "port": ("client", "port", "--port"),
    "user": ("client", "user", "--user"),
    "password": ("client", "password", "--password"),
    "psk": ("client", "psk", "--psk"),
    "secret": ("client", "secret", "--secret"),
    "auth": ("client", "auth", "--auth"),
    "routes": ("client", "routes", "--route"),
    "local": ("client", "local", "--local"),
    "local_port": ("client", "local_port", "--local-port"),
    "tunnels": ("client", "tunnels", "--tunnels"),
    "sessions": ("client", "sessions", "--sessions"),
    "control_socket": ("client", "control_socket", "--control-socket"),
    "hostname": ("client", "hostname", "--hostname"),
    "reconnect": ("client", "reconnect", "--no-reconnect"),
    "log_level": ("client", "log_level", "--log-level"),
    "link": ("debug", "link", "--link"),
    "keylog": ("debug", "keylog", "--keylog"),
}


def client_config_from_args(args: Any) -> ClientConfig:
    """Build a client configuration from ``-c FILE`` (optional) plus flags that override it.

    ``args`` is an ``argparse.Namespace`` (or anything with those attributes): ``config``
    names the file; the attributes in ``CLIENT_FLAGS`` override keys of the file.
    """
    path = getattr(args, "config", None)
    if path is not None:
        text, source = _read_file(path), str(path)
        data = _decode(text, source)
    else:
        text, source, data = "", "command line", {}
    flags: dict[tuple[str, str], str] = {}
    for attr, (table, key, flag) in CLIENT_FLAGS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        section = data.setdefault(table, {})
        if not isinstance(section, dict):
            break  # reported by the table reader, with the file's line
        section[key] = value
        flags[table, key] = flag
    if path is None and "server" not in data.get("client", {}):
        raise ConfigError("client: give a configuration file (-c FILE) or --server")
    return _client_from(c.Doc(source, text, flags), data)
