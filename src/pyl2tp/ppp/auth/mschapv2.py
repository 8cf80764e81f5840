"""MS-CHAPv2 (RFC 2759), both roles, sans-I/O, and the MPPE master key (RFC 3079).

The exchange is CHAP's (see :mod:`.chap`), with algorithm 0x81 and these differences:
the Challenge Value is 16 octets; the Response Value is 49 octets (Peer-Challenge 16,
Reserved 8, NT-Response 24, Flags 1); Success carries ``S=<authenticator response>
M=<message>``, which the peer must verify (a wrong one means the server does not know the
password, so the peer fails); Failure carries ``E=<error> R=<retry> C=<challenge> V=3
M=<message>``. We never offer a retry (R=0) nor a password change.

The hash functions are named after RFC 2759 section 8 and checked against its section
9.2 vectors. User names lose a ``DOMAIN\\`` prefix before hashing (RFC 2759 8.2).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Unpack

from .base import Credentials, MachineArgs, printable
from .chap import ChapAuthenticator, ChapPeer
from .crypto import des_encrypt_block, md4

__all__ = [
    "MsChapV2Authenticator",
    "MsChapV2Failure",
    "MsChapV2Peer",
    "challenge_hash",
    "challenge_response",
    "check_authenticator_response",
    "generate_authenticator_response",
    "generate_nt_response",
    "get_asymmetric_start_key",
    "get_master_key",
    "hash_nt_password_hash",
    "nt_password_hash",
    "parse_failure",
    "strip_domain",
]

RESPONSE_SIZE = 49  # RFC 2759 4: Peer-Challenge 16, Reserved 8, NT-Response 24, Flags 1

# RFC 2759 8.7: the two "magic" constants of GenerateAuthenticatorResponse.
_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"

# RFC 3079 3.4: constants of GetMasterKey and GetAsymmetricStartKey.
_MPPE_MAGIC1 = b"This is the MPPE Master Key"
_MPPE_MAGIC2 = (
    b"On the client side, this is the send key; on the server side, it is the receive key."
)
_MPPE_MAGIC3 = (
    b"On the client side, this is the receive key; on the server side, it is the send key."
)
_SHS_PAD1 = bytes(40)
_SHS_PAD2 = b"\xf2" * 40

ERROR_TEXT = {
    646: "restricted logon hours",
    647: "account disabled",
    648: "password expired",
    649: "no dial-in permission",
    691: "authentication failure",
    709: "error changing password",
}


def strip_domain(user_name: bytes) -> bytes:
    """The user name without a ``DOMAIN\\`` prefix (RFC 2759 8.2)."""
    return user_name.rpartition(b"\\")[2]


def challenge_hash(
    peer_challenge: bytes, authenticator_challenge: bytes, user_name: bytes
) -> bytes:
    """RFC 2759 8.2 ChallengeHash: the first 8 octets of SHA-1(peer ‖ auth ‖ user)."""
    digest = hashlib.sha1(peer_challenge + authenticator_challenge + user_name).digest()
    return digest[:8]


def nt_password_hash(password: str) -> bytes:
    """RFC 2759 8.3 NtPasswordHash: MD4 of the password in UTF-16LE."""
    return md4(password.encode("utf-16-le"))


def hash_nt_password_hash(password_hash: bytes) -> bytes:
    """RFC 2759 8.4 HashNtPasswordHash: MD4 of the password hash."""
    return md4(password_hash)


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """RFC 2759 8.5 ChallengeResponse: three DES blocks keyed by the zero-padded hash."""
    if len(challenge) != 8 or len(password_hash) != 16:
        raise ValueError("ChallengeResponse takes an 8-byte challenge and a 16-byte hash")
    z = password_hash + bytes(5)
    return b"".join(des_encrypt_block(z[i : i + 7], challenge) for i in (0, 7, 14))


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, user_name: bytes, password: str
) -> bytes:
    """RFC 2759 8.1 GenerateNTResponse (``user_name`` already without domain)."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name)
    return challenge_response(challenge, nt_password_hash(password))


def generate_authenticator_response(
    password: str,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    user_name: bytes,
) -> bytes:
    """RFC 2759 8.7 GenerateAuthenticatorResponse: ``b"S="`` and 40 uppercase hex digits."""
    password_hash_hash = hash_nt_password_hash(nt_password_hash(password))
    digest = hashlib.sha1(password_hash_hash + nt_response + _MAGIC1).digest()
    challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name)
    digest = hashlib.sha1(digest + challenge + _MAGIC2).digest()
    return b"S=" + digest.hex().upper().encode("ascii")


def check_authenticator_response(
    password: str,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    user_name: bytes,
    received: bytes,
) -> bool:
    """RFC 2759 8.8 CheckAuthenticatorResponse (hex compared without regard to case)."""
    expected = generate_authenticator_response(
        password, nt_response, peer_challenge, authenticator_challenge, user_name
    )
    return hmac.compare_digest(expected, received[:42].upper())


def get_master_key(password_hash_hash: bytes, nt_response: bytes) -> bytes:
    """RFC 3079 3.4 GetMasterKey: 16 octets of SHA-1(hash-hash ‖ NT-Response ‖ Magic1)."""
    return hashlib.sha1(password_hash_hash + nt_response + _MPPE_MAGIC1).digest()[:16]


def get_asymmetric_start_key(
    master_key: bytes, key_length: int, *, is_send: bool, is_server: bool
) -> bytes:
    """RFC 3079 3.4 GetAsymmetricStartKey: the send or receive start key of one side."""
    if key_length not in (8, 16):
        raise ValueError("MPPE start keys are 8 or 16 octets")
    magic = _MPPE_MAGIC3 if is_send == is_server else _MPPE_MAGIC2
    digest = hashlib.sha1(master_key + _SHS_PAD1 + magic + _SHS_PAD2).digest()
    return digest[:key_length]


