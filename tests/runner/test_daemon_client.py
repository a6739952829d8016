"""Runner -> daemon reports against a small local HTTP server (127.0.0.1) that checks the token."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from provisioner.runner.daemon_client import Reporter, reporter_from_env, safe_url
from tests.http_stub import QuietHandler, serving

TOKEN = "s3cr3t-agent-token"
RECORD = {"job": "app/main", "build": "7", "run_id": "0b6c4f1e-run-1", "start": "2026-01-02T03:04:05Z",
          "duration_s": 12.5, "exit_code": 0}


class FakeDaemon(ThreadingHTTPServer):
    """Answers /v1/usage and /v1/samples like the daemon; `script` queues the next statuses per path."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.script: dict[str, list[int]] = {"/v1/usage": [], "/v1/samples": []}
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path: str, body: dict) -> tuple[int, dict | None]:
        if self.script[path]:
            status = self.script[path].pop(0)
            return status, {"error": "exit_code: is required"} if status == 400 else None
        return (201, {"ok": True}) if path == "/v1/usage" else (204, None)


class _Handler(QuietHandler):
    server: FakeDaemon

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                     "body": body})
        if self.path not in self.server.script:
            status, reply = 404, None
        elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
            status, reply = 401, {"error": "unknown token"}
        else:
            status, reply = self.server.answer(self.path, body)
        data = json.dumps(reply).encode() if reply is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    with serving(FakeDaemon()) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make(tmp_path: Path, sleeps: list[float]):
    def build(url: str, token: str = TOKEN, **kwargs: Any) -> Reporter:
        kwargs.setdefault("attempts", 3)
        return Reporter(url, token, spool_dir=tmp_path / "spool", sleep=sleeps.append, **kwargs)
    return build


