"""Our client and our server in two namespaces: tunnels, sessions, auth, HELLO, teardown."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from tests.harness.capture import Capture, tshark_fields, tshark_problems
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback

pytestmark = [pytest.mark.netns, pytest.mark.timeout(120)]

SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
DRIVER = Path(__file__).with_name("lac_driver.py")


def server_toml(work: Path, secret: str | None, **l2tp: object) -> str:
    lines = [
        "[server]",
        f'listen = ["{SERVER_IP}"]',
        'hostname = "it-lns"',
        f'control_socket = "{work}/server.sock"',
        "[l2tp]",
    ]
    if secret is not None:
        lines.append(f'secret = "{secret}"')
    lines += [f"{k} = {json.dumps(v)}" for k, v in l2tp.items()]
    lines += ["[debug]", 'link = "echo"']
    return "\n".join(lines) + "\n"


def client_toml(
    work: Path, secret: str | None, tunnels: int, sessions: int, **extra: object
) -> str:
    lines = [
        "[client]",
        f'server = "{SERVER_IP}"',
        'hostname = "it-lac"',
        f'control_socket = "{work}/client.sock"',
        f"tunnels = {tunnels}",
        f"sessions = {sessions}",
    ]
    if secret is not None:
        lines.append(f'secret = "{secret}"')
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    lines += ["[debug]", 'link = "null"']  # L2TP only: PPP has its own tests
    return "\n".join(lines) + "\n"


def two_hosts(topology: Topology) -> tuple[Netns, Netns]:
    srv = topology.host("srv")
    cli = topology.host("cli")
    topology.link(srv, f"{SERVER_IP}/24", cli, f"{CLIENT_IP}/24")
    return srv, cli


def established(proc: ProductProcess) -> int:
    return sum(1 for s in proc.sessions() if s["state"] == "established")


@pytest.mark.parametrize("secret", [None, "tunnel-secret"], ids=["noauth", "auth"])
def test_three_tunnels_ten_sessions_each(
    topology: Topology, tmp_path: Path, secret: str | None
) -> None:
    srv_ns, cli_ns = two_hosts(topology)
    server = ProductProcess(srv_ns, "server", server_toml(tmp_path, secret), tmp_path)
    client = ProductProcess(cli_ns, "client", client_toml(tmp_path, secret, 3, 10), tmp_path)
    with Capture(srv_ns, tmp_path / "run.pcap", bpf="udp port 1701") as cap:
        server.start()
        client.start()
        wait_for(lambda: established(server) == 30, 30, what="30 sessions on the server")
        wait_for(lambda: established(client) == 30, 10, what="30 sessions on the client")
        tunnels = server.tunnels()
        assert len(tunnels) == 3
        assert all(t["state"] == "established" and t["sessions"] == 10 for t in tunnels)
        assert all(t["hostname"] == "it-lac" for t in tunnels)
        assert len({t["tunnel_id"] for t in tunnels}) == 3
        sessions = server.sessions()
        assert len({(s["tunnel_id"], s["session_id"]) for s in sessions}) == 30
        assert all(s["peer"].startswith(CLIENT_IP + ":") for s in sessions)
        client.stop()
        wait_for(lambda: server.sessions() == [], 10, what="sessions freed after StopCCN")
    assert_no_traceback(server.log_text())
    assert_no_traceback(client.log_text())
    assert tshark_problems(cap.path, src=SERVER_IP) == []
    assert tshark_problems(cap.path, src=CLIENT_IP) == []
    if secret is not None:
        challenges = tshark_fields(
            cap.path, ["l2tp.avp.chap_challenge_response"], "l2tp.avp.type == 13"
        )
        assert len(challenges) >= 6  # a response in every SCCRP and every SCCCN


def test_library_client_sessions_carry_frames(topology: Topology, tmp_path: Path) -> None:
    srv_ns, cli_ns = two_hosts(topology)
    server = ProductProcess(srv_ns, "server", server_toml(tmp_path, "s3"), tmp_path)
    server.start()
    out = cli_ns.run(
        [sys.executable, str(DRIVER), SERVER_IP, "2", "5", "20", "s3"], timeout=60, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"sessions": 10, "sent": 200, "echoed": 200}
    assert_no_traceback(server.log_text())


def test_wrong_secret_is_refused(topology: Topology, tmp_path: Path) -> None:
    srv_ns, cli_ns = two_hosts(topology)
    server = ProductProcess(srv_ns, "server", server_toml(tmp_path, "right"), tmp_path)
    client = ProductProcess(cli_ns, "client", client_toml(tmp_path, "wrong", 1, 1), tmp_path)
    with Capture(srv_ns, tmp_path / "run.pcap", bpf="udp port 1701") as cap:
        server.start()
        client.start(wait_socket=False)
        wait_for(lambda: client.returncode is not None, 20, what="the client to give up")
    assert client.returncode == 3, client.log_text()
    assert "refused" in client.log_text()
    assert "authentication failed" in client.log_text()
    assert established(server) == 0
    # The client found the server's Challenge Response wrong: StopCCN, Result Code 4.
    rows = tshark_fields(cap.path, ["ip.src", "l2tp.result_code"], "l2tp.avp.message_type == 4")
    assert rows and rows[0][0] == CLIENT_IP and rows[0][1] == "4", rows
    assert_no_traceback(server.log_text())


def test_server_refuses_client_with_wrong_secret_with_stopccn_4(
    topology: Topology, tmp_path: Path
) -> None:
    """No challenge from the client side: the server's own challenge catches the wrong secret."""
    srv_ns, cli_ns = two_hosts(topology)
    server = ProductProcess(srv_ns, "server", server_toml(tmp_path, "right"), tmp_path)
    server.start()
    with Capture(srv_ns, tmp_path / "run.pcap", bpf="udp port 1701") as cap:
        # The library client with a wrong secret answers the server's challenge wrongly,
        # but first it checks the server's response; so run the driver without a secret:
        # it then cannot answer the server's challenge at all.
        out = cli_ns.run(
            [sys.executable, str(DRIVER), SERVER_IP, "1", "1", "1"], timeout=60, check=False
        )
    assert out.returncode != 0
    rows = tshark_fields(cap.path, ["ip.src", "l2tp.result_code"], "l2tp.avp.message_type == 4")
    assert rows and rows[0][1] == "4", rows
    wait_for(lambda: server.sessions() == [], 5, what="no session on the server")


