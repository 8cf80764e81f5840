"""Unit tests for the control socket: a real Unix socket in tmp_path, driven by asyncio."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pyl2tp.control import (
    MAX_REQUEST,
    CommandError,
    ControlError,
    ControlServer,
    Handler,
    control_request,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


async def echo(args: dict[str, Any]) -> Any:
    return {"args": args}


async def sessions(args: dict[str, Any]) -> Any:
    return [{"tunnel_id": 1, "session_id": 2, "user": "alice"}]


async def boom(args: dict[str, Any]) -> Any:
    raise RuntimeError("kaput")


async def refuse(args: dict[str, Any]) -> Any:
    raise CommandError("no tunnel 9")


async def not_json(args: dict[str, Any]) -> Any:
    return {1, 2}


async def hang(args: dict[str, Any]) -> Any:
    await asyncio.sleep(3600)


HANDLERS: dict[str, Handler] = {
    "echo": echo,
    "sessions": sessions,
    "boom": boom,
    "refuse": refuse,
    "not_json": not_json,
    "hang": hang,
}


def run_with_server(
    path: Path, body: Callable[[ControlServer], Awaitable[None]], handlers: Any = None
) -> None:
    """Start a ControlServer at ``path``, run ``body``, and close the server."""

    async def main() -> None:
        server = ControlServer(str(path), HANDLERS if handlers is None else handlers)
        await server.start()
        try:
            await body(server)
        finally:
            await server.close()

    asyncio.run(main())


async def raw_exchange(path: Path, *lines: bytes) -> list[dict[str, Any]]:
    """Send raw lines on one connection; read one reply per line (until EOF)."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    replies = []
    try:
        for line in lines:
            with contextlib.suppress(ConnectionError):
                writer.write(line)
                await writer.drain()
            try:
                answer = await reader.readline()
            except ConnectionError:
                break
            if not answer:
                break
            replies.append(json.loads(answer))
    finally:
        writer.close()
    return replies


def test_request_reply_and_socket_setup(tmp_path: Path) -> None:
    path = tmp_path / "run" / "pyl2tp" / "server.sock"

    async def body(server: ControlServer) -> None:
        assert path.parent.is_dir()
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert await control_request(str(path), "echo", {"x": 1}) == {"args": {"x": 1}}
        assert await control_request(str(path), "echo") == {"args": {}}
        result = await control_request(str(path), "sessions")
        assert result == [{"tunnel_id": 1, "session_id": 2, "user": "alice"}]

    run_with_server(path, body)
    assert not path.exists()  # close() unlinks


