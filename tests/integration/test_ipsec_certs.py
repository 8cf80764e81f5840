"""Our client against our server with IKEv1 RSA signatures (X.509 certificates).

A test CA made here with `cryptography` issues the server's and the client's
certificates; the tunnel comes up and pings through. A client certificate from another
CA is refused by the server with a clear log line, and the client gives up.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness import require_tools
from tests.harness.netns import Topology, wait_for
from tests.harness.pki import Pair, make_cert, write_ca, write_pair
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.integration.ipsec_env import (
    ipsec_client_toml,
    ipsec_server_toml,
    ipsec_status,
    wait_ipsec_up,
    wait_up,
)
from tests.integration.ppp_env import CLIENT_IP, POOL_LOCAL, SERVER_IP, User, ping, tun_name

pytestmark = [pytest.mark.netns, pytest.mark.timeout(180)]

ALICE = User("alice", "alice-password")
Start = Callable[[Pair], tuple[ProductProcess, ProductProcess]]


@pytest.fixture
def start(topology: Topology, tmp_path: Path) -> Start:
    """Server with a certificate from the test CA; the client with the one given."""
    require_tools("ping")
    ca = make_cert("pyl2tp test CA", None, ca=True)
    ca_path = write_ca(tmp_path, "ca", ca)
    srv_cert, srv_key = write_pair(tmp_path, "server", make_cert("vpn.test", ca, ca=False))

    def run(client_pair: Pair) -> tuple[ProductProcess, ProductProcess]:
        srv = topology.host("srv")
        cli = topology.host("cli")
        topology.link(srv, f"{SERVER_IP}/24", cli, f"{CLIENT_IP}/24")
        server = ProductProcess(
            srv, "server",
            ipsec_server_toml(
                tmp_path, [ALICE], tun=tun_name("cs"),
                ipsec={"psk": None, "certificate": srv_cert, "private_key": srv_key,
                       "ca": ca_path},
            ),
            tmp_path,
        )
        cli_cert, cli_key = write_pair(tmp_path, "client", client_pair)
        client = ProductProcess(
            cli, "client",
            ipsec_client_toml(
                tmp_path, ALICE.name, ALICE.password, psk=None, tun=tun_name("cc"),
                extra={"certificate": cli_cert, "private_key": cli_key, "ca": ca_path,
                       "reconnect_initial": 2, "reconnect_cap": 4},
            ),
            tmp_path,
        )
        return server, client

    run.ca = ca  # type: ignore[attr-defined]
    return run


def test_certificates_session_up(start: Start) -> None:
    ca: Pair = start.ca  # type: ignore[attr-defined]
    server, client = start(make_cert("alice-laptop", ca, ca=False))
    server.start()
    client.start()
    wait_ipsec_up(client)
    conn = wait_up(client, client.ns, tun_name("cc"))
    assert conn.peer == POOL_LOCAL
    assert ping(client.ns, POOL_LOCAL, 5) == 5
    log = server.log_text()
    assert re.search(r"ISAKMP SA established \([^,]+, id CN=alice-laptop", log), log
    assert "PPP user 'alice' over IKE identity CN=alice-laptop" in log
    assert "id CN=vpn.test" in client.log_text()
    status = ipsec_status(server)
    assert len(status["sas"]) == 1 and status["ike"]["auth_failed"] == 0
    client.stop()
    assert client.returncode == 0, client.log_text()
    assert_no_traceback(server.log_text())
    assert_no_traceback(client.log_text())


def test_certificate_from_another_ca_is_refused(start: Start) -> None:
    other = make_cert("some other CA", None, ca=True)
    server, client = start(make_cert("mallory", other, ca=False))
    server.start()
    client.start(wait_socket=False)
    wait_for(lambda: "certificate authentication failed" in server.log_text(), 20,
             what="the server's certificate refusal line")
    assert re.search(
        r"IKE peer 198\.18\.0\.2:500: certificate authentication failed: certificate "
        r"CN=mallory is not issued by a trusted CA \(issuer CN=some other CA\)",
        server.log_text(),
    ), server.log_text()
    wait_for(lambda: client.returncode is not None, 30, what="the client to give up")
    client_log = client.log_text()
    assert client.returncode != 0, client_log
    assert re.search(r"IKE with 198\.18\.0\.1 failed: certificate authentication failed",
                     client_log), client_log
    assert "connected:" not in client_log
    status = ipsec_status(server)
    assert status["sas"] == [] and status["ike"]["auth_failed"] >= 1
    assert_no_traceback(server.log_text())
