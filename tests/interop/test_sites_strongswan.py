"""Site-to-site with strongSwan: charon (kernel-libipsec, IKEv1 PSK, tunnel mode) as the
other gateway of a `[[sites]]` entry of our `pyl2tp server` process, both roles.

    charon 198.18.44.1 (198.18.45.1 on lo) ==== 198.18.44.2 us 198.18.46.1 -- host 198.18.46.2

charon forces NAT-T, so the tunnel runs in UDP 4500. Pings cross both ways: from the host
behind our server to charon's inner address, and from charon's inner address to the host.
charon asking for more than the site allows is refused, with our log line saying so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.strongswan import Charon
from tests.integration.ipsec_env import ipsec_server_toml
from tests.integration.ppp_env import ping, tun_name

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

SS_IP, OUR_IP = "198.18.44.1", "198.18.44.2"
SS_NET, SS_INNER = "198.18.45.0/24", "198.18.45.1"
OUR_NET, HOST = "198.18.46.0/24", "198.18.46.2"
PSK = "interop-psk-0123"


def _server(ns: Netns, work: Path, initiate: bool) -> ProductProcess:
    text = ipsec_server_toml(
        work, (), psk=PSK, listen=(OUR_IP,), tun=tun_name("lss"),
        ipsec={"site_tun": tun_name("sss")},
    )
    site = {"name": "charon", "peer": SS_IP, "local": [OUR_NET], "remote": [SS_NET],
            "initiate": initiate}
    text += "[[sites]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in site.items())
    proc = ProductProcess(ns, "server", text, work)
    proc.start()
    return proc


def _site(server: ProductProcess) -> dict[str, Any]:
    found: dict[str, Any] = server.ctl("status")["ipsec"]["sites"]["sites"]["charon"]
    return found


@pytest.mark.parametrize("we_initiate", [False, True], ids=["charon-initiates", "we-initiate"])
def test_site_with_charon(need_charon: None, tmp_path: Path, we_initiate: bool) -> None:
    with Topology("s2s-ss") as topo:
        ss, gw, host = topo.host("ss"), topo.host("gw"), topo.host("host")
        topo.link(ss, f"{SS_IP}/24", gw, f"{OUR_IP}/24")
        topo.link(host, f"{HOST}/24", gw, "198.18.46.1/24")
        host.run(["ip", "route", "add", SS_NET, "via", "198.18.46.1"])
        ss.run(["ip", "addr", "add", f"{SS_INNER}/32", "dev", "lo"])
        charon = Charon(ss, tmp_path / "charon", me=SS_IP, peer=OUR_IP, psk=PSK,
                        local_ts=SS_NET, remote_ts=OUR_NET, mode="tunnel")
        server = _server(gw, tmp_path / "srv", we_initiate)
        try:
            if not we_initiate:
                res = charon.initiate()
                assert res.returncode == 0, charon.log()[-3000:]
            site = wait_for(lambda: (s := _site(server))["state"] == "up" and s, 30,
                            what="the site up on our server")
            assert site["sas"][0]["udp_encap"] is True  # charon's libipsec: UDP 4500
            assert (site["sas"][0]["local"], site["sas"][0]["remote"]) == (OUR_NET, SS_NET)
            wait_for(lambda: "ESTABLISHED" in charon.list_sas()
                     and "INSTALLED" in charon.list_sas(), 15, what="charon's SAs")
            assert ping(host, SS_INNER, 3) == 3
            res = ss.run(["ping", "-c", "3", "-i", "0.3", "-W", "2", "-I", SS_INNER, HOST],
                         check=False)
            assert res.returncode == 0, res.stdout + res.stderr
            site = _site(server)
            assert site["packets_in"] >= 6 and site["packets_out"] >= 6, site
            assert site["policy_dropped"] == 0 and site["esp_dropped"] == 0, site
            assert "site charon: tunnel 198.18.46.0/24 <-> 198.18.45.0/24 up" in \
                server.log_text()
        finally:
            server.stop()
        assert_no_traceback(server.log_text())


def test_charon_wider_selectors_refused(need_charon: None, tmp_path: Path) -> None:
    with Topology("s2s-ssw") as topo:
        ss, gw = topo.host("ss"), topo.host("gw")
        topo.link(ss, f"{SS_IP}/24", gw, f"{OUR_IP}/24")
        charon = Charon(ss, tmp_path / "charon", me=SS_IP, peer=OUR_IP, psk=PSK,
                        local_ts=SS_NET, remote_ts="198.18.46.0/23", mode="tunnel")
        server = _server(gw, tmp_path / "srv", False)
        try:
            res = charon.initiate()
            assert res.returncode != 0
            wait_for(lambda: "refused" in server.log_text(), 10, what="the refusal")
            assert (f"IKE peer {SS_IP}:4500: tunnel 198.18.46.0/23 <-> 198.18.45.0/24 refused: "
                    "not inside the networks of its site") in server.log_text()
            assert "INVALID_ID_INFORMATION" in charon.log()
            assert _site(server)["sas"] == []
        finally:
            server.stop()
        assert_no_traceback(server.log_text())
