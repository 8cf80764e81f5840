"""The endpoint's shared core and the Informational exchange (RFC 2408 4.8, RFC 2409 5.7).

:class:`EndpointCore` holds what every exchange needs (SA tables, output queue, events,
counters) and the helpers to send protected messages. :class:`Informational` adds
Delete, notifications, INITIAL-CONTACT and Dead Peer Detection (RFC 3706).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable, Sequence

from pyl2tp.errors import ParseError
from pyl2tp.ike.crypto import informational_hash
from pyl2tp.ike.events import (
    AuthenticationFailed,
    ChildSADeleted,
    Event,
    IKESADeleted,
    NegotiationFailed,
    PeerDead,
)
from pyl2tp.ike.proposals import AuthMethod
from pyl2tp.ike.sa import IKESA, Addr, ChildSA, IKEConfig, IKEStats, Outstanding, RekeyState
from pyl2tp.keylog import KeyLog
from pyl2tp.wire.isakmp import (
    DeletePayload,
    ExchangeType,
    HashPayload,
    ISAKMPHeader,
    NotifyPayload,
    NotifyType,
    Payload,
    ProtocolID,
    RawPayload,
    encode_message,
    encode_payloads,
    split_payloads,
)

__all__ = ["EndpointCore", "Informational", "notify_name"]

log = logging.getLogger("pyl2tp.ike")
_SEQ = struct.Struct(">I")
_MAX_ANSWERS = 16
_AUTH_NOTIFIES = frozenset(
    {NotifyType.AUTHENTICATION_FAILED, NotifyType.INVALID_HASH_INFORMATION,
     NotifyType.PAYLOAD_MALFORMED}
)


def notify_name(kind: int) -> str:
    """NO-PROPOSAL-CHOSEN style name of a notify type."""
    try:
        return NotifyType(kind).name.replace("_", "-")
    except ValueError:
        return f"notify {kind}"


def fmt_peer(peer: Addr) -> str:
    return f"{peer[0]}:{peer[1]}"


class EndpointCore:
    """State and helpers shared by every exchange of :class:`pyl2tp.ike.endpoint.IKEEndpoint`."""

    def __init__(
        self,
        config: IKEConfig,
        *,
        random_bytes: Callable[[int], bytes],
        keylog: KeyLog | None = None,
    ) -> None:
        self.config = config
        self._rng = random_bytes
        self._keylog = keylog
        self.stats = IKEStats()
        self._sas: dict[bytes, IKESA] = {}  # by icookie | rcookie (rcookie 0 while half-open)
        self._children: dict[int, ChildSA] = {}  # by inbound SPI
        self._rekey: dict[int, RekeyState] = {}  # by inbound SPI
        self._half: dict[tuple[bytes, Addr], bytes] = {}  # responder: (CKY-I, peer) -> cookies
        self._out: list[tuple[bytes, Addr, Addr, bool]] = []
        self._events: list[Event] = []
        self._aggressive_logged: dict[str, float] = {}  # peer IP -> when we said it was off

    # -- output ---------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _send(self, sa: IKESA, data: bytes) -> None:
        self.stats.sent += 1
        self._out.append((data, sa.peer, sa.local, sa.nat_t))

    def _send_request(self, sa: IKESA, data: bytes, now: float) -> Outstanding:
        """Send a message that expects an answer; the timer resends it."""
        self._send(sa, data)
        interval = self.config.retransmit_initial
        return Outstanding(data, now + interval, interval)

    def _remember(self, sa: IKESA, received: bytes, answer: bytes | None) -> None:
        """Keep our answer to a received message, to resend on a duplicate."""
        sa.answers[hashlib.sha1(received).digest()] = answer
        while len(sa.answers) > _MAX_ANSWERS:
            del sa.answers[next(iter(sa.answers))]

    def _header(self, sa: IKESA, exchange: int, message_id: int) -> ISAKMPHeader:
        return ISAKMPHeader(sa.icookie, sa.rcookie, exchange, 0, message_id)

    def _protected(
        self,
        sa: IKESA,
        exchange: int,
        message_id: int,
        payloads: Sequence[Payload],
        hash_of: Callable[[bytes], bytes],
    ) -> bytes:
        """An encrypted message: HASH(hash_of(payloads after it)) then ``payloads``."""
        assert sa.crypto is not None
        digest = hash_of(encode_payloads(payloads))
        return encode_message(
            self._header(sa, exchange, message_id),
            [HashPayload(digest), *payloads],
            encrypt=sa.crypto.encrypt_for(message_id),
        )

    def _open(self, sa: IKESA, header: ISAKMPHeader, body: bytes) -> tuple[bytes, list[RawPayload]]:
        """Decrypt without advancing the IV (ParseError if malformed)."""
        if sa.crypto is None or not header.encrypted:
            raise ParseError("expected an encrypted message")
        plain = sa.crypto.decrypt(header.message_id, body, advance=False)
        return plain, split_payloads(header.next_payload, plain, padded=True)

    @staticmethod
    def _after_hash(plain: bytes, raws: list[RawPayload]) -> tuple[bytes, bytes]:
        """(HASH payload body, the bytes after it) of a protected message."""
        if not raws or raws[0].type != HashPayload(b"").payload_type:
            raise ParseError("protected message does not start with HASH")
        return raws[0].body, plain[raws[0].end : raws[-1].end]

    # -- SA removal -------------------------------------------------------------------------

    def _children_of(self, sa: IKESA) -> list[ChildSA]:
        return [c for c in self._children.values() if c.ike_cookies == sa.cookies]

    def _ike_for(self, child: ChildSA) -> IKESA | None:
        """The established ISAKMP SA to talk about ``child``: its own, or (after an IKE
        rekey) the newest one with the same peer address and identity."""
        own = self._sas.get(child.ike_cookies)
        if own is not None and own.established:
            return own
        best: IKESA | None = None
        for sa in self._sas.values():
            if (sa.established and sa.peer[0] == child.peer[0] and sa.peer_id == child.peer_id
                    and (best is None or sa.established_at > best.established_at)):
                best = sa
        return best

    def _drop_child(self, child: ChildSA, reason: str) -> None:
        self._rekey.pop(child.inbound.spi, None)
        if self._children.pop(child.inbound.spi, None) is not None:
            log.info(
                "IKE peer %s: child SA in %08x out %08x deleted (%s)",
                fmt_peer(child.peer), child.inbound.spi, child.outbound.spi, reason,
            )
            self._emit(ChildSADeleted(child, reason))

    def _drop_ike(self, sa: IKESA, reason: str, *, children: bool = False) -> None:
        if children:
            for child in self._children_of(sa):
                self._drop_child(child, reason)
        if sa.half_key is not None:
            self._half.pop(sa.half_key, None)
        if self._sas.pop(sa.cookies, None) is None:
            return
        was = sa.state
        sa.state = "dead"
        if was == "established":
            log.info("IKE peer %s: ISAKMP SA deleted (%s)", fmt_peer(sa.peer), reason)
            self._emit(IKESADeleted(sa.peer, sa.cookies, reason))
        else:
            log.info("IKE peer %s: negotiation given up (%s)", fmt_peer(sa.peer), reason)

    def _auth_failed(self, sa: IKESA, what: str, reason: str | None = None) -> None:
        """HASH_I or HASH_R did not verify: event, log line, SA gone.

        A responder also tells the initiator (RFC 2408 3.14.1 AUTHENTICATION-FAILED), or
        the initiator only ever sees a timeout. With signatures both sides hold the same
        keys, so the notify goes protected (RFC 2409 5.7; strongSwan ignores a clear one
        once it has keys); after a PSK mismatch the peer could decrypt nothing of ours, so
        it goes in the clear.
        """
        self.stats.auth_failed += 1
        if reason is None:
            reason = f"pre-shared key mismatch ({what})"
        log.warning("IKE peer %s: %s", fmt_peer(sa.peer), reason)
        self._emit(AuthenticationFailed(sa.peer, reason))
        if not sa.initiator:
            notify = NotifyPayload(NotifyType.AUTHENTICATION_FAILED, sa.cookies)
            signatures = (
                sa.choice is not None and sa.choice.auth_method == AuthMethod.RSA_SIGNATURE
            )
            if signatures and sa.crypto is not None:
                self._send_informational(sa, [notify])
            else:
                header = self._header(sa, ExchangeType.INFORMATIONAL, self._message_id())
                self._send(sa, encode_message(header, [notify]))
        self._drop_ike(sa, "authentication failed")

    # -- informational messages we send ----------------------------------------------------

    def _message_id(self) -> int:
        while True:
            mid = int.from_bytes(self._rng(4), "big")
            if mid:
                return mid

    def _send_informational(self, sa: IKESA, payloads: Sequence[Payload]) -> None:
        """RFC 2409 5.7: HASH(1) | N/D, encrypted under a fresh message ID."""
        if sa.crypto is None or sa.keys is None or sa.prf is None:
            return
        mid = self._message_id()
        prf, skeyid_a = sa.prf, sa.keys.skeyid_a
        data = self._protected(
            sa,
            ExchangeType.INFORMATIONAL,
            mid,
            payloads,
            lambda after: informational_hash(prf, skeyid_a, mid, after),
        )
        sa.crypto.forget(mid)
        self._send(sa, data)

    def _send_notify(self, sa: IKESA, kind: int, spi: bytes = b"", data: bytes = b"",
                     protocol: int = ProtocolID.ISAKMP) -> None:
        self._send_informational(sa, [NotifyPayload(kind, spi or sa.cookies, data, protocol)])

    def _send_delete_children(self, sa: IKESA, children: Sequence[ChildSA]) -> None:
        """RFC 2408 3.15: the SPIs of our inbound SAs (the peer's outbound)."""
        spis = tuple(c.inbound.spi.to_bytes(4, "big") for c in children)
        if spis:
            self._send_informational(sa, [DeletePayload(ProtocolID.ESP, spis)])

    def _send_delete_ike(self, sa: IKESA) -> None:
        self._send_informational(sa, [DeletePayload(ProtocolID.ISAKMP, (sa.cookies,))])


class Informational(EndpointCore):
    """Informational exchanges: Delete, notify, INITIAL-CONTACT, DPD (RFC 3706)."""

    def _informational_received(
        self, sa: IKESA, header: ISAKMPHeader, body: bytes, data: bytes, now: float
    ) -> None:
        if not header.encrypted:
            self._clear_notify(sa, header, body)
            return
        if sa.keys is None or sa.prf is None or sa.crypto is None:
            raise ParseError("encrypted informational before the keys")
        plain, raws = self._open(sa, header, body)
        digest, after = self._after_hash(plain, raws)
        expected = informational_hash(sa.prf, sa.keys.skeyid_a, header.message_id, after)
        if digest != expected:
            # RFC 2409 5.7: an informational without a valid HASH is ignored.
            raise ParseError("informational HASH(1) mismatch")
        sa.crypto.forget(header.message_id)
        self._remember(sa, data, None)
        sa.last_seen = now
        for raw in raws[1:]:
            payload = raw.decode()
            if isinstance(payload, DeletePayload):
                self._delete_received(sa, payload)
            elif isinstance(payload, NotifyPayload):
                self._notify_received(sa, payload, now)

    def _clear_notify(self, sa: IKESA, header: ISAKMPHeader, body: bytes) -> None:
        """An unprotected notify during phase 1 (e.g. NO-PROPOSAL-CHOSEN): give up."""
        for raw in split_payloads(header.next_payload, body):
            payload = raw.decode()
            if isinstance(payload, NotifyPayload) and payload.notify_type < 16384:
                if sa.established:
                    return  # RFC 2408 5.x: unauthenticated, ignore once established
                name = notify_name(payload.notify_type)
                if self._refused_our_auth(sa, payload.notify_type):
                    return
                log.warning("IKE peer %s: peer sent %s", fmt_peer(sa.peer), name)
                self._emit(NegotiationFailed(sa.peer, name))
                self._drop_ike(sa, f"peer sent {name}")
                return

    def _delete_received(self, sa: IKESA, payload: DeletePayload) -> None:
        if payload.protocol == ProtocolID.ISAKMP:
            if sa.cookies in payload.spis:
                self._drop_ike(sa, "deleted by peer")
            return
        if payload.protocol != ProtocolID.ESP:
            return
        gone = {int.from_bytes(s, "big") for s in payload.spis if len(s) == 4}
        # After an IKE rekey the Delete for older children comes on the new ISAKMP SA.
        for child in list(self._children.values()):
            mine = child.ike_cookies == sa.cookies or (
                child.peer[0] == sa.peer[0] and child.peer_id == sa.peer_id
            )
            if mine and child.outbound.spi in gone:
                self._drop_child(child, "deleted by peer")

    def _refused_our_auth(self, sa: IKESA, kind: int) -> bool:
        """The responder could not verify our MM5 (HASH_I or signature) and said so, in
        the clear (PSK) or protected (signatures): end with a reason a person can act on."""
        if not (sa.initiator and sa.state == "mm5" and kind in _AUTH_NOTIFIES):
            return False
        name = notify_name(kind)
        why = None  # with a PSK: almost surely another key
        if sa.choice is not None and sa.choice.auth_method == AuthMethod.RSA_SIGNATURE:
            why = f"certificate authentication failed (peer sent {name})"
        self._auth_failed(sa, f"peer sent {name}", why)
        return True

    def _notify_received(self, sa: IKESA, payload: NotifyPayload, now: float) -> None:
        kind = payload.notify_type
        if self._refused_our_auth(sa, kind):
            return
        if kind == NotifyType.R_U_THERE:
            # RFC 3706 5: answer with the same sequence number.
            if len(payload.data) == 4 and sa.established:
                self._send_notify(sa, NotifyType.R_U_THERE_ACK, sa.cookies, payload.data)
        elif kind == NotifyType.R_U_THERE_ACK:
            if len(payload.data) == 4 and _SEQ.unpack(payload.data)[0] == sa.dpd_pending:
                sa.dpd_pending = None
                sa.dpd_next = now + self.config.dpd_delay
        elif kind == NotifyType.INITIAL_CONTACT:
            self._initial_contact(sa)
        elif kind < 16384:
            name = notify_name(kind)
            log.warning("IKE peer %s: peer sent %s", fmt_peer(sa.peer), name)
            self._emit(NegotiationFailed(sa.peer, name))
            if not sa.established:
                self._drop_ike(sa, f"peer sent {name}")

    def _initial_contact(self, sa: IKESA) -> None:
        """RFC 2407 4.6.3.3: the peer rebooted; its older SAs are gone.

        RFC 3947 6: behind a NAT several hosts share the peer's address, so only SAs with
        that address and the same identity are dropped (the NAT-mapped port changes with a
        reboot); without NAT the address alone names the host.
        """
        for other in list(self._sas.values()):
            if other is sa or not other.established or other.peer[0] != sa.peer[0]:
                continue
            if other.established_at > sa.created:
                # Up while this one was negotiated (both ends initiating at once): the
                # peer's "I know of no SA" predates it.
                continue
            same = other.peer_id == sa.peer_id if sa.nat_peer else True
            if same:
                self._drop_ike(other, "INITIAL-CONTACT", children=True)

    def _other_sas_with(self, sa: IKESA) -> bool:
        """We hold another ISAKMP SA, up or being built, with `sa`'s peer address."""
        return any(o is not sa and o.peer[0] == sa.peer[0] and o.state != "dead"
                   for o in self._sas.values())

    # -- DPD --------------------------------------------------------------------------------

    def _dpd_timer(self, sa: IKESA, now: float) -> None:
        """RFC 3706 5: R-U-THERE after dpd_delay of silence, dead after dpd_timeout."""
        if not sa.established or not sa.peer_dpd or self.config.dpd_delay <= 0:
            return
        counter = self.config.inbound_packets
        if counter is not None:
            # its children, and after an IKE rekey those it took over (as Deletes do)
            seen = sum(counter(c) for c in self._children.values() if self._ike_for(c) is sa)
            if seen != sa.traffic_seen:  # ESP arrived since we last looked: alive
                sa.traffic_seen = seen
                sa.last_seen = max(sa.last_seen, now)
        if now - sa.last_seen >= self.config.dpd_timeout:
            log.warning("IKE peer %s: dead (no answer to DPD)", fmt_peer(sa.peer))
            self.stats.peers_dead += 1
            self._emit(PeerDead(sa.peer, sa.cookies))
            self._drop_ike(sa, "peer dead", children=True)
            return
        if now < sa.dpd_next:
            return
        if now - sa.last_seen >= self.config.dpd_delay:
            if not sa.dpd_seq:  # RFC 3706 7: start at a random sequence number
                sa.dpd_seq = int.from_bytes(self._rng(4), "big") & 0x7FFFFFFF
            sa.dpd_seq = (sa.dpd_seq + 1) & 0xFFFFFFFF or 1
            sa.dpd_pending = sa.dpd_seq
            self.stats.dpd_sent += 1
            self._send_notify(sa, NotifyType.R_U_THERE, sa.cookies, _SEQ.pack(sa.dpd_seq))
            # resend while waiting, a few times per timeout
            sa.dpd_next = now + min(self.config.dpd_delay, self.config.dpd_timeout / 5)
        else:
            sa.dpd_next = sa.last_seen + self.config.dpd_delay

    def _dpd_deadline(self, sa: IKESA) -> float | None:
        if not sa.established or not sa.peer_dpd or self.config.dpd_delay <= 0:
            return None
        return min(max(sa.dpd_next, sa.last_seen + self.config.dpd_delay),
                   sa.last_seen + self.config.dpd_timeout)
