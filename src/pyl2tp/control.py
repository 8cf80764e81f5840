"""The control socket: JSON lines over a Unix stream socket, served with asyncio.

One request per line, ``{"cmd": "sessions", "args": {...}}``; one reply per line,
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``. A connection may carry
several requests in turn. The commands ``pyl2tp ctl`` sends are ``status``, ``tunnels``,
``sessions``, ``reload`` (no arguments) and ``disconnect`` with ``{"tunnel_id": N}`` or
``{"tunnel_id": N, "session_id": M}`` (our local ids); the daemon supplies the handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import stat
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any

__all__ = [
    "MAX_REQUEST",
    "CommandError",
    "ControlError",
    "ControlServer",
    "Handler",
    "control_request",
]

log = logging.getLogger("pyl2tp.control")

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
"""A command handler: the request's ``args`` in, a JSON-able result out."""

MAX_REQUEST = 64 * 1024  # bytes in one request line
MAX_REPLY = 64 * 1024 * 1024  # bytes in one reply line (10 000 sessions fit easily)


class CommandError(Exception):
    """Raised by a handler for an expected failure (bad argument, no such tunnel).

    The message goes back to the caller as the error; no traceback is logged.
    """


class ControlError(Exception):
    """A control request failed: no socket, no answer, or an error reply.

    ``path`` names the socket; ``remote`` holds the daemon's error text for an error reply.
    """

    def __init__(self, message: str, path: str, remote: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.remote = remote


def _encode(reply: Mapping[str, Any]) -> bytes:
    return json.dumps(reply, separators=(",", ":")).encode() + b"\n"


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class ControlServer:
    """Serves ``handlers`` (command name -> :data:`Handler`) on a Unix socket at ``path``."""

    def __init__(self, path: str, handlers: Mapping[str, Handler]) -> None:
        self.path = path
        self._handlers = dict(handlers)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._inode: int | None = None

    async def start(self) -> None:
        """Create the parent directory, replace a stale socket, bind, and chmod 0o660."""
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, mode=0o755, exist_ok=True)
        await self._remove_stale()
        self._server = await asyncio.start_unix_server(
            self._serve, path=self.path, limit=MAX_REQUEST
        )
        os.chmod(self.path, 0o660)
        self._inode = os.stat(self.path).st_ino
        log.info("control socket %s: listening", self.path)

    async def _remove_stale(self) -> None:
        """Unlink a socket left behind by a dead process; refuse to touch anything else."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EEXIST, "exists and is not a socket", self.path)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_unix_connection(self.path), 1.0)
        except (OSError, TimeoutError):
            os.unlink(self.path)  # nobody answers: stale
            return
        writer.close()
        raise OSError(errno.EADDRINUSE, "another process serves this control socket", self.path)

    async def close(self) -> None:
        """Stop listening, drop open connections and unlink the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:  # still ours, not a successor's
                os.unlink(self.path)
        log.info("control socket %s: closed", self.path)

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than MAX_REQUEST: answer, then hang up
                    writer.write(_encode(_error(f"request too long (over {MAX_REQUEST} bytes)")))
                    await writer.drain()
                    break
                if not line:
                    break
                if line.strip():
                    writer.write(_encode(await self._dispatch(line)))
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _dispatch(self, line: bytes) -> dict[str, Any]:
        """Decode one request, run its handler, and build the reply."""
        try:
            request = json.loads(line)
        except ValueError:  # includes UnicodeDecodeError
            return _error("request is not JSON")
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            return _error('expected {"cmd": "<command>", "args": {...}}')
        cmd: str = request["cmd"]
        args = request.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            return _error(f"{cmd}: args must be an object")
        handler = self._handlers.get(cmd)
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            return _error(f"unknown command {json.dumps(cmd)[:80]}; known: {known}")
        try:
            result = await handler(args)
        except CommandError as exc:
            log.info("control %s: %s", cmd, exc)
            return _error(f"{cmd}: {exc}")
        except Exception as exc:
            log.exception("control %s: handler failed", cmd)
            return _error(f"{cmd} failed: {type(exc).__name__}: {exc}")
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            log.error("control %s: result is not JSON-able: %s", cmd, exc)
            return _error(f"{cmd} failed: result is not JSON-able")
        return {"ok": True, "result": result}


async def control_request(
    path: str, command: str, args: dict[str, Any] | None = None, timeout: float = 5
) -> Any:
    """Send one command to the control socket at ``path`` and return its result.

    Raises :class:`ControlError` (naming the socket) if there is no socket, no answer within
    ``timeout`` seconds, or an error reply.
    """

    request = _encode({"cmd": command, "args": args or {}})
    if len(request) > MAX_REQUEST:
        raise ControlError(f"{path}: request too long (over {MAX_REQUEST} bytes)", path)

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_unix_connection(path, limit=MAX_REPLY)
        try:
            writer.write(request)
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    try:
        line = await asyncio.wait_for(exchange(), timeout)
    except TimeoutError:
        raise ControlError(f"{path}: no answer within {timeout:g} s", path) from None
    except FileNotFoundError:
        raise ControlError(f"{path}: no such socket (is the daemon running?)", path) from None
    except ConnectionRefusedError:
        raise ControlError(f"{path}: connection refused (is the daemon running?)", path) from None
    except OSError as exc:
        raise ControlError(f"{path}: {exc.strerror or exc}", path) from None
    except ValueError:
        raise ControlError(f"{path}: reply too long (over {MAX_REPLY} bytes)", path) from None
    if not line:
        raise ControlError(f"{path}: connection closed without a reply", path)
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError(f"{path}: reply is not JSON", path) from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ControlError(f"{path}: malformed reply", path)
    if not reply["ok"]:
        remote = str(reply.get("error", "unknown error"))
        raise ControlError(f"{path}: {remote}", path, remote)
    return reply.get("result")
