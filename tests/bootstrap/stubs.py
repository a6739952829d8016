"""Small HTTP stubs on 127.0.0.1 for the bootstrap's tests: instance metadata (IMDSv2 enforced)
and the daemon's usage API. Containers reach them through host networking, or (`host=`: an address
of a network namespace's veth, tests/netns.py) from inside a namespace the test made."""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1"):
        self.httpd = ThreadingHTTPServer((host, 0), handler)
        self.httpd.stub = self                         # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.httpd.server_address[0]}:{self.httpd.server_address[1]}"

    def start(self) -> "_Server":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _ImdsHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: str = "") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        stub: ImdsStub = self.server.stub               # type: ignore[attr-defined]
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self._send(400)
        stub.log.append(("PUT", self.path, True))
        self._send(200, stub.token)

    def do_GET(self) -> None:
        stub: ImdsStub = self.server.stub               # type: ignore[attr-defined]
        ok = self.headers.get("X-aws-ec2-metadata-token") == stub.token
        stub.log.append(("GET", self.path, ok))
        if not ok:
            return self._send(401)                      # IMDSv2 only: no token, no data
        key = self.path.removeprefix("/latest/meta-data/")
        value = stub.data.get(key)
        if value is None:
            return self._send(404)
        self._send(200, value)


class ImdsStub(_Server):
    """IMDSv2: PUT /latest/api/token; GET /latest/meta-data/... with the token, else 401.
    `spot/instance-action` exists only after `notify()`; `rotate_token()` makes old tokens 401."""

    def __init__(self, data: dict[str, str] | None = None, host: str = "127.0.0.1"):
        super().__init__(_ImdsHandler, host)
        self.token = secrets.token_hex(16)
        self.log: list[tuple[str, str, bool]] = []
        self.data = {"instance-id": "i-0stub", "instance-type": "m5.large", "placement/region": "us-east-1",
                     "instance-life-cycle": "spot", **(data or {})}

    def notify(self, action: str = "terminate", time: str = "2030-01-01T00:02:00Z") -> None:
        self.data["spot/instance-action"] = json.dumps({"action": action, "time": time})

    def rotate_token(self) -> None:
        self.token = secrets.token_hex(16)


class _ReportHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        stub: ReportStub = self.server.stub             # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Authorization") != f"Bearer {stub.token}":
            status = 401
        elif self.path == "/v1/usage":
            stub.records.append(json.loads(body))
            status = 201
        elif self.path == "/v1/samples":
            stub.samples.append(json.loads(body))
            status = 204
        elif self.path == "/v1/events":
            stub.events.append(json.loads(body))
            status = 202
        else:
            status = 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


class ReportStub(_Server):
    """The daemon's POST /v1/usage, /v1/samples and /v1/events with a bearer token (docs/contracts.md)."""

    def __init__(self, token: str = "report-token-1"):
        super().__init__(_ReportHandler)
        self.token = token
        self.records: list[dict] = []
        self.samples: list[dict] = []
        self.events: list[dict] = []
