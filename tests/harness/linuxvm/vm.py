"""Boot the Linux client VM in a test namespace and run a shell script in it.

qemu runs inside the test's namespace with the guest's eth0 on a TAP device there; the
namespace side of the TAP holds `host_ip`, so the guest reaches that namespace and nothing
else. Two 9p shares carry the run: `<workdir>/in` (read-only in the guest at /sb/in: cmd.sh,
root/ = the `files` copied onto /, flags/ = files the host creates while the VM runs) and
`<workdir>/out` (/sb/out: cmd.log, exit-status, state.txt, dmesg.txt, varlog/). The serial
console goes to `<workdir>/console.log`, each line stamped with seconds since qemu started.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO

from ..netns import Netns, check_address, stop_process, wait_for
from .build import VMImage, ensure_image

__all__ = ["GUEST_IN", "GUEST_OUT", "LinuxVM", "VMResult", "choose_accel"]

GUEST_IN = "/sb/in"
GUEST_OUT = "/sb/out"
READY_MARK = "PYL2TP-VM-READY"
EXIT_MARK = "PYL2TP-VM-EXIT"
# Written mode 0600 into the guest (strongSwan and pppd warn about readable secrets).
SECRET_FILES = frozenset({"ipsec.secrets", "chap-secrets", "pap-secrets", "swanctl.conf"})
QBOOT = Path("/usr/share/qemu/qboot.rom")
PR_SET_PDEATHSIG = 1
CLOSE_GRACE = 5.0
_TAP_SEQ = itertools.count(1)


def choose_accel() -> str:
    """"kvm" where hardware virtualisation works, else "tcg"; PYL2TP_VM_ACCEL overrides.

    A nested PVM host (module kvm_pvm) has /dev/kvm but cannot run a stock kernel at a
    usable speed (peers/linuxvm/README.md, "Why KVM does not work"): TCG there.
    """
    forced = os.environ.get("PYL2TP_VM_ACCEL")
    if forced in ("kvm", "tcg"):
        return forced
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or Path("/sys/module/kvm_pvm").exists():
        return "tcg"
    flags = Path("/proc/cpuinfo").read_text()
    return "kvm" if (" vmx" in flags or " svm" in flags) else "tcg"


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the test process dies (qemu never lingers)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(slots=True)
class VMResult:
    """What one VM run left behind."""

    status: int | None
    """cmd.sh's exit status (124: the guest-side limit); None: the guest reported none."""
    timed_out: bool
    """The host killed qemu at the run's time limit."""
    output: str
    """cmd.sh's stdout and stderr."""
    console: str
    """The serial console, lines stamped with seconds since qemu started."""
    outdir: Path
    ready_after: float | None
    """Seconds from qemu start to the guest's ready marker."""
    duration: float
    accel: str

    @property
    def state(self) -> str:
        """The guest's lsmod, addresses, routes, xfrm and l2tp state after cmd.sh."""
        return _read(self.outdir / "state.txt")

    def varlog(self, name: str) -> str:
        """A file the guest had under /var/log ("messages", "pppd.log", "charon.log"...)."""
        return _read(self.outdir / "varlog" / name)

    def describe(self, lines: int = 60) -> str:
        """A summary for assertion messages: status, then the ends of output and console."""
        out = "\n".join(self.output.splitlines()[-lines:])
        con = "\n".join(self.console.splitlines()[-lines:])
        return (f"status={self.status} timed_out={self.timed_out} ready_after="
                f"{self.ready_after} duration={self.duration:.1f}s accel={self.accel} "
                f"(files in {self.outdir})\n--- cmd.sh output ---\n{out}\n"
                f"--- console ---\n{con}")


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


