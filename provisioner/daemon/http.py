"""The daemon's HTTP port: /metrics, /healthz, and the agent API (docs/security.md has the threat model).

POST /v1/usage   Bearer token of one agent; body = one usage record. 201 stored, 200 already
                 present (same key), 400 invalid (the message names the field), 401 wrong, unknown
                 or expired token, 403 a record for a job the agent's build is not (see below), 413
                 body over `daemon.api.max_body_bytes`, 429 past `daemon.api.records_per_min`, 503
                 the store is away or the daemon has not looked at its agents yet (retry).
                 `node` and `queue_id` are filled from the token's agent; `build` from the build
                 the daemon saw run on that node.
POST /v1/samples same auth and caps (`samples_per_min`); {run_id, at, cpu_pct, mem_bytes, gpu_util_pct} -> 204.
POST /v1/events  same auth and caps (`records_per_min`): the instance's own failure report,
                 {code: bootstrap-failed | agent-exited, exit_code, message, log_tail: [lines]} -> 202;
                 the loop judges it on its next tick (daemon/bootfail.py). It drains nothing.
A usage or samples post means the agent's build is running: its node is drained before the answer, so a build
that reports can never be followed by a second one on the same agent, however short it is.

Which job an agent may write for: the builds of a node are those /computer showed on its executors
(read again on demand when none was seen yet). A run record is accepted for a build's job or a job
under `<job>/`; a build record (`kind: build`) takes its job and build from that build. Anything
else is 403, logged (`usage.refused`) and counted (`provisioner_agent_api_refused_total{reason}`).
Tokens are never logged; request logs carry the path and status only.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from provisioner import records
from provisioner.daemon.agents import Build
from provisioner.daemon.httpio import Limits, Request, Response, Server, error
from provisioner.daemon.metrics import DaemonMetrics, Sample
from provisioner.daemon.state import Tokens

log = logging.getLogger(__name__)
_QUEUE_ID = re.compile(r"-q(\d+)(?:-\d+)?$")
_INT64 = 2 ** 63
AGENT_PATHS = ("/v1/usage", "/v1/samples", "/v1/events")
EVENT_CODES = ("bootstrap-failed", "agent-exited")
LOG_EVERY_S = 60.0                 # a refusal is logged once a minute per node and reason (all are counted)


@dataclass(frozen=True)
class ApiLimits:
    """`daemon.api` in the configuration."""

    max_body_bytes: int = 32 * 1024
    records_per_min: int = 30
    samples_per_min: int = 120
    token_grace_s: float = 900.0

    @classmethod
    def from_config(cls, api: Any) -> "ApiLimits":
        """From `config.daemon.api` (config_tree.ApiSection); what it leaves None keeps the default."""
        d = cls()

        def get(key: str) -> Any:
            value = getattr(api, key, None)
            return getattr(d, key) if value is None else value
        return cls(int(get("max_body_bytes")), int(get("records_per_min")), int(get("samples_per_min")),
                   float(get("token_grace_s")))


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


class Refused(Exception):
    def __init__(self, code: int, reason: str, message: str, field: str | None = None,
                 node: str | None = None):
        self.code, self.reason, self.message, self.field, self.node = code, reason, message, field, node
        super().__init__(message)


class AgentApi:
    """The agent endpoints' logic, separate from HTTP plumbing so it is easy to test."""

    def __init__(self, tokens: Tokens, metrics: DaemonMetrics, open_store: Callable[[], Any],
                 on_record: Callable[[dict], None] | None = None,
                 on_report: Callable[[str], Any] | None = None, *,
                 node_builds: Callable[[str], Iterable[str]] | None = None,
                 build_result: Callable[[str, str], str | None] | None = None,
                 limits: ApiLimits = ApiLimits(), on_event: Callable[[str, dict], None] | None = None):
        self.tokens, self.metrics, self._open_store = tokens, metrics, open_store
        self.book = tokens.book
        self._on_record = on_record          # the planner reads the job's history again; alerts
        self._on_report = on_report          # drains the reporting agent's node
        self._node_builds = node_builds      # Jenkins: the build URLs on a node's executors now
        self._build_result = build_result    # Jenkins: a finished build's result word
        self._on_event = on_event            # the loop's BootWatch: an instance's failure report
        self.limits = limits
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}   # (node, reason) -> (logged at, quiet)
        self._logged_lock = threading.Lock()

    def refuse(self, node: str | None, exc: Refused, **context: Any) -> None:
        """Count a refusal; log it (403, 429, an expired token) at most once a minute per node and reason."""
        self.metrics.api_refused.labels(exc.reason).inc()
        node = node or exc.node
        if not (exc.code in (403, 429) or exc.reason == "expired"):
            return
        key, now = (node or "", exc.reason), time.monotonic()
        with self._logged_lock:
            last, quiet = self._logged.get(key, (None, 0))
            if last is not None and now - last < LOG_EVERY_S:
                self._logged[key] = (last, quiet + 1)
                return
            self._logged[key] = (now, 0)
            if len(self._logged) > 10_000:               # forget the oldest half
                for k in sorted(self._logged, key=lambda k: self._logged[k][0])[:5_000]:
                    del self._logged[k]
        log.warning("%s", json.dumps({"event": "usage.refused", "node": node, "reason": exc.reason,
                                      "status": exc.code, "quiet_since_last": quiet, **context},
                                     default=str)[:1000])

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
        """The node of a valid, live token; None otherwise (see `authenticate` for why)."""
        try:
            return self.authenticate(authorization)
        except Refused:
            return None

    def authenticate(self, authorization: str | None) -> str:
        """The node whose token this is; Refused 401 (not ours, or its node gone) or 503."""
        if not authorization or not authorization.startswith("Bearer "):
            raise Refused(401, "token", "missing or wrong agent token")
        node = self.tokens.node_of(authorization[len("Bearer "):].strip())
        if node is None:
            raise Refused(401, "token", "missing or wrong agent token")
        alive = self.book.alive(node)
        if alive is None:
            raise Refused(503, "starting", "the daemon is starting; try again")
        if not alive:
            raise Refused(401, "expired", "agent token expired (its node is gone)", node=node)
        return node

    def admit(self, node: str, path: str) -> None:
        kind, per_min = (("usage", self.limits.records_per_min) if path == "/v1/usage"
                         else ("events", self.limits.records_per_min) if path == "/v1/events"
                         else ("samples", self.limits.samples_per_min))
        if not self.book.allow(node, kind, per_min):
            raise Refused(429, "rate", f"more than {per_min} {kind} posts a minute from this agent")

    # -- usage records ----------------------------------------------------------------------------
    def usage(self, node: str, body: Any) -> tuple[int, dict]:
        try:
            if isinstance(body, dict):
                _storable(body)
            record = records.normalise(body)
        except records.RecordError as exc:
            self.metrics.usage_records.labels("invalid").inc()
            return 400, {"error": str(exc), "field": exc.field}
        except (ValueError, TypeError, OverflowError) as exc:
            self.metrics.usage_records.labels("invalid").inc()
            return 400, {"error": f"record: {exc}"[:300], "field": "record"}
        try:
            self._bind(node, record)
        except Refused as exc:
            self.refuse(node, exc, job=str(record.get("job"))[:200], build=str(record.get("build"))[:40])
            return exc.code, {"error": exc.message, "field": exc.field or "job"}
        if record.get("kind") == "build":
            self._result(record)
        record["node"] = node
        m = _QUEUE_ID.search(node)
        record["queue_id"] = m.group(1) if m else None
        with self._open_store() as store:
            added = store.add(record)
        self.metrics.usage_records.labels("stored" if added else "repeated").inc()
        if added and self._on_record is not None:
            self._on_record(record)
        log.info("%s", json.dumps({"event": "usage.received", "node": node, "job": record["job"],
                                   "run_id": record["run_id"], "new": added}))
        return (201 if added else 200), {"stored": added, "run_id": record["run_id"]}

    def _builds(self, node: str, claimed: object = None) -> list[Build]:
        """The builds seen on `node`, read again from Jenkins when none is known yet or the record
        claims one not seen (a reused agent's next build can post before the loop's next read)."""
        builds = self.book.builds(node)
        unknown = claimed not in (None, "") and all(b.number != claimed for b in builds)
        if (not builds or unknown) and self._node_builds is not None:
            try:
                urls = list(self._node_builds(node))
            except Exception as exc:               # Jenkins away: the agent retries later
                raise Refused(503, "jenkins", f"cannot read the node's builds from Jenkins ({type(exc).__name__})")
            self.book.note_builds(node, urls)
            builds = self.book.builds(node)
        return builds

    def _bind(self, node: str, record: dict) -> None:
        """Fill `job` and `build` from what ran on `node`; Refused 403 for anything else."""
        builds = self._builds(node, record.get("build"))
        if not builds:
            raise Refused(403, "no-build", "no build of this agent's node has been seen")
        job = record["job"]
        if record.get("kind") == "build":
            mine = [b for b in builds if b.job == job] if job else builds
            if not mine:
                raise Refused(403, "other-job", f"job: this agent ran {_names(builds)}, not {job[:200]!r}")
        else:
            mine = sorted((b for b in builds if b.covers(job)), key=lambda b: -len(b.job))
            if not mine:
                raise Refused(403, "other-job", f"job: this agent ran {_names(builds)}; a run record must be "
                                                f"for that job or one under '<job>/', not {job[:200]!r}")
        claimed = record.get("build")
        chosen = next((b for b in mine if b.number == claimed), mine[-1] if record.get("kind") == "build"
                      else mine[0])
        if record.get("kind") == "build":
            record["job"] = chosen.job
        if claimed not in (None, "", chosen.number):
            log.info("%s", json.dumps({"event": "usage.build-corrected", "node": node, "job": job[:200],
                                       "claimed": str(claimed)[:40], "build": chosen.number}))
        record["build"] = chosen.number

    def _result(self, record: dict) -> None:
        """A build record's result, exit code and `interrupted` from Jenkins when it can tell (the
        agent's own reading is kept when Jenkins is away or the build still runs)."""
        if self._build_result is None:
            return
        try:
            result = self._build_result(record["job"], record["build"])
        except Exception as exc:               # Jenkins away: the watcher's reading stands
            log.info("%s", json.dumps({"event": "usage.result-unread", "job": record["job"][:200],
                                       "build": record["build"], "error": type(exc).__name__}))
            return
        if result in records.RESULT_EXIT_CODES:
            record["result"], record["exit_code"] = result, records.RESULT_EXIT_CODES[result]
            record["interrupted"] = result == "ABORTED"

    # -- failure reports ----------------------------------------------------------------------------
    def event(self, node: str, body: Any) -> tuple[int, dict]:
        """An instance's own failure report: checked here, judged by the loop on its next tick."""
        if not isinstance(body, dict):
            return 400, {"error": "body: must be a JSON object", "field": "body"}
        if body.get("code") not in EVENT_CODES:
            return 400, {"error": f"code: must be one of {', '.join(EVENT_CODES)}", "field": "code"}
        exit_code = body.get("exit_code")
        if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int)
                                      or not -(2 ** 31) <= exit_code < 2 ** 31):
            return 400, {"error": "exit_code: must be an integer or null", "field": "exit_code"}
        message = body.get("message")
        if message is not None and not isinstance(message, str):
            return 400, {"error": "message: must be a string", "field": "message"}
        tail = body.get("log_tail")
        if tail is not None and not (isinstance(tail, list) and all(isinstance(x, str) for x in tail)):
            return 400, {"error": "log_tail: must be a list of strings", "field": "log_tail"}
        report = {"code": body["code"], "exit_code": exit_code, "message": (message or "")[:500],
                  "log_tail": [x[:300] for x in (tail or [])[-50:]]}
        if self._on_event is not None:
            self._on_event(node, report)
        log.info("%s", json.dumps({"event": "agent.event-received", "node": node, "code": report["code"],
                                   "exit_code": exit_code}))
        return 202, {"accepted": True}

    # -- samples ------------------------------------------------------------------------------------
    def sample(self, node: str, body: Any) -> tuple[int, dict | None]:
        if not isinstance(body, dict):
            return 400, {"error": "body: must be a JSON object", "field": "body"}
        if not isinstance(body.get("run_id"), str) or not body["run_id"] or len(body["run_id"]) > 200:
            return 400, {"error": "run_id: is required (a string of at most 200 characters)", "field": "run_id"}
        if not isinstance(body.get("at"), str) or len(body["at"]) > 64:
            return 400, {"error": "at: is required (ISO 8601 UTC)", "field": "at"}
        values = {}
        for name in ("cpu_pct", "mem_bytes", "gpu_util_pct"):
            v = body.get(name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not _finite(v) or v < 0):
                return 400, {"error": f"{name}: must be a number >= 0 or null", "field": name}
            values[name] = None if v is None else float(v)
        if not self.book.builds(node):               # the build starts: note it for the records to come
            try:
                self._builds(node)
            except Refused:
                pass
        self.metrics.samples.put(node, Sample(body["run_id"], body["at"], values["cpu_pct"],
                                              values["mem_bytes"], values["gpu_util_pct"], time.time()))
        self.metrics.samples_received.inc()
        return 204, None


