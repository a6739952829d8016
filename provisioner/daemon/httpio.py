"""A small HTTP/1.1 server for the daemon's port that a hostile client cannot tie up.

One asyncio loop (in one thread) reads every connection; nothing waits on a client in a thread:
* the request head must arrive whole within `head_timeout_s` and `head_bytes` (slowloris: the
  connection is closed, it never held a worker);
* the application looks at the head first (`App.head`): a wrong token, a body over the cap, a rate
  past its limit is answered before a byte of body is read, and the connection closed;
* a body needs a `Content-Length` of plain digits no larger than the cap (a negative or non-numeric
  one is 400, none is 411) or `Transfer-Encoding: chunked`, counted as it is read and cut at the
  cap (413); the whole body must arrive within `body_timeout_s`;
* complete requests go to a pool of `workers` threads (the store and Jenkins calls block); cheap
  answers (/healthz) are made in the loop itself, so they stay fast while the pool is busy;
* at most `max_connections` connections are open; more are closed at once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

log = logging.getLogger(__name__)


DISCARD_MAX = 1 << 20                         # a body over the cap but under this is read and dropped


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 32 * 1024
    head_bytes: int = 16 * 1024
    head_timeout_s: float = 10.0
    body_timeout_s: float = 20.0
    idle_timeout_s: float = 30.0             # a kept-alive connection between requests
    max_connections: int = 256
    workers: int = 8


@dataclass
class Request:
    method: str
    path: str                                # without the query string
    headers: dict[str, str]                  # lower-case names
    body: bytes = b""
    peer: str = ""
    context: dict = field(default_factory=dict)     # what `App.head` learnt (e.g. the agent's node)


@dataclass
class Response:
    code: int
    body: bytes = b""
    ctype: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False
    unread: Request | None = None          # answered from the head: its body is still on the wire


class App(Protocol):
    def head(self, req: Request) -> Response | None:
        """Called in the loop with the head only (must not block): an answer now, or None to read
        the body and call `handle` in a worker."""

    def handle(self, req: Request) -> Response:
        """Called in a worker thread with the whole body."""


class _Refuse(Exception):
    def __init__(self, code: int, message: str, keep: bool = False):
        self.code, self.message, self.keep = code, message, keep    # keep: the body was read


def error(code: int, message: str, *, close: bool = True, headers: dict | None = None,
          field_name: str | None = None) -> Response:
    import json
    body = {"error": message}
    if field_name:
        body["field"] = field_name
    return Response(code, json.dumps(body).encode(), "application/json", dict(headers or {}), close)


class Server:
    def __init__(self, address: tuple[str, int], app: App, limits: Limits = Limits(),
                 name: str = "daemon-http"):
        self.app, self.limits, self.name = app, limits, name
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(max_workers=max(1, limits.workers), thread_name_prefix=name)
        self._open = 0
        self._thread: threading.Thread | None = None
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, address[0], address[1], limit=limits.head_bytes,
                                 backlog=128))
        self.server_address = self._server.sockets[0].getsockname()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> "Server":
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and every connection (a second call does nothing)."""
        if self._loop.is_closed():
            return

        async def close() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._thread is not None:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        else:
            self._loop.run_until_complete(close())
        self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- one connection ---------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= self.limits.max_connections:
            writer.transport.abort()
            return
        self._open += 1
        peer = writer.get_extra_info("peername")
        try:
            first = True
            while True:
                resp = await self._one(reader, writer, f"{peer[0]}" if peer else "", first)
                first = False
                if resp is None:
                    break
                await self._write(writer, resp)
                if resp.unread is not None and not await _drop_body(reader, resp.unread, self.limits):
                    resp.close = True
                if resp.close:
                    await _linger(reader, writer)
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass
        except asyncio.CancelledError:                      # the server stops
            pass
        except Exception:                                   # never a traceback to the client
            log.exception("http connection failed")
        finally:
            self._open -= 1
            try:
                writer.close()
            except Exception:
                pass

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str,
                   first: bool) -> Response | None:
        """Read and answer one request; None when the client went away or was too slow."""
        lim = self.limits
        try:
            async with asyncio.timeout(lim.head_timeout_s if first else lim.idle_timeout_s):
                raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return error(431, f"request head over {lim.head_bytes} bytes")
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return None
        try:
            req, keep = _parse_head(raw, peer)
        except _Refuse as r:
            return error(r.code, r.message)
        answer = self.app.head(req)
        if answer is not None:
            answer.close = answer.close or not keep
            if _declares_body(req.headers) and not answer.close:
                answer.unread = req                         # after the answer: dropped, or closed
            return answer
        try:
            async with asyncio.timeout(lim.body_timeout_s):
                if req.headers.get("expect", "").lower() == "100-continue" and _declares_body(req.headers):
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")     # the head passed: send the body
                req.body = await _body(reader, req, lim.max_body_bytes)
        except _Refuse as r:
            return error(r.code, r.message, field_name="body", close=not (r.keep and keep))
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return None
        resp = await asyncio.get_running_loop().run_in_executor(self._pool, self._handle, req)
        resp.close = resp.close or not keep
        return resp

    def _handle(self, req: Request) -> Response:
        try:
            return self.app.handle(req)
        except Exception:
            log.exception("http handler failed for %s %s", req.method, req.path)
            return error(500, "internal error (logged by the daemon)")

    async def _write(self, writer: asyncio.StreamWriter, resp: Response) -> None:
        reason = HTTPStatus(resp.code).phrase if resp.code in HTTPStatus._value2member_map_ else ""
        lines = [f"HTTP/1.1 {resp.code} {reason}", f"Content-Length: {len(resp.body)}"]
        if resp.ctype:
            lines.append(f"Content-Type: {resp.ctype}")
        lines += [f"{k}: {v}" for k, v in resp.headers.items()]
        if resp.close:
            lines.append("Connection: close")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body)
        async with asyncio.timeout(self.limits.body_timeout_s):
            await writer.drain()


