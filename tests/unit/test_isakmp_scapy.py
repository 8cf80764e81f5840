"""Cross-check of our ISAKMP codec with scapy's independent one (scapy.layers.isakmp).

Messages we encode are dissected by scapy field by field; messages scapy builds are
decoded by us and re-encoded byte for byte; strongSwan's captured messages are read the
same way by both.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.isakmp import (
    ISAKMP,
    IPSECAttributeTypes,
    ISAKMP_payload,
    ISAKMP_payload_Delete,
    ISAKMP_payload_Hash,
    ISAKMP_payload_ID,
    ISAKMP_payload_KE,
    ISAKMP_payload_Nonce,
    ISAKMP_payload_Notify,
    ISAKMP_payload_Proposal,
    ISAKMP_payload_SA,
    ISAKMP_payload_SIG,
    ISAKMP_payload_Transform,
    ISAKMP_payload_VendorID,
    ISAKMPAttributeTypes,
)
from scapy.packet import Packet, raw

from pyl2tp.ike.proposals import Group, Policy
from pyl2tp.wire.isakmp import (
    DeletePayload,
    EncapsulationMode,
    ExchangeType,
    Flags,
    HashPayload,
    IDPayload,
    ISAKMPHeader,
    KEPayload,
    NatDPayload,
    NatOAPayload,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    PayloadType,
    ProtocolID,
    SAPayload,
    SignaturePayload,
    Transform,
    VendorID,
    VendorIDPayload,
    decode_message,
    decode_payloads,
    encode_message,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ike"
ICKY, RCKY = bytes.fromhex("a1a2a3a4a5a6a7a8"), bytes.fromhex("b1b2b3b4b5b6b7b8")


def scapy_attrs(pairs: list[tuple[Any, Any]], protocol: int) -> list[tuple[int, int]]:
    """scapy's decoded (name, value) attribute pairs back to numbers."""
    table = ISAKMPAttributeTypes if protocol == ProtocolID.ISAKMP else IPSECAttributeTypes
    out = []
    for name, value in pairs:
        if name in table:
            number, names, _ = table[name]
            out.append((number, names.get(value, value)))
        else:
            out.append((name, value))
    return out


def our_attrs(t: Transform) -> list[tuple[int, int]]:
    return [(a.type, a.as_int()) for a in t.attributes]


def scapy_transforms(proposal: Packet) -> list[Packet]:
    out = []
    layer = proposal.trans
    while isinstance(layer, ISAKMP_payload_Transform):
        out.append(layer)
        layer = layer.payload
    return out


def layers(pkt: Packet) -> list[Packet]:
    out = []
    layer = pkt.payload
    while isinstance(layer, ISAKMP_payload):
        out.append(layer)
        layer = layer.payload
    return out


def test_scapy_reads_our_main_mode_1() -> None:
    sa = Policy(legacy=True).phase1_sa()
    vids = [VendorIDPayload(VendorID.NAT_T_RFC3947), VendorIDPayload(VendorID.DPD)]
    header = ISAKMPHeader(ICKY, bytes(8), ExchangeType.MAIN)
    data = encode_message(header, [sa, *vids])
    pkt = ISAKMP(data)
    assert pkt.init_cookie == ICKY and pkt.resp_cookie == bytes(8)
    assert (pkt.next_payload, pkt.version, pkt.exch_type) == (1, 0x10, 2)
    assert pkt.flags == 0 and pkt.id == 0 and pkt.length == len(data)
    sa_layer = pkt[ISAKMP_payload_SA]
    assert (sa_layer.doi, sa_layer.situation, sa_layer.next_payload) == (1, 1, 13)
    prop = sa_layer.prop
    assert isinstance(prop, ISAKMP_payload_Proposal)
    ours = sa.proposals[0]
    assert (prop.proposal, prop.proto, prop.SPIsize, prop.trans_nb) == (
        1,
        1,
        0,
        len(ours.transforms),
    )
    got = scapy_transforms(prop)
    assert len(got) == len(ours.transforms)
    for theirs, mine in zip(got, ours.transforms, strict=True):
        assert theirs.transform_count == mine.number and theirs.transform_id == 1
        assert scapy_attrs(theirs.transforms, 1) == our_attrs(mine)
    assert [v.VendorID for v in layers(pkt) if isinstance(v, ISAKMP_payload_VendorID)] == [
        VendorID.NAT_T_RFC3947,
        VendorID.DPD,
    ]


