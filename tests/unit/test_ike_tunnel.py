"""Tunnel-mode Quick Mode from our initiator (subnet IDs, RFC 2407 4.6.2; the responder must
echo them, RFC 2409 5.5) and kilobyte lifetimes on both sides (RFC 2407 4.5, 4.6.3.1)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from tests.unit.test_ike_mainmode import CLIENT, SERVER, Host, Net, config, pair
from tests.unit.test_ike_quick import assert_paired, assert_traffic, child_of
from tests.unit.test_ike_rekey import Dataplane, children

from pyl2tp.ike.endpoint import REKEY_FRACTION
from pyl2tp.ike.events import ChildSADeleted, ChildSAEstablished, NegotiationFailed
from pyl2tp.ike.proposals import Group
from pyl2tp.ike.quick import KB_SOFT_FRACTION, _responder_lifetime
from pyl2tp.ike.sa import TunnelSelectors
from pyl2tp.wire.isakmp import (
    Attribute,
    EncapsulationMode,
    IDPayload,
    IDType,
    IPsecAttributeType,
    LifeType,
    NatOAPayload,
    NotifyPayload,
    NotifyType,
    Payload,
    SAPayload,
    VendorID,
    VendorIDPayload,
    encode_attributes,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

TS = TunnelSelectors("198.18.46.0/24", "198.18.45.0/24")  # the client's view

Sent = list[list[Payload]]


def spy(host: Host, edit: Callable[[list[Payload]], list[Payload]] | None = None) -> Sent:
    """Record (and optionally rewrite) the payloads of every protected message ``host``
    builds (Quick Mode, informational), before HASH and encryption."""
    sent: Sent = []
    original = host.ep._protected

    def wrapper(sa, exchange, mid, payloads, hash_of):  # type: ignore[no-untyped-def]
        if edit is not None:
            payloads = edit(list(payloads))
        sent.append(list(payloads))
        return original(sa, exchange, mid, payloads, hash_of)

    host.ep._protected = wrapper  # type: ignore[method-assign]
    return sent


def tunnel(net: Net, client: Host, ts: TunnelSelectors = TS) -> None:
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500), tunnel=ts)
    net.pump()


def modes(payloads: list[Payload]) -> set[int]:
    sa = next(p for p in payloads if isinstance(p, SAPayload))
    return {
        a.as_int()
        for prop in sa.proposals for t in prop.transforms for a in t.attributes
        if a.type == IPsecAttributeType.ENCAPSULATION_MODE
    }


def responder_lifetimes(payloads: list[Payload]) -> list[NotifyPayload]:
    return [p for p in payloads
            if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.RESPONDER_LIFETIME]


# -- tunnel mode, our initiator ----------------------------------------------------------


@pytest.mark.parametrize("pfs", [None, Group.MODP2048], ids=["nopfs", "pfs"])
@pytest.mark.parametrize("nat", ["direct", "nat", "nat-draft"])
def test_tunnel_initiator(nat: str, pfs: Group | None) -> None:
    net, client, server = pair(
        client_nat=nat != "direct", client_cfg=config(pfs_group=pfs),
        server_cfg=config(tunnel_ok=True),
    )
    if nat == "nat-draft":
        client.ep._vendor_ids = lambda: [  # type: ignore[method-assign]
            VendorIDPayload(VendorID.NAT_T_DRAFT_02N), VendorIDPayload(VendorID.DPD)
        ]
    sent = spy(client)
    tunnel(net, client)
    c, s = child_of(client), child_of(server)
    assert_paired(c, s)
    assert_traffic(c, s)
    assert c.mode == s.mode == "tunnel" and c.inbound.mode == s.outbound.mode == "tunnel"
    assert c.udp_encap == s.udp_encap == (nat != "direct")
    assert c.selectors == TS and s.selectors == TS.swapped()
    qm1 = sent[0]
    want = {"direct": EncapsulationMode.TUNNEL, "nat": EncapsulationMode.UDP_TUNNEL,
            "nat-draft": EncapsulationMode.UDP_TUNNEL_DRAFT}[nat]
    assert modes(qm1) == {want}
    ids = [p for p in qm1 if isinstance(p, IDPayload)]
    assert [(i.id_type, i.text(), i.protocol, i.port) for i in ids] == [
        (IDType.IPV4_ADDR_SUBNET, "198.18.46.0/24", 0, 0),
        (IDType.IPV4_ADDR_SUBNET, "198.18.45.0/24", 0, 0),
    ]
    assert not any(isinstance(p, NatOAPayload) for p in qm1)  # RFC 3947 5.2: transport only
    assert (pfs is not None) == any(p.payload_type == 4 for p in qm1)  # KE under PFS


def test_tunnel_host_selectors() -> None:
    ts = TunnelSelectors("198.18.46.1/32", "198.18.45.1/32")
    net, client, server = pair(server_cfg=config(tunnel_ok=True))
    tunnel(net, client, ts)
    assert child_of(client).selectors == ts and child_of(server).selectors == ts.swapped()


def test_tunnel_refused_by_a_transport_only_responder() -> None:
    net, client, server = pair()  # tunnel_ok=False
    tunnel(net, client)
    assert not client.of(ChildSAEstablished) and not server.of(ChildSAEstablished)
    assert server.of(NegotiationFailed)[0].notify == "NO-PROPOSAL-CHOSEN"


def _other_idcr(payloads: list[Payload]) -> list[Payload]:
    ids = [i for i, p in enumerate(payloads) if isinstance(p, IDPayload)]
    if ids:
        payloads[ids[1]] = IDPayload.from_network("198.18.0.0/15")  # wider than asked
    return payloads


def _no_ids(payloads: list[Payload]) -> list[Payload]:
    return [p for p in payloads if not isinstance(p, IDPayload)]


def _protocol_changed(payloads: list[Payload]) -> list[Payload]:
    return [IDPayload(p.id_type, p.data, 17, 0) if isinstance(p, IDPayload) else p
            for p in payloads]


@pytest.mark.parametrize("edit", [_other_idcr, _no_ids, _protocol_changed],
                         ids=["wider", "missing", "protocol"])
def test_tunnel_initiator_refuses_other_responder_ids(
    edit: Callable[[list[Payload]], list[Payload]],
) -> None:
    net, client, server = pair(server_cfg=config(tunnel_ok=True))
    spy(server, edit)
    tunnel(net, client)
    assert not client.of(ChildSAEstablished) and client.ep.child_sas() == []
    assert [e.notify for e in client.of(NegotiationFailed)] == [
        "responder changed the tunnel IDs"
    ]


def test_tunnel_rekey_keeps_selectors() -> None:
    life = 20.0
    net, client, server = pair(
        client_cfg=config(rekey=True, sa_lifetime=life),
        server_cfg=config(tunnel_ok=True, rekey=True, sa_lifetime=life),
    )
    sent = spy(client)
    tunnel(net, client)
    net.advance(life * REKEY_FRACTION + 1.0)
    cs, ss = children(client), children(server)
    assert len(cs) == len(ss) == 2
    assert_paired(cs[1], ss[1])
    assert_traffic(cs[1], ss[1])
    assert cs[1].mode == "tunnel" and cs[1].selectors == TS and ss[1].selectors == TS.swapped()
    qm1s = [p for p in sent if any(isinstance(x, SAPayload) for x in p)]
    assert len(qm1s) == 2
    assert [x for x in qm1s[1] if isinstance(x, IDPayload)] == [
        x for x in qm1s[0] if isinstance(x, IDPayload)
    ]
    net.advance(10.0)  # the old pair goes after the grace period
    assert client.ep.child_sas() == [cs[1]] and server.ep.child_sas() == [ss[1]]


def test_selectors_validated() -> None:
    with pytest.raises(ValueError):
        TunnelSelectors("198.18.46.1/24", "198.18.45.0/24")  # host bits set
    with pytest.raises(ValueError):
        TunnelSelectors("198.18.46.0/24", "2001:db8::/32")
    with pytest.raises(ValueError):
        TunnelSelectors("not-a-net", "198.18.45.0/24")


# -- kilobyte lifetimes -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ours", "theirs", "kb", "notified"),
    [
        (0, 0, 0, None),  # none anywhere
        (0, 100, 100, 100),  # the initiator proposes none: ours applies, and we say so
        (50, 100, 50, None),  # the initiator's is shorter: taken, nothing to say
        (200, 100, 100, 100),  # ours is shorter: notify
        (100, 100, 100, None),
        (300, 0, 300, None),  # the responder has none: the proposal stands
    ],
)
def test_responder_kilobyte_lifetime(ours: int, theirs: int, kb: int, notified: int | None) -> None:
    net, client, server = pair(
        client_cfg=config(sa_lifetime_kb=ours), server_cfg=config(sa_lifetime_kb=theirs)
    )
    sent = spy(server)
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500))
    net.pump()
    c, s = child_of(client), child_of(server)
    assert c.lifetime_kb == s.lifetime_kb == kb
    hard = kb * 1024
    for p in (c.inbound, c.outbound):
        assert (p.soft_bytes, p.hard_bytes) == (int(hard * KB_SOFT_FRACTION), hard)
    for p in (s.inbound, s.outbound):  # the responder never rekeys: no soft limit
        assert (p.soft_bytes, p.hard_bytes) == (0, hard)
    notes = responder_lifetimes(sent[0])
    if notified is None:
        assert notes == []
    else:
        assert len(notes) == 1 and _responder_lifetime(notes[0].data) == (None, notified)


def test_one_responder_lifetime_carries_seconds_and_kilobytes() -> None:
    net, client, server = pair(
        client_cfg=config(sa_lifetime=7200.0, sa_lifetime_kb=1000),
        server_cfg=config(sa_lifetime=600.0, sa_lifetime_kb=10),
    )
    sent = spy(server)
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500))
    net.pump()
    c, s = child_of(client), child_of(server)
    assert c.lifetime == s.lifetime == 600.0 and c.lifetime_kb == s.lifetime_kb == 10
    notes = responder_lifetimes(sent[0])
    assert len(notes) == 1 and _responder_lifetime(notes[0].data) == (600, 10)


def test_initiator_takes_responder_lifetime_kilobytes_even_unproposed() -> None:
    """A responder may send RESPONDER-LIFETIME in KB though we proposed no KB lifetime
    (RFC 2407 4.6.3.1): our byte limits follow it."""
    net, client, _server = pair(server_cfg=config(sa_lifetime_kb=64))
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500))
    net.pump()
    c = child_of(client)
    assert c.lifetime_kb == 64 and c.outbound.hard_bytes == 64 * 1024
    assert c.outbound.soft_bytes == int(64 * 1024 * KB_SOFT_FRACTION)


def _attrs(*pairs: tuple[int, int]) -> bytes:
    out: list[Attribute] = []
    for kind, value in pairs:
        out += [Attribute(IPsecAttributeType.SA_LIFE_TYPE, kind),
                Attribute.of(IPsecAttributeType.SA_LIFE_DURATION, value)]
    return encode_attributes(out)


def test_responder_lifetime_parsing() -> None:
    assert _responder_lifetime(_attrs((LifeType.SECONDS, 600))) == (600, None)
    assert _responder_lifetime(_attrs((LifeType.KILOBYTES, 5000))) == (None, 5000)
    assert _responder_lifetime(
        _attrs((LifeType.KILOBYTES, 5000), (LifeType.SECONDS, 600))
    ) == (600, 5000)
    huge = encode_attributes([
        Attribute(IPsecAttributeType.SA_LIFE_TYPE, LifeType.KILOBYTES),
        Attribute(IPsecAttributeType.SA_LIFE_DURATION, b"\xff" * 600),
    ])
    assert _responder_lifetime(huge) == (None, 0xFFFFFFFF)  # clamped, no huge numbers
    assert _responder_lifetime(_attrs((LifeType.SECONDS, 0))) == (None, None)
    assert _responder_lifetime(b"\x80") == (None, None)  # truncated
    dur_only = encode_attributes([Attribute.of(IPsecAttributeType.SA_LIFE_DURATION, 9)])
    assert _responder_lifetime(dur_only) == (None, None)  # a duration needs its type first


def test_responder_hard_kilobyte_limit_ends_the_child(caplog: pytest.LogCaptureFixture) -> None:
    """The responder does not rekey on bytes; its ESP hard limit (either direction) is
    reported by the dataplane and ends the child SA, telling the initiator."""
    net, client, server = pair(
        client_cfg=config(rekey=True, sa_lifetime=3600.0),
        server_cfg=config(rekey=True, sa_lifetime=3600.0, sa_lifetime_kb=4),
    )
    a, b = Dataplane(client), Dataplane(server)
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500))
    net.pump()
    a.sync()
    b.sync()
    first = children(server)[0]
    assert first.inbound.hard_bytes == 4096
    sent = 0
    while not b.layer.hard_limited:
        a.send_to(b)  # the responder receives: inbound bytes count
        sent += 1
        assert sent < 1000
        assert not b.layer.soft_limited  # no soft report: the responder does not rekey
    assert sent >= 4096 // 16  # after some kilobytes, not at once
    assert b.layer.hard_limited == [first]
    with caplog.at_level(logging.INFO, logger="pyl2tp.ike"):
        server.ep.child_hard_limit(b.layer.hard_limited.pop(), net.now)
        net.pump()
    assert [e.reason for e in server.of(ChildSADeleted)] == ["kilobyte lifetime expired"]
    assert client.of(ChildSADeleted) and client.ep.child_sas() == []
    assert server.ep.child_sas() == []
    assert len(children(server)) == 1  # no rekey by the responder
    assert f"in {first.inbound.spi:08x} out {first.outbound.spi:08x} reached its hard " \
           "lifetime (4 KB)" in caplog.text
    assert "deleted (kilobyte lifetime expired)" in caplog.text


def test_responder_outbound_hard_limit_reported() -> None:
    net, client, server = pair(server_cfg=config(sa_lifetime_kb=2))
    a, b = Dataplane(client), Dataplane(server)
    client.ep.initiate(SERVER, net.now, local=(CLIENT, 500))
    net.pump()
    a.sync()
    b.sync()
    for _ in range(2048 // 7 + 2):
        if b.layer.hard_limited:
            break
        b.send_to(a)
    assert b.layer.hard_limited == children(server) and not b.layer.soft_limited
    assert b.layer.encapsulate(b"x", b.peer) is None  # type: ignore[arg-type]  # no more sends
