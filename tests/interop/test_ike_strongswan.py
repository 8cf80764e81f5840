"""Our IKEv1 endpoint against strongSwan charon (kernel-libipsec), IKEv1 PSK.

Both roles run a tunnel-mode child over UDP 4500 (libipsec forces NAT-T) between
198.18.45.0/24 (behind charon) and 198.18.46.0/24 (behind our gateway, the socket runner of
tests.harness.strongswan with a TUN device): pings go through both ways.
Responder: charon initiates (Main Mode, and Aggressive Mode with our responder configured
to answer it); both sides list the SAs and charon's ESP decrypts with our inbound SA.
Initiator: we propose UDP_TUNNEL with subnet IDs; the keys charon logged equal ours.
Kilobyte lifetime: our responder's shorter one is announced to charon and its ESP hard
limit ends the child (Delete to charon).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pyl2tp.esp import ESPParams, InboundSA
from tests.harness.capture import Capture
from tests.harness.netns import Topology, wait_for
from tests.harness.strongswan import Charon, charon_keys
from tests.integration.ipsec_env import keyed_fields, keyed_problems, plain_fields

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

SS_IP = "198.18.44.1"
OUR_IP = "198.18.44.2"
SS_NET, SS_INNER = "198.18.45.0/24", "198.18.45.1"  # behind charon
OUR_NET, OUR_INNER = "198.18.46.0/24", "198.18.46.1"  # behind us (our TUN)
PSK = "interop-psk-0123"
REPO = Path(__file__).resolve().parents[2]


def _events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _setup(topo: Topology, tmp_path: Path, aggressive: bool = False, our_peer: str = "",
           our_kb: int = 0, our_args: tuple[str, ...] = (),
           **charon: str) -> tuple[Charon, Any, Any, Path]:
    """charon in "ss" (198.18.45.1 behind it), our gateway in "us" (198.18.46.1 on its TUN)."""
    ss, us = topo.host("ss"), topo.host("us")
    _ss_if, us_if = topo.link(ss, f"{SS_IP}/24", us, f"{OUR_IP}/24")
    (tmp_path / "us_if").write_text(us_if)
    ss.run(["ip", "addr", "add", f"{SS_INNER}/32", "dev", "lo"])
    out = tmp_path / "ours.jsonl"
    argv = [sys.executable, "-m", "tests.harness.strongswan", str(out), OUR_IP, PSK,
            "--tunnel", OUR_NET, SS_NET, "--inner", OUR_INNER,
            "--keylog", str(tmp_path / "ours.keys")]
    if our_peer:
        argv += ["--peer", our_peer]
    if aggressive:
        argv.append("--aggressive")
    if our_kb:
        argv += ["--sa-lifetime-kb", str(our_kb)]
    argv += our_args
    us.popen(argv, cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    c = Charon(ss, tmp_path / "charon", me=SS_IP, peer=OUR_IP, psk=PSK,
               aggressive=aggressive, local_ts=SS_NET, remote_ts=OUR_NET, mode="tunnel",
               **charon)
    return c, ss, us, out


def _ping_both_ways(ss: Any, us: Any) -> None:
    """Through the tunnel, each side from its inner address: every echo answered."""
    for host, src, dst in ((ss, SS_INNER, OUR_INNER), (us, OUR_INNER, SS_INNER)):
        res = host.run(["ping", "-c", "3", "-i", "0.3", "-W", "2", "-I", src, dst],
                       check=False)
        assert res.returncode == 0 and " 0% packet loss" in res.stdout, (
            f"ping {src} -> {dst}:\n{res.stdout}{res.stderr}"
        )


@contextlib.contextmanager
def _wire(us: Any, tmp_path: Path) -> Iterator[Path]:
    """Capture the outer link on our side; afterwards tshark, with our key log, must
    decrypt IKE and ESP, see the pings inside, and find nothing wrong in what we sent."""
    pcap = tmp_path / "wire.pcap"
    iface = (tmp_path / "us_if").read_text()
    with Capture(us, pcap, iface=iface, bpf="udp"):
        yield pcap
    keys = tmp_path / "ours.keys"
    inner = keyed_fields(pcap, keys, ["ip.src", "icmp.type"], "icmp")
    seen = {(r[0].split(",")[-1], r[1]) for r in inner}
    assert {(SS_INNER, "8"), (OUR_INNER, "0"), (OUR_INNER, "8"), (SS_INNER, "0")} <= seen, seen
    assert plain_fields(pcap, ["icmp.type"], "icmp") == []  # nothing readable without keys
    assert keyed_problems(pcap, keys, src=OUR_IP) == []


def _params(d: dict[str, Any]) -> ESPParams:
    return ESPParams(spi=d["spi"], enc=d["enc"], enc_key=bytes.fromhex(d["enc_key"]),
                     auth=d["auth"], auth_key=bytes.fromhex(d["auth_key"]), mode=d["mode"],
                     udp_encap=d["udp_encap"])



@pytest.mark.parametrize("aggressive", [False, True], ids=["main", "aggressive"])
def test_our_responder_with_charon_initiator(
    need_charon: None, tmp_path: Path, aggressive: bool
) -> None:
    with Topology("ikess-r") as topo:
        charon, ss, us, out = _setup(topo, tmp_path, aggressive)
        with _wire(us, tmp_path):  # IKE from the first message on, then ESP
            res = charon.initiate()
            assert res.returncode == 0, charon.log()[-3000:]
            child = wait_for(lambda: next((e for e in _events(out)
                                           if e["event"] == "ChildSAEstablished"), None), 10)
            assert child["mode"] == "tunnel" and child["inbound"]["udp_encap"]
            assert child["selectors"] == [OUR_NET, SS_NET]  # from charon's IDci/IDcr
            exchange = "Aggressive Mode" if aggressive else "Main Mode"
            assert f"initiating {exchange}" in charon.log()
            sas = charon.list_sas()
            assert "ESTABLISHED" in sas and "INSTALLED" in sas and "TUNNEL-in-UDP" in sas
            assert f"{child['inbound']['spi']:08x}" in sas  # charon's outbound = our inbound
            assert f"{child['outbound']['spi']:08x}" in sas
            _ping_both_ways(ss, us)
        # the first ESP packet from charon also opens with the keys our event reported
        esp = next(e for e in _events(out) if e["event"] == "esp" and "data" in e)
        nh, payload = InboundSA(_params(child["inbound"])).decrypt(bytes.fromhex(esp["data"]))
        assert nh == 4 and payload[12:16] == bytes([198, 18, 45, 1])  # IPv4 from charon
        assert payload[9] == 1  # ICMP


@pytest.mark.parametrize("pfs", [False, True], ids=["nopfs", "pfs"])
def test_our_initiator_with_charon_responder(
    need_charon: None, tmp_path: Path, pfs: bool
) -> None:
    # PFS: charon requires it (ESP proposal with a DH group); we propose MODP2048 (14)
    opts: dict[str, Any] = (
        {"our_args": ("--pfs", "14"), "esp_proposals": "aes128-sha256-modp2048"} if pfs else {}
    )
    with Topology("ikess-i") as topo:
        charon, ss, us, out = _setup(topo, tmp_path, our_peer=SS_IP, **opts)
        est = wait_for(lambda: next((e for e in _events(out)
                                     if e["event"] == "IKESAEstablished"), None), 20)
        assert est["peer_id"] == "ss@sc"
        child = wait_for(lambda: next((e for e in _events(out)
                                       if e["event"] == "ChildSAEstablished"), None), 20)
        assert child["mode"] == "tunnel" and child["inbound"]["udp_encap"]
        assert child["selectors"] == [OUR_NET, SS_NET]
        sas = wait_for(lambda: (lambda t: t if "INSTALLED" in t else None)(charon.list_sas()),
                       10)
        assert "ESTABLISHED" in sas and "TUNNEL-in-UDP" in sas
        assert f"{child['inbound']['spi']:08x}" in sas and f"{child['outbound']['spi']:08x}" in sas
        # charon installed our selectors
        assert re.search(rf"local +{SS_NET}\n +remote +{OUR_NET}\n", sas), sas
        keys = wait_for(lambda: charon_keys(charon.log()) or None, 10)
        # we initiated: our outbound uses the initiator keys, our inbound the responder's
        assert bytes.fromhex(child["outbound"]["enc_key"]) == keys["encryption initiator key"]
        assert bytes.fromhex(child["outbound"]["auth_key"]) == keys["integrity initiator key"]
        assert bytes.fromhex(child["inbound"]["enc_key"]) == keys["encryption responder key"]
        assert bytes.fromhex(child["inbound"]["auth_key"]) == keys["integrity responder key"]
        with _wire(us, tmp_path):
            _ping_both_ways(ss, us)




def test_our_initiator_rekeys_tunnel_with_charon(need_charon: None, tmp_path: Path) -> None:
    """Our initiator rekeys the tunnel child at its soft lifetime (make-before-break) with
    the same selectors; charon installs the new pair, the old one is deleted, pings go on."""
    with Topology("ikess-rk") as topo:
        # rekey at 85% (13.6 s); the old pair goes 2 s later (GRACE_MIN), before its end
        charon, ss, us, out = _setup(topo, tmp_path, our_peer=SS_IP,
                                     our_args=("--sa-lifetime", "16", "--rekey"))

        def children() -> list[dict[str, Any]]:
            return [e for e in _events(out) if e["event"] == "ChildSAEstablished"]

        first = wait_for(lambda: (children() or [None])[0], 20)
        wait_for(lambda: "INSTALLED" in charon.list_sas(), 10)
        _ping_both_ways(ss, us)
        second = wait_for(lambda: children()[1] if len(children()) > 1 else None, 20)
        assert second["mode"] == "tunnel" and second["selectors"] == first["selectors"]
        assert second["inbound"]["spi"] != first["inbound"]["spi"]
        gone = wait_for(lambda: next((e for e in _events(out) if e["event"] == "ChildSADeleted"),
                                     None), 10)
        assert gone["reason"] == "rekeyed" and gone["inbound"]["spi"] == first["inbound"]["spi"]
        old, new = f"{first['inbound']['spi']:08x}", f"{second['inbound']['spi']:08x}"
        sas = wait_for(lambda: (lambda t: t if old not in t else None)(charon.list_sas()), 10)
        assert new in sas and "INSTALLED" in sas
        assert re.search(rf"local +{SS_NET}\n +remote +{OUR_NET}\n", sas), sas
        _ping_both_ways(ss, us)


@pytest.mark.parametrize("charon_bytes", [0, 32768], ids=["charon-none", "charon-32k"])
def test_our_responder_kilobyte_lifetime_with_charon(
    need_charon: None, tmp_path: Path, charon_bytes: int
) -> None:
    """Our responder's KB lifetime is shorter than charon's (none, or 32 KB proposed):
    RESPONDER-LIFETIME goes to charon (RFC 2407 4.6.3.1), and the ESP hard limit, reached
    by a ping through, ends the child with a Delete charon acts on."""
    extra = f"life_bytes = {charon_bytes}" if charon_bytes else ""
    with Topology("ikess-kb") as topo:
        charon, ss, _us, out = _setup(topo, tmp_path, our_kb=16, child_extra=extra)
        res = charon.initiate()
        assert res.returncode == 0, charon.log()[-3000:]
        child = wait_for(lambda: next((e for e in _events(out)
                                       if e["event"] == "ChildSAEstablished"), None), 10)
        assert child["inbound"]["hard_bytes"] == child["outbound"]["hard_bytes"] == 16 * 1024
        log = charon.log()
        assert "parsed QUICK_MODE response" in log and "N((24576))" in log  # RESPONDER-LIFETIME
        assert "INSTALLED" in charon.list_sas()
        # 1000-byte echoes: the first dozen get answers, then our inbound SA is used up
        ss.run(["ping", "-c", "25", "-i", "0.05", "-s", "1000", "-W", "1", "-I", SS_INNER,
                OUR_INNER], check=False)
        gone = wait_for(lambda: next((e for e in _events(out)
                                      if e["event"] == "ChildSADeleted"), None), 10)
        assert gone["reason"] == "kilobyte lifetime expired"
        spi = f"{child['inbound']['spi']:08x}"  # charon's outbound SPI
        wait_for(lambda: f"received DELETE for ESP CHILD_SA with SPI {spi}" in charon.log(), 10)
        wait_for(lambda: "INSTALLED" not in charon.list_sas(), 10)
        assert "ESTABLISHED" in charon.list_sas()  # the ISAKMP SA lives on
