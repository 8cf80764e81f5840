"""Network namespaces for tests: hosts, veth links, tracked processes.

Every host of a test is a namespace named after the test and our PID, so parallel runs on
one machine never collide. Addresses come only from 198.18.0.0/15 (DESIGN.md "Test
networks"). Everything a `Topology` creates is torn down by `close()`, even after a failure.
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["Netns", "Topology", "list_netns", "remove_stale_netns", "stop_process", "wait_for"]

T = TypeVar("T")

# The only IPv4 range test hosts may use (RFC 2544 benchmarking range), plus loopback.
ALLOWED_NETS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("127.0.0.0/8"),
                ipaddress.ip_network("2001:2::/48"))
MAX_NS_NAME = 32
_SEQ = itertools.count(1)


def wait_for(predicate: Callable[[], T], timeout: float, interval: float = 0.05,
             what: str = "condition") -> T:
    """Poll `predicate` until it returns something truthy and return that value.

    Raises AssertionError naming `what` when `timeout` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def list_netns() -> list[str]:
    """Names of the namespaces `ip netns` knows about."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def remove_stale_netns() -> list[str]:
    """Delete namespaces of ours ("pl2-...-<pid>") whose process is gone; their names."""
    removed = []
    for name in list_netns():
        # Only names Topology makes: pl2-<test>-<host>-<seq>-<pid>.
        match = re.fullmatch(r"pl2-[A-Za-z0-9-]+-\d+-(\d+)", name)
        if match is None or Path(f"/proc/{match.group(1)}").exists():
            continue
        for pid in Netns.pids_of(name):  # processes a crashed run left in the namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
        removed.append(name)
    return removed


def _slug(text: str, limit: int) -> str:
    text = text.removeprefix("test_")
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:limit].strip("-") or "t"


def check_address(addr: str) -> None:
    """Refuse any address outside the test ranges (raises ValueError)."""
    iface = ipaddress.ip_interface(addr)
    if not any(iface.ip in net for net in ALLOWED_NETS if net.version == iface.version):
        raise ValueError(f"{addr}: test addresses must come from 198.18.0.0/15 or 127.0.0.0/8")


def stop_process(proc: subprocess.Popen[Any], grace: float = 5.0) -> int | None:
    """SIGTERM one process by PID, wait `grace` seconds, then SIGKILL; returns its status."""
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return proc.wait(timeout=grace)


class Netns:
    """One network namespace: a host of the test."""

    def __init__(self, name: str) -> None:
        if len(name) > MAX_NS_NAME:
            raise ValueError(f"namespace name {name!r} is longer than {MAX_NS_NAME}")
        self.name = name
        self._procs: list[subprocess.Popen[bytes]] = []
        self._closed = False
        if name in list_netns():
            raise FileExistsError(f"namespace {name} exists already")
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
        try:
            self.run(["ip", "link", "set", "lo", "up"])
        except BaseException:
            self._delete()
            raise

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    def argv(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs `argv` inside this namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 30,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        """Run a command to completion inside the namespace; output captured as text."""
        kw.setdefault("capture_output", True)
        proc = subprocess.run(self.argv(argv), check=False, timeout=timeout, text=True, **kw)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout,
                                                proc.stderr)
        return proc

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Start a process inside the namespace; `close()` ends it (by PID).

        `ip netns exec` execs the command, so the Popen's PID is the program's own.
        """
        proc: subprocess.Popen[bytes] = subprocess.Popen(self.argv(argv), **kw)
        self._procs.append(proc)
        return proc

    @staticmethod
    def pids_of(name: str) -> list[int]:
        """PIDs of every process whose network namespace is `name`."""
        out = subprocess.run(["ip", "netns", "pids", name], capture_output=True,
                             text=True, check=False)
        return [int(p) for p in out.stdout.split() if p.isdigit()]

    def pids(self) -> list[int]:
        """PIDs of every process whose network namespace is this one."""
        return self.pids_of(self.name)

    def close(self) -> None:
        """End tracked processes (SIGTERM, 5 s, SIGKILL), then any stragglers, then the ns."""
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self._procs):
            stop_process(proc)
        # Children of our processes (a stand-in pppd, say) live only in our namespace.
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._delete()

    def _delete(self) -> None:
        for _ in range(50):
            res = subprocess.run(["ip", "netns", "del", self.name], capture_output=True,
                                 text=True, check=False)
            if res.returncode == 0 or self.name not in list_netns():
                return
            time.sleep(0.1)
        raise RuntimeError(f"cannot delete namespace {self.name}: {res.stderr.strip()}")


class Topology:
    """The hosts and links of one test; a context manager that always tears down."""

    def __init__(self, test_name: str) -> None:
        self.test_name = test_name
        self.pid = os.getpid()
        self.seq = next(_SEQ)
        self.hosts: dict[str, Netns] = {}
        self._links = 0

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _ns_name(self, short: str, seq: int) -> str:
        tail = f"-{seq}-{self.pid}"
        short = _slug(short, 8)
        room = MAX_NS_NAME - len("pl2-") - len(short) - 1 - len(tail)
        return f"pl2-{_slug(self.test_name, room)}-{short}{tail}"

    def host(self, short: str) -> Netns:
        """Create a namespace `short` (unique within the topology) with lo up."""
        if short in self.hosts:
            raise ValueError(f"host {short!r} already exists")
        seq = self.seq
        # Another Topology of this process may use the same test name (and a second copy of
        # this module has its own counter): take the next free number then.
        while self._ns_name(short, seq) in list_netns():
            seq = next(_SEQ)
        ns = Netns(self._ns_name(short, seq))
        self.hosts[short] = ns
        return ns

    def link(self, a: Netns, a_addr: str, b: Netns, b_addr: str) -> tuple[str, str]:
        """Join two hosts with a veth pair, address both ends and bring them up.

        Addresses carry a prefix, e.g. "198.18.0.1/24". Returns the interface names (a, b).
        """
        check_address(a_addr)
        check_address(b_addr)
        self._links += 1
        base = f"p{self.pid:x}{self.seq:x}l{self._links:x}"[:14]
        a_if, b_if = f"{base}a", f"{base}b"
        subprocess.run(["ip", "link", "add", a_if, "netns", a.name, "type", "veth",
                        "peer", "name", b_if, "netns", b.name], check=True, capture_output=True)
        for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            family = "-6" if ":" in addr else "-4"
            extra = ["nodad"] if family == "-6" else []
            ns.run(["ip", family, "addr", "add", addr, "dev", ifname, *extra])
            ns.run(["ip", "link", "set", ifname, "up"])
        return a_if, b_if

    def close(self) -> None:
        """Tear down every host (and with it every link); errors are collected, then raised."""
        errors: list[BaseException] = []
        for ns in reversed(list(self.hosts.values())):
            try:
                ns.close()
            except Exception as exc:  # keep tearing the rest down
                errors.append(exc)
        self.hosts.clear()
        if errors:
            raise errors[0]