def _names(builds: list[Build]) -> str:
    return ", ".join(f"{b.job[:100]!r} #{b.number}" for b in builds[:4])


def _finite(v: float) -> bool:
    try:
        return math.isfinite(v) and abs(v) < 1e300
    except OverflowError:
        return False


def _storable(record: dict) -> None:
    """What the store cannot take is 400 here, never a 503 the agent would retry for ever."""
    for k, v in record.items():
        if isinstance(v, int) and not isinstance(v, bool) and not -_INT64 <= v < _INT64:
            raise records.RecordError(k, "must fit in 64 bits")
        if isinstance(v, float) and not _finite(v):
            raise records.RecordError(k, "must be a finite number")
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise records.RecordError(k, "must be valid Unicode text (no lone surrogates)") from None
        elif isinstance(v, (dict, list)):
            try:
                json.dumps(v).encode("utf-8")
            except (ValueError, RecursionError):
                raise records.RecordError(k, "not storable") from None


class DaemonApp:
    """Routes of the daemon's port (httpio.App). `serve_metrics` False: /metrics lives elsewhere."""

    def __init__(self, metrics: DaemonMetrics, health: Health, api: AgentApi | None,
                 metrics_token: str | None = None, serve_metrics: bool = True):
        self.metrics, self.health, self.api = metrics, health, api
        self._metrics_token, self._serve_metrics = metrics_token, serve_metrics

    def head(self, req: Request) -> Response | None:
        if req.method == "GET" and req.path == "/healthz":
            code, obj = self.health.status()
            return _json(code, obj)
        if req.method == "GET" and req.path == "/metrics" and self._serve_metrics:
            if self._metrics_token and not _bearer_is(req.headers.get("authorization"), self._metrics_token):
                return error(401, "/metrics needs its bearer token", close=False,
                             headers={"WWW-Authenticate": "Bearer"})
            return None
        if req.path in AGENT_PATHS and self.api is not None:
            if req.method != "POST":
                return error(405, f"{req.path} takes POST", close=False, headers={"Allow": "POST"})
            try:
                node = self.api.authenticate(req.headers.get("authorization"))
                self.api.admit(node, req.path)
            except Refused as exc:
                self.api.refuse(None, exc, path=req.path)
                headers = {"WWW-Authenticate": "Bearer"} if exc.code == 401 else \
                    {"Retry-After": "5"} if exc.code in (429, 503) else {}
                return error(exc.code, exc.message, close=False, headers=headers)
            req.context["node"] = node
            return None
        return error(404, f"no such path: {req.path[:200]}", close=False)

    def handle(self, req: Request) -> Response:
        if req.path == "/metrics":
            return Response(200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST)
        api, node = self.api, req.context["node"]
        assert api is not None
        if req.path != "/v1/events":                           # a failure report is no build start
            api.reporting(node)
        try:
            body = json.loads(req.body or b"null")
        except (ValueError, RecursionError):
            return error(400, "body: not valid JSON", close=False, field_name="body")
        try:
            code, obj = api.usage(node, body) if req.path == "/v1/usage" else \
                api.event(node, body) if req.path == "/v1/events" else api.sample(node, body)
        except Exception as exc:                               # the store is away: the agent retries
            log.warning("%s", json.dumps({"event": "usage.store-failed", "node": node,
                                          "error": type(exc).__name__, "detail": str(exc)[:200]}))
            code, obj = 503, {"error": "the history store is not available; try again"}
        return Response(code) if obj is None else _json(code, obj)