async def _drop_body(reader: asyncio.StreamReader, req: Request, lim: Limits) -> bool:
    """Read and drop the body of a request answered from its head; False: close the connection
    (a body over the cap, a broken or slow one)."""
    try:
        async with asyncio.timeout(lim.body_timeout_s):
            await _body(reader, req, lim.max_body_bytes)
        return True
    except _Refuse as r:
        return r.keep
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        return False


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close after an answer whose body was not read: stop sending, then read (and drop) a little
    for a moment, so the client's stack delivers the answer instead of resetting the connection."""
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(1.0):
            for _ in range(16):
                if not await reader.read(16 * 1024):
                    return
    except (TimeoutError, ConnectionError, OSError):
        pass


def _parse_head(raw: bytes, peer: str) -> tuple[Request, bool]:
    try:
        text = raw.decode("latin-1")
    except UnicodeDecodeError:                                 # latin-1 decodes every byte
        raise _Refuse(400, "request head not readable") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
        raise _Refuse(400, "bad request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or " " in name:
            raise _Refuse(400, "bad header line")
        key = name.lower()
        if key in ("content-length", "transfer-encoding", "authorization") and key in headers:
            raise _Refuse(400, f"{name} given twice")
        headers[key] = value.strip()
    conn = headers.get("connection", "").lower()
    keep = "close" not in conn and (version == "HTTP/1.1" or "keep-alive" in conn)
    return Request(method.upper(), target.split("?", 1)[0], headers, b"", peer), keep


def _declares_body(headers: dict[str, str]) -> bool:
    return "transfer-encoding" in headers or headers.get("content-length", "0") != "0"


async def _body(reader: asyncio.StreamReader, req: Request, cap: int) -> bytes:
    h = req.headers
    te, cl = h.get("transfer-encoding"), h.get("content-length")
    if te is not None:
        if cl is not None:
            raise _Refuse(400, "both Content-Length and Transfer-Encoding given")
        if te.lower() != "chunked":
            raise _Refuse(501, f"Transfer-Encoding {te[:40]!r} is not supported (chunked is)")
        return await _chunked(reader, cap)
    if cl is None:
        if req.method in ("POST", "PUT", "PATCH"):
            raise _Refuse(411, "Content-Length is required")
        return b""
    if not (cl.isascii() and cl.isdigit()) or len(cl) > 12:
        raise _Refuse(400, "Content-Length must be a whole number of bytes")
    n = int(cl)
    if n > cap:
        if n <= DISCARD_MAX:                     # a little over: read and drop it, answer cleanly
            while n > 0:
                n -= len(await reader.readexactly(min(n, 64 * 1024)))
            raise _Refuse(413, f"body over {cap} bytes", keep=True)
        raise _Refuse(413, f"body over {cap} bytes")
    return await reader.readexactly(n) if n else b""


async def _chunked(reader: asyncio.StreamReader, cap: int) -> bytes:
    out = bytearray()
    while True:
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise _Refuse(400, "chunk size line too long") from None
        size_text = line[:-2].split(b";", 1)[0].strip()
        if not size_text or len(size_text) > 8 or not all(c in b"0123456789abcdefABCDEF" for c in size_text):
            raise _Refuse(400, "bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(out) + size > cap:
            raise _Refuse(413, f"body over {cap} bytes")
        out += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise _Refuse(400, "chunk not followed by CRLF")
    for _ in range(64):                                       # trailers, then the blank line
        try:
            line = await reader.readuntil(b"\r\n")
        except asyncio.LimitOverrunError:
            raise _Refuse(400, "trailer line too long") from None
        if line == b"\r\n":
            return bytes(out)
    raise _Refuse(400, "too many trailer lines")


def serve(address: tuple[str, int], app: App, limits: Limits, name: str) -> Server:
    return Server(address, app, limits, name).start()

