"""CHAP with MD5 (RFC 1994), both roles, sans-I/O; also the base of MS-CHAPv2.

Theory of operation. The authenticator sends a Challenge (a fresh random Value and our
name) and repeats it every ``restart_timer`` seconds until a Response comes or
``max_attempts`` Challenges went unanswered. RFC 1994 4.1 requires a new Identifier and a
new Value for every Challenge sent, retransmissions included, so only a Response to the
newest Challenge counts. It answers with Success or Failure and repeats that same answer
for a repeated Response with the same Identifier (RFC 1994 4.1 implementation note: a
Success may be lost). With ``rechallenge_interval > 0`` it challenges again that long after
each success (RFC 1994 4.1: "at any time during the Network-Layer Protocol phase"); a
failed or unanswered re-challenge, or one answered under another name, sets the result
to a failure.

The peer answers every Challenge (also later re-challenges) and, as the Success may be
lost, repeats its Response every ``restart_timer`` seconds until Success or Failure comes
(the authenticator must allow that), failing after ``max_attempts``. Before the first
Challenge it waits ``restart_timer * max_attempts`` seconds at most.

Subclasses (MS-CHAPv2) change the Value computation and the Success/Failure texts
through the ``_check_response``/``_failure_message`` and
``_response_value``/``_check_success``/``_failure_reason`` hooks.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum
from typing import Unpack

from pyl2tp.errors import ParseError

from .base import AuthResult, Credentials, Machine, MachineArgs, printable
from .packets import (
    AuthProtocol,
    ChapCode,
    decode_chap_value,
    decode_packet,
    encode_chap_message,
    encode_chap_value,
)

__all__ = ["ChapAuthenticator", "ChapPeer", "chap_md5_response"]

CHALLENGE_SIZE = 16
SUCCESS_MESSAGE = b"Access granted"
FAILURE_MESSAGE = b"Access denied"


def chap_md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 2: MD5 over Identifier, secret and Challenge Value."""
    return hashlib.md5(bytes((identifier & 0xFF,)) + secret + challenge).digest()


class _AuthState(Enum):
    IDLE = "idle"
    CHALLENGED = "challenged"  # a Challenge is out, no valid Response yet
    ANSWERED = "answered"  # Success or Failure sent for the current Identifier


