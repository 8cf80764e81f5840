"""Value checks and key locating for :mod:`pyl2tp.config`.

A check takes a value decoded by ``tomllib`` and returns it normalised, or raises
:class:`Invalid` saying what was expected. :class:`Doc` finds the line of a key in the text
(``tomllib`` gives no positions) and builds :class:`~pyl2tp.errors.ConfigError` messages.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from pyl2tp.errors import ConfigError

Check = Callable[[Any], Any]


class Invalid(Exception):
    """A value failed its check; the message says what was expected."""


def show(value: Any) -> str:
    """Render a TOML value for an error message (strings quoted, booleans as TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        text = "[" + ", ".join(show(v) for v in value[:5]) + (", ...]" if len(value) > 5 else "]")
        return text
    return str(value)


def fail(expected: str, value: Any) -> Invalid:
    """The error for a value that is not what ``expected`` describes."""
    return Invalid(f"expected {expected}, got {show(value)}")


# --- value checks: each returns the normalised value or raises Invalid -------------------


def _bounds(lo: float | None, hi: float | None, gt: bool) -> str:
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    if lo is not None:
        return f"{'>' if gt else '>='} {lo:g}"
    return f"<= {hi:g}" if hi is not None else ""


def number(ge: float = 0.0, *, gt: bool = False, le: float | None = None) -> Check:
    """A finite int or float (stored as float), ``>= ge`` (``> ge`` with gt) and ``<= le``."""
    desc = f"a number {_bounds(ge, le, gt)}"

    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise fail(desc, v)
        if (v <= ge if gt else v < ge) or (le is not None and v > le):
            raise fail(desc, v)
        return float(v)

    return check


def integer(lo: int, hi: int | None = None) -> Check:
    """An integer in ``lo..hi`` (inclusive)."""
    desc = f"an integer {_bounds(lo, hi, False)}"

    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise fail(desc, v)
        return v

    return check


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise fail("true or false", v)
    return v


def string(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise fail("a non-empty string", v)
    return v


def choice(options: tuple[str, ...]) -> Check:
    """One of ``options`` (case-insensitive; stored in lower case)."""
    desc = "one of " + ", ".join(json.dumps(o) for o in options)

    def check(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in options:
            raise fail(desc, v)
        return v.lower()

    return check


def address(version: int | None = None) -> Check:
    """An IP address (of one version if given), stored in its canonical text form."""
    desc = f"an IPv{version} address" if version else "an IP address"

    def check(v: Any) -> str:
        try:
            addr = ipaddress.ip_address(v) if isinstance(v, str) else None
        except ValueError:
            addr = None
        if addr is None or (version is not None and addr.version != version):
            raise fail(desc, v)
        return str(addr)

    return check


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def host(v: Any) -> str:
    """An IP address or a DNS name (resolved by the client when it connects)."""
    if isinstance(v, str):
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            name = v[:-1] if v.endswith(".") else v
            if 0 < len(name) <= 253 and all(_LABEL.match(p) for p in name.split(".")):
                return v
    raise fail("an IP address or a host name", v)


def route(v: Any) -> str:
    """``"default"`` or a network in CIDR form (host bits allowed, then cleared)."""
    if isinstance(v, str):
        if v.lower() == "default":
            return "default"
        try:
            return str(ipaddress.ip_network(v, strict=False))
        except ValueError:
            pass
    raise fail('"default" or a network like "198.18.100.0/24"', v)


def ipv6_network(v: Any) -> str:
    """An IPv6 network in CIDR form, /64 or shorter (it is cut into /64 session prefixes)."""
    desc = 'an IPv6 network of /64 or shorter, like "2001:2::/48"'
    try:
        net = ipaddress.IPv6Network(v) if isinstance(v, str) else None
    except ValueError:
        net = None
    if net is None or net.prefixlen > 64:
        raise fail(desc, v)
    return str(net)


def ifname(v: Any) -> str:
    """A network interface name: 1-15 characters, no slash or space."""
    if isinstance(v, str) and 0 < len(v) <= 15 and not re.search(r"[/\s]", v):
        return v
    raise fail("an interface name of 1 to 15 characters", v)


def ifname_or_empty(v: Any) -> str:
    """An interface name, or "" to let the kernel choose one."""
    return "" if v == "" else ifname(v)


def ipv4_range(v: Any) -> str:
    """``"a-b"``: two IPv4 addresses with a <= b."""
    desc = 'a range "a-b" of two IPv4 addresses with a <= b'
    if not isinstance(v, str) or v.count("-") != 1:
        raise fail(desc, v)
    try:
        lo, hi = (ipaddress.IPv4Address(p.strip()) for p in v.split("-"))
    except ValueError:
        raise fail(desc, v) from None
    if lo > hi:
        raise fail(desc, v)
    return f"{lo}-{hi}"


def list_of(item: Check, *, nonempty: bool = False, unique: bool = True) -> Check:
    """A TOML array whose items each pass ``item``."""

    def check(v: Any) -> list[Any]:
        if not isinstance(v, list):
            raise fail("a list" if not nonempty else "a non-empty list", v)
        if nonempty and not v:
            raise Invalid("expected a non-empty list, got []")
        out: list[Any] = []
        for i, x in enumerate(v, 1):
            try:
                value = item(x)
            except Invalid as exc:
                raise Invalid(f"item {i}: {exc}") from None
            if unique and value in out:
                raise Invalid(f"item {i}: {show(x)} is listed twice")
            out.append(value)
        return out

    return check


def one_or_list(item: Check) -> Check:
    """A single value or a non-empty list of values; always stored as a list."""
    many = list_of(item, nonempty=True)

    def check(v: Any) -> list[Any]:
        out: list[Any] = many(v if isinstance(v, list) else [v])
        return out

    return check


# --- locating keys in the text and reporting ------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*\]\]?\s*(?:#.*)?$")


def hint(word: str, choices: list[str], table: bool = False) -> str:
    """A ``(did you mean "x"?)`` (or ``[x]`` for a table) suffix for a misspelt name, or ``""``."""
    close = difflib.get_close_matches(word, choices, n=1)
    if not close:
        return ""
    return f" (did you mean {f'[{close[0]}]' if table else json.dumps(close[0])}?)"


class Doc:
    """The text of one configuration, for finding line numbers and building errors."""

    def __init__(self, source: str, text: str, flags: Mapping[tuple[str, str], str] = {}) -> None:
        self.source = source
        self.lines = text.splitlines()
        self.flags = flags  # (table, key) -> "--flag" for values given on the command line
        self.headers: list[tuple[int, str, bool]] = []  # (line index, name, is array)
        for i, line in enumerate(self.lines):
            m = _HEADER.match(line)
            if m:
                name = ".".join(p.strip().strip("\"'") for p in m.group(2).split("."))
                self.headers.append((i, name, m.group(1) == "[["))

    def _span(self, table: str, index: int | None) -> tuple[int, int] | None:
        seen = -1
        for n, (start, name, is_array) in enumerate(self.headers):
            if name == table and (index is None or is_array):
                seen += 1
                if index is None or seen == index:
                    end = self.headers[n + 1][0] if n + 1 < len(self.headers) else len(self.lines)
                    return start, end
        return None

    def line_of(self, table: str | None, key: str | None, index: int | None = None) -> int | None:
        """1-based line of ``key`` in ``table`` (or of the table header), best effort."""
        span = self._span(table, index) if table else None
        if key is None:
            return span[0] + 1 if span else None
        k = re.escape(key)
        assign = re.compile(rf"^\s*(?:{k}|\"{k}\"|'{k}')\s*[=.]")
        top_end = self.headers[0][0] if self.headers else len(self.lines)
        if span is not None:
            for i in range(span[0] + 1, span[1]):
                if assign.match(self.lines[i]):
                    return i + 1
        full = f"{table}.{key}" if table else key
        for start, name, _ in self.headers:
            if name == full:
                return start + 1
        if table:  # dotted keys or inline tables before the first header
            t = re.escape(table)
            dotted = re.compile(rf"^\s*{t}\s*\.\s*{k}\s*=|^\s*{t}\s*=.*\b{k}\b")
            for i in range(top_end):
                if dotted.match(self.lines[i]):
                    return i + 1
        if table is None:
            for i in range(top_end):
                if assign.match(self.lines[i]):
                    return i + 1
        return span[0] + 1 if span else None

    def error(
        self, table: str, key: str | None, message: str, index: int | None = None
    ) -> ConfigError:
        """``file:line: [table] key: message`` (or the command-line flag that set the key)."""
        label = f"[[{table}]] #{index + 1}" if index is not None else f"[{table}]"
        if key is not None and (table, key) in self.flags:
            return ConfigError(f"command line: {self.flags[table, key]} ({label} {key}): {message}")
        line = self.line_of(table, key, index)
        if line is None and key is None:  # e.g. ``l2tp = 5`` where a table belongs
            line = self.line_of(None, table)
        where = f"{self.source}:{line}" if line else self.source
        return ConfigError(f"{where}: {label}{' ' + key if key else ''}: {message}")
