"""Packet capture in a test namespace (tcpdump) and checks of the result with tshark.

tshark is the independent dissector (peers/tshark/README.md): every capture of our traffic
must dissect with no malformed packet and no expert item of severity warning or worse. Two
gaps of tshark's malformed detection are covered here by our own checks: an L2TP Length
field shorter than the datagram, and a UDP payload on an L2TP/IKE port left as raw "data".
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import struct
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from .netns import Netns, wait_for

__all__ = ["Capture", "tshark_fields", "tshark_problems", "write_udp_pcap"]

# Ports whose UDP payload tshark must dissect as something other than raw data.
PROTOCOL_PORTS = frozenset({"500", "1701", "4500"})
# pcap file header (magic, v2.4, LINKTYPE_RAW = 101: packets start with the IP header).
PCAP_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
UDP_HEADER = struct.Struct("!HHHH")
LINKTYPE_RAW = 101
ROOT_WARNING = "This could be dangerous"
FIELD_SEP = "\t"
OCCURRENCE_SEP = "\x1f"
WARNING = 0x600000  # tshark 4.0 severities: chat 0x200000 ... error 0x800000


class Capture:
    """`tcpdump -U -w path -i iface bpf` inside `ns`; a context manager.

    On "any" the frames are Linux cooked (SLL), which tshark reads fine.
    """

    def __init__(self, ns: Netns, path: Path, iface: str = "any", bpf: str = "udp") -> None:
        self.ns = ns
        self.path = Path(path)
        self.iface = iface
        self.bpf = bpf
        self.log_path = self.path.with_name(self.path.name + ".log")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        """Start tcpdump and wait until it is listening."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # --immediate-mode: without it a short test loses every packet (tshark README);
        # -Z root: keep writing into root-only temp directories.
        # A 16 MiB kernel buffer and a 2 KiB snap length: a loaded 2-core machine must not
        # make tcpdump drop packets the checks look for (L2TP/PPP frames fit in 2 KiB).
        argv = ["tcpdump", "-n", "-U", "--immediate-mode", "-B", "16384", "-s", "2048",
                "-Z", "root", "-i", self.iface, "-w", str(self.path)]
        if self.bpf:
            argv.append(self.bpf)
        with open(self.log_path, "wb") as log:
            self._proc = self.ns.popen(argv, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=log)
        wait_for(self._listening, timeout, interval=0.05, what=f"tcpdump on {self.iface}")

    def _listening(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"tcpdump exited with {self._proc.returncode}: "
                               f"{self.log_path.read_text(errors='replace')}")
        return "listening on" in self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> Path:
        """SIGINT tcpdump so it flushes, wait for it; returns the pcap path."""
        proc, self._proc = self._proc, None
        if proc is None:
            return self.path
        if proc.poll() is None:
            time.sleep(0.2)  # let packets already on the wire reach the socket
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return self.path

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _tshark(pcap: Path, args: Sequence[str], decode_as: Sequence[str]) -> str:
    argv = ["tshark", "-n", "-r", str(pcap)]
    for rule in decode_as:
        argv += ["-d", rule]
    res = subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120,
                         check=False)
    if res.returncode != 0:
        errors = "\n".join(line for line in res.stderr.splitlines() if ROOT_WARNING not in line)
        raise RuntimeError(f"tshark failed ({res.returncode}) on {pcap}: {errors}")
    return res.stdout


def tshark_fields(pcap: Path, fields: Sequence[str], display_filter: str = "",
                  decode_as: Sequence[str] = ()) -> list[list[str]]:
    """One row per packet matching `display_filter`, one column per field.

    A field that occurs several times in a packet is joined with ","; absent is "".
    """
    return _rows(pcap, fields, display_filter, decode_as, ",")


