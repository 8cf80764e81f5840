"""Unit tests for the TOML configuration: defaults, validation, error locations, flags."""

from __future__ import annotations

import argparse
import dataclasses
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from pyl2tp.config import (
    ClientConfig,
    ServerConfig,
    client_config_from_args,
    load_client_config,
    load_server_config,
    parse_client_config,
    parse_server_config,
)
from pyl2tp.errors import ConfigError

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def server_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_server_config(text, "server.toml")
    return str(info.value)


def client_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_client_config(text, "client.toml")
    return str(info.value)


def as_dict(section: Any) -> dict[str, Any]:
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}


# --- defaults -------------------------------------------------------------------------------

SERVER_DEFAULTS: dict[str, dict[str, Any]] = {
    "server": {
        "listen": ["0.0.0.0"],
        "port": 1701,
        "hostname": socket.gethostname(),
        "control_socket": "/run/pyl2tp/server.sock",
        "tun": "pyl2tp0",
        "log_level": "info",
    },
    "l2tp": {
        "secret": None,
        "hide_avps": False,
        "hello_interval": 60.0,
        "retransmit_initial": 1.0,
        "retransmit_cap": 8.0,
        "max_retries": 5,
        "receive_window": 8,
        "max_tunnels": 1000,
        "max_sessions": 10000,
        "max_sessions_per_tunnel": 1000,
        "max_tunnels_per_peer": 100,
        "ack_delay": 0.1,
        "linger": 31.0,
        "vendor_name": "pyl2tp",
    },
    "ipsec": {
        "enabled": False,
        "psk": None,
        "require": True,
        "legacy": False,
        "certificate": None,
        "private_key": None,
        "ca": None,
        "crl": [],
        "dpd_delay": 30.0,
        "dpd_timeout": 150.0,
        "ike_lifetime": 28800.0,
        "sa_lifetime": 3600.0,
        "sa_lifetime_kb": 0,
        "aggressive": False,
        "site_tun": "pyl2tp-s2s",
    },
    "ppp": {
        "auth": ["mschapv2", "chap", "pap"],
        "dns": [],
        "mtu": 1400,
        "lcp_echo_interval": 30.0,
        "lcp_echo_failure": 4,
        "chap_rechallenge": 0.0,
    },
    "pool": {"local": None, "range": None, "ipv6": None, "local_ipv6": None},
    "aaa": {"chap_secrets": None},
    "debug": {"keylog": None, "link": "ppp"},
}

CLIENT_DEFAULTS: dict[str, Any] = {
    "port": 1701,
    "user": None,
    "password": None,
    "psk": None,
    "certificate": None,
    "private_key": None,
    "ca": None,
    "crl": [],
    "legacy": False,
    "auth": ["mschapv2"],
    "routes": [],
    "secret": None,
    "control_socket": "/run/pyl2tp/client.sock",
    "tun": "",
    "ipv6": False,
    "dns": True,
    "hostname": socket.gethostname(),
    "local": None,
    "local_port": 0,
    "tunnels": 1,
    "sessions": 1,
    "hide_avps": False,
    "hello_interval": 60.0,
    "retransmit_initial": 1.0,
    "retransmit_cap": 8.0,
    "max_retries": 5,
    "receive_window": 8,
    "reconnect": True,
    "reconnect_initial": 1.0,
    "reconnect_cap": 60.0,
    "log_level": "info",
    "lcp_echo_interval": 30.0,
    "lcp_echo_failure": 4,
    "dpd_delay": 30.0,
    "dpd_timeout": 150.0,
    "ike_lifetime": 28800.0,
    "sa_lifetime": 3600.0,
    "sa_lifetime_kb": 0,
}


def test_server_defaults_for_every_key() -> None:
    config = parse_server_config("", "server.toml")
    assert isinstance(config, ServerConfig)
    assert config.source == "server.toml"
    assert config.users == []
    for table, expected in SERVER_DEFAULTS.items():
        assert as_dict(getattr(config, table)) == expected, table


