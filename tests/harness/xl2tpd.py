"""xl2tpd as a real L2TP peer (LNS or LAC) in a test namespace, with a stand-in pppd.

xl2tpd execs /usr/sbin/pppd for every session; real pppd cannot run here (no /dev/ppp), so
xl2tpd runs in a private mount namespace where a wrapper running `fakepppd.py` is
bind-mounted over /usr/sbin/pppd (the host's file is untouched). The stand-in relays PPP
frames to this object over an AF_UNIX datagram socket in the work directory: a filesystem
socket crosses network namespaces, so the test process in the host namespace can talk to a
stand-in that lives in the test's namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Literal

from .netns import Netns, check_address, stop_process, wait_for

__all__ = ["Xl2tpd"]

FAKEPPPD = Path(__file__).with_name("fakepppd.py")
PPPD_PATH = "/usr/sbin/pppd"
# xl2tpd-control writes its reply file there (peers/xl2tpd/README.md).
XL2TPD_RUN_DIR = Path("/var/run/xl2tpd")
SUN_PATH_MAX = 107

LNS_CONF = """\
[global]
listen-addr = {listen}
port = {port}
auth file = {secrets}
debug avp = yes
debug state = yes
debug tunnel = yes

[lns default]
ip range = {ip_range}
local ip = {local_ip}
require chap = yes
refuse pap = yes
require authentication = yes
name = {hostname}
hostname = {hostname}
length bit = yes
challenge = {challenge}
"""

LAC_CONF = """\
[global]
listen-addr = {listen}
port = {port}
auth file = {secrets}
debug avp = yes
debug state = yes
debug tunnel = yes

