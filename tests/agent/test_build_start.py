"""The watcher's build-start signal (provisioner/agent/buildstart.py): a build seen as a new entry in
the agent's workspace/ or as a child of the agent process -> one sample {run_id, at} POSTed with the
agent's token to a local HTTP server (127.0.0.1); no URL -> nothing; daemon down -> no exception."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from provisioner.agent.buildstart import BuildStartSignal, Inotify, SignalPoster, iso_now
from provisioner.agent.watcher import WatchSettings, build_start_signal, settings_from
from provisioner.records import parse_iso_utc
from tests.http_stub import QuietHandler, serving

TOKEN = "s3cr3t-agent-token"
RUN_ID = "0b6c4f1e-agent-run"
ROOT = Path(__file__).resolve().parents[2]


class FakeDaemon(ThreadingHTTPServer):
    """Answers /v1/samples like the daemon (204, 401 for another token); `script` queues statuses."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.script: list[int] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def wait_requests(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.requests


class _Handler(QuietHandler):
    server: FakeDaemon

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                     "type": self.headers.get("Content-Type"), "body": body})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            status = 401
        else:
            status = self.server.script.pop(0) if self.server.script else 204
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def daemon() -> Iterator[FakeDaemon]:
    with serving(FakeDaemon()) as server:
        yield server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_agent(tmp_path: Path, child_after: Path) -> subprocess.Popen:
    """An agent process that starts a child (its build step) once `child_after` exists."""
    code = ("import pathlib, subprocess, sys, time\n"
            f"p = pathlib.Path({str(child_after)!r})\n"
            "print('up', flush=True)\n"
            "while not p.exists():\n    time.sleep(0.02)\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
            "time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "up\n"
    (tmp_path / "agent.pid").write_text(str(proc.pid))
    return proc


def kill_tree(proc: subprocess.Popen) -> None:
    import psutil
    try:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
    except psutil.NoSuchProcess:
        pass
    proc.kill()
    proc.wait(5)


def poster(url: str, out: list[str], **kw: Any) -> SignalPoster:
    kw.setdefault("sleep", lambda s: None)
    return SignalPoster(url, TOKEN, RUN_ID, out=out.append, **kw)


# ---- detection -------------------------------------------------------------------------------

def test_a_child_of_the_agent_is_a_build_posted_once_with_the_run_id_and_the_token(daemon, tmp_path):
    go = tmp_path / "go"
    agent = fake_agent(tmp_path, go)
    out: list[str] = []
    try:
        sig = BuildStartSignal(poster(daemon.url, out), agent_pid_file=tmp_path / "agent.pid", work_dir=None,
                               poll_s=0.02, children_s=0.02, out=out.append).start()
        time.sleep(0.3)
        assert sig.seen is None and daemon.requests == []        # the agent alone is no build
        before = time.time()
        go.touch()
        assert sig.done.wait(5)
        assert sig.seen == "a process of the agent" and sig.sent is True
        time.sleep(0.3)                                          # the build goes on: still one post
        [req] = daemon.requests
        assert req["path"] == "/v1/samples" and req["auth"] == f"Bearer {TOKEN}"
        assert req["type"] == "application/json"
        assert set(req["body"]) == {"run_id", "at"} and req["body"]["run_id"] == RUN_ID
        at = parse_iso_utc(req["body"]["at"]).timestamp()
        assert before - 1 <= at <= time.time()
        assert not any(TOKEN in line for line in out)
    finally:
        kill_tree(agent)


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "poll-only"])
def test_a_new_workspace_entry_is_a_build_and_what_was_there_before_is_not(daemon, tmp_path, inotify):
    work = tmp_path / "agent"
    (work / "workspace" / "left-in-the-image").mkdir(parents=True)
    (work / "remoting").mkdir()
    out: list[str] = []
    sig = BuildStartSignal(poster(daemon.url, out), agent_pid_file=None, work_dir=work,
                           poll_s=0.05, inotify=inotify, out=out.append).start()
    time.sleep(0.2)
    (work / "remoting" / "jarCache").mkdir()                 # the agent's own files: no build
    time.sleep(0.2)
    assert sig.seen is None and daemon.requests == []
    (work / "workspace" / "train@tmp").mkdir()
    assert sig.done.wait(5) and sig.seen == "workspace 'train@tmp'" and sig.sent is True
    assert len(daemon.wait_requests(1)) == 1
    assert any("build started (workspace 'train@tmp')" in line for line in out)


