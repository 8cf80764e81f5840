"""Fire random and mutated L2TP datagrams at a server (run inside a test namespace).

    python fuzz_sender.py other SERVER COUNT SEED TUNNEL_ID
        from this host's own address, many source ports: random bytes and mutated
        valid messages (SCCRQ, ICRQ, HELLO, StopCCN, data), some aimed at TUNNEL_ID.
    python fuzz_sender.py spoof SERVER COUNT SEED TUNNEL_ID SESSION_ID SRC_IP SRC_PORT
        malformed datagrams only, with the established peer's address and port as
        source (raw IP socket), aimed at that peer's tunnel and session.
Prints one JSON line with the number sent.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import sys
import time

from pyl2tp.wire.l2tp import (
    AVPType,
    MessageType,
    ProtocolVersion,
    ResultCodeValue,
    avp,
    encode_control,
    encode_data,
    message,
)


def valid_samples(tunnel_id: int, session_id: int) -> list[bytes]:
    ident = [
        avp(AVPType.PROTOCOL_VERSION, ProtocolVersion(1, 0)),
        avp(AVPType.HOST_NAME, "fuzzer"),
        avp(AVPType.FRAMING_CAPABILITIES, 3),
        avp(AVPType.ASSIGNED_TUNNEL_ID, 77),
    ]
    msgs = [
        message(MessageType.SCCRQ, 0, 0, ident),
        message(MessageType.HELLO, tunnel_id, 0, []),
        message(
            MessageType.STOPCCN,
            tunnel_id,
            0,
            [avp(AVPType.ASSIGNED_TUNNEL_ID, 77), avp(AVPType.RESULT_CODE, ResultCodeValue(1))],
        ),
        message(
            MessageType.ICRQ,
            tunnel_id,
            0,
            [avp(AVPType.ASSIGNED_SESSION_ID, 9), avp(AVPType.CALL_SERIAL_NUMBER, 1)],
        ),
        message(
            MessageType.CDN,
            tunnel_id,
            session_id,
            [avp(AVPType.RESULT_CODE, ResultCodeValue(3)), avp(AVPType.ASSIGNED_SESSION_ID, 9)],
        ),
    ]
    out = [encode_control(m) for m in msgs]
    out.append(encode_data(tunnel_id, session_id, b"\xff\x03\xc0\x21\x01\x01\x00\x04"))
    out.append(encode_data(tunnel_id, session_id, b"\xff\x03\x00\x21" + bytes(60), ns=1, nr=0))
    return out


def mutate(r: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(r.randint(1, 4)):
        op = r.randrange(4)
        if op == 0 and b:
            b[r.randrange(len(b))] = r.randrange(256)
        elif op == 1 and b:
            del b[r.randrange(len(b)) :]
        elif op == 2:
            b += r.randbytes(r.randint(1, 30))
        elif b:
            i = r.randrange(len(b))
            b[i] ^= 1 << r.randrange(8)
    return bytes(b)


def malformed(r: random.Random, tunnel_id: int, session_id: int) -> bytes:
    """Datagrams that must fail to parse, aimed at the established tunnel."""
    kind = r.randrange(8)
    ctl = 0xC802
    if kind == 0:  # truncated control header
        return struct.pack("!HHH", ctl, 12, tunnel_id)[: r.randint(1, 6)]
    if kind == 1:  # Length beyond the datagram
        return struct.pack("!HHHHHH", ctl, 200, tunnel_id, 0, 0, 0)
    if kind == 2:  # AVP length below 6
        return struct.pack("!HHHHHH", ctl, 20, tunnel_id, 0, 0, 0) + struct.pack(
            "!HHHH", 0x8002, 0, 0, 6
        )
    if kind == 3:  # AVP overrunning the message
        body = struct.pack("!HHHH", 0x8000 | 200, 0, 0, 6)
        return struct.pack("!HHHHHH", ctl, 12 + len(body), tunnel_id, 0, 0, 0) + body
    if kind == 4:  # version 3 header
        return struct.pack("!HHHHHH", 0xC803, 12, tunnel_id, 0, 0, 0)
    if kind == 5:  # first AVP is not a Message Type
        body = struct.pack("!HHHH", 0x8008, 0, 7, 0) + b"xx"
        return struct.pack("!HHHHHH", ctl, 12 + len(body), tunnel_id, 0, 0, 0) + body[:8]
    if kind == 6:  # data message with L set and a wrong length
        return struct.pack("!HHHH", 0x4002, 3, tunnel_id, session_id) + b"\xff\x03"
    # data message with an offset beyond its end
    return struct.pack("!HHHH", 0x0202, tunnel_id, session_id, 500) + b"\xff\x03"


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def raw_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    udp_len = 8 + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + udp_len,
        0,
        0,
        64,
        17,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    return ip + udp


def main(argv: list[str]) -> int:
    mode, server, count, seed, tid = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    r = random.Random(seed)
    sent = 0
    if mode == "other":
        samples = valid_samples(tid, 1)
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(32)]
        for i in range(count):
            random_bytes = i % 3 == 0
            data = r.randbytes(r.randint(0, 200)) if random_bytes else mutate(r, r.choice(samples))
            socks[i % len(socks)].sendto(data, (server, 1701))
            sent += 1
            if i % 200 == 199:
                time.sleep(0.01)  # let the server keep up: we test parsing, not buffer overflow
    else:
        sid, src, sport = int(argv[5]), argv[6], int(argv[7])
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        for _ in range(count):
            raw.sendto(raw_udp(src, sport, server, 1701, malformed(r, tid, sid)), (server, 0))
            sent += 1
            if sent % 200 == 0:
                time.sleep(0.01)
    print(json.dumps({"sent": sent}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
