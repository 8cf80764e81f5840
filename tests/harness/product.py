"""Our own server (LNS) and client (LAC) as processes in a test namespace.

Runs ``pyl2tp server|client -c <role>.toml`` from the venv that runs pytest, logs to
``<workdir>/<role>.log`` and talks to it through ``pyl2tp ctl -s SOCKET ... --json``.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from .netns import Netns, wait_for

__all__ = ["ProductProcess", "assert_no_traceback", "pyl2tp_bin"]

TRACEBACK_MARK = "Traceback (most recent call last)"


def pyl2tp_bin() -> str:
    """The `pyl2tp` entry point of the venv running the tests."""
    return str(Path(sys.executable).with_name("pyl2tp"))


def assert_no_traceback(log_text: str) -> None:
    """Fail, quoting the log around it, if a Python traceback was logged."""
    at = log_text.find(TRACEBACK_MARK)
    if at >= 0:
        raise AssertionError(f"traceback in log:\n{log_text[max(0, at - 500):at + 3000]}")


class CtlError(RuntimeError):
    """`pyl2tp ctl` failed; the message carries its exit status and stderr."""


class ProductProcess:
    """One pyl2tp server or client in `ns`, configured by `config_text` (TOML)."""

    # Which place of --json the CLI accepts: after the command (DESIGN.md) or before it.
    _json_first: ClassVar[bool | None] = None

    def __init__(self, ns: Netns, role: Literal["server", "client"], config_text: str,
                 workdir: Path) -> None:
        if role not in ("server", "client"):
            raise ValueError(f"role must be server or client, not {role!r}")
        self.ns = ns
        self.role = role
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.workdir / f"{role}.toml"
        self.log_path = self.workdir / f"{role}.log"
        config = tomllib.loads(config_text)
        socket_path = config.get(role, {}).get("control_socket")
        if not isinstance(socket_path, str):
            raise ValueError(f"the [{role}] table needs control_socket for the harness")
        self.control_socket = socket_path
        self.config_path.write_text(config_text)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.role} not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once the process ended, else None."""
        return None if self._proc is None else self._proc.poll()

    def start(self, wait_socket: bool = True, timeout: float = 15) -> None:
        """Start the process; by default wait until the control socket answers `status`."""
        if self._proc is not None:
            raise RuntimeError(f"{self.role} already started")
        Path(self.control_socket).unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = self.ns.popen([pyl2tp_bin(), self.role, "-c", str(self.config_path)],
                                       stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT)
        if wait_socket:
            wait_for(self._answers, timeout, interval=0.1,
                     what=f"pyl2tp {self.role} control socket {self.control_socket}")

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"pyl2tp {self.role} exited with {self._proc.returncode}:\n"
                               f"{self.log_text()[-3000:]}")
        if not Path(self.control_socket).exists():
            return False
        try:
            self.ctl("status")
        except (CtlError, subprocess.TimeoutExpired):
            return False
        return True

    def _ctl_argv(self, command: str, args: tuple[str, ...], json_first: bool) -> list[str]:
        head = [pyl2tp_bin(), "ctl", "-s", self.control_socket]
        if json_first:
            return [*head, "--json", command, *args]
        return [*head, command, *args, "--json"]

    def ctl(self, command: str, *args: str) -> Any:
        """Run `pyl2tp ctl -s SOCK COMMAND ARGS --json` in the namespace; parsed JSON."""
        order = [False, True] if ProductProcess._json_first is None else \
            [ProductProcess._json_first]
        res: subprocess.CompletedProcess[str] | None = None
        for json_first in order:
            res = self.ns.run(self._ctl_argv(command, args, json_first), check=False,
                              timeout=15)
            usage_error = res.returncode == 2 and "usage:" in res.stderr
            if not usage_error:
                if res.returncode == 0:
                    ProductProcess._json_first = json_first
                break
        assert res is not None
        if res.returncode != 0:
            raise CtlError(f"pyl2tp ctl {command} {' '.join(args)} failed ({res.returncode}): "
                           f"{res.stderr.strip()}")
        text = res.stdout.strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CtlError(f"pyl2tp ctl {command}: not JSON: {text[:500]!r}") from exc

    def tunnels(self) -> list[dict[str, Any]]:
        """`ctl tunnels`: tunnel_id, peer_tunnel_id, peer, hostname, sessions, state..."""
        result: list[dict[str, Any]] = self.ctl("tunnels")
        return result

    def sessions(self) -> list[dict[str, Any]]:
        """`ctl sessions`: tunnel_id, session_id, peer, user, address, state, uptime..."""
        result: list[dict[str, Any]] = self.ctl("sessions")
        return result

    def log_text(self) -> str:
        """Everything the process wrote to stderr/stdout so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10) -> int | None:
        """Send `sig`, wait up to `timeout` (then SIGKILL); the exit status (None: not run)."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._proc.returncode

    def kill(self) -> None:
        """SIGKILL the process (by PID) and reap it."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
