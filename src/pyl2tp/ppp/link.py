"""A PPP link inside one L2TP session: the phases of RFC 1661 3.2.

    Dead -> Establish (LCP) -> Authenticate -> Network (IPCP, IPv6CP) -> Terminate

`PPPLink` implements the session's `Link` seam. It is sans-I/O: frames come in
through `frame_received`, go out through `session.send_frame`; IP packets leave
through `ip_sink` and enter through `send_ip`. What the shell must act on (an
address to route, a link that went down) is emitted as events on the tunnel.

CDN result codes when PPP ends a call (RFC 2661 4.4.2; docs/ppp.md):
- the peer's LCP Terminate-Request (the user hung up): 1, lost carrier;
- LCP echo failure (the peer went silent): 1, with "LCP echo timeout";
- authentication failed: 2 general error, "authentication failed";
- no address left in the pool: 4 temporary lack of resources;
- negotiation failed (LCP/IPCP never converged, loopback): 2;
- an administrator's disconnect: 3 administrative (sent by the L2TP layer).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from typing import TYPE_CHECKING, Any

from pyl2tp.errors import ParseError
from pyl2tp.l2tp.events import Event
from pyl2tp.ppp.auth import (
    AUTH_OPTION,
    Authenticator,
    AuthPeer,
    Credentials,
    make_authenticator,
    make_peer,
    method_of,
)
from pyl2tp.ppp.fsm import FSMConfig, NegotiationFSM, State
from pyl2tp.ppp.ipcp import IPCP, IPCPConfig
from pyl2tp.ppp.ipv6cp import IPv6CP, IPv6CPConfig
from pyl2tp.ppp.ipv6nd import (
    ROUTER_ADVERTISEMENT,
    ROUTER_SOLICITATION,
    icmp_type,
    link_local,
    parse_router_advertisement,
    router_advertisement,
    router_solicitation,
)
from pyl2tp.ppp.lcp import LCP, LCPConfig
from pyl2tp.wire.l2tp import CDNResult
from pyl2tp.wire.ppp import PPPProtocol, decode_frame, encode_frame

if TYPE_CHECKING:
    from pyl2tp.l2tp.session import Session

log = logging.getLogger("pyl2tp.ppp")

RandomBytes = Callable[[int], bytes]


class Phase(enum.Enum):
    DEAD = "dead"
    ESTABLISH = "establish"
    AUTHENTICATE = "authenticate"
    NETWORK = "network"
    TERMINATE = "terminate"


@dataclass(slots=True)
class PPPSettings:
    """What one side of the PPP link does; built from the server or client config."""

    server: bool
    random_bytes: RandomBytes
    mru: int = 1400
    fsm: FSMConfig = field(default_factory=FSMConfig)
    echo_interval: float = 30.0
    echo_failure: int = 4
    # -- authenticator (server) --
    auth_methods: list[str] = field(default_factory=lambda: ["mschapv2", "chap", "pap"])
    credentials: Credentials | None = None
    hostname: str = "pyl2tp"
    rechallenge_interval: float = 0.0
    dns: list[IPv4Address] = field(default_factory=list)
    local_v4: IPv4Address | None = None
    #: user -> address for this session, or None when the pool is exhausted
    allocate_v4: Callable[[str], IPv4Address | None] | None = None
    release_v4: Callable[[IPv4Address], None] | None = None
    allocate_v6: Callable[[str], IPv6Network | None] | None = None
    release_v6: Callable[[IPv6Network], None] | None = None
    # -- peer (client) --
    user: str = ""
    password: str = ""
    accept_auth: list[str] = field(default_factory=lambda: ["mschapv2", "chap", "pap"])
    request_dns: bool = True
    ipv6: bool = False


# -- events for the shell ----------------------------------------------------------------


@dataclass(slots=True)
class PPPAuthenticated(Event):
    session: Session
    user: str


@dataclass(slots=True)
class PPPNetworkUp(Event):
    """IPCP opened: route `peer` to this session (server), or configure `local` (client)."""

    session: Session
    link: PPPLink
    local: IPv4Address
    peer: IPv4Address
    dns: list[IPv4Address]


@dataclass(slots=True)
class PPPIPv6Up(Event):
    """IPv6CP opened (server: with the session's prefix)."""

    session: Session
    link: PPPLink
    prefix: IPv6Network | None


@dataclass(slots=True)
class PPPDown(Event):
    """The link ended: undo routes and addresses."""

    session: Session
    link: PPPLink
    reason: str
    address: IPv4Address | None = None
    prefix: IPv6Network | None = None


class _SessionLog(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every line with the session it is about (DESIGN.md: logs name the session)."""

    def __init__(self, logger: logging.Logger, session: Session) -> None:
        super().__init__(logger, {})
        self._session = session

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        return f"{self._session.label}: {msg}", kwargs


class _Layer:
    """FSM events of one protocol, forwarded to the link (RFC 1661 4.4 tlu/tld/tls/tlf)."""

    __slots__ = ("_link", "_name")

    def __init__(self, link: PPPLink, name: str) -> None:
        self._link = link
        self._name = name

    def this_layer_up(self, fsm: NegotiationFSM) -> None:
        self._link._layer_up(self._name)

    def this_layer_down(self, fsm: NegotiationFSM) -> None:
        self._link._layer_down(self._name)

    def this_layer_started(self, fsm: NegotiationFSM) -> None:
        return None

    def this_layer_finished(self, fsm: NegotiationFSM) -> None:
        self._link._layer_finished(self._name, fsm.failure_reason)


class PPPLink:
    """PPP over one L2TP session, as authenticator (server) or peer (client)."""

    def __init__(self, session: Session, settings: PPPSettings) -> None:
        self.session = session
        self.settings = settings
        self.phase = Phase.DEAD
        self.user: str | None = None
        #: authentication succeeded (or none was asked for)
        self.authenticated = False
        self._ended_by_peer_in_auth = False
        self.local_v4: IPv4Address | None = None
        self.peer_v4: IPv4Address | None = None
        self.dns: list[IPv4Address] = []
        self.prefix_v6: IPv6Network | None = None
        self.local_ll: IPv6Address | None = None
        self.ip_sink: Callable[[bytes], None] | None = None
        self.dropped = 0
        self.close_reason = ""
        self._cdn: tuple[int, str] | None = None
        self._auth: Authenticator | AuthPeer | None = None
        self.log = _SessionLog(log, session)
        s = settings
        offers = [AUTH_OPTION[m] for m in s.auth_methods] if s.server else []
        accepts = [AUTH_OPTION[m] for m in s.accept_auth] if not s.server else []
        self.lcp = LCP(
            LCPConfig(
                mru=s.mru,
                auth=offers,
                accept_auth=accepts,
                echo_interval=s.echo_interval,
                echo_failure=s.echo_failure,
                fsm=s.fsm,
            ),
            _Layer(self, "LCP"),
            self._sender(PPPProtocol.LCP),
            s.random_bytes,
            logger=self.log,
        )
        self.ipcp: IPCP | None = None
        self.ipv6cp: IPv6CP | None = None
        self._clock = 0.0  # the latest `now` seen: FSM callbacks carry none
        self._ipv4_header = b"\xff\x03\x00\x21"
        self._ipv6_header = b"\xff\x03\x00\x57"

    @property
    def label(self) -> str:
        return self.session.label

    @property
    def auth_failed(self) -> bool:
        """The peer refused authentication: a failure result, or it hung up mid-way.

        SoftEther answers a bad password with LCP Terminate-Request, l2tpns with a CDN:
        both count when they come from the peer while authentication is running.
        """
        auth = self._auth
        if auth is None or self.authenticated:
            return False
        if auth.result is not None and not auth.result.success:
            return True
        return self._ended_by_peer_in_auth

    # -- the Link seam ---------------------------------------------------------------------

    def started(self, now: float) -> None:
        self._clock = now
        self.phase = Phase.ESTABLISH
        self.lcp.fsm.up(now)
        self.lcp.fsm.open(now)

    def frame_received(self, frame: bytes, now: float) -> None:
        # Fast path: an uncompressed IP frame once the network phase is up.
        sink = self.ip_sink
        if sink is not None:
            head = frame[:4]
            if head == self._ipv4_header:
                sink(frame[4:])
                return
            if head == self._ipv6_header:
                packet = frame[4:]
                if packet[6:7] != b"\x3a" or not self._neighbour_discovery(packet, now):
                    sink(packet)
                return
        self._clock = now
        try:
            protocol, payload = decode_frame(frame)
        except ParseError:
            self.dropped += 1
            return
        if protocol == PPPProtocol.IPV6 and self._neighbour_discovery(payload, now):
            return
        if protocol == PPPProtocol.IPV4 or protocol == PPPProtocol.IPV6:
            if sink is not None:
                sink(payload)
            else:
                self.dropped += 1  # RFC 1661 3.4: not in the network phase yet
            return
        self._control(protocol, payload, now)
        self.session.tunnel.on_activity()

    def get_timer(self) -> float | None:
        times = [self.lcp.get_timer()]
        if self._auth is not None and self.phase is Phase.AUTHENTICATE:
            times.append(self._auth.get_timer())
        elif self._auth is not None and self.settings.server:
            times.append(self._auth.get_timer())  # CHAP re-challenge
        if self.ipcp is not None:
            times.append(self.ipcp.fsm.get_timer())
        if self.ipv6cp is not None:
            times.append(self.ipv6cp.fsm.get_timer())
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def handle_timer(self, now: float) -> None:
        self._clock = now
        self.lcp.handle_timer(now)
        auth = self._auth
        if auth is not None:
            when = auth.get_timer()
            if when is not None and when <= now:
                auth.handle_timer(now)
                self._check_auth(now)
        for cp in (self.ipcp, self.ipv6cp):
            if cp is not None:
                when = cp.fsm.get_timer()
                if when is not None and when <= now:
                    cp.fsm.handle_timer(now)

    def session_closed(self) -> None:
        if self.phase is Phase.AUTHENTICATE and self.session.close_cause == "peer":
            self._ended_by_peer_in_auth = True
        if self.phase is not Phase.DEAD:
            self.phase = Phase.DEAD
            self.ip_sink = None
            event = PPPDown(
                self.session,
                self,
                self.close_reason or "session closed",
                self.peer_v4 if self.settings.server else self.local_v4,
                self.prefix_v6,
            )
            self._release()
            self.session.tunnel.emit(event)

    # -- IP ------------------------------------------------------------------------------

    def send_ip(self, packet: bytes) -> None:
        """An IPv4 or IPv6 packet to the peer (from the TUN)."""
        if self.ip_sink is None:
            self.dropped += 1
            return
        version = packet[0] >> 4 if packet else 0
        if version == 4:
            self.session.send_frame(self._ipv4_header + packet)
        elif version == 6 and self.ipv6cp is not None and self.ipv6cp.fsm.state is State.OPENED:
            self.session.send_frame(self._ipv6_header + packet)
        else:
            self.dropped += 1

    def close(self, now: float, reason: str) -> None:
        """Terminate the link (LCP Terminate-Request); the call ends when LCP finishes."""
        self._clock = now
        self.close_reason = reason
        self._cdn = (CDNResult.ADMINISTRATIVE, reason)
        self.lcp.fsm.close(now, reason.encode())
        self.session.tunnel.on_activity()

    # -- control protocols -------------------------------------------------------------------

    def _control(self, protocol: int, payload: bytes, now: float) -> None:
        if protocol == PPPProtocol.LCP:
            self.lcp.fsm.receive(payload, now)
            return
        lcp_open = self.lcp.fsm.state is State.OPENED
        if not lcp_open:
            # RFC 1661 3.4: non-LCP packets before LCP opens are silently discarded.
            self.dropped += 1
            return
        if protocol in (PPPProtocol.PAP, PPPProtocol.CHAP):
            if self._auth is not None and self._auth.protocol == protocol:
                self._auth.receive(payload, now)
                self._check_auth(now)
            else:
                self.dropped += 1
        elif protocol == PPPProtocol.IPCP:
            if self.ipcp is not None:
                self.ipcp.fsm.receive(payload, now)
            else:
                self.dropped += 1  # not in the network phase yet
        elif protocol == PPPProtocol.IPV6CP and self._ipv6_wanted():
            if self.ipv6cp is not None:
                self.ipv6cp.fsm.receive(payload, now)
            else:
                self.dropped += 1
        else:
            # RFC 1661 5.7: an unsupported protocol gets a Protocol-Reject.
            self.lcp.protocol_reject(protocol, payload, now)

    def _ipv6_wanted(self) -> bool:
        s = self.settings
        return s.allocate_v6 is not None if s.server else s.ipv6

    def _sender(self, protocol: int) -> Callable[[bytes], None]:
        def send(payload: bytes) -> None:
            self.session.send_frame(encode_frame(protocol, payload))

        return send

    # -- phase transitions ---------------------------------------------------------------------

    def _layer_up(self, name: str) -> None:
        now = self._now()
        if name == "LCP":
            self._start_auth(now)
        elif name == "IPCP":
            self._ipcp_up()
        elif name == "IPv6CP":
            self._ipv6cp_up()

    def _layer_down(self, name: str) -> None:
        if name == "LCP":
            self.ip_sink = None
            for cp in (self.ipcp, self.ipv6cp):
                if cp is not None:
                    cp.fsm.down(self._now())
        elif name == "IPCP":
            self.ip_sink = None

    def _layer_finished(self, name: str, reason: str | None) -> None:
        if name != "LCP":
            if self.phase is Phase.NETWORK and name == "IPCP":
                # RFC 1661 3.7: the last NCP closing may end the link.
                self._end(CDNResult.GENERAL_ERROR, f"IPCP: {reason or 'closed'}")
            return
        if self._cdn is not None:
            result, why = self._cdn
        elif reason and "echo" in reason:
            result, why = CDNResult.LOST_CARRIER, "LCP echo timeout"
        elif reason and "terminat" in reason.lower():
            if self.phase is Phase.AUTHENTICATE:
                self._ended_by_peer_in_auth = True
            result, why = CDNResult.LOST_CARRIER, f"peer ended PPP: {reason}"
        else:
            result, why = CDNResult.GENERAL_ERROR, f"LCP: {reason or 'finished'}"
        self._disconnect(result, why)

    def _start_auth(self, now: float) -> None:
        s = self.settings
        self.phase = Phase.AUTHENTICATE
        if s.server:
            option = self.lcp.auth_protocol_ours
            method = method_of(option) if option is not None else None
            if method is None:
                if s.auth_methods:
                    self._end(CDNResult.GENERAL_ERROR, "peer refused authentication")
                    return
                self._start_network(now)
                return
            assert s.credentials is not None
            self._auth = make_authenticator(
                method,
                credentials=s.credentials,
                send=self._sender(_auth_protocol(method)),
                random_bytes=s.random_bytes,
                name=s.hostname,
                rechallenge_interval=s.rechallenge_interval,
                logger=self.log,
            )
        else:
            option = self.lcp.auth_protocol_peer
            method = method_of(option) if option is not None else None
            if method is None:
                self._start_network(now)
                return
            self._auth = make_peer(
                method,
                user=s.user,
                password=s.password,
                send=self._sender(_auth_protocol(method)),
                random_bytes=s.random_bytes,
                logger=self.log,
            )
        log.info("%s: authentication by %s", self.label, method)
        self._auth.start(now)

    def _check_auth(self, now: float) -> None:
        auth = self._auth
        if auth is None or auth.result is None:
            return
        result = auth.result
        if not result.success:
            log.warning("%s: authentication failed: %s", self.label, result.message)
            self._end(CDNResult.GENERAL_ERROR, f"authentication failed: {result.message}")
            return
        if self.phase is Phase.AUTHENTICATE:
            self.authenticated = True
            self.user = result.user or self.settings.user
            self.session.user = self.user
            log.info("%s: authenticated as %r", self.label, self.user)
            self.session.tunnel.emit(PPPAuthenticated(self.session, self.user))
            self._start_network(now)

    def _start_network(self, now: float) -> None:
        s = self.settings
        self.phase = Phase.NETWORK
        if self._auth is None:
            self.authenticated = True  # nobody asked for authentication
        user = self.user or ""
        if s.server:
            peer = s.allocate_v4(user) if s.allocate_v4 is not None else None
            if peer is None or s.local_v4 is None:
                self._end(CDNResult.TEMPORARY_NO_RESOURCES, "no address available")
                return
            self.peer_v4 = peer
            self.local_v4 = s.local_v4
            ipcp_cfg = IPCPConfig(local=s.local_v4, peer=peer, dns=list(s.dns), fsm=s.fsm)
            if s.allocate_v6 is not None:
                self.prefix_v6 = s.allocate_v6(user)
        else:
            ipcp_cfg = IPCPConfig(local=None, peer=None, request_dns=s.request_dns, fsm=s.fsm)
        self.ipcp = IPCP(
            ipcp_cfg,
            _Layer(self, "IPCP"),
            self._sender(PPPProtocol.IPCP),
            s.random_bytes,
            logger=self.log,
        )
        self.ipcp.fsm.up(now)
        self.ipcp.fsm.open(now)
        if self._ipv6_wanted() and (not s.server or self.prefix_v6 is not None):
            self.ipv6cp = IPv6CP(
                IPv6CPConfig(interface_id=None, fsm=s.fsm),
                _Layer(self, "IPv6CP"),
                self._sender(PPPProtocol.IPV6CP),
                s.random_bytes,
                logger=self.log,
            )
            self.ipv6cp.fsm.up(now)
            self.ipv6cp.fsm.open(now)

    def _ipcp_up(self) -> None:
        ipcp = self.ipcp
        assert ipcp is not None
        if self.settings.server:
            assert self.local_v4 is not None and self.peer_v4 is not None
            self.session.address = str(self.peer_v4)
        else:
            self.local_v4 = ipcp.local_address
            self.peer_v4 = ipcp.peer_address
            self.dns = list(ipcp.dns)
            self.session.address = str(self.local_v4)
        if self.local_v4 is None or self.peer_v4 is None:
            self._end(CDNResult.GENERAL_ERROR, "IPCP finished without addresses")
            return
        log.info("%s: IPCP up: local %s peer %s", self.label, self.local_v4, self.peer_v4)
        self.session.tunnel.emit(
            PPPNetworkUp(self.session, self, self.local_v4, self.peer_v4, self.dns)
        )

    def _ipv6cp_up(self) -> None:
        ipv6cp = self.ipv6cp
        assert ipv6cp is not None
        self.local_ll = link_local(ipv6cp.local_id)
        if self.settings.server:
            log.info("%s: IPv6CP up, prefix %s", self.label, self.prefix_v6)
            self.session.tunnel.emit(PPPIPv6Up(self.session, self, self.prefix_v6))
            self._advertise()
        else:
            log.info("%s: IPv6CP up, soliciting a router", self.label)
            self.session.send_frame(self._ipv6_header + router_solicitation(self.local_ll))

    def _advertise(self) -> None:
        if self.prefix_v6 is not None and self.local_ll is not None:
            ra = router_advertisement(self.local_ll, self.prefix_v6, mtu=self.settings.mru)
            self.session.send_frame(self._ipv6_header + ra)

    def _neighbour_discovery(self, packet: bytes, now: float) -> bool:
        """Answer an RS (server) or take an RA's prefix (client); True if consumed."""
        kind = icmp_type(packet)
        if self.ipv6cp is None or self.ipv6cp.fsm.state is not State.OPENED:
            return kind is not None and kind in (ROUTER_SOLICITATION, ROUTER_ADVERTISEMENT)
        if kind == ROUTER_SOLICITATION and self.settings.server:
            self._advertise()
            return True
        if kind == ROUTER_ADVERTISEMENT and not self.settings.server:
            found = parse_router_advertisement(packet)
            if found is not None and found[1] != self.prefix_v6:
                self.prefix_v6 = found[1]
                log.info("%s: IPv6 prefix %s from %s", self.label, found[1], found[0])
                self.session.tunnel.emit(PPPIPv6Up(self.session, self, self.prefix_v6))
            return True
        return False

    def _end(self, result: int, why: str) -> None:
        """Terminate LCP (the peer learns why), then clear the call with `result`."""
        if self._cdn is None:
            self._cdn = (result, why)
        self.close_reason = why
        self.phase = Phase.TERMINATE
        self.ip_sink = None
        if self.lcp.fsm.state in (State.OPENED, State.REQ_SENT, State.ACK_RCVD, State.ACK_SENT):
            self.lcp.fsm.close(self._now(), why.encode()[:64])
        else:
            self._disconnect(result, why)

    def _disconnect(self, result: int, why: str) -> None:
        self.close_reason = self.close_reason or why
        self.phase = Phase.TERMINATE
        self.session.disconnect(self._now(), result, message=why)

    def _release(self) -> None:
        s = self.settings
        if s.server and self.peer_v4 is not None and s.release_v4 is not None:
            s.release_v4(self.peer_v4)
            self.peer_v4 = None
        if s.server and self.prefix_v6 is not None and s.release_v6 is not None:
            s.release_v6(self.prefix_v6)
            self.prefix_v6 = None

    def _now(self) -> float:
        return self._clock


def _auth_protocol(method: str) -> int:
    return PPPProtocol.PAP if method == "pap" else PPPProtocol.CHAP
