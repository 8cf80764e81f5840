"""Quick Mode (RFC 2409 5.5), both roles: ESP SAs for L2TP (transport) or tunnels.

    Initiator                                    Responder
    QM1  HDR*, HASH(1), SA, Ni [, KE] [, IDci, IDcr] [, NAT-OAi, NAT-OAr] ->
                                          <-     QM2  HDR*, HASH(2), SA, Nr [, KE]
                                                      [, IDci, IDcr] [, N(RESPONDER-LIFETIME)]
    QM3  HDR*, HASH(3)                    ->

KEYMAT is computed per direction from the SPI the receiving side chose (RFC 2409 5.5).
The responder installs its SAs when HASH(3) verifies; the initiator when it sends QM3.
Rekeying (a new Quick Mode replacing a child SA) is driven by :mod:`pyl2tp.ike.endpoint`.
"""

from __future__ import annotations

import logging

from pyl2tp.errors import ParseError
from pyl2tp.esp import ESPParams, auth_name, enc_name
from pyl2tp.ike.crypto import keymat, quick_hash1, quick_hash2, quick_hash3
from pyl2tp.ike.dh import get_group
from pyl2tp.ike.events import ChildSAEstablished, NegotiationFailed
from pyl2tp.ike.informational import fmt_peer
from pyl2tp.ike.phase1 import NONCE_SIZE, MainMode
from pyl2tp.ike.proposals import Group, Phase2Choice
from pyl2tp.ike.sa import IKESA, ChildSA, QuickExchange, TunnelSelectors
from pyl2tp.wire.isakmp import (
    Attribute,
    EncapsulationMode,
    ExchangeType,
    HashPayload,
    IDPayload,
    IPsecAttributeType,
    ISAKMPHeader,
    KEPayload,
    LifeType,
    NatOAPayload,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    Payload,
    ProtocolID,
    SAPayload,
    decode_attributes,
    encode_attributes,
    encode_message,
)

__all__ = ["QuickMode"]

log = logging.getLogger("pyl2tp.ike")

_M = EncapsulationMode
_UDP_PROTO = 17
# RFC 2407 4.5: without a lifetime attribute, an SA lives 28800 seconds.
_DEFAULT_LIFETIME = 28800
_MAX_DURATION = 0xFFFFFFFF
#: a kilobyte lifetime's soft limit, as a fraction of it
KB_SOFT_FRACTION = 0.85


