"""The IKEv1 endpoint (sans-I/O): every ISAKMP SA and Quick Mode of one host.

The shell feeds it datagrams (``datagram_received``, the non-ESP marker of port 4500
already stripped), sends what ``datagrams_to_send`` returns, calls ``handle_timer`` at
``get_timer`` and acts on ``next_events`` (install ESP SAs, tear down tunnels).

ISAKMP SAs are keyed by their cookies, never by address: several clients behind one NAT
address each have their own SA and their own ESP peer (address, NAT-mapped port).
Rekeying is initiator-driven, make-before-break: at ``REKEY_FRACTION`` of a child SA's
lifetime (or when the shell reports its ESP soft limit, ``child_soft_limit``) a new Quick
Mode runs; the old child is deleted a grace period after the new one is up. At
``REKEY_FRACTION`` of the ISAKMP SA's lifetime a new Main Mode runs (no INITIAL-CONTACT);
when it is up the old ISAKMP SA is deleted and the child SAs live on. A responder keeps
every child SA until the peer deletes it or its hard lifetime ends (seconds, or the
kilobytes the shell reports through ``child_hard_limit``).
Not implemented: Aggressive Mode as initiator (as responder only if configured).
"""

from __future__ import annotations

import hashlib
import logging
import math
import struct

from pyl2tp.errors import ParseError
from pyl2tp.ike.events import Event, NegotiationFailed
from pyl2tp.ike.informational import fmt_peer, notify_name
from pyl2tp.ike.quick import QuickMode
from pyl2tp.ike.sa import (
    IKESA,
    Addr,
    ChildSA,
    IKEConfig,
    IKESAInfo,
    IKEStats,
    Outstanding,
    QuickExchange,
    RekeyState,
    TunnelSelectors,
)
from pyl2tp.wire.isakmp import (
    ExchangeType,
    NotifyPayload,
    decode_message,
    split_payloads,
)

__all__ = [
    "Addr", "ChildSA", "IKEConfig", "IKEEndpoint", "IKESAInfo", "IKEStats", "TunnelSelectors",
]

log = logging.getLogger("pyl2tp.ike")
_ZERO = bytes(8)
#: rekey (child and ISAKMP SAs) at this fraction of the lifetime (soft lifetime)
REKEY_FRACTION = 0.85
#: a replaced child SA is deleted this fraction of its lifetime after its successor is up
GRACE_FRACTION = 0.05
GRACE_MIN = 2.0
GRACE_MAX = 30.0
_RETRY = 2.0  # a failed rekey is tried again after this many seconds
AGGRESSIVE_LOG_INTERVAL = 60.0  # refused Aggressive Mode: one log line per peer per minute
AGGRESSIVE_LOG_PEERS = 1024  # peers remembered for that