def test_killed_client_is_detected_by_hello(topology: Topology, tmp_path: Path) -> None:
    srv_ns, cli_ns = two_hosts(topology)
    timers = {"hello_interval": 2, "retransmit_initial": 0.5, "retransmit_cap": 1, "max_retries": 3}
    server = ProductProcess(srv_ns, "server", server_toml(tmp_path, None, **timers), tmp_path)
    client = ProductProcess(cli_ns, "client", client_toml(tmp_path, None, 2, 5), tmp_path)
    server.start()
    client.start()
    wait_for(lambda: established(server) == 10, 20, what="10 sessions")
    client.stop(signal.SIGKILL)
    # hello after 2 s, retransmits at +0.5, +1, +1, give up after the third: about 5 s.
    wait_for(lambda: server.tunnels() == [], 20, what="the server to free both tunnels")
    assert server.sessions() == []
    status = server.ctl("status")
    assert status["tunnels"] == 0 and status["sessions"] == 0
    assert "peer stopped acknowledging" in server.log_text()
    assert_no_traceback(server.log_text())


def test_client_reconnects_after_server_restart(topology: Topology, tmp_path: Path) -> None:
    srv_ns, cli_ns = two_hosts(topology)
    fast = {"hello_interval": 1, "retransmit_initial": 0.3, "retransmit_cap": 0.5, "max_retries": 2}
    server = ProductProcess(srv_ns, "server", server_toml(tmp_path, None), tmp_path)
    client = ProductProcess(
        cli_ns, "client", client_toml(tmp_path, None, 1, 2, reconnect_initial=0.5, **fast), tmp_path
    )
    server.start()
    client.start()
    wait_for(lambda: established(server) == 2, 20, what="2 sessions")
    server.stop(signal.SIGKILL)
    wait_for(lambda: established(client) == 0, 15, what="the client to notice the dead server")
    server2 = ProductProcess(srv_ns, "server", server_toml(tmp_path, None), tmp_path / "again")
    server2.start()
    wait_for(lambda: established(server2) == 2, 30, what="the client to come back")
    assert_no_traceback(client.log_text())
