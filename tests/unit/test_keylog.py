"""The key-log file: formats tshark takes, mode 0600, PYL2TP_KEYLOG, the start-up warning."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from pyl2tp.esp import ESPParams
from pyl2tp.keylog import ENV_VAR, KeyLog, esp_sa_record, ikev1_record, tshark_options

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

ENC_KEY = bytes(range(16))
AUTH_KEY = bytes(range(100, 120))


def cbc_params(**kw: object) -> ESPParams:
    base: dict[str, object] = {"spi": 0xC0DE0001, "enc": "aes-cbc", "enc_key": ENC_KEY,
                               "auth": "hmac-sha1-96", "auth_key": AUTH_KEY,
                               "mode": "transport", "local": "198.18.0.1",
                               "peer": "198.18.0.2"}
    return ESPParams(**{**base, **kw})  # type: ignore[arg-type]


def test_esp_lines_per_direction(tmp_path: Path) -> None:
    path = tmp_path / "k"
    with KeyLog(path) as log:
        log.esp_pair(cbc_params(spi=0x1111), cbc_params(spi=0x2222))
    lines = path.read_text().splitlines()
    assert lines == [
        'esp_sa:"IPv4","198.18.0.2","198.18.0.1","0x00001111","AES-CBC [RFC3602]",'
        f'"0x{ENC_KEY.hex()}","HMAC-SHA-1-96 [RFC2404]","0x{AUTH_KEY.hex()}"',
        'esp_sa:"IPv4","198.18.0.1","198.18.0.2","0x00002222","AES-CBC [RFC3602]",'
        f'"0x{ENC_KEY.hex()}","HMAC-SHA-1-96 [RFC2404]","0x{AUTH_KEY.hex()}"',
    ]


def test_record_formats() -> None:
    gcm_key = bytes(range(36))  # AES-256 key + 4-byte salt: tshark wants both
    assert esp_sa_record("", "", 0x01020304, "aes-gcm-16", gcm_key, "null", b"") == (
        f'"IPv4","*","*","0x01020304","AES-GCM with 16 octet ICV [RFC4106]","0x{gcm_key.hex()}",'
        '"NULL",""')
    v6 = esp_sa_record("2001:2::1", "2001:2::2", 0xFFFFFFFF, "3des-cbc", bytes(24),
                       "hmac-sha512-256", bytes(64))
    assert v6.startswith('"IPv6","2001:2::1","2001:2::2","0xffffffff","TripleDES-CBC [RFC2451]"')
    assert '"HMAC-SHA-512-256 [RFC4868]"' in v6
    for auth, name in (("hmac-md5-96", "HMAC-MD5-96 [RFC2403]"),
                       ("hmac-sha256-128", "HMAC-SHA-256-128 [RFC4868]"),
                       ("hmac-sha384-192", "HMAC-SHA-384-192 [RFC4868]")):
        assert f'"{name}"' in esp_sa_record("a", "b", 1, "aes-cbc", ENC_KEY, auth, b"\x01")
    # tshark: two unquoted hex fields (quoting them is refused).
    assert ikev1_record(bytes.fromhex("12a8be1f308ca10c"), b"\x00\xce\xe1") == \
        "12a8be1f308ca10c,00cee1"
    with pytest.raises(ValueError):
        ikev1_record(b"short", b"key")


def test_file_mode_0600_and_append(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text("# old\n")
    path.chmod(0o644)
    with KeyLog(path) as log:
        log.ikev1(bytes(8), bytes(16))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines() == ["# old", f"ikev1_decryption_table:{'0' * 16},"
                                             f"{'0' * 32}"]
    fresh = tmp_path / "new"
    KeyLog(fresh).close()
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600


def test_writes_after_close_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "k"
    log = KeyLog(path)
    log.close()
    log.esp(cbc_params(), inbound=True)  # must not raise
    assert path.read_text() == ""


def test_from_env_or_config(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pyl2tp.keylog")
    assert KeyLog.from_env_or_config(None, environ={}) is None
    assert KeyLog.from_env_or_config("", environ={ENV_VAR: ""}) is None
    assert not caplog.records

    cfg = tmp_path / "from-config"
    log = KeyLog.from_env_or_config(str(cfg), environ={})
    assert log is not None and log.path == cfg
    log.esp(cbc_params(), inbound=False)
    log.close()
    assert cfg.exists() and stat.S_IMODE(cfg.stat().st_mode) == 0o600

    env = tmp_path / "from-env"
    log = KeyLog.from_env_or_config(str(cfg), environ={ENV_VAR: str(env)})
    assert log is not None and log.path == env  # the environment wins
    log.close()

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "KEY LOG ENABLED" in warnings[0].getMessage() and str(cfg) in warnings[0].getMessage()
    assert ENV_VAR in warnings[1].getMessage() and str(env) in warnings[1].getMessage()
    # Logs never carry keys.
    assert ENC_KEY.hex() not in caplog.text and AUTH_KEY.hex() not in caplog.text


def test_env_var_is_read_from_the_process_environment(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "env"))
    log = KeyLog.from_env_or_config(None)
    assert log is not None and log.path == tmp_path / "env"
    log.close()
    monkeypatch.delenv(ENV_VAR)
    assert KeyLog.from_env_or_config(None) is None


def test_tshark_options(tmp_path: Path) -> None:
    path = tmp_path / "k"
    with KeyLog(path) as log:
        log.comment("tunnel 7\nsession 3")  # one line, whatever the text
        log.ikev1(bytes.fromhex("0102030405060708"), b"\xaa" * 16)
        log.esp(cbc_params(), inbound=True)
    with path.open("a") as f:
        f.write("\nsomething else\nunknown_table:1,2\n")
    opts = tshark_options(path)
    assert opts == [
        "-o", "esp.enable_encryption_decode:TRUE",
        "-o", "esp.enable_authentication_check:TRUE",
        "-o", f"uat:ikev1_decryption_table:0102030405060708,{'aa' * 16}",
        "-o", "uat:" + path.read_text().splitlines()[2],
    ]
    assert path.read_text().splitlines()[0] == "# tunnel 7 session 3"
    only_ike = tmp_path / "ike"
    with KeyLog(only_ike) as log:
        log.ikev1(bytes(8), bytes(16))
    assert tshark_options(only_ike) == ["-o", f"uat:ikev1_decryption_table:{'0' * 16},{'0' * 32}"]


def test_keylog_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert ENV_VAR not in os.environ
    assert KeyLog.from_env_or_config(None) is None
