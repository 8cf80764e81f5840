"""IKE endpoint behaviour: retransmission, duplicates, timeouts, limits, NAT sharing, garbage."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.test_ike_mainmode import (
    CLIENT,
    NAT_PUBLIC,
    SERVER,
    Net,
    Sent,
    config,
    connect,
    pair,
    rng,
)
from tests.unit.test_ike_quick import assert_paired, assert_traffic, child_of

from pyl2tp.esp import InboundSA, OutboundSA
from pyl2tp.ike.events import (
    ChildSADeleted,
    ChildSAEstablished,
    IKESADeleted,
    IKESAEstablished,
    NegotiationFailed,
)
from pyl2tp.ike.proposals import Phase2Choice, Policy
from pyl2tp.wire.isakmp import (
    Attribute,
    ExchangeType,
    IPsecAttributeType,
    ISAKMPHeader,
    SAPayload,
    decode_message,
    encode_message,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(120)]


def drop_nth(n: int, predicate=lambda s: True):  # type: ignore[no-untyped-def]
    """A drop filter that loses the n-th (0-based) datagram matching ``predicate``."""
    seen = [0]

    def drop(sent: Sent) -> bool:
        if not predicate(sent):
            return False
        seen[0] += 1
        return seen[0] == n + 1

    return drop


def from_server(s: Sent) -> bool:
    return s.src[0] == SERVER


@pytest.mark.parametrize("lost", range(4), ids=["MM2", "MM4", "MM6", "QM2"])
def test_lost_server_message_is_recovered(lost: int) -> None:
    net, client, server = pair()
    net.drop = drop_nth(lost, from_server)
    connect(net, client)
    net.advance(10)
    c, s = child_of(client), child_of(server)
    assert_paired(c, s)
    assert client.ep.stats.retransmits + server.ep.stats.retransmits >= 1
    assert len(client.of(IKESAEstablished)) == len(server.of(IKESAEstablished)) == 1


@pytest.mark.parametrize("lost", range(5), ids=["MM1", "MM3", "MM5", "QM1", "QM3"])
def test_lost_client_message_is_recovered(lost: int) -> None:
    net, client, server = pair()
    net.drop = drop_nth(lost, lambda s: not from_server(s))
    connect(net, client)
    net.advance(10)
    assert_paired(child_of(client), child_of(server))


def test_duplicate_gets_the_same_answer() -> None:
    net, client, server = pair()
    net.drop = drop_nth(0, from_server)  # MM2 lost: the client resends MM1
    connect(net, client)
    net.advance(3)
    assert server.ep.stats.duplicates == 1 and client.ep.stats.retransmits == 1
    mm2s = [s.data for s in net.log if from_server(s)][:2]
    assert mm2s[0] == mm2s[1]  # the answer is resent, not recomputed
    assert len(server.ep.ike_sas()) == 1  # no second SA for the duplicate


def test_duplicate_qm1_answered_without_a_second_child() -> None:
    net, client, server = pair()
    connect(net, client)
    qm1 = next(s for s in net.log if decode_message(s.data)[0].exchange == ExchangeType.QUICK)
    before = len(net.log)
    server.ep.datagram_received(qm1.data, qm1.src, qm1.dst, net.now, nat_t=False)
    out = server.ep.datagrams_to_send(net.now)
    assert len(out) == 1 and out[0][0] == net.log[before - 2].data  # QM2 again
    assert server.ep.stats.duplicates == 1 and len(server.ep.child_sas()) == 1


def test_unreachable_peer_times_out() -> None:
    net, client, _server = pair(client_cfg=config(retransmit_max=3))
    net.drop = lambda s: True
    connect(net, client)
    net.advance(30)
    assert [e.notify for e in client.of(NegotiationFailed)] == ["timeout in Main Mode (mm1)"]
    assert client.ep.ike_sas() == [] and client.ep.get_timer() is None
    assert client.ep.stats.retransmits == 3 and len(net.log) == 4
    # backoff: 1, 2, 4 seconds


def test_half_open_responder_state_expires() -> None:
    net, client, server = pair(server_cfg=config(retransmit_max=2))
    net.drop = lambda s: not from_server(s) and decode_message(s.data)[0].length > 0 and (
        net.log.index(s) > 0
    )
    connect(net, client)
    net.advance(30)
    assert server.ep.ike_sas() == []
    assert server.of(NegotiationFailed)


def test_half_open_limits() -> None:
    net, client, server = pair(server_cfg=config(max_half_open_per_peer=2, max_half_open=3))
    net.drop = from_server
    for _ in range(3):
        client.ep.initiate(SERVER, net.now, local=(client.ip, 500), l2tp=False)
    net.pump()
    assert len(server.ep.ike_sas()) == 2 and server.ep.stats.half_open_refused == 1
    other = net.add("198.18.0.3", config(), 7)
    for _ in range(2):
        other.ep.initiate(SERVER, net.now, local=(other.ip, 500), l2tp=False)
    net.pump()
    assert len(server.ep.ike_sas()) == 3 and server.ep.stats.half_open_refused == 2


def test_two_clients_behind_one_nat() -> None:
    net = Net()
    server = net.add(SERVER, config(), 1)
    a = net.add("198.18.2.2", config(), 2, behind_nat=True)
    b = net.add("198.18.2.3", config(), 3, behind_nat=True)
    connect(net, a)
    connect(net, b)
    ca, cb = child_of(a), child_of(b)
    children = {c.inbound.spi: c for c in server.ep.child_sas()}
    assert len(children) == 2
    sa_ = children[ca.outbound.spi]
    sb = children[cb.outbound.spi]
    assert sa_.peer[0] == sb.peer[0] == NAT_PUBLIC and sa_.peer[1] != sb.peer[1]
    assert sa_.peer_id == "198.18.2.2" and sb.peer_id == "198.18.2.3"
    assert_paired(ca, sa_)
    assert_paired(cb, sb)
    assert_traffic(ca, sa_)
    # b's packets do not open with a's SA
    out = OutboundSA(cb.outbound, rng(5))
    with pytest.raises(Exception):  # noqa: B017 - wrong SPI
        InboundSA(sa_.inbound).decrypt(out.encrypt(b"x", 17))
    # b's INITIAL-CONTACT did not remove a
    assert not server.of(ChildSADeleted) and len(server.ep.ike_sas()) == 2
    assert len(server.of(IKESAEstablished)) == 2


def test_unknown_cookies_dropped() -> None:
    net, _client, server = pair()
    msg = encode_message(ISAKMPHeader(b"A" * 8, b"B" * 8, ExchangeType.MAIN), [])
    server.ep.datagram_received(msg, ("198.18.0.9", 500), (SERVER, 500), net.now, nat_t=False)
    assert server.ep.stats.unknown_cookie == 1 and server.ep.datagrams_to_send(net.now) == []


def test_delete_all() -> None:
    net, client, server = pair()
    connect(net, client)
    client.ep.delete_all(net.now)
    net.pump()
    assert client.ep.child_sas() == [] and server.ep.child_sas() == []
    assert client.ep.ike_sas() == [] and server.ep.ike_sas() == []
    assert [e.reason for e in server.of(ChildSADeleted)] == ["deleted by peer"]
    assert [e.reason for e in server.of(IKESADeleted)] == ["deleted by peer"]
    assert server.ep.get_timer() is None


def test_no_psk_refuses() -> None:
    net, client, server = pair(server_cfg=config(psk=None))
    connect(net, client)
    assert server.of(NegotiationFailed) and not client.of(IKESAEstablished)


def _valid_messages() -> list[Sent]:
    net, client, _server = pair(client_nat=True)
    connect(net, client)
    assert client.of(ChildSAEstablished)
    return net.log


VALID = _valid_messages()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.booleans())
def test_garbage_never_raises(data: bytes, nat_t: bool) -> None:
    net, _client, server = pair()
    server.ep.datagram_received(data, ("198.18.0.2", 500), (SERVER, 500), net.now, nat_t=nat_t)
    server.ep.handle_timer(net.now + 100)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, len(VALID) - 1),
    st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=4),
    st.integers(0, 3000),
)
def test_mutated_messages_never_raise(index: int, flips: list[tuple[int, int]], cut: int) -> None:
    """Replay a real exchange into fresh endpoints with one message mutated."""
    net, client, server = pair(client_nat=True)
    target = VALID[index]
    data = bytearray(target.data)
    for pos, value in flips:
        data[pos % len(data)] = value
    mutated = bytes(data[: max(1, cut)])
    for sent in VALID[:index]:
        host = server if sent.dst[0] == SERVER else client
        host.ep.datagram_received(sent.data, sent.src, sent.dst, net.now, nat_t=sent.nat_t)
    host = server if target.dst[0] == SERVER else client
    host.ep.datagram_received(mutated, target.src, target.dst, net.now, nat_t=target.nat_t)
    host.ep.next_events()
    host.ep.handle_timer(net.now + 200)


def test_keylog_writes_ike_and_esp_keys(tmp_path: Path) -> None:
    from pyl2tp.ike.endpoint import IKEEndpoint
    from pyl2tp.keylog import KeyLog

    net, client, server = pair()
    with KeyLog(tmp_path / "keys.log") as keylog:
        server.ep = IKEEndpoint(config(), random_bytes=rng(1), keylog=keylog)
        connect(net, client)
    s = child_of(server)
    text = (tmp_path / "keys.log").read_text()
    ike = server.ep._sas[s.ike_cookies]
    assert ike.keys is not None
    assert f"{s.ike_cookies[:8].hex()},{ike.keys.enc_key.hex()}" in text
    assert f"0x{s.inbound.spi:08x}" in text and s.inbound.enc_key.hex() in text
    assert f"0x{s.outbound.spi:08x}" in text and s.outbound.auth_key.hex() in text
    assert len(text.splitlines()) == 3


class OtherChoicePolicy(Policy):
    """A responder policy that answers with a transform the initiator did not offer."""

    def match_phase2(self, sa: SAPayload, *, modes: object = None) -> Phase2Choice | None:
        choice = super().match_phase2(sa, modes=modes)  # type: ignore[arg-type]
        if choice is None:
            return None
        attrs = tuple(
            Attribute(a.type, 3000) if a.type == IPsecAttributeType.SA_LIFE_DURATION else a
            for a in choice.transform.attributes
        )
        return replace(choice, transform=replace(choice.transform, attributes=attrs))


def test_initiator_refuses_a_transform_it_did_not_offer() -> None:
    net, client, _server = pair(server_cfg=config(policy=OtherChoicePolicy()))
    connect(net, client)
    assert not client.of(ChildSAEstablished)
    assert "did not offer" in client.of(NegotiationFailed)[0].notify


def test_stats_as_dict() -> None:
    net, client, server = pair()
    connect(net, client)
    stats = vars(server.ep.stats)
    assert stats == server.ep.stats.as_dict()
    assert stats["ike_sas"] == 1 and stats["child_sas"] == 1 and stats["malformed"] == 0


def test_half_open_index_cleaned() -> None:
    """Given-up and finished negotiations leave nothing behind (no leak per attempt)."""
    net, client, server = pair(server_cfg=config(retransmit_max=1))
    net.drop = lambda s: not from_server(s) and net.log.index(s) > 0
    connect(net, client, l2tp=False)
    net.advance(20)
    assert server.ep.ike_sas() == [] and server.ep._half == {}
    net.drop = lambda s: False
    connect(net, client)
    assert child_of(server) and server.ep._half == {}


def test_notify_to_our_half_open_initiator() -> None:
    """A clear notify with the responder's cookie ends our attempt (strongSwan style)."""
    net, client, _server = pair()
    client.ep.initiate(SERVER, net.now, local=(client.ip, 500), l2tp=False)
    ((mm1, dst, src, _),) = client.ep.datagrams_to_send(net.now)
    header = decode_message(mm1)[0]
    from pyl2tp.wire.isakmp import NotifyPayload, NotifyType

    msg = encode_message(
        ISAKMPHeader(header.initiator_cookie, b"R" * 8, ExchangeType.INFORMATIONAL),
        [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)],
    )
    client.ep.datagram_received(msg, dst, src, net.now, nat_t=False)
    events = client.ep.next_events()
    assert [e.notify for e in events if isinstance(e, NegotiationFailed)] == ["NO-PROPOSAL-CHOSEN"]
    assert client.ep.ike_sas() == [] and client.ep.get_timer() is None


