"""ISAKMP / IKEv1 protocol numbers (RFC 2407, RFC 2408, RFC 2409, RFC 3947, RFC 3706).

Specification constants only: exchange and payload types, notify types, ID types, SA
attribute types and their well-known values, IPsec DOI transform identifiers and the
vendor IDs a responder or initiator recognises. Re-exported by :mod:`pyl2tp.wire.isakmp`.
Phase-1 algorithm values (encryption, hash, auth method, group) live in
:mod:`pyl2tp.ike.proposals`, next to the policy that uses them.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

__all__ = [
    "DOI_IPSEC",
    "KEY_IKE",
    "NON_ESP_MARKER",
    "SIT_IDENTITY_ONLY",
    "AHTransformID",
    "AttributeType",
    "AuthAlgorithm",
    "CertEncoding",
    "ESPTransformID",
    "EncapsulationMode",
    "ExchangeType",
    "Flags",
    "IDType",
    "IPCompTransformID",
    "IPsecAttributeType",
    "LifeType",
    "NotifyType",
    "PayloadType",
    "ProtocolID",
    "VendorID",
    "known_vendor_id",
]

# RFC 2407 4.2: the IPsec Domain of Interpretation, and its only situation we support.
DOI_IPSEC = 1
SIT_IDENTITY_ONLY = 0x01
# RFC 2407 4.4.2: the only phase-1 transform identifier.
KEY_IKE = 1
# RFC 3948 2.2: IKE on UDP 4500 is preceded by four zero bytes (ESP never has SPI 0).
NON_ESP_MARKER = b"\x00\x00\x00\x00"


class ExchangeType(IntEnum):
    """ISAKMP exchange types (RFC 2408 3.1, RFC 2409 5 and 9)."""

    NONE = 0
    BASE = 1
    MAIN = 2  # Identity Protection
    AUTH_ONLY = 3
    AGGRESSIVE = 4
    INFORMATIONAL = 5
    TRANSACTION = 6  # draft-ietf-ipsec-isakmp-mode-cfg (XAUTH / Mode-Config)
    QUICK = 32
    NEW_GROUP = 33


class Flags(IntFlag):
    """ISAKMP header flags (RFC 2408 3.1)."""

    ENCRYPTION = 0x01  # E: payloads after the header are encrypted
    COMMIT = 0x02  # C
    AUTH_ONLY = 0x04  # A


class PayloadType(IntEnum):
    """Next Payload values (RFC 2408 3.1, RFC 3947 3.2 / 5.2 and the NAT-T drafts)."""

    NONE = 0
    SA = 1
    PROPOSAL = 2
    TRANSFORM = 3
    KE = 4
    ID = 5
    CERT = 6
    CERT_REQUEST = 7
    HASH = 8
    SIGNATURE = 9
    NONCE = 10
    NOTIFICATION = 11
    DELETE = 12
    VENDOR_ID = 13
    ATTRIBUTE = 14  # Mode-Config / XAUTH attribute payload (kept raw)
    NAT_D = 20  # RFC 3947 3.2
    NAT_OA = 21  # RFC 3947 5.2
    NAT_D_DRAFT = 130  # draft-ietf-ipsec-nat-t-ike-02/03 (Windows, old macOS)
    NAT_OA_DRAFT = 131
    FRAGMENT = 132  # Cisco/strongSwan IKEv1 fragmentation (kept raw)


class NotifyType(IntEnum):
    """Notify Message Types: errors (RFC 2408 3.14.1) and status (RFC 2407 4.6.3, RFC 3706)."""

    INVALID_PAYLOAD_TYPE = 1
    DOI_NOT_SUPPORTED = 2
    SITUATION_NOT_SUPPORTED = 3
    INVALID_COOKIE = 4
    INVALID_MAJOR_VERSION = 5
    INVALID_MINOR_VERSION = 6
    INVALID_EXCHANGE_TYPE = 7
    INVALID_FLAGS = 8
    INVALID_MESSAGE_ID = 9
    INVALID_PROTOCOL_ID = 10
    INVALID_SPI = 11
    INVALID_TRANSFORM_ID = 12
    ATTRIBUTES_NOT_SUPPORTED = 13
    NO_PROPOSAL_CHOSEN = 14
    BAD_PROPOSAL_SYNTAX = 15
    PAYLOAD_MALFORMED = 16
    INVALID_KEY_INFORMATION = 17
    INVALID_ID_INFORMATION = 18
    INVALID_CERT_ENCODING = 19
    INVALID_CERTIFICATE = 20
    CERT_TYPE_UNSUPPORTED = 21
    INVALID_CERT_AUTHORITY = 22
    INVALID_HASH_INFORMATION = 23
    AUTHENTICATION_FAILED = 24
    INVALID_SIGNATURE = 25
    ADDRESS_NOTIFICATION = 26
    NOTIFY_SA_LIFETIME = 27
    CERTIFICATE_UNAVAILABLE = 28
    UNSUPPORTED_EXCHANGE_TYPE = 29
    UNEQUAL_PAYLOAD_LENGTHS = 30
    CONNECTED = 16384
    RESPONDER_LIFETIME = 24576  # RFC 2407 4.6.3.1
    REPLAY_STATUS = 24577
    INITIAL_CONTACT = 24578
    R_U_THERE = 36136  # RFC 3706 5
    R_U_THERE_ACK = 36137


class ProtocolID(IntEnum):
    """Security Protocol Identifiers (RFC 2407 4.4.1)."""

    ISAKMP = 1
    AH = 2
    ESP = 3
    IPCOMP = 4


class IDType(IntEnum):
    """Identification types (RFC 2407 4.6.2.1)."""

    IPV4_ADDR = 1
    FQDN = 2
    USER_FQDN = 3
    IPV4_ADDR_SUBNET = 4
    IPV6_ADDR = 5
    IPV6_ADDR_SUBNET = 6
    IPV4_ADDR_RANGE = 7
    IPV6_ADDR_RANGE = 8
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


class CertEncoding(IntEnum):
    """Certificate encodings of CERT and CR payloads (RFC 2408 3.9)."""

    PKCS7 = 1
    PGP = 2
    DNS_SIGNED_KEY = 3
    X509_SIGNATURE = 4
    X509_KEY_EXCHANGE = 5
    KERBEROS = 6
    CRL = 7
    ARL = 8
    SPKI = 9
    X509_ATTRIBUTE = 10


class AttributeType(IntEnum):
    """Phase-1 (Oakley) SA attribute classes (RFC 2409 Appendix A). B = basic, V = variable."""

    ENCRYPTION_ALGORITHM = 1  # B
    HASH_ALGORITHM = 2  # B
    AUTH_METHOD = 3  # B
    GROUP_DESCRIPTION = 4  # B
    GROUP_TYPE = 5  # B
    GROUP_PRIME = 6  # V
    GROUP_GENERATOR_ONE = 7  # V
    GROUP_GENERATOR_TWO = 8  # V
    GROUP_CURVE_A = 9  # V
    GROUP_CURVE_B = 10  # V
    LIFE_TYPE = 11  # B
    LIFE_DURATION = 12  # V (basic when it fits 16 bits)
    PRF = 13  # B
    KEY_LENGTH = 14  # B
    FIELD_SIZE = 15  # B
    GROUP_ORDER = 16  # V


class IPsecAttributeType(IntEnum):
    """IPsec DOI (phase-2) SA attribute classes (RFC 2407 4.5)."""

    SA_LIFE_TYPE = 1
    SA_LIFE_DURATION = 2
    GROUP_DESCRIPTION = 3
    ENCAPSULATION_MODE = 4
    AUTH_ALGORITHM = 5
    KEY_LENGTH = 6
    KEY_ROUNDS = 7
    COMPRESS_DICTIONARY_SIZE = 8
    COMPRESS_PRIVATE_ALGORITHM = 9
    ECN_TUNNEL = 10  # RFC 3168
    EXTENDED_SEQUENCE_NUMBER = 11  # RFC 4304


class LifeType(IntEnum):
    """Life Type values, phase 1 (RFC 2409 App. A) and phase 2 (RFC 2407 4.5) alike."""

    SECONDS = 1
    KILOBYTES = 2


class EncapsulationMode(IntEnum):
    """Encapsulation Mode values (RFC 2407 4.5, RFC 3947 5.1, draft-ietf-ipsec-nat-t-ike)."""

    TUNNEL = 1
    TRANSPORT = 2
    UDP_TUNNEL = 3  # RFC 3947
    UDP_TRANSPORT = 4
    UDP_TUNNEL_DRAFT = 61443  # drafts 00-03, still sent by Windows and older macOS
    UDP_TRANSPORT_DRAFT = 61444

    @property
    def is_udp(self) -> bool:
        """True for the UDP-encapsulated (NAT-T, RFC 3948) modes."""
        return self not in (EncapsulationMode.TUNNEL, EncapsulationMode.TRANSPORT)

    @property
    def is_transport(self) -> bool:
        """True for transport mode, plain or UDP-encapsulated."""
        return self in (
            EncapsulationMode.TRANSPORT,
            EncapsulationMode.UDP_TRANSPORT,
            EncapsulationMode.UDP_TRANSPORT_DRAFT,
        )


class AuthAlgorithm(IntEnum):
    """IPsec DOI Authentication Algorithm attribute values (RFC 2407 4.5, RFC 4868 2.1)."""

    HMAC_MD5 = 1
    HMAC_SHA1 = 2
    DES_MAC = 3
    KPDK = 4
    HMAC_SHA2_256 = 5  # RFC 4868: truncated to 128 bits in ESP
    HMAC_SHA2_384 = 6
    HMAC_SHA2_512 = 7
    HMAC_RIPEMD = 8
    AES_XCBC_MAC = 9
    SIG_RSA = 10
    AES_128_GMAC = 11
    AES_192_GMAC = 12
    AES_256_GMAC = 13


class ESPTransformID(IntEnum):
    """IPsec DOI ESP transform identifiers (RFC 2407 4.4.4, IANA "IPSEC ESP Transform")."""

    ESP_DES_IV64 = 1
    ESP_DES = 2
    ESP_3DES = 3
    ESP_RC5 = 4
    ESP_IDEA = 5
    ESP_CAST = 6
    ESP_BLOWFISH = 7
    ESP_3IDEA = 8
    ESP_DES_IV32 = 9
    ESP_RC4 = 10
    ESP_NULL = 11
    ESP_AES_CBC = 12  # RFC 3602
    ESP_AES_CTR = 13
    ESP_AES_CCM_8 = 14
    ESP_AES_CCM_12 = 15
    ESP_AES_CCM_16 = 16
    ESP_AES_GCM_8 = 18  # RFC 4106
    ESP_AES_GCM_12 = 19
    ESP_AES_GCM_16 = 20
    ESP_SEED_CBC = 21
    ESP_CAMELLIA = 22
    ESP_NULL_AUTH_AES_GMAC = 23


class AHTransformID(IntEnum):
    """IPsec DOI AH transform identifiers (RFC 2407 4.4.3)."""

    AH_MD5 = 2
    AH_SHA = 3
    AH_DES = 4
    AH_SHA2_256 = 5
    AH_SHA2_384 = 6
    AH_SHA2_512 = 7


class IPCompTransformID(IntEnum):
    """IPsec DOI IPCOMP transform identifiers (RFC 2407 4.4.5)."""

    IPCOMP_OUI = 1
    IPCOMP_DEFLATE = 2
    IPCOMP_LZS = 3


class VendorID:
    """Well-known Vendor ID payload values (bytes), mostly MD5 hashes of a name."""

    # RFC 3947 / draft-ietf-ipsec-nat-t-ike-*: MD5 of the document names.
    NAT_T_RFC3947 = bytes.fromhex("4a131c81070358455c5728f20e95452f")
    NAT_T_DRAFT_00 = bytes.fromhex("4485152d18b6bbcd0be8a8469579ddcc")
    NAT_T_DRAFT_01 = bytes.fromhex("16f6ca16e4a4066d83821a0f0aeaa862")
    NAT_T_DRAFT_02 = bytes.fromhex("cd60464335df21f87cfdb2fc68b6a448")
    NAT_T_DRAFT_02N = bytes.fromhex("90cb80913ebb696e086381b5ec427b1f")  # "...-02\n"
    NAT_T_DRAFT_03 = bytes.fromhex("7d9419a65310ca6f2c179d9215529d56")
    # RFC 3706 2.1 (the last two bytes are the major and minor version 1.0).
    DPD = bytes.fromhex("afcad71368a1f1c96b8696fc77570100")
    XAUTH = bytes.fromhex("09002689dfd6b712")
    # Cisco-style IKE fragmentation; the 4 trailing bytes are capability flags.
    FRAGMENTATION = bytes.fromhex("4048b7d56ebce88525e7de7f00d6c2d380000000")
    # Microsoft: "MS NT5 ISAKMPOAKLEY" followed by a 4-byte version (Windows 2000 = 2 ...).
    MS_NT5_ISAKMPOAKLEY = bytes.fromhex("1e2b516905991c7d7c96fcbfb587e461")
    MS_NEGOTIATION_DISCOVERY = bytes.fromhex("fb1de3cdf341b7ea16b7e5be0855f120")
    MS_IKE_CGA_V1 = bytes.fromhex("e3a5966a76379fe707228231e5ce8652")
    MS_VID_INITIAL_CONTACT = bytes.fromhex("26244d38eddb61b3172a36e3d0cfb819")


# Names of the values above, matched exactly or, for the last two groups, by prefix.
_VENDOR_IDS: dict[bytes, str] = {
    VendorID.NAT_T_RFC3947: "NAT-T (RFC 3947)",
    VendorID.NAT_T_DRAFT_00: "draft-ietf-ipsec-nat-t-ike-00",
    VendorID.NAT_T_DRAFT_01: "draft-ietf-ipsec-nat-t-ike-01",
    VendorID.NAT_T_DRAFT_02: "draft-ietf-ipsec-nat-t-ike-02",
    VendorID.NAT_T_DRAFT_02N: "draft-ietf-ipsec-nat-t-ike-02\\n",
    VendorID.NAT_T_DRAFT_03: "draft-ietf-ipsec-nat-t-ike-03",
    VendorID.DPD: "DPD (RFC 3706)",
    VendorID.XAUTH: "XAUTH",
    VendorID.MS_NEGOTIATION_DISCOVERY: "MS-Negotiation Discovery Capable",
    VendorID.MS_IKE_CGA_V1: "IKE CGA version 1",
    VendorID.MS_VID_INITIAL_CONTACT: "Vid-Initial-Contact",
}
_VENDOR_PREFIXES: dict[bytes, str] = {
    VendorID.FRAGMENTATION[:16]: "FRAGMENTATION",
    VendorID.MS_NT5_ISAKMPOAKLEY: "MS NT5 ISAKMPOAKLEY",
}


def known_vendor_id(data: bytes) -> str | None:
    """Name of a recognised Vendor ID payload value, or None."""
    name = _VENDOR_IDS.get(data)
    if name is not None:
        return name
    return _VENDOR_PREFIXES.get(data[:16]) if len(data) >= 16 else None
