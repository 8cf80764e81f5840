"""tshark as an independent dissector for our IPv6CP (scapy has none), LCP and IPCP.

The packets of real negotiations between our own objects travel in L2TP data messages in
a pcap; tshark must find no malformed packet and no expert warning, and must read back the
fields we wrote.
"""

from __future__ import annotations

import random
import shutil
from collections import deque
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from tests.harness.capture import tshark_fields, tshark_problems, write_udp_pcap

from pyl2tp.ppp.fsm import NegotiationFSM, State
from pyl2tp.ppp.ipcp import IPCP, IPCPConfig
from pyl2tp.ppp.ipv6cp import IPv6CP, IPv6CPConfig
from pyl2tp.ppp.lcp import LCP, LCPConfig
from pyl2tp.wire.l2tp_data import encode_data
from pyl2tp.wire.ppp import (
    Code,
    CPPacket,
    PPPProtocol,
    decode_cp,
    decode_frame,
    decode_options,
    encode_cp,
    encode_frame,
)

TSHARK = shutil.which("tshark")
pytestmark = [
    pytest.mark.unit,
    pytest.mark.timeout(120),
    pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)"),
]

LAC, LNS = "198.18.0.2", "198.18.0.1"
TUNNEL, SESSION = {LAC: 7, LNS: 3}, {LAC: 11, LNS: 5}


class Quiet:
    def this_layer_up(self, fsm: NegotiationFSM) -> None: ...
    def this_layer_down(self, fsm: NegotiationFSM) -> None: ...
    def this_layer_started(self, fsm: NegotiationFSM) -> None: ...
    def this_layer_finished(self, fsm: NegotiationFSM) -> None: ...


def _negotiate(protocol: int, server: Any, client: Any, queue: deque[tuple[int, bytes]],
               out: list[tuple[str, bytes]]) -> None:
    """Run a negotiation; record (sender address, PPP frame) for every packet."""
    ends = [server, client]
    for x in ends:
        x.fsm.up(0)
        x.fsm.open(0)
    while queue:
        to, payload = queue.popleft()
        out.append((LNS if to == 1 else LAC, encode_frame(protocol, payload)))
        ends[to].fsm.receive(payload, 0)
    assert server.fsm.state == client.fsm.state == State.OPENED


def _frames() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    rng = random.Random(9).randbytes
    q: deque[tuple[int, bytes]] = deque()

    def to(end: int) -> Any:
        return lambda payload: q.append((end, payload))

    srv = LCP(LCPConfig(auth=[b"\xc2\x23\x81", b"\xc0\x23"], echo_interval=1), Quiet(), to(1),
              rng)
    cli = LCP(LCPConfig(mru=1450, accept_auth=[b"\xc0\x23"]), Quiet(), to(0), rng)
    _negotiate(PPPProtocol.LCP, srv, cli, q, out)
    srv.handle_timer(1)  # Echo-Request, then the Echo-Reply
    cli.protocol_reject(0x80FD, b"\x01\x01\x00\x04", 1)
    while q:
        end, payload = q.popleft()
        out.append((LNS if end == 1 else LAC, encode_frame(PPPProtocol.LCP, payload)))
        [srv, cli][end].fsm.receive(payload, 1)
    dns = [IPv4Address("198.18.0.53"), IPv4Address("198.18.0.54")]
    _negotiate(PPPProtocol.IPCP,
               IPCP(IPCPConfig(local=IPv4Address("198.18.100.1"),
                               peer=IPv4Address("198.18.100.10"), dns=dns), Quiet(), to(1)),
               IPCP(IPCPConfig(request_dns=True), Quiet(), to(0)), q, out)
    # IPv6CP: same configured identifier at both ends, so Naks are exercised too.
    same = bytes.fromhex("0000000000000001")
    v6s = IPv6CP(IPv6CPConfig(interface_id=same), Quiet(), to(1), rng)
    v6c = IPv6CP(IPv6CPConfig(interface_id=same), Quiet(), to(0), rng)
    _negotiate(PPPProtocol.IPV6CP, v6s, v6c, q, out)
    comp = encode_cp(CPPacket(Code.CONFIGURE_REQUEST, 77,
                              bytes.fromhex("010a0011223344556677" "0204004f")))
    v6s.fsm.receive(comp, 2)  # -> Configure-Reject of IPv6-Compression-Protocol
    v6s.fsm.close(3, b"bye")  # Terminate-Request
    while q:
        end, payload = q.popleft()
        out.append((LNS if end == 1 else LAC, encode_frame(PPPProtocol.IPV6CP, payload)))
        [v6s, v6c][end].fsm.receive(payload, 3)
    return out


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, bytes]]]:
    frames = _frames()
    datagrams = []
    for src, frame in frames:
        dst = LAC if src == LNS else LNS
        msg = encode_data(TUNNEL[dst], SESSION[dst], frame)
        datagrams.append((src, 1701, dst, 1701, msg))
    path = write_udp_pcap(tmp_path_factory.mktemp("ppp") / "ppp.pcap", datagrams)
    return path, frames