def test_tshark_dissects_and_decrypts_our_exchange(tmp_path: Path) -> None:
    """tshark finds nothing wrong with our messages and decrypts them with the key log."""
    import shutil
    import subprocess

    from tests.harness.capture import tshark_problems

    from pyl2tp.ike.endpoint import IKEEndpoint
    from pyl2tp.keylog import KeyLog, tshark_options

    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    net, client, server = pair(client_nat=True)
    with KeyLog(tmp_path / "keys.log") as keylog:
        server.ep = IKEEndpoint(config(), random_bytes=rng(1), keylog=keylog)
        connect(net, client)
        assert child_of(server)
        client.ep.delete_all(net.now)
        net.pump()
    pcap = net.pcap(tmp_path / "ike.pcap")
    assert tshark_problems(pcap) == []
    res = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), *tshark_options(tmp_path / "keys.log"),
         "-T", "fields", "-E", "occurrence=f", "-e", "isakmp.exchangetype", "-e", "isakmp.hash",
         "-e", "_ws.malformed"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    rows = [line.split("\t") for line in res.stdout.splitlines()]
    assert len(rows) == len(net.log) == 11  # MM 6, QM 3, Delete ESP + ISAKMP
    hashed = [r[0] for r in rows if r[1]]
    assert hashed == ["2", "2", "32", "32", "32", "5", "5"]  # every encrypted message opened
    assert not any(r[2] for r in rows)


def test_bad_message_does_not_move_a_half_open_peer() -> None:
    net, client, server = pair()
    net.drop = lambda s: not from_server(s) and net.log.index(s) > 0  # only MM1 arrives
    connect(net, client, l2tp=False)
    (cookies,) = [i.cookies for i in server.ep.ike_sas()]
    junk = encode_message(ISAKMPHeader(cookies[:8], cookies[8:], ExchangeType.MAIN), [])
    server.ep.datagram_received(junk, ("198.18.0.99", 4500), (SERVER, 4500), net.now, nat_t=True)
    info = server.ep.ike_sas()[0]
    assert info.peer == (CLIENT, 500) and not info.nat_t and server.ep.stats.malformed == 1
