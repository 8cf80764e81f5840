"""Users from [[users]] and pppd-style chap-secrets files."""

from __future__ import annotations

from ipaddress import IPv4Address
from pathlib import Path

import pytest

from pyl2tp.aaa.users import UserDB, UserEntry, parse_chap_secrets
from pyl2tp.config import User
from pyl2tp.errors import ConfigError

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

SECRETS = r"""
# Secrets for authentication using CHAP
# client        server  secret                  IP addresses
alice           *       "s3cret"                198.18.100.5
"bob smith"     *       'pass word'             *
carol           lns1    carolpw                 -
carol           *       ignored-for-lns1
dave            lns2    davepw
CORP\\erin      *       erinpw   # trailing comment
frank           *       "with \"quote\" inside"
*               lns1    guestpw
"""


def test_parse_quotes_wildcards_comments_addresses() -> None:
    entries = {e.name: e for e in parse_chap_secrets(SECRETS, "chap-secrets", "lns1")}
    assert set(entries) == {"alice", "bob smith", "carol", "CORP\\erin", "frank", "*"}
    assert entries["alice"] == UserEntry("alice", "s3cret", IPv4Address("198.18.100.5"))
    assert entries["bob smith"] == UserEntry("bob smith", "pass word", None)
    # The line naming our server beats the wildcard line for the same client (pppd).
    assert entries["carol"] == UserEntry("carol", "carolpw", None)
    assert entries["CORP\\erin"].password == "erinpw"
    assert entries["frank"].password == 'with "quote" inside'
    assert entries["*"].password == "guestpw"


def test_only_matching_server_lines_apply() -> None:
    entries = {e.name: e for e in parse_chap_secrets(SECRETS, "f", "lns2")}
    assert entries["dave"].password == "davepw"
    assert entries["carol"].password == "ignored-for-lns1"
    assert "*" not in entries
    wildcard_only = {e.name for e in parse_chap_secrets(SECRETS, "f")}
    assert "dave" not in wildcard_only and "carol" in wildcard_only


def test_password_is_not_in_repr() -> None:
    assert "s3cret" not in repr(UserEntry("alice", "s3cret"))


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("alice *\n", 1, "expected 'client server secret"),
        ("# ok\n\nalice * 'unterminated\n", 3, "unterminated ' quote"),
        ("alice * pw 198.18.0.0/24\n", 1, "unsupported address '198.18.0.0/24'"),
        ("alice * pw somehost\n", 1, "unsupported address 'somehost'"),
        ("alice * pw 198.18.0.1 198.18.0.2\n", 1, "more than one address"),
        ("alice * pw\nbob * x\nalice * other\n", 3, "already defined on line 1"),
        ("alice * @/etc/secret\n", 1, "@path"),
        ("alice * pw\\", 1, "backslash at the end"),
        ("a * x 198.18.0.9\nb * y 198.18.0.9\n", 2, "also given to 'a' on line 1"),
        ('"" * pw\n', 1, "empty client name"),
    ],
)
def test_bad_lines_name_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_chap_secrets(text, "/etc/ppp/chap-secrets")
    message = str(info.value)
    assert message.startswith(f"/etc/ppp/chap-secrets:{line}:")
    assert fragment in message


def test_address_forms() -> None:
    text = "a * x 198.18.1.1/32\nb * y * \nc * z - \n"
    entries = {e.name: e.address for e in parse_chap_secrets(text, "f")}
    assert entries == {"a": IPv4Address("198.18.1.1"), "b": None, "c": None}


def test_lookup_exact_then_bare_then_wildcard() -> None:
    db = UserDB(
        [
            UserEntry("alice", "a"),
            UserEntry("alice@vpn", "special"),
            UserEntry("CORP\\bob", "b1"),
            UserEntry("bob", "b2"),
        ]
    )
    assert db.credentials("alice") == "a"
    assert db.credentials("alice@vpn") == "special"  # exact first
    assert db.credentials("alice@other") == "a"  # then the bare name
    assert db.credentials("CORP\\alice") == "a"
    assert db.credentials("CORP\\bob") == "b1"
    assert db.credentials("OTHER\\bob") == "b2"
    assert db.credentials("mallory") is None
    assert db.lookup("") is None
    assert len(db) == 4 and "bob" in db
    with_wildcard = UserDB([UserEntry("alice", "a"), UserEntry("*", "guest")])
    assert with_wildcard.credentials("anyone") == "guest"
    assert with_wildcard.credentials("alice") == "a"


def test_from_config_merges_toml_and_file(tmp_path: Path) -> None:
    path = tmp_path / "chap-secrets"
    path.write_text("alice * filepw\nbob * bobpw 198.18.100.7\n* lns1 guest\n", encoding="utf-8")
    users = [User(name="alice", password="tomlpw", address="198.18.100.5")]
    db = UserDB.from_config(users, path, server_name="lns1")
    assert db.credentials("alice") == "tomlpw"  # [[users]] wins over the file
    assert db.lookup("alice") == UserEntry("alice", "tomlpw", IPv4Address("198.18.100.5"))
    assert db.lookup("bob") == UserEntry("bob", "bobpw", IPv4Address("198.18.100.7"))
    assert db.credentials("stranger") == "guest"
    assert db.fixed_addresses() == {IPv4Address("198.18.100.5"), IPv4Address("198.18.100.7")}
    assert {e.name for e in db} == {"alice", "bob", "*"}


def test_from_config_without_file() -> None:
    db = UserDB.from_config([User(name="a", password="p")])
    assert len(db) == 1 and db.lookup("a") == UserEntry("a", "p", None)


def test_from_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read chap-secrets"):
        UserDB.from_config([], tmp_path / "missing")
    path = tmp_path / "chap-secrets"
    path.write_text("bob * pw 198.18.100.5\n", encoding="utf-8")
    users = [User(name="alice", password="p", address="198.18.100.5")]
    with pytest.raises(ConfigError, match="also given to 'alice'"):
        UserDB.from_config(users, path)
    path.write_text("ok * pw\nbroken\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"chap-secrets:2:"):
        UserDB.from_config([], path)
