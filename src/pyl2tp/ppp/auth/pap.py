"""PAP, the Password Authentication Protocol (RFC 1334 section 2), both roles, sans-I/O.

Theory of operation. The peer sends Authenticate-Request (user name and clear-text
password) and repeats it every ``restart_timer`` seconds, with a new Identifier each time
(RFC 1334 2.2.1), until an Ack or Nak answers one of them or ``max_attempts`` requests went
unanswered. The authenticator decides on the first request it gets and answers every
later request with the same code (RFC 1334 2.2.1 implementation note), so a lost Ack costs
one retransmission. An authenticator that hears no request within
``restart_timer * max_attempts`` seconds fails.
"""

from __future__ import annotations

import hmac
from typing import Unpack

from pyl2tp.errors import ParseError

from .base import AuthResult, Credentials, Machine, MachineArgs, printable
from .packets import (
    AuthProtocol,
    PapCode,
    decode_packet,
    decode_pap_request,
    decode_pap_response,
    encode_pap_request,
    encode_pap_response,
)

__all__ = ["PapAuthenticator", "PapPeer"]

ACK_MESSAGE = b"Login ok"
NAK_MESSAGE = b"Authentication failed"


class PapAuthenticator(Machine):
    """Checks the peer's Authenticate-Request against ``credentials`` (server role)."""

    protocol = AuthProtocol.PAP
    method = "pap"

    def __init__(
        self,
        *,
        credentials: Credentials,
        **common: Unpack[MachineArgs],
    ) -> None:
        super().__init__(**common)
        self._credentials = credentials
        self._reply: tuple[PapCode, bytes] | None = None

    def start(self, now: float) -> None:
        """Wait for the peer's Authenticate-Request (RFC 1334 2.2.1)."""
        self._begin()
        self._deadline = now + self.restart_timer * self.max_attempts

    def receive(self, payload: bytes, now: float) -> None:
        """Handle one PAP packet from the peer; malformed ones are counted and dropped."""
        if not self._started:
            self._drop("not started")
            return
        try:
            packet = decode_packet(payload)
            if packet.code != PapCode.AUTHENTICATE_REQUEST:
                self._drop(f"unexpected code {packet.code}")
                return
            peer_id, password = decode_pap_request(packet.data)
        except ParseError:
            self._drop("malformed")
            return
        if self._reply is not None:
            # RFC 1334 2.2.1: a repeated request after the decision gets the same code.
            code, message = self._reply
            self._send(encode_pap_response(code, packet.identifier, message))
            self.drops["repeated request"] += 1
            return
        user = peer_id.decode("utf-8", "replace")
        expected = self._credentials(user)
        if expected is None:
            ok, reason = False, f"unknown user {printable(peer_id)}"
        elif hmac.compare_digest(expected.encode("utf-8"), password):
            ok, reason = True, f"PAP login ok for {printable(peer_id)}"
        else:
            ok, reason = False, f"bad password for {printable(peer_id)}"
        self._reply = (
            (PapCode.AUTHENTICATE_ACK, ACK_MESSAGE)
            if ok
            else (PapCode.AUTHENTICATE_NAK, NAK_MESSAGE)
        )
        self._send(encode_pap_response(self._reply[0], packet.identifier, self._reply[1]))
        self._deadline = None
        self._decide(AuthResult(ok, user, reason))

    def handle_timer(self, now: float) -> None:
        """Fail when no Authenticate-Request came in time."""
        if self._deadline is None or now < self._deadline:
            return
        self._deadline = None
        waited = self.restart_timer * self.max_attempts
        self._decide(AuthResult(False, "", f"no PAP Authenticate-Request within {waited:g} s"))


class PapPeer(Machine):
    """Sends our user name and password until acknowledged (client role)."""

    protocol = AuthProtocol.PAP
    method = "pap"

    def __init__(
        self,
        *,
        user: str,
        password: str,
        **common: Unpack[MachineArgs],
    ) -> None:
        super().__init__(**common)
        self.user = user
        self._peer_id = user.encode("utf-8")
        self._password = password.encode("utf-8")
        if len(self._peer_id) > 255 or len(self._password) > 255:
            raise ValueError("PAP user name and password are limited to 255 bytes each")
        self._identifier: int | None = None
        self._sent_ids: set[int] = set()
        self._transmits = 0

    def start(self, now: float) -> None:
        """Send the first Authenticate-Request."""
        self._begin()
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        # RFC 1334 2.2.1: the Identifier MUST change each time a request is sent.
        self._identifier = self._next_identifier(self._identifier)
        self._sent_ids.add(self._identifier)
        self._transmits += 1
        self._send(encode_pap_request(self._identifier, self._peer_id, self._password))
        self._deadline = now + self.restart_timer

    def receive(self, payload: bytes, now: float) -> None:
        """Handle an Authenticate-Ack or -Nak."""
        if not self._started or self.result is not None:
            self._drop("after decision" if self.result is not None else "not started")
            return
        try:
            packet = decode_packet(payload)
            if packet.code not in (PapCode.AUTHENTICATE_ACK, PapCode.AUTHENTICATE_NAK):
                self._drop(f"unexpected code {packet.code}")
                return
            message = decode_pap_response(packet.data)
        except ParseError:
            self._drop("malformed")
            return
        if packet.identifier not in self._sent_ids:
            self._drop("stale identifier")
            return
        self._deadline = None
        text = printable(message)
        if packet.code == PapCode.AUTHENTICATE_ACK:
            self._decide(AuthResult(True, self.user, f"PAP Authenticate-Ack: {text}"))
        else:
            self._decide(AuthResult(False, self.user, f"PAP Authenticate-Nak: {text}"))

    def handle_timer(self, now: float) -> None:
        """Retransmit the request, or fail after ``max_attempts`` unanswered ones."""
        if self._deadline is None or now < self._deadline:
            return
        if self._transmits >= self.max_attempts:
            self._deadline = None
            self._decide(
                AuthResult(
                    False,
                    self.user,
                    f"no answer to {self._transmits} PAP Authenticate-Requests",
                )
            )
            return
        self._transmit(now)
