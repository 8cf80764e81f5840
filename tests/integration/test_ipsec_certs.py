"""Our client against our server with IKEv1 RSA signatures (X.509 certificates).

A test CA made here with `cryptography` issues the server's and the client's
certificates; the tunnel comes up and pings through, also when both certificates come
from an intermediate CA that only the peers' certificate files carry (their `ca` files
hold the root). A client certificate from another CA, or one revoked by a CRL, is refused
by the server with a clear log line, and the client gives up.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, cast

import pytest
from cryptography import x509

from tests.harness import require_tools
from tests.harness.netns import Topology, wait_for
from tests.harness.pki import (
    Pair,
    make_cert,
    make_crl,
    write_bundle,
    write_ca,
    write_crl,
    write_pair,
)
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


class Start(Protocol):
    ca: Pair
    inter: Pair

    def __call__(
        self, client_pair: Pair, *, client_chain: Sequence[Pair] = (),
        server_chain: bool = False, crl: Sequence[x509.CertificateRevocationList] = (),
    ) -> tuple[ProductProcess, ProductProcess]: ...


@pytest.fixture
def start(topology: Topology, tmp_path: Path) -> Start:
    """Server with a certificate from the test CA; the client with the one given.

    `client_chain` goes into the client's certificate file after its own; with
    `server_chain` the server's certificate comes from the intermediate CA `inter` and its
    file carries that CA too. Both `ca` files hold the root only; `crl` goes to the server.
    """
    require_tools("ping")
    ca = make_cert("pyl2tp test CA", None, ca=True)
    inter = make_cert("pyl2tp test intermediate", ca, ca=True)
    ca_path = write_ca(tmp_path, "ca", ca)

    def run(
        client_pair: Pair, *, client_chain: Sequence[Pair] = (), server_chain: bool = False,
        crl: Sequence[x509.CertificateRevocationList] = (),
    ) -> tuple[ProductProcess, ProductProcess]:
        srv = topology.host("srv")
        cli = topology.host("cli")
        topology.link(srv, f"{SERVER_IP}/24", cli, f"{CLIENT_IP}/24")
        if server_chain:
            srv_cert, srv_key = write_bundle(
                tmp_path, "server", make_cert("vpn.test", inter, ca=False), [inter[0]]
            )
        else:
            srv_cert, srv_key = write_pair(tmp_path, "server", make_cert("vpn.test", ca, ca=False))
        crl_paths = [write_crl(tmp_path, f"list{i}", c) for i, c in enumerate(crl)]
        server = ProductProcess(
            srv, "server",
            ipsec_server_toml(
                tmp_path, [ALICE], tun=tun_name("cs"),
                ipsec={"psk": None, "certificate": srv_cert, "private_key": srv_key,
                       "ca": ca_path, "crl": crl_paths or None},
            ),
            tmp_path,
        )
        cli_cert, cli_key = write_bundle(
            tmp_path, "client", client_pair, [c for c, _ in client_chain]
        )
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
    run.inter = inter  # type: ignore[attr-defined]
    return cast(Start, run)


def test_certificates_session_up(start: Start) -> None:
    server, client = start(make_cert("alice-laptop", start.ca, ca=False))
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


def test_certificates_through_an_intermediate_ca(start: Start) -> None:
    """Both sides send leaf + intermediate (MM5/MM6 over 1500 bytes: IP fragments)."""
    server, client = start(
        make_cert("alice-laptop", start.inter, ca=False), client_chain=[start.inter],
        server_chain=True,
    )
    server.start()
    client.start()
    wait_ipsec_up(client)
    wait_up(client, client.ns, tun_name("cc"))
    assert ping(client.ns, POOL_LOCAL, 3) == 3
    assert re.search(r"ISAKMP SA established \([^,]+, id CN=alice-laptop", server.log_text())
    assert "id CN=vpn.test" in client.log_text()
    client.stop()
    assert client.returncode == 0, client.log_text()
    assert_no_traceback(server.log_text())
    assert_no_traceback(client.log_text())


def test_revoked_client_certificate_is_refused(start: Start) -> None:
    alice = make_cert("alice-laptop", start.inter, ca=False)
    bob = make_cert("bob-laptop", start.inter, ca=False)
    server, client = start(
        alice, client_chain=[start.inter],
        crl=[make_crl(start.inter, [bob[0], alice[0]]), make_crl(start.ca, [])],
    )
    server.start()
    client.start(wait_socket=False)
    wait_for(lambda: "certificate authentication failed" in server.log_text(), 20,
             what="the server's certificate refusal line")
    line = ("IKE peer 198.18.0.2:500: certificate authentication failed: certificate"
            f" CN=alice-laptop is revoked (serial {alice[0].serial_number:#x}, CRL of"
            " CN=pyl2tp test intermediate)")
    assert line in server.log_text(), server.log_text()
    wait_for(lambda: client.returncode is not None, 30, what="the client to give up")
    client_log = client.log_text()
    assert client.returncode == 3, client_log
    assert "connected:" not in client_log
    status = ipsec_status(server)
    assert status["sas"] == [] and status["ike"]["auth_failed"] >= 1
    assert_no_traceback(server.log_text())
