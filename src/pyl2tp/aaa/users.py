"""Local users: the TOML ``[[users]]`` list and a pppd-style ``chap-secrets`` file.

The file format is pppd's (man pppd, "AUTHENTICATION"): one entry a line, ``client server
secret [address...]``; ``#`` starts a comment; words may be quoted with ``"`` or ``'`` to
hold spaces; a backslash escapes the next character (``DOMAIN\\\\user``). Only lines whose
server field is ``*`` or our server name apply; when both kinds name the same client, the
exact server name wins, as in pppd. A client of ``*`` matches any user name (the last
resort of :meth:`UserDB.lookup`). Addresses: one IPv4 address is that user's fixed
address; ``*`` or ``-`` (or none) means an address from the pool. Address lists, ranges
and host names, which pppd also knows, are refused with a :class:`ConfigError` rather than
silently ignored. A secret of the form ``@file`` is not read from a file: it is refused.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from pyl2tp.errors import ConfigError

__all__ = ["UserDB", "UserEntry", "parse_chap_secrets"]

_LOG = logging.getLogger("pyl2tp.aaa")

WILDCARD = "*"


@dataclass(slots=True, frozen=True)
class UserEntry:
    """One user: name, clear-text password, and a fixed address if the user has one."""

    name: str
    password: str = field(repr=False)
    address: IPv4Address | None = None


def _words(line: str, where: str) -> list[str]:
    """Split a chap-secrets line into words: quotes, backslash escapes, # comments."""
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote: str | None = None
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            if i + 1 >= len(line):
                raise ConfigError(f"{where}: backslash at the end of the line")
            word.append(line[i + 1])
            in_word = True
            i += 2
            continue
        if quote is not None:
            if ch == quote:
                quote = None
            else:
                word.append(ch)
        elif ch in "\"'":
            quote = ch
            in_word = True
        elif ch == "#":
            break
        elif ch.isspace():
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            word.append(ch)
            in_word = True
        i += 1
    if quote is not None:
        raise ConfigError(f"{where}: unterminated {quote} quote")
    if in_word:
        words.append("".join(word))
    return words


def _address(words: list[str], where: str) -> IPv4Address | None:
    fixed: IPv4Address | None = None
    for word in words:
        if word in ("*", "-"):
            continue
        try:
            addr = IPv4Address(word)
        except ValueError:
            try:
                net = IPv4Network(word)
            except ValueError:
                net = None
            if net is not None and net.prefixlen == 32:
                addr = net.network_address
            else:
                raise ConfigError(
                    f"{where}: unsupported address {word!r} (use one IPv4 address, * or -)"
                ) from None
        if fixed is not None:
            raise ConfigError(f"{where}: more than one address for a user")
        fixed = addr
    return fixed


def parse_chap_secrets(text: str, source: str, server_name: str = "*") -> list[UserEntry]:
    """Entries of a chap-secrets file that apply to ``server_name``; errors name the line.

    With ``server_name`` ``"*"`` only the lines whose server field is ``*`` apply.
    """
    chosen: dict[str, tuple[UserEntry, bool, int]] = {}  # name -> (entry, exact, line)
    addresses: dict[IPv4Address, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{source}:{number}"
        words = _words(line, where)
        if not words:
            continue
        if len(words) < 3:
            raise ConfigError(f"{where}: expected 'client server secret [address]'")
        client, server, secret = words[0], words[1], words[2]
        if not client:
            raise ConfigError(f"{where}: empty client name")
        if secret.startswith("@"):
            raise ConfigError(f"{where}: secrets read from a file (@path) are not supported")
        address = _address(words[3:], where)
        if server == WILDCARD:
            exact = False
        elif server == server_name:
            exact = True
        else:
            continue
        previous = chosen.get(client)
        if previous is not None:
            if previous[1] == exact:
                raise ConfigError(
                    f"{where}: user {client!r} is already defined on line {previous[2]}"
                )
            if previous[1]:
                continue  # an exact-server line beats a wildcard one (pppd)
        chosen[client] = (UserEntry(client, secret, address), exact, number)
    entries = [entry for entry, _, _ in chosen.values()]
    for entry, _, number in chosen.values():
        if entry.address is None:
            continue
        owner = addresses.get(entry.address)
        if owner is not None:
            raise ConfigError(
                f"{source}:{number}: address {entry.address} is also given to "
                f"{owner[0]!r} on line {owner[1]}"
            )
        addresses[entry.address] = (entry.name, number)
    return entries


class UserDB:
    """Users by name; the source of the ``credentials`` callable of the authenticators."""

    def __init__(self, entries: Iterable[UserEntry] = ()) -> None:
        self._users: dict[str, UserEntry] = {}
        for entry in entries:
            self._users.setdefault(entry.name, entry)

    @classmethod
    def from_config(
        cls,
        users: Iterable[Any],
        chap_secrets: str | Path | None = None,
        *,
        server_name: str = "*",
    ) -> UserDB:
        """Users from the config's ``[[users]]`` (name, password, address) plus the file.

        A name in both keeps the ``[[users]]`` entry. A fixed address given to two users
        is a :class:`ConfigError`.
        """
        entries: list[UserEntry] = []
        for user in users:
            raw = getattr(user, "address", None)
            try:
                address = IPv4Address(raw) if raw else None
            except ValueError as exc:
                raise ConfigError(f"users: {user.name!r}: bad address {raw!r}") from exc
            entries.append(UserEntry(str(user.name), str(user.password), address))
        db = cls(entries)
        if chap_secrets is not None:
            path = Path(chap_secrets)
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read chap-secrets: {exc}") from exc
            owners = {e.address: e.name for e in db._users.values() if e.address is not None}
            for entry in parse_chap_secrets(text, str(path), server_name):
                if entry.name in db._users:
                    _LOG.info("user %r: [[users]] overrides %s", entry.name, path)
                    continue
                if entry.address is not None and entry.address in owners:
                    raise ConfigError(
                        f"{path}: address {entry.address} of {entry.name!r} is also given "
                        f"to {owners[entry.address]!r} in [[users]]"
                    )
                db._users[entry.name] = entry
        return db

    def lookup(self, name: str) -> UserEntry | None:
        """The entry for ``name``: exact, then the bare name, then a ``*`` entry.

        The bare name drops a ``DOMAIN\\`` prefix and an ``@realm`` suffix, so Windows'
        ``DOMAIN\\alice`` and ``alice@vpn`` find ``alice``.
        """
        entry = self._users.get(name)
        if entry is not None:
            return entry
        bare = name.rpartition("\\")[2]
        if "@" in bare:
            bare = bare.rpartition("@")[0]
        if bare and bare != name:
            entry = self._users.get(bare)
            if entry is not None:
                return entry
        return self._users.get(WILDCARD)

    def credentials(self, name: str) -> str | None:
        """The password of ``name`` or None: the ``Credentials`` callable for auth."""
        entry = self.lookup(name)
        return None if entry is None else entry.password

    def fixed_addresses(self) -> set[IPv4Address]:
        """Every fixed address, to keep out of the dynamic pool."""
        return {e.address for e in self._users.values() if e.address is not None}

    def __len__(self) -> int:
        return len(self._users)

    def __iter__(self) -> Iterator[UserEntry]:
        return iter(self._users.values())

    def __contains__(self, name: object) -> bool:
        return name in self._users