def test_client_defaults_for_every_key() -> None:
    config = parse_client_config('[client]\nserver = "198.18.0.1"\n', "client.toml")
    assert isinstance(config, ClientConfig)
    values = as_dict(config.client)
    assert values.pop("server") == "198.18.0.1"
    assert values == CLIENT_DEFAULTS
    assert as_dict(config.debug) == SERVER_DEFAULTS["debug"]


def test_durations_are_floats_and_sections_are_frozen() -> None:
    config = parse_server_config("[l2tp]\nhello_interval = 5\n")
    assert config.l2tp.hello_interval == 5.0
    assert isinstance(config.l2tp.hello_interval, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.l2tp.hello_interval = 1.0  # type: ignore[misc]


DESIGN_SERVER = """
[server]
listen = ["198.18.0.1"]
hostname = "lns1"
control_socket = "/run/pyl2tp/server.sock"
[l2tp]
secret = "tunnel-secret"
hide_avps = false
hello_interval = 60
[ipsec]
enabled = true
psk = "pre-shared-key"
require = true
[ppp]
auth = ["mschapv2", "chap", "pap"]
dns = ["198.18.0.53"]
mtu = 1400
[pool]
local = "198.18.100.1"
range = "198.18.100.10-198.18.100.250"
[[users]]
name = "alice"
password = "secret"
address = "198.18.100.5"
[[users]]
name = "bob"
password = "hunter2"
"""


def test_design_example_server() -> None:
    config = parse_server_config(DESIGN_SERVER)
    assert config.server.listen == ["198.18.0.1"]
    assert config.server.hostname == "lns1"
    assert config.l2tp.secret == "tunnel-secret"
    assert config.ipsec.enabled and config.ipsec.psk == "pre-shared-key"
    assert config.ppp.dns == ["198.18.0.53"]
    assert config.pool.local == "198.18.100.1"
    assert config.pool.range == "198.18.100.10-198.18.100.250"
    assert [(u.name, u.password, u.address) for u in config.users] == [
        ("alice", "secret", "198.18.100.5"),
        ("bob", "hunter2", None),
    ]


def test_design_example_client() -> None:
    config = parse_client_config(
        """
[client]
server = "198.18.0.1"
user = "alice"
password = "secret"
psk = "pre-shared-key"
auth = "mschapv2"
routes = ["198.18.100.0/24", "default"]
secret = "tunnel-secret"
control_socket = "/run/pyl2tp/client.sock"
"""
    )
    c = config.client
    assert (c.server, c.user, c.password, c.psk, c.secret) == (
        "198.18.0.1",
        "alice",
        "secret",
        "pre-shared-key",
        "tunnel-secret",
    )
    assert c.auth == ["mschapv2"]
    assert c.routes == ["198.18.100.0/24", "default"]


def test_values_are_normalised() -> None:
    config = parse_server_config(
        '[server]\nlisten = ["2001:0002:0::1"]\nlog_level = "DEBUG"\n'
        '[debug]\nlink = "Echo"\n[pool]\nrange = " 198.18.1.1 - 198.18.1.9"\n'
    )
    assert config.server.listen == ["2001:2::1"]
    assert config.server.log_level == "debug"
    assert config.debug.link == "echo"
    assert config.pool.range == "198.18.1.1-198.18.1.9"
    client = parse_client_config(
        '[client]\nserver = "vpn.example.com"\nauth = ["PAP", "chap"]\nroutes = ["198.18.5.7/24"]\n'
    ).client
    assert client.server == "vpn.example.com"
    assert client.auth == ["pap", "chap"]
    assert client.routes == ["198.18.5.0/24"]


def test_secrets_stay_out_of_repr() -> None:
    config = parse_server_config(DESIGN_SERVER)
    text = repr(config)
    for secret in ("tunnel-secret", "pre-shared-key", "hunter2"):
        assert secret not in text
    client = parse_client_config('[client]\nserver = "h"\npassword = "pw-xyz"\npsk = "psk-xyz"\n')
    assert "pw-xyz" not in repr(client) and "psk-xyz" not in repr(client)


# --- every validation error names file, table, key and line ------------------------------

SERVER_BAD: list[tuple[str, str, str, str]] = [
    ("server", "listen", '["x"]', "item 1: expected an IP address"),
    ("server", "listen", "[]", "non-empty list"),
    ("server", "listen", '"198.18.0.1"', "expected a non-empty list"),
    ("server", "listen", '["198.18.0.1", "198.18.0.1"]', "listed twice"),
    ("server", "port", "0", "between 1 and 65535"),
    ("server", "port", "65536", "between 1 and 65535"),
    ("server", "port", '"1701"', 'got "1701"'),
    ("server", "hostname", '""', "non-empty string"),
    ("server", "control_socket", "1", "non-empty string"),
    ("server", "log_level", '"loud"', 'one of "debug"'),
    ("l2tp", "secret", '""', "non-empty string"),
    ("l2tp", "hide_avps", '"yes"', "true or false"),
    ("l2tp", "hello_interval", '"x"', 'expected a number >= 0, got "x"'),
    ("l2tp", "hello_interval", "-1", "got -1"),
    ("l2tp", "hello_interval", "inf", "got inf"),
    ("l2tp", "hello_interval", "nan", "got nan"),
    ("l2tp", "retransmit_initial", "0", "a number > 0"),
    ("l2tp", "retransmit_cap", "0", "a number > 0"),
    ("l2tp", "max_retries", "0", "an integer >= 1"),
    ("l2tp", "max_retries", "2.5", "an integer >= 1"),
    ("l2tp", "receive_window", "0", "between 1 and 1024"),
    ("l2tp", "receive_window", "1025", "between 1 and 1024"),
    ("l2tp", "max_tunnels", "0", "an integer >= 1"),
    ("l2tp", "max_sessions", "true", "got true"),
    ("l2tp", "max_sessions_per_tunnel", "0", "between 1 and 65535"),
    ("l2tp", "max_tunnels_per_peer", "0", "an integer >= 1"),
    ("l2tp", "ack_delay", "-0.1", "a number >= 0"),
    ("l2tp", "linger", "-1", "a number >= 0"),
    ("l2tp", "vendor_name", '""', "non-empty string"),
    ("ipsec", "enabled", "1", "true or false"),
    ("ipsec", "psk", '""', "non-empty string"),
    ("ipsec", "require", '"no"', "true or false"),
    ("ipsec", "certificate", "3", "non-empty string"),
    ("ipsec", "private_key", '""', "non-empty string"),
    ("ipsec", "ca", "[]", "non-empty string"),
    ("ipsec", "crl", "[]", "non-empty list"),
    ("ipsec", "crl", '["a.crl", ""]', "item 2: expected a non-empty string"),
    ("ipsec", "dpd_delay", "-1", "a number >= 0"),
    ("ipsec", "dpd_timeout", "0", "a number > 0"),
    ("ipsec", "ike_lifetime", "0", "a number > 0"),
    ("ipsec", "sa_lifetime", "-5", "a number > 0"),
    ("ipsec", "sa_lifetime_kb", "-1", "an integer >= 0"),
    ("ipsec", "aggressive", '"yes"', "true or false"),
    ("ipsec", "site_tun", '"a/b"', "an interface name"),
    ("ppp", "auth", '["md5"]', 'item 1: expected one of "mschapv2", "chap", "pap", got "md5"'),
    ("ppp", "auth", "[]", "non-empty list"),
    ("ppp", "auth", '["pap", "pap"]', "listed twice"),
    ("ppp", "dns", '["198.18.0"]', "item 1: expected an IP address"),
    ("ppp", "mtu", "575", "between 576 and 1500"),
    ("ppp", "mtu", "1501", "between 576 and 1500"),
    ("ppp", "lcp_echo_interval", "-1", "a number >= 0"),
    ("ppp", "lcp_echo_failure", "0", "an integer >= 1"),
    ("pool", "local", '"198.18.0.300"', "an IPv4 address"),
    ("pool", "local", '"2001:2::1"', "an IPv4 address"),
    ("pool", "range", '"198.18.0.1"', 'a range "a-b"'),
    ("pool", "range", '"a-b"', 'a range "a-b"'),
    ("pool", "ipv6", '"2001:2::/96"', "an IPv6 network of /64 or shorter"),
    ("pool", "local_ipv6", '"198.18.0.1"', "an IPv6 address"),
    ("server", "tun", '"a/b"', "an interface name"),
    ("ppp", "chap_rechallenge", "-1", "a number >= 0"),
    ("ipsec", "legacy", '"no"', "true or false"),
    ("pool", "range", '"198.18.0.9-198.18.0.1"', "a <= b"),
    ("pool", "range", '"2001:2::1-2001:2::9"', "IPv4"),
    ("aaa", "chap_secrets", "1", "non-empty string"),
    ("debug", "keylog", '""', "non-empty string"),
    ("debug", "link", '"tap"', 'one of "ppp", "null", "echo"'),
]


def test_server_bad_values_cover_every_key() -> None:
    covered = {(t, k) for t, k, _, _ in SERVER_BAD}
    assert covered == {(t, k) for t, keys in SERVER_DEFAULTS.items() for k in keys}


@pytest.mark.parametrize(("table", "key", "value", "fragment"), SERVER_BAD)
def test_server_error_names_file_key_and_line(
    table: str, key: str, value: str, fragment: str
) -> None:
    other = "aaa" if table != "aaa" else "debug"
    text = (
        f"# a comment\n[{other}]\n\n[{table}]\n"
        f"# {key} = 1 (a comment mentioning it)\n{key} = {value}\n"
    )
    message = server_error(text)
    assert message.startswith(f"server.toml:6: [{table}] {key}: "), message
    assert fragment in message


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("name", '""', "non-empty string"),
        ("password", "1", "non-empty string"),
        ("address", '"x"', "an IPv4 address"),
    ],
)
def test_users_error_names_the_entry(key: str, value: str, fragment: str) -> None:
    entry = {"name": '"bob"', "password": '"pw"', key: value}
    body = "\n".join(f"{k} = {v}" for k, v in entry.items())
    text = f'[[users]]\nname = "alice"\npassword = "pw"\n\n[[users]]\n{body}\n'
    line = 6 + list(entry).index(key)
    message = server_error(text)
    assert message.startswith(f"server.toml:{line}: [[users]] #2 {key}: "), message
    assert fragment in message


