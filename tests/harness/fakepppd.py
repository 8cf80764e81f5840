"""A stand-in for /usr/sbin/pppd under xl2tpd: relays PPP frames to the test.

xl2tpd (userspace mode) execs ``/usr/sbin/pppd /dev/pts/N passive nodetach ...`` with the pty
slave on stdin and stdout, and speaks async-HDLC there (RFC 1662 4: 0x7e flags, 0x7d
escapes, FCS-16). Real pppd cannot run without /dev/ppp, so the harness bind-mounts a wrapper
that runs this file over /usr/sbin/pppd in a private mount namespace.

Environment (inherited through xl2tpd):
  PYL2TP_FAKEPPPD_MODE  "bridge" (default) or "exit:N" (log argv, exit with status N)
  PYL2TP_FAKEPPPD_SOCK  AF_UNIX datagram socket of the test (bridge mode)
  PYL2TP_FAKEPPPD_TAG   free text copied into the hello
  PYL2TP_FAKEPPPD_LOG   file to append a log to (optional)

Bridge datagrams (AF_UNIX, so they cross network namespaces through the filesystem):
  to the test:   b"H" + JSON {"argv", "pid", "caller_id", "tag"}   once, at start
                 b"F" + PPP frame (HDLC flags, escapes and FCS removed)
                 b"X" + JSON {"reason"}                            when exiting
  from the test: b"F" + PPP frame (written to the pty HDLC-framed), b"Q" (exit 0: CDN)
The stand-in binds its own socket next to the test's, so the test answers with sendto().
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import termios
import time
import tty
from types import FrameType

FLAG = 0x7E
ESCAPE = 0x7D
# RFC 1662 C.2: FCS-16, initial value and the "good" residue after the FCS itself.
FCS_INIT = 0xFFFF
FCS_GOOD = 0xF0B8


def _fcs_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        v = byte
        for _ in range(8):
            v = (v >> 1) ^ 0x8408 if v & 1 else v >> 1
        table.append(v)
    return tuple(table)


FCS_TABLE = _fcs_table()


def fcs16(data: bytes | bytearray, fcs: int = FCS_INIT) -> int:
    """RFC 1662 C.2 frame check sequence over `data`."""
    for byte in data:
        fcs = (fcs >> 8) ^ FCS_TABLE[(fcs ^ byte) & 0xFF]
    return fcs


def hdlc_encode(frame: bytes) -> bytes:
    """One async-HDLC frame: FCS appended (LSB first), flags around, all ACCM bytes escaped."""
    fcs = fcs16(frame) ^ 0xFFFF
    out = bytearray([FLAG])
    # RFC 1662 7.1: with the default ACCM every byte below 0x20 is escaped, plus 0x7d/0x7e.
    for byte in frame + bytes((fcs & 0xFF, fcs >> 8)):
        if byte < 0x20 or byte in (FLAG, ESCAPE):
            out += bytes((ESCAPE, byte ^ 0x20))
        else:
            out.append(byte)
    out.append(FLAG)
    return bytes(out)


class Deframer:
    """Splits an async-HDLC byte stream into frames; yields (frame without FCS, fcs_ok)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._escaped = False

    def feed(self, data: bytes) -> list[tuple[bytes, bool]]:
        frames: list[tuple[bytes, bool]] = []
        for byte in data:
            if byte == FLAG:
                if len(self._buf) >= 4:  # shorter than 2 bytes + FCS: flag fill, RFC 1662 4.3
                    frames.append((bytes(self._buf[:-2]), fcs16(self._buf) == FCS_GOOD))
                self._buf.clear()
                self._escaped = False
            elif byte == ESCAPE:
                self._escaped = True
            else:
                self._buf.append(byte ^ 0x20 if self._escaped else byte)
                self._escaped = False
        return frames


class _Log:
    def __init__(self, path: str | None) -> None:
        self.path = path

    def __call__(self, msg: str) -> None:
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(f"{time.time():.3f} fakepppd[{os.getpid()}] {msg}\n")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], 1.0)
            continue
        view = view[n:]


def bridge(sock_path: str, tag: str | None, log: _Log) -> str:
    """Relay frames between the pty (fds 0/1) and the test's socket; returns why it ended."""
    own_path = os.path.join(os.path.dirname(sock_path), f"pppd-{os.getpid()}.sock")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(own_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(own_path)
    stopping: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    hello = {"argv": sys.argv[1:], "pid": os.getpid(),
             "caller_id": os.environ.get("CALLER_ID"), "tag": tag}
    reason = "signal"
    try:
        sock.sendto(b"H" + json.dumps(hello).encode(), sock_path)
        deframer = Deframer()
        while not stopping:
            try:
                ready, _, _ = select.select([0, sock.fileno()], [], [], 1.0)
            except InterruptedError:
                continue
            if 0 in ready:
                try:
                    data = os.read(0, 65536)
                except OSError as exc:  # EIO once xl2tpd closes the master
                    reason = f"pty read error: {exc}"
                    break
                if not data:
                    reason = "pty EOF"
                    break
                try:
                    for frame, fcs_ok in deframer.feed(data):
                        log(f"rx fcs_ok={fcs_ok} {frame.hex()}")
                        if not fcs_ok:
                            # RFC 1662 4.4: a frame with a bad FCS is silently discarded, as
                            # pppd does (seen: a 0x7f byte eaten while the pty was still
                            # canonical, in the first frame after xl2tpd started us).
                            continue
                        sock.sendto(b"F" + frame, sock_path)
                except OSError as exc:
                    reason = f"test socket gone: {exc}"
                    break
            if sock.fileno() in ready:
                msg = sock.recv(65536)
                if msg[:1] == b"F":
                    log(f"tx {msg[1:].hex()}")
                    _write_all(1, hdlc_encode(msg[1:]))
                elif msg[:1] == b"Q":
                    reason = "asked to quit"
                    break
        if stopping:
            reason = f"signal {stopping[0]}"
        with contextlib.suppress(OSError):
            sock.sendto(b"X" + json.dumps({"reason": reason}).encode(), sock_path)
    finally:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(own_path)
    return reason


def main() -> int:
    log = _Log(os.environ.get("PYL2TP_FAKEPPPD_LOG"))
    mode = os.environ.get("PYL2TP_FAKEPPPD_MODE", "bridge")
    log(f"argv={json.dumps(sys.argv[1:])} mode={mode}")
    if mode.startswith("exit:"):
        return int(mode.split(":", 1)[1])
    # The pty gotcha: TCSANOW, not tty.setraw's default TCSAFLUSH, or the first frame that
    # xl2tpd already wrote is thrown away.
    try:
        tty.setraw(0, termios.TCSANOW)
    except termios.error as exc:
        log(f"setraw failed: {exc}")
    sock_path = os.environ.get("PYL2TP_FAKEPPPD_SOCK")
    if not sock_path:
        log("no PYL2TP_FAKEPPPD_SOCK")
        return 2
    reason = bridge(sock_path, os.environ.get("PYL2TP_FAKEPPPD_TAG"), log)
    log(f"exit: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
