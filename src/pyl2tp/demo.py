"""`pyl2tp demo`: an LNS and a client in two network namespaces, printing what happens.

Needs root (it creates namespaces and a veth pair); uses only 198.18.0.0/15 and
removes everything it made, whatever happens.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SERVER_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
SECRET = "demo-tunnel-secret"
PSK = "demo-pre-shared-key"
USER, PASSWORD = "alice", "alice-password"
POOL_LOCAL = "198.18.100.1"
POOL_RANGE = "198.18.100.10-198.18.100.50"
POOL_NET = "198.18.100.0/24"
DNS = "198.18.0.53"


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30)


def _pyl2tp(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", "pyl2tp", *args]


def _ctl(ns: str, sock: Path, command: str) -> Any:
    out = _run(*_pyl2tp(ns, "ctl", "-s", str(sock), "--json", command)).stdout
    return json.loads(out)


def _table(ns: str, sock: Path, command: str) -> str:
    return _run(*_pyl2tp(ns, "ctl", "-s", str(sock), command)).stdout


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (subprocess.CalledProcessError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def _addressed(ns: str, sock: Path) -> bool:
    sessions = _ctl(ns, sock, "sessions")
    return bool(sessions) and all(s.get("address") for s in sessions)


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main() -> int:
    """Run the demo; returns an exit status."""
    if os.geteuid() != 0:
        print("pyl2tp demo: needs root (network namespaces)", file=sys.stderr)
        return 2
    if shutil.which("ip") is None:
        print("pyl2tp demo: needs iproute2 (`ip`)", file=sys.stderr)
        return 2
    tag = str(os.getpid())
    srv_ns, cli_ns = f"pyl2tp-demo-srv-{tag}", f"pyl2tp-demo-cli-{tag}"
    work = Path(tempfile.mkdtemp(prefix="pyl2tp-demo-"))
    procs: list[subprocess.Popen[bytes]] = []
    made: list[str] = []
    try:
        _step(
            f"namespaces {srv_ns} ({SERVER_IP}) and {cli_ns} ({CLIENT_IP}), joined by a veth pair"
        )
        for ns in (srv_ns, cli_ns):
            _run("ip", "netns", "add", ns)
            made.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        veth_s, veth_c = f"pds{tag}"[:15], f"pdc{tag}"[:15]
        _run(
            "ip",
            "link",
            "add",
            veth_s,
            "netns",
            srv_ns,
            "type",
            "veth",
            "peer",
            veth_c,
            "netns",
            cli_ns,
        )
        for ns, dev, ip in ((srv_ns, veth_s, SERVER_IP), (cli_ns, veth_c, CLIENT_IP)):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")

        srv_sock, cli_sock = work / "server.sock", work / "client.sock"
        (work / "server.toml").write_text(
            f'[server]\nlisten = ["{SERVER_IP}"]\nhostname = "demo-lns"\n'
            f'control_socket = "{srv_sock}"\ntun = "demo0"\n'
            f'[l2tp]\nsecret = "{SECRET}"\nhello_interval = 10\n'
            f'[ipsec]\nenabled = true\npsk = "{PSK}"\n'
            f'[ppp]\nauth = ["mschapv2", "chap", "pap"]\ndns = ["{DNS}"]\n'
            f'[pool]\nlocal = "{POOL_LOCAL}"\nrange = "{POOL_RANGE}"\n'
            f'[[users]]\nname = "{USER}"\npassword = "{PASSWORD}"\n'
        )
        (work / "client.toml").write_text(
            f'[client]\nserver = "{SERVER_IP}"\nhostname = "demo-lac"\nsecret = "{SECRET}"\n'
            f'user = "{USER}"\npassword = "{PASSWORD}"\nauth = "mschapv2"\npsk = "{PSK}"\n'
            f'routes = ["{POOL_NET}"]\ndns = false\ncontrol_socket = "{cli_sock}"\n'
        )
        _step("starting the LNS: pyl2tp server -c server.toml (IPsec PSK, MS-CHAPv2, a pool)")
        srv_log = open(work / "server.log", "wb")  # noqa: SIM115 - closed with the process
        procs.append(
            subprocess.Popen(
                _pyl2tp(srv_ns, "server", "-c", str(work / "server.toml")), stderr=srv_log
            )
        )
        _wait(
            lambda: _ctl(srv_ns, srv_sock, "status") is not None, 15, "the server's control socket"
        )

        _step(f"starting the client: pyl2tp client -c client.toml (user {USER!r})")
        cli_log = open(work / "client.log", "wb")  # noqa: SIM115
        procs.append(
            subprocess.Popen(
                _pyl2tp(cli_ns, "client", "-c", str(work / "client.toml")),
                stderr=cli_log,
                stdout=cli_log,
            )
        )
        _wait(lambda: _addressed(srv_ns, srv_sock), 30, "the client's address")
        _step("the server's tunnels (pyl2tp ctl tunnels)")
        print(_table(srv_ns, srv_sock, "tunnels"), end="")
        _step("the server's sessions (pyl2tp ctl sessions)")
        print(_table(srv_ns, srv_sock, "sessions"), end="")
        _step("the client's TUN device")
        print(_run("ip", "-n", cli_ns, "-brief", "address", "show", "type", "tun").stdout, end="")

        _step(f"ping from the client through the tunnel to the server's {POOL_LOCAL}")
        print(
            _run("ip", "netns", "exec", cli_ns, "ping", "-c", "3", "-i", "0.2", POOL_LOCAL).stdout
        )
        if shutil.which("iperf3"):
            _step("iperf3, 3 s of TCP from the client to the server through the tunnel")
            iperf = subprocess.Popen(
                ["ip", "netns", "exec", srv_ns, "iperf3", "-s", "-1", "-B", POOL_LOCAL],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(iperf)
            time.sleep(0.5)
            out = _run(
                "ip", "netns", "exec", cli_ns, "iperf3", "-c", POOL_LOCAL, "-t", "3", "-f", "m"
            )
            print(
                "\n".join(
                    line
                    for line in out.stdout.splitlines()
                    if "sender" in line or "receiver" in line
                )
            )

        _step("stopping the client: it sends StopCCN; the server frees the session and address")
        client = procs.pop(1)
        client.send_signal(signal.SIGTERM)
        client.wait(10)
        _wait(
            lambda: _ctl(srv_ns, srv_sock, "sessions") == [], 10, "the server to free the sessions"
        )
        status = _ctl(srv_ns, srv_sock, "status")
        in_use = status["ppp"]["pool_in_use"]
        print(f"server sessions after the client left: none; pool addresses in use: {in_use}")
        _step("what the server logged")
        srv_log.flush()
        print((work / "server.log").read_text(), end="")
        print(
            "\ndemo OK: tunnel, session and PPP came up, IP flowed, and all was torn down cleanly"
        )
        return 0
    except (subprocess.CalledProcessError, TimeoutError, OSError) as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr)
        for name in ("server.log", "client.log"):
            path = work / name
            if path.exists():
                print(f"--- {name}\n{path.read_text()}", file=sys.stderr)
        return 1
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