class ChapAuthenticator(Machine):
    """Challenges the peer and checks its Response (server role), CHAP-MD5."""

    protocol = AuthProtocol.CHAP
    method = "chap"

    def __init__(
        self,
        *,
        credentials: Credentials,
        name: str = "pyl2tp",
        rechallenge_interval: float = 0.0,
        **common: Unpack[MachineArgs],
    ) -> None:
        super().__init__(**common)
        self._credentials = credentials
        self.name = name
        self._name = name.encode("utf-8")
        self.rechallenge_interval = rechallenge_interval
        self._state = _AuthState.IDLE
        self._identifier: int | None = None
        self._challenge = b""
        self._transmits = 0
        self._reply: bytes | None = None
        self._user: str | None = None  # set by the first success
        self.challenges_sent = 0
        """Challenge packets sent in all, retransmissions and re-challenges included."""

    # --- hooks for MS-CHAPv2 ---

    def _check_response(
        self, identifier: int, challenge: bytes, value: bytes, name: bytes, password: str
    ) -> bytes | None:
        """The Success message if ``value`` proves ``password``, else None."""
        expected = chap_md5_response(identifier, password.encode("utf-8"), challenge)
        return SUCCESS_MESSAGE if hmac.compare_digest(expected, value) else None

    def _failure_message(self) -> bytes:
        return FAILURE_MESSAGE

    def _value_ok(self, value: bytes) -> bool:
        return len(value) == 16  # RFC 1994 2: an MD5 digest

    # --- the machine ---

    def start(self, now: float) -> None:
        """Send the first Challenge."""
        self._begin()
        self._challenge_round(now)

    def _challenge_round(self, now: float) -> None:
        self._transmits = 0
        self._send_challenge(now)

    def _send_challenge(self, now: float) -> None:
        # RFC 1994 4.1: Identifier and Value MUST change each time a Challenge is sent.
        self._identifier = self._next_identifier(self._identifier)
        self._challenge = self._random(CHALLENGE_SIZE)
        self._reply = None
        self._state = _AuthState.CHALLENGED
        self._transmits += 1
        self.challenges_sent += 1
        self._send(
            encode_chap_value(ChapCode.CHALLENGE, self._identifier, self._challenge, self._name)
        )
        self._deadline = now + self.restart_timer

    def receive(self, payload: bytes, now: float) -> None:
        """Handle a Response; anything else is counted and dropped."""
        if self._state is _AuthState.IDLE:
            self._drop("not started")
            return
        try:
            packet = decode_packet(payload)
            if packet.code != ChapCode.RESPONSE:
                self._drop(f"unexpected code {packet.code}")
                return
            value, name = decode_chap_value(packet.data)
        except ParseError:
            self._drop("malformed")
            return
        if packet.identifier != self._identifier:
            self._drop("stale identifier")
            return
        if self._state is _AuthState.ANSWERED:
            # RFC 1994 4.1: a repeated Response gets the same reply code again.
            if self._reply is not None:
                self._send(self._reply)
            self.drops["repeated response"] += 1
            return
        self._answer(packet.identifier, value, name, now)

    def _answer(self, identifier: int, value: bytes, name: bytes, now: float) -> None:
        user = name.decode("utf-8", "replace")
        shown = printable(name)
        success: bytes | None = None
        password = self._credentials(user)
        if password is None:
            reason = f"unknown user {shown}"
        elif not self._value_ok(value):
            reason = f"malformed {self.method} Response from {shown}"
        else:
            success = self._check_response(identifier, self._challenge, value, name, password)
            reason = f"bad password for {shown}"
        if success is not None and self._user is not None and user != self._user:
            success = None
            reason = f"re-challenge answered as {shown}, not {printable(self._user.encode())}"
        code = ChapCode.SUCCESS if success is not None else ChapCode.FAILURE
        message = success if success is not None else self._failure_message()
        self._reply = encode_chap_message(code, identifier, message)
        self._state = _AuthState.ANSWERED
        self._send(self._reply)
        if success is None:
            self._deadline = None
            self._decide(AuthResult(False, user, reason))
            return
        first = self._user is None
        self._user = user
        if self.rechallenge_interval > 0:
            self._deadline = now + self.rechallenge_interval
        else:
            self._deadline = None
        if first or self.result is None or not self.result.success:
            self._decide(AuthResult(True, user, f"{self.method} login ok for {shown}"))
        else:
            self._log.debug("%s: re-challenge passed for %s", self.method, shown)

    def handle_timer(self, now: float) -> None:
        """Retransmit the Challenge, fail after ``max_attempts``, or re-challenge."""
        if self._deadline is None or now < self._deadline:
            return
        if self._state is _AuthState.ANSWERED:
            self._challenge_round(now)  # periodic re-challenge (RFC 1994 4.1)
            return
        if self._transmits >= self.max_attempts:
            self._deadline = None
            user = self._user or ""
            self._decide(
                AuthResult(
                    False, user, f"no Response to {self._transmits} {self.method} Challenges"
                )
            )
            self._state = _AuthState.ANSWERED
            self._reply = None
            return
        self._send_challenge(now)


class _PeerState(Enum):
    IDLE = "idle"
    WAITING = "waiting"  # for a Challenge
    RESPONDED = "responded"  # Response sent, waiting for Success/Failure
    DONE = "done"