[lac {lac_name}]
lns = {lns}
name = {hostname}
hostname = {hostname}
length bit = yes
autodial = no
redial = no
challenge = {challenge}
"""


class Xl2tpd:
    """One xl2tpd (LNS or LAC) in `ns`, its files in `workdir`, PPP bridged to the test."""

    LAC_NAME = "pl"

    def __init__(self, ns: Netns, workdir: Path, *, role: Literal["lns", "lac"], listen: str,
                 port: int = 1701, secret: str | None = None, challenge: bool = False,
                 lns: str | None = None, local_ip: str = "198.18.30.1",
                 ip_range: str = "198.18.30.10-198.18.30.20", hostname: str = "xl2tpd",
                 pppd_mode: str = "bridge") -> None:
        if role == "lac" and not lns:
            raise ValueError("a LAC needs lns='ip:port'")
        check_address(listen)
        self.ns = ns
        self.workdir = Path(workdir)
        self.role = role
        self.listen = listen
        self.port = port
        self.secret = secret
        self.challenge = challenge
        self.lns = lns
        self.local_ip = local_ip
        self.ip_range = ip_range
        self.hostname = hostname
        self.pppd_mode = pppd_mode
        self.conf_path = self.workdir / "xl2tpd.conf"
        self.secrets_path = self.workdir / "l2tp-secrets"
        self.ctl_path = self.workdir / "xl2tpd.ctl"
        self.pid_path = self.workdir / "xl2tpd.pid"
        self.log_path = self.workdir / "xl2tpd.log"
        self.pppd_log_path = self.workdir / "fakepppd.log"
        self.wrapper_path = self.workdir / "pppd-wrapper"
        self._sock_dir: Path | None = None
        self._tmp_sock_dir = False
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._frames: deque[bytes] = deque()
        self._hellos: deque[dict[str, Any]] = deque()
        self._exits: deque[dict[str, Any]] = deque()
        self._peer: str | None = None
        self.hellos_seen: list[dict[str, Any]] = []

    # -- lifecycle --------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """PID of xl2tpd itself (unshare and sh exec it)."""
        if self._proc is None:
            raise RuntimeError("xl2tpd not started")
        return self._proc.pid

    def _write_files(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        fields = {"listen": self.listen, "port": self.port, "secrets": self.secrets_path,
                  "ip_range": self.ip_range, "local_ip": self.local_ip,
                  "hostname": self.hostname, "lns": self.lns, "lac_name": self.LAC_NAME,
                  "challenge": "yes" if self.challenge else "no"}
        template = LNS_CONF if self.role == "lns" else LAC_CONF
        self.conf_path.write_text(template.format(**fields))
        # Format "<us> <them> <secret>", "*" a wildcard (peers/xl2tpd/README.md).
        self.secrets_path.write_text(f"* * {self.secret}\n" if self.secret else "")
        self.secrets_path.chmod(0o600)
        self.wrapper_path.write_text(
            "#!/bin/sh\n"
            f"exec {shlex.quote(sys.executable)} {shlex.quote(str(FAKEPPPD))} \"$@\"\n")
        self.wrapper_path.chmod(0o755)
        for path in (self.ctl_path, self.pid_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _open_bridge(self) -> str:
        sock_dir = self.workdir
        # Room for the stand-in's own "pppd-<pid>.sock" next to ours (sun_path limit).
        if len(str(sock_dir / "pppd-4194304.sock")) > SUN_PATH_MAX:
            sock_dir = Path(tempfile.mkdtemp(prefix="pl2-xl2tpd-"))
            self._tmp_sock_dir = True
        self._sock_dir = sock_dir
        path = sock_dir / "bridge.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return str(path)

    def start(self, timeout: float = 15) -> None:
        """Write conf and secrets, start xl2tpd, wait until its UDP socket is bound."""
        if self._proc is not None:
            raise RuntimeError("already started")
        self._write_files()
        bridge_path = self._open_bridge()
        XL2TPD_RUN_DIR.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYL2TP_FAKEPPPD_MODE=self.pppd_mode,
                   PYL2TP_FAKEPPPD_SOCK=bridge_path, PYL2TP_FAKEPPPD_TAG=self.role,
                   PYL2TP_FAKEPPPD_LOG=str(self.pppd_log_path))
        inner = (f"mount --bind {shlex.quote(str(self.wrapper_path))} {PPPD_PATH} && "
                 f"exec xl2tpd -D -c {shlex.quote(str(self.conf_path))} "
                 f"-s {shlex.quote(str(self.secrets_path))} "
                 f"-p {shlex.quote(str(self.pid_path))} -C {shlex.quote(str(self.ctl_path))}")
        with open(self.log_path, "ab") as log:
            self._proc = self.ns.popen(
                ["unshare", "-m", "--propagation", "private", "sh", "-c", inner],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout, interval=0.1,
                 what=f"xl2tpd {self.role} on {self.listen}:{self.port}")

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"xl2tpd exited with {self._proc.returncode}:\n"
                               f"{self.log_text()[-3000:]}")
        res = self.ns.run(["ss", "-H", "-uln"], check=False)
        bound = f"{self.listen}:{self.port} " in res.stdout
        return bound and self.ctl_path.exists()

    def stop(self) -> None:
        """Stop xl2tpd (SIGTERM; it SIGTERMs its pppd children) and close the bridge."""
        if self._proc is not None:
            stop_process(self._proc)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._sock_dir is not None:
            for path in self._sock_dir.glob("*.sock"):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if self._tmp_sock_dir:
                shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None

    def __enter__(self) -> Xl2tpd:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """xl2tpd's own log (stderr with -D) so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def pppd_log_text(self) -> str:
        """The stand-ins' log so far."""
        try:
            return self.pppd_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # -- LAC control ------------------------------------------------------------------
    def control(self, *args: str) -> str:
        """Run xl2tpd-control on our control FIFO; returns its output, raises on failure."""
        XL2TPD_RUN_DIR.mkdir(parents=True, exist_ok=True)
        res = self.ns.run(["xl2tpd-control", "-c", str(self.ctl_path), *args], check=False,
                          timeout=15)
        if res.returncode != 0:
            raise RuntimeError(f"xl2tpd-control {' '.join(args)} failed ({res.returncode}): "
                               f"{res.stdout}{res.stderr}")
        return res.stdout

    def connect(self, name: str = LAC_NAME) -> None:
        """LAC: open the tunnel and a session to the configured LNS."""
        self.control("connect-lac", name)

    def disconnect(self, name: str = LAC_NAME) -> None:
        """LAC: close the tunnel (xl2tpd sends StopCCN "Goodbye!")."""
        self.control("disconnect-lac", name)

    # -- the stand-in pppd bridge -----------------------------------------------------
    def _pump(self, deadline: float) -> bool:
        """Receive one bridge datagram before `deadline`; False on timeout."""
        if self._sock is None:
            raise RuntimeError("xl2tpd not started")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self._sock.settimeout(remaining)
        try:
            msg, src = self._sock.recvfrom(65536)
        except TimeoutError:
            return False
        kind, body = msg[:1], msg[1:]
        if kind == b"H":
            hello = json.loads(body)
            hello["addr"] = src
            self._peer = src
            self._hellos.append(hello)
            self.hellos_seen.append(hello)
        elif kind == b"F":
            self._frames.append(body)
        elif kind == b"X":
            info = json.loads(body)
            info["addr"] = src
            if src == self._peer:
                self._peer = None
            self._exits.append(info)
        return True

    def _wait_item(self, queue: deque[Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while not queue:
            if not self._pump(deadline):
                raise TimeoutError(f"no {what} from the {self.role} stand-in pppd "
                                   f"within {timeout:g}s")
        return queue.popleft()

    def wait_hello(self, timeout: float) -> dict[str, Any]:
        """Wait until xl2tpd started a stand-in pppd (the session is up); its hello.

        The hello holds "argv" (pppd's arguments as xl2tpd gave them), "pid",
        "caller_id", "tag" and "addr".
        """
        result: dict[str, Any] = self._wait_item(self._hellos, timeout, "hello")
        return result

    def wait_exit(self, timeout: float) -> dict[str, Any]:
        """Wait until a stand-in pppd exits; {"reason": ..., "addr": ...}."""
        result: dict[str, Any] = self._wait_item(self._exits, timeout, "exit")
        return result

    def recv_frame(self, timeout: float) -> bytes:
        """The next PPP frame xl2tpd handed to a stand-in (raises TimeoutError)."""
        result: bytes = self._wait_item(self._frames, timeout, "frame")
        return result

    def _send(self, msg: bytes) -> None:
        if self._sock is None:
            raise RuntimeError("xl2tpd not started")
        if self._peer is None:
            raise RuntimeError(f"no live stand-in pppd under the {self.role} xl2tpd")
        self._sock.sendto(msg, self._peer)

    def send_frame(self, frame: bytes) -> None:
        """Give a PPP frame to the latest stand-in; xl2tpd sends it as an L2TP data message."""
        self._send(b"F" + frame)

    def hangup(self) -> None:
        """Make the latest stand-in exit; xl2tpd then sends CDN for its session."""
        self._send(b"Q")