CLIENT_BAD: list[tuple[str, str, str]] = [
    ("server", '"a..b"', "an IP address or a host name"),
    ("server", "1", "an IP address or a host name"),
    ("port", "0", "between 1 and 65535"),
    ("user", '""', "non-empty string"),
    ("password", "1", "non-empty string"),
    ("psk", '""', "non-empty string"),
    ("certificate", "3", "non-empty string"),
    ("private_key", "''", "non-empty string"),
    ("ca", "[]", "non-empty string"),
    ("crl", '["x.crl", "x.crl"]', "listed twice"),
    ("auth", '"md5"', "item 1: expected one of"),
    ("auth", "[]", "non-empty list"),
    ("routes", '["x"]', '"default" or a network'),
    ("routes", '"default"', "expected a list"),
    ("secret", '""', "non-empty string"),
    ("control_socket", '""', "non-empty string"),
    ("hostname", "7", "non-empty string"),
    ("local", '"198.18.0"', "an IP address"),
    ("local_port", "65536", "between 0 and 65535"),
    ("tunnels", "0", "between 1 and 1000"),
    ("tunnels", "1001", "between 1 and 1000"),
    ("sessions", "10001", "between 1 and 10000"),
    ("hide_avps", "0", "true or false"),
    ("hello_interval", "-1", "a number >= 0"),
    ("retransmit_initial", "0", "a number > 0"),
    ("retransmit_cap", "-1", "a number > 0"),
    ("max_retries", "0", "an integer >= 1"),
    ("receive_window", "2000", "between 1 and 1024"),
    ("reconnect", '"yes"', "true or false"),
    ("reconnect_initial", "0", "a number > 0"),
    ("reconnect_cap", "0", "a number > 0"),
    ("log_level", '"trace"', "one of"),
    ("lcp_echo_interval", '"30"', "a number >= 0"),
    ("lcp_echo_failure", "0", "an integer >= 1"),
    ("tun", "1", "an interface name"),
    ("legacy", "1", "true or false"),
    ("ipv6", '"yes"', "true or false"),
    ("dns", "1", "true or false"),
    ("dpd_delay", "-1", "a number >= 0"),
    ("dpd_timeout", "0", "a number > 0"),
    ("ike_lifetime", "0", "a number > 0"),
    ("sa_lifetime", "0", "a number > 0"),
    ("sa_lifetime_kb", "1.5", "an integer >= 0"),
]