class QuickMode(MainMode):
    """Quick Mode, both roles."""

    def _phase1_done(self, sa: IKESA, now: float) -> None:
        if sa.initiator and (sa.l2tp or sa.tunnel is not None):
            self._qm_initiate(sa, now, selectors=sa.tunnel)

    def _new_spi(self) -> bytes:
        pending = {q.our_spi for s in self._sas.values() for q in s.quick.values()}
        while True:
            spi = self._rng(4)
            value = int.from_bytes(spi, "big")
            if value > 255 and value not in self._children and spi not in pending:
                return spi

    # -- initiator ------------------------------------------------------------------------

    def start_tunnel(self, peer_ip: str, selectors: TunnelSelectors, now: float) -> bool:
        """A tunnel-mode Quick Mode on the newest established ISAKMP SA with ``peer_ip``
        (whichever side began it: RFC 2409 5.5); False when there is none."""
        best: IKESA | None = None
        for sa in self._sas.values():
            if sa.established and sa.peer[0] == peer_ip and (
                best is None or sa.established_at > best.established_at
            ):
                best = sa
        if best is None:
            return False
        self._qm_initiate(best, now, selectors=selectors)
        return True

    def tunnel_pending(self, peer_ip: str, selectors: TunnelSelectors) -> bool:
        """A Quick Mode we started for ``selectors`` with ``peer_ip`` is under way."""
        return any(
            q.initiator and q.selectors == selectors
            for sa in self._sas.values() if sa.peer[0] == peer_ip
            for q in sa.quick.values()
        )

    def _qm_initiate(
        self, sa: IKESA, now: float, replaces: int | None = None,
        selectors: TunnelSelectors | None = None,
    ) -> None:
        """QM1: for L2TP (transport mode, IDs UDP/1701) or, with ``selectors``, for a
        tunnel (IDs of the two subnets); UDP-encapsulated when a NAT was detected.

        ``replaces``: the inbound SPI of the child SA this Quick Mode rekeys.
        """
        assert sa.prf is not None and sa.keys is not None
        cfg = self.config
        udp = sa.nat_t and sa.nat
        tunnel = selectors is not None
        if udp and tunnel:  # RFC 3947 5.1 (the drafts' numbers with a draft peer)
            mode = _M.UDP_TUNNEL_DRAFT if sa.nat_t_draft else _M.UDP_TUNNEL
        elif udp:
            mode = _M.UDP_TRANSPORT_DRAFT if sa.nat_t_draft else _M.UDP_TRANSPORT
        else:
            mode = _M.TUNNEL if tunnel else _M.TRANSPORT
        qx = QuickExchange(self._message_id(), True, self._new_spi(), created=now)
        qx.replaces = replaces
        qx.selectors = selectors
        qx.ni_b = self._rng(NONCE_SIZE)
        pfs = None if cfg.pfs_group is None else Group(cfg.pfs_group)
        proposal = cfg.policy.phase2_sa(
            qx.our_spi, mode, pfs_group=pfs, lifetime=int(cfg.sa_lifetime),
            lifetime_kb=cfg.sa_lifetime_kb or None,
        )
        payloads: list[Payload] = [proposal, NoncePayload(qx.ni_b)]
        if pfs is not None:
            qx.dh, public = get_group(pfs).generate(self._rng)
            payloads.append(KEPayload(public))
        if selectors is not None:
            # RFC 2407 4.6.2: IDci, IDcr of the subnets behind each end, any protocol.
            qx.ids = (
                IDPayload.from_network(selectors.local),
                IDPayload.from_network(selectors.remote),
            )
        else:
            qx.ids = (
                IDPayload.from_address(sa.local[0], _UDP_PROTO, cfg.l2tp_port),
                IDPayload.from_address(sa.peer[0], _UDP_PROTO, cfg.l2tp_port),
            )
        payloads += qx.ids
        if udp and not tunnel:
            # RFC 3947 5.2: our original address and the responder's, for transport mode.
            draft = bool(sa.nat_t_draft)
            payloads += [
                NatOAPayload.from_address(sa.local[0], draft),
                NatOAPayload.from_address(sa.peer[0], draft),
            ]
            qx.nat_oa = (sa.local[0], sa.peer[0])
        qx.lifetime = cfg.sa_lifetime
        qx.lifetime_kb = cfg.sa_lifetime_kb
        qx.offered = proposal
        qx.state = "qm1"
        prf, skeyid_a, mid = sa.prf, sa.keys.skeyid_a, qx.message_id
        sa.quick[mid] = qx
        data = self._protected(
            sa, ExchangeType.QUICK, mid, payloads, lambda a: quick_hash1(prf, skeyid_a, mid, a)
        )
        qx.outstanding = self._send_request(sa, data, now)

    def _qm2_received(
        self, sa: IKESA, qx: QuickExchange, header: ISAKMPHeader, body: bytes, data: bytes,
        now: float,
    ) -> None:
        assert sa.prf is not None and sa.keys is not None and sa.crypto is not None
        mid = header.message_id
        plain, raws = self._open(sa, header, body)
        digest, after = self._after_hash(plain, raws)
        if digest != quick_hash2(sa.prf, sa.keys.skeyid_a, mid, qx.ni_b, after):
            raise ParseError("Quick Mode HASH(2) mismatch")
        sa.crypto.advance(mid, body)
        payloads = [r.decode() for r in raws[1:]]
        sas = [p for p in payloads if isinstance(p, SAPayload)]
        nonces = [p for p in payloads if isinstance(p, NoncePayload)]
        kes = [p for p in payloads if isinstance(p, KEPayload)]
        ids = tuple(p for p in payloads if isinstance(p, IDPayload))
        if len(sas) != 1 or len(nonces) != 1:
            raise ParseError("QM2 without SA and nonce")
        choice = self.config.policy.match_phase2(sas[0])
        if (
            choice is None
            or (choice.group is not None) != (qx.dh is not None)
            or not _offered(qx.offered, choice)
        ):
            self._qm_failed(sa, qx, "responder chose a proposal we did not offer", now)
            return
        if qx.selectors is not None and ids != qx.ids:
            # RFC 2409 5.5: the responder returns the client IDs it was sent, unchanged
            # (a narrower or wider tunnel would not be the one we asked for).
            self._qm_failed(sa, qx, "responder changed the tunnel IDs", now)
            return
        qx.nr_b = nonces[0].data
        if qx.dh is not None:
            if len(kes) != 1 or choice.group is None:
                raise ParseError("QM2 without KE under PFS")
            qx.gqm_xy = get_group(choice.group).shared(qx.dh, kes[0].data)
        qx.choice = choice
        if choice.lifetime is not None:
            qx.lifetime = min(qx.lifetime, float(choice.lifetime))
        qx.lifetime_kb = _min_kb(qx.lifetime_kb, choice.lifetime_kb or 0)
        for p in payloads:
            if isinstance(p, NotifyPayload) and p.notify_type == NotifyType.RESPONDER_LIFETIME:
                # RFC 2407 4.6.3.1: the responder's shorter lifetimes, seconds and/or KB
                secs, kb = _responder_lifetime(p.data)
                if secs is not None:
                    qx.lifetime = min(qx.lifetime, float(secs))
                if kb is not None:
                    qx.lifetime_kb = _min_kb(qx.lifetime_kb, kb)
        reply = encode_message(
            self._header(sa, ExchangeType.QUICK, mid),
            [HashPayload(quick_hash3(sa.prf, sa.keys.skeyid_a, mid, qx.ni_b, qx.nr_b))],
            encrypt=sa.crypto.encrypt_for(mid),
        )
        self._remember(sa, data, reply)
        self._send(sa, reply)
        sa.crypto.forget(mid)
        del sa.quick[mid]
        self._make_child(sa, qx, choice, choice.peer_spi, now)

    # -- responder ------------------------------------------------------------------------

    def _qm1_received(
        self, sa: IKESA, header: ISAKMPHeader, body: bytes, data: bytes, now: float
    ) -> None:
        assert sa.prf is not None and sa.keys is not None and sa.crypto is not None
        cfg = self.config
        mid = header.message_id
        plain, raws = self._open(sa, header, body)
        digest, after = self._after_hash(plain, raws)
        if digest != quick_hash1(sa.prf, sa.keys.skeyid_a, mid, after):
            raise ParseError("Quick Mode HASH(1) mismatch")
        sa.crypto.advance(mid, body)
        payloads = [r.decode() for r in raws[1:]]
        sas = [p for p in payloads if isinstance(p, SAPayload)]
        nonces = [p for p in payloads if isinstance(p, NoncePayload)]
        kes = [p for p in payloads if isinstance(p, KEPayload)]
        ids = [p for p in payloads if isinstance(p, IDPayload)]
        oas = [p for p in payloads if isinstance(p, NatOAPayload)]
        if len(sas) != 1 or len(nonces) != 1 or len(ids) not in (0, 2) or len(kes) > 1:
            raise ParseError("QM1 payloads")
        qx = QuickExchange(mid, False, self._new_spi(), created=now)
        qx.ni_b = nonces[0].data
        policy = cfg.tunnel_policy
        tunnel_ok = cfg.tunnel_ok or (policy is not None and policy.tunnel_peer(sa.peer[0]))
        modes: set[int] = set()
        if sa.nat_t:
            modes |= {_M.UDP_TRANSPORT, _M.UDP_TRANSPORT_DRAFT}
            if tunnel_ok:
                modes |= {_M.UDP_TUNNEL, _M.UDP_TUNNEL_DRAFT}
        if not sa.nat:
            modes.add(_M.TRANSPORT)
            if tunnel_ok:
                modes.add(_M.TUNNEL)
        choice = cfg.policy.match_phase2(sas[0], modes=modes)
        if choice is None or (choice.group is None) != (not kes):
            self.stats.no_proposal += 1
            self._qm_refuse(sa, mid, NotifyType.NO_PROPOSAL_CHOSEN, sas[0])
            return
        if choice.encapsulation.is_transport and not self._l2tp_ids(ids):
            self._qm_refuse(sa, mid, NotifyType.INVALID_ID_INFORMATION, sas[0])
            return
        if not choice.encapsulation.is_transport and not cfg.tunnel_ok and policy is not None:
            # RFC 4301 4.4.1: a tunnel only for the selectors the peer's site allows
            # (inside them, narrower is fine); RFC 2407 4.6.2.14: else INVALID-ID-INFORMATION.
            # The data path checks addresses only: any protocol and port, or refuse.
            whole = len(ids) == 2 and all(i.protocol == 0 and i.port == 0 for i in ids)
            wanted = _selectors(ids[1], ids[0]) if whole else None
            if wanted is None or not policy.tunnel_allowed(sa.peer[0], wanted):
                shown = (
                    "without subnet IDs for any protocol" if wanted is None
                    else f"{wanted.local} <-> {wanted.remote}"
                )
                log.warning(
                    "IKE peer %s: tunnel %s refused: not inside the networks of its site",
                    fmt_peer(sa.peer), shown,
                )
                self._qm_refuse(sa, mid, NotifyType.INVALID_ID_INFORMATION, sas[0])
                return
        qx.choice = choice
        qx.nr_b = self._rng(NONCE_SIZE)
        out: list[Payload] = [choice.sa_payload(qx.our_spi), NoncePayload(qx.nr_b)]
        if choice.group is not None:
            qx.dh, public = get_group(choice.group).generate(self._rng)
            qx.gqm_xy = get_group(choice.group).shared(qx.dh, kes[0].data)
            out.append(KEPayload(public))
        out += ids  # RFC 2409 5.5: the responder echoes the client IDs
        if choice.encapsulation in (_M.UDP_TRANSPORT, _M.UDP_TRANSPORT_DRAFT):
            # RFC 3947 5.2: in UDP-encapsulated transport mode both ends send NAT-OA
            # (the drafts: one payload, the sender's own address).
            if sa.nat_t_draft:
                out.append(NatOAPayload.from_address(sa.local[0], True))
            else:
                out += [
                    NatOAPayload.from_address(sa.peer[0]),
                    NatOAPayload.from_address(sa.local[0]),
                ]
        if oas:
            qx.nat_oa = (str(oas[0].ip()), str(oas[1].ip()) if len(oas) > 1 else sa.local[0])
        if choice.encapsulation.is_transport or len(ids) != 2:
            qx.selectors = None
        else:
            qx.selectors = _selectors(ids[1], ids[0])  # IDcr is ours, IDci the peer's
        peer_life = choice.lifetime if choice.lifetime is not None else _DEFAULT_LIFETIME
        qx.lifetime = min(float(peer_life), cfg.sa_lifetime)
        # RFC 2407 4.5: no kilobyte attribute means no kilobyte limit.
        peer_kb = choice.lifetime_kb or 0
        qx.lifetime_kb = _min_kb(peer_kb, cfg.sa_lifetime_kb)
        # RFC 2407 4.6.3.1: tell the initiator which lifetimes we keep shorter (one notify,
        # seconds and kilobytes alike).
        attrs: list[Attribute] = []
        if peer_life > cfg.sa_lifetime:
            attrs += [
                Attribute(IPsecAttributeType.SA_LIFE_TYPE, LifeType.SECONDS),
                Attribute.of(IPsecAttributeType.SA_LIFE_DURATION, int(cfg.sa_lifetime)),
            ]
        if qx.lifetime_kb != peer_kb:
            attrs += [
                Attribute(IPsecAttributeType.SA_LIFE_TYPE, LifeType.KILOBYTES),
                Attribute.of(IPsecAttributeType.SA_LIFE_DURATION, qx.lifetime_kb),
            ]
        if attrs:
            out.append(
                NotifyPayload(
                    NotifyType.RESPONDER_LIFETIME, choice.peer_spi, encode_attributes(attrs),
                    ProtocolID.ESP,
                )
            )
        qx.state = "qm2"
        sa.quick[mid] = qx
        prf, skeyid_a, ni_b = sa.prf, sa.keys.skeyid_a, qx.ni_b
        reply = self._protected(
            sa, ExchangeType.QUICK, mid, out, lambda a: quick_hash2(prf, skeyid_a, mid, ni_b, a)
        )
        self._remember(sa, data, reply)
        qx.outstanding = self._send_request(sa, reply, now)

    def _l2tp_ids(self, ids: list[IDPayload]) -> bool:
        """Transport mode is for L2TP only: UDP, port 1701 or any on both sides."""
        if not ids:
            return True
        ports = (0, self.config.l2tp_port)
        return all(i.protocol == _UDP_PROTO and i.port in ports for i in ids)

    def _qm3_received(
        self, sa: IKESA, qx: QuickExchange, header: ISAKMPHeader, body: bytes, data: bytes,
        now: float,
    ) -> None:
        assert sa.prf is not None and sa.keys is not None and sa.crypto is not None
        mid = header.message_id
        _plain, raws = self._open(sa, header, body)
        if not raws or raws[0].type != HashPayload(b"").payload_type:
            raise ParseError("QM3 without HASH(3)")
        if raws[0].body != quick_hash3(sa.prf, sa.keys.skeyid_a, mid, qx.ni_b, qx.nr_b):
            raise ParseError("Quick Mode HASH(3) mismatch")
        sa.crypto.forget(mid)
        del sa.quick[mid]
        self._remember(sa, data, None)
        assert qx.choice is not None
        self._make_child(sa, qx, qx.choice, qx.choice.peer_spi, now)

    def _qm_refuse(self, sa: IKESA, mid: int, kind: int, proposal: SAPayload) -> None:
        name = NotifyType(kind).name.replace("_", "-")
        log.warning("IKE peer %s: Quick Mode refused (%s)", fmt_peer(sa.peer), name)
        self._emit(NegotiationFailed(sa.peer, name))
        spi = proposal.proposals[0].spi if proposal.proposals else b""
        self._send_notify(sa, kind, spi, protocol=ProtocolID.ESP)
        if sa.crypto is not None:
            sa.crypto.forget(mid)

    def _qm_failed(self, sa: IKESA, qx: QuickExchange, why: str, now: float) -> None:
        log.warning("IKE peer %s: Quick Mode failed (%s)", fmt_peer(sa.peer), why)
        self._emit(NegotiationFailed(sa.peer, why))
        sa.quick.pop(qx.message_id, None)
        if sa.crypto is not None:
            sa.crypto.forget(qx.message_id)
        self._rekey_failed(qx, now)

    def _rekey_failed(self, qx: QuickExchange, now: float) -> None:
        """Hook: a Quick Mode we started failed (rekeys retry)."""

    def _child_made(self, sa: IKESA, qx: QuickExchange, child: ChildSA, now: float) -> None:
        """Hook: a Quick Mode produced ``child`` (rekey timers start here)."""

    def _qm_received(
        self, sa: IKESA, header: ISAKMPHeader, body: bytes, data: bytes, now: float
    ) -> None:
        if not sa.established or not header.encrypted or header.message_id == 0:
            raise ParseError("Quick Mode outside an established ISAKMP SA")
        qx = sa.quick.get(header.message_id)
        if qx is None:
            self._qm1_received(sa, header, body, data, now)
        elif qx.initiator and qx.state == "qm1":
            self._qm2_received(sa, qx, header, body, data, now)
        elif not qx.initiator and qx.state == "qm2":
            self._qm3_received(sa, qx, header, body, data, now)
        else:
            raise ParseError("unexpected Quick Mode message")

    # -- the result -----------------------------------------------------------------------

    def _make_child(
        self, sa: IKESA, qx: QuickExchange, choice: Phase2Choice, peer_spi: bytes, now: float
    ) -> ChildSA:
        assert sa.prf is not None and sa.keys is not None
        suite = choice.suite
        enc_len = suite.key_bits // 8 + (4 if suite.auth is None else 0)
        udp = choice.encapsulation.is_udp
        mode = "transport" if choice.encapsulation.is_transport else "tunnel"
        local = (sa.local[0], sa.local[1] if udp else 0)
        peer = (sa.peer[0], sa.peer[1] if udp else 0)
        prf, skeyid_d = sa.prf, sa.keys.skeyid_d
        # Kilobyte lifetime (RFC 2407 4.5), each direction counted apart. Initiator (we
        # rekey): the ESP layer reports the soft limit of either direction (shell ->
        # child_soft_limit) and the rekey replaces the SA before the hard limit. Responder:
        # no soft limit; the hard limit ends the SA (shell -> child_hard_limit).
        hard = qx.lifetime_kb * 1024
        soft = int(hard * KB_SOFT_FRACTION) if qx.initiator else 0

        def params(spi: bytes) -> ESPParams:
            km = keymat(prf, skeyid_d, ProtocolID.ESP, spi, qx.ni_b, qx.nr_b,
                        suite.keymat_length, qx.gqm_xy)
            return ESPParams(
                spi=int.from_bytes(spi, "big"),
                enc=enc_name(suite.transform),
                enc_key=km[:enc_len],
                auth=auth_name(suite.auth),
                auth_key=km[enc_len:],
                mode=mode,  # type: ignore[arg-type]
                udp_encap=udp,
                local=local[0],
                peer=peer[0],
                local_port=local[1],
                peer_port=peer[1],
                soft_bytes=soft,
                hard_bytes=hard,
            )

        child = ChildSA(
            peer, local, udp, mode, params(qx.our_spi), params(peer_spi), sa.peer_id,
            qx.nat_oa, qx.lifetime, now, sa.cookies, qx.lifetime_kb,
            qx.selectors if mode == "tunnel" else None,
        )
        self._children[child.inbound.spi] = child
        self.stats.child_sas += 1
        if self._keylog is not None:
            self._keylog.esp_pair(child.inbound, child.outbound)
        log.info(
            "IKE peer %s: child SA up, %s %s%s, in %08x out %08x%s%s",
            fmt_peer(sa.peer), suite.name, mode, " (UDP)" if udp else "",
            child.inbound.spi, child.outbound.spi,
            "" if child.selectors is None
            else f", {child.selectors.local} <-> {child.selectors.remote}",
            f", {qx.lifetime_kb} KB" if qx.lifetime_kb else "",
        )
        self._child_made(sa, qx, child, now)
        rtt = now - qx.created if qx.initiator else 0.0
        self._emit(ChildSAEstablished(child, initiator=qx.initiator, rtt=rtt))
        return child


