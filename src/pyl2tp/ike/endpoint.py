"""The IKEv1 endpoint (sans-I/O): every ISAKMP SA and Quick Mode of one host.

The shell feeds it datagrams (``datagram_received``, the non-ESP marker of port 4500
already stripped), sends what ``datagrams_to_send`` returns, calls ``handle_timer`` at
``get_timer`` and acts on ``next_events`` (install ESP SAs, tear down tunnels).

ISAKMP SAs are keyed by their cookies, never by address: several clients behind one NAT
address each have their own SA and their own ESP peer (address, NAT-mapped port).
Not implemented: Aggressive Mode as initiator (as responder only if configured),
certificates, rekeying (a child SA that reaches its
lifetime is deleted, with a :class:`ChildSADeleted` event).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable

from pyl2tp.errors import ParseError
from pyl2tp.ike.events import Event, NegotiationFailed
from pyl2tp.ike.informational import fmt_peer, notify_name
from pyl2tp.ike.quick import QuickMode
from pyl2tp.ike.sa import IKESA, Addr, ChildSA, IKEConfig, IKESAInfo, IKEStats, Outstanding
from pyl2tp.keylog import KeyLog
from pyl2tp.wire.isakmp import (
    ExchangeType,
    NotifyPayload,
    decode_message,
    split_payloads,
)

__all__ = ["Addr", "ChildSA", "IKEConfig", "IKEEndpoint", "IKESAInfo", "IKEStats"]

log = logging.getLogger("pyl2tp.ike")
_ZERO = bytes(8)


class IKEEndpoint(QuickMode):
    """IKEv1 responder and initiator: Main Mode (PSK), Quick Mode, informational, DPD."""

    def __init__(
        self,
        config: IKEConfig,
        *,
        random_bytes: Callable[[int], bytes],
        keylog: KeyLog | None = None,
    ) -> None:
        super().__init__(config, random_bytes=random_bytes, keylog=keylog)

    # -- input --------------------------------------------------------------------------

    def datagram_received(
        self, data: bytes, peer: Addr, local: Addr, now: float, *, nat_t: bool
    ) -> None:
        """One ISAKMP message (marker stripped if ``nat_t``). Never raises on bad input."""
        self.stats.received += 1
        try:
            self._dispatch(bytes(data), peer, local, now, nat_t)
        except (ParseError, ValueError, KeyError, IndexError, struct.error) as e:
            self.stats.malformed += 1
            log.debug("IKE peer %s: message dropped: %s", fmt_peer(peer), e)

    def _dispatch(self, data: bytes, peer: Addr, local: Addr, now: float, nat_t: bool) -> None:
        header, body = decode_message(data)
        if header.major_version != 1:
            raise ParseError(f"ISAKMP version {header.version:#x}")
        sa = self._sas.get(header.cookies)
        if sa is None:
            if header.responder_cookie == _ZERO:
                first = header.exchange == ExchangeType.MAIN or (
                    header.exchange == ExchangeType.AGGRESSIVE and self.config.aggressive
                )
                if first and not header.encrypted:
                    key = self._half.get((header.initiator_cookie, peer))
                    sa = self._sas.get(key) if key is not None else None
                    if sa is None:
                        self._mm1_received(header, body, data, peer, local, now, nat_t)
                        return
                elif header.exchange == ExchangeType.INFORMATIONAL and not header.encrypted:
                    self._stray_notify(body, header.next_payload, peer)
                    return
            else:
                half = self._sas.get(header.initiator_cookie + _ZERO)
                if (
                    half is not None and half.initiator and half.state == "mm1"
                    and header.exchange == ExchangeType.MAIN and not header.encrypted
                ):
                    del self._sas[half.cookies]
                    half.rcookie = header.responder_cookie
                    self._sas[half.cookies] = half
                    sa = half
                elif header.exchange == ExchangeType.INFORMATIONAL and not header.encrypted:
                    if half is not None and half.initiator and half.peer[0] == peer[0]:
                        self._clear_notify(half, header, body)
                    else:
                        self._stray_notify(body, header.next_payload, peer)
                    return
        if sa is None:
            self.stats.unknown_cookie += 1
            return
        digest = hashlib.sha1(data).digest()
        if digest in sa.answers:
            # RFC 2408 / 2409: a retransmitted message gets our answer again, unprocessed.
            self.stats.duplicates += 1
            answer = sa.answers[digest]
            if answer is not None:
                self._send(sa, answer)
            return
        if sa.established and sa.peer[0] != peer[0]:
            self.stats.unknown_cookie += 1
            return
        before = (sa.peer, sa.local, sa.nat_t)
        if not sa.established and (not sa.initiator or nat_t):
            # RFC 3947 4: answer where the peer talks from (it may float to 4500).
            sa.peer, sa.local, sa.nat_t = peer, local, nat_t or sa.nat_t
        # RFC 3947 4: behind a NAT the peer's port may change; answer where it now is,
        # once the message authenticated (the handlers raise otherwise).
        moved = sa.established and sa.nat_t and nat_t and peer != sa.peer
        old_peer = sa.peer
        if moved:
            sa.peer = peer
        try:
            if header.exchange == ExchangeType.MAIN:
                self._mm_received(sa, header, body, data, now)
            elif header.exchange == ExchangeType.AGGRESSIVE:
                self._am_received(sa, header, body, data, now)
            elif header.exchange == ExchangeType.QUICK:
                self._qm_received(sa, header, body, data, now)
            elif header.exchange == ExchangeType.INFORMATIONAL:
                self._informational_received(sa, header, body, data, now)
            else:
                raise ParseError(f"exchange type {header.exchange} not supported")
        except BaseException:
            sa.peer, sa.local, sa.nat_t = before  # a bad message moves nothing
            raise
        if moved:
            log.info("IKE peer %s: NAT mapping moved to %s", fmt_peer(old_peer), fmt_peer(peer))
        if sa.keys is not None:
            sa.last_seen = now

    def _stray_notify(self, body: bytes, first: int, peer: Addr) -> None:
        """A clear notify naming one of our half-open SAs in its SPI (e.g. SoftEther's
        NO-PROPOSAL-CHOSEN, sent with fresh cookies)."""
        for raw in split_payloads(first, body):
            p = raw.decode()
            if not isinstance(p, NotifyPayload) or len(p.spi) not in (8, 16):
                continue
            sa = self._sas.get(p.spi[:8] + _ZERO) or self._sas.get(p.spi)
            if sa is not None and not sa.established and sa.peer[0] == peer[0]:
                self._clear_notify_payload(sa, p)
                return
        self.stats.unknown_cookie += 1

    def _clear_notify_payload(self, sa: IKESA, p: NotifyPayload) -> None:
        if p.notify_type >= 16384:
            return
        name = notify_name(p.notify_type)
        log.warning("IKE peer %s: peer sent %s", fmt_peer(sa.peer), name)
        self._emit(NegotiationFailed(sa.peer, name))
        self._drop_ike(sa, f"peer sent {name}")

    # -- output -------------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr, Addr, bool]]:
        """(message, peer, local, nat_t) to send; the shell adds the marker on 4500."""
        out, self._out = self._out, []
        return out

    def next_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- commands -----------------------------------------------------------------------

    def initiate(self, peer_ip: str, now: float, *, local: Addr, l2tp: bool = True) -> None:
        """Start Main Mode to ``peer_ip`` (port 500, or 4500 if ``local`` is on 4500),
        then Quick Mode for L2TP (UDP/1701 transport) if ``l2tp``."""
        self._mm_initiate(peer_ip, local, now, l2tp)

    def delete_child(self, child: ChildSA, now: float) -> None:
        """Delete a child SA and tell the peer (RFC 2408 3.15)."""
        sa = self._sas.get(child.ike_cookies)
        if sa is not None and sa.established:
            self._send_delete_children(sa, [child])
        self._drop_child(child, "deleted locally")

    def delete_all(self, now: float) -> None:
        """Delete every child and ISAKMP SA, telling each peer."""
        for sa in list(self._sas.values()):
            if sa.established:
                self._send_delete_children(sa, self._children_of(sa))
                self._send_delete_ike(sa)
            for child in self._children_of(sa):
                self._drop_child(child, "deleted locally")
            self._drop_ike(sa, "deleted locally")
        for child in list(self._children.values()):
            self._drop_child(child, "deleted locally")

    def child_sas(self) -> list[ChildSA]:
        return list(self._children.values())

    def ike_sas(self) -> list[IKESAInfo]:
        return [sa.info() for sa in self._sas.values()]

    def child_traffic(self, child: ChildSA, now: float) -> None:
        """ESP arrived on ``child``: the peer is alive (RFC 3706 5: no DPD while traffic flows)."""
        sa = self._sas.get(child.ike_cookies)
        if sa is not None:
            sa.last_seen = max(sa.last_seen, now)

    # -- timers -------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next run, or None."""
        times: list[float] = []
        for sa in self._sas.values():
            if sa.outstanding is not None:
                times.append(sa.outstanding.next_at)
            times += [q.outstanding.next_at for q in sa.quick.values() if q.outstanding]
            if sa.established:
                times.append(sa.established_at + sa.lifetime)
                dpd = self._dpd_deadline(sa)
                if dpd is not None:
                    times.append(dpd)
        times += [c.created + c.lifetime for c in self._children.values()]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for sa in list(self._sas.values()):
            self._sa_timer(sa, now)
        for child in list(self._children.values()):
            if now >= child.created + child.lifetime:
                owner = self._sas.get(child.ike_cookies)
                if owner is not None and owner.established:
                    self._send_delete_children(owner, [child])
                self._drop_child(child, "lifetime expired")

    def _retransmit(self, sa: IKESA, out: Outstanding, now: float) -> bool:
        """Resend if due; False when the retries are used up."""
        if now < out.next_at:
            return True
        if out.tries >= self.config.retransmit_max:
            return False
        out.tries += 1
        out.interval *= 2
        out.next_at = now + out.interval
        self.stats.retransmits += 1
        self._send(sa, out.data)
        return True

    def _sa_timer(self, sa: IKESA, now: float) -> None:
        if sa.outstanding is not None and not self._retransmit(sa, sa.outstanding, now):
            self.stats.timeouts += 1
            self._emit(NegotiationFailed(sa.peer, f"timeout in Main Mode ({sa.state})"))
            self._drop_ike(sa, "timeout")
            return
        for qx in list(sa.quick.values()):
            if qx.outstanding is not None and not self._retransmit(sa, qx.outstanding, now):
                self.stats.timeouts += 1
                self._qm_failed(sa, qx, "timeout in Quick Mode")
        if sa.established and now >= sa.established_at + sa.lifetime:
            self._send_delete_ike(sa)
            self._drop_ike(sa, "lifetime expired")
            return
        self._dpd_timer(sa, now)