def test_client_bad_values_cover_every_key() -> None:
    assert {k for k, _, _ in CLIENT_BAD} == {*CLIENT_DEFAULTS, "server"}


@pytest.mark.parametrize(("key", "value", "fragment"), CLIENT_BAD)
def test_client_error_names_file_key_and_line(key: str, value: str, fragment: str) -> None:
    lines = ["[debug]", 'link = "null"', "", "[client]"]
    if key != "server":
        lines.append('server = "198.18.0.1"')
    lines.append(f"{key} = {value}")
    message = client_error("\n".join(lines) + "\n")
    assert message.startswith(f"client.toml:{len(lines)}: [client] {key}: "), message
    assert fragment in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[l2tp]\nretransmit_initial = 4\nretransmit_cap = 2\n",
            "server.toml:3: [l2tp] retransmit_cap: must be >= retransmit_initial (4)",
        ),
        (
            "[l2tp]\nhide_avps = true\n",
            "server.toml:2: [l2tp] hide_avps: needs secret",
        ),
        (
            "[ipsec]\nenabled = true\n",
            "server.toml:2: [ipsec] enabled: IPsec is on but neither psk nor certificate",
        ),
        (
            '[ipsec]\ncertificate = "c.pem"\n',
            "server.toml:2: [ipsec] certificate: needs private_key",
        ),
        (
            '[ipsec]\nprivate_key = "k.pem"\n',
            "server.toml:2: [ipsec] private_key: needs certificate",
        ),
        (
            '[ipsec]\ncertificate = "c.pem"\nprivate_key = "k.pem"\n',
            "server.toml:2: [ipsec] certificate: needs ca too",
        ),
        (
            '[pool]\nrange = "198.18.100.10-198.18.100.20"\nlocal = "198.18.100.15"\n',
            "server.toml:3: [pool] local: 198.18.100.15 lies inside range",
        ),
        (
            '[[users]]\nname = "a"\npassword = "p"\n[[users]]\nname = "a"\npassword = "q"\n',
            'server.toml:5: [[users]] #2 name: user "a" is defined twice',
        ),
        (
            '[pool]\nlocal = "198.18.100.1"\n[[users]]\nname = "a"\npassword = "p"\n'
            'address = "198.18.100.1"\n',
            "server.toml:6: [[users]] #1 address: 198.18.100.1 is the pool's local address",
        ),
        (
            '[[users]]\nname = "a"\npassword = "p"\naddress = "198.18.100.9"\n'
            '[[users]]\nname = "b"\npassword = "p"\naddress = "198.18.100.9"\n',
            'server.toml:8: [[users]] #2 address: 198.18.100.9 is also given to "a"',
        ),
        ('[[users]]\nname = "a"\n', "server.toml:1: [[users]] #1 password: missing"),
        ("users = 5\n", "server.toml:1: [users]: expected an array of tables"),
        ("[server]\nport = 1\n\nl2tp = 3\n", "server.toml:4: [server] l2tp: unknown key"),
        ("l2tp = 3\n", "server.toml:1: [l2tp]: expected a table, got 3"),
    ],
)
def test_cross_key_and_structure_errors(text: str, expected: str) -> None:
    assert server_error(text).startswith(expected)


