"""Shared pieces of the L2TP/IPsec integration tests: configs, the IPsec line, counters,
and tshark checks of a capture decrypted with the server's key log.

The server writes every IKE and ESP key to a key-log file (`[debug] keylog`), and
`pyl2tp.keylog.tshark_options` turns it into tshark `-o` arguments; the checks here run
tshark with and without them. Addresses come only from 198.18.0.0/15.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyl2tp.keylog import tshark_options
from tests.harness.netns import Netns, wait_for
from tests.harness.product import ProductProcess
from tests.integration.ppp_env import (
    POOL_NET,
    SERVER_IP,
    Connected,
    User,
    addresses,
    client_toml,
    routes,
    server_toml,
    wait_connected,
)

__all__ = [
    "IPSEC_UP",
    "PSK",
    "IPsecUp",
    "esp_stats",
    "ike_stats",
    "ipsec_client_toml",
    "ipsec_server_toml",
    "ipsec_status",
    "keyed_fields",
    "keyed_problems",
    "plain_fields",
    "wait_ipsec_up",
    "wait_up",
]

PSK = "it-pre-shared-key"

#: what the client prints when its ESP SA is installed (src/pyl2tp/client.py)
IPSEC_UP = re.compile(
    r"^IPsec up: (?P<enc>[\w-]+)(?:/(?P<auth>[\w-]+))? (?P<mode>\w+)(?P<udp> in UDP 4500)?$",
    re.MULTILINE,
)
ROOT_WARNING = "This could be dangerous"
WARNING = 0x600000  # tshark 4.0 expert severity "warning"
SEP = "\t"
OCC = "\x1f"


@dataclass(frozen=True, slots=True)
class IPsecUp:
    """The client's `IPsec up:` line, parsed."""

    enc: str
    auth: str  # "null" for AEAD (the line then names the cipher alone)
    mode: str
    udp_encap: bool


def _toml(value: object) -> str:
    return json.dumps(value)


def _table(name: str, keys: Mapping[str, object]) -> str:
    body = "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items() if v is not None)
    return f"[{name}]\n{body}"


def ipsec_server_toml(
    work: Path,
    users: Sequence[User],
    *,
    psk: str = PSK,
    require: bool = True,
    keylog: Path | None = None,
    ipsec: Mapping[str, object] | None = None,
    tun: str = "pyl2tp0",
    listen: Sequence[str] = (SERVER_IP,),
    l2tp: Mapping[str, object] | None = None,
    ppp: Mapping[str, object] | None = None,
) -> str:
    """`ppp_env.server_toml` plus `[ipsec]` (enabled, psk, require) and `[debug] keylog`."""
    text = server_toml(work, users, listen=listen, tun=tun, l2tp=l2tp, ppp=ppp)
    keys: dict[str, object] = {"enabled": True, "psk": psk, "require": require}
    keys.update(ipsec or {})
    text += _table("ipsec", keys)
    if keylog is not None:
        text += _table("debug", {"keylog": str(keylog)})
    return text


def ipsec_client_toml(
    work: Path,
    user: str,
    password: str,
    *,
    psk: str | None = PSK,
    tun: str = "",
    keylog: Path | None = None,
    socket_name: str = "client.sock",
    extra: Mapping[str, object] | None = None,
    server: str = SERVER_IP,
) -> str:
    """`ppp_env.client_toml` with `psk` (None: plain L2TP) and an optional `[debug] keylog`."""
    keys: dict[str, object] = {"psk": psk, "control_socket": str(work / socket_name)}
    keys.update(extra or {})
    keys = {k: v for k, v in keys.items() if v is not None}
    text = client_toml(work, user, password, server=server, tun=tun, extra=keys)
    if keylog is not None:
        text += _table("debug", {"keylog": str(keylog)})
    return text


def ipsec_up(client: ProductProcess) -> IPsecUp | None:
    """The latest `IPsec up:` line of the client (None: not yet)."""
    found = list(IPSEC_UP.finditer(client.log_text()))
    if not found:
        return None
    m = found[-1]
    return IPsecUp(m["enc"], m["auth"] or "null", m["mode"], m["udp"] is not None)


def wait_ipsec_up(client: ProductProcess, timeout: float = 30) -> IPsecUp:
    """Wait for the client's `IPsec up:` line; fails early if the client exits."""

    def up() -> IPsecUp | None:
        now = ipsec_up(client)
        if now is None and client.returncode is not None:
            raise AssertionError(f"client exited with {client.returncode} before IPsec was up:"
                                 f"\n{client.log_text()[-3000:]}")
        return now

    found = wait_for(up, timeout, interval=0.1, what=f"'IPsec up:' in {client.log_path}")
    assert found is not None
    return found


def wait_up(client: ProductProcess, ns: Netns, tun: str, timeout: float = 40) -> Connected:
    """The client's `connected:` line, then its TUN address and its route to the pool
    (the line comes before the device is configured)."""
    conn = wait_connected(client, timeout)
    wait_for(lambda: addresses(ns, tun) == [conn.address], 10,
             what=f"{conn.address} on the client's TUN {tun}")
    wait_for(lambda: any(r.get("dst") == POOL_NET and r.get("dev") == tun for r in routes(ns)),
             10, what=f"a route to {POOL_NET} via {tun}")
    return conn