@pytest.fixture
def closed_port_url() -> str:
    """A 127.0.0.1 URL where nothing listens: connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def spool_files(tmp_path: Path, pattern: str = "*.json") -> list[Path]:
    return sorted((tmp_path / "spool").glob(pattern))


@pytest.fixture(autouse=True)
def no_token_in_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert TOKEN not in caplog.text


# ---- usage records ------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [201, 200], ids=["created", "repeated-run-id"])
def test_a_record_is_posted_with_the_bearer_token(daemon: FakeDaemon, make, tmp_path: Path,
                                                  status: int) -> None:
    daemon.script["/v1/usage"] = [status]
    make(daemon.url + "/").report(RECORD)
    assert daemon.requests == [{"path": "/v1/usage", "auth": f"Bearer {TOKEN}", "body": RECORD}]
    assert spool_files(tmp_path) == []


def test_an_invalid_record_is_logged_not_retried_not_spooled(daemon: FakeDaemon, make, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    daemon.script["/v1/usage"] = [400]
    make(daemon.url).report(RECORD)
    assert len(daemon.requests) == 1
    assert "exit_code: is required" in caplog.text
    assert spool_files(tmp_path) == []


def test_a_wrong_token_is_logged_not_retried_not_spooled(daemon: FakeDaemon, make, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    make(daemon.url, token="wrong-token").report(RECORD)
    assert len(daemon.requests) == 1
    assert "token was refused" in caplog.text and "wrong-token" not in caplog.text
    assert spool_files(tmp_path) == []


def test_server_errors_are_retried_with_growing_backoff(daemon: FakeDaemon, make, tmp_path: Path,
                                                        sleeps: list[float]) -> None:
    daemon.script["/v1/usage"] = [503, 500]
    make(daemon.url).report(RECORD)
    assert len(daemon.requests) == 3 and spool_files(tmp_path) == []
    assert len(sleeps) == 2 and sleeps[1] > sleeps[0] > 0


def test_an_away_daemon_spools_and_the_next_use_resends(daemon: FakeDaemon, make, tmp_path: Path,
                                                        closed_port_url: str) -> None:
    make(closed_port_url).report(RECORD)  # connection refused, 3 tries
    [spooled] = spool_files(tmp_path)
    assert json.loads(spooled.read_text()) == RECORD

    daemon.script["/v1/usage"] = [503, 503, 503]  # still away: the new record joins the spool
    second = {**RECORD, "run_id": "run-2"}
    make(daemon.url).report(second)
    assert len(spool_files(tmp_path)) == 2

    make(daemon.url).report({**RECORD, "run_id": "run-3"})  # back: this one, then both spooled
    sent = [r["body"]["run_id"] for r in daemon.requests if r["path"] == "/v1/usage"][3:]
    assert sent == ["run-3", RECORD["run_id"], "run-2"]
    assert spool_files(tmp_path) == []


def test_a_spooled_record_the_daemon_refuses_is_set_aside(daemon: FakeDaemon, make,
                                                          tmp_path: Path, closed_port_url: str) -> None:
    make(closed_port_url).report(RECORD)
    daemon.script["/v1/usage"] = [201, 400]
    make(daemon.url).report({**RECORD, "run_id": "run-2"})
    assert spool_files(tmp_path) == []
    assert [p.name for p in spool_files(tmp_path, "*.rejected")] == [f"{RECORD['run_id']}.json.rejected"]


def test_report_never_raises(make, closed_port_url: str, tmp_path: Path) -> None:
    (tmp_path / "spool").write_text("a file where the spool folder should be")
    make(closed_port_url).report(RECORD)  # cannot send, cannot spool: a warning, no exception


# ---- live samples -------------------------------------------------------------------------------

def test_a_sample_is_posted_with_an_iso_time(daemon: FakeDaemon, make) -> None:
    reporter = make(daemon.url)
    reporter.sample("run-1", 1_767_323_045.5, 97.5, 209_715_200, None)
    assert reporter.close(5)
    assert daemon.requests == [{"path": "/v1/samples", "auth": f"Bearer {TOKEN}", "body": {
        "run_id": "run-1", "at": "2026-01-02T03:04:05.500000Z", "cpu_pct": 97.5,
        "mem_bytes": 209_715_200, "gpu_util_pct": None}}]


def test_a_sample_may_come_as_the_runners_payload_dict(daemon: FakeDaemon, make) -> None:
    payload = {"run_id": "run-1", "at": "2026-01-02T03:04:05Z", "cpu_pct": 12.0, "mem_bytes": 1,
               "gpu_util_pct": 40.0}
    reporter = make(daemon.url)
    reporter.sample(payload)
    assert reporter.close(5)
    assert [r["body"] for r in daemon.requests] == [payload]


def test_samples_are_best_effort_and_warn_once(make, closed_port_url: str,
                                               caplog: pytest.LogCaptureFixture) -> None:
    reporter = make(closed_port_url)
    for _ in range(3):
        reporter.sample("run-1", 0.0, 1.0, 1, None)  # no exception, no retry
        assert reporter.close(5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "sample" in r.message]
    assert len(warnings) == 1


def test_a_good_sample_sends_what_was_spooled(daemon: FakeDaemon, make, tmp_path: Path,
                                              closed_port_url: str) -> None:
    make(closed_port_url).report(RECORD)
    reporter = make(daemon.url)
    reporter.sample("run-2", 0.0, 1.0, 1, 50.0)
    assert reporter.close(5)
    assert [r["path"] for r in daemon.requests] == ["/v1/samples", "/v1/usage"]
    assert spool_files(tmp_path) == []


# ---- a daemon that accepts connections and never answers ----------------------------------------

@pytest.fixture
def hung_url() -> Iterator[str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)  # the kernel completes the handshakes; nobody ever reads or answers
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        server.close()


def test_a_hung_daemon_never_holds_up_the_sampling_loop(make, hung_url: str) -> None:
    reporter = make(hung_url, sample_timeout_s=1.0)
    started = time.monotonic()
    for _ in range(5):
        reporter.sample("run-1", 0.0, 1.0, 1, None)
    assert time.monotonic() - started < 0.5  # generous: queuing is microseconds
    assert reporter.close(1 + 5)  # the one in flight times out; the latest replaced the rest


def test_a_hung_daemon_bounds_report_by_its_deadline(make, hung_url: str, tmp_path: Path) -> None:
    reporter = make(hung_url, timeout_s=1.0, deadline_s=2.0, attempts=10)
    started = time.monotonic()
    reporter.report(RECORD)
    assert time.monotonic() - started < 2 + 5
    assert len(spool_files(tmp_path)) == 1


# ---- configuration ------------------------------------------------------------------------------

def test_from_env_needs_both_variables(tmp_path: Path) -> None:
    assert reporter_from_env({"PROVISIONER_REPORT_URL": "http://d:8080"}) is None
    reporter = reporter_from_env({"PROVISIONER_REPORT_URL": "http://d:8080/",
                                  "PROVISIONER_REPORT_TOKEN": TOKEN}, spool_dir=tmp_path)
    assert reporter is not None and reporter.url == "http://d:8080"
    assert TOKEN not in repr(vars(reporter))


def test_default_spool_dir_is_under_xdg_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert Reporter("http://d", TOKEN).spool_dir == tmp_path / "provisioner" / "spool"


def test_safe_url_drops_credentials() -> None:
    assert safe_url("https://user:pw@daemon.example:8443/base?x=1") == "https://daemon.example:8443/base"
