"""scapy's SecurityAssociation (scapy.layers.ipsec, >= 2.6) as an independent ESP codec.

For every transform, in transport and tunnel mode, as raw IP protocol 50 and inside
UDP/4500 (RFC 3948): scapy decrypts and verifies what we build, we decrypt what scapy
builds, and with the same IV and sequence number both produce the same bytes. The outer
IP/UDP headers are scapy's.
"""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2tp import L2TP
from scapy.packet import Raw
from scapy.utils import rdpcap

from pyl2tp.esp import ESPParams, InboundSA, OutboundSA, classify_4500
from pyl2tp.esp.sa import AUTH_SPECS
from pyl2tp.wire.esp import transport_inner, transport_strip
from pyl2tp.wire.l2tp_data import encode_data
from pyl2tp.wire.ppp import PPPProtocol, encode_frame

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]

A, B = "198.18.0.1", "198.18.0.2"  # outer: LNS and client
C, D = "198.18.100.1", "198.18.100.5"  # inner (tunnel mode)
SPI = 0x0A0B0C0D

SCAPY_ENC = {"aes-gcm-16": "AES-GCM", "aes-cbc": "AES-CBC", "3des-cbc": "3DES"}
SCAPY_AUTH = {"null": "NULL", "hmac-sha1-96": "HMAC-SHA1-96", "hmac-md5-96": "HMAC-MD5-96",
              "hmac-sha256-128": "SHA2-256-128", "hmac-sha384-192": "SHA2-384-192",
              "hmac-sha512-256": "SHA2-512-256"}
TRANSFORMS = [
    ("aes-gcm-16", 20, "null"), ("aes-gcm-16", 28, "null"), ("aes-gcm-16", 36, "null"),
    ("aes-cbc", 16, "hmac-sha1-96"), ("aes-cbc", 24, "hmac-sha256-128"),
    ("aes-cbc", 32, "hmac-sha256-128"), ("aes-cbc", 32, "hmac-sha384-192"),
    ("aes-cbc", 32, "hmac-sha512-256"), ("aes-cbc", 16, "hmac-md5-96"),
    ("3des-cbc", 24, "hmac-sha1-96"),
]
IDS = [f"{e}-{k}-{a}" for e, k, a in TRANSFORMS]
MODES = [("transport", False), ("transport", True), ("tunnel", False), ("tunnel", True)]
MODE_IDS = ["transport", "transport-udp", "tunnel", "tunnel-udp"]


