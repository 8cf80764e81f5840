"""IKEv1 algorithms, the acceptance :class:`Policy`, proposal matching and building.

Phase-1 attribute values (RFC 2409 Appendix A) are the enums below; IPsec DOI values
(ESP transform IDs, authentication algorithms, encapsulation modes) are in
:mod:`pyl2tp.wire.isakmp`.

A responder calls :meth:`Policy.match_phase1` / :meth:`Policy.match_phase2` with the
peer's SA payload; the first acceptable transform *in the peer's order* wins (RFC 2408
4.2: the initiator lists its preferences). The result's ``sa_payload()`` is the answer:
the chosen proposal with just the chosen transform, attributes echoed. An initiator
sends :meth:`Policy.phase1_sa` / :meth:`Policy.phase2_sa` and checks the answer with the
same match methods (and that the answer's transform is one it offered).

What the default policy accepts (``legacy=False``)::

    phase 1  AES-CBC 128/256  x  SHA1, SHA2-256/384/512  x  MODP 2048/3072/4096, ECP 256/384
             PSK (add RSA signatures through ``auth_methods``)
    phase 2  ESP AES-CBC 128/256 with HMAC-SHA1-96 or HMAC-SHA2-256/384/512 (RFC 4868),
             ESP AES-GCM-16 128/256; PFS optional, with the phase-1 groups
    legacy   adds 3DES-CBC (both phases) and MODP 1024 (group 2)

What stock clients send (from peer logs and interop notes; each must be accepted)::

    Windows 10/11 L2TP   P1: AES256/SHA1/ECP384, AES128/SHA1/ECP256, AES256/SHA1/MODP2048,
                             AES128/SHA1/MODP2048, 3DES/SHA1/MODP2048, ... MODP1024 last
                         P2: ESP AES256/SHA1, AES128/SHA1, 3DES/SHA1; transport (UDP
                             transport behind NAT, draft value 61444 on old builds); no PFS
                         default: yes (AES256/SHA1/ECP384, then ESP AES256/SHA1)
    Windows 7/8 L2TP     P1: AES256/SHA1/MODP1024, AES128/SHA1/MODP1024, 3DES/SHA1/MODP1024
                         default: no, needs legacy=True (or NegotiateDH2048_AES256 there)
    iOS 14+, macOS 11+   P1: AES256/SHA2-256/MODP2048 first, down to 3DES/SHA1/MODP1024
                         P2: ESP AES256/HMAC-SHA2-256-128 (RFC 4868), AES128/SHA2-256,
                             AES256/SHA1, AES128/SHA1, 3DES/SHA1; transport, no PFS
                         default: yes (AES256/SHA2-256/MODP2048, ESP AES256/SHA2-256)
    older iOS / macOS    P1: AES256/SHA2-256 or SHA1 with MODP1024 only
                         default: no, needs legacy=True
    strongSwan charon    P1: aes128-sha256-modp2048; P2: aes128-sha256, UDP tunnel (3)
    (peers/strongswan)   default: yes (checked against the captures in the tests)

The initiator proposes (in this order) the suites of ``DEFAULT_INITIATOR_IKE`` and
``DEFAULT_INITIATOR_ESP`` that the policy accepts: MODP2048 first because SoftEther,
Windows servers and every strongSwan/libreswan accept it (SoftEther rejects ECP groups
and ESP HMAC-SHA2, so SHA1 stays in the ESP list).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

from pyl2tp.wire.isakmp_sa import Attribute, Proposal, SAPayload, Transform
from pyl2tp.wire.isakmp_types import (
    DOI_IPSEC,
    KEY_IKE,
    SIT_IDENTITY_ONLY,
    AttributeType,
    AuthAlgorithm,
    EncapsulationMode,
    ESPTransformID,
    IPsecAttributeType,
    LifeType,
    ProtocolID,
)

__all__ = [
    "DEFAULT_INITIATOR_ESP",
    "DEFAULT_INITIATOR_IKE",
    "HASH_NAMES",
    "AuthMethod",
    "EncryptionAlgorithm",
    "EspSuite",
    "Group",
    "HashAlgorithm",
    "IkeSuite",
    "Phase1Choice",
    "Phase2Choice",
    "Policy",
]


class EncryptionAlgorithm(IntEnum):
    """Phase-1 Encryption Algorithm values (RFC 2409 App. A, RFC 3602)."""

    DES_CBC = 1
    IDEA_CBC = 2
    BLOWFISH_CBC = 3
    RC5_CBC = 4
    TRIPLE_DES_CBC = 5
    CAST_CBC = 6
    AES_CBC = 7
    CAMELLIA_CBC = 8


class HashAlgorithm(IntEnum):
    """Phase-1 Hash Algorithm values (RFC 2409 App. A, RFC 4868 for SHA2)."""

    MD5 = 1
    SHA1 = 2
    TIGER = 3
    SHA2_256 = 4
    SHA2_384 = 5
    SHA2_512 = 6


class AuthMethod(IntEnum):
    """Phase-1 Authentication Method values (RFC 2409 App. A, RFC 4754, XAUTH drafts)."""

    PRE_SHARED_KEY = 1
    DSS_SIGNATURE = 2
    RSA_SIGNATURE = 3
    RSA_ENCRYPTION = 4
    RSA_REVISED_ENCRYPTION = 5
    ECDSA_SHA256_P256 = 9
    ECDSA_SHA384_P384 = 10
    ECDSA_SHA512_P521 = 11
    HYBRID_INIT_RSA = 64221
    HYBRID_RESP_RSA = 64222
    XAUTH_INIT_PSK = 65001
    XAUTH_RESP_PSK = 65002
    XAUTH_INIT_RSA = 65005
    XAUTH_RESP_RSA = 65006


class Group(IntEnum):
    """Group Description values (RFC 2409 6, RFC 3526, RFC 5903)."""

    MODP768 = 1
    MODP1024 = 2
    EC2N155 = 3
    EC2N185 = 4
    MODP1536 = 5
    MODP2048 = 14
    MODP3072 = 15
    MODP4096 = 16
    MODP6144 = 17
    MODP8192 = 18
    ECP256 = 19
    ECP384 = 20
    ECP521 = 21


_AES_KEYS = (128, 192, 256)
_ENC_NAMES = {EncryptionAlgorithm.AES_CBC: "aes", EncryptionAlgorithm.TRIPLE_DES_CBC: "3des"}
#: phase-1 hashes by their hashlib names (also strongSwan's proposal keywords)
HASH_NAMES = {
    HashAlgorithm.MD5: "md5",
    HashAlgorithm.SHA1: "sha1",
    HashAlgorithm.SHA2_256: "sha256",
    HashAlgorithm.SHA2_384: "sha384",
    HashAlgorithm.SHA2_512: "sha512",
}
# ESP integrity algorithms: name and key bytes (RFC 2403, RFC 2404, RFC 4868).
_AUTH_INFO = {
    AuthAlgorithm.HMAC_MD5: ("md5", 16),
    AuthAlgorithm.HMAC_SHA1: ("sha1", 20),
    AuthAlgorithm.HMAC_SHA2_256: ("sha256", 32),
    AuthAlgorithm.HMAC_SHA2_384: ("sha384", 48),
    AuthAlgorithm.HMAC_SHA2_512: ("sha512", 64),
}
_AEAD = frozenset(
    {ESPTransformID.ESP_AES_GCM_8, ESPTransformID.ESP_AES_GCM_12, ESPTransformID.ESP_AES_GCM_16}
)


@dataclass(frozen=True, slots=True)
class IkeSuite:
    """One phase-1 algorithm combination."""

    encryption: EncryptionAlgorithm
    key_bits: int
    hash: HashAlgorithm
    group: Group

    @property
    def name(self) -> str:
        """strongSwan-style name, e.g. ``aes256-sha256-modp2048``."""
        enc = _ENC_NAMES.get(self.encryption, self.encryption.name.lower())
        if self.encryption == EncryptionAlgorithm.AES_CBC:
            enc += str(self.key_bits)
        return (
            f"{enc}-{HASH_NAMES.get(self.hash, self.hash.name.lower())}-{_group_name(self.group)}"
        )


@dataclass(frozen=True, slots=True)
class EspSuite:
    """One ESP algorithm combination; ``auth`` is None for AEAD (AES-GCM)."""

    transform: ESPTransformID
    key_bits: int
    auth: AuthAlgorithm | None

    @property
    def name(self) -> str:
        """strongSwan-style name, e.g. ``aes128-sha256`` or ``aes256gcm16``."""
        if self.transform in _AEAD:
            icv = {ESPTransformID.ESP_AES_GCM_8: 8, ESPTransformID.ESP_AES_GCM_12: 12}.get(
                self.transform, 16
            )
            return f"aes{self.key_bits}gcm{icv}"
        enc = "3des" if self.transform == ESPTransformID.ESP_3DES else f"aes{self.key_bits}"
        auth = _AUTH_INFO[self.auth][0] if self.auth in _AUTH_INFO else "none"
        return f"{enc}-{auth}"

    @property
    def keymat_length(self) -> int:
        """KEYMAT bytes per direction: cipher key (+ 4-byte salt for GCM, RFC 4106 8.1)
        then integrity key (RFC 2409 5.5 order)."""
        if self.transform in _AEAD:
            return self.key_bits // 8 + 4
        auth = _AUTH_INFO[self.auth][1] if self.auth in _AUTH_INFO else 0
        return self.key_bits // 8 + auth


def _group_name(group: Group) -> str:
    return f"ecp{({19: 256, 20: 384, 21: 521})[group]}" if group >= 19 else group.name.lower()


_AES, _3DES = EncryptionAlgorithm.AES_CBC, EncryptionAlgorithm.TRIPLE_DES_CBC
_SHA1, _SHA256 = HashAlgorithm.SHA1, HashAlgorithm.SHA2_256
_SHA384, _SHA512 = HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512

DEFAULT_INITIATOR_IKE: tuple[IkeSuite, ...] = (
    IkeSuite(_AES, 256, _SHA256, Group.MODP2048),
    IkeSuite(_AES, 128, _SHA256, Group.MODP2048),
    IkeSuite(_AES, 256, _SHA1, Group.MODP2048),
    IkeSuite(_AES, 128, _SHA1, Group.MODP2048),
    IkeSuite(_AES, 256, _SHA384, Group.ECP384),
    IkeSuite(_AES, 128, _SHA256, Group.ECP256),
    IkeSuite(_AES, 256, _SHA512, Group.MODP4096),
    IkeSuite(_AES, 256, _SHA256, Group.MODP3072),
    IkeSuite(_3DES, 192, _SHA1, Group.MODP2048),  # legacy only
    IkeSuite(_AES, 256, _SHA1, Group.MODP1024),  # legacy only
    IkeSuite(_AES, 128, _SHA1, Group.MODP1024),  # legacy only
    IkeSuite(_3DES, 192, _SHA1, Group.MODP1024),  # legacy only
)

_GCM, _CBC = ESPTransformID.ESP_AES_GCM_16, ESPTransformID.ESP_AES_CBC
DEFAULT_INITIATOR_ESP: tuple[EspSuite, ...] = (
    EspSuite(_GCM, 256, None),
    EspSuite(_GCM, 128, None),
    EspSuite(_CBC, 256, AuthAlgorithm.HMAC_SHA2_256),
    EspSuite(_CBC, 128, AuthAlgorithm.HMAC_SHA2_256),
    EspSuite(_CBC, 256, AuthAlgorithm.HMAC_SHA1),
    EspSuite(_CBC, 128, AuthAlgorithm.HMAC_SHA1),
    EspSuite(ESPTransformID.ESP_3DES, 192, AuthAlgorithm.HMAC_SHA1),  # legacy only
)


@dataclass(frozen=True, slots=True)
class Phase1Choice:
    """A phase-1 transform the policy accepted, as received and decoded."""

    proposal: Proposal
    transform: Transform
    suite: IkeSuite
    auth_method: AuthMethod
    lifetime: int | None  # seconds, if the peer gave one
    lifetime_kb: int | None

    @property
    def key_length(self) -> int:
        """Encryption key bytes (for :func:`pyl2tp.ike.crypto.derive_phase1_keys`)."""
        return self.suite.key_bits // 8

    def sa_payload(self, doi: int = DOI_IPSEC, situation: int = SIT_IDENTITY_ONLY) -> SAPayload:
        """The responder's SA: the chosen proposal with the chosen transform only."""
        p = self.proposal
        return SAPayload(
            (Proposal(p.number, p.protocol, p.spi, (self.transform,)),), doi, situation
        )


