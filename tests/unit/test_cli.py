"""Unit tests for the ``pyl2tp`` command line: formatting, ctl, and the daemon subcommands."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyl2tp import cli, fmt
from pyl2tp.config import ClientConfig, ServerConfig
from pyl2tp.control import CommandError, ControlServer, Handler

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

TUNNELS = [
    {
        "tunnel_id": 1234,
        "peer_tunnel_id": 7,
        "peer": "198.18.0.2:1701",
        "hostname": "lac1",
        "sessions": 2,
        "state": "established",
    },
    {
        "tunnel_id": 9,
        "peer_tunnel_id": 40001,
        "peer": "198.18.0.3:50000",
        "hostname": None,
        "sessions": 0,
        "state": "wait-ctl-conn",
        "retransmits": 3,
    },
]

SESSIONS = [
    {
        "tunnel_id": 1234,
        "session_id": 1,
        "peer": "198.18.0.2:1701",
        "user": "alice",
        "address": "198.18.100.10",
        "state": "established",
        "uptime": 3723.4,
        "rx_bytes": 1536,
        "tx_bytes": 512,
        "ipsec": None,
    },
    {
        "tunnel_id": 1234,
        "session_id": 22,
        "peer": "198.18.0.2:1701",
        "user": None,
        "address": None,
        "state": "wait-connect",
        "uptime": 5,
        "rx_bytes": 3 * 1024**3,
        "tx_bytes": 0,
        "ipsec": {"encr": "aes-cbc-128", "integ": "hmac-sha1"},
    },
]

STATUS = {
    "version": "0.1.0",
    "uptime": 90061,
    "tunnels": 2,
    "sessions": 2,
    "listen": ["198.18.0.1:1701"],
    "ipsec": {"enabled": False, "sas": 0},
}


# --- formatting helpers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (59.9, "59s"),
        (62, "1m02s"),
        (3600, "1h00m00s"),
        (3723, "1h02m03s"),
        (90061, "1d01h01m01s"),
        (-1, "-"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (5 * 1024**2, "5.0 MiB"),
        (3 * 1024**3, "3.0 GiB"),
        (2 * 1024**4, "2.0 TiB"),
        (1024**6, "1024.0 PiB"),
    ],
)
def test_size(count: int, text: str) -> None:
    assert fmt.size(count) == text


def test_cell_by_key_and_type() -> None:
    assert fmt.cell("uptime", 62) == "1m02s"
    assert fmt.cell("rx_bytes", 2048) == "2.0 KiB"
    assert fmt.cell("sessions", 2048) == "2048"
    assert fmt.cell("ipsec", None) == "-"
    assert fmt.cell("ipsec", {"encr": "aes", "integ": "sha1"}) == "aes/sha1"
    assert fmt.cell("x", True) == "yes"
    assert fmt.cell("x", 0.25) == "0.25"
    assert fmt.cell("listen", ["a", "b"]) == "a,b"


def test_tunnel_table() -> None:
    text = cli.render("tunnels", TUNNELS)
    assert text.splitlines() == [
        "TUNNEL  PEER TUNNEL  PEER              HOSTNAME  SESSIONS  STATE          RETRANSMITS",
        "  1234            7  198.18.0.2:1701   lac1             2  established              -",
        "     9        40001  198.18.0.3:50000  -                0  wait-ctl-conn            3",
    ]


def test_session_table() -> None:
    lines = cli.render("sessions", SESSIONS).splitlines()
    header = lines[0].split()
    assert header == [
        "TUNNEL",
        "SESSION",
        "PEER",
        "USER",
        "ADDRESS",
        "STATE",
        "UPTIME",
        "RX",
        "TX",
        "IPSEC",
    ]
    assert lines[0].index("UPTIME") > lines[0].index("STATE")
    assert "1h02m03s" in lines[1] and "1.5 KiB" in lines[1] and "512 B" in lines[1]
    assert lines[2].split()[:5] == ["1234", "22", "198.18.0.2:1701", "-", "-"]
    assert "3.0 GiB" in lines[2] and "aes-cbc-128/hmac-sha1" in lines[2]
    # columns are aligned: every column of every line starts at the header's offset
    start = lines[0].index("PEER")
    assert all(line[start:].startswith("198.18.0.2:1701") for line in lines[1:])
    assert lines[0].index("IPSEC") == len(lines[1]) - 1  # "-" under IPSEC, left-aligned


def test_empty_tables_and_other_results() -> None:
    assert cli.render("tunnels", []) == "no tunnels"
    assert cli.render("sessions", []) == "no sessions"
    assert cli.render("reload", None) == "ok"
    assert cli.render("disconnect", {"disconnected": 1}) == "disconnected: 1"
    assert cli.render("status", STATUS).splitlines() == [
        "version: 0.1.0",
        "uptime: 1d01h01m01s",
        "tunnels: 2",
        "sessions: 2",
        "listen: 198.18.0.1:1701",
        "ipsec.enabled: no",
        "ipsec.sas: 0",
    ]


# --- ctl against a ControlServer in a background loop ---------------------------------------


class Daemon:
    """A ControlServer running in its own thread and event loop, recording requests."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(self.path, self._handlers())
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def _handlers(self) -> dict[str, Handler]:
        def reply(name: str, value: Any) -> Handler:
            async def handler(args: dict[str, Any]) -> Any:
                self.requests.append((name, args))
                return value

            return handler

        async def disconnect(args: dict[str, Any]) -> Any:
            self.requests.append(("disconnect", args))
            if args.get("tunnel_id") == 99:
                raise CommandError("no tunnel 99")
            return None

        return {
            "status": reply("status", STATUS),
            "tunnels": reply("tunnels", TUNNELS),
            "sessions": reply("sessions", SESSIONS),
            "reload": reply("reload", None),
            "disconnect": disconnect,
        }

    def __enter__(self) -> Daemon:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(5)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with Daemon(tmp_path / "ctl.sock") as d:
        yield d


