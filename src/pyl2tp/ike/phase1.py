"""Main Mode with pre-shared keys (RFC 2409 5, 5.4), both roles, with NAT-T (RFC 3947).

    Initiator                          Responder
    MM1  HDR, SA, VID...          ->
                                  <-   MM2  HDR, SA, VID...
    MM3  HDR, KE, Ni, NAT-D, NAT-D ->
                                  <-   MM4  HDR, KE, Nr, NAT-D, NAT-D
    (float to 4500 if a NAT was detected, RFC 3947 4)
    MM5  HDR*, IDii, HASH_I [, N(INITIAL-CONTACT)] ->
                                  <-   MM6  HDR*, IDir, HASH_R

Aggressive Mode (RFC 2409 5.4) is answered only when ``IKEConfig.aggressive`` is set;
we never initiate it.
"""

from __future__ import annotations

import logging

from pyl2tp.errors import ParseError
from pyl2tp.ike.certs import CertError, cert_ids
from pyl2tp.ike.crypto import (
    IkeCipher,
    IkeSACrypto,
    Prf,
    derive_phase1_keys,
    hash_i,
    hash_r,
    nat_d_hash,
    phase1_iv,
    skeyid_psk,
    skeyid_signature,
)
from pyl2tp.ike.dh import get_group
from pyl2tp.ike.events import IKESAEstablished, NegotiationFailed
from pyl2tp.ike.informational import Informational, fmt_peer
from pyl2tp.ike.proposals import AuthMethod, Phase1Choice
from pyl2tp.ike.sa import IKESA, Addr
from pyl2tp.wire.isakmp import (
    CertPayload,
    ExchangeType,
    HashPayload,
    IDPayload,
    IDType,
    ISAKMPHeader,
    KEPayload,
    NatDPayload,
    NoncePayload,
    NotifyPayload,
    NotifyType,
    Payload,
    PayloadType,
    RawPayload,
    SAPayload,
    SignaturePayload,
    VendorID,
    VendorIDPayload,
    decode_payload,
    encode_message,
    encode_payload_body,
    split_payloads,
)

__all__ = ["MainMode"]

log = logging.getLogger("pyl2tp.ike")

NONCE_SIZE = 32
NAT_T_PORT = 4500
_DRAFT_VIDS = frozenset(
    {
        VendorID.NAT_T_DRAFT_00,
        VendorID.NAT_T_DRAFT_01,
        VendorID.NAT_T_DRAFT_02,
        VendorID.NAT_T_DRAFT_02N,
        VendorID.NAT_T_DRAFT_03,
    }
)


def _offered(ours: SAPayload, choice: Phase1Choice) -> bool:
    """The responder's transform is one of ours (same attributes, any number)."""
    want = set(choice.transform.attributes)
    return any(
        t.transform_id == choice.transform.transform_id and set(t.attributes) == want
        for p in ours.proposals
        for t in p.transforms
    )