def test_capture_dissects_cleanly(capture: tuple[Path, list[tuple[str, bytes]]]) -> None:
    path, frames = capture
    assert tshark_problems(path) == []
    rows = tshark_fields(path, ["frame.protocols", "ppp.protocol", "ppp.code",
                                "ppp.identifier", "ppp.length"])
    assert len(rows) == len(frames)
    for (stack, proto, code, ident, length), (_, frame) in zip(rows, frames, strict=True):
        protocol, payload = decode_frame(frame)
        packet = decode_cp(payload)
        name = {PPPProtocol.LCP: "lcp", PPPProtocol.IPCP: "ipcp",
                PPPProtocol.IPV6CP: "ipv6cp"}[PPPProtocol(protocol)]
        assert f"l2tp:ppp:{name}" in stack, stack
        # A Protocol-Reject repeats the fields of the packet inside it: take the first.
        first = [int(v.split(",")[0], 0) for v in (proto, code, ident, length)]
        assert first == [protocol, packet.code, packet.identifier, 4 + len(packet.data)]


def _ints(column: str) -> list[int]:
    return [int(v, 0) for v in column.split(",") if v]


def test_ipv6cp_fields(capture: tuple[Path, list[tuple[str, bytes]]]) -> None:
    path, frames = capture
    # tshark 4.0 dissects IPv6CP's Interface-Identifier under ipv6cp.* and its
    # IPv6-Compression-Protocol option with the shared IPCP option fields.
    rows = tshark_fields(path, ["ppp.code", "ipv6cp.opt.type", "ipv6cp.opt.length",
                                "ipv6cp.interface_identifier", "ipcp.opt.type",
                                "ipcp.opt.compress_proto"], "ipv6cp")
    ours = [decode_cp(decode_frame(f)[1]) for _, f in frames
            if decode_frame(f)[0] == PPPProtocol.IPV6CP]
    assert len(rows) == len(ours) >= 6
    codes = set()
    for (code, types, lengths, iids, comp_types, comp_protos), packet in zip(rows, ours,
                                                                              strict=True):
        codes.add(packet.code)
        assert int(code, 0) == packet.code
        if packet.code > Code.CONFIGURE_REJECT:
            continue
        opts = decode_options(packet.data)
        ids = [o for o in opts if o.type == 1]
        comps = [o for o in opts if o.type == 2]
        assert len(ids) + len(comps) == len(opts)
        assert _ints(types) == [1] * len(ids)
        assert _ints(lengths) == [10] * len(ids)
        assert [v.replace(":", "") for v in iids.split(",") if v] == [o.data.hex() for o in ids]
        assert _ints(comp_types) == [2] * len(comps)
        assert _ints(comp_protos) == [int.from_bytes(o.data[:2], "big") for o in comps]
    assert {1, 2, 3, 4, 5, 6} <= codes


def test_lcp_and_ipcp_fields(capture: tuple[Path, list[tuple[str, bytes]]]) -> None:
    path, _ = capture
    lcp = tshark_fields(path, ["lcp.opt.mru", "lcp.opt.auth_protocol", "lcp.opt.magic_number"],
                        "lcp && ppp.code == 1 && !ccp")
    assert any(row[0] == "1450" for row in lcp)  # the client's MRU
    assert any(int(row[1] or "0", 0) == 0xC023 for row in lcp)  # PAP, after the Nak
    assert all(row[2] for row in lcp)
    echo = tshark_fields(path, ["lcp.magic_number"], "lcp && ppp.code == 10")
    assert len(echo) == 1 and int(echo[0][0], 0) != 0
    rej = tshark_fields(path, ["lcp.rej_proto"], "lcp && ppp.code == 8")
    assert [int(r[0], 0) for r in rej] == [0x80FD]
    ipcp = tshark_fields(path, ["ipcp.opt.ip_address", "ipcp.opt.pri_dns_address",
                                "ipcp.opt.sec_dns_address"], "ipcp && ppp.code == 2")
    assert ["198.18.100.10", "198.18.0.53", "198.18.0.54"] in ipcp
    assert ["198.18.100.1", "", ""] in ipcp
