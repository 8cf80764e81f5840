"""l2tpns as a real LNS inside a test's network namespace.

l2tpns reads two hard-coded files, /etc/l2tpns/ip_pool and /etc/l2tpns/users. It runs under
``unshare --mount --propagation private`` with private copies bind-mounted over those paths,
so the host's files are never touched. It is a cluster node that ignores L2TP until it has
elected itself master; heartbeats go to multicast on ``lo`` of its own namespace, and the
election timeout is made short. It authenticates PPP only through RADIUS (``FreeRadius``).
"""

from __future__ import annotations

import ipaddress
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Self

from .netns import Netns, check_address
from .radius import FreeRadius, PeerError, stop_pid

__all__ = ["L2tpns", "pool_lines"]

MASTER_LINE = "I am declaring myself the master!"
TUN_NAME = "l2tpns0"

# Run inside the private mount namespace: $1 pool, $2 users, $3 config, $4 hostname.
_LAUNCH = (
    'mount --bind "$1" /etc/l2tpns/ip_pool && '
    'mount --bind "$2" /etc/l2tpns/users && '
    'exec l2tpns -c "$3" -h "$4"'
)


def pool_lines(pool: str) -> list[str]:
    """ip_pool lines for "a.b.c.d-a.b.c.e", a CIDR prefix or one address.

    l2tpns reads single addresses and CIDR prefixes but not ranges, so a range becomes
    the smallest list of prefixes covering it.
    """
    if "-" in pool:
        first_s, last_s = (part.strip() for part in pool.split("-", 1))
        first, last = ipaddress.IPv4Address(first_s), ipaddress.IPv4Address(last_s)
        if last < first:
            raise ValueError(f"empty address range {pool!r}")
        nets = ipaddress.summarize_address_range(first, last)
    else:
        nets = iter([ipaddress.IPv4Network(pool.strip(), strict=True)])
    return [str(n.network_address) if n.prefixlen == 32 else str(n) for n in nets]


def _conf_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if any(c in value for c in '"\n\r'):
        raise ValueError("l2tpns config strings cannot hold quotes or newlines")
    return f'"{value}"'


class L2tpns:
    """One l2tpns process bound to ``bind`` (UDP 1701) in ``ns``, using ``radius``."""

    def __init__(
        self,
        ns: Netns,
        workdir: Path,
        *,
        bind: str,
        secret: str | None,
        radius: FreeRadius,
        local_ip: str = "198.18.41.1",
        pool: str = "198.18.41.10-198.18.41.50",
        dns: tuple[str, str] = ("198.18.41.53", "198.18.41.54"),
        hostname: str = "l2tpns",
        options: Mapping[str, str | int | bool] | None = None,
    ) -> None:
        for address in (bind, local_ip, *dns, *pool.split("-")):
            check_address(address.split("/")[0].strip())  # test ranges only
        self.ns = ns
        self.workdir = Path(workdir)
        self.bind = bind
        self.secret = secret
        self.radius = radius
        self.local_ip = local_ip
        self.pool = pool
        self.dns = dns
        self.hostname = hostname
        self.options = dict(options or {})
        self.config_path = self.workdir / "startup-config"
        self.log_path = self.workdir / "l2tpns.log"
        self.stderr_path = self.workdir / "l2tpns.stderr"
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running l2tpns, or None."""
        return self._proc.pid if self._proc is not None else None

    def config_text(self) -> str:
        """The startup-config (``set name value`` lines; see startup-config(5))."""
        settings: dict[str, str | int | bool] = {
            "debug": 5,  # every packet and each LCP/IPCP/RADIUS step, for diagnosis
            "log_file": str(self.log_path),
            "pid_file": str(self.workdir / "l2tpns.pid"),
            "bind_address": self.bind,
            "iftun_address": self.local_ip,
            "peer_address": self.local_ip,
            "tundevicename": TUN_NAME,
            "primary_dns": self.dns[0],
            "secondary_dns": self.dns[1],
            "primary_radius": self.radius.address,
            "primary_radius_port": self.radius.port,
            "radius_secret": self.radius.secret,
            "radius_authtypes": "chap,pap",
            "radius_accounting": False,
            "cli_bind_address": "127.0.0.1",
            "cluster_interface": "lo",  # heartbeats stay inside the namespace
            "cluster_hb_interval": 2,
            "cluster_hb_timeout": 10,  # l2tpns raises it to its minimum (about 2 s)
            "send_garp": False,
            "echo_timeout": 10,
            "ppp_keepalive": True,
        }
        if self.secret is not None:
            # RFC 2661 5.1.1: used only when the LAC sends a Challenge AVP.
            settings["l2tp_secret"] = self.secret
        settings.update(self.options)
        lines = [f"set {name} {_conf_value(value)}" for name, value in settings.items()]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 20) -> None:
        """Write the config, start l2tpns and wait until it is cluster master."""
        if self._proc is not None:
            raise PeerError("l2tpns already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        pool_path = self.workdir / "ip_pool"
        users_path = self.workdir / "users"
        pool_path.write_text("\n".join(pool_lines(self.pool)) + "\n")
        users_path.write_text("")  # no CLI users
        self.config_path.write_text(self.config_text())
        self.log_path.write_text("")
        self._stderr = self.stderr_path.open("wb")
        argv = [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", _LAUNCH, "sh",
            str(pool_path), str(users_path), str(self.config_path), self.hostname,
        ]
        self._proc = self.ns.popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while MASTER_LINE not in self.log_text():
            if self._proc.poll() is not None:
                raise PeerError(
                    f"l2tpns exited with {self._proc.returncode}:\n"
                    f"{self.stderr_path.read_text(errors='replace')[-2000:]}\n"
                    f"{self.log_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise PeerError(f"l2tpns not master after {timeout} s:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def log_text(self) -> str:
        """The l2tpns log file so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        """SIGQUIT (closes sessions and exits), then SIGTERM, then SIGKILL, by PID."""
        if self._proc is not None:
            stop_pid(self._proc, [(signal.SIGQUIT, 2.0), (signal.SIGTERM, 0.5)])
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
