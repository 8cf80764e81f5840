"""Our server and client against strongSwan charon, IKEv1 Main Mode with RSA
certificates through intermediate CAs.

One root CA; charon's certificate comes from one intermediate CA and ours from another.
Each side trusts the root only and sends its intermediate itself: charon sends
"end entity cert" + "issuer cert" CERT payloads (after seeing our CERTREQ), we send ours
and our intermediate. charon initiates to our `pyl2tp server`, and answers our `pyl2tp
client`; both sides must log the ISAKMP SA with the other's certificate DN, charon having
built the path through the intermediate we sent. A CRL on our side revokes charon's
certificate: refused with the revocation line. (Quick Mode is not part of these tests:
libipsec does no transport mode.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from tests.harness.netns import Topology, wait_for
from tests.harness.pki import Pair, make_cert, make_crl, write_bundle, write_ca, write_crl
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.harness.strongswan import Charon
from tests.integration.ipsec_env import ipsec_client_toml, ipsec_server_toml
from tests.integration.ppp_env import User, tun_name

pytestmark = [pytest.mark.peer, pytest.mark.timeout(120)]

SS_IP = "198.18.47.1"
OUR_IP = "198.18.47.2"



def _charon_with_cert(charon: Charon, leaf: Pair, inter: Pair, root: Pair) -> None:
    """Swap charon's PSK connection for one authenticated by `leaf` (+ `inter`)."""
    work = charon.work
    write_bundle(work / "x509", "charon", leaf, [])
    (work / "x509" / "charon.key").rename(work / "private" / "charon.key")
    write_ca(work / "x509ca", "root", root)
    # the intermediate is known to charon as a plain certificate, not a trust anchor
    write_ca(work / "x509", "inter", inter)
    charon.swanctl_conf.write_text(f"""connections {{
  sc {{
    version = 1
    local_addrs = {SS_IP}
    remote_addrs = {OUR_IP}
    proposals = aes128-sha256-modp2048
    local {{
      auth = pubkey
      certs = charon.crt
    }}
    remote {{
      auth = pubkey
    }}
    children {{
      l2tp {{
        local_ts = dynamic[udp/1701]
        remote_ts = dynamic[udp/1701]
        esp_proposals = aes128-sha256
        mode = transport
      }}
    }}
  }}
}}
""")
    charon.env["SWANCTL_DIR"] = str(work)
    charon._swanctl("--load-all", "--file", str(charon.swanctl_conf))


@dataclass
class Pki:
    root: Pair
    ss_inter: Pair
    our_inter: Pair
    ss_leaf: Pair
    our_leaf: Pair


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = make_cert("interop root CA", None, ca=True)
    ss_inter = make_cert("charon intermediate CA", root, ca=True)
    our_inter = make_cert("pyl2tp intermediate CA", root, ca=True)
    return Pki(root, ss_inter, our_inter, make_cert("charon.test", ss_inter, ca=False),
               make_cert("vpn.test", our_inter, ca=False))


def _start(topo: Topology, tmp_path: Path, pki: Pki,
           crl: list[x509.CertificateRevocationList], wait: int = 20
           ) -> tuple[Charon, ProductProcess]:
    """Our server (certificate bundle, root as `ca`, `crl`), then charon, which initiates
    (swanctl waits up to `wait` seconds for the IKE SA)."""
    ss, us = topo.host("ss"), topo.host("us")
    topo.link(ss, f"{SS_IP}/24", us, f"{OUR_IP}/24")
    files = tmp_path / "pki"
    files.mkdir()
    cert, key = write_bundle(files, "server", pki.our_leaf, [pki.our_inter[0]])
    crl_paths = [write_crl(files, f"c{i}", c) for i, c in enumerate(crl)]
    server = ProductProcess(
        us, "server",
        ipsec_server_toml(
            tmp_path, [User("alice", "pw")], tun=tun_name("ssc"), listen=(OUR_IP,),
            ipsec={"psk": None, "certificate": cert, "private_key": key,
                   "ca": write_ca(files, "root", pki.root), "crl": crl_paths or None},
        ),
        tmp_path,
    )
    server.start()
    charon = Charon(ss, tmp_path / "charon", me=SS_IP, peer=OUR_IP, psk="unused-psk",
                    local_ts="0.0.0.0/0", remote_ts="0.0.0.0/0", mode="tunnel")
    _charon_with_cert(charon, pki.ss_leaf, pki.ss_inter, pki.root)
    charon._swanctl("--initiate", "--ike", "sc", "--timeout", str(wait), check=False)
    return charon, server