class MainMode(Informational):
    """Main Mode, both roles."""

    def _answer_vendor_ids(self, sa: IKESA) -> list[Payload]:
        """MM2: DPD, and the one NAT-T Vendor ID whose numbering we use with this peer."""
        vids: list[Payload] = [VendorIDPayload(VendorID.DPD)]
        if sa.nat_t_draft is not None:
            vids.insert(0, VendorIDPayload(sa.nat_t_vid))
        return vids

    def _vendor_ids(self) -> list[Payload]:
        vids = [VendorID.DPD]
        if self.config.nat_t:
            vids = [
                VendorID.NAT_T_RFC3947,
                VendorID.NAT_T_DRAFT_03,
                VendorID.NAT_T_DRAFT_02N,
                VendorID.NAT_T_DRAFT_02,
                *vids,
            ]
        return [VendorIDPayload(v) for v in vids]

    def _peer_vendor_ids(self, sa: IKESA, payloads: list[Payload]) -> None:
        rfc = draft = False
        for p in payloads:
            if isinstance(p, VendorIDPayload):
                rfc |= p.data == VendorID.NAT_T_RFC3947
                if p.data in _DRAFT_VIDS and not draft:
                    draft = True
                    sa.nat_t_vid = p.data
                sa.peer_dpd |= p.data == VendorID.DPD
        if rfc:
            sa.nat_t_vid = VendorID.NAT_T_RFC3947
        if self.config.nat_t and (rfc or draft):
            sa.nat_t_draft = not rfc  # RFC 3947 numbers whenever the peer knows them

    def _nat_d(self, sa: IKESA) -> list[Payload]:
        """RFC 3947 3.2: the hash of the destination first, then of the source."""
        if sa.nat_t_draft is None or sa.prf is None:
            return []
        draft = bool(sa.nat_t_draft)
        return [
            NatDPayload(nat_d_hash(sa.prf, sa.icookie, sa.rcookie, *sa.peer), draft),
            NatDPayload(nat_d_hash(sa.prf, sa.icookie, sa.rcookie, *sa.local), draft),
        ]

    def _check_nat_d(self, sa: IKESA, payloads: list[Payload]) -> None:
        hashes = [p.data for p in payloads if isinstance(p, NatDPayload)]
        if sa.nat_t_draft is None or len(hashes) < 2 or sa.prf is None:
            return
        mine = nat_d_hash(sa.prf, sa.icookie, sa.rcookie, *sa.local)
        theirs = nat_d_hash(sa.prf, sa.icookie, sa.rcookie, *sa.peer)
        sa.nat_local = hashes[0] != mine
        sa.nat_peer = theirs not in hashes[1:]
        if sa.nat:
            log.info(
                "IKE peer %s: NAT detected (%s)",
                fmt_peer(sa.peer),
                "both sides" if sa.nat_local and sa.nat_peer
                else "we are behind it" if sa.nat_local else "peer is behind it",
            )

    def _make_keys(self, sa: IKESA, peer_public: bytes) -> None:
        assert sa.choice is not None and sa.prf is not None and sa.dh is not None
        group = get_group(sa.choice.suite.group)
        if self._sig(sa):
            gxy = group.shared(sa.dh, peer_public)
            skeyid = skeyid_signature(sa.prf, sa.ni_b, sa.nr_b, gxy)
        else:
            if self.config.psk is None:
                raise ParseError("no pre-shared key configured")
            gxy = group.shared(sa.dh, peer_public)
            skeyid = skeyid_psk(sa.prf, self.config.psk, sa.ni_b, sa.nr_b)
        sa.keys = derive_phase1_keys(
            sa.prf, skeyid, gxy, sa.icookie, sa.rcookie, sa.choice.key_length
        )
        cipher = IkeCipher(sa.choice.suite.encryption, sa.keys.enc_key)
        iv = phase1_iv(sa.prf, sa.gxi, sa.gxr, cipher.block_size)
        sa.crypto = IkeSACrypto(cipher, sa.prf, iv)
        if self._keylog is not None:
            self._keylog.ikev1(sa.icookie, sa.keys.enc_key)

    # -- RSA signatures (RFC 2409 5.1) ---------------------------------------------------

    def _auth_method(self) -> AuthMethod:
        """What we propose as initiator: signatures when we have a certificate."""
        if self.config.credentials is not None:
            return AuthMethod.RSA_SIGNATURE
        return AuthMethod.PRE_SHARED_KEY

    def _can_auth(self, choice: Phase1Choice) -> bool:
        if choice.auth_method == AuthMethod.RSA_SIGNATURE:
            return self.config.credentials is not None
        return choice.auth_method == AuthMethod.PRE_SHARED_KEY and self.config.psk is not None

    @staticmethod
    def _sig(sa: IKESA) -> bool:
        return sa.choice is not None and sa.choice.auth_method == AuthMethod.RSA_SIGNATURE

    def _cert_request(self, sa: IKESA) -> list[Payload]:
        """RFC 2408 3.10: CERTREQ for X.509 certificates from the CAs we trust."""
        creds = self.config.credentials
        return [*creds.cert_requests()] if self._sig(sa) and creds is not None else []

    def _proof(self, sa: IKESA, digest: bytes) -> list[Payload]:
        """HASH for a PSK; for signatures our CERT, one CERT per intermediate CA (RFC 2408
        3.9) and SIG over the hash (RFC 2409 5.1)."""
        creds = self.config.credentials
        if not self._sig(sa) or creds is None:
            return [HashPayload(digest)]
        return [*(CertPayload(4, d) for d in creds.cert_ders), SignaturePayload(creds.sign(digest))]

    def _check_proof(
        self, sa: IKESA, raws: list[RawPayload], id_raw: RawPayload, expected: bytes
    ) -> str | None:
        """None if the peer proved `expected`; else why not (for the log)."""
        if not self._sig(sa):
            hashes = [r for r in raws if r.type == PayloadType.HASH]
            if len(hashes) != 1 or hashes[0].body != expected:
                return "HASH wrong"
            return None
        creds = self.config.credentials
        assert creds is not None
        certs = [r.decode() for r in raws if r.type == PayloadType.CERT]
        sigs = [r.decode() for r in raws if r.type == PayloadType.SIGNATURE]
        x509s = [c.data for c in certs if isinstance(c, CertPayload) and c.encoding == 4]
        if not x509s or len(sigs) != 1 or not isinstance(sigs[0], SignaturePayload):
            return "no X.509 certificate or no signature"
        peer_id = id_raw.decode()
        assert isinstance(peer_id, IDPayload)
        try:
            sa.peer_dn = creds.check_proof(x509s, peer_id, expected, sigs[0].data)
        except CertError as e:
            return str(e)
        return None

    def _choose(self, sa: IKESA, choice: Phase1Choice) -> None:
        sa.choice = choice
        sa.prf = Prf(choice.suite.hash)
        life = self.config.ike_lifetime
        sa.lifetime = min(life, choice.lifetime) if choice.lifetime else life

    def _proof_failed(self, sa: IKESA, what: str, why: str) -> None:
        if self._sig(sa):
            self._auth_failed(sa, what, f"certificate authentication failed: {why}")
        else:
            self._auth_failed(sa, what)

    def _half_open_ok(self, peer: Addr) -> bool:
        half = [s for s in self._sas.values() if not s.initiator and not s.established]
        if len(half) >= self.config.max_half_open:
            return False
        return sum(1 for s in half if s.peer[0] == peer[0]) < self.config.max_half_open_per_peer

    def _our_id(self, sa: IKESA) -> IDPayload:
        """IDii/IDir: the configured FQDN or user@FQDN, else our address (UDP/500)."""
        name = self.config.local_id
        creds = self.config.credentials
        if creds is not None and sa.choice is not None and self._sig(sa) and not name:
            # RFC 2407 4.6.2.1: ID_DER_ASN1_DN, the certificate's subject
            return IDPayload(IDType.DER_ASN1_DN, cert_ids(creds.certificate)[0], 17, 500)
        if not name:
            return IDPayload.from_address(sa.local[0], 17, 500)
        if "@" in name:
            return IDPayload.user_fqdn(name, 17, 500)
        return IDPayload.fqdn(name, 17, 500)

    # -- initiator ------------------------------------------------------------------------

    def _mm_initiate(self, peer_ip: str, local: Addr, now: float, l2tp: bool) -> IKESA:
        nat_t = local[1] == NAT_T_PORT
        peer = (peer_ip, NAT_T_PORT if nat_t else 500)
        sa = IKESA(self._rng(8), bytes(8), True, peer, local, now, nat_t=nat_t, l2tp=l2tp)
        sa.last_seen = now
        proposal = self.config.policy.phase1_sa(
            self._auth_method(), lifetime=int(self.config.ike_lifetime)
        )
        sa.sai_b = encode_payload_body(proposal)
        sa.state = "mm1"
        self._sas[sa.cookies] = sa
        data = encode_message(
            self._header(sa, ExchangeType.MAIN, 0), [proposal, *self._vendor_ids()]
        )
        sa.outstanding = self._send_request(sa, data, now)
        log.info("IKE peer %s: starting Main Mode", fmt_peer(peer))
        return sa

    def _mm2_received(self, sa: IKESA, payloads: list[Payload], now: float) -> None:
        sas = [p for p in payloads if isinstance(p, SAPayload)]
        ours = self.config.policy.phase1_sa(
            self._auth_method(), lifetime=int(self.config.ike_lifetime)
        )
        choice = self.config.policy.match_phase1(sas[0]) if len(sas) == 1 else None
        if choice is None or not _offered(ours, choice) or not self._can_auth(choice):
            self._emit(NegotiationFailed(sa.peer, "responder chose a transform we did not offer"))
            self._drop_ike(sa, "bad MM2")
            return
        self._choose(sa, choice)
        self._peer_vendor_ids(sa, payloads)
        sa.dh, sa.gxi = get_group(choice.suite.group).generate(self._rng)
        sa.ni_b = self._rng(NONCE_SIZE)
        sa.state = "mm3"
        out = [
            KEPayload(sa.gxi), NoncePayload(sa.ni_b), *self._cert_request(sa), *self._nat_d(sa)
        ]
        data = encode_message(self._header(sa, ExchangeType.MAIN, 0), out)
        sa.outstanding = self._send_request(sa, data, now)

    def _mm4_received(self, sa: IKESA, payloads: list[Payload], now: float) -> None:
        ke = [p for p in payloads if isinstance(p, KEPayload)]
        nonce = [p for p in payloads if isinstance(p, NoncePayload)]
        if len(ke) != 1 or len(nonce) != 1:
            raise ParseError("MM4 without KE and nonce")
        sa.gxr, sa.nr_b = ke[0].data, nonce[0].data
        self._make_keys(sa, sa.gxr)
        self._check_nat_d(sa, payloads)
        if sa.nat and not sa.nat_t:
            # RFC 3947 4: the initiator moves to port 4500 for MM5 when a NAT is detected.
            sa.nat_t = True
            sa.peer = (sa.peer[0], NAT_T_PORT)
            sa.local = (sa.local[0], NAT_T_PORT)
        idii = self._our_id(sa)
        assert sa.prf is not None and sa.keys is not None and sa.crypto is not None
        digest = hash_i(
            sa.prf, sa.keys.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b,
            encode_payload_body(idii),
        )
        out: list[Payload] = [idii, *self._proof(sa, digest)]
        if sa.rekey_of is None and not self._other_sas_with(sa):
            # RFC 2407 4.6.3.3: tell the responder to drop our SAs from before a restart
            # (never on a rekey, nor while we hold others with it: they carry traffic).
            out.append(NotifyPayload(NotifyType.INITIAL_CONTACT, sa.cookies))
        sa.state = "mm5"
        data = encode_message(
            self._header(sa, ExchangeType.MAIN, 0), out, encrypt=sa.crypto.encrypt_for(0)
        )
        sa.outstanding = self._send_request(sa, data, now)

    def _mm6_received(self, sa: IKESA, header: ISAKMPHeader, body: bytes, now: float) -> None:
        assert sa.prf is not None and sa.keys is not None and sa.crypto is not None
        try:
            _plain, raws = self._open(sa, header, body)
            ids = [r for r in raws if r.type == PayloadType.ID]
            if len(ids) != 1:
                raise ParseError("MM6 without ID")
            idir = ids[0].decode()
        except ParseError as e:
            log.debug("IKE peer %s: MM6 did not decrypt: %s", fmt_peer(sa.peer), e)
            self._auth_failed(sa, "HASH_R wrong")
            return
        expected = hash_r(
            sa.prf, sa.keys.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b, ids[0].body
        )
        if (why := self._check_proof(sa, raws, ids[0], expected)) is not None:
            self._proof_failed(sa, "HASH_R wrong", why)
            return
        sa.crypto.advance(0, body)
        assert isinstance(idir, IDPayload)
        self._established(sa, idir, now)

    # -- responder ------------------------------------------------------------------------

    def _mm1_received(
        self, header: ISAKMPHeader, body: bytes, data: bytes, peer: Addr, local: Addr,
        now: float, nat_t: bool,
    ) -> None:
        raws = split_payloads(header.next_payload, body)
        payloads = [r.decode() for r in raws]
        sa_raws = [r for r in raws if r.type == PayloadType.SA]
        if len(sa_raws) != 1 or header.message_id != 0:
            raise ParseError("MM1 without one SA payload")
        if not self._half_open_ok(peer):
            self.stats.half_open_refused += 1
            return
        proposal = payloads[raws.index(sa_raws[0])]
        assert isinstance(proposal, SAPayload)
        choice = self.config.policy.match_phase1(proposal)
        if choice is None or not self._can_auth(choice):
            self.stats.no_proposal += 1
            log.warning("IKE peer %s: no acceptable phase-1 proposal", fmt_peer(peer))
            self._emit(NegotiationFailed(peer, "NO-PROPOSAL-CHOSEN"))
            notify = NotifyPayload(
                NotifyType.NO_PROPOSAL_CHOSEN, header.initiator_cookie + bytes(8)
            )
            reply = encode_message(
                ISAKMPHeader(header.initiator_cookie, bytes(8), ExchangeType.INFORMATIONAL),
                [notify],
            )
            self.stats.sent += 1
            self._out.append((reply, peer, local, nat_t))
            return
        sa = IKESA(header.initiator_cookie, self._rng(8), False, peer, local, now, nat_t=nat_t)
        sa.last_seen = now
        sa.sai_b = sa_raws[0].body
        self._choose(sa, choice)
        self._peer_vendor_ids(sa, payloads)
        self._sas[sa.cookies] = sa
        sa.half_key = (sa.icookie, peer)
        self._half[sa.half_key] = sa.cookies
        if header.exchange == ExchangeType.AGGRESSIVE:
            if self._sig(sa):  # Aggressive Mode is answered with a PSK only
                self._drop_ike(sa, "Aggressive Mode with signatures")
                raise ParseError("Aggressive Mode with RSA signatures is not supported")
            self._am1_received(sa, raws, payloads, data, now)
            return
        sa.state = "mm2"
        reply = encode_message(
            self._header(sa, ExchangeType.MAIN, 0),
            [choice.sa_payload(), *self._answer_vendor_ids(sa)],
        )
        self._remember(sa, data, reply)
        sa.outstanding = self._send_request(sa, reply, now)

    def _mm3_received(self, sa: IKESA, payloads: list[Payload], data: bytes, now: float) -> None:
        assert sa.choice is not None
        ke = [p for p in payloads if isinstance(p, KEPayload)]
        nonce = [p for p in payloads if isinstance(p, NoncePayload)]
        if len(ke) != 1 or len(nonce) != 1:
            raise ParseError("MM3 without KE and nonce")
        sa.gxi, sa.ni_b = ke[0].data, nonce[0].data
        sa.dh, sa.gxr = get_group(sa.choice.suite.group).generate(self._rng)
        sa.nr_b = self._rng(NONCE_SIZE)
        self._make_keys(sa, sa.gxi)
        if any(isinstance(p, NatDPayload) for p in payloads):
            self._check_nat_d(sa, payloads)
        else:
            sa.nat_t_draft = None  # the peer did not use NAT-T after all
        out = [
            KEPayload(sa.gxr), NoncePayload(sa.nr_b), *self._cert_request(sa), *self._nat_d(sa)
        ]
        sa.state = "mm4"
        reply = encode_message(self._header(sa, ExchangeType.MAIN, 0), out)
        self._remember(sa, data, reply)
        sa.outstanding = self._send_request(sa, reply, now)

    def _mm5_received(
        self, sa: IKESA, header: ISAKMPHeader, body: bytes, data: bytes, now: float
    ) -> None:
        assert sa.prf is not None and sa.keys is not None and sa.crypto is not None
        try:
            _plain, raws = self._open(sa, header, body)
            ids = [r for r in raws if r.type == PayloadType.ID]
            if len(ids) != 1:
                raise ParseError("MM5 without ID")
            payloads = [r.decode() for r in raws]
        except ParseError as e:
            # Garbage after decryption: the keys differ, as they do with another PSK.
            log.debug("IKE peer %s: MM5 did not decrypt: %s", fmt_peer(sa.peer), e)
            self._auth_failed(sa, "HASH_I wrong")
            return
        expected = hash_i(
            sa.prf, sa.keys.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b, ids[0].body
        )
        if (why := self._check_proof(sa, raws, ids[0], expected)) is not None:
            # MM5 decrypted, so the keys agree: chain the IV through it as the initiator
            # did, for a protected AUTHENTICATION-FAILED (RFC 2409 App. B).
            sa.crypto.advance(0, body)
            self._proof_failed(sa, "HASH_I wrong", why)
            return
        sa.crypto.advance(0, body)
        idii = payloads[raws.index(ids[0])]
        assert isinstance(idii, IDPayload)
        idir = self._our_id(sa)
        digest = hash_r(
            sa.prf, sa.keys.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b,
            encode_payload_body(idir),
        )
        reply = encode_message(
            self._header(sa, ExchangeType.MAIN, 0),
            [idir, *self._proof(sa, digest)],
            encrypt=sa.crypto.encrypt_for(0),
        )
        self._remember(sa, data, reply)
        self._send(sa, reply)
        sa.initial_contact = any(
            isinstance(p, NotifyPayload) and p.notify_type == NotifyType.INITIAL_CONTACT
            for p in payloads
        )
        self._established(sa, idii, now)

    # -- Aggressive Mode responder (RFC 2409 5.4; off unless IKEConfig.aggressive) ----------
    #   AM1  HDR, SA, KE, Ni, IDii, VID...         ->
    #                                             <-   AM2  HDR, SA, KE, Nr, IDir, HASH_R,
    #                                                       VID..., NAT-D, NAT-D
    #   AM3  HDR[*], HASH_I [, NAT-D, NAT-D]      ->   (on 4500 if a NAT was detected)
    # HASH_R goes to anyone who asks, so a weak PSK can be attacked offline: keep it off.

    def _am1_received(
        self, sa: IKESA, raws: list[RawPayload], payloads: list[Payload], data: bytes,
        now: float,
    ) -> None:
        assert sa.choice is not None
        ke = [p for p in payloads if isinstance(p, KEPayload)]
        nonce = [p for p in payloads if isinstance(p, NoncePayload)]
        ids = [r for r in raws if r.type == PayloadType.ID]
        if len(ke) != 1 or len(nonce) != 1 or len(ids) != 1:
            self._drop_ike(sa, "bad AM1")
            raise ParseError("AM1 without KE, nonce and ID")
        sa.gxi, sa.ni_b, sa.idii_b = ke[0].data, nonce[0].data, ids[0].body
        sa.dh, sa.gxr = get_group(sa.choice.suite.group).generate(self._rng)
        sa.nr_b = self._rng(NONCE_SIZE)
        try:
            self._make_keys(sa, sa.gxi)
        except ParseError:
            self._drop_ike(sa, "bad AM1 key exchange")
            raise
        assert sa.prf is not None and sa.keys is not None
        idir = self._our_id(sa)
        digest = hash_r(
            sa.prf, sa.keys.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b,
            encode_payload_body(idir),
        )
        out: list[Payload] = [
            sa.choice.sa_payload(), KEPayload(sa.gxr), NoncePayload(sa.nr_b), idir,
            HashPayload(digest), *self._answer_vendor_ids(sa), *self._nat_d(sa),
        ]
        sa.state = "am2"
        reply = encode_message(self._header(sa, ExchangeType.AGGRESSIVE, 0), out)
        self._remember(sa, data, reply)
        sa.outstanding = self._send_request(sa, reply, now)

    def _am_received(
        self, sa: IKESA, header: ISAKMPHeader, body: bytes, data: bytes, now: float
    ) -> None:
        if sa.initiator or sa.state != "am2" or header.message_id != 0:
            raise ParseError(f"unexpected Aggressive Mode message in state {sa.state}")
        assert sa.prf is not None and sa.keys is not None and sa.crypto is not None
        try:
            if header.encrypted:
                _, raws = self._open(sa, header, body)
            else:
                raws = split_payloads(header.next_payload, body)
            hashes = [r for r in raws if r.type == PayloadType.HASH]
            if len(hashes) != 1:
                raise ParseError("AM3 without HASH_I")
            payloads = [r.decode() for r in raws]
        except ParseError as e:
            log.debug("IKE peer %s: AM3 did not decrypt: %s", fmt_peer(sa.peer), e)
            self._auth_failed(sa, "HASH_I wrong")
            return
        expected = hash_i(
            sa.prf, sa.keys.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b, sa.idii_b
        )
        if hashes[0].body != expected:
            self._auth_failed(sa, "HASH_I wrong")
            return
        if header.encrypted:
            sa.crypto.advance(0, body)
        self._check_nat_d(sa, payloads)
        self._remember(sa, data, None)
        sa.initial_contact = any(
            isinstance(p, NotifyPayload) and p.notify_type == NotifyType.INITIAL_CONTACT
            for p in payloads
        )
        idii = decode_payload(PayloadType.ID, sa.idii_b)
        assert isinstance(idii, IDPayload)
        self._established(sa, idii, now)

    # -- both -------------------------------------------------------------------------------

    def _established(self, sa: IKESA, peer_id: IDPayload, now: float) -> None:
        sa.peer_id = peer_id.text()
        if peer_id.id_type == IDType.DER_ASN1_DN and sa.peer_dn is not None:
            sa.peer_id = sa.peer_dn
        sa.state = "established"
        sa.outstanding = None
        sa.established_at = now
        sa.last_seen = now
        sa.dpd_next = now + self.config.dpd_delay
        if sa.half_key is not None:
            self._half.pop(sa.half_key, None)
        self.stats.ike_sas += 1
        log.info(
            "IKE peer %s: ISAKMP SA established (%s, id %s%s)",
            fmt_peer(sa.peer), sa.suite_name, sa.peer_id, ", NAT-T" if sa.nat_t else "",
        )
        self._emit(IKESAEstablished(sa.peer, sa.cookies, sa.peer_id, sa.suite_name))
        if sa.initial_contact:
            self._initial_contact(sa)
        self._phase1_done(sa, now)

    def _phase1_done(self, sa: IKESA, now: float) -> None:
        """Hook: Quick Mode starts here for an L2TP initiator."""

    def _mm_received(
        self, sa: IKESA, header: ISAKMPHeader, body: bytes, data: bytes, now: float
    ) -> None:
        if header.message_id != 0:
            raise ParseError("Main Mode message with a message ID")
        if sa.initiator:
            if sa.state == "mm5" and header.encrypted:
                self._mm6_received(sa, header, body, now)
                return
            if header.encrypted:
                raise ParseError("unexpected encrypted Main Mode message")
            payloads = [r.decode() for r in split_payloads(header.next_payload, body)]
            if sa.state == "mm1":
                self._mm2_received(sa, payloads, now)
            elif sa.state == "mm3":
                self._mm4_received(sa, payloads, now)
            return
        if sa.state == "mm4" and header.encrypted:
            self._mm5_received(sa, header, body, data, now)
            return
        if sa.state == "mm2" and not header.encrypted:
            payloads = [r.decode() for r in split_payloads(header.next_payload, body)]
            self._mm3_received(sa, payloads, data, now)
            return
        raise ParseError(f"unexpected Main Mode message in state {sa.state}")

