"""A running server under a hail of bad datagrams keeps serving its established tunnel."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.harness.netns import Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

SENDER = Path(__file__).with_name("fuzz_sender.py")


def test_server_survives_fuzzing(topology: Topology, tmp_path: Path) -> None:
    srv = topology.host("srv")
    cli = topology.host("cli")
    atk = topology.host("atk")
    topology.link(srv, "198.18.0.1/24", cli, "198.18.0.2/24")
    topology.link(srv, "198.18.1.1/24", atk, "198.18.1.2/24")
    server = ProductProcess(
        srv,
        "server",
        f'[server]\nlisten = ["0.0.0.0"]\ncontrol_socket = "{tmp_path}/server.sock"\n'
        '[l2tp]\nhello_interval = 1\n[debug]\nlink = "echo"\n',
        tmp_path,
    )
    client = ProductProcess(
        cli,
        "client",
        f'[client]\nserver = "198.18.0.1"\nlocal_port = 1701\nsessions = 2\n'
        f'hello_interval = 1\ncontrol_socket = "{tmp_path}/client.sock"\nreconnect = false\n'
        '[debug]\nlink = "null"\n',
        tmp_path,
    )
    server.start()
    client.start()
    wait_for(
        lambda: len([s for s in server.sessions() if s["state"] == "established"]) == 2,
        20,
        what="two sessions",
    )
    (tunnel,) = server.tunnels()
    session = server.sessions()[0]
    tid, sid = tunnel["tunnel_id"], session["session_id"]

    other = atk.run(
        [sys.executable, str(SENDER), "other", "198.18.1.1", "10000", "1", str(tid)], timeout=120
    )
    assert json.loads(other.stdout)["sent"] == 10000
    spoof = cli.run(
        [
            sys.executable,
            str(SENDER),
            "spoof",
            "198.18.0.1",
            "2000",
            "2",
            str(tid),
            str(sid),
            "198.18.0.2",
            "1701",
        ],
        timeout=120,
    )
    assert json.loads(spoof.stdout)["sent"] == 2000

    # The tunnel survives HELLO rounds after the storm, same ids, sessions intact.
    time.sleep(3)
    tunnels = [t for t in server.tunnels() if t["tunnel_id"] == tid]
    assert tunnels and tunnels[0]["state"] == "established", server.tunnels()
    assert tunnels[0]["sessions"] == 2
    client_tunnels = client.tunnels()
    assert len(client_tunnels) == 1 and client_tunnels[0]["peer_tunnel_id"] == tid
    assert client_tunnels[0]["state"] == "established"
    assert client.returncode is None
    stats = server.ctl("status")["stats"]
    dropped = (
        stats["malformed"]
        + stats["unknown_tunnel"]
        + stats["wrong_peer"]
        + stats["not_sccrq"]
        + stats["unknown_session"]
    )
    # Nearly all 12,000 reached the server (a few may still be lost in the kernel)...
    assert stats["datagrams"] >= 11_500, stats
    # ...the spoofed ones are all malformed, and most random ones are dropped and counted.
    assert stats["malformed"] >= 2000, stats
    assert stats["wrong_peer"] > 0, stats
    assert dropped >= 8000, stats
    assert_no_traceback(server.log_text())
    assert "Traceback" not in server.log_text()