def test_ctl_tables(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ctl", "-s", daemon.path, "tunnels"]) == 0
    out = capsys.readouterr().out
    assert out == cli.render("tunnels", TUNNELS) + "\n"
    assert cli.main(["ctl", "-s", daemon.path, "sessions"]) == 0
    assert "alice" in capsys.readouterr().out
    assert cli.main(["ctl", "--socket", daemon.path, "status"]) == 0
    assert "uptime: 1d01h01m01s\n" in capsys.readouterr().out
    assert [name for name, _ in daemon.requests] == ["tunnels", "sessions", "status"]


def test_ctl_json(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ctl", "-s", daemon.path, "--json", "sessions"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == SESSIONS
    assert out.startswith('[\n  {\n    "tunnel_id": 1234,')  # indent 2
    # options after the command work too (DESIGN: `ctl -s SOCKET sessions --json`)
    assert cli.main(["ctl", "tunnels", "-s", daemon.path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == TUNNELS


def test_ctl_disconnect_and_reload(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ctl", "-s", daemon.path, "disconnect", "tunnel", "1234"]) == 0
    assert cli.main(["ctl", "-s", daemon.path, "disconnect", "session", "1234", "22"]) == 0
    assert cli.main(["ctl", "-s", daemon.path, "reload"]) == 0
    assert capsys.readouterr().out == "ok\nok\nok\n"
    assert daemon.requests == [
        ("disconnect", {"tunnel_id": 1234}),
        ("disconnect", {"tunnel_id": 1234, "session_id": 22}),
        ("reload", {}),
    ]


def test_ctl_error_reply_exits_1(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["ctl", "-s", daemon.path, "disconnect", "tunnel", "99"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert daemon.path in captured.err
    assert "no tunnel 99" in captured.err


def test_ctl_missing_socket_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "none.sock")
    assert cli.main(["ctl", "-s", path, "status"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"pyl2tp ctl: {path}: no such socket")


@pytest.mark.parametrize(
    "argv",
    [
        ["ctl"],
        ["ctl", "bogus"],
        ["ctl", "disconnect"],
        ["ctl", "disconnect", "tunnel"],
        ["ctl", "disconnect", "tunnel", "0"],
        ["ctl", "disconnect", "tunnel", "65536"],
        ["ctl", "disconnect", "session", "1"],
        ["server"],
    ],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2


def test_no_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage: pyl2tp" in capsys.readouterr().err


def test_python_dash_m(tmp_path: Path) -> None:
    sock = str(tmp_path / "none.sock")
    proc = subprocess.run(
        [sys.executable, "-m", "pyl2tp", "ctl", "-s", sock, "status"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.returncode == 1
    assert sock in proc.stderr


# --- server, client, demo (the daemons are stand-ins) -------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    module = types.ModuleType(f"pyl2tp.{name}")
    for key, value in attrs.items():
        setattr(module, key, value)
    monkeypatch.setitem(sys.modules, f"pyl2tp.{name}", module)


@pytest.mark.usefixtures("restore_logging")
def test_server_runs_with_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ServerConfig] = []

    async def run_server(config: ServerConfig) -> int:
        seen.append(config)
        logging.getLogger("pyl2tp.l2tp").debug("debug line")
        return 3

    fake_module(monkeypatch, "server", run_server=run_server)
    path = tmp_path / "server.toml"
    path.write_text('[server]\nlisten = ["198.18.0.1"]\nlog_level = "warning"\n')
    assert cli.main(["server", "-c", str(path)]) == 3
    assert seen[0].server.listen == ["198.18.0.1"]
    assert logging.getLogger().level == logging.WARNING
    assert cli.main(["server", "-c", str(path), "-v"]) == 3
    assert logging.getLogger().level == logging.DEBUG


def test_server_config_error_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run_server(config: ServerConfig) -> int:
        raise AssertionError("must not run")

    fake_module(monkeypatch, "server", run_server=run_server)
    path = tmp_path / "server.toml"
    path.write_text('[l2tp]\n\nhello_interval = "x"\n')
    assert cli.main(["server", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f'pyl2tp: {path}:3: [l2tp] hello_interval: expected a number >= 0, got "x"\n'


@pytest.mark.usefixtures("restore_logging")
def test_client_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[ClientConfig] = []

    async def run_client(config: ClientConfig) -> int:
        seen.append(config)
        return 0

    fake_module(monkeypatch, "client", run_client=run_client)
    argv = ["client", "--server", "198.18.0.1", "--user", "u", "--password", "p", "--psk", "k"]
    argv += ["--secret", "s", "--auth", "pap", "--auth", "chap", "--route", "default"]
    argv += ["--tunnels", "3", "--no-reconnect", "--link", "echo"]
    assert cli.main(argv) == 0
    c = seen[0].client
    assert (c.server, c.user, c.password, c.psk, c.secret) == ("198.18.0.1", "u", "p", "k", "s")
    assert c.auth == ["pap", "chap"] and c.routes == ["default"]
    assert c.tunnels == 3 and c.reconnect is False and seen[0].debug.link == "echo"


def test_client_errors_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["client", "--user", "u"]) == 2
    assert "--server" in capsys.readouterr().err
    assert cli.main(["client", "--server", "198.18.0.1", "--tunnels", "0"]) == 2
    assert "--tunnels" in capsys.readouterr().err
    assert cli.main(["client", "-c", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err


def test_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_module(monkeypatch, "demo", main=lambda: 4)
    assert cli.main(["demo"]) == 4


def test_log_format(restore_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    cli.setup_logging("info")
    logging.getLogger("pyl2tp.l2tp").info("tunnel %d peer %s: established", 1234, "198.18.0.2:1701")
    logging.getLogger("pyl2tp.l2tp").debug("hidden")
    line = stream.getvalue()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO pyl2tp\.l2tp: "
        r"tunnel 1234 peer 198\.18\.0\.2:1701: established\n",
        line,
    ), line
