"""L2TP sessions (calls) inside a tunnel: RFC 2661 5.2, 6.6-6.14 and 7.4/7.5.

A session is driven by its tunnel, which routes the session's control messages
here and sends what the session asks for through the tunnel's reliable channel.
Data frames never pass through this module's state machine: the endpoint hands
them to the session's `Link` directly.
"""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

from pyl2tp.l2tp.events import (
    CallErrorsReported,
    LinkInfoSet,
    SessionClosed,
    SessionEstablished,
)
from pyl2tp.link import Link, NullLink
from pyl2tp.wire.l2tp import (
    AVP,
    ACCMValue,
    AVPType,
    CallErrors,
    CDNResult,
    ControlMessage,
    MessageType,
    ResultCodeValue,
    avp,
    data_header,
    encode_data,
)

if TYPE_CHECKING:
    from pyl2tp.l2tp.tunnel import Tunnel

log = logging.getLogger("pyl2tp.l2tp")

#: RFC 2661 4.4.5 Framing Type / Capabilities bit for synchronous framing.
FRAMING_SYNC = 1
#: RFC 2661 4.4.5 Bearer Type bit for a digital call.
BEARER_DIGITAL = 1
#: A Tx Connect Speed to report for a virtual call (bits per second).
CONNECT_SPEED = 100_000_000


class SessionState(enum.Enum):
    """Call states of RFC 2661 7.4 (LAC) and 7.5 (LNS), merged."""

    WAIT_REPLY = "wait-reply"  # LAC sent ICRQ / LNS sent OCRQ
    WAIT_CONNECT = "wait-connect"  # LNS sent ICRP / LAC sent OCRP (about to send OCCN)
    ESTABLISHED = "established"
    CLOSED = "closed"


