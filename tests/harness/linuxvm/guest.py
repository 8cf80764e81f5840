"""The classic Linux L2TP(/IPsec) client of the VM: its config files and its shell script.

One generator for every test that runs the stock client stack (strongSwan stroke + xl2tpd
in kernel mode + pppd, MS-CHAPv2) against our server: without IPsec, with a PSK, or with
an RSA certificate (IKEv1 Main Mode, RFC 2409 5.1), optionally with NAT-T forced by
charon's `forceencaps`. `guest_files` gives the files dict for `LinuxVM(files=...)` and
`guest_cmd` the script for `LinuxVM(cmd=...)`; the script reports through /sb/out:

* `ike-start`: written just before `ipsec up` (a test can start other traffic then);
* `statusall.txt`: `ipsec statusall` once the SA is up;
* `ppp-up`: "ADDRESS PEER PING_RC" once ppp0 has its peer route, or "ipsec-failed";

then waits for the host's flag `hangup` (`LinuxVM.flag`), hangs up, stops charon (it sends
its Deletes) and dumps its logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from ..pki import Pair

__all__ = ["GUEST_CERT", "GUEST_KEY", "GuestCert", "guest_cert", "guest_cmd", "guest_files"]

#: where the guest's certificate and key go (strongSwan's stroke layout, /etc/ipsec.d)
GUEST_CERT = "/etc/ipsec.d/certs/client.crt"
GUEST_KEY = "/etc/ipsec.d/private/client.key"
GUEST_CA = "/etc/ipsec.d/cacerts/ca.crt"


@dataclass(frozen=True, slots=True)
class GuestCert:
    """The guest's X.509 credentials and the identity it expects from the server."""

    cert_pem: str
    key_pem: str
    """The private key, PKCS#1 "RSA PRIVATE KEY" as `ipsec.secrets` `: RSA` reads it."""
    ca_pem: str
    local_id: str
    """The guest's IKE identity: its certificate's subject DN ("CN=...")."""
    server_id: str
    """The server's IKE identity (`rightid`): the subject DN of its certificate."""
    ca_id: str
    """The CA's subject DN (`rightca`): the server's certificate must chain to it."""


def guest_cert(pair: Pair, ca: Pair, server_id: str) -> GuestCert:
    """`GuestCert` from a certificate and key issued by `ca` (tests/harness/pki.py)."""
    cert, key = pair
    pem = serialization.Encoding.PEM
    return GuestCert(
        cert_pem=cert.public_bytes(pem).decode(),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()).decode(),
        ca_pem=ca[0].public_bytes(pem).decode(),
        local_id=cert.subject.rfc4514_string(),
        server_id=server_id,
        ca_id=ca[0].subject.rfc4514_string(),
    )


def _ipsec_files(server_ip: str, psk: str | None, cert: GuestCert | None,
                 forceencaps: bool) -> dict[str, str]:
    """ipsec.conf (stroke), ipsec.secrets and, with `cert`, the PEM files."""
    encaps = "    forceencaps=yes\n" if forceencaps else ""
    if cert is None:
        auth = "    authby=secret\n"
        secrets = f'%any {server_ip} : PSK "{psk}"\n'
    else:
        # RFC 2409 5.1 with signatures; the IDs are the certificates' subject DNs (RFC 2407
        # 4.6.2.1 ID_DER_ASN1_DN), the server's certificate checked against the CA.
        auth = (f"    authby=rsasig\n    leftcert={GUEST_CERT.rsplit('/', 1)[1]}\n"
                f'    leftid="{cert.local_id}"\n    rightid="{cert.server_id}"\n'
                f'    rightca="{cert.ca_id}"\n')
        secrets = f": RSA {GUEST_KEY.rsplit('/', 1)[1]}\n"
    files = {
        "/etc/ipsec.conf": f"""\
config setup
    charondebug="ike 2, knl 2, net 1, cfg 1"

conn %default
    ikelifetime=60m
    keylife=20m
    rekeymargin=3m
    keyingtries=1
    keyexchange=ikev1
    ike=aes256-sha1-modp2048,aes128-sha1-modp2048!
    esp=aes256-sha1,aes128-sha1!

conn vpn
    left=%defaultroute
    auto=add
    type=transport
    leftprotoport=17/1701
    rightprotoport=17/1701
    right={server_ip}
{auth}{encaps}""",
        "/etc/ipsec.secrets": secrets,
    }
    if cert is not None:
        files |= {GUEST_CERT: cert.cert_pem, GUEST_KEY: cert.key_pem, GUEST_CA: cert.ca_pem}
    return files