@dataclass(frozen=True, slots=True)
class Phase2Choice:
    """A Quick Mode (ESP) transform the policy accepted, as received and decoded."""

    proposal: Proposal
    transform: Transform
    suite: EspSuite
    encapsulation: EncapsulationMode
    group: Group | None  # PFS group, None without PFS
    lifetime: int | None  # seconds, if the peer gave one
    lifetime_kb: int | None

    @property
    def peer_spi(self) -> bytes:
        """The SPI in the peer's proposal (the SA that carries traffic *to* the peer)."""
        return self.proposal.spi

    def sa_payload(
        self, spi: bytes, doi: int = DOI_IPSEC, situation: int = SIT_IDENTITY_ONLY
    ) -> SAPayload:
        """The responder's SA: the chosen proposal and transform, with our inbound ``spi``."""
        p = self.proposal
        return SAPayload((Proposal(p.number, p.protocol, spi, (self.transform,)),), doi, situation)


class _Reject(Exception):
    """A transform the policy does not accept (internal)."""


def _lifetimes(
    attrs: Iterable[Attribute], type_attr: int, duration_attr: int
) -> tuple[int | None, int | None]:
    """RFC 2409 App. A / RFC 2407 4.5: each LIFE_DURATION follows the LIFE_TYPE it measures."""
    seconds: int | None = None
    kilobytes: int | None = None
    life_type: int | None = None
    for attr in attrs:
        if attr.type == type_attr:
            life_type = attr.as_int()
        elif attr.type == duration_attr:
            value = attr.as_int()
            if value == 0 or life_type is None:
                raise _Reject("lifetime without type, or zero")
            if life_type == LifeType.SECONDS:
                seconds = value
            elif life_type == LifeType.KILOBYTES:
                kilobytes = value
            else:
                raise _Reject("unknown life type")
            life_type = None
    return seconds, kilobytes