class Session:
    """One call: its ids, state, counters and the link that carries its frames."""

    __slots__ = (
        "_data_header",
        "_data_ns",
        "accm",
        "address",
        "call_errors",
        "calling_number",
        "close_cause",
        "created",
        "established_at",
        "incoming",
        "link",
        "local_id",
        "peer_id",
        "rx_bytes",
        "rx_packets",
        "sequencing",
        "serial",
        "state",
        "tunnel",
        "tx_bytes",
        "tx_packets",
        "user",
    )

    def __init__(
        self, tunnel: Tunnel, local_id: int, *, incoming: bool, serial: int, now: float
    ) -> None:
        self.tunnel = tunnel
        self.local_id = local_id
        self.peer_id = 0
        self.incoming = incoming
        self.serial = serial
        self.state = SessionState.WAIT_REPLY
        self.created = now
        self.established_at: float | None = None
        self.link: Link = NullLink()
        self.rx_bytes = 0
        self.tx_bytes = 0
        self.rx_packets = 0
        self.tx_packets = 0
        self.sequencing = False
        self.user: str | None = None
        self.address: str | None = None
        self.calling_number: str | None = None
        self.accm: ACCMValue | None = None
        self.call_errors: CallErrors | None = None
        #: who ended the call: "peer", "local", "timeout"... ("" while it runs)
        self.close_cause = ""
        self._data_header = b""
        self._data_ns = 0

    def __repr__(self) -> str:
        return f"<Session {self.tunnel.local_id}/{self.local_id} {self.state.value}>"

    @property
    def label(self) -> str:
        """`tunnel T session S peer ip:port`, for log lines."""
        return f"{self.tunnel.label} session {self.local_id}"

    # -- data path ---------------------------------------------------------------

    def send_frame(self, frame: bytes) -> None:
        """Send one PPP frame to the peer in an L2TP data message (RFC 2661 5.3)."""
        if self.state is not SessionState.ESTABLISHED:
            return
        if self.sequencing:
            # RFC 2661 5.4: Ns on every data message when the peer asked for it.
            data = encode_data(self.tunnel.peer_id, self.peer_id, frame, ns=self._data_ns, nr=0)
            self._data_ns = (self._data_ns + 1) & 0xFFFF
        else:
            data = self._data_header + frame
        self.tx_packets += 1
        self.tx_bytes += len(frame)
        self.tunnel.transmit_data(data)

    def frame_received(self, frame: bytes, now: float) -> None:
        """A data message's payload for this session."""
        self.rx_packets += 1
        self.rx_bytes += len(frame)
        self.link.frame_received(frame, now)

    # -- control path ------------------------------------------------------------

    def start_incoming(self, now: float) -> None:
        """LAC: place an incoming call towards the LNS (ICRQ, RFC 2661 5.2.1)."""
        self.tunnel.send_session_message(
            MessageType.ICRQ,
            0,
            [
                avp(AVPType.ASSIGNED_SESSION_ID, self.local_id),
                avp(AVPType.CALL_SERIAL_NUMBER, self.serial),
                avp(AVPType.BEARER_TYPE, BEARER_DIGITAL),
            ],
            now,
        )

    def start_outgoing(self, called_number: str, now: float) -> None:
        """LNS: ask the LAC to place an outgoing call (OCRQ, RFC 2661 5.2.2)."""
        self.tunnel.send_session_message(
            MessageType.OCRQ,
            0,
            [
                avp(AVPType.ASSIGNED_SESSION_ID, self.local_id),
                avp(AVPType.CALL_SERIAL_NUMBER, self.serial),
                avp(AVPType.MINIMUM_BPS, 0),
                avp(AVPType.MAXIMUM_BPS, CONNECT_SPEED),
                avp(AVPType.BEARER_TYPE, BEARER_DIGITAL),
                avp(AVPType.FRAMING_TYPE, FRAMING_SYNC),
                avp(AVPType.CALLED_NUMBER, called_number),
            ],
            now,
        )

    def on_icrq(self, msg: ControlMessage, now: float) -> None:
        """LNS: answer an ICRQ with ICRP."""
        self.peer_id = _int(msg, AVPType.ASSIGNED_SESSION_ID)
        calling = msg.get(AVPType.CALLING_NUMBER)
        self.calling_number = calling if isinstance(calling, str) else None
        self.state = SessionState.WAIT_CONNECT
        self._send(MessageType.ICRP, [avp(AVPType.ASSIGNED_SESSION_ID, self.local_id)], now)

    def on_ocrq(self, msg: ControlMessage, now: float) -> None:
        """LAC: accept an OCRQ. A voluntary LAC has no line to dial, so OCRP and OCCN go at once."""
        self.peer_id = _int(msg, AVPType.ASSIGNED_SESSION_ID)
        self._send(MessageType.OCRP, [avp(AVPType.ASSIGNED_SESSION_ID, self.local_id)], now)
        self._send(MessageType.OCCN, _connected_avps(), now)
        self._establish(now)

    def handle(self, msg: ControlMessage, now: float) -> None:
        """A control message addressed to this session."""
        mt = msg.msg_type
        if mt == MessageType.CDN:
            result = msg.get(AVPType.RESULT_CODE)
            reason = describe_result(result)
            log.info("%s: CDN received: %s", self.label, reason)
            self._closed("peer", reason)
        elif mt == MessageType.ICRP and self.state is SessionState.WAIT_REPLY and not self.incoming:
            self.peer_id = _int(msg, AVPType.ASSIGNED_SESSION_ID)
            self._send(MessageType.ICCN, _connected_avps(), now)
            self._establish(now)
        elif mt == MessageType.ICCN and self.state is SessionState.WAIT_CONNECT and self.incoming:
            self.sequencing = msg.find(AVPType.SEQUENCING_REQUIRED) is not None
            self._establish(now)
        elif mt == MessageType.OCRP and self.state is SessionState.WAIT_REPLY and self.incoming:
            self.peer_id = _int(msg, AVPType.ASSIGNED_SESSION_ID)
            self.state = SessionState.WAIT_CONNECT
        elif mt == MessageType.OCCN and self.state is SessionState.WAIT_CONNECT and self.incoming:
            self.sequencing = msg.find(AVPType.SEQUENCING_REQUIRED) is not None
            self._establish(now)
        elif mt == MessageType.WEN:
            errors = msg.get(AVPType.CALL_ERRORS)
            if isinstance(errors, CallErrors):
                self.call_errors = errors
                self.tunnel.emit(CallErrorsReported(self, errors))
        elif mt == MessageType.SLI:
            accm = msg.get(AVPType.ACCM)
            if isinstance(accm, ACCMValue):
                self.accm = accm
                self.tunnel.emit(LinkInfoSet(self, accm))
        else:
            # RFC 2661 7.4/7.5: an unexpected call message clears the call.
            name = message_name(mt)
            log.warning("%s: %s not expected in state %s", self.label, name, self.state.value)
            self.disconnect(
                now, CDNResult.GENERAL_ERROR, message=f"{name} unexpected in {self.state.value}"
            )

    def send_wen(self, errors: CallErrors, now: float) -> None:
        """LAC: report WAN errors (RFC 2661 6.13)."""
        self._send(MessageType.WEN, [avp(AVPType.CALL_ERRORS, errors)], now)

    def send_sli(self, accm: ACCMValue, now: float) -> None:
        """LNS: set the LAC's ACCM (RFC 2661 6.14)."""
        self._send(MessageType.SLI, [avp(AVPType.ACCM, accm)], now)

    def disconnect(
        self,
        now: float,
        result: int = CDNResult.ADMINISTRATIVE,
        error: int | None = None,
        message: str | None = None,
    ) -> None:
        """Clear the call with a CDN (RFC 2661 5.6)."""
        if self.state is SessionState.CLOSED:
            return
        self._send(
            MessageType.CDN,
            [
                avp(AVPType.RESULT_CODE, ResultCodeValue(result, error, message)),
                avp(AVPType.ASSIGNED_SESSION_ID, self.local_id),
            ],
            now,
        )
        self._closed("local", describe_result(ResultCodeValue(result, error, message)))

    def drop(self, cause: str, reason: str) -> None:
        """The tunnel went away: clear the call without a CDN (RFC 2661 6.4)."""
        if self.state is not SessionState.CLOSED:
            self._closed(cause, reason)

    # -- internals ---------------------------------------------------------------

    def _send(self, mt: MessageType, avps: list[AVP], now: float) -> None:
        self.tunnel.send_session_message(mt, self.peer_id, avps, now)

    def _establish(self, now: float) -> None:
        self.state = SessionState.ESTABLISHED
        self.established_at = now
        self._data_header = data_header(self.tunnel.peer_id, self.peer_id)
        log.info("%s: established (peer session %d)", self.label, self.peer_id)
        self.tunnel.emit(SessionEstablished(self))
        self.link.started(now)

    def _closed(self, cause: str, reason: str) -> None:
        self.state = SessionState.CLOSED
        self.close_cause = cause
        self.tunnel.forget_session(self)
        self.link.session_closed()
        self.tunnel.emit(SessionClosed(self, cause, reason))


def _connected_avps() -> list[AVP]:
    return [
        avp(AVPType.TX_CONNECT_SPEED, CONNECT_SPEED),
        avp(AVPType.FRAMING_TYPE, FRAMING_SYNC),
    ]


def _int(msg: ControlMessage, avp_type: AVPType) -> int:
    value = msg.get(avp_type)
    if not isinstance(value, int):
        raise MissingAVP(avp_type)
    return value


class MissingAVP(Exception):
    """A required AVP is absent: the caller answers with the protocol's error."""

    def __init__(self, avp_type: AVPType) -> None:
        self.avp_type = avp_type
        super().__init__(f"missing {avp_type.name} AVP")


def message_name(mt: int | None) -> str:
    try:
        return MessageType(mt).name if mt is not None else "ZLB"
    except ValueError:
        return f"message type {mt}"


def describe_result(result: object) -> str:
    if not isinstance(result, ResultCodeValue):
        return "no result code"
    text = f"result {result.result}"
    if result.error is not None:
        text += f" error {result.error}"
    if result.message:
        text += f" ({result.message})"
    return text