def test_inotify_wakes_the_poll_at_once(tmp_path):
    """With inotify (Linux) the workspace's creation wakes the detector: no waiting for the poll."""
    if Inotify.open() is None:
        pytest.skip("no inotify here")
    work = tmp_path / "agent"
    work.mkdir()
    posted: list[float] = []
    sig = BuildStartSignal(lambda: posted.append(time.monotonic()) or True, agent_pid_file=None, work_dir=work,
                           poll_s=30, out=lambda _: None).start()
    time.sleep(0.2)
    made = time.monotonic()
    (work / "workspace" / "train").mkdir(parents=True)       # workspace/ and its entry at once
    assert sig.done.wait(5) and posted
    assert posted[0] - made < 1.0


def test_the_agent_pid_file_may_come_later_and_a_dead_agent_is_no_build(tmp_path):
    calls: list[int] = []
    sig = BuildStartSignal(lambda: True, agent_pid_file=tmp_path / "agent.pid", work_dir=tmp_path / "none",
                           children_s=0, has_children=lambda pid: calls.append(pid) or pid == 4242,
                           out=lambda _: None)
    assert sig.check() is None and calls == []                # no pid file yet: nothing asked
    (tmp_path / "agent.pid").write_text("4242\n")
    assert sig.check() == "a process of the agent" and calls == [4242]


def test_stop_ends_the_detector_without_a_post(tmp_path):
    posts: list[int] = []
    sig = BuildStartSignal(lambda: posts.append(1) or True, agent_pid_file=tmp_path / "agent.pid",
                           work_dir=tmp_path, poll_s=0.02, out=lambda _: None).start()
    time.sleep(0.1)
    sig.stop()
    assert sig.done.wait(2) and posts == [] and sig.sent is None


# ---- the post ----------------------------------------------------------------------------------

def test_no_report_url_means_no_detector(tmp_path):
    settings = WatchSettings(agent_pid_file=tmp_path / "agent.pid", work_dir=tmp_path)
    out: list[str] = []
    assert SignalPoster.from_env({}) is None
    assert SignalPoster.from_env({"PROVISIONER_REPORT_URL": "http://127.0.0.1:9"}) is None   # no token
    assert SignalPoster.from_env({"PROVISIONER_REPORT_TOKEN": TOKEN}) is None
    assert build_start_signal(settings, {"PROVISIONER_REPORT_TOKEN": TOKEN}, out=out.append) is None
    assert out == ["provisioner-watcher: no report URL: the build start is not signalled to a daemon"]
    job_mode = WatchSettings(pid_file=tmp_path / "job.pid")
    assert build_start_signal(job_mode, {"PROVISIONER_REPORT_URL": "http://x", "PROVISIONER_REPORT_TOKEN": TOKEN},
                              out=out.append) is None and len(out) == 1


def test_daemon_down_is_a_warning_after_a_couple_of_retries_never_an_exception(tmp_path):
    out: list[str] = []
    sleeps: list[float] = []
    url = f"http://127.0.0.1:{free_port()}"
    p = poster(url, out, sleep=sleeps.append, timeout_s=0.5)
    started = time.monotonic()
    assert p.post() is False
    assert sleeps == [0.5, 1.0] and time.monotonic() - started < 5
    [line] = out
    assert line.startswith("provisioner-watcher: warning: cannot signal the build start to "
                           f"{url}/v1/samples (URLError: ConnectionRefusedError)")
    assert TOKEN not in line and TOKEN not in repr(p)
    # the same through the detector thread: it ends, the watcher never sees an exception
    (tmp_path / "workspace" / "job").mkdir(parents=True)
    sig = BuildStartSignal(p, agent_pid_file=None, work_dir=tmp_path, out=out.append)
    sig._baseline = set()
    sig.start()
    assert sig.done.wait(10) and sig.sent is False


def test_a_hanging_daemon_costs_the_timeout_per_try_only():
    with socket.socket() as s:                                 # accepts (backlog) and never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        out: list[str] = []
        started = time.monotonic()
        assert poster(f"http://127.0.0.1:{s.getsockname()[1]}", out, timeout_s=0.3).post() is False
        assert time.monotonic() - started < 3 and "timeout" in out[0].lower()