class ChapPeer(Machine):
    """Answers Challenges with our name and proof of the password (client role), CHAP-MD5."""

    protocol = AuthProtocol.CHAP
    method = "chap"

    def __init__(
        self,
        *,
        user: str,
        password: str,
        **common: Unpack[MachineArgs],
    ) -> None:
        super().__init__(**common)
        self.user = user
        self._name = user.encode("utf-8")
        self._password = password
        self._state = _PeerState.IDLE
        self._identifier: int | None = None
        self._challenge = b""
        self._response: bytes | None = None
        self._transmits = 0
        self.responses_sent = 0
        """Response packets sent in all, repeats included."""

    # --- hooks for MS-CHAPv2 ---

    def _response_value(self, identifier: int, challenge: bytes, name: bytes) -> bytes | None:
        """The Response Value for a Challenge, or None to drop the Challenge."""
        return chap_md5_response(identifier, self._password.encode("utf-8"), challenge)

    def _check_success(self, identifier: int, message: bytes) -> str | None:
        """None if the Success is acceptable, else why not."""
        return None

    def _failure_reason(self, message: bytes) -> str:
        return f"{self.method} Failure: {printable(message)}"

    def _success_text(self, message: bytes) -> str:
        return f"{self.method} Success: {printable(message)}"

    # --- the machine ---

    def start(self, now: float) -> None:
        """Wait for the authenticator's Challenge."""
        self._begin()
        self._state = _PeerState.WAITING
        self._deadline = now + self.restart_timer * self.max_attempts

    def receive(self, payload: bytes, now: float) -> None:
        """Handle a Challenge, Success or Failure."""
        if self._state is _PeerState.IDLE:
            self._drop("not started")
            return
        try:
            packet = decode_packet(payload)
            if packet.code == ChapCode.CHALLENGE:
                value, name = decode_chap_value(packet.data)
                self._on_challenge(packet.identifier, value, name, now)
            elif packet.code in (ChapCode.SUCCESS, ChapCode.FAILURE):
                self._on_reply(packet.code, packet.identifier, packet.data)
            else:
                self._drop(f"unexpected code {packet.code}")
        except ParseError:
            self._drop("malformed")

    def _on_challenge(self, identifier: int, value: bytes, name: bytes, now: float) -> None:
        if self.result is not None and not self.result.success:
            self._drop("after failure")
            return
        repeat = (
            self._response is not None
            and identifier == self._identifier
            and value == self._challenge
        )
        if not repeat:
            response = self._response_value(identifier, value, name)
            if response is None:
                self._drop("bad challenge")
                return
            self._identifier = identifier
            self._challenge = value
            self._response = encode_chap_value(ChapCode.RESPONSE, identifier, response, self._name)
            self._transmits = 0
        self._state = _PeerState.RESPONDED
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        if self._response is None:
            raise RuntimeError("no CHAP Response to transmit")
        self._transmits += 1
        self.responses_sent += 1
        self._send(self._response)
        self._deadline = now + self.restart_timer

    def _on_reply(self, code: int, identifier: int, message: bytes) -> None:
        if self._state is not _PeerState.RESPONDED:
            self._drop("reply without a Response")
            return
        if identifier != self._identifier:
            self._drop("stale identifier")
            return
        self._state = _PeerState.DONE
        self._deadline = None
        if code == ChapCode.FAILURE:
            self._decide(AuthResult(False, self.user, self._failure_reason(message)))
            return
        problem = self._check_success(identifier, message)
        if problem is not None:
            self._decide(AuthResult(False, self.user, problem))
        elif self.result is None:
            self._decide(AuthResult(True, self.user, self._success_text(message)))
        else:
            self._log.debug("%s: re-challenge passed", self.method)

    def handle_timer(self, now: float) -> None:
        """Fail if no Challenge came; repeat the Response until Success/Failure."""
        if self._deadline is None or now < self._deadline:
            return
        if self._state is _PeerState.WAITING:
            self._deadline = None
            self._state = _PeerState.DONE
            waited = self.restart_timer * self.max_attempts
            self._decide(
                AuthResult(False, self.user, f"no {self.method} Challenge within {waited:g} s")
            )
            return
        if self._state is not _PeerState.RESPONDED:
            self._deadline = None
            return
        if self._transmits >= self.max_attempts:
            self._deadline = None
            self._state = _PeerState.DONE
            self._decide(
                AuthResult(
                    False,
                    self.user,
                    f"no {self.method} Success or Failure after {self._transmits} Responses",
                )
            )
            return
        self._transmit(now)