def test_client_cross_key_errors() -> None:
    text = '[client]\nserver = "h"\nreconnect_initial = 10\nreconnect_cap = 5\n'
    assert client_error(text).startswith(
        "client.toml:4: [client] reconnect_cap: must be >= reconnect_initial (10)"
    )
    text = '[client]\nserver = "h"\nretransmit_initial = 3\nretransmit_cap = 2\n'
    assert client_error(text).startswith("client.toml:4: [client] retransmit_cap:")
    text = '[client]\nserver = "h"\nhide_avps = true\n'
    assert client_error(text).startswith("client.toml:3: [client] hide_avps: needs secret")
    assert client_error("\n[client]\nport = 1\n").startswith(
        "client.toml:2: [client] server: missing"
    )
    assert client_error("").startswith("client.toml: [client] table missing")


def test_dotted_keys_and_inline_tables_are_located() -> None:
    message = server_error('# top\nl2tp.hello_interval = -1\n[server]\nhostname = "x"\n')
    assert message.startswith("server.toml:2: [l2tp] hello_interval: ")
    message = server_error("\n\nppp = { mtu = 9000 }\n")
    assert message.startswith("server.toml:3: [ppp] mtu: ")
    message = server_error("[l2tp]\n  hello_interval   =   -1   # spaced\n")
    assert message.startswith("server.toml:2: [l2tp] hello_interval: ")


