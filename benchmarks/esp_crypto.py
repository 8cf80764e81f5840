#!/usr/bin/env python3
"""ESP encrypt and decrypt cost per packet, for every transform (no I/O, one core).

  python benchmarks/esp_crypto.py [--size 1400] [--runs 5] [--seconds 0.3] [--json]

Each case is timed ``--runs`` times for about ``--seconds`` each; the median µs/packet
(min-max) and the Gbit/s of payload it implies are printed. "encrypt" is
``OutboundSA.encrypt`` (header, IV, padding, cipher, ICV), CBC IVs coming from a
``RandomPool`` as in production; "decrypt" is ``InboundSA.decrypt`` (anti-replay, ICV,
cipher, padding check) of distinct packets. "udp+cksum" is ``transport_inner`` building
the inner UDP header with its checksum. Compare with notes/perf-ceiling/RESULTS.md; the
figures move a lot when other work shares the CPU (check `uptime`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pyl2tp.esp.sa import AUTH_SPECS, ESPParams, InboundSA, OutboundSA, RandomPool
from pyl2tp.wire.esp import transport_inner

TRANSFORMS = [
    ("aes-gcm-16", 20, "null"),
    ("aes-gcm-16", 36, "null"),
    ("aes-cbc", 16, "hmac-sha1-96"),
    ("aes-cbc", 32, "hmac-sha1-96"),
    ("aes-cbc", 32, "hmac-sha256-128"),
    ("aes-cbc", 32, "hmac-sha384-192"),
    ("aes-cbc", 32, "hmac-sha512-256"),
    ("aes-cbc", 16, "hmac-md5-96"),
    ("3des-cbc", 24, "hmac-sha1-96"),
]


def timed(fn: Callable[[int], None], runs: int, seconds: float) -> list[float]:
    """µs per call of fn(n) / n over ``runs`` runs, n calibrated to ~``seconds``."""
    n = 1000
    t0 = time.perf_counter()
    fn(n)
    n = max(1000, int(n * seconds / max(time.perf_counter() - t0, 1e-6)))
    out = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        fn(n)
        out.append((time.perf_counter_ns() - t0) / 1000 / n)
    return out


def params(enc: str, klen: int, auth: str) -> ESPParams:
    akey = os.urandom(AUTH_SPECS[auth].key_size) if auth != "null" else b""
    return ESPParams(spi=0x1000, enc=enc, enc_key=os.urandom(klen), auth=auth, auth_key=akey,
                     mode="transport", replay_window=1024)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=1400, help="payload bytes (default 1400)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.3, help="per run")
    ap.add_argument("--json", action="store_true", help="one JSON object per case")
    a = ap.parse_args()
    payload = os.urandom(a.size)
    results = []

    def report(case: str, us: list[float]) -> None:
        med = statistics.median(us)
        rec = {"case": case, "size": a.size, "us_med": round(med, 3),
               "us_min": round(min(us), 3), "us_max": round(max(us), 3),
               "gbps": round(a.size * 8 / (med * 1000), 2)}
        results.append(rec)
        if a.json:
            print(json.dumps(rec), flush=True)
        else:
            print(f"{case:42s} {a.size:5d} B {med:7.2f} µs/pkt ({min(us):.2f}-{max(us):.2f})"
                  f" {rec['gbps']:6.2f} Gbit/s", flush=True)

    for enc, klen, auth in TRANSFORMS:
        p = params(enc, klen, auth)
        name = f"{enc}-{(klen - 4 if enc == 'aes-gcm-16' else klen) * 8} {auth}"
        out = OutboundSA(p, RandomPool())

        def encrypt(n: int, out: OutboundSA = out) -> None:
            enc_ = out.encrypt
            for _ in range(n):
                enc_(payload, 17)
            out.seq = 0  # keep far from the sequence-number limit

        report(f"encrypt {name}", timed(encrypt, a.runs, a.seconds))

        # Distinct packets for decrypt: the replay window refuses a packet seen twice.
        sender = OutboundSA(p, os.urandom)
        pool = [sender.encrypt(payload, 17) for _ in range(20000)]

        def decrypt(n: int, p: ESPParams = p, pool: list[bytes] = pool) -> None:
            done = 0
            while done < n:
                inb = InboundSA(p)  # a fresh window per pass over the pool
                dec = inb.decrypt
                for packet in pool[:n - done]:
                    dec(packet)
                done += min(len(pool), n - done)

        report(f"decrypt {name}", timed(decrypt, a.runs, a.seconds))

    def udp(n: int) -> None:
        for _ in range(n):
            transport_inner("198.18.0.1", "198.18.0.2", payload)

    report("udp+cksum transport_inner", timed(udp, a.runs, a.seconds))

    def udp0(n: int) -> None:
        for _ in range(n):
            transport_inner("198.18.0.1", "198.18.0.2", payload, checksum=False)

    report("udp (checksum 0) transport_inner", timed(udp0, a.runs, a.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