def ipsec_status(server: ProductProcess) -> dict[str, Any]:
    """`ctl status` ipsec: {sas, esp, ike}."""
    status: dict[str, Any] = server.ctl("status")["ipsec"]
    assert status is not None, "the server runs without IPsec"
    return status


def esp_stats(server: ProductProcess) -> dict[str, int]:
    """The ESP data path counters of the server."""
    result: dict[str, int] = ipsec_status(server)["esp"]
    return result


def ike_stats(server: ProductProcess) -> dict[str, int]:
    """The IKE counters of the server."""
    result: dict[str, int] = ipsec_status(server)["ike"]
    return result


# -- tshark with the key log ----------------------------------------------------------------


def _tshark(pcap: Path, options: Sequence[str], args: Sequence[str]) -> str:
    argv = ["tshark", "-n", "-r", str(pcap), *options, *args]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "LC_ALL": "C"})
    if res.returncode != 0:
        errors = "\n".join(x for x in res.stderr.splitlines() if ROOT_WARNING not in x)
        raise RuntimeError(f"tshark failed ({res.returncode}) on {pcap}: {errors}")
    return res.stdout


def _rows(pcap: Path, options: Sequence[str], fields: Sequence[str],
          display_filter: str) -> list[list[list[str]]]:
    args = ["-T", "fields", "-E", f"separator={SEP}", "-E", "occurrence=a",
            "-E", f"aggregator={OCC}", "-Y", display_filter]
    for name in fields:
        args += ["-e", name]
    rows = []
    for line in _tshark(pcap, options, args).splitlines():
        cols = line.split(SEP)
        cols += [""] * (len(fields) - len(cols))
        rows.append([col.split(OCC) if col else [] for col in cols])
    return rows


def keyed_fields(pcap: Path, keylog: Path, fields: Sequence[str],
                 display_filter: str) -> list[list[str]]:
    """tshark fields (occurrences joined by ",") of `pcap` decrypted with `keylog`."""
    return [[",".join(col) for col in row]
            for row in _rows(pcap, tshark_options(keylog), fields, display_filter)]


def plain_fields(pcap: Path, fields: Sequence[str], display_filter: str) -> list[list[str]]:
    """tshark fields of `pcap` without any key (what an eavesdropper sees)."""
    return [[",".join(col) for col in row] for row in _rows(pcap, [], fields, display_filter)]


def keyed_problems(pcap: Path, keylog: Path, *, src: str | None = None) -> list[str]:
    """`tshark_problems` of a capture decrypted with `keylog`: malformed packets, expert
    warnings or worse, an L2TP Length unlike the (inner) UDP payload, ESP that did not
    decrypt or authenticate. [] means clean."""
    options = tshark_options(keylog)
    base = f"(ip.src == {src}) && " if src else ""
    problems: list[str] = []
    for number, info, messages, severities, malformed in _rows(
            pcap, options,
            ["frame.number", "_ws.col.Info", "_ws.expert.message", "_ws.expert.severity",
             "_ws.malformed"],
            f"{base}(_ws.malformed || _ws.expert.severity >= warning)"):
        found = [m for m, s in zip(messages, severities, strict=False) if _severity(s) >= WARNING]
        if malformed and not any("Malformed" in m for m in found):
            found.append("malformed packet")
        problems.append(f"frame {number[0]}: {''.join(info)}: {'; '.join(found) or 'flagged'}")
    # tshark ignores bytes after the L2TP Length silently. The UDP header that carries L2TP
    # is the last one before it in the stack (ESP in UDP has one outside, and the PPP
    # payload may hold UDP of its own further in).
    for number, protocols, lengths, udp_lengths in _rows(
            pcap, options, ["frame.number", "frame.protocols", "l2tp.length", "udp.length"],
            f"{base}l2tp.length"):
        stack = protocols[0].split(":") if protocols else []
        carriers = stack[:stack.index("l2tp")].count("udp") if "l2tp" in stack else 0
        if not lengths or not 0 < carriers <= len(udp_lengths):
            continue
        payload = int(udp_lengths[carriers - 1]) - 8
        if int(lengths[0]) != payload:
            problems.append(f"frame {number[0]}: L2TP Length {lengths[0]} but UDP payload "
                            f"{payload} bytes")
    # Every ESP packet must decrypt (an inner protocol under esp) with a good ICV.
    for number, protocols, good in _rows(
            pcap, options, ["frame.number", "frame.protocols", "esp.icv_good"], f"{base}esp"):
        stack = protocols[0].split(":") if protocols else []
        inner = stack[stack.index("esp") + 1:] if "esp" in stack else []
        if not inner or inner[0] == "data":
            problems.append(f"frame {number[0]}: ESP not decrypted ({':'.join(stack)})")
        elif good and good[-1] not in ("1", "True"):
            problems.append(f"frame {number[0]}: ESP ICV not good")
    return problems


def _severity(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return 0
