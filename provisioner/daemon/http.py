"""The daemon's HTTP port: /metrics, /healthz, and the agent API (CONTRACTS.md 'Agent -> daemon').

POST /v1/usage   Bearer token of one agent; body = one usage record. 201 stored, 200 already
                 present (same key), 400 invalid (the message names the field), 401 wrong token.
                 `node` and `queue_id` are filled from the token's agent.
POST /v1/samples same auth; {run_id, at, cpu_pct, mem_bytes, gpu_util_pct} -> 204.
Either post means the agent's build is running: its node is drained before the answer, so a build
that reports can never be followed by a second one on the same agent, however short it is.
Tokens are never logged; request logs carry the path and status only.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from provisioner import records
from provisioner.daemon.metrics import DaemonMetrics, Sample
from provisioner.daemon.state import Tokens

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
_QUEUE_ID = re.compile(r"-q(\d+)(?:-\d+)?$")


@dataclass
class Health:
    """Heartbeat of the loop: `beat()` after every tick (and while waiting for the lease)."""

    stuck_after_s: float
    started: float = 0.0
    last: float | None = None
    state: str = "starting"          # starting | waiting-for-lease | running | stopping
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        self.started = self.started or self.clock()

    def beat(self, state: str = "running") -> None:
        self.last, self.state = self.clock(), state

    def status(self) -> tuple[int, dict]:
        now = self.clock()
        age = now - (self.last if self.last is not None else self.started)
        ok = age <= self.stuck_after_s
        return (200 if ok else 503), {"status": "ok" if ok else "stuck", "state": self.state,
                                      "last_tick_age_s": round(age, 3)}


class AgentApi:
    """The agent endpoints' logic, separate from HTTP plumbing so it is easy to test."""

    def __init__(self, tokens: Tokens, metrics: DaemonMetrics, open_store: Callable[[], Any],
                 on_record: Callable[[dict], None] | None = None,
                 on_report: Callable[[str], Any] | None = None):
        self.tokens, self.metrics, self._open_store = tokens, metrics, open_store
        self._on_record = on_record          # the planner reads the job's history again; alerts
        self._on_report = on_report          # drains the reporting agent's node

    def reporting(self, node: str) -> None:
        """The agent of `node` posted: its build runs. Drain it (a failure never fails the post)."""
        if self._on_report is None:
            return
        try:
            self._on_report(node)
        except Exception as exc:
            log.warning("%s", json.dumps({"event": "drain.failed", "node": node, "via": "agent-api",
                                          "error": type(exc).__name__, "detail": str(exc)[:200]}))

    def node_for(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        return self.tokens.node_of(authorization[len("Bearer "):].strip())

    def usage(self, node: str, body: Any) -> tuple[int, dict]:
        try:
            record = records.normalise(body)
        except records.RecordError as exc:
            self.metrics.usage_records.labels("invalid").inc()
            return 400, {"error": str(exc), "field": exc.field}
        record["node"] = node
        m = _QUEUE_ID.search(node)
        if m:
            record["queue_id"] = m.group(1)
        with self._open_store() as store:
            added = store.add(record)
        self.metrics.usage_records.labels("stored" if added else "repeated").inc()
        if added and self._on_record is not None:
            self._on_record(record)
        log.info("%s", json.dumps({"event": "usage.received", "node": node, "job": record["job"],
                                   "run_id": record["run_id"], "new": added}))
        return (201 if added else 200), {"stored": added, "run_id": record["run_id"]}

    def sample(self, node: str, body: Any) -> tuple[int, dict | None]:
        if not isinstance(body, dict):
            return 400, {"error": "body: must be a JSON object", "field": "body"}
        if not isinstance(body.get("run_id"), str) or not body["run_id"]:
            return 400, {"error": "run_id: is required", "field": "run_id"}
        if not isinstance(body.get("at"), str):
            return 400, {"error": "at: is required (ISO 8601 UTC)", "field": "at"}
        values = {}
        for name in ("cpu_pct", "mem_bytes", "gpu_util_pct"):
            v = body.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v) or v < 0):
                return 400, {"error": f"{name}: must be a number >= 0 or null", "field": name}
            values[name] = v
        self.metrics.samples.put(node, Sample(body["run_id"], body["at"], values["cpu_pct"],
                                              values["mem_bytes"], values["gpu_util_pct"], time.time()))
        self.metrics.samples_received.inc()
        return 204, None


class _Handler(BaseHTTPRequestHandler):
    server: "DaemonHttpServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:     # the default logs to stderr, per request
        log.debug("http %s", fmt % args)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path == "/metrics":
            body = generate_latest(self.server.metrics.registry)
            self._send(200, body, CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            code, obj = self.server.health.status()
            self._json(code, obj)
        else:
            self._json(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?")[0]
        if path not in ("/v1/usage", "/v1/samples"):
            self._json(404, {"error": f"no such path: {path}"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self._json(413, {"error": f"body over {MAX_BODY} bytes", "field": "body"})
            return
        raw = self.rfile.read(length) if length else b""
        api = self.server.api
        node = api.node_for(self.headers.get("Authorization"))
        if node is None:
            self._json(401, {"error": "missing or wrong agent token"}, {"WWW-Authenticate": "Bearer"})
            return
        api.reporting(node)
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            self._json(400, {"error": "body: not valid JSON", "field": "body"})
            return
        try:
            code, obj = api.usage(node, body) if path == "/v1/usage" else api.sample(node, body)
        except Exception as exc:                               # the store is away: the agent retries
            log.warning("%s", json.dumps({"event": "usage.store-failed", "node": node,
                                          "error": type(exc).__name__, "detail": str(exc)[:200]}))
            code, obj = 503, {"error": "the history store is not available; try again"}
        if obj is None:
            self._send(code, b"", None)
        else:
            self._json(code, obj)

    def _json(self, code: int, obj: dict, headers: dict | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json", headers)

    def _send(self, code: int, body: bytes, ctype: str | None, headers: dict | None = None) -> None:
        self.send_response(code)
        if ctype:
            self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(body)


class DaemonHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], metrics: DaemonMetrics, health: Health, api: AgentApi):
        self.metrics, self.health, self.api = metrics, health, api
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "DaemonHttpServer":
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                         name="daemon-http", daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)