def _single(t: Transform, attr_type: int, allowed_repeat: Collection[int]) -> int | None:
    values = [a for a in t.attributes if a.type == attr_type]
    if len(values) > 1 and attr_type not in allowed_repeat:
        raise _Reject(f"attribute {attr_type} repeated")
    return values[0].as_int() if values else None


_E = TypeVar("_E", bound=IntEnum)


def _enum(kind: type[_E], value: int | None) -> _E:
    if value is None:
        raise _Reject(f"missing {kind.__name__}")
    try:
        return kind(value)
    except ValueError:
        raise _Reject(f"unknown {kind.__name__} {value}") from None


# Attributes a transform may carry; anything else (PRF, custom groups, key rounds,
# compression) makes the transform unacceptable (RFC 2408: ATTRIBUTES-NOT-SUPPORTED).
_A, _I = AttributeType, IPsecAttributeType
_P1_LIFE = (_A.LIFE_TYPE, _A.LIFE_DURATION)
_P1_KNOWN = frozenset({*_P1_LIFE, _A.ENCRYPTION_ALGORITHM, _A.HASH_ALGORITHM, _A.AUTH_METHOD})
_P1_KNOWN |= {_A.GROUP_DESCRIPTION, _A.KEY_LENGTH}
_P2_LIFE = (_I.SA_LIFE_TYPE, _I.SA_LIFE_DURATION)
_P2_KNOWN = frozenset({*_P2_LIFE, _I.GROUP_DESCRIPTION, _I.ENCAPSULATION_MODE, _I.KEY_LENGTH})
_P2_KNOWN |= {_I.AUTH_ALGORITHM, _I.ECN_TUNNEL, _I.EXTENDED_SEQUENCE_NUMBER}


