"""Interop with xl2tpd: its LAC against our LNS, our LAC against its LNS, tunnel auth.

xl2tpd runs with a stand-in pppd that hands every PPP frame to the test, and our side runs
with ``[debug] link = "echo"``, so a frame injected at xl2tpd must come back byte-exact
through real L2TP data messages. Every capture must dissect cleanly in tshark.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.harness import require_tools
from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.xl2tpd import Xl2tpd

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

OURS = "198.18.31.1"
PEER = "198.18.31.2"
SECRET = "interop-tunnel-secret"
WRONG_SECRET = "not-the-tunnel-secret"
TOOLS = ("xl2tpd", "xl2tpd-control", "unshare", "tcpdump", "tshark", "ss")

# L2TP message types (RFC 2661 3.2).
SCCRQ, SCCRP, SCCCN, STOPCCN, ICRQ, ICRP, ICCN, CDN = 1, 2, 3, 4, 10, 11, 12, 14
# RFC 2661 4.4.2: StopCCN result code 4, "Requester is not authorized to establish a
# control channel".
NOT_AUTHORIZED = 4

# PPP frames whose L2TP carriage must be byte-exact: an LCP Configure-Request, and an LCP
# Echo-Request whose data needs async-HDLC escaping on xl2tpd's pty (RFC 1662 7.1).
LCP_CONF_REQ = bytes.fromhex("ff03c021" "0101000e" "010405780506cafebabe")
_ECHO_DATA = bytes(range(0x20)) + b"\x7d\x7e\x7d\x7e\x20"
LCP_ECHO_ESCAPES = bytes.fromhex("ff03c021" "0907") + (8 + len(_ECHO_DATA)).to_bytes(2, "big") \
    + bytes.fromhex("7e7d0011") + _ECHO_DATA
FRAMES = (LCP_CONF_REQ, LCP_ECHO_ESCAPES)


def _hosts(topology: Topology) -> tuple[Netns, Netns]:
    ours = topology.host("ours")
    peer = topology.host("xl2tpd")
    topology.link(ours, f"{OURS}/24", peer, f"{PEER}/24")
    return ours, peer


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def server_config(work: Path, secret: str | None) -> str:
    l2tp = f"secret = {_toml_str(secret)}\n" if secret else ""
    return f"""\
[server]
listen = ["{OURS}"]
port = 1701
hostname = "pyl2tp-lns"
control_socket = {_toml_str(str(work / "server.sock"))}

[l2tp]
{l2tp}hello_interval = 60

[debug]
link = "echo"
"""


def client_config(work: Path, secret: str | None) -> str:
    auth = f"secret = {_toml_str(secret)}\n" if secret else ""
    return f"""\
