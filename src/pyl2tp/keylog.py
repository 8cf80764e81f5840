"""The key-log file: IKEv1 and ESP keys in the form tshark's decryption tables take.

Off by default; ``[debug] keylog = "path"`` or the ``PYL2TP_KEYLOG`` environment variable
turns it on, with a loud warning at start-up (anyone who reads the file can decrypt the
traffic). Each line is ``<uat table>:<record>``, so ``tshark -o uat:<line>`` takes it as
it is (tshark 4.0, peers/tshark/README.md)::

    esp_sa:"IPv4","198.18.0.1","198.18.0.2","0x0000c001","AES-CBC [RFC3602]","0x..",
           "HMAC-SHA-1-96 [RFC2404]","0x.."                 (one line in the file)
    ikev1_decryption_table:12a8be1f308ca10c,00cee13e75f8d00f4be739b6c43e3540

Lines starting with ``#`` are comments. Logs never carry keys; only this file does.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TextIO

from pyl2tp.esp.sa import ESPParams

__all__ = [
    "ENV_VAR",
    "ESP_AUTH_NAMES",
    "ESP_ENC_NAMES",
    "KeyLog",
    "esp_sa_record",
    "ikev1_record",
    "tshark_options",
]

log = logging.getLogger("pyl2tp.keylog")

ENV_VAR = "PYL2TP_KEYLOG"
ESP_TABLE = "esp_sa"
IKEV1_TABLE = "ikev1_decryption_table"

# tshark 4.0 names of our ESP transforms (each checked with -o, peers/tshark/README.md).
ESP_ENC_NAMES = {
    "aes-cbc": "AES-CBC [RFC3602]",
    "3des-cbc": "TripleDES-CBC [RFC2451]",
    "aes-gcm-16": "AES-GCM with 16 octet ICV [RFC4106]",  # key includes the 4-byte salt
}
ESP_AUTH_NAMES = {
    "null": "NULL",
    "hmac-md5-96": "HMAC-MD5-96 [RFC2403]",
    "hmac-sha1-96": "HMAC-SHA-1-96 [RFC2404]",
    "hmac-sha256-128": "HMAC-SHA-256-128 [RFC4868]",
    "hmac-sha384-192": "HMAC-SHA-384-192 [RFC4868]",
    "hmac-sha512-256": "HMAC-SHA-512-256 [RFC4868]",
}
ESP_PREFERENCES = ("esp.enable_encryption_decode:TRUE", "esp.enable_authentication_check:TRUE")


def esp_sa_record(src: str, dst: str, spi: int, enc: str, enc_key: bytes, auth: str,
                  auth_key: bytes) -> str:
    """One ``esp_sa`` UAT record: 8 quoted fields; an empty address becomes ``*``."""
    family = "IPv6" if ":" in src or ":" in dst else "IPv4"
    auth_hex = "0x" + auth_key.hex() if auth_key else ""
    fields = (family, src or "*", dst or "*", f"0x{spi:08x}", ESP_ENC_NAMES[enc],
              "0x" + enc_key.hex(), ESP_AUTH_NAMES[auth], auth_hex)
    return ",".join(f'"{f}"' for f in fields)


def ikev1_record(icookie: bytes, enc_key: bytes) -> str:
    """One ``ikev1_decryption_table`` record: initiator cookie and key, unquoted hex."""
    if len(icookie) != 8:
        raise ValueError(f"IKEv1 initiator cookie must be 8 bytes, not {len(icookie)}")
    return f"{icookie.hex()},{enc_key.hex()}"


class KeyLog:
    """An open key-log file (mode 0600, appended to, flushed after every line)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
            self._file: TextIO | None = os.fdopen(fd, "a", encoding="ascii")
        except BaseException:
            os.close(fd)
            raise
        self._failed = False

    @classmethod
    def from_env_or_config(cls, path: str | os.PathLike[str] | None,
                           environ: Mapping[str, str] | None = None) -> KeyLog | None:
        """The key log asked for by ``PYL2TP_KEYLOG`` (which wins) or the config; else None.

        Logs a WARNING when it is enabled.
        """
        env = (os.environ if environ is None else environ).get(ENV_VAR, "")
        chosen = env or path
        if not chosen:
            return None
        keylog = cls(chosen)
        source = ENV_VAR if env else "[debug] keylog"
        log.warning("KEY LOG ENABLED (%s): IKE and ESP keys of every SA are written to %s; "
                    "anyone who can read it can decrypt the traffic. Turn it off outside "
                    "debugging.", source, keylog.path)
        return keylog

    def _write(self, line: str) -> None:
        if self._file is None:
            return
        try:
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:  # debugging aid only: never take the daemon down
            if not self._failed:
                log.warning("key log %s: write failed: %s", self.path, exc)
                self._failed = True

    def comment(self, text: str) -> None:
        """A ``#`` line (e.g. which tunnel the next SAs belong to). Never put keys here."""
        self._write("# " + text.replace("\n", " "))

    def esp(self, params: ESPParams, *, inbound: bool) -> None:
        """The ``esp_sa`` line of one direction; ``params.local``/``peer`` are the outer IPs."""
        src, dst = (params.peer, params.local) if inbound else (params.local, params.peer)
        self._write(f"{ESP_TABLE}:" + esp_sa_record(src, dst, params.spi, params.enc,
                                                    params.enc_key, params.auth,
                                                    params.auth_key))

    def esp_pair(self, inbound: ESPParams, outbound: ESPParams) -> None:
        """Both directions of a Quick Mode SA bundle."""
        self.esp(inbound, inbound=True)
        self.esp(outbound, inbound=False)

    def ikev1(self, icookie: bytes, enc_key: bytes) -> None:
        """The ``ikev1_decryption_table`` line of an IKE SA (its encryption key, "Ka")."""
        self._write(f"{IKEV1_TABLE}:" + ikev1_record(icookie, enc_key))

    def close(self) -> None:
        """Close the file; later writes are ignored."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> KeyLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def tshark_options(keylog_path: str | os.PathLike[str]) -> list[str]:
    """``-o`` arguments that make tshark decrypt with every key in the file.

    ESP lines also turn on ESP decryption and ICV checking. Unknown lines are skipped.
    """
    options: list[str] = []
    have_esp = False
    for raw in Path(keylog_path).read_text(encoding="ascii").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        table, _, record = line.partition(":")
        if table in (ESP_TABLE, IKEV1_TABLE) and record:
            options += ["-o", f"uat:{line}"]
            have_esp = have_esp or table == ESP_TABLE
    if have_esp:
        options = [arg for pref in ESP_PREFERENCES for arg in ("-o", pref)] + options
    return options
