"""Twenty clients on one server: distinct addresses, client-to-client forwarding, cleanup.

Each client lives in its own namespace, linked to the server namespace by a veth pair of
its own (server side 198.18.(10+i).1/24, client side .2); the server listens on 0.0.0.0.
The server forwards between sessions (its TUN routes one session's packets to another's
/32). Seven clients are then SIGKILLed: short LCP echo and HELLO timers let the server
notice, clear their sessions, return their addresses to the pool and drop their routes.
"""

from __future__ import annotations

import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from tests.harness import require_tools
from tests.harness.netns import Netns, Topology, wait_for
from tests.harness.product import ProductProcess, assert_no_traceback
from tests.integration.ppp_env import (
    POOL_LOCAL,
    User,
    addresses,
    client_toml,
    connected,
    ping,
    routes,
    rss_kib,
    server_toml,
    wait_connected,
)

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

CLIENTS = 20
KILLED = 7
CLIENT_TUN = "vpn0"  # one per client namespace
SERVER_TIMERS = {"hello_interval": 2, "retransmit_initial": 0.5, "retransmit_cap": 1,
                 "max_retries": 3}
SERVER_PPP = {"lcp_echo_interval": 1, "lcp_echo_failure": 3, "dns": []}
WORKERS = 8  # concurrent pings: enough to be quick, few enough for two cores


def server_side(i: int) -> str:
    return f"198.18.{10 + i}.1"


def client_side(i: int) -> str:
    return f"198.18.{10 + i}.2"


def in_use(server: ProductProcess) -> int:
    value: int = server.ctl("status")["ppp"]["pool_in_use"]
    return value


def by_user(server: ProductProcess) -> dict[str, str]:
    """User -> address of the server's sessions that have an address."""
    return {str(s["user"]): str(s["address"]) for s in server.sessions() if s.get("address")}


def host_routes(ns: Netns) -> set[str]:
    return {str(r["dst"]) for r in routes(ns)}


def has_address(ns: Netns, address: str) -> bool:
    return addresses(ns, CLIENT_TUN) == [address]


def pings(pairs: list[tuple[Netns, str]]) -> list[int]:
    """Replies to 3 pings for every (namespace, address), a few at a time."""
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(lambda pair: ping(pair[0], pair[1], 3), pairs))


def test_twenty_clients_forward_and_cleanup(topology: Topology, tmp_path: Path) -> None:
    require_tools("ping")
    srv = topology.host("srv")
    hosts: list[Netns] = []
    for i in range(CLIENTS):
        ns = topology.host(f"c{i}")
        topology.link(srv, f"{server_side(i)}/24", ns, f"{client_side(i)}/24")
        hosts.append(ns)
    users = [User(f"u{i}", f"pw-{i}-secret") for i in range(CLIENTS)]
    server = ProductProcess(
        srv, "server",
        server_toml(tmp_path, users, listen=["0.0.0.0"], l2tp=SERVER_TIMERS, ppp=SERVER_PPP),
        tmp_path,
    )
    server.start()
    clients = []
    for i, (ns, user) in enumerate(zip(hosts, users, strict=True)):
        work = tmp_path / f"c{i}"
        work.mkdir()
        config = client_toml(work, user.name, user.password, server=server_side(i),
                             auth=["mschapv2", "chap", "pap"], tun=CLIENT_TUN)
        client = ProductProcess(ns, "client", config, work)
        client.start(wait_socket=False)
        clients.append(client)

    # Every client up, each with its own address, as the server sees it too.
    wait_for(lambda: all(connected(c) for c in clients), 90, interval=0.5,
             what="20 clients connected")
    ups = [wait_connected(c, 1) for c in clients]
    got = [up.address for up in ups]
    assert len(set(got)) == CLIENTS, got
    assert all(up.peer == POOL_LOCAL for up in ups)
    seen = wait_for(lambda: len(m := by_user(server)) == CLIENTS and m, 20,
                    what="20 addressed sessions on the server")
    assert seen == {u.name: a for u, a in zip(users, got, strict=True)}
    assert in_use(server) == CLIENTS
    for ns, address in zip(hosts, got, strict=True):
        wait_for(partial(has_address, ns, address), 20, what=f"{address} on {ns.name}'s TUN")
    assert set(got) <= host_routes(srv)  # a /32 per session via the server's TUN
    forwarding = srv.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip()
    assert forwarding == "1"

    # To the server, and to the next client through the server.
    pairs = [(ns, POOL_LOCAL) for ns in hosts]
    pairs += [(hosts[i], got[(i + 1) % CLIENTS]) for i in range(CLIENTS)]
    replies = pings(pairs)
    failed = [(ns.name, a, n) for (ns, a), n in zip(pairs, replies, strict=True) if n != 3]
    assert failed == [], failed

    # SIGKILL seven: no StopCCN, no CDN, no LCP Terminate. The server must find out alone.
    seed = int(os.environ.get("PYL2TP_TEST_SEED", os.getpid()))
    victims = sorted(random.Random(seed).sample(range(CLIENTS), KILLED))
    print(f"\nseed {seed}: killing clients {victims}")
    for i in victims:
        clients[i].kill()
    survivors = [i for i in range(CLIENTS) if i not in victims]
    dead = {got[i] for i in victims}
    wait_for(lambda: len(server.sessions()) == len(survivors), 60, interval=0.5,
             what="the server to clear the killed clients' sessions")
    wait_for(lambda: len(server.tunnels()) == len(survivors), 60, interval=0.5,
             what="the server to clear the killed clients' tunnels")
    assert by_user(server) == {users[i].name: got[i] for i in survivors}
    assert in_use(server) == len(survivors)
    left = host_routes(srv)
    assert not dead & left, sorted(dead & left)
    assert {got[i] for i in survivors} <= left
    log = server.log_text()
    for i in victims:
        # Each killed client was noticed by the LCP echoes or the HELLO retransmissions.
        pattern = rf"peer {re.escape(client_side(i))}:\d+.*(LCP echo timeout|stopped ack)"
        assert re.search(pattern, log), f"no timeout logged for client {i}"
    status = server.ctl("status")
    assert status["sessions"] == len(survivors) and status["tunnels"] == len(survivors)
    assert status["ppp"]["dataplane"]["sessions_v4"] == len(survivors)

    # The survivors still reach the server and each other.
    pairs = [(hosts[i], POOL_LOCAL) for i in survivors]
    pairs += [(hosts[i], got[survivors[(k + 1) % len(survivors)]])
              for k, i in enumerate(survivors)]
    replies = pings(pairs)
    failed = [(ns.name, a, n) for (ns, a), n in zip(pairs, replies, strict=True) if n != 3]
    assert failed == [], failed
    assert all(clients[i].returncode is None for i in survivors)

    print(f"server RSS {rss_kib(server.pid)} KiB with {len(survivors)} sessions; client RSS "
          f"{rss_kib(clients[survivors[0]].pid)} KiB")
    assert_no_traceback(log)
    for i in survivors:
        assert_no_traceback(clients[i].log_text())