class LinuxVM:
    """One run of the client VM attached to `ns`; a context manager that always cleans up.

    `files` maps absolute guest paths to contents (mode 0600 for secrets and files in a
    "private" folder, 0755 for
    scripts starting with "#!", else 0644); `cmd` is the shell script to run; `timeout`
    bounds the whole run (boot included): qemu is killed by PID at that point, and cmd.sh
    gets `timeout - 30` seconds inside the guest so that logs are still collected.
    """

    def __init__(self, ns: Netns, workdir: Path | str, *, guest_ip: str = "198.18.1.2/24",
                 host_ip: str = "198.18.1.1", files: dict[str, str] | None = None,
                 cmd: str, timeout: float = 180.0, image: VMImage | None = None,
                 memory_mb: int = 1024, accel: str | None = None) -> None:
        iface = ipaddress.ip_interface(guest_ip)
        if iface.version != 4 or iface.network.prefixlen == 32:
            raise ValueError(f"guest_ip must be an IPv4 address with a prefix: {guest_ip}")
        if ipaddress.ip_address(host_ip) not in iface.network:
            raise ValueError(f"host_ip {host_ip} is not in {iface.network}")
        check_address(guest_ip)
        check_address(host_ip)
        if timeout < 30:
            raise ValueError("timeout must leave room for the boot (>= 30 s)")
        self.ns = ns
        self.workdir = Path(workdir).resolve()
        self.guest_ip = guest_ip
        self.host_ip = host_ip
        self.prefixlen = iface.network.prefixlen
        self.files = dict(files or {})
        self.cmd = cmd
        self.timeout = timeout
        self.image = image
        self.memory_mb = memory_mb
        self.accel = accel or choose_accel()
        self.indir = self.workdir / "in"
        self.outdir = self.workdir / "out"
        self.console_path = self.workdir / "console.log"
        self.tap = f"vmt{os.getpid():x}t{next(_TAP_SEQ):x}"[:15]
        self._tap_created = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._t0 = 0.0
        self._deadline = 0.0
        self._ready_after: float | None = None
        self._ready = threading.Event()
        self._result: VMResult | None = None
        for path in self.files:
            p = PurePosixPath(path)
            if not p.is_absolute() or ".." in p.parts or p == PurePosixPath("/"):
                raise ValueError(f"guest file path must be absolute, without '..': {path!r}")

    def __enter__(self) -> LinuxVM:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # ------------------------------------------------------------ network

    def attach(self) -> str:
        """Create the TAP in the namespace with `host_ip` on it (once); its name.

        Call it before starting a server that binds `host_ip`; `start()` calls it too.
        """
        if self._tap_created:
            return self.tap
        ns = self.ns
        ns.run(["ip", "tuntap", "add", "dev", self.tap, "mode", "tap"])
        self._tap_created = True
        ns.run(["sysctl", "-qw", f"net.ipv6.conf.{self.tap}.disable_ipv6=1"], check=False)
        ns.run(["ip", "addr", "replace", f"{self.host_ip}/{self.prefixlen}", "dev", self.tap])
        ns.run(["ip", "link", "set", self.tap, "up"])
        return self.tap

    def _mac(self) -> str:
        octets = ipaddress.ip_interface(self.guest_ip).ip.packed
        return "52:54:00:" + ":".join(f"{b:02x}" for b in octets[1:])

    # ------------------------------------------------------------ run

    def _prepare_shares(self) -> None:
        for d in (self.indir, self.outdir):
            if d.exists():
                shutil.rmtree(d)
        (self.indir / "flags").mkdir(parents=True)
        (self.indir / "root").mkdir()
        self.outdir.mkdir()
        (self.indir / "cmd.sh").write_text(self.cmd if self.cmd.endswith("\n") else
                                           self.cmd + "\n")
        for path, content in self.files.items():
            dest = self.indir / "root" / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(content)
            if dest.name in SECRET_FILES or dest.parent.name == "private":
                dest.chmod(0o600)
            else:
                dest.chmod(0o755 if content.startswith("#!") else 0o644)

    def qemu_argv(self, image: VMImage) -> list[str]:
        """The qemu command line (without the namespace wrapper)."""
        guest_limit = int(self.timeout - 30 if self.timeout > 60 else self.timeout * 2 // 3)
        append = (f"console=ttyS0 panic=-1 quiet loglevel=4 pyl2tp.ip={self.guest_ip} "
                  f"pyl2tp.gw={self.host_ip} pyl2tp.timeout={guest_limit}")
        # "max" lets aesni_intel and friends load under TCG; host CPUs on a nested host may
        # reject IA32_ARCH_CAPABILITIES (MSR 0x10a), hence -arch-capabilities with KVM.
        cpu = "host,-arch-capabilities" if self.accel == "kvm" else "max"
        # qboot + PVH entry of the ELF vmlinux: ~0.3 s to the kernel under TCG (SeaBIOS
        # and the bzImage's own decompressor take several seconds).
        firmware = ["-bios", str(QBOOT)] if QBOOT.is_file() else []
        share = "local,security_model=none,path={},mount_tag={},id={}{}"
        return [
            "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-machine", f"q35,accel={self.accel}", "-cpu", cpu,
            "-m", str(self.memory_mb), "-smp", "1", *firmware,
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
            "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
            # csum=off: the guest computes real checksums, so captures show true values.
            "-device", f"virtio-net-pci,netdev=n0,mac={self._mac()},romfile=,csum=off,"
                       "guest_csum=off",
            "-device", "virtio-rng-pci",
            "-virtfs", share.format(self.indir, "vmin", "vmin", ",readonly=on"),
            "-virtfs", share.format(self.outdir, "vmout", "vmout", ""),
            "-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0",
        ]

    def start(self) -> None:
        """Attach the TAP, write the shares and boot; returns at once (see `wait`)."""
        if self._proc is not None:
            raise RuntimeError("VM already started")
        image = self.image or ensure_image()
        self.image = image
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._prepare_shares()
        self.attach()
        self._t0 = time.monotonic()
        self._deadline = self._t0 + self.timeout
        self._proc = subprocess.Popen(
            self.ns.argv(self.qemu_argv(image)), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        assert self._proc.stdout is not None
        self._reader = threading.Thread(target=self._read_console, args=(self._proc.stdout,),
                                        name="linuxvm-console", daemon=True)
        self._reader.start()

    def _read_console(self, stream: IO[bytes]) -> None:
        with open(self.console_path, "w") as log:
            for raw in stream:
                now = time.monotonic() - self._t0
                line = raw.decode(errors="replace").rstrip("\r\n")
                log.write(f"[{now:7.2f}] {line}\n")
                log.flush()
                if self._ready_after is None and line.startswith(READY_MARK):
                    self._ready_after = now
                    self._ready.set()

    @property
    def pid(self) -> int | None:
        """qemu's PID while it runs."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_ready(self, timeout: float = 60) -> float:
        """Wait for the guest's ready marker; seconds it took from qemu start."""
        def ready() -> bool:
            if not self._ready.is_set() and not self.running:
                raise AssertionError(f"VM ended before it was ready:\n{self.console()[-3000:]}")
            return self._ready.is_set()

        wait_for(ready, timeout, interval=0.1, what="the VM's ready marker")
        assert self._ready_after is not None
        return self._ready_after

    def flag(self, name: str) -> None:
        """Create /sb/in/flags/NAME for the guest (a script can wait for it)."""
        (self.indir / "flags" / name).write_text("")

    def guest_file(self, name: str) -> str | None:
        """The text of /sb/out/NAME as the guest wrote it so far, or None."""
        path = self.outdir / name
        return path.read_text(errors="replace") if path.is_file() else None

    def wait_guest_file(self, name: str, timeout: float) -> str:
        """Wait until the guest has written something to /sb/out/NAME; its text.

        Fails at once if the VM ends first.
        """
        def present() -> str | None:
            text = self.guest_file(name)
            if not text and not self.running:
                raise AssertionError(f"VM ended without writing {GUEST_OUT}/{name}:\n"
                                     f"{self.result().describe()}")
            return text

        found = wait_for(present, timeout, interval=0.2, what=f"{GUEST_OUT}/{name} in the VM")
        assert found is not None
        return found

    def console(self) -> str:
        """The console log so far."""
        return _read(self.console_path)

    def wait(self) -> VMResult:
        """Wait for the guest to power off (killing qemu at the time limit); the result."""
        if self._proc is None:
            raise RuntimeError("VM not started")
        timed_out = False
        try:
            self._proc.wait(timeout=max(0.0, self._deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_process(self._proc, grace=CLOSE_GRACE)
        return self.result(timed_out)

    def result(self, timed_out: bool = False) -> VMResult:
        """Collect what the run left (final once qemu ended)."""
        if self._result is not None:
            return self._result
        ended = self._proc is not None and self._proc.poll() is not None
        if ended and self._reader is not None:
            self._reader.join(timeout=CLOSE_GRACE)
        status_text = (self.guest_file("exit-status") or "").strip()
        result = VMResult(
            status=int(status_text) if status_text.isdigit() else None,
            timed_out=timed_out, output=self.guest_file("cmd.log") or "",
            console=self.console(), outdir=self.outdir, ready_after=self._ready_after,
            duration=time.monotonic() - self._t0 if self._t0 else 0.0, accel=self.accel)
        if ended:
            self._result = result
        return result

    def run(self) -> VMResult:
        """Boot, run `cmd`, power off; always cleans up. The result."""
        try:
            self.start()
            return self.wait()
        finally:
            self.close()

    def close(self) -> None:
        """Kill qemu if it still runs (by PID) and remove the TAP; safe to call twice."""
        if self._proc is not None and self._proc.poll() is None:
            stop_process(self._proc, grace=CLOSE_GRACE)
            self.result(timed_out=time.monotonic() >= self._deadline)
        if self._proc is not None and self._proc.stdout is not None:
            if self._reader is not None:
                self._reader.join(timeout=CLOSE_GRACE)
            self._proc.stdout.close()
        if self._tap_created:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.ns.run(["ip", "link", "del", self.tap], check=False)
            self._tap_created = False