[client]
server = "{PEER}"
port = 1701
local = "{OURS}"
hostname = "pyl2tp-lac"
user = "interop"
password = "interop-password"
control_socket = {_toml_str(str(work / "client.sock"))}
tunnels = 1
sessions = 1
{auth}
[debug]
link = "echo"
"""


def _established(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in items if item.get("state") == "established"]


def _expect_frame(xl2tpd: Xl2tpd, frame: bytes, timeout: float = 10) -> None:
    """Wait until the stand-in pppd receives exactly `frame`; other frames are skipped."""
    deadline = time.monotonic() + timeout
    others: list[bytes] = []
    while True:
        try:
            got = xl2tpd.recv_frame(max(deadline - time.monotonic(), 0.01))
        except TimeoutError:
            raise AssertionError(f"frame {frame.hex()} not echoed back byte-exact; other "
                                 f"frames: {[f.hex() for f in others]}") from None
        if got == frame:
            return
        others.append(got)


def _messages(pcap: Path, src: str | None = None) -> list[tuple[str, int, str]]:
    """(source, message type, result codes) of every control message in the capture.

    Reads a capture that tcpdump may still be writing, so a cut-short file counts as empty.
    """
    where = f"l2tp.avp.message_type && ip.src == {src}" if src else "l2tp.avp.message_type"
    try:
        rows = tshark_fields(pcap, ["ip.src", "l2tp.avp.message_type", "l2tp.result_code"], where)
    except RuntimeError:
        return []
    return [(ip, int(mtype.split(",")[0]), result) for ip, mtype, result in rows]


def _has_message(pcap: Path, mtype: int, src: str | None = None) -> bool:
    return any(t == mtype for _, t, _ in _messages(pcap, src))


def _dump_logs(*procs: ProductProcess | Xl2tpd) -> None:
    for proc in procs:
        print(f"--- {type(proc).__name__} {proc.role} log\n{proc.log_text()[-6000:]}")


def _auth_avps(pcap: Path) -> dict[int, tuple[str, str, str]]:
    """Per tunnel-setup message type: (source, Challenge, Challenge Response)."""
    rows = tshark_fields(pcap, ["ip.src", "l2tp.avp.message_type", "l2tp.avp.chap_challenge",
                                "l2tp.avp.chap_challenge_response"],
                         "l2tp.avp.message_type <= 3")
    return {int(mtype.split(",")[0]): (ip, chal, resp) for ip, mtype, chal, resp in rows}


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "tunnel-auth"])
def test_xl2tpd_lac_to_our_lns(topology: Topology, tmp_work: Path, auth: bool) -> None:
    require_tools(*TOOLS)
    ours, peer = _hosts(topology)
    secret = SECRET if auth else None
    server = ProductProcess(ours, "server", server_config(tmp_work, secret), tmp_work)
    lac = Xl2tpd(peer, tmp_work / "xl2tpd", role="lac", listen=PEER, lns=f"{OURS}:1701",
                 secret=secret, challenge=auth, hostname="xl2tpd-lac")
    capture = Capture(ours, tmp_work / "lns.pcap", bpf="udp port 1701")
    try:
        with capture:
            server.start()
            lac.start()
            lac.connect()
            hello = lac.wait_hello(20)
            assert hello["tag"] == "lac"
            tunnels = wait_for(lambda: _established(server.tunnels()), 10,
                               what="an established tunnel on our server")
            assert len(tunnels) == 1
            assert tunnels[0]["peer"] == f"{PEER}:1701"
            assert tunnels[0]["hostname"] == "xl2tpd-lac"
            sessions = wait_for(lambda: _established(server.sessions()), 10,
                                what="an established session on our server")
            assert len(sessions) == 1
            assert sessions[0]["tunnel_id"] == tunnels[0]["tunnel_id"]
            for frame in FRAMES:
                lac.send_frame(frame)
                _expect_frame(lac, frame)
            assert _established(server.sessions())[0]["rx_bytes"] > 0

            lac.hangup()  # the stand-in exits, xl2tpd sends CDN
            lac.wait_exit(10)
            wait_for(lambda: not server.sessions(), 15,
                     what="our server dropping the session after the CDN")
            assert _has_message(capture.path, CDN, PEER)
            lac.stop()
            assert server.stop() == 0, "pyl2tp server did not exit cleanly on SIGTERM"
    finally:
        lac.stop()
        server.stop()
        _dump_logs(server, lac)
    assert_no_traceback(server.log_text())
    if auth:
        # RFC 2661 5.1.1: both ends challenge; our SCCRP answers xl2tpd's Challenge and
        # carries ours, which xl2tpd answers in SCCCN.
        avps = _auth_avps(capture.path)
        assert avps[SCCRQ][0] == PEER and avps[SCCRQ][1]
        assert avps[SCCRP][0] == OURS and avps[SCCRP][1] and avps[SCCRP][2]
        assert avps[SCCCN][0] == PEER and avps[SCCCN][2]
        assert "Invalid" not in lac.log_text()
    assert tshark_problems(capture.path, src=OURS) == []


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "tunnel-auth"])
def test_our_lac_to_xl2tpd_lns(topology: Topology, tmp_work: Path, auth: bool) -> None:
    require_tools(*TOOLS)
    ours, peer = _hosts(topology)
    secret = SECRET if auth else None
    lns = Xl2tpd(peer, tmp_work / "xl2tpd", role="lns", listen=PEER, secret=secret,
                 challenge=auth, hostname="xl2tpd-lns")
    client = ProductProcess(ours, "client", client_config(tmp_work, secret), tmp_work)
    capture = Capture(ours, tmp_work / "lac.pcap", bpf="udp port 1701")
    try:
        with capture:
            lns.start()
            client.start()
            hello = lns.wait_hello(20)
            # xl2tpd starts pppd with its LNS addresses once the session is up.
            assert "198.18.30.1:198.18.30.10" in hello["argv"]
            sessions = wait_for(lambda: _established(client.sessions()), 10,
                                what="an established session on our client")
            assert len(sessions) == 1
            tunnels = _established(client.tunnels())
            assert len(tunnels) == 1
            assert tunnels[0]["peer"] == f"{PEER}:1701"
            assert tunnels[0]["hostname"] == "xl2tpd-lns"
            for frame in FRAMES:
                lns.send_frame(frame)
                _expect_frame(lns, frame)

            first = (sessions[0]["tunnel_id"], sessions[0]["session_id"])
            lns.hangup()  # the stand-in exits, xl2tpd sends CDN to our client
            lns.wait_exit(10)
            wait_for(lambda: _has_message(capture.path, CDN, PEER), 10,
                     what="xl2tpd's CDN in the capture")
            # Our client drops the session (or replaces it, if it reconnects).
            wait_for(lambda: first not in {(s["tunnel_id"], s["session_id"])
                                           for s in client.sessions()}, 15,
                     what="our client dropping the session after the CDN")
            assert client.stop() == 0, "pyl2tp client did not exit cleanly on SIGTERM"
    finally:
        client.stop()
        lns.stop()
        _dump_logs(client, lns)
    assert_no_traceback(client.log_text())
    # xl2tpd retransmits a CDN nobody acknowledged: a single CDN means our client acked it.
    assert len([m for m in _messages(capture.path, PEER) if m[1] == CDN]) == 1
    if auth:
        avps = _auth_avps(capture.path)
        assert avps[SCCRP][0] == PEER and avps[SCCRP][1], "xl2tpd did not challenge us"
        assert avps[SCCCN][0] == OURS and avps[SCCCN][2], "our SCCCN has no Challenge Response"
        assert "Invalid" not in lns.log_text()
    assert tshark_problems(capture.path, src=OURS) == []


def test_our_lac_wrong_secret_is_refused(topology: Topology, tmp_work: Path) -> None:
    require_tools(*TOOLS)
    ours, peer = _hosts(topology)
    lns = Xl2tpd(peer, tmp_work / "xl2tpd", role="lns", listen=PEER, secret=SECRET,
                 challenge=True, hostname="xl2tpd-lns")
    client = ProductProcess(ours, "client", client_config(tmp_work, WRONG_SECRET), tmp_work)
    capture = Capture(ours, tmp_work / "lac.pcap", bpf="udp port 1701")
    try:
        with capture:
            lns.start()
            # The client may give up and exit on an auth failure: do not insist on its socket.
            client.start(wait_socket=False)
            # Whichever end finds the Challenge Response wrong ends the tunnel with StopCCN.
            wait_for(lambda: _has_message(capture.path, STOPCCN), 20,
                     what="a StopCCN for the tunnel with the wrong secret")
            with pytest.raises(TimeoutError):
                lns.wait_hello(3)  # no session ever reached xl2tpd's pppd
            if client.returncode is None:
                assert not _established(client.sessions())
                assert not _established(client.tunnels())
    finally:
        client.stop()
        lns.stop()
        _dump_logs(client, lns)
    assert_no_traceback(client.log_text())
    assert not _has_message(capture.path, ICCN), "a session was set up anyway"
    assert tshark_problems(capture.path, src=OURS) == []


def test_xl2tpd_lac_wrong_secret_is_refused(topology: Topology, tmp_work: Path) -> None:
    require_tools(*TOOLS)
    ours, peer = _hosts(topology)
    server = ProductProcess(ours, "server", server_config(tmp_work, SECRET), tmp_work)
    # No `challenge = yes` on xl2tpd: it does not check our response, but answers our
    # Challenge (with the wrong secret) in SCCCN, so refusing is up to our server.
    lac = Xl2tpd(peer, tmp_work / "xl2tpd", role="lac", listen=PEER, lns=f"{OURS}:1701",
                 secret=WRONG_SECRET, challenge=False, hostname="xl2tpd-lac")
    capture = Capture(ours, tmp_work / "lns.pcap", bpf="udp port 1701")
    try:
        with capture:
            server.start()
            lac.start()
            lac.connect()
            wait_for(lambda: _has_message(capture.path, STOPCCN, OURS), 20,
                     what="our server's StopCCN for the wrong Challenge Response")
            with pytest.raises(TimeoutError):
                lac.wait_hello(2)
            assert not server.sessions()
            assert not _established(server.tunnels())
    finally:
        lac.stop()
        server.stop()
        _dump_logs(server, lac)
    assert_no_traceback(server.log_text())
    # RFC 2661 4.4.2: StopCCN Result Code 4, "not authorized".
    stops = tshark_fields(capture.path, ["l2tp.result_code"],
                          f"ip.src == {OURS} && l2tp.avp.message_type == {STOPCCN}")
    assert stops and all(row[0].split(",")[0] == str(NOT_AUTHORIZED) for row in stops), stops
    assert not _has_message(capture.path, ICRP, OURS), "our server accepted a call anyway"
    assert tshark_problems(capture.path, src=OURS) == []