class Policy:
    """What we accept and what we propose, in both IKEv1 phases.

    Every argument is optional; ``None`` means the documented default for ``legacy``.
    """

    __slots__ = (
        "auth_methods",
        "esp_auths",
        "esp_ciphers",
        "ike_ciphers",
        "ike_groups",
        "ike_hashes",
        "ike_lifetime",
        "initiator_esp",
        "initiator_ike",
        "legacy",
        "pfs_groups",
        "require_pfs",
        "sa_lifetime",
    )

    def __init__(
        self,
        *,
        legacy: bool = False,
        ike_ciphers: Iterable[tuple[EncryptionAlgorithm, int]] | None = None,
        ike_hashes: Iterable[HashAlgorithm] | None = None,
        ike_groups: Iterable[Group] | None = None,
        auth_methods: Iterable[AuthMethod] = (AuthMethod.PRE_SHARED_KEY,),
        esp_ciphers: Iterable[tuple[ESPTransformID, int]] | None = None,
        esp_auths: Iterable[AuthAlgorithm] | None = None,
        pfs_groups: Iterable[Group] | None = None,
        require_pfs: bool = False,
        ike_lifetime: int = 28800,
        sa_lifetime: int = 3600,
        initiator_ike: Iterable[IkeSuite] = DEFAULT_INITIATOR_IKE,
        initiator_esp: Iterable[EspSuite] = DEFAULT_INITIATOR_ESP,
    ) -> None:
        self.legacy = legacy
        default_ciphers = {(_AES, 128), (_AES, 256)} | ({(_3DES, 192)} if legacy else set())
        self.ike_ciphers = frozenset(ike_ciphers if ike_ciphers is not None else default_ciphers)
        hashes = (_SHA1, _SHA256, _SHA384, _SHA512) if ike_hashes is None else ike_hashes
        self.ike_hashes = frozenset(hashes)
        modern = {Group.MODP2048, Group.MODP3072, Group.MODP4096, Group.ECP256, Group.ECP384}
        default_groups = modern | ({Group.MODP1024} if legacy else set())
        self.ike_groups = frozenset(ike_groups if ike_groups is not None else default_groups)
        self.auth_methods = frozenset(auth_methods)
        default_esp = {(_CBC, 128), (_CBC, 256), (_GCM, 128), (_GCM, 256)}
        if legacy:
            default_esp.add((ESPTransformID.ESP_3DES, 192))
        self.esp_ciphers = frozenset(esp_ciphers if esp_ciphers is not None else default_esp)
        default_auths = set(_AUTH_INFO) - {AuthAlgorithm.HMAC_MD5}
        self.esp_auths = frozenset(default_auths if esp_auths is None else esp_auths)
        self.pfs_groups = frozenset(pfs_groups if pfs_groups is not None else self.ike_groups)
        self.require_pfs = require_pfs
        self.ike_lifetime = ike_lifetime
        self.sa_lifetime = sa_lifetime
        self.initiator_ike = tuple(s for s in initiator_ike if self.accepts_ike(s))
        self.initiator_esp = tuple(s for s in initiator_esp if self.accepts_esp(s))

    def accepts_ike(self, suite: IkeSuite) -> bool:
        """True if every algorithm of the phase-1 suite is allowed."""
        return (
            (suite.encryption, suite.key_bits) in self.ike_ciphers
            and suite.hash in self.ike_hashes
            and suite.group in self.ike_groups
        )

    def accepts_esp(self, suite: EspSuite) -> bool:
        """True if the ESP suite is allowed (AEAD without, others with an allowed MAC)."""
        if (suite.transform, suite.key_bits) not in self.esp_ciphers:
            return False
        if suite.transform in _AEAD:
            return suite.auth is None
        return suite.auth in self.esp_auths

    # -- responder side: match a peer's SA --------------------------------------------

    def match_phase1(self, sa: SAPayload) -> Phase1Choice | None:
        """The first acceptable phase-1 transform of the peer's SA, or None."""
        if sa.doi != DOI_IPSEC or sa.situation != SIT_IDENTITY_ONLY:
            return None
        for proposal in sa.proposals:
            if proposal.protocol != ProtocolID.ISAKMP:
                continue
            for transform in proposal.transforms:
                try:
                    return self._phase1_transform(proposal, transform)
                except _Reject:
                    continue
        return None

    def _phase1_transform(self, proposal: Proposal, t: Transform) -> Phase1Choice:
        if t.transform_id != KEY_IKE:
            raise _Reject("not KEY_IKE")
        if any(a.type not in _P1_KNOWN for a in t.attributes):
            raise _Reject("unsupported attribute")  # PRF, custom groups...
        enc = _enum(EncryptionAlgorithm, _single(t, AttributeType.ENCRYPTION_ALGORITHM, _P1_LIFE))
        key_bits = _single(t, AttributeType.KEY_LENGTH, _P1_LIFE)
        hash_alg = _enum(HashAlgorithm, _single(t, AttributeType.HASH_ALGORITHM, _P1_LIFE))
        auth = _enum(AuthMethod, _single(t, AttributeType.AUTH_METHOD, _P1_LIFE))
        group = _enum(Group, _single(t, AttributeType.GROUP_DESCRIPTION, _P1_LIFE))
        suite = IkeSuite(enc, _key_bits(enc, key_bits), hash_alg, group)
        if not self.accepts_ike(suite) or auth not in self.auth_methods:
            raise _Reject("not allowed")
        seconds, kb = _lifetimes(t.attributes, *_P1_LIFE)
        return Phase1Choice(proposal, t, suite, auth, seconds, kb)

    def match_phase2(
        self, sa: SAPayload, *, modes: Collection[int] | None = None
    ) -> Phase2Choice | None:
        """The first acceptable ESP transform of a Quick Mode SA, or None.

        ``modes`` are the acceptable encapsulation modes (e.g. transport, or the UDP
        modes when NAT-T is in use); None accepts any mode. Proposals that share a
        number with another (AH+ESP or IPComp bundles, RFC 2408 4.2) are skipped.
        """
        if sa.doi != DOI_IPSEC or sa.situation != SIT_IDENTITY_ONLY:
            return None
        counts: dict[int, int] = {}
        for p in sa.proposals:
            counts[p.number] = counts.get(p.number, 0) + 1
        for proposal in sa.proposals:
            if counts[proposal.number] != 1 or proposal.protocol != ProtocolID.ESP:
                continue
            if len(proposal.spi) != 4:
                continue
            for transform in proposal.transforms:
                try:
                    return self._phase2_transform(proposal, transform, modes)
                except _Reject:
                    continue
        return None

    def _phase2_transform(
        self, proposal: Proposal, t: Transform, modes: Collection[int] | None
    ) -> Phase2Choice:
        if any(a.type not in _P2_KNOWN for a in t.attributes):
            raise _Reject("unsupported attribute")
        tid = _enum(ESPTransformID, t.transform_id)
        # RFC 4304: extended sequence numbers are not implemented.
        if _single(t, IPsecAttributeType.EXTENDED_SEQUENCE_NUMBER, _P2_LIFE):
            raise _Reject("ESN")
        auth_value = _single(t, IPsecAttributeType.AUTH_ALGORITHM, _P2_LIFE)
        if tid in _AEAD:
            if auth_value is not None:  # RFC 4106 8.4: no authentication attribute
                raise _Reject("AEAD with an authentication algorithm")
            auth = None
        else:
            auth = _enum(AuthAlgorithm, auth_value)
        key_bits = _esp_key_bits(tid, _single(t, IPsecAttributeType.KEY_LENGTH, _P2_LIFE))
        suite = EspSuite(tid, key_bits, auth)
        if not self.accepts_esp(suite):
            raise _Reject("not allowed")
        # RFC 2407 4.5 leaves a missing mode host-dependent; we read it as tunnel.
        mode_value = _single(t, IPsecAttributeType.ENCAPSULATION_MODE, _P2_LIFE)
        mode = _enum(
            EncapsulationMode, EncapsulationMode.TUNNEL if mode_value is None else mode_value
        )
        if modes is not None and mode not in modes:
            raise _Reject("mode")
        group_value = _single(t, IPsecAttributeType.GROUP_DESCRIPTION, _P2_LIFE)
        group = None if group_value is None else _enum(Group, group_value)
        if (group is None and self.require_pfs) or (
            group is not None and group not in self.pfs_groups
        ):
            raise _Reject("PFS")
        seconds, kb = _lifetimes(t.attributes, *_P2_LIFE)
        return Phase2Choice(proposal, t, suite, mode, group, seconds, kb)

    # -- initiator side: our proposals ------------------------------------------------

    def phase1_sa(
        self, auth_method: AuthMethod = AuthMethod.PRE_SHARED_KEY, lifetime: int | None = None
    ) -> SAPayload:
        """Main/Aggressive Mode SA: one ISAKMP proposal, our suites in preference order.

        Attribute order follows strongSwan's (encryption, key length, hash, group,
        authentication, life type, life duration).
        """
        life = self.ike_lifetime if lifetime is None else lifetime
        transforms = []
        for n, s in enumerate(self.initiator_ike, 1):
            attrs = [Attribute(AttributeType.ENCRYPTION_ALGORITHM, s.encryption)]
            if s.encryption == EncryptionAlgorithm.AES_CBC:
                attrs.append(Attribute(AttributeType.KEY_LENGTH, s.key_bits))
            attrs += [
                Attribute(AttributeType.HASH_ALGORITHM, s.hash),
                Attribute(AttributeType.GROUP_DESCRIPTION, s.group),
                Attribute(AttributeType.AUTH_METHOD, auth_method),
                Attribute(AttributeType.LIFE_TYPE, LifeType.SECONDS),
                Attribute.of(AttributeType.LIFE_DURATION, life),
            ]
            transforms.append(Transform(n, KEY_IKE, tuple(attrs)))
        return SAPayload((Proposal(1, ProtocolID.ISAKMP, b"", tuple(transforms)),))

    def phase2_sa(
        self,
        spi: bytes,
        encapsulation: EncapsulationMode,
        *,
        pfs_group: Group | None = None,
        lifetime: int | None = None,
        lifetime_kb: int | None = None,
    ) -> SAPayload:
        """Quick Mode SA: one ESP proposal with our inbound ``spi``, suites in preference order."""
        if len(spi) != 4:
            raise ValueError("ESP SPIs are 4 bytes")
        life = self.sa_lifetime if lifetime is None else lifetime
        transforms = []
        for n, s in enumerate(self.initiator_esp, 1):
            attrs = [
                Attribute(IPsecAttributeType.SA_LIFE_TYPE, LifeType.SECONDS),
                Attribute.of(IPsecAttributeType.SA_LIFE_DURATION, life),
            ]
            if lifetime_kb:  # RFC 2407 4.5: a second lifetime, in kilobytes
                attrs += [
                    Attribute(IPsecAttributeType.SA_LIFE_TYPE, LifeType.KILOBYTES),
                    Attribute.of(IPsecAttributeType.SA_LIFE_DURATION, lifetime_kb),
                ]
            if pfs_group is not None:
                attrs.append(Attribute(IPsecAttributeType.GROUP_DESCRIPTION, pfs_group))
            attrs.append(Attribute(IPsecAttributeType.ENCAPSULATION_MODE, encapsulation))
            if s.auth is not None:
                attrs.append(Attribute(IPsecAttributeType.AUTH_ALGORITHM, s.auth))
            if s.transform != ESPTransformID.ESP_3DES:
                attrs.append(Attribute(IPsecAttributeType.KEY_LENGTH, s.key_bits))
            transforms.append(Transform(n, s.transform, tuple(attrs)))
        return SAPayload((Proposal(1, ProtocolID.ESP, spi, tuple(transforms)),))


def _key_bits(enc: EncryptionAlgorithm, given: int | None) -> int:
    """Phase-1 key size: AES needs 128/192/256 (128 if absent), 3DES has 192."""
    if enc == EncryptionAlgorithm.AES_CBC:
        bits = 128 if given is None else given
        if bits not in _AES_KEYS:
            raise _Reject("AES key length")
        return bits
    if enc == EncryptionAlgorithm.TRIPLE_DES_CBC and given in (None, 192):
        return 192
    raise _Reject("cipher")


def _esp_key_bits(tid: ESPTransformID, given: int | None) -> int:
    """ESP key size: AES-CBC/GCM 128/192/256 (128 if absent), 3DES 192."""
    if tid == ESPTransformID.ESP_AES_CBC or tid in _AEAD:
        bits = 128 if given is None else given
        if bits not in _AES_KEYS:
            raise _Reject("AES key length")
        return bits
    if tid == ESPTransformID.ESP_3DES and given in (None, 192):
        return 192
    raise _Reject("cipher")
