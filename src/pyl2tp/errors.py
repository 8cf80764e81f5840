"""Exceptions shared by every layer."""

from __future__ import annotations


class ParseError(ValueError):
    """Raised by codecs for input that does not parse; says what and where."""

    def __init__(self, what: str, offset: int | None = None) -> None:
        self.what = what
        self.offset = offset
        super().__init__(what if offset is None else f"{what} (at offset {offset})")


class ConfigError(ValueError):
    """A configuration problem, naming the file, key and line where known."""