# --- unknown keys and tables, syntax errors, files -------------------------------------------


def test_unknown_key_with_hint() -> None:
    message = server_error("[l2tp]\nhello_interval = 5\nhelo_interval = 5\n")
    assert message == (
        'server.toml:3: [l2tp] helo_interval: unknown key (did you mean "hello_interval"?)'
    )


def test_unknown_key_that_belongs_elsewhere() -> None:
    message = server_error('[server]\npsk = "x"\n')
    assert message == "server.toml:2: [server] psk: unknown key (it belongs in [ipsec])"
    message = client_error('[client]\nserver = "h"\nlisten = ["198.18.0.1"]\n')
    assert message == "client.toml:3: [client] listen: unknown key"


def test_unknown_key_without_hint_and_subtable() -> None:
    assert server_error("[aaa]\nzzz = 1\n") == "server.toml:2: [aaa] zzz: unknown key"
    assert server_error("[l2tp]\n[l2tp.extra]\nx = 1\n").startswith(
        "server.toml:2: [l2tp] extra: unknown key"
    )


def test_unknown_table_and_top_level_key() -> None:
    assert server_error("\n[l2pt]\nx = 1\n") == (
        "server.toml:2: unknown table [l2pt] (did you mean [l2tp]?)"
    )
    assert server_error('[server]\n[[user]]\nname = "a"\n').startswith(
        "server.toml:2: unknown table [user] (did you mean [users]?)"
    )
    assert server_error("x = 1\n") == 'server.toml:1: unknown top-level key "x"'
    assert client_error('[client]\nserver = "h"\n[l2tp]\n').startswith(
        "client.toml:3: unknown table [l2tp]"
    )


def test_toml_syntax_error_passes_message_through() -> None:
    message = server_error("[server]\nport = \n")
    assert message.startswith("server.toml: TOML syntax error: ")
    assert "line 2" in message
    assert client_error("[client\n").startswith("client.toml: TOML syntax error: ")


