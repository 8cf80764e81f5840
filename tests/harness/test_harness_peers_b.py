"""Self-test of the peer harness (part B): FreeRADIUS + l2tpns, and SoftEther.

No product code: a hand-built SCCRQ (RFC 2661 6.1) goes from a LAC namespace over a veth
link to the real LNS, which must answer with an SCCRP; the test then completes the tunnel
(SCCCN) and clears it (StopCCN) so nothing is left open.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import require_tools
from tests.harness.l2tpns import L2tpns, pool_lines
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.radius import FreeRadius, users_file
from tests.harness.softether import BINARY as SOFTETHER_BINARY
from tests.harness.softether import (
    LCP_CONFIGURE_REQUEST,
    SoftEther,
    send_ppp_as,
    socket_in,
    udp_datagram,
)

pytestmark = [pytest.mark.timeout(90)]

LNS_IP = "198.18.40.1"
LAC_IP = "198.18.40.2"

# RFC 2661 3.1: T=1 L=1 S=1, version 2.
_CONTROL_FLAGS = 0xC802
_HEADER = struct.Struct("!HHHHHH")  # flags, length, tunnel, session, Ns, Nr
_AVP = struct.Struct("!HHH")  # M|H|length, vendor, attribute
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

# RFC 2661 3.2 message types; 4.4 attribute numbers.
SCCRQ, SCCRP, SCCCN, STOPCCN, ICRQ, ICRP, ICCN = 1, 2, 3, 4, 10, 11, 12
AVP_MESSAGE_TYPE, AVP_RESULT_CODE, AVP_PROTOCOL_VERSION, AVP_FRAMING_CAPS = 0, 1, 2, 3
AVP_HOST_NAME, AVP_TUNNEL_ID, AVP_RECEIVE_WINDOW = 7, 9, 10
AVP_SESSION_ID, AVP_CALL_SERIAL, AVP_FRAMING_TYPE, AVP_TX_SPEED = 14, 15, 19, 24


def avp(attribute: int, value: bytes, mandatory: bool = True) -> bytes:
    """One IETF AVP (RFC 2661 4.1)."""
    return _AVP.pack((0x8000 if mandatory else 0) | (6 + len(value)), 0, attribute) + value


def control(tunnel: int, session: int, ns: int, nr: int, avps: bytes = b"") -> bytes:
    """A control message (a ZLB when ``avps`` is empty)."""
    return _HEADER.pack(_CONTROL_FLAGS, 12 + len(avps), tunnel, session, ns, nr) + avps


@dataclass(slots=True)
class Control:
    """A received control message: header fields and IETF AVPs by attribute."""

    tunnel: int
    session: int
    ns: int
    nr: int
    avps: dict[int, bytes]

    @property
    def message_type(self) -> int | None:
        value = self.avps.get(AVP_MESSAGE_TYPE)
        return _U16.unpack(value)[0] if value is not None and len(value) == 2 else None


def parse_control(data: bytes) -> Control:
    """Parse a control message that has length and sequence fields (all of them must)."""
    flags, length, tunnel, session, ns, nr = _HEADER.unpack_from(data)
    assert flags & 0xC80F == _CONTROL_FLAGS, f"not a v2 control message: {flags:#06x}"
    assert length == len(data), f"length field {length}, datagram {len(data)}"
    avps: dict[int, bytes] = {}
    offset = _HEADER.size
    while offset < length:
        bits, vendor, attribute = _AVP.unpack_from(data, offset)
        size = bits & 0x3FF
        assert size >= 6 and offset + size <= length, f"bad AVP length {size} at {offset}"
        if vendor == 0:
            avps[attribute] = data[offset + 6 : offset + size]
        offset += size
    return Control(tunnel, session, ns, nr, avps)


def message(kind: int, *avps: bytes) -> bytes:
    """The AVPs of a control message of type ``kind``."""
    return avp(AVP_MESSAGE_TYPE, _U16.pack(kind)) + b"".join(avps)


def udp_socket_in(ns: Netns, address: str) -> socket.socket:
    """A UDP socket in ``ns`` bound to (address, any port)."""
    sock = socket_in(ns, socket.SOCK_DGRAM)
    sock.bind((address, 0))
    return sock


class HandLac:
    """A few lines of LAC: one tunnel, at most one session, ZLB acks, no retransmission."""

    def __init__(self, sock: socket.socket, server: str, tunnel: int) -> None:
        self.sock = sock
        self.peer = (server, 1701)
        self.tunnel = tunnel
        self.peer_tunnel = 0
        self.ns = 0  # RFC 2661 5.8: next Ns we send
        self.nr = 0  # next Ns we expect
        self.data: list[bytes] = []  # data messages received (PPP)

    def send(self, avps: bytes, session: int = 0) -> None:
        """Send a control message (a ZLB when ``avps`` is empty; it takes no Ns)."""
        self.sock.sendto(control(self.peer_tunnel, session, self.ns, self.nr, avps), self.peer)
        if avps:
            self.ns = (self.ns + 1) & 0xFFFF

    def receive(self, deadline: float) -> Control | None:
        """The next control message (ZLBs too), or None at the deadline.

        Messages with AVPs are acked with a ZLB; data messages are kept in ``data``.
        """
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                datagram = self.sock.recv(4096)
            except TimeoutError:
                return None
            if not datagram[0] & 0x80:
                self.data.append(datagram)
                continue
            msg = parse_control(datagram)
            if msg.message_type is not None:
                if msg.ns == self.nr:
                    self.nr = (self.nr + 1) & 0xFFFF
                self.send(b"")
            return msg
        return None

    def expect(self, kind: int, timeout: float = 5) -> Control:
        """Wait for a control message of type ``kind``."""
        deadline = time.monotonic() + timeout
        while (msg := self.receive(deadline)) is not None:
            if msg.message_type == kind:
                return msg
        raise AssertionError(f"no message type {kind} from {self.peer[0]} in {timeout} s")

    def open(self) -> Control:
        """SCCRQ -> SCCRP, then SCCCN; returns the SCCRP."""
        self.send(message(
            SCCRQ,
            avp(AVP_PROTOCOL_VERSION, bytes([1, 0])),
            avp(AVP_FRAMING_CAPS, _U32.pack(3)),
            avp(AVP_HOST_NAME, b"harness-lac"),
            avp(AVP_TUNNEL_ID, _U16.pack(self.tunnel)),
            avp(AVP_RECEIVE_WINDOW, _U16.pack(4)),
        ))
        sccrp = self.expect(SCCRP)  # from the LNS's port 1701 (both peers answer from it)
        self.peer_tunnel = _U16.unpack(sccrp.avps[AVP_TUNNEL_ID])[0]
        self.send(message(SCCCN))
        return sccrp

    def call(self, session: int) -> int:
        """ICRQ -> ICRP, then ICCN (RFC 2661 7.2); returns the peer's session id."""
        self.send(message(
            ICRQ, avp(AVP_SESSION_ID, _U16.pack(session)), avp(AVP_CALL_SERIAL, _U32.pack(1))
        ))
        peer_session: int = _U16.unpack(self.expect(ICRP).avps[AVP_SESSION_ID])[0]
        self.send(message(
            ICCN, avp(AVP_TX_SPEED, _U32.pack(100_000_000)), avp(AVP_FRAMING_TYPE, _U32.pack(1))
        ), session=peer_session)
        return peer_session

    def close(self) -> bool:
        """StopCCN (result 1, general request to clear); True once the peer acked it."""
        self.send(message(
            STOPCCN, avp(AVP_RESULT_CODE, _U16.pack(1)), avp(AVP_TUNNEL_ID, _U16.pack(self.tunnel))
        ))
        deadline = time.monotonic() + 3
        while (msg := self.receive(deadline)) is not None:
            if msg.nr == self.ns:
                # RFC 2661 5.7: a peer may answer with its own StopCCN; receive() acked it.
                return True
        return False


