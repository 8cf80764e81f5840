"""The ``pyl2tp`` command: ``server``, ``client``, ``ctl`` and ``demo`` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pyl2tp import __version__, fmt
from pyl2tp.config import (
    LINK_MODES,
    LOG_LEVELS,
    client_config_from_args,
    load_server_config,
)
from pyl2tp.control import ControlError, control_request
from pyl2tp.errors import ConfigError

__all__ = ["build_parser", "main", "render", "setup_logging"]

DEFAULT_SOCKET = "/run/pyl2tp/server.sock"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATEFMT = "%Y-%m-%d %H:%M:%S"


def setup_logging(level: str) -> None:
    """Log to stderr: ``2026-11-25 14:00:00 INFO pyl2tp.l2tp: tunnel 1234 ...: established``."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format=LOG_FORMAT,
        datefmt=LOG_DATEFMT,
        stream=sys.stderr,
        force=True,
    )


def _exit_code(result: Any) -> int:
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def _config_error(exc: ConfigError) -> int:
    print(f"pyl2tp: {exc}", file=sys.stderr)
    return 2


# --- server, client, demo ------------------------------------------------------------------


def _late(module: str, name: str) -> Callable[..., Any]:
    """Import ``pyl2tp.<module>.<name>`` only when its subcommand runs (keeps ``ctl`` light)."""
    func: Callable[..., Any] = getattr(importlib.import_module(f"pyl2tp.{module}"), name)
    return func


def _cmd_server(args: argparse.Namespace) -> int:
    try:
        config = load_server_config(args.config)
    except ConfigError as exc:
        return _config_error(exc)
    setup_logging("debug" if args.verbose else config.server.log_level)
    run_server = _late("server", "run_server")
    try:
        return _exit_code(asyncio.run(run_server(config)))
    except KeyboardInterrupt:
        return 130


def _cmd_client(args: argparse.Namespace) -> int:
    try:
        config = client_config_from_args(args)
    except ConfigError as exc:
        return _config_error(exc)
    setup_logging("debug" if args.verbose else config.client.log_level)
    run_client = _late("client", "run_client")
    try:
        return _exit_code(asyncio.run(run_client(config)))
    except KeyboardInterrupt:
        return 130


def _cmd_demo(args: argparse.Namespace) -> int:
    return _exit_code(_late("demo", "main")())


# --- ctl -----------------------------------------------------------------------------------


def render(command: str, result: Any) -> str:
    """The readable form of a ``ctl`` result: a table, ``key: value`` lines, or ``ok``."""
    columns = {"tunnels": fmt.TUNNEL_COLUMNS, "sessions": fmt.SESSION_COLUMNS}.get(command)
    if (
        columns is not None
        and isinstance(result, list)
        and all(isinstance(row, dict) for row in result)
    ):
        return fmt.table(result, columns) if result else f"no {command}"
    if result is None:
        return "ok"
    if isinstance(result, dict):
        return fmt.key_values(result) if result else "ok"
    if isinstance(result, str):
        return result
    return json.dumps(result, indent=2)


def _request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The control command and arguments for the parsed ``ctl`` command line."""
    if args.command == "disconnect":
        if args.what == "tunnel":
            return "disconnect", {"tunnel_id": args.tunnel_id}
        return "disconnect", {"tunnel_id": args.tunnel_id, "session_id": args.session_id}
    return args.command, {}


def _cmd_ctl(args: argparse.Namespace) -> int:
    command, request = _request(args)
    try:
        result = asyncio.run(control_request(args.socket, command, request, args.timeout))
    except ControlError as exc:
        print(f"pyl2tp ctl: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(render(command, result))
    return 0


# --- the parser ----------------------------------------------------------------------------


def _ident(text: str) -> int:
    """A tunnel or session id: 1..65535 (RFC 2661 3.1: 16-bit, 0 is reserved)."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"must be 1..65535: {text}")
    return value


def _add_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", metavar="FILE", help="client.toml (optional with --server)")
    p.add_argument("--server", metavar="HOST", help="server address or name")
    p.add_argument("--port", type=int, help="server UDP port (1701)")
    p.add_argument("--user", help="PPP user name")
    p.add_argument("--password", help="PPP password (visible in ps: prefer the file)")
    p.add_argument("--psk", help="IPsec pre-shared key (visible in ps: prefer the file)")
    p.add_argument("--secret", help="L2TP tunnel secret")
    p.add_argument("--auth", action="append", metavar="METHOD", help="mschapv2, chap or pap")
    p.add_argument("--route", dest="routes", action="append", metavar="NET", help='or "default"')
    p.add_argument("--local", metavar="ADDR", help="local address to bind")
    p.add_argument("--local-port", type=int, metavar="PORT", help="local UDP port (0: any)")
    p.add_argument("--tunnels", type=int, metavar="N", help="tunnels to open (load tests)")
    p.add_argument("--sessions", type=int, metavar="N", help="sessions per tunnel")
    p.add_argument("--control-socket", metavar="PATH", help="the client's control socket")
    p.add_argument("--hostname", help="our Host Name AVP")
    p.add_argument("--no-reconnect", dest="reconnect", action="store_const", const=False)
    p.add_argument("--log-level", choices=LOG_LEVELS)
    p.add_argument("--link", choices=LINK_MODES, help="PPP stand-in (debug)")
    p.add_argument("--keylog", metavar="PATH", help="write IKE/ESP keys here (debug)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _add_ctl(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-s", "--socket", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    ctl = sub.add_parser("ctl", help="query or steer a running server or client")
    ctl.add_argument(
        "-s", "--socket", default=DEFAULT_SOCKET, help=f"control socket ({DEFAULT_SOCKET})"
    )
    ctl.add_argument("--json", action="store_true", help="print the result as JSON")
    ctl.add_argument("--timeout", type=float, default=5.0, help="seconds to wait (5)")
    ctl.set_defaults(func=_cmd_ctl)
    cmds = ctl.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in (
        ("status", "daemon status"),
        ("tunnels", "list tunnels"),
        ("sessions", "list sessions"),
        ("reload", "re-read the configuration"),
    ):
        cmds.add_parser(name, parents=[common], help=text)
    disc = cmds.add_parser("disconnect", parents=[common], help="tear down a tunnel or session")
    what = disc.add_subparsers(dest="what", metavar="tunnel|session", required=True)
    tunnel = what.add_parser("tunnel", parents=[common], help="disconnect tunnel ID")
    tunnel.add_argument("tunnel_id", type=_ident, metavar="ID")
    session = what.add_parser("session", parents=[common], help="disconnect session TID SID")
    session.add_argument("tunnel_id", type=_ident, metavar="TID")
    session.add_argument("session_id", type=_ident, metavar="SID")


def build_parser() -> argparse.ArgumentParser:
    """The ``pyl2tp`` argument parser with all its subcommands."""
    parser = argparse.ArgumentParser(prog="pyl2tp", description="L2TP/IPsec VPN in user space")
    parser.add_argument("--version", action="version", version=f"pyl2tp {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")

    server = sub.add_parser("server", help="run an L2TP server (LNS) in the foreground")
    server.add_argument("-c", "--config", required=True, metavar="FILE", help="server.toml")
    server.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    server.set_defaults(func=_cmd_server)

    client = sub.add_parser("client", help="connect to an L2TP/IPsec server")
    _add_client_flags(client)
    client.set_defaults(func=_cmd_client)

    _add_ctl(sub)

    demo = sub.add_parser("demo", help="server and client in two namespaces, with traffic")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pyl2tp`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    code: int = func(args)
    return code