def guest_files(server_ip: str, user: str, password: str, *, psk: str | None = None,
                cert: GuestCert | None = None, forceencaps: bool = False) -> dict[str, str]:
    """The classic client as the Linux guides (and NetworkManager-l2tp) set it up.

    Without `psk` and `cert`: plain L2TP (xl2tpd + pppd only). With one of them: strongSwan
    too, IKEv1 Main Mode and a transport-mode SA for udp/1701.
    """
    if psk is not None and cert is not None:
        raise ValueError("a PSK or a certificate, not both")
    files = {} if psk is None and cert is None else _ipsec_files(server_ip, psk, cert,
                                                                   forceencaps)
    files |= {
        "/etc/xl2tpd/xl2tpd.conf": f"""\
[lac vpn]
lns = {server_ip}
ppp debug = yes
pppoptfile = /etc/ppp/options.l2tpd.client
length bit = yes
""",
        "/etc/ppp/options.l2tpd.client": f"""\
ipcp-accept-local
ipcp-accept-remote
refuse-eap
refuse-pap
refuse-chap
refuse-mschap
require-mschap-v2
noccp
noauth
mtu 1280
mru 1280
noipdefault
usepeerdns
connect-delay 5000
name "{user}"
password "{password}"
debug
logfile /var/log/pppd.log
""",
    }
    return files


# `ipsec up` exits 0 even when the connection fails (strongSwan 5.9.8 stroke): grep it.
# xl2tpd is only told to connect once the SA is up, else it would send cleartext L2TP.
_IPSEC_UP = """\
ipsec start
for i in $(seq 50); do ipsec status >/dev/null 2>&1 && break; sleep 0.2; done
"""
_IPSEC_CONNECT = """\
echo "===== ipsec up"
echo go > /sb/out/ike-start
ipsec up vpn > /tmp/up.log 2>&1; cat /tmp/up.log
if ! grep -q "connection 'vpn' established successfully" /tmp/up.log; then
    echo "ipsec-failed" > /sb/out/ppp-up
    echo "===== charon.log"; cat /var/log/charon.log
    exit 3
fi
ipsec statusall > /sb/out/statusall.txt 2>&1
"""
_XFRM_DUMP = 'echo "===== xfrm"; ip xfrm state; ip xfrm policy\n'
# After the hang-up: charon deletes its SAs (Informational Delete, RFC 2408 4.8), then stops.
_IPSEC_STOP = 'echo "===== ipsec down"; ipsec down vpn; ipsec stop\n'


def guest_cmd(pool_local: str, *, ipsec: bool, hangup_wait: int = 120) -> str:
    """The guest's script: [IPsec up,] L2TP + PPP up, ping `pool_local` over ppp0, report,
    wait for the `hangup` flag (at most `hangup_wait` seconds), hang up, [stop charon,]
    dump the logs.

    Exits 0 when the ping went through (3 of 3), 3 when IKE failed.
    """
    return f"""\
{_IPSEC_UP if ipsec else ""}\
xl2tpd -D -c /etc/xl2tpd/xl2tpd.conf > /var/log/xl2tpd.log 2>&1 &
for i in $(seq 50); do [ -p /run/xl2tpd/l2tp-control ] && break; sleep 0.2; done
{_IPSEC_CONNECT if ipsec else ""}\
echo "===== c vpn"
echo "c vpn" > /run/xl2tpd/l2tp-control
# pppd puts the address on ppp0 before the link is up: wait for the peer route (ip-up)
for i in $(seq 120); do
    ip route get {pool_local} 2>/dev/null | grep -q ' dev ppp0 ' && break; sleep 1
done
ip -4 addr show ppp0
echo "route-to-pool: $(ip route get {pool_local} | head -n 1)"
# -I ppp0: the server namespace also owns {pool_local} and would answer over eth0
ping -I ppp0 -c 3 -W 5 {pool_local}; rc_ping=$?
addr=$(ip -4 -o addr show ppp0 | sed -n 's/.* inet \\([0-9.]*\\) peer \\([0-9.]*\\).*/\\1 \\2/p')
echo "$addr $rc_ping" > /sb/out/ppp-up
for i in $(seq {hangup_wait * 2}); do [ -e /sb/in/flags/hangup ] && break; sleep 0.5; done
{_XFRM_DUMP if ipsec else ""}\
echo "===== ip l2tp"; ip l2tp show tunnel; ip l2tp show session
echo "===== d vpn"
echo "d vpn" > /run/xl2tpd/l2tp-control
for i in $(seq 20); do ip link show ppp0 >/dev/null 2>&1 || break; sleep 0.5; done
sleep 2
{_IPSEC_STOP if ipsec else ""}\
echo "===== xl2tpd.log"; cat /var/log/xl2tpd.log
echo "===== pppd.log"; cat /var/log/pppd.log
echo "RESULT rc_ping=$rc_ping"
[ "$rc_ping" = 0 ]
"""