def test_charon_and_our_server_with_intermediates(
    need_charon: None, tmp_path: Path, pki: Pki
) -> None:
    with Topology("ikesscert") as topo:
        charon, server = _start(topo, tmp_path, pki, [])
        wait_for(lambda: "ISAKMP SA established" in server.log_text(), 20,
                 what="our ISAKMP SA")
        log = charon.log()
        # our CERTREQ names our CA; charon (send_cert = ifasked) then sends its certificates
        assert "received cert request for 'CN=interop root CA'" in log, log[-3000:]
        assert 'sending end entity cert "CN=charon.test"' in log, log[-3000:]
        assert 'sending issuer cert "CN=charon intermediate CA"' in log, log[-3000:]
        assert 'received end entity cert "CN=vpn.test"' in log, log[-3000:]
        assert 'received issuer cert "CN=pyl2tp intermediate CA"' in log, log[-3000:]
        assert "reached self-signed root ca with a path length of 1" in log, log[-3000:]
        assert re.search(r"IKE_SA sc\[\d+\] established", log), log[-3000:]
        assert re.search(r"ISAKMP SA established \([^,]+, id CN=charon.test[,)]",
                         server.log_text()), server.log_text()
        server.stop()
        assert_no_traceback(server.log_text())


def test_charon_certificate_revoked_by_our_crl(
    need_charon: None, tmp_path: Path, pki: Pki
) -> None:
    with Topology("ikesscrl") as topo:
        crl = make_crl(pki.ss_inter, [pki.ss_leaf[0]])
        charon, server = _start(topo, tmp_path, pki, [crl], wait=3)
        wait_for(lambda: "certificate authentication failed" in server.log_text(), 20,
                 what="our refusal")
        assert (
            "certificate authentication failed: certificate CN=charon.test is revoked"
            f" (serial {pki.ss_leaf[0].serial_number:#x}, CRL of CN=charon intermediate CA)"
        ) in server.log_text(), server.log_text()
        # charon gets our AUTHENTICATION-FAILED, protected with HASH(1) (RFC 2409 5.7),
        # accepts it and gives up at once instead of retransmitting MM5
        wait_for(lambda: "received AUTHENTICATION_FAILED error notify" in charon.log(), 10,
                 what="charon's notify")
        assert "[ HASH N(AUTH_FAILED) ]" in charon.log()
        assert "state change: CONNECTING => DESTROYING" in charon.log()
        assert "authentication of 'CN=charon.test' (myself) successful" in charon.log()
        assert "ISAKMP SA established" not in server.log_text()
        server.stop()
        assert_no_traceback(server.log_text())


def test_our_client_to_charon_with_intermediates(
    need_charon: None, tmp_path: Path, pki: Pki
) -> None:
    """Our initiator: charon answers MM5 with its certificate and its intermediate."""
    with Topology("ikessclient") as topo:
        ss, us = topo.host("ss"), topo.host("us")
        topo.link(ss, f"{SS_IP}/24", us, f"{OUR_IP}/24")
        charon = Charon(ss, tmp_path / "charon", me=SS_IP, peer=OUR_IP, psk="unused-psk",
                        local_ts="0.0.0.0/0", remote_ts="0.0.0.0/0", mode="tunnel")
        _charon_with_cert(charon, pki.ss_leaf, pki.ss_inter, pki.root)
        files = tmp_path / "pki"
        files.mkdir()
        cert, key = write_bundle(files, "client", pki.our_leaf, [pki.our_inter[0]])
        client = ProductProcess(
            us, "client",
            ipsec_client_toml(
                tmp_path, "alice", "pw", psk=None, server=SS_IP, tun=tun_name("ssk"),
                extra={"certificate": cert, "private_key": key,
                       "ca": write_ca(files, "root", pki.root), "reconnect": False},
            ),
            tmp_path,
        )
        client.start(wait_socket=False)
        wait_for(lambda: "ISAKMP SA established" in client.log_text(), 20,
                 what="our ISAKMP SA")
        assert re.search(r"ISAKMP SA established \([^,]+, id CN=charon.test[,)]",
                         client.log_text()), client.log_text()
        log = charon.log()
        assert 'sending issuer cert "CN=charon intermediate CA"' in log, log[-3000:]
        assert 'received issuer cert "CN=pyl2tp intermediate CA"' in log, log[-3000:]
        assert re.search(r"IKE_SA sc\[\d+\] established", log), log[-3000:]
        client.stop()
        assert_no_traceback(client.log_text())