def test_load_from_files(tmp_path: Path) -> None:
    path = tmp_path / "server.toml"
    path.write_text('[server]\nport = 1702\n[l2tp]\nmax_retries = "x"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:4: \[l2tp\] max_retries: "):
        load_server_config(path)
    path.write_text("[server]\nport = 1702\n")
    config = load_server_config(str(path))
    assert config.server.port == 1702
    assert config.source == str(path)
    cpath = tmp_path / "client.toml"
    cpath.write_text('[client]\nserver = "198.18.0.1"\n')
    assert load_client_config(cpath).client.server == "198.18.0.1"


def test_missing_and_binary_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        load_server_config(missing)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_client_config(binary)


# --- client flags ----------------------------------------------------------------------------


def ns(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**kw)


def test_client_from_flags_only() -> None:
    config = client_config_from_args(
        ns(config=None, server="198.18.0.1", user="u", password="p", psk="k", secret=None)
    )
    assert config.source == "command line"
    c = config.client
    assert (c.server, c.user, c.password, c.psk, c.secret) == ("198.18.0.1", "u", "p", "k", None)
    assert c.port == 1701


def test_client_flags_override_file(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(
        '[client]\nserver = "198.18.0.1"\nuser = "file-user"\nport = 1800\n[debug]\nlink = "null"\n'
    )
    config = client_config_from_args(
        ns(
            config=str(path),
            server=None,
            user="flag-user",
            auth=["pap"],
            link="echo",
            reconnect=False,
            routes=["default"],
        )
    )
    c = config.client
    assert c.server == "198.18.0.1" and c.port == 1800
    assert c.user == "flag-user"
    assert c.auth == ["pap"] and c.routes == ["default"] and c.reconnect is False
    assert config.debug.link == "echo"
    assert config.source == str(path)


def test_client_flag_errors_name_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^command line: --port \(\[client\] port\): "):
        client_config_from_args(ns(config=None, server="h", port=0))
    with pytest.raises(ConfigError, match=r"^command line: --server "):
        client_config_from_args(ns(config=None, server="bad host"))
    path = tmp_path / "c.toml"
    path.write_text('[client]\nserver = "h"\ntunnels = 0\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:3: \[client\] tunnels: "):
        client_config_from_args(ns(config=str(path), server="198.18.0.2"))


def test_client_needs_a_file_or_server() -> None:
    with pytest.raises(ConfigError, match="--server"):
        client_config_from_args(ns(config=None, server=None, user="u"))


# --- the documentation's examples are valid -----------------------------------------------


def _doc_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_documented_examples_parse() -> None:
    blocks = _doc_blocks()
    servers = [b for b in blocks if "[client]" not in b]
    clients = [b for b in blocks if "[client]" in b]
    assert servers and clients
    for block in servers:
        parse_server_config(block, "docs server example")
    for block in clients:
        parse_client_config(block, "docs client example")


def test_documentation_mentions_every_key() -> None:
    text = DOCS.read_text()
    for table, keys in SERVER_DEFAULTS.items():
        for key in keys:
            assert re.search(rf"`{key}`", text), f"[{table}] {key} undocumented"
    for key in (*CLIENT_DEFAULTS, "server", "name", "password", "address"):
        assert f"`{key}`" in text, f"{key} undocumented"
    assert "[[sites]]" in text
    for key in SITE_KEYS:
        assert f"`{key}`" in text, f"[[sites]] {key} undocumented"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('certificate = "c.pem"\n', "client.toml:3: [client] certificate: needs private_key"),
        ('private_key = "k.pem"\n', "client.toml:3: [client] private_key: needs certificate"),
        (
            'certificate = "c.pem"\nprivate_key = "k.pem"\n',
            "client.toml:3: [client] certificate: needs ca too",
        ),
    ],
)
def test_client_certificate_keys(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_client_config('[client]\nserver = "198.18.0.1"\n' + text, "client.toml")
    assert str(e.value).startswith(message)
    ok = parse_client_config(
        '[client]\nserver = "198.18.0.1"\ncertificate = "c.pem"\nprivate_key = "k.pem"\n'
        'ca = "ca.pem"\ncrl = "revoked.crl"\n'
    )
    assert (ok.client.certificate, ok.client.private_key, ok.client.ca, ok.client.crl) == (
        "c.pem", "k.pem", "ca.pem", ["revoked.crl"]
    )


# --- [[sites]] (site-to-site tunnels) ------------------------------------------------------

SITE_KEYS = ("name", "peer", "local", "remote", "initiate")
SITE_HEAD = '[ipsec]\nenabled = true\npsk = "k"\n\n'
SITE_OK = {
    "name": '"hq"',
    "peer": '"198.18.0.2"',
    "local": '["198.18.10.0/24"]',
    "remote": '["198.18.20.0/24", "198.18.21.0/24"]',
}


def _site(entry: dict[str, str]) -> str:
    return "[[sites]]\n" + "".join(f"{k} = {v}\n" for k, v in entry.items())


def test_sites_parse_with_defaults() -> None:
    config = parse_server_config(SITE_HEAD + _site(SITE_OK), "server.toml")
    (site,) = config.sites
    assert (site.name, site.peer, site.local, site.remote, site.initiate) == (
        "hq", "198.18.0.2", ["198.18.10.0/24"], ["198.18.20.0/24", "198.18.21.0/24"], False
    )
    assert config.ipsec.site_tun == "pyl2tp-s2s"
    assert parse_server_config("").sites == []
    both = SITE_HEAD + _site(SITE_OK) + _site(
        {**SITE_OK, "name": '"branch"', "peer": '"198.18.0.3"', "remote": '["198.18.30.0/24"]',
         "initiate": "true"}
    )
    assert [s.initiate for s in parse_server_config(both).sites] == [False, True]


SITE_BAD: list[tuple[str, str, str]] = [
    ("name", '""', "non-empty string"),
    ("peer", '"198.18.0"', "an IPv4 address"),
    ("peer", '"2001:2::1"', "an IPv4 address"),
    ("local", "[]", "non-empty list"),
    ("local", '["198.18.10.1/24"]', "item 1: expected an IPv4 network"),
    ("local", '["2001:2::/64"]', "item 1: expected an IPv4 network"),
    ("remote", '"198.18.20.0/24"', "a non-empty list"),
    ("remote", '["x"]', "item 1: expected an IPv4 network"),
    ("initiate", '"yes"', "true or false"),
]


def test_site_bad_values_cover_every_key() -> None:
    assert {k for k, _, _ in SITE_BAD} == set(SITE_KEYS)


@pytest.mark.parametrize(("key", "value", "fragment"), SITE_BAD)
def test_site_error_names_the_entry(key: str, value: str, fragment: str) -> None:
    entry = {**SITE_OK, "peer": '"198.18.0.3"', "remote": '["198.18.30.0/24"]', key: value}
    text = SITE_HEAD + _site(SITE_OK) + "\n" + _site(entry)
    # 4 lines of [ipsec], the first site (header and keys), a blank line, the header
    line = 4 + 1 + len(SITE_OK) + 1 + 1 + 1 + list(entry).index(key)
    message = server_error(text)
    assert message.startswith(f"server.toml:{line}: [[sites]] #2 {key}: "), message
    assert fragment in message


@pytest.mark.parametrize("key", ["name", "peer", "local", "remote"])
def test_site_required_keys(key: str) -> None:
    entry = {k: v for k, v in SITE_OK.items() if k != key}
    assert f"[[sites]] #1 {key}: missing (this key is required)" in server_error(
        SITE_HEAD + _site(entry)
    )


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        ({"peer": '"198.18.0.3"'}, 'name: site "hq" is defined twice'),
        ({"name": '"b"'}, 'peer: 198.18.0.2 is also the peer of site "hq"'),
        (
            {"name": '"b"', "peer": '"198.18.0.3"', "remote": '["198.18.20.128/25"]'},
            'remote: 198.18.20.128/25 overlaps 198.18.20.0/24, a remote network of site "hq"',
        ),
        (
            {"name": '"b"', "peer": '"198.18.0.3"', "remote": '["198.18.8.0/21"]'},
            "remote: 198.18.8.0/21 overlaps local network 198.18.10.0/24 of this site",
        ),
        (
            {"name": '"b"', "peer": '"198.18.0.3"',
             "remote": '["198.18.30.0/24", "198.18.30.0/23"]'},
            "remote: 198.18.30.0/23 overlaps 198.18.30.0/24, a remote network of this site",
        ),
    ],
)
def test_site_cross_checks(second: dict[str, str], expected: str) -> None:
    message = server_error(SITE_HEAD + _site(SITE_OK) + _site({**SITE_OK, **second}))
    assert "[[sites]] #2 " + expected in message, message


def test_sites_need_ipsec_and_an_array() -> None:
    assert "[[sites]] #1 name: a site needs [ipsec] enabled = true" in server_error(
        _site(SITE_OK)
    )
    assert "expected an array of tables ([[sites]])" in server_error(
        SITE_HEAD + '[sites]\nname = "x"\n'
    )
