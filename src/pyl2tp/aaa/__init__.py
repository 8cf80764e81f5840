"""pyl2tp.aaa: users (TOML, chap-secrets) and address pools."""

from .pool import AddressPool, PrefixPool
from .users import UserDB, UserEntry, parse_chap_secrets

__all__ = ["AddressPool", "PrefixPool", "UserDB", "UserEntry", "parse_chap_secrets"]