def _json(code: int, obj: dict) -> Response:
    return Response(code, json.dumps(obj).encode(), "application/json")


def _bearer_is(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


class DaemonHttpServer(Server):
    """The daemon's port. `metrics_token`: /metrics wants it as a bearer token; `serve_metrics`
    False when `daemon.metrics_listen` serves /metrics on its own address (see `metrics_server`)."""

    def __init__(self, address: tuple[str, int], metrics: DaemonMetrics, health: Health, api: AgentApi | None,
                 *, metrics_token: str | None = None, serve_metrics: bool = True, limits: Limits | None = None,
                 name: str = "daemon-http"):
        self.metrics, self.health, self.api = metrics, health, api
        if limits is None:
            limits = Limits(max_body_bytes=api.limits.max_body_bytes if api is not None else Limits.max_body_bytes)
        super().__init__(address, DaemonApp(metrics, health, api, metrics_token, serve_metrics), limits, name)


def metrics_server(address: tuple[str, int], metrics: DaemonMetrics, health: Health,
                   metrics_token: str | None = None) -> DaemonHttpServer:
    """/metrics and /healthz alone, on `daemon.metrics_listen`."""
    return DaemonHttpServer(address, metrics, health, None, metrics_token=metrics_token,
                            name="daemon-metrics").start()


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)