def check_sccrp(sccrp: Control, our_tunnel: int) -> int:
    """Assert the SCCRP is one (RFC 2661 6.2) and return the peer's tunnel id."""
    assert sccrp.message_type == SCCRP
    assert sccrp.tunnel == our_tunnel, "SCCRP not addressed to our Assigned Tunnel ID"
    assert (sccrp.ns, sccrp.nr) == (0, 1)
    assert sccrp.avps[AVP_PROTOCOL_VERSION] == bytes([1, 0])
    peer_tunnel: int = _U16.unpack(sccrp.avps[AVP_TUNNEL_ID])[0]
    assert peer_tunnel != 0
    return peer_tunnel


def _lns_and_lac(topo: Topology) -> tuple[Netns, Netns]:
    lns, lac = topo.host("lns"), topo.host("lac")
    topo.link(lns, f"{LNS_IP}/24", lac, f"{LAC_IP}/24")
    return lns, lac


@pytest.mark.peer
def test_l2tpns_answers_sccrq(topology: Topology, tmp_path: Path) -> None:
    require_tools("l2tpns", "freeradius", "radclient")
    lns, lac = _lns_and_lac(topology)
    radius = FreeRadius(lns, tmp_path / "radius", [("alice", "wonder", "198.18.41.11")])
    l2tpns = L2tpns(lns, tmp_path / "l2tpns", bind=LNS_IP, secret=None, radius=radius)
    try:
        radius.start()
        assert radius.answers(("alice", "wonder"))
        assert not radius.answers(("alice", "wrong"))
        l2tpns.start()
        assert l2tpns.pid is not None
        with udp_socket_in(lac, LAC_IP) as sock:
            lac_side = HandLac(sock, LNS_IP, tunnel=4321)
            sccrp = lac_side.open()
            assert lac_side.close(), "l2tpns did not ack our StopCCN"
        peer_tunnel = check_sccrp(sccrp, 4321)
        assert sccrp.avps[AVP_HOST_NAME] == b"l2tpns"
        log = l2tpns.log_text()
        assert f"New tunnel from {LAC_IP}:" in log
        assert "Remote tunnel id = 4321" in log
        assert "Received StopCCN" in log
        wait_for(lambda: f"Shutting down tunnel {peer_tunnel}" in l2tpns.log_text(), 5,
                 what="l2tpns to clear the tunnel")
    finally:
        l2tpns.stop()
        radius.stop()
    assert l2tpns.pid is None and radius.pid is None


