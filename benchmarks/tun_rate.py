#!/usr/bin/env python3
"""Packet rate through the server dataplane's TUN, in a namespace of its own (root).

  python benchmarks/tun_rate.py [--seconds 3] [--size 1400] [--json]

read : a flooder process sends UDP to an attached session address; the kernel routes it
       into the TUN; the dataplane reads it and hands it to the session's sink (counted).
write: the dataplane's `deliver` writes prebuilt UDP packets "from the session" into the
       TUN; a receiver process counts what the kernel delivers to its socket.
Every packet stays inside the benchmark's namespace (198.18.100.0/24).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
from ipaddress import IPv4Address

LOCAL = "198.18.100.1"
SESSION = "198.18.100.10"
PORT = 9000

FLOODER = """
import socket, sys, time
size, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.100.1", 0)); s.connect(("198.18.100.10", 9))
data = b"x" * size; end = time.monotonic() + seconds; n = 0
while time.monotonic() < end:
    for _ in range(64):
        try: s.send(data); n += 1
        except OSError: pass
print(n)
"""

RECEIVER = """
import socket, sys, time
seconds = float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("198.18.100.1", 9000)); s.settimeout(0.5)
print("READY", flush=True)
n = 0; end = time.monotonic() + seconds
while time.monotonic() < end:
    try: s.recv(65535); n += 1
    except socket.timeout: pass
print(n)
"""


def udp_packet(src: str, dst: str, dport: int, size: int) -> bytes:
    """IPv4 + UDP (checksum 0, legal for IPv4) with `size` payload bytes."""
    total = 28 + size
    head = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 17, 0,
                                 socket.inet_aton(src), socket.inet_aton(dst)))
    s = sum(struct.unpack("!10H", head))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("!H", head, 10, ~s & 0xFFFF)
    return bytes(head) + struct.pack("!HHHH", 40000, dport, 8 + size, 0) + b"x" * size


async def measure(seconds: float, size: int) -> dict[str, float]:
    from pyl2tp.dataplane.server import ServerDataplane

    dp = ServerDataplane(tun_name="pl2b0", local_v4=IPv4Address(LOCAL), mtu=1500)
    dp.start()
    count = [0]

    def sink(packet: bytes) -> None:
        count[0] += 1

    dp.attach_v4(IPv4Address(SESSION), sink)
    result: dict[str, float] = {"size": size}

    # read: kernel -> TUN -> dataplane -> sink
    cpu0, t0 = time.process_time(), time.monotonic()
    flood = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOODER, str(size), str(seconds), stdout=subprocess.PIPE)
    out, _ = await flood.communicate()
    elapsed = time.monotonic() - t0
    sent = int(out.decode().strip() or 0)
    await asyncio.sleep(0.2)
    result["read_kpps"] = count[0] / elapsed / 1e3
    result["read_offered_kpps"] = sent / elapsed / 1e3
    result["read_cpu_us_per_pkt"] = (time.process_time() - cpu0) / max(count[0], 1) * 1e6

    # write: deliver -> TUN -> kernel -> receiver socket
    recv = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RECEIVER, str(seconds + 1), stdout=subprocess.PIPE)
    assert recv.stdout is not None
    await recv.stdout.readline()
    packet = udp_packet(SESSION, LOCAL, PORT, size)
    deliver = dp.deliver
    n = 0
    cpu0, t0 = time.process_time(), time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        for _ in range(256):
            deliver(packet)
        n += 256
        await asyncio.sleep(0)
    elapsed = time.monotonic() - t0
    result["write_kpps"] = n / elapsed / 1e3
    result["write_cpu_us_per_pkt"] = (time.process_time() - cpu0) / n * 1e6
    out, _ = await recv.communicate()
    result["write_delivered_kpps"] = int(out.decode().split()[-1]) / elapsed / 1e3
    result["write_dropped"] = dp.stats["tx_dropped"]
    dp.close()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--size", type=int, default=1400)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.inner:
        print(json.dumps(asyncio.run(measure(min(args.seconds, 30), args.size))))
        return 0
    if os.geteuid() != 0:
        print("tun_rate: needs root (a network namespace and a TUN device)", file=sys.stderr)
        return 2
    ns = f"pl2-tunrate-bench-1-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "--inner",
             "--seconds", str(args.seconds), "--size", str(args.size)],
            capture_output=True, text=True, timeout=4 * args.seconds + 60, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:24} {value:.3f}" if isinstance(value, float) else f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