def test_5xx_is_retried_and_401_is_not(daemon):
    out: list[str] = []
    daemon.script = [503, 502]
    assert poster(daemon.url, out).post() is True and len(daemon.requests) == 3 and out == []
    daemon.requests.clear()
    wrong = SignalPoster(daemon.url, "not-the-token", RUN_ID, sleep=lambda s: None, out=out.append)
    assert wrong.post() is False and len(daemon.requests) == 1
    assert "HTTP 401" in out[0] and "not-the-token" not in out[0]


def test_a_redirect_is_not_followed_with_the_token(daemon):
    class Redirect(QuietHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(307)
            self.send_header("Location", daemon.url + "/v1/samples")
            self.send_header("Content-Length", "0")
            self.end_headers()
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Redirect)) as srv:
        out: list[str] = []
        assert poster(f"http://127.0.0.1:{srv.server_address[1]}", out).post() is False
        assert daemon.requests == [] and "HTTP 307" in out[0]


def test_the_daemons_own_agent_api_takes_the_sample_and_drains_the_node(tmp_path):
    from provisioner.daemon.http import AgentApi, DaemonHttpServer, Health
    from provisioner.daemon.metrics import DaemonMetrics
    from provisioner.daemon.state import Tokens
    from provisioner.history import open_store
    tokens, metrics, drained = Tokens(b"k" * 32), DaemonMetrics(), []
    api = AgentApi(tokens, metrics, lambda: open_store(str(tmp_path / "h.sqlite3")), on_report=drained.append)
    srv = DaemonHttpServer(("127.0.0.1", 0), metrics, Health(stuck_after_s=30), api).start()
    try:
        token = tokens.for_node("prov-t-q7")
        p = SignalPoster.from_env({"PROVISIONER_REPORT_URL": srv.url + "/", "PROVISIONER_REPORT_TOKEN": token,
                                   "PROVISIONER_RUN_ID": RUN_ID}, sleep=lambda s: None)
        assert p.post() is True
        assert drained == ["prov-t-q7"]
        assert metrics.samples.latest()["prov-t-q7"].run_id == RUN_ID
    finally:
        srv.stop()


def test_iso_now_is_utc_with_z():
    assert iso_now().endswith("Z") and abs(parse_iso_utc(iso_now()).timestamp() - time.time()) < 5


# ---- the watcher ---------------------------------------------------------------------------------

def test_settings_take_the_work_dir(tmp_path):
    s = settings_from(["--agent-pid-file", str(tmp_path / "a.pid"), "--work-dir", "/var/lib/jenkins-agent"],
                      {"PROVISIONER_IMDS_URL": ""})
    assert s.work_dir == Path("/var/lib/jenkins-agent") and s.agent_pid_file == tmp_path / "a.pid"
    assert settings_from(["--pid-file", "p"], {"PROVISIONER_IMDS_URL": ""}).work_dir is None


def test_the_watcher_process_signals_the_build_start_and_keeps_watching(daemon, tmp_path):
    """`python3 -m provisioner.agent.watcher` as the bootstrap starts it (URL and token in its
    environment, from report.env): the build's workspace -> one post; SIGTERM still ends it at once."""
    work = tmp_path / "agent"
    work.mkdir()
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    (tmp_path / "agent.pid").write_text(str(agent.pid))
    env = dict(os.environ, PROVISIONER_REPORT_URL=daemon.url, PROVISIONER_REPORT_TOKEN=TOKEN,
               PROVISIONER_RUN_ID=RUN_ID, PROVISIONER_IMDS_URL="", PYTHONPATH=str(ROOT))
    watcher = subprocess.Popen([sys.executable, "-m", "provisioner.agent.watcher", "--agent-pid-file",
                                str(tmp_path / "agent.pid"), "--work-dir", str(work), "--idle-timeout", "600",
                                "--state-dir", str(tmp_path / "state")],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(1.0)                                       # python's start; the agent connects
        assert daemon.requests == []
        (work / "workspace" / "train").mkdir(parents=True)
        [req] = daemon.wait_requests(1)
        assert req["body"]["run_id"] == RUN_ID and req["auth"] == f"Bearer {TOKEN}"
        time.sleep(0.3)
        assert watcher.poll() is None                         # the watcher's own loop goes on
        watcher.send_signal(signal.SIGTERM)
        output, _ = watcher.communicate(timeout=10)
        assert watcher.returncode == 0 and len(daemon.requests) == 1
        assert "build started (workspace 'train')" in output and TOKEN not in output
    finally:
        if watcher.poll() is None:
            watcher.kill()
        agent.kill()
        agent.wait(5)