def l2tp_payload(n: int) -> bytes:
    """An L2TP data message carrying an IPv4 PPP frame of some size."""
    return encode_data(7, 11, encode_frame(PPPProtocol.IPV4, bytes(range(256)) * (n // 256)
                                           + bytes(n % 256)))


def make_params(enc: str, klen: int, auth: str, mode: str, encap: bool) -> ESPParams:
    r = random.Random(f"{enc}{klen}{auth}")
    akey = r.randbytes(AUTH_SPECS[auth].key_size) if auth != "null" else b""
    return ESPParams(spi=SPI, enc=enc, enc_key=r.randbytes(klen), auth=auth, auth_key=akey,
                     mode=mode, udp_encap=encap, local=A, peer=B)  # type: ignore[arg-type]


def scapy_sa(p: ESPParams) -> SecurityAssociation:
    return SecurityAssociation(
        ESP, spi=p.spi, crypt_algo=SCAPY_ENC[p.enc], crypt_key=p.enc_key,
        auth_algo=SCAPY_AUTH[p.auth], auth_key=p.auth_key or None,
        tunnel_header=IP(src=A, dst=B) if p.mode == "tunnel" else None,
        nat_t_header=UDP(sport=4500, dport=4500) if p.udp_encap else None)


def inner_packet(p: ESPParams, l2tp: bytes) -> tuple[bytes, int]:
    """What our SA is given: (payload, next header)."""
    if p.mode == "transport":
        return transport_inner(A, B, l2tp), 17
    return bytes(IP(src=C, dst=D, id=1) / UDP(sport=1701, dport=1701) / Raw(l2tp)), 4


def outer(p: ESPParams, esp: bytes) -> IP:
    """Our ESP packet as it goes on the wire, built and re-parsed by scapy."""
    if p.udp_encap:  # RFC 3948 2.1: UDP checksum 0
        wire = IP(src=A, dst=B) / UDP(sport=4500, dport=4500, chksum=0) / Raw(esp)
    else:
        wire = IP(src=A, dst=B, proto=50) / Raw(esp)
    return IP(bytes(wire))


def esp_bytes(p: ESPParams, packet: IP) -> bytes:
    """The ESP packet (SPI onward) of a scapy-encrypted packet."""
    if p.udp_encap:
        assert packet[UDP].dport == 4500 and packet.proto == 17
        return bytes(packet[UDP].payload)
    assert packet.proto == 50
    return bytes(packet[ESP])


@pytest.mark.parametrize(("mode", "encap"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(("enc", "klen", "auth"), TRANSFORMS, ids=IDS)
def test_scapy_decrypts_ours(enc: str, klen: int, auth: str, mode: str, encap: bool) -> None:
    p = make_params(enc, klen, auth, mode, encap)
    ours = OutboundSA(p, random.Random(1).randbytes)
    theirs = scapy_sa(p)
    for n in (0, 1, 13, 100, 1300):
        l2tp = l2tp_payload(n)
        payload, nh = inner_packet(p, l2tp)
        got = theirs.decrypt(outer(p, ours.encrypt(payload, nh)))  # verifies the ICV
        if mode == "transport":
            assert got.src == A and got.dst == B and got.proto == 17
            assert bytes(got[IP].payload) == payload
            # scapy's own checksum over the outer addresses agrees with ours.
            assert IP(bytes(IP(src=A, dst=B) / UDP(sport=1701, dport=1701) / Raw(l2tp))
                      )[UDP].chksum == got[UDP].chksum
        else:
            assert bytes(got) == payload
            assert got.src == C and got.dst == D
        assert got.haslayer(L2TP) and bytes(got[L2TP]) == l2tp


@pytest.mark.parametrize(("mode", "encap"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(("enc", "klen", "auth"), TRANSFORMS, ids=IDS)
def test_we_decrypt_scapys(enc: str, klen: int, auth: str, mode: str, encap: bool) -> None:
    p = make_params(enc, klen, auth, mode, encap)
    ours = InboundSA(p)
    theirs = scapy_sa(p)
    for seq, n in enumerate((0, 1, 13, 100, 1300), start=1):
        l2tp = l2tp_payload(n)
        if mode == "transport":
            plain = IP(bytes(IP(src=A, dst=B) / UDP(sport=1701, dport=1701) / Raw(l2tp)))
        else:
            plain = IP(bytes(IP(src=C, dst=D) / UDP(sport=1701, dport=1701) / Raw(l2tp)))
        packet = IP(bytes(theirs.encrypt(plain, seq_num=seq * 3)))
        nh, payload = ours.decrypt(esp_bytes(p, packet))
        if mode == "transport":
            assert nh == 17 and payload == bytes(plain[IP].payload)
            # Our checksum verification agrees with scapy's checksum.
            assert transport_strip(payload, A, B, verify=True).payload == l2tp
        else:
            assert nh == 4 and payload == bytes(plain)
    assert ours.window.top == 15 and ours.stats.packets == 5


@pytest.mark.parametrize(("mode", "encap"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(("enc", "klen", "auth"), TRANSFORMS, ids=IDS)
def test_same_iv_and_sequence_give_identical_bytes(enc: str, klen: int, auth: str, mode: str,
                                                   encap: bool) -> None:
    p = make_params(enc, klen, auth, mode, encap)
    drawn: list[bytes] = []
    source = random.Random(2)

    def random_bytes(n: int) -> bytes:
        drawn.append(source.randbytes(n))
        return drawn[-1]

    ours = OutboundSA(p, random_bytes)
    theirs = scapy_sa(p)
    for n in (0, 5, 64, 1000):
        l2tp = l2tp_payload(n)
        payload, nh = inner_packet(p, l2tp)
        mine = ours.encrypt(payload, nh)
        # CBC: the IV is the last draw; GCM: the sequence number (RFC 4106 3.1).
        iv = ours.seq.to_bytes(8, "big") if p.spec.aead else drawn[-1]
        if mode == "transport":
            plain = IP(bytes(IP(src=A, dst=B, proto=17) / Raw(payload)))
        else:
            plain = IP(payload)
        reference = IP(bytes(theirs.encrypt(plain, seq_num=ours.seq, iv=iv)))
        assert esp_bytes(p, reference) == mine


# strongSwan 5.9.8 (libipsec, tunnel mode in UDP/4500) carrying xl2tpd's L2TP, with the
# keys charon logged at level 4 (peers/tshark/samples, peers/strongswan/keys_from_log.py;
# throwaway test keys).
STRONGSWAN_PCAP = Path("/work/shared/peers/tshark/samples/l2tp-ipsec.pcap")
STRONGSWAN_SAS = {
    0xD76F6D69: ("198.18.10.1", "198.18.10.2", "bf64cb4244ff3d4fab06231f6309232d",
                 "4f6cfe0daf3c91ea95df6430370ab9c6ce4865fcf8037a8eadab3cac100148df"),
    0x57EA7286: ("198.18.10.2", "198.18.10.1", "e7bfa66e818405d721b1d691df4b177f",
                 "93a8b556d4c49a0b78417dceb55ee176433739782af23416b63e47d6c4a57bc9"),
}


@pytest.mark.skipif(not STRONGSWAN_PCAP.exists(), reason="strongSwan sample capture not present")
def test_strongswan_esp_decrypts_and_reencrypts_byte_for_byte() -> None:
    kinds: list[str] = []
    packets: dict[int, list[bytes]] = {spi: [] for spi in STRONGSWAN_SAS}
    for frame in rdpcap(str(STRONGSWAN_PCAP)):
        if UDP in frame and frame[UDP].dport == 4500:
            payload = bytes(frame[UDP].payload)
            kinds.append(classify_4500(payload))
            if kinds[-1] == "esp":
                packets[int.from_bytes(payload[:4], "big")].append(payload)
    assert kinds == ["ike"] * 5 + ["esp"] * 12  # Main Mode 5/6, Quick Mode, then ESP
    for spi, (src, dst, ekey, akey) in STRONGSWAN_SAS.items():
        p = ESPParams(spi=spi, enc="aes-cbc", enc_key=bytes.fromhex(ekey),
                      auth="hmac-sha256-128", auth_key=bytes.fromhex(akey), mode="tunnel",
                      udp_encap=True, local=dst, peer=src)
        inbound = InboundSA(p)
        ivs = deque([bytes(16)] + [x[8:24] for x in packets[spi]])  # seed, then charon's IVs
        outbound = OutboundSA(p, lambda n, ivs=ivs: ivs.popleft())
        assert len(packets[spi]) == 6
        for seq, esp in enumerate(packets[spi], start=1):
            nh, inner = inbound.decrypt(esp)
            assert nh == 4
            ip = IP(inner)
            assert ip.src == src and ip.dst == dst and ip[UDP].dport == 1701
            assert ip.haslayer(L2TP)
            assert outbound.encrypt(inner, nh) == esp  # same IV and sequence: same bytes
            assert outbound.seq == seq
        assert inbound.stats.packets == 6 and inbound.window.top == 6