class IKEEndpoint(QuickMode):
    """IKEv1 responder and initiator: Main Mode (PSK), Quick Mode, informational, DPD."""

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
                elif header.exchange == ExchangeType.AGGRESSIVE and not header.encrypted:
                    self._aggressive_refused(peer, now)
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

    def _aggressive_refused(self, peer: Addr, now: float) -> None:
        """Aggressive Mode while it is off: no answer (RFC 2409 5.4 sends the PSK hash
        in the clear), counted, and said in the log once a minute per peer address."""
        self.stats.aggressive_refused += 1
        last = self._aggressive_logged.get(peer[0])
        if last is not None and now - last < AGGRESSIVE_LOG_INTERVAL:
            return
        if len(self._aggressive_logged) >= AGGRESSIVE_LOG_PEERS:
            self._aggressive_logged.clear()
        self._aggressive_logged[peer[0]] = now
        log.warning(
            "IKE peer %s: Aggressive Mode refused (it is off: [ipsec] aggressive); "
            "set the client to Main Mode", fmt_peer(peer),
        )

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

    def initiate(
        self, peer_ip: str, now: float, *, local: Addr, l2tp: bool = True,
        tunnel: TunnelSelectors | None = None,
    ) -> None:
        """Start Main Mode to ``peer_ip`` (port 500, or 4500 if ``local`` is on 4500),
        then Quick Mode: for a tunnel-mode child between ``tunnel``'s subnets if given
        (UDP-encapsulated behind a NAT), else for L2TP (UDP/1701 transport) if ``l2tp``."""
        sa = self._mm_initiate(peer_ip, local, now, l2tp and tunnel is None)
        sa.tunnel = tunnel

    def delete_child(self, child: ChildSA, now: float) -> None:
        """Delete a child SA and tell the peer (RFC 2408 3.15)."""
        self._delete_child_now(child, "deleted locally")

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
        sa = self._ike_for(child)
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
            if sa.established and sa.initiator and not sa.rekeyed and self.config.rekey:
                times.append(self._ike_rekey_at(sa))
        times += [c.created + c.lifetime for c in self._children.values()]
        for st in self._rekey.values():
            if st.delete_at is not None:
                times.append(st.delete_at)
            elif not st.rekeying and math.isfinite(st.rekey_at):
                times.append(st.rekey_at)
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        for sa in list(self._sas.values()):
            self._sa_timer(sa, now)
        for child in list(self._children.values()):
            st = self._rekey.get(child.inbound.spi)
            if now >= child.created + child.lifetime:
                self._delete_child_now(child, "lifetime expired")
            elif st is not None and st.delete_at is not None:
                if now >= st.delete_at:
                    self._delete_child_now(child, "rekeyed")
            elif st is not None and not st.rekeying and now >= st.rekey_at:
                self._rekey_child(child, now, "soft lifetime")

    def _delete_child_now(self, child: ChildSA, reason: str) -> None:
        owner = self._ike_for(child)
        if owner is not None:
            self._send_delete_children(owner, [child])
        self._drop_child(child, reason)

    # -- rekeying -----------------------------------------------------------------------

    def child_soft_limit(self, child: ChildSA, now: float) -> None:
        """The ESP layer reports ``child``'s outbound soft limit (sequence numbers or
        bytes, ``OutboundSA.soft_limit_reached``): rekey it now."""
        if child.inbound.spi in self._children and self.config.rekey:
            self._rekey_child(child, now, "ESP soft limit")

    def child_hard_limit(self, child: ChildSA, now: float) -> None:
        """The ESP layer reports ``child``'s hard byte (or packet) limit in either
        direction (``hard_limit_reached``): the SA is over; delete it, telling the peer."""
        if child.inbound.spi not in self._children:
            return
        what = f"{child.lifetime_kb} KB" if child.lifetime_kb else "sequence numbers"
        log.warning(
            "IKE peer %s: child SA in %08x out %08x reached its hard lifetime (%s)",
            fmt_peer(child.peer), child.inbound.spi, child.outbound.spi, what,
        )
        self._delete_child_now(
            child, "kilobyte lifetime expired" if child.lifetime_kb else "ESP hard limit"
        )

    def _rekey_child(self, child: ChildSA, now: float, why: str) -> None:
        st = self._rekey.get(child.inbound.spi)
        if st is None or st.rekeying or st.delete_at is not None:
            return
        sa = self._ike_for(child)
        if sa is None:
            # The ISAKMP SA is gone: an initiator builds a new one first, then retries.
            st.rekey_at = now + _RETRY
            if st.initiator and not any(
                s.initiator and s.peer[0] == child.peer[0] for s in self._sas.values()
            ):
                local = (child.local[0], child.local[1] if child.udp_encap else 500)
                new = self._mm_initiate(child.peer[0], local, now, False)
                new.rekey_of = child.ike_cookies
            return
        st.rekeying = True
        log.info(
            "IKE peer %s: rekeying child SA in %08x out %08x (%s)",
            fmt_peer(child.peer), child.inbound.spi, child.outbound.spi, why,
        )
        # a tunnel keeps its selectors (None for L2TP transport)
        self._qm_initiate(sa, now, replaces=child.inbound.spi, selectors=child.selectors)

    def _rekey_failed(self, qx: QuickExchange, now: float) -> None:
        st = self._rekey.get(qx.replaces) if qx.replaces is not None else None
        if st is not None and st.delete_at is None:
            st.rekeying = False
            st.rekey_at = now + _RETRY

    def _child_made(self, sa: IKESA, qx: QuickExchange, child: ChildSA, now: float) -> None:
        timed = qx.initiator and self.config.rekey
        rekey_at = now + child.lifetime * REKEY_FRACTION if timed else math.inf
        self._rekey[child.inbound.spi] = RekeyState(qx.initiator, rekey_at)
        old = self._children.get(qx.replaces) if qx.replaces is not None else None
        if old is None and not qx.initiator:
            # A responder sees a rekey as a new child of a peer that already has one.
            others = [
                c for c in self._children.values()
                if c is not child and c.peer[0] == child.peer[0] and c.peer_id == child.peer_id
            ]
            old = max(others, key=lambda c: c.created) if others else None
        if old is None:
            return
        log.info(
            "IKE peer %s: child SA rekeyed: in %08x out %08x replaces in %08x out %08x",
            fmt_peer(child.peer), child.inbound.spi, child.outbound.spi,
            old.inbound.spi, old.outbound.spi,
        )
        st = self._rekey.get(old.inbound.spi)
        if qx.initiator and st is not None:
            # Make before break: the old SA keeps decrypting in-flight packets a while.
            grace = min(max(old.lifetime * GRACE_FRACTION, GRACE_MIN), GRACE_MAX)
            st.delete_at = min(now + grace, old.created + old.lifetime)

    def _ike_rekey_at(self, sa: IKESA) -> float:
        return sa.established_at + sa.lifetime * REKEY_FRACTION

    def _phase1_done(self, sa: IKESA, now: float) -> None:
        super()._phase1_done(sa, now)
        if sa.rekey_of is not None:
            old = self._sas.get(sa.rekey_of)
            if old is not None and old is not sa and old.established:
                log.info(
                    "IKE peer %s: ISAKMP SA rekeyed, deleting the old one", fmt_peer(sa.peer)
                )
                for qx in list(old.quick.values()):
                    if qx.initiator:
                        self._rekey_failed(qx, now)
                self._send_delete_ike(old)
                self._drop_ike(old, "rekeyed")
        elif not sa.initiator and any(
            o is not sa and o.established and o.peer[0] == sa.peer[0]
            and o.peer_id == sa.peer_id for o in self._sas.values()
        ):
            log.info("IKE peer %s: ISAKMP SA rekeyed by the peer", fmt_peer(sa.peer))

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
                self._qm_failed(sa, qx, "timeout in Quick Mode", now)
        if sa.rekeyed and not any(o.rekey_of == sa.cookies for o in self._sas.values()):
            sa.rekeyed = False  # the successor's Main Mode failed: try again
        if (sa.established and sa.initiator and not sa.rekeyed and self.config.rekey
                and now >= self._ike_rekey_at(sa) and now < sa.established_at + sa.lifetime):
            sa.rekeyed = True
            log.info("IKE peer %s: rekeying the ISAKMP SA", fmt_peer(sa.peer))
            new = self._mm_initiate(sa.peer[0], sa.local, now, False)
            new.rekey_of = sa.cookies
        if sa.established and now >= sa.established_at + sa.lifetime:
            self._send_delete_ike(sa)
            self._drop_ike(sa, "lifetime expired")
            return
        self._dpd_timer(sa, now)
