"""Our IKEv1 endpoint against strongSwan charon (kernel-libipsec), IKEv1 PSK.

Responder: charon initiates (Main Mode, and Aggressive Mode with our responder configured
to answer it) a tunnel-mode child over UDP 4500; both sides list the SAs,
and charon's ESP (a ping routed into its ipsec0) decrypts with our inbound SA.
Initiator: our L2TP client proposes UDP-transport; charon answers Quick Mode (libipsec
cannot install transport mode, so no ESP follows) and the keys it logged equal ours.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from pyl2tp.esp import ESPParams, InboundSA
from tests.harness import require_tools
from tests.harness.netns import Topology, wait_for
from tests.harness.strongswan import CHARON, Charon, charon_keys

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

SS_IP = "198.18.44.1"
OUR_IP = "198.18.44.2"
PSK = "interop-psk-0123"
REPO = Path(__file__).resolve().parents[2]


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _setup(topo: Topology, tmp_path: Path, aggressive: bool = False,
           **charon: str) -> tuple[Charon, Any, Path]:
    ss, us = topo.host("ss"), topo.host("us")
    topo.link(ss, f"{SS_IP}/24", us, f"{OUR_IP}/24")
    ss.run(["ip", "addr", "add", "198.18.45.1/32", "dev", "lo"])
    out = tmp_path / "ours.jsonl"
    peer = charon.pop("our_peer", "")
    argv = [sys.executable, "-m", "tests.harness.strongswan", str(out), OUR_IP, PSK]
    if peer:
        argv.append(peer)
    env = {**os.environ, "PYTHONPATH": str(REPO),
           "PYL2TP_TEST_IKE_AGGRESSIVE": "1" if aggressive else "0"}
    us.popen(argv, cwd=str(REPO), env=env)
    c = Charon(ss, tmp_path / "charon", me=SS_IP, peer=OUR_IP, psk=PSK,
               aggressive=aggressive, **charon)
    return c, ss, out


def _params(d: dict[str, Any]) -> ESPParams:
    return ESPParams(spi=d["spi"], enc=d["enc"], enc_key=bytes.fromhex(d["enc_key"]),
                     auth=d["auth"], auth_key=bytes.fromhex(d["auth_key"]), mode=d["mode"],
                     udp_encap=d["udp_encap"])


@pytest.fixture
def need_charon() -> None:
    require_tools("swanctl", "ip", "unshare")
    if not os.path.exists(CHARON) or os.geteuid() != 0:
        pytest.skip("needs root and strongswan-charon + libcharon-extra-plugins")


@pytest.mark.parametrize("aggressive", [False, True], ids=["main", "aggressive"])
def test_our_responder_with_charon_initiator(
    need_charon: None, tmp_path: Path, aggressive: bool
) -> None:
    with Topology("ikess-r") as topo:
        charon, ss, out = _setup(topo, tmp_path, aggressive, local_ts="198.18.45.0/24",
                                 remote_ts="198.18.46.0/24", mode="tunnel")
        res = charon.initiate()
        assert res.returncode == 0, charon.log()[-3000:]
        child = wait_for(lambda: next((e for e in _events(out)
                                       if e["event"] == "ChildSAEstablished"), None), 10)
        assert child["mode"] == "tunnel" and child["inbound"]["udp_encap"]
        exchange = "Aggressive Mode" if aggressive else "Main Mode"
        assert f"initiating {exchange}" in charon.log()
        sas = charon.list_sas()
        assert "ESTABLISHED" in sas and "INSTALLED" in sas and "TUNNEL-in-UDP" in sas
        assert f"{child['inbound']['spi']:08x}" in sas  # charon's outbound = our inbound
        ss.run(["ping", "-c", "2", "-W", "1", "-I", "198.18.45.1", "198.18.46.1"], check=False)
        esp = wait_for(lambda: next((e for e in _events(out) if e["event"] == "esp"), None), 10)
        nh, payload = InboundSA(_params(child["inbound"])).decrypt(bytes.fromhex(esp["data"]))
        assert nh == 4 and payload[12:16] == bytes([198, 18, 45, 1])  # IPv4 from charon
        assert payload[9] == 1  # ICMP


def test_our_initiator_with_charon_responder(need_charon: None, tmp_path: Path) -> None:
    with Topology("ikess-i") as topo:
        charon, _ss, out = _setup(topo, tmp_path, local_ts="dynamic[udp/1701]",
                                 remote_ts="dynamic[udp/1701]", mode="transport",
                                 our_peer=SS_IP)
        est = wait_for(lambda: next((e for e in _events(out)
                                     if e["event"] == "IKESAEstablished"), None), 20)
        assert est["peer_id"] == "ss@sc"
        assert "ESTABLISHED" in charon.list_sas()
        child = wait_for(lambda: next((e for e in _events(out)
                                       if e["event"] == "ChildSAEstablished"), None), 20)
        keys = wait_for(lambda: charon_keys(charon.log()) or None, 10)
        # we initiated: our outbound uses the initiator keys, our inbound the responder's
        assert bytes.fromhex(child["outbound"]["enc_key"]) == keys["encryption initiator key"]
        assert bytes.fromhex(child["outbound"]["auth_key"]) == keys["integrity initiator key"]
        assert bytes.fromhex(child["inbound"]["enc_key"]) == keys["encryption responder key"]
        assert bytes.fromhex(child["inbound"]["auth_key"]) == keys["integrity responder key"]
