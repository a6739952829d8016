"""The Docker Engine API, as much of it as one `provisioner run` needs, over the local unix socket.

Why not the docker SDK: before its first call a short run pays ~0.2 s for it (docker, requests,
urllib3, http.client and ssl imports, then a /version round trip), as much as the whole overhead
budget of a `true` job (bench/runner_overhead.py). This client speaks HTTP/1.1 on an AF_UNIX socket
with the standard library's socket and json only, one connection per call (a local connect costs
microseconds), to the unversioned API paths (the engine's own version: no negotiation round trip).

The calls, named for what they do, are the engine interface the runner uses; `SdkEngine`
(engine_sdk.py) is the same interface over the docker SDK, for a DOCKER_HOST that is not a unix
socket (tcp://, ssh://, TLS) and for pulls (registry credentials, credential helpers).

Errors keep the engine's status and message: `NotFound` (404), `EngineError` (any other refusal),
`Unreachable` (nothing answers on the socket), `EngineTimeout` (no answer in time).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any, Iterator, Mapping
from urllib.parse import quote, urlencode

from provisioner.runner.engine_errors import (DISTRIBUTION_TIMEOUT_S, EngineError, EngineTimeout,  # noqa: F401
                                              NotFound, Unreachable)

DEFAULT_SOCKET = "/var/run/docker.sock"
CALL_TIMEOUT_S = 60.0     # the docker SDK's default
RECV_BYTES = 65536


def connect(environ: Mapping[str, str] = os.environ) -> Any:
    """The engine DOCKER_HOST names: unset or unix:// -> UnixEngine (nothing is sent yet);
    anything else -> SdkEngine over `docker.from_env()` (DockerException when that fails)."""
    host = environ.get("DOCKER_HOST") or ""
    if not host or host.startswith("unix://"):
        return UnixEngine(host[len("unix://"):] or DEFAULT_SOCKET, environ)
    import docker
    from provisioner.runner.engine_sdk import SdkEngine
    return SdkEngine(docker.from_env(environment=dict(environ)))


def as_engine(client: Any) -> Any:
    """An engine from what a caller holds: a docker SDK client is wrapped, an engine kept as is."""
    if hasattr(client, "containers") and hasattr(client, "api"):
        from provisioner.runner.engine_sdk import SdkEngine
        return SdkEngine(client)
    return client


class _Conn:
    """One HTTP exchange on its own socket, with a receive buffer."""

    def __init__(self, sock: socket.socket):
        self.sock, self.buf = sock, bytearray()
        self.closed = False

    def fill(self) -> bool:
        """Receive more into the buffer; False at the end of the stream (or once closed here)."""
        try:
            chunk = self.sock.recv(RECV_BYTES)
        except TimeoutError:
            raise EngineTimeout("the Docker engine did not answer in time") from None
        except OSError as exc:
            if self.closed:
                return False
            raise Unreachable(f"connection to the Docker engine lost: {exc}") from None
        self.buf += chunk
        return bool(chunk)

    def readline(self) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            if not self.fill():
                end = len(self.buf) - 1
                break
        line = bytes(self.buf[:end + 1])
        del self.buf[:end + 1]
        return line

    def read(self, n: int) -> bytes:
        """Exactly n bytes (fewer only at the end of the stream)."""
        while len(self.buf) < n and self.fill():
            pass
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def close(self) -> None:
        """Also from another thread: a reader blocked in recv sees the end of the stream."""
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class _Response:
    def __init__(self, conn: _Conn, status: int, headers: dict[str, str]):
        self.conn, self.status, self.headers = conn, status, headers

    def pieces(self) -> Iterator[bytes]:
        """The body as it arrives: chunked, by Content-Length, or up to the end of the stream."""
        conn = self.conn
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            while True:
                line = conn.readline()
                if not line:
                    return
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                data = conn.read(size)
                conn.read(2)  # CRLF after each chunk
                yield data
        elif "content-length" in self.headers:
            size = int(self.headers["content-length"])
            if size:
                yield conn.read(size)
        else:
            while conn.buf or conn.fill():
                yield bytes(conn.buf)
                conn.buf.clear()

    def body(self) -> bytes:
        return b"".join(self.pieces())


def _error(status: int, body: bytes) -> EngineError:
    try:
        message = json.loads(body).get("message") or ""
    except (ValueError, AttributeError):
        message = body.decode("utf-8", "replace").strip()
    message = message or f"HTTP {status}"
    return NotFound(message, status) if status == 404 else EngineError(message, status)


def registry_auth_header(ref: str, auth_config: dict | None = None) -> str | None:
    """The X-Registry-Auth value for `ref`'s registry: `auth_config`, else what docker's config
    (~/.docker/config.json, credential helpers) holds for it; None when there is nothing to send."""
    try:
        from docker import auth
        if auth_config is None:
            registry, _ = auth.resolve_repository_name(ref)
            auth_config = auth.resolve_authconfig(auth.load_config(), registry)
        return auth.encode_header(auth_config).decode("ascii") if auth_config else None
    except Exception:
        return None         # no docker SDK, an unreadable config, a failing helper: ask anonymously


class UnixEngine:
    """The Engine API on a unix socket (default /var/run/docker.sock)."""

    def __init__(self, path: str = DEFAULT_SOCKET, environ: Mapping[str, str] = os.environ):
        self.path, self._environ = path, environ
        self._sdk: Any = None

    def __repr__(self) -> str:
        return f"UnixEngine(unix://{self.path})"

    # -- HTTP --------------------------------------------------------------------------------------
    def _open(self, method: str, path: str, body: Any = None, timeout: float | None = CALL_TIMEOUT_S,
              upgrade: bool = False, headers: Mapping[str, str] | None = None) -> _Response:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise Unreachable(f"cannot connect to unix://{self.path}: {exc.strerror or exc}") from None
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", "Host: docker", "User-Agent: provisioner"]
        head += ["Connection: Upgrade", "Upgrade: tcp"] if upgrade else ["Connection: close"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body is not None:
            head.append("Content-Type: application/json")
        if body is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(data)}")
        conn = _Conn(sock)
        try:
            try:
                sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
            except TimeoutError:
                raise EngineTimeout("the Docker engine did not answer in time") from None
            except OSError as exc:
                raise Unreachable(f"connection to the Docker engine lost: {exc}") from None
            status_line = conn.readline().split(None, 2)
            if len(status_line) < 2 or not status_line[1].isdigit():
                raise Unreachable("the Docker engine closed the connection without an answer")
            headers: dict[str, str] = {}
            while (line := conn.readline().strip()):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            return _Response(conn, int(status_line[1]), headers)
        except BaseException:
            conn.close()
            raise

    def _call(self, method: str, path: str, body: Any = None,
              timeout: float | None = CALL_TIMEOUT_S, headers: Mapping[str, str] | None = None) -> Any:
        """One call: the decoded JSON answer (None when empty); EngineError for a refusal."""
        resp = self._open(method, path, body, timeout, headers=headers)
        try:
            data = resp.body()
            if resp.status >= 400:
                raise _error(resp.status, data)
            if data and "json" in resp.headers.get("content-type", ""):
                return json.loads(data)
            return data.decode("utf-8", "replace") if data else None
        except ValueError:  # a bad chunk size, a truncated or garbled JSON body
            raise EngineError(f"malformed answer from the Docker engine to {method} {path}") from None
        finally:
            resp.conn.close()

    # -- the calls ---------------------------------------------------------------------------------
    def ping(self) -> None:
        self._call("GET", "/_ping")

    def list_containers(self, label: str) -> list[dict]:
        """Every container (running or not) carrying `label` (KEY or KEY=VALUE), as /containers/json
        lists them (Id, Names, Labels, State...)."""
        query = urlencode({"all": "1", "filters": json.dumps({"label": [label]})})
        return self._call("GET", f"/containers/json?{query}") or []

    def inspect_image(self, ref: str, timeout: float | None = CALL_TIMEOUT_S) -> dict:
        return self._call("GET", f"/images/{quote(ref, safe='/:@')}/json", timeout=timeout)

    def distribution(self, ref: str, auth_config: dict | None = None,
                     timeout: float = DISTRIBUTION_TIMEOUT_S) -> dict:
        """What the registry says of `ref` without pulling it: {"Descriptor": {...}, "Platforms":
        [{"os", "architecture", "variant"?}, ...]} (Platforms may be null or empty when the engine
        cannot tell). The engine asks the registry with the credentials sent along: `auth_config`,
        else docker's credential config for the image's registry, as the docker CLI sends them."""
        auth = registry_auth_header(ref, auth_config)
        return self._call("GET", f"/distribution/{quote(ref, safe='/:@')}/json", timeout=timeout,
                          headers={"X-Registry-Auth": auth} if auth else None)

    def pull_image(self, repo: str, tag: str | None, auth_config: dict | None = None, progress: Any = None) -> None:
        """Through the docker SDK (registry credentials, credential helpers), on this socket."""
        from provisioner.runner.engine_sdk import SdkEngine, sdk_errors
        if self._sdk is None:
            with sdk_errors():
                import docker
                self._sdk = docker.DockerClient(base_url=f"unix://{self.path}")
        SdkEngine(self._sdk).pull_image(repo, tag, auth_config, progress)

    def create_container(self, create_kwargs: Mapping[str, Any]) -> str:
        """Create from docker SDK `containers.create` keyword arguments (the same JSON the SDK
        sends, docker client proxy variables included); the new container's id."""
        from provisioner.runner.engine_create import (CreateArgumentError, create_request,
                                                      proxy_environment)
        try:
            query, body = create_request(create_kwargs, proxy_environment(self._environ))
        except CreateArgumentError as exc:
            raise EngineError(str(exc)) from None
        return self._call("POST", f"/containers/create?{urlencode(query)}", body)["Id"]

    def attach(self, cid: str, tty: bool = False) -> "OutputStream":
        """The container's output from its start (attach before starting it): stdout and stderr
        kept apart unless it has a TTY."""
        resp = self._open("POST", f"/containers/{cid}/attach?logs=1&stream=1&stdout=1&stderr=1",
                          timeout=None, upgrade=True)
        if resp.status >= 400:
            try:
                raise _error(resp.status, resp.body())
            finally:
                resp.conn.close()
        return OutputStream(resp.conn, tty)

    def start(self, cid: str) -> None:
        self._call("POST", f"/containers/{cid}/start")

    def wait(self, cid: str, timeout: float | None = None) -> dict:
        """Block until the container stops: {"StatusCode": N, ...}; EngineTimeout after `timeout`."""
        return self._call("POST", f"/containers/{cid}/wait", timeout=timeout)

    def stats(self, cid: str, stream: bool = True, decode: bool = True) -> "StatsStream":
        """The engine's stats stream (one decoded frame a second) until the container goes away or
        the stream is closed. (`stream` and `decode` as in the SDK's APIClient.stats: only the
        streamed, decoded form is offered.)"""
        if not (stream and decode):
            raise ValueError("UnixEngine.stats only streams decoded frames")
        resp = self._open("GET", f"/containers/{cid}/stats?stream=1", timeout=None)
        if resp.status >= 400:
            try:
                raise _error(resp.status, resp.body())
            finally:
                resp.conn.close()
        return StatsStream(resp)

    def kill(self, cid: str, signal: str = "SIGKILL") -> None:
        self._call("POST", f"/containers/{cid}/kill?signal={quote(signal)}")

    def inspect_container(self, cid: str) -> dict:
        return self._call("GET", f"/containers/{cid}/json")

    def remove_container(self, cid: str, force: bool = True) -> None:
        self._call("DELETE", f"/containers/{cid}?force={int(force)}")