def _rows(pcap: Path, fields: Sequence[str], display_filter: str, decode_as: Sequence[str],
          aggregator: str) -> list[list[str]]:
    args = ["-T", "fields", "-E", f"separator={FIELD_SEP}", "-E", "occurrence=a",
            "-E", f"aggregator={aggregator}"]
    if display_filter:
        args += ["-Y", display_filter]
    for field in fields:
        args += ["-e", field]
    rows = []
    for line in _tshark(pcap, args, decode_as).splitlines():
        cols = line.split(FIELD_SEP)
        rows.append(cols + [""] * (len(fields) - len(cols)))
    return rows


def _split_rows(pcap: Path, fields: Sequence[str], display_filter: str,
                decode_as: Sequence[str]) -> list[list[list[str]]]:
    """Like tshark_fields, but every column split into its occurrences."""
    return [[col.split(OCCURRENCE_SEP) if col else [] for col in row]
            for row in _rows(pcap, fields, display_filter, decode_as, OCCURRENCE_SEP)]


def _src_filter(src: str) -> str:
    return f"ipv6.src == {src}" if ":" in src else f"ip.src == {src}"


def tshark_problems(pcap: Path, *, src: str | None = None,
                    decode_as: Sequence[str] = ()) -> list[str]:
    """Readable lines for every packet (from `src` if given) tshark finds fault with.

    Covers `_ws.malformed`, expert items of severity warning or worse, an L2TP Length that
    differs from the UDP payload length, and raw "data" on the L2TP/IKE ports.
    [] means the capture is clean.
    """
    base = f"({_src_filter(src)}) && " if src else ""
    problems: list[str] = []
    for number, info, messages, severities, malformed in _split_rows(
            pcap, ["frame.number", "_ws.col.Info", "_ws.expert.message", "_ws.expert.severity",
                   "_ws.malformed"],
            f"{base}(_ws.malformed || _ws.expert.severity >= warning)", decode_as):
        found = [m for m, s in zip(messages, severities, strict=False) if _severity(s) >= WARNING]
        if malformed and not any("Malformed" in m for m in found):
            found.append("malformed packet")
        problems.append(f"frame {number[0]}: {''.join(info)}: {'; '.join(found) or 'flagged'}")
    # Gap 1: tshark ignores bytes after the L2TP Length silently.
    for number, lengths, udp_lengths in _split_rows(
            pcap, ["frame.number", "l2tp.length", "udp.length"], f"{base}l2tp.length", decode_as):
        if lengths and udp_lengths and int(lengths[-1]) != int(udp_lengths[-1]) - 8:
            problems.append(f"frame {number[0]}: L2TP Length {lengths[-1]} but UDP payload "
                            f"{int(udp_lengths[-1]) - 8} bytes")
    # Gap 2: a payload tshark could not parse at all on our ports shows up as udp:data.
    for number, protocols, ports in _split_rows(
            pcap, ["frame.number", "frame.protocols", "udp.port"], f"{base}data", decode_as):
        stack = protocols[0].split(":") if protocols else []
        ours = PROTOCOL_PORTS.intersection(ports)
        if "udp" in stack and stack[stack.index("udp") + 1:][:1] == ["data"] and ours:
            problems.append(f"frame {number[0]}: undissected UDP payload on port "
                            f"{'/'.join(sorted(ours))}")
    return problems


def _severity(text: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        return 0


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_udp_pcap(path: Path, datagrams: Sequence[tuple[str, int, str, int, bytes]]) -> Path:
    """Write IPv4/UDP datagrams (src, sport, dst, dport, payload) as a raw-IP pcap."""
    out = bytearray(PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
    for n, (src, sport, dst, dport, payload) in enumerate(datagrams):
        udp = UDP_HEADER.pack(sport, dport, UDP_HEADER.size + len(payload), 0) + payload
        fields = [0x45, 0, IPV4_HEADER.size + len(udp), n, 0, 64, 17, 0,
                  ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed]
        fields[7] = _ip_checksum(IPV4_HEADER.pack(*fields))
        packet = IPV4_HEADER.pack(*fields) + udp
        out += PCAP_RECORD.pack(1_700_000_000 + n, 0, len(packet), len(packet)) + packet
    Path(path).write_bytes(bytes(out))
    return Path(path)
