"""Human-readable output for ``pyl2tp ctl``: durations, byte counts, tables, key: value lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "SESSION_COLUMNS",
    "TUNNEL_COLUMNS",
    "cell",
    "duration",
    "key_values",
    "size",
    "table",
]

TUNNEL_COLUMNS = ("tunnel_id", "peer_tunnel_id", "peer", "hostname", "sessions", "state")
SESSION_COLUMNS = (
    "tunnel_id",
    "session_id",
    "peer",
    "user",
    "address",
    "state",
    "uptime",
    "rx_bytes",
    "tx_bytes",
    "ipsec",
)

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def duration(seconds: float) -> str:
    """``3723`` -> ``"1h02m03s"``; days are shown as ``"2d03h04m05s"``."""
    s = int(seconds)
    if s < 0:
        return "-"
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m{s:02d}s"
    if hours:
        return f"{hours}h{minutes:02d}m{s:02d}s"
    if minutes:
        return f"{minutes}m{s:02d}s"
    return f"{s}s"


def size(count: float) -> str:
    """A byte count in binary units: ``512 B``, ``1.5 KiB``, ``3.0 GiB``."""
    if count < 1024:
        return f"{int(count)} B"
    value = float(count)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    return f"{value:.1f} {unit}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cell(key: str, value: Any) -> str:
    """Format one value for a table cell or a status line, chosen by its key."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if _is_number(value):
        if key == "uptime" or key.endswith(("_uptime", "_age")):
            return duration(value)
        if key == "bytes" or key.endswith("_bytes"):
            return size(value)
        return f"{value:g}" if isinstance(value, float) else str(value)
    if isinstance(value, Mapping):
        return "/".join(cell(str(k), v) for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        return ",".join(cell(key, v) for v in value) or "-"
    return str(value)


HEADERS = {
    "tunnel_id": "TUNNEL",
    "peer_tunnel_id": "PEER TUNNEL",
    "session_id": "SESSION",
    "peer_session_id": "PEER SESSION",
    "rx_bytes": "RX",
    "tx_bytes": "TX",
}


def _header(key: str) -> str:
    return HEADERS.get(key) or key.upper().replace("_", " ")


def _extra_columns(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    known = set(columns)
    extra: list[str] = []
    for row in rows:
        for key in row:
            if key not in known:
                known.add(key)
                extra.append(key)
    return extra


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """An aligned text table: ``columns`` first, then any other keys the rows carry.

    Headers are the keys in capitals (shortened per ``HEADERS``); numeric columns are
    right-aligned.
    """
    keys = [*columns, *_extra_columns(rows, columns)]
    cells = [[cell(k, row.get(k)) for k in keys] for row in rows]
    numeric = [
        any(_is_number(row.get(k)) for row in rows)
        and all(row.get(k) is None or _is_number(row.get(k)) for row in rows)
        for k in keys
    ]
    lines = [[_header(k) for k in keys], *cells]
    widths = [max(len(line[i]) for line in lines) for i in range(len(keys))]
    out = []
    for line in lines:
        parts = [
            text.rjust(w) if right else text.ljust(w)
            for text, w, right in zip(line, widths, numeric, strict=True)
        ]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)


def key_values(result: Mapping[str, Any], prefix: str = "") -> str:
    """``key: value`` lines; nested objects become ``outer.inner: value``."""
    lines: list[str] = []
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            lines.append(key_values(value, f"{name}."))
        else:
            lines.append(f"{name}: {cell(str(key), value)}")
    return "\n".join(lines)