class OutputStream:
    """An attach stream as (stdout, stderr) chunks, one of the two None each time (the docker SDK's
    demux shape). Without a TTY the engine frames each write with an 8-byte header (stream 1 or 2,
    three zero bytes, big-endian length); frames of one stream that arrived together are joined.
    With a TTY the bytes come raw, all as stdout."""

    def __init__(self, conn: _Conn, tty: bool = False):
        self._conn, self._tty = conn, tty

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        conn, buf = self._conn, self._conn.buf
        try:
            while True:
                if self._tty:
                    if buf:
                        yield bytes(buf), None
                        buf.clear()
                else:
                    yield from self._frames(buf)
                if not conn.fill():
                    return
        finally:
            conn.close()

    @staticmethod
    def _frames(buf: bytearray) -> Iterator[tuple[bytes | None, bytes | None]]:
        parts: list[list] = []
        pos, n = 0, len(buf)
        while n - pos >= 8:
            end = pos + 8 + int.from_bytes(buf[pos + 4:pos + 8], "big")
            if end > n:
                break
            is_err = buf[pos] >= 2  # 2 stderr (3: the engine's own error text)
            if parts and parts[-1][0] == is_err:
                parts[-1][1] += buf[pos + 8:end]
            else:
                parts.append([is_err, buf[pos + 8:end]])
            pos = end
        del buf[:pos]
        for is_err, data in parts:
            yield (None, bytes(data)) if is_err else (bytes(data), None)

    def close(self) -> None:
        self._conn.close()


class StatsStream:
    """Decoded stats frames, one JSON object per line of the (chunked) body."""

    def __init__(self, resp: _Response):
        self._resp = resp

    def __iter__(self) -> Iterator[dict]:
        rest = b""
        try:
            for piece in self._resp.pieces():
                *lines, rest = (rest + piece).split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
        finally:
            self._resp.conn.close()

    def close(self) -> None:
        self._resp.conn.close()