def test_scapy_reads_our_quick_mode_payloads() -> None:
    sa = Policy().phase2_sa(
        b"\xde\xad\xbe\xef", EncapsulationMode.UDP_TRANSPORT, pfs_group=Group.MODP2048
    )
    payloads = [
        HashPayload(b"H" * 32),
        sa,
        NoncePayload(b"N" * 32),
        KEPayload(b"K" * 256),
        IDPayload.from_address("198.18.0.2", 17, 1701),
        IDPayload.from_address("198.18.0.1", 17, 1701),
        NatOAPayload.from_address("198.18.5.5"),
    ]
    header = ISAKMPHeader(ICKY, RCKY, ExchangeType.QUICK, message_id=0x01020304)
    data = encode_message(header, payloads)
    pkt = ISAKMP(data)
    assert pkt.exch_type == 32 and pkt.id == 0x01020304 and pkt.next_payload == 8
    assert pkt[ISAKMP_payload_Hash].hash == b"H" * 32
    prop = pkt[ISAKMP_payload_SA].prop
    assert prop.proto == 3 and prop.SPI == b"\xde\xad\xbe\xef" and prop.SPIsize == 4
    for theirs, mine in zip(scapy_transforms(prop), sa.proposals[0].transforms, strict=True):
        assert theirs.transform_id == mine.transform_id
        assert scapy_attrs(theirs.transforms, 3) == our_attrs(mine)
    assert pkt[ISAKMP_payload_Nonce].nonce == b"N" * 32
    assert pkt[ISAKMP_payload_KE].ke == b"K" * 256
    ids = [layer for layer in layers(pkt) if isinstance(layer, ISAKMP_payload_ID)]
    assert [(i.IDtype, i.ProtoID, i.Port, i.IdentData) for i in ids] == [
        (1, 17, 1701, "198.18.0.2"),
        (1, 17, 1701, "198.18.0.1"),
    ]
    assert ids[-1].next_payload == PayloadType.NAT_OA
    nat_oa = layers(pkt)[-1]
    assert nat_oa.load == bytes([1, 0, 0, 0]) + ipaddress.ip_address("198.18.5.5").packed