@pytest.mark.peer
def test_softether_answers_sccrq(topology: Topology, tmp_path: Path) -> None:
    require_tools("vpncmd", "unshare", "nsenter", "ss")
    if not SOFTETHER_BINARY.exists():
        pytest.skip(f"not installed: {SOFTETHER_BINARY}")
    lns, lac = _lns_and_lac(topology)
    server = SoftEther(lns, tmp_path / "softether", listen=LNS_IP)
    try:
        server.start()
        assert {500, 4500, 1701} <= server.udp_ports()
        # One tunnel at a time (the build's two-tunnel bug): open, clear, then the next.
        with udp_socket_in(lac, LAC_IP) as sock:
            lac_side = HandLac(sock, LNS_IP, tunnel=1111)
            check_sccrp(lac_side.open(), 1111)
            assert lac_side.close(), "SoftEther did not ack our StopCCN"
        with udp_socket_in(lac, LAC_IP) as sock:
            lac_side = HandLac(sock, LNS_IP, tunnel=2222)
            sccrp = lac_side.open()
            check_sccrp(sccrp, 2222)
            assert sccrp.avps[AVP_RECEIVE_WINDOW] == _U16.pack(16)
            peer_session = lac_side.call(session=77)
            # Passive PPP: nothing until the client speaks; send_ppp_as speaks for sock.
            time.sleep(1.0)
            while lac_side.receive(time.monotonic() + 0.1) is not None:
                pass
            assert lac_side.data == []
            send_ppp_as(lac, sock.getsockname(), (LNS_IP, 1701), lac_side.peer_tunnel,
                        peer_session, LCP_CONFIGURE_REQUEST)
            deadline = time.monotonic() + 3
            while len(lac_side.data) < 2 and time.monotonic() < deadline:
                lac_side.receive(min(deadline, time.monotonic() + 0.2))
            lcp = [d[8:] for d in lac_side.data if d[8:12] == bytes.fromhex("ff03c021")]
            assert any(frame[4] == 2 for frame in lcp), "no LCP Configure-Ack from SoftEther"
            assert any(frame[4] == 1 for frame in lcp), "no LCP Configure-Request"
            assert lac_side.close(), "SoftEther did not ack our StopCCN"
        settings = server.admin("IPsecGet", hub=False)
        assert re.search(r"Raw L2TP Server Function Enabled\s*\|Yes", settings)
        assert re.search(r"L2TP over IPsec Server Function Enabled\s*\|Yes", settings)
        assert "SoftEther VPN Server" in server.log_text()
    finally:
        server.stop()
    assert server.pid is None


@pytest.mark.unit
def test_helpers_without_peers() -> None:
    """The codecs and config writers the harness relies on (no root needed)."""
    msg = parse_control(control(0, 0, 0, 0, message(SCCRQ, avp(AVP_TUNNEL_ID, _U16.pack(77)))))
    assert msg.message_type == SCCRQ and msg.avps[AVP_TUNNEL_ID] == _U16.pack(77)
    assert (msg.tunnel, msg.ns, msg.nr) == (0, 0, 0)
    assert pool_lines("198.18.41.10-198.18.41.50") == [
        "198.18.41.10/31", "198.18.41.12/30", "198.18.41.16/28", "198.18.41.32/28",
        "198.18.41.48/31", "198.18.41.50",
    ]
    assert pool_lines("198.18.41.128/28") == ["198.18.41.128/28"]
    text = users_file([("bob", 'p"w', "198.18.41.10"), ("eve", "x", None)])
    assert '"bob"\tCleartext-Password := "p\\"w"\n\tFramed-IP-Address = 198.18.41.10\n' in text
    assert '"eve"\tCleartext-Password := "x"\n\n' in text
    # The UDP checksum of send_ppp_as, checked against scapy as an independent encoder.
    from scapy.layers.inet import IP, UDP

    payload = LCP_CONFIGURE_REQUEST + b"x"  # odd length exercises the padding
    ours = udp_datagram((LAC_IP, 40000), (LNS_IP, 1701), payload)
    theirs = bytes(IP(src=LAC_IP, dst=LNS_IP) / UDP(sport=40000, dport=1701) / payload)[20:]
    assert ours == theirs
