#!/usr/bin/env python3
"""TCP throughput through one pyl2tp tunnel, with the CPU and memory it costs (root).

  .venv/bin/python -m benchmarks.throughput [--seconds 10] [--runs 3] [--reverse] [--json]

Builds two namespaces joined by a veth pair (198.18.0.1 server, 198.18.0.2 client), starts
`pyl2tp server` and `pyl2tp client` (MS-CHAPv2, one session, the client's TUN routes
198.18.100.0/24), then runs iperf3 TCP from the client to an `iperf3 -s` bound to the
server's tunnel address 198.18.100.1 (`--reverse`: server to client). Around each run it
samples the server's and the client's CPU time (/proc/PID/stat utime + stime), the
session's packet counters (`pyl2tp ctl sessions`) and the whole machine's busy time
(/proc/stat), and prints one JSON object per run and a summary (medians):

  mbit_s                 iperf3's received rate
  {server,client}_cpu_s  CPU seconds the process used during the run
  {server,client}_cores  the same per wall-clock second
  {server,client}_pkts   L2TP data packets the session received + sent
  {server,client}_us_per_pkt   CPU microseconds per packet through that side (a "hop")
  {server,client}_rss_kib      resident memory after the run
  busy_cores             CPU of the whole machine during the run (of os.cpu_count())
  other_cores            busy_cores minus ours and iperf3's: foreign load (approximate)

Every packet stays inside the benchmark's namespaces (198.18.0.0/15).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: `tests.harness` lives in the repo root
    sys.path.insert(0, str(ROOT))

from tests.harness.netns import Topology, wait_for  # noqa: E402
from tests.harness.product import ProductProcess  # noqa: E402
from tests.integration.ppp_env import (  # noqa: E402
    CLIENT_IP,
    POOL_LOCAL,
    SERVER_IP,
    User,
    addresses,
    client_toml,
    cpu_seconds,
    iperf3,
    rss_kib,
    server_toml,
    tun_name,
    wait_connected,
)

USER = User("bench", "bench-password")
SUMMARY_KEYS = (
    "mbit_s", "server_cpu_s", "client_cpu_s", "server_cores", "client_cores",
    "server_us_per_pkt", "client_us_per_pkt", "busy_cores", "other_cores",
)


def system_busy_seconds() -> float:
    """CPU seconds every core spent not idle since boot (/proc/stat, first line)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return (total - idle) / os.sysconf("SC_CLK_TCK")


def packets(proc: ProductProcess) -> int:
    """Data + control packets the process's sessions received and sent."""
    return sum(int(s.get("rx_packets", 0)) + int(s.get("tx_packets", 0))
               for s in proc.sessions())


