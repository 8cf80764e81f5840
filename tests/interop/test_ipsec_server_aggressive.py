"""`[ipsec] aggressive` on our server process, with strongSwan charon as the initiator.

charon starts IKEv1 Aggressive Mode with a PSK and asks for an L2TP transport-mode child
(udp/1701). With `aggressive = true` our server answers and the ISAKMP SA comes up; with
the default (off) it stays silent, counts the attempt, says in its log which key to change,
and charon's initiation fails.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.netns import Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.strongswan import Charon
from tests.integration.ipsec_env import PSK, ipsec_server_toml, ipsec_status
from tests.integration.ppp_env import CLIENT_IP, SERVER_IP, User, tun_name

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]



@pytest.mark.parametrize("enabled", [True, False], ids=["on", "off"])
def test_charon_aggressive_mode_to_our_server(need_charon: None, topology: Topology,
                                              tmp_path: Path, enabled: bool) -> None:
    srv, ss = topology.host("srv"), topology.host("ss")
    topology.link(srv, f"{SERVER_IP}/24", ss, f"{CLIENT_IP}/24")
    ipsec: dict[str, object] = {"aggressive": True} if enabled else {}
    server = ProductProcess(
        srv, "server",
        ipsec_server_toml(tmp_path, [User("u", "p")], tun=tun_name("ag"), ipsec=ipsec),
        tmp_path,
    )
    server.start()
    charon = Charon(ss, tmp_path / "charon", me=CLIENT_IP, peer=SERVER_IP, psk=PSK,
                    local_ts="dynamic[udp/1701]", remote_ts="dynamic[udp/1701]",
                    mode="transport", aggressive=True)
    result = charon.initiate()
    log = server.log_text()
    assert "initiating Aggressive Mode" in charon.log()
    if enabled:
        wait_for(lambda: "ISAKMP SA established" in server.log_text(), 20,
                 what="the server's ISAKMP SA")
        assert "ESTABLISHED" in charon.list_sas()
        assert "Aggressive Mode refused" not in server.log_text()
        assert ipsec_status(server)["ike"]["aggressive_refused"] == 0
    else:
        assert result.returncode != 0, charon.log()[-3000:]
        assert "ISAKMP SA established" not in log
        lines = [ln for ln in log.splitlines() if "Aggressive Mode refused" in ln]
        assert len(lines) == 1, log  # once a minute per peer, however often charon retries
        assert f"IKE peer {CLIENT_IP}:500: Aggressive Mode refused (it is off: " \
               "[ipsec] aggressive); set the client to Main Mode" in lines[0]
        assert ipsec_status(server)["ike"]["aggressive_refused"] >= 1
    assert_no_traceback(server.log_text())