def test_scapy_reads_our_informational_payloads() -> None:
    payloads = [
        HashPayload(b"h" * 20),
        NotifyPayload(NotifyType.R_U_THERE, ICKY + RCKY, b"\x00\x00\x00\x2a"),
        DeletePayload(ProtocolID.ESP, (b"\x00\x00\x00\x01", b"\x00\x00\x00\x02")),
        SignaturePayload(b"sig"),
    ]
    data = encode_message(ISAKMPHeader(ICKY, RCKY, ExchangeType.INFORMATIONAL, 0, 9), payloads)
    pkt = ISAKMP(data)
    notify = pkt[ISAKMP_payload_Notify]
    assert (notify.doi, notify.proto, notify.SPIsize, notify.notify_msg_type) == (1, 1, 16, 36136)
    assert notify.SPI == ICKY + RCKY and notify.notify_data == b"\x00\x00\x00\x2a"
    delete = pkt[ISAKMP_payload_Delete]
    assert (delete.doi, delete.proto, delete.SPIsize, delete.SPIcount) == (1, 3, 4, 2)
    assert delete.SPIs == [b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"]
    assert pkt[ISAKMP_payload_SIG].sig == b"sig"


def test_we_read_scapy_built_messages_byte_for_byte() -> None:
    transforms = ISAKMP_payload_Transform(
        transform_count=1,
        transforms=[
            ("Encryption", "AES-CBC"),
            ("KeyLength", 256),
            ("Hash", "SHA2-256"),
            ("GroupDesc", "2048MODPgr"),
            ("Authentication", "PSK"),
            ("LifeType", "Seconds"),
            ("LifeDuration", 86400),
        ],
    ) / ISAKMP_payload_Transform(
        transform_count=2,
        transforms=[("Encryption", "3DES-CBC"), ("Hash", "SHA"), ("GroupDesc", "1024MODPgr")],
    )
    pkt = (
        ISAKMP(init_cookie=ICKY, resp_cookie=RCKY, exch_type=4, flags=0, id=0)
        / ISAKMP_payload_SA(
            prop=ISAKMP_payload_Proposal(proposal=1, proto=1, trans_nb=2, trans=transforms)
        )
        / ISAKMP_payload_KE(ke=b"k" * 96)
        / ISAKMP_payload_Nonce(nonce=b"n" * 24)
        / ISAKMP_payload_ID(IDtype=1, ProtoID=17, Port=500, IdentData="198.18.0.9")
        / ISAKMP_payload_VendorID(VendorID=VendorID.NAT_T_DRAFT_02N)
        / ISAKMP_payload_Hash(hash=b"x" * 20)
        / ISAKMP_payload_Notify(doi=1, proto=1, SPI=ICKY + RCKY, notify_msg_type=24578)
        / ISAKMP_payload_Delete(doi=1, proto=3, SPIs=[b"\x01\x02\x03\x04"], next_payload=130)
        / ISAKMP_payload(load=b"d" * 20)
    )
    data = raw(pkt)
    header, body = decode_message(data)
    assert header.exchange == ExchangeType.AGGRESSIVE and header.flags == 0
    got = decode_payloads(header.next_payload, body)
    sa = got[0]
    assert isinstance(sa, SAPayload)
    t1, t2 = sa.proposals[0].transforms
    assert our_attrs(t1) == [(1, 7), (14, 256), (2, 4), (4, 14), (3, 1), (11, 1), (12, 86400)]
    assert not t1.attributes[-1].is_basic  # scapy sends 86400 in the variable form
    assert our_attrs(t2) == [(1, 5), (2, 2), (4, 2)]
    assert got[1:] == [
        KEPayload(b"k" * 96),
        NoncePayload(b"n" * 24),
        IDPayload.from_address("198.18.0.9", 17, 500),
        VendorIDPayload(VendorID.NAT_T_DRAFT_02N),
        HashPayload(b"x" * 20),
        NotifyPayload(NotifyType.INITIAL_CONTACT, ICKY + RCKY),
        DeletePayload(ProtocolID.ESP, (b"\x01\x02\x03\x04",)),
        NatDPayload(b"d" * 20, draft=True),
    ]
    assert encode_message(header, got) == data


def test_encrypted_flag_is_seen_by_scapy() -> None:
    data = encode_message(
        ISAKMPHeader(ICKY, RCKY, ExchangeType.QUICK, message_id=1),
        [HashPayload(b"h")],
        encrypt=lambda b: b.ljust(16, b"\x00"),
    )
    pkt = ISAKMP(data)
    assert pkt.flags == Flags.ENCRYPTION and pkt.length == 28 + 16
    assert not pkt.haslayer(ISAKMP_payload_Hash)  # scapy keeps encrypted bodies raw


@pytest.mark.parametrize("name", ["strongswan_ikev1_tunnel.json", "strongswan_ikev1_l2tp.json"])
def test_strongswan_messages_read_alike(name: str) -> None:
    fixture = json.loads((FIXTURES / name).read_text())
    for message in fixture["messages"]:
        data = bytes.fromhex(message["isakmp"])
        header, body = decode_message(data)
        pkt = ISAKMP(data)
        assert (pkt.exch_type, pkt.id, int(pkt.flags)) == (
            header.exchange,
            header.message_id,
            header.flags,
        )
        if header.encrypted:
            continue
        ours = decode_payloads(header.next_payload, body)
        theirs = layers(pkt)
        assert [t.next_payload for t in theirs[:-1]] == [p.payload_type for p in ours[1:]]
        for mine, their in zip(ours, theirs, strict=True):
            if isinstance(mine, SAPayload):
                prop = their.prop
                for a, b in zip(scapy_transforms(prop), mine.proposals[0].transforms, strict=True):
                    assert scapy_attrs(a.transforms, 1) == our_attrs(b)
            elif isinstance(mine, VendorIDPayload):
                assert their.VendorID == mine.data
            elif isinstance(mine, KEPayload):
                assert their.ke == mine.data
            elif isinstance(mine, NoncePayload):
                assert their.nonce == mine.data
            elif isinstance(mine, NatDPayload):
                assert their.load == mine.data