def test_several_requests_on_one_connection(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"

    async def body(server: ControlServer) -> None:
        replies = await raw_exchange(
            path,
            b'{"cmd": "echo", "args": {"n": 1}}\n',
            b"\n" + b'{"cmd": "echo", "args": {"n": 2}}\n',
            b'{"cmd": "echo", "args": null}\n',
        )
        assert replies == [
            {"ok": True, "result": {"args": {"n": 1}}},
            {"ok": True, "result": {"args": {"n": 2}}},
            {"ok": True, "result": {"args": {}}},
        ]

    run_with_server(path, body)


def test_unknown_command_lists_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"

    async def body(server: ControlServer) -> None:
        with pytest.raises(ControlError) as info:
            await control_request(str(path), "frobnicate")
        assert info.value.path == str(path)
        assert info.value.remote is not None
        assert 'unknown command "frobnicate"' in info.value.remote
        assert "known: boom, echo, hang, not_json, refuse, sessions" in info.value.remote
        assert str(path) in str(info.value)

    run_with_server(path, body)


def test_handler_exception_is_reported_and_server_survives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.sock"

    async def body(server: ControlServer) -> None:
        with caplog.at_level(logging.INFO, logger="pyl2tp.control"):
            with pytest.raises(ControlError, match="boom failed: RuntimeError: kaput"):
                await control_request(str(path), "boom")
            assert await control_request(str(path), "echo", {"a": 2}) == {"args": {"a": 2}}
            with pytest.raises(ControlError) as info:
                await control_request(str(path), "refuse")
            assert info.value.remote == "refuse: no tunnel 9"
            with pytest.raises(ControlError, match="not JSON-able"):
                await control_request(str(path), "not_json")

    run_with_server(path, body)
    failed = [r for r in caplog.records if "boom" in r.getMessage()]
    assert failed and failed[0].exc_info is not None  # traceback logged
    refused = [r for r in caplog.records if "no tunnel 9" in r.getMessage()]
    assert refused and refused[0].exc_info is None  # expected failure: no traceback


def test_garbage_lines_get_error_replies(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"

    async def body(server: ControlServer) -> None:
        replies = await raw_exchange(
            path,
            b"\xff\xfe this is not json\n",
            b"{not json either\n",
            b"[1, 2, 3]\n",
            b'{"args": {}}\n',
            b'{"cmd": 5}\n',
            b'{"cmd": "echo", "args": [1]}\n',
            b'{"cmd": "echo"}\n',
        )
        assert [r["ok"] for r in replies] == [False] * 6 + [True]
        assert replies[0]["error"] == "request is not JSON"
        assert replies[1]["error"] == "request is not JSON"
        assert "expected" in replies[2]["error"]
        assert "expected" in replies[3]["error"]
        assert "expected" in replies[4]["error"]
        assert replies[5]["error"] == "echo: args must be an object"

    run_with_server(path, body)


def test_oversized_request_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"

    async def body(server: ControlServer) -> None:
        big = b'{"cmd": "echo", "args": {"x": "' + b"a" * (MAX_REQUEST + 1000) + b'"}}\n'
        replies = await raw_exchange(path, big, b'{"cmd": "echo"}\n')
        assert len(replies) == 1  # answered, then the connection is closed
        assert replies[0]["ok"] is False
        assert "too long" in replies[0]["error"]
        with pytest.raises(ControlError, match="request too long"):
            await control_request(str(path), "echo", {"x": "c" * (2 * MAX_REQUEST)})
        # a fresh connection still works, and a request just under the limit too
        payload = "b" * (MAX_REQUEST - 100)
        assert await control_request(str(path), "echo", {"x": payload}) == {"args": {"x": payload}}

    run_with_server(path, body)


def test_large_reply_is_received(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    rows = [{"tunnel_id": i, "session_id": i, "user": "u" * 50} for i in range(10000)]

    async def many(args: dict[str, Any]) -> Any:
        return rows

    async def body(server: ControlServer) -> None:
        assert await control_request(str(path), "sessions") == rows

    run_with_server(path, body, {"sessions": many})


def test_timeout_and_missing_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"

    async def body(server: ControlServer) -> None:
        with pytest.raises(ControlError, match=r"no answer within 0\.2 s"):
            await control_request(str(path), "hang", timeout=0.2)
        assert await control_request(str(path), "echo") == {"args": {}}

    run_with_server(path, body)
    with pytest.raises(ControlError, match=f"^{path}: no such socket"):
        asyncio.run(control_request(str(path), "echo"))


def test_refused_socket(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()  # the file stays, nobody listens
    with pytest.raises(ControlError, match=f"^{path}: connection refused"):
        asyncio.run(control_request(str(path), "echo"))


def test_stale_socket_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()

    async def body(server: ControlServer) -> None:
        assert await control_request(str(path), "echo") == {"args": {}}

    run_with_server(path, body)


def test_live_socket_and_regular_file_are_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"

    async def body(server: ControlServer) -> None:
        second = ControlServer(str(path), HANDLERS)
        with pytest.raises(OSError) as info:
            await second.start()
        assert info.value.errno == errno.EADDRINUSE
        assert await control_request(str(path), "echo") == {"args": {}}

    run_with_server(path, body)

    plain = tmp_path / "file"
    plain.write_text("keep me")

    async def start_on_file() -> None:
        await ControlServer(str(plain), HANDLERS).start()

    with pytest.raises(OSError) as info:
        asyncio.run(start_on_file())
    assert info.value.errno == errno.EEXIST
    assert plain.read_text() == "keep me"


def test_close_drops_idle_connections(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"

    async def main() -> None:
        async with ControlServer(str(path), HANDLERS):
            reader, writer = await asyncio.open_unix_connection(str(path))
            writer.write(b'{"cmd": "echo"}\n')
            assert json.loads(await reader.readline())["ok"] is True
        # the server closed: the idle connection sees EOF, the socket file is gone
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        assert not path.exists()

    asyncio.run(main())