def _offered(ours: SAPayload | None, choice: Phase2Choice) -> bool:
    """The responder's transform is one we proposed (same ID and attributes)."""
    if ours is None:
        return False
    want = (choice.transform.transform_id, frozenset(choice.transform.attributes))
    return any(
        (t.transform_id, frozenset(t.attributes)) == want
        for p in ours.proposals
        for t in p.transforms
    )


def _min_kb(a: int, b: int) -> int:
    """The shorter of two kilobyte lifetimes, 0 meaning none."""
    return min(a, b) if a and b else a or b


def _responder_lifetime(data: bytes) -> tuple[int | None, int | None]:
    """(seconds, kilobytes) from the attributes of a RESPONDER-LIFETIME notify
    (RFC 2407 4.6.3.1: life type / duration pairs); None for what it does not carry."""
    try:
        attrs = decode_attributes(data)
    except ParseError:
        return None, None
    found: dict[int, int] = {}
    life_type = None
    for a in attrs:
        if a.type == IPsecAttributeType.SA_LIFE_TYPE:
            life_type = a.as_int()
        elif a.type == IPsecAttributeType.SA_LIFE_DURATION and life_type is not None:
            value = min(a.as_int(), _MAX_DURATION)  # hostile input: no huge numbers
            if value > 0:
                found.setdefault(life_type, value)
            life_type = None
    return found.get(LifeType.SECONDS), found.get(LifeType.KILOBYTES)


def _selectors(ours: IDPayload, peers: IDPayload) -> TunnelSelectors | None:
    """Tunnel selectors from subnet or address IDs (None for other ID types)."""
    try:
        return TunnelSelectors(str(ours.network()), str(peers.network()))
    except ValueError:
        return None