@dataclass(slots=True, frozen=True)
class MsChapV2Failure:
    """The fields of a Failure message (RFC 2759 6); None where absent or unreadable."""

    error: int | None
    retry: bool
    challenge: bytes | None
    version: int | None
    message: str


_FIELD = re.compile(rb"([ERCV])=(\S*)")


def parse_failure(message: bytes) -> MsChapV2Failure:
    """Read ``E=eeeeeeeeee R=r C=cccc... V=vvvvvvvvvv M=<msg>``; lenient, never raises."""
    head, sep, text = message.partition(b"M=")
    fields = {m.group(1): m.group(2) for m in _FIELD.finditer(head)}

    def number(key: bytes) -> int | None:
        raw = fields.get(key, b"")
        return int(raw) if raw.isdigit() and len(raw) <= 10 else None

    challenge: bytes | None = None
    raw_c = fields.get(b"C", b"")
    if len(raw_c) == 32:
        try:
            challenge = bytes.fromhex(raw_c.decode("ascii"))
        except (ValueError, UnicodeDecodeError):
            challenge = None
    return MsChapV2Failure(
        error=number(b"E"),
        retry=fields.get(b"R") == b"1",
        challenge=challenge,
        version=number(b"V"),
        message=printable(text, 200) if sep else "",
    )


class MsChapV2Authenticator(ChapAuthenticator):
    """Checks an MS-CHAPv2 Response (server role); ``mppe_master_key`` after success."""

    method = "mschapv2"

    def __init__(
        self,
        *,
        credentials: Credentials,
        name: str = "pyl2tp",
        rechallenge_interval: float = 0.0,
        **common: Unpack[MachineArgs],
    ) -> None:
        super().__init__(
            credentials=credentials,
            name=name,
            rechallenge_interval=rechallenge_interval,
            **common,
        )
        self.mppe_master_key: bytes | None = None
        """RFC 3079 master key of the last successful exchange (for MPPE, later)."""

    def _value_ok(self, value: bytes) -> bool:
        return len(value) == RESPONSE_SIZE

    def _check_response(
        self, identifier: int, challenge: bytes, value: bytes, name: bytes, password: str
    ) -> bytes | None:
        peer_challenge, nt_response = value[:16], value[24:48]
        user = strip_domain(name)
        expected = generate_nt_response(challenge, peer_challenge, user, password)
        if not hmac.compare_digest(expected, nt_response):
            return None
        self.mppe_master_key = get_master_key(
            hash_nt_password_hash(nt_password_hash(password)), nt_response
        )
        # RFC 2759 5: "S=<auth_string> M=<message>".
        auth = generate_authenticator_response(
            password, nt_response, peer_challenge, challenge, user
        )
        return auth + b" M=Access granted"

    def _failure_message(self) -> bytes:
        # RFC 2759 6: E=691 (authentication failure), R=0 (no retry), a new challenge.
        challenge = self._random(16).hex().upper().encode("ascii")
        return b"E=691 R=0 C=" + challenge + b" V=3 M=Access denied"


class MsChapV2Peer(ChapPeer):
    """Answers MS-CHAPv2 Challenges and verifies the server's Success (client role)."""

    method = "mschapv2"

    def __init__(
        self,
        *,
        user: str,
        password: str,
        **common: Unpack[MachineArgs],
    ) -> None:
        super().__init__(
            user=user,
            password=password,
            **common,
        )
        self._expected = b""
        self._pending_key = b""
        self.mppe_master_key: bytes | None = None
        """RFC 3079 master key once the server's Success checked out."""

    def _response_value(self, identifier: int, challenge: bytes, name: bytes) -> bytes | None:
        if len(challenge) != 16:  # RFC 2759 3: the Challenge Value is 16 octets
            return None
        peer_challenge = self._random(16)
        user = strip_domain(self._name)
        nt_response = generate_nt_response(challenge, peer_challenge, user, self._password)
        self._expected = generate_authenticator_response(
            self._password, nt_response, peer_challenge, challenge, user
        )
        self._pending_key = get_master_key(
            hash_nt_password_hash(nt_password_hash(self._password)), nt_response
        )
        # Flags (the last octet) and Reserved are zero (RFC 2759 4).
        return peer_challenge + bytes(8) + nt_response + b"\x00"

    def _check_success(self, identifier: int, message: bytes) -> str | None:
        if not re.match(rb"S=[0-9A-Fa-f]{40}(?: |$)", message):
            return "MS-CHAPv2 Success without an authenticator response"
        # RFC 2759 8.8: a wrong authenticator response means the server is not who it
        # claims to be (it does not know the password), so the peer must hang up.
        if not hmac.compare_digest(self._expected, message[:42].upper()):
            return "MS-CHAPv2 authenticator response is wrong: the server is not genuine"
        self.mppe_master_key = self._pending_key
        return None

    def _success_text(self, message: bytes) -> str:
        _, _, text = message.partition(b"M=")
        return f"mschapv2 Success: {printable(text)}" if text else "mschapv2 Success"

    def _failure_reason(self, message: bytes) -> str:
        failure = parse_failure(message)
        what = ERROR_TEXT.get(failure.error or 0, "error")
        code = f"E={failure.error} " if failure.error is not None else ""
        text = f": {failure.message}" if failure.message else ""
        return f"mschapv2 Failure {code}({what}){text}"