def one_run(server: ProductProcess, client: ProductProcess, topo_srv: Any, topo_cli: Any,
            seconds: int, reverse: bool, work: Path) -> dict[str, Any]:
    """One iperf3 run with CPU, packet and memory samples around it."""
    pkts0 = packets(server), packets(client)
    cpu0 = cpu_seconds(server.pid), cpu_seconds(client.pid)
    busy0, t0 = system_busy_seconds(), time.monotonic()
    result = iperf3(topo_srv, topo_cli, POOL_LOCAL, seconds, work, reverse=reverse)
    busy1, t1 = system_busy_seconds(), time.monotonic()
    cpu1 = cpu_seconds(server.pid), cpu_seconds(client.pid)
    pkts1 = packets(server), packets(client)
    wall = t1 - t0
    end = result["end"]
    received = end["sum_received"]
    sent = end["sum_sent"]
    iperf_cpu = end.get("cpu_utilization_percent", {})
    # iperf3's own CPU (percent of one core over its test), both ends.
    iperf_cores = (float(iperf_cpu.get("host_total", 0)) + float(iperf_cpu.get("remote_total", 0))
                   ) / 100 * float(received["seconds"]) / wall
    run: dict[str, Any] = {
        "seconds": round(float(received["seconds"]), 2),
        "direction": "server->client" if reverse else "client->server",
        "mbit_s": round(float(received["bits_per_second"]) / 1e6, 1),
        "retransmits": int(sent.get("retransmits", 0)),
    }
    for i, side in enumerate(("server", "client")):
        cpu = cpu1[i] - cpu0[i]
        pkts = pkts1[i] - pkts0[i]
        run[f"{side}_cpu_s"] = round(cpu, 2)
        run[f"{side}_cores"] = round(cpu / wall, 2)
        run[f"{side}_pkts"] = pkts
        run[f"{side}_us_per_pkt"] = round(cpu / pkts * 1e6, 2) if pkts else None
        run[f"{side}_rss_kib"] = rss_kib(server.pid if side == "server" else client.pid)
    ours = (run["server_cpu_s"] + run["client_cpu_s"]) / wall
    run["busy_cores"] = round((busy1 - busy0) / wall, 2)
    run["iperf3_cores"] = round(iperf_cores, 2)
    run["other_cores"] = round(max(run["busy_cores"] - ours - iperf_cores, 0.0), 2)
    return run


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians (and min/max of the throughput) over the runs."""
    out: dict[str, Any] = {"runs": len(runs)}
    for key in SUMMARY_KEYS:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = round(statistics.median(values), 2)
    rates = [r["mbit_s"] for r in runs]
    out["mbit_s_min"], out["mbit_s_max"] = min(rates), max(rates)
    out["server_rss_kib"] = runs[-1]["server_rss_kib"]
    out["client_rss_kib"] = runs[-1]["client_rss_kib"]
    return out


#: the pre-shared key of `--ipsec` runs
PSK = "bench-pre-shared-key"


def bench(
    seconds: int, runs: int, reverse: bool, work: Path, ipsec: bool = False
) -> dict[str, Any]:
    with Topology("throughput-bench") as topo:
        srv = topo.host("srv")
        cli = topo.host("cli")
        topo.link(srv, f"{SERVER_IP}/24", cli, f"{CLIENT_IP}/24")
        ctun = tun_name("bc")
        server_text = server_toml(work, [USER], tun=tun_name("bs"), ppp={"dns": []})
        if ipsec:
            server_text += f'\n[ipsec]\nenabled = true\npsk = "{PSK}"\n'
        server = ProductProcess(srv, "server", server_text, work)
        client = ProductProcess(
            cli, "client",
            client_toml(work, USER.name, USER.password, tun=ctun,
                        extra={"psk": PSK} if ipsec else None), work)
        server.start()
        client.start()
        up = wait_connected(client, 40)
        wait_for(lambda: addresses(cli, ctun) == [up.address], 10, what="the client's TUN")
        results = [one_run(server, client, srv, cli, seconds, reverse, work)
                   for _ in range(runs)]
        client.stop()
        server.stop()
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "ipsec": ipsec,
        "runs": results,
        "summary": summary(results),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    ap.add_argument("--seconds", type=int, default=10, help="length of each iperf3 run")
    ap.add_argument("--runs", type=int, default=1, help="iperf3 runs over the same tunnel")
    ap.add_argument("--reverse", action="store_true", help="server -> client (iperf3 -R)")
    ap.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    ap.add_argument("--ipsec", action="store_true", help="L2TP/IPsec (IKE PSK, ESP transport)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("throughput: needs root (network namespaces, TUN devices)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="pyl2tp-throughput-"))
    try:
        result = bench(args.seconds, args.runs, args.reverse, work, ipsec=args.ipsec)
    finally:
        if args.keep:
            print(f"work directory: {work}", file=sys.stderr)
        else:
            for path in sorted(work.rglob("*"), reverse=True):
                path.rmdir() if path.is_dir() else path.unlink()
            work.rmdir()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for run in result["runs"]:
            print(json.dumps(run))
        print("summary", json.dumps(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
