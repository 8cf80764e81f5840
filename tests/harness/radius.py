"""FreeRADIUS as a real RADIUS server inside a test's network namespace.

The stock Debian configuration (/etc/freeradius/3.0) is copied into the test's work
directory and adjusted there: the test's users go first in ``mods-config/files/authorize``,
``clients.conf`` holds one client (127.0.0.1 with the test's secret), the listeners bind
loopback only and proxying is off. The host's files are never touched.
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Self

from .netns import Netns

__all__ = ["FreeRadius", "PeerError", "stop_pid"]

STOCK_RADDB = Path("/etc/freeradius/3.0")
AUTH_PORT = 1812

# A user added to every instance so start() can tell "answers" from "rejects everyone".
_PROBE_USER = "harness-probe"


class PeerError(RuntimeError):
    """A real peer did not start, did not answer, or misbehaved."""


def stop_pid(proc: subprocess.Popen[bytes], signals: Sequence[tuple[int, float]]) -> None:
    """Send each (signal, grace seconds) in turn to one process until it exits, then SIGKILL."""
    for sig, grace in signals:
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def _quote(value: str) -> str:
    """A double-quoted FreeRADIUS string."""
    if "\n" in value or "\r" in value:
        raise ValueError("newline in a RADIUS users-file value")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def users_file(users: Sequence[tuple[str, str, str | None]]) -> str:
    """Entries for ``mods-config/files/authorize``: name, Cleartext-Password, Framed-IP."""
    out: list[str] = []
    for name, password, address in users:
        out.append(f"{_quote(name)}\tCleartext-Password := {_quote(password)}")
        if address is not None:
            out.append(f"\tFramed-IP-Address = {address}")
        out.append("")
    return "\n".join(out) + "\n"


def _sub_all(pattern: str, repl: str, text: str, what: str) -> str:
    new, count = re.subn(pattern, repl, text, flags=re.MULTILINE)
    if count == 0:
        raise PeerError(f"FreeRADIUS stock config changed: no {what} to rewrite")
    return new


class FreeRadius:
    """``freeradius -X`` with a private configuration, on 127.0.0.1 inside ``ns``."""

    address = "127.0.0.1"
    port = AUTH_PORT

    def __init__(
        self,
        ns: Netns,
        workdir: Path,
        users: Sequence[tuple[str, str, str | None]],
        secret: str = "testing123",
    ) -> None:
        self.ns = ns
        self.workdir = Path(workdir)
        self.users = list(users)
        self.secret = secret
        self.raddb = self.workdir / "raddb"
        self.log_path = self.workdir / "radius.log"
        self._probe_password = secrets.token_hex(8)
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running freeradius, or None."""
        return self._proc.pid if self._proc is not None else None

    def _write_config(self) -> None:
        if self.raddb.exists():
            shutil.rmtree(self.raddb)
        shutil.copytree(STOCK_RADDB, self.raddb, symlinks=True)
        authorize = self.raddb / "mods-config" / "files" / "authorize"
        stock = (STOCK_RADDB / "mods-config" / "files" / "authorize").read_text()
        entries = [*self.users, (_PROBE_USER, self._probe_password, None)]
        authorize.write_text(users_file(entries) + stock)
        (self.raddb / "clients.conf").write_text(
            "client localhost {\n"
            f"\tipaddr = {self.address}\n"
            "\tproto = *\n"
            f"\tsecret = {_quote(self.secret)}\n"
            "\trequire_message_authenticator = no\n"
            "\tnas_type = other\n"
            "}\n"
        )
        # Listeners: loopback of the namespace only (the stock file binds every address).
        site = (STOCK_RADDB / "sites-available" / "default").read_text()
        site = _sub_all(r"^(\s*)ipaddr = \*", rf"\1ipaddr = {self.address}", site, "ipaddr *")
        site = _sub_all(r"^(\s*)ipv6addr = ::(?=\s|$)", r"\1ipv6addr = ::1", site, "ipv6addr ::")
        enabled = self.raddb / "sites-enabled" / "default"
        enabled.unlink(missing_ok=True)
        enabled.write_text(site)
        conf = (self.raddb / "radiusd.conf").read_text()
        conf = _sub_all(r"^proxy_requests\s*=\s*yes", "proxy_requests = no", conf, "proxy")
        # Rejects answer at once: tests of wrong passwords need not wait a second.
        conf = _sub_all(r"^(\s*)reject_delay = \d+", r"\1reject_delay = 0", conf, "reject_delay")
        # Stay root: the work directory (pytest's tmp_path) is not readable by freerad.
        conf = _sub_all(r"^(\s*)(user|group) = freerad", r"\1# \2 = freerad", conf, "user")
        (self.raddb / "radiusd.conf").write_text(conf)

    def start(self, timeout: float = 20) -> None:
        """Start freeradius and wait until it accepts the probe user."""
        if self._proc is not None:
            raise PeerError("FreeRADIUS already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._log = self.log_path.open("wb")
        self._proc = self.ns.popen(
            ["freeradius", "-X", "-d", str(self.raddb)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise PeerError(
                    f"freeradius exited with {self._proc.returncode}:\n{self.log_text()[-3000:]}"
                )
            if self.answers(self._probe_user()):
                return
            if time.monotonic() > deadline:
                raise PeerError(f"freeradius not answering after {timeout} s")
            time.sleep(0.1)

    def _probe_user(self) -> tuple[str, str]:
        return _PROBE_USER, self._probe_password

    def answers(self, user: tuple[str, str]) -> bool:
        """True when an Access-Request for (name, password), sent from ns, is accepted."""
        if "Ready to process requests" not in self.log_text():
            return False
        name, password = user
        request = f"User-Name = {_quote(name)}, User-Password = {_quote(password)}\n"
        done = self.ns.run(
            [
                "radclient", "-r", "1", "-t", "1",
                f"{self.address}:{self.port}", "auth", self.secret,
            ],
            check=False,
            timeout=10,
            input=request,
        )
        return "Received Access-Accept" in done.stdout

    def log_text(self) -> str:
        """The ``freeradius -X`` output so far (test credentials appear in it)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL, by PID."""
        if self._proc is not None:
            stop_pid(self._proc, [(signal.SIGTERM, 5.0)])
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
