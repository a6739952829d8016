"""The HTTP port: agent API auth and status codes, samples, /metrics names, /healthz."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from provisioner.daemon.agents import AgentBook
from provisioner.daemon.http import AgentApi, ApiLimits, DaemonHttpServer, Health
from provisioner.daemon.model import Node
from provisioner.daemon.metrics import AgentInfo, DaemonMetrics, Snapshot
from provisioner.daemon.state import Tokens, load_secret
from provisioner.errors import StoreError
from provisioner.history import open_store
from tests.conftest import ROOT
from tests.http_stub import QuietHandler, serving

RECORD = {"job": "train", "build": "3", "run_id": "r-1", "start": "2026-01-01T00:00:00Z",
          "duration_s": 12.5, "exit_code": 0, "node": "spoofed", "queue_id": "999"}


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def server(tmp_path):
    history = str(tmp_path / "h.sqlite3")
    clock = Clock()
    tokens = Tokens(b"k" * 32, AgentBook(grace_s=600, clock=clock))
    metrics = DaemonMetrics()
    health = Health(stuck_after_s=30, clock=clock)
    invalidated, reported = [], []

    def on_report(node):
        reported.append(node)
        if node.endswith("-broken"):
            raise RuntimeError("Jenkins away")
    api = AgentApi(tokens, metrics, lambda: open_store(history), on_record=invalidated.append,
                   on_report=on_report, limits=ApiLimits(records_per_min=1000, samples_per_min=1000))
    srv = DaemonHttpServer(("127.0.0.1", 0), metrics, health, api).start()
    srv.test = {"tokens": tokens, "history": history, "clock": clock, "invalidated": invalidated,
                "reported": reported}
    yield srv
    srv.stop()


def running(srv, node, job="train", number=3):
    """The daemon's /computer read shows `node` running build `job` #`number` (and the nodes seen before)."""
    seen = srv.test.setdefault("running", {})
    seen[node] = f"http://jenkins.example/job/{'/job/'.join(job.split('/'))}/{number}/"
    srv.api.book.nodes_seen([Node(n, frozenset(), builds=(url,)) for n, url in seen.items()])
    srv.api.book.instances_seen([])


def post(srv, path, body, token=None, raw=None):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return requests.post(srv.url + path, data=raw if raw is not None else json.dumps(body), headers=headers, timeout=5)


def test_usage_201_then_200_and_node_and_queue_id_from_the_token(server):
    token = server.test["tokens"].for_node("prov-t-q42-2")
    running(server, "prov-t-q42-2")
    first = post(server, "/v1/usage", RECORD, token)
    assert first.status_code == 201 and first.json()["stored"] is True
    again = post(server, "/v1/usage", RECORD, token)
    assert again.status_code == 200 and again.json()["stored"] is False
    with open_store(server.test["history"]) as store:
        [rec] = store.runs("train")
    assert (rec["node"], rec["queue_id"]) == ("prov-t-q42-2", "42")
    assert [r["job"] for r in server.test["invalidated"]] == ["train"]   # the planner re-reads the job
    reg = server.metrics.registry
    assert reg.get_sample_value("provisioner_usage_records_total", {"result": "stored"}) == 1
    assert reg.get_sample_value("provisioner_usage_records_total", {"result": "repeated"}) == 1


def test_every_authenticated_post_drains_its_node_and_a_failed_drain_fails_nothing(server):
    ok, broken = (server.test["tokens"].for_node(n) for n in ("prov-t-q1", "prov-t-q2-broken"))
    running(server, "prov-t-q2-broken")
    assert post(server, "/v1/samples", {"run_id": "r", "at": "2026-01-01T00:00:00Z"}, ok).status_code == 204
    assert post(server, "/v1/usage", RECORD, broken).status_code == 201
    assert post(server, "/v1/usage", RECORD, "wrong").status_code == 401
    assert server.test["reported"] == ["prov-t-q1", "prov-t-q2-broken"]


@pytest.mark.parametrize("token", [None, "nope", "prov-t-q1.deadbeef", "Basic x"], ids=["none", "junk", "bad-mac", "basic"])
def test_wrong_or_missing_token_is_401(server, token):
    r = post(server, "/v1/usage", RECORD, token)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert post(server, "/v1/samples", {}, token).status_code == 401


@pytest.mark.parametrize("change,field", [
    ({"job": None}, "job"), ({"exit_code": "0"}, "exit_code"), ({"start": "yesterday"}, "start"),
    ({"market": "reserved"}, "market"), ({"duration_s": -1}, "duration_s"),
], ids=["missing-job", "exit-code-type", "start", "market", "negative"])
def test_invalid_record_is_400_naming_the_field(server, change, field):
    token = server.test["tokens"].for_node("prov-t-q1")
    r = post(server, "/v1/usage", {**RECORD, **change}, token)
    assert r.status_code == 400 and r.json()["field"] == field and field in r.json()["error"]


def test_not_json_and_too_large_bodies(server):
    token = server.test["tokens"].for_node("prov-t-q1")
    assert post(server, "/v1/usage", None, token, raw="{nope").json()["field"] == "body"
    assert post(server, "/v1/usage", None, token, raw="x" * (64 << 10)).status_code == 413   # cap: 32 KiB


def test_samples_204_feed_the_utilisation_gauges(server):
    token = server.test["tokens"].for_node("prov-t-q1")
    server.metrics.publish(Snapshot(1.0, {}, (AgentInfo("prov-t-q1", "busy", "c5.large", "spot", 0.03, 2, 4),)))
    r = post(server, "/v1/samples", {"run_id": "r", "at": "2026-01-01T00:00:00Z", "cpu_pct": 150.0,
                                    "mem_bytes": 2 * 1024 ** 3, "gpu_util_pct": None}, token)
    assert r.status_code == 204 and r.content == b""
    reg = server.metrics.registry
    key = {"node": "prov-t-q1", "instance_type": "c5.large"}
    assert reg.get_sample_value("provisioner_agent_cpu_ratio", key) == 0.75
    assert reg.get_sample_value("provisioner_agent_memory_ratio", key) == 0.5
    assert reg.get_sample_value("provisioner_agent_gpu_utilisation_ratio", key) is None
    assert post(server, "/v1/samples", {"run_id": "r", "at": "x", "cpu_pct": "hot"}, token).json()["field"] == "cpu_pct"
    server.metrics.publish(Snapshot(2.0))                            # the agent is gone: so is its gauge
    assert reg.get_sample_value("provisioner_agent_cpu_ratio", key) is None


def test_metrics_names_and_values(server):
    m = server.metrics
    m.launches.labels("c5.large", "spot").inc()
    m.failures.labels("launch", "InsufficientInstanceCapacity").inc()
    m.queue_wait.observe(3.2)
    m.publish(Snapshot(5.0, {"ec2&&vcpu=2": 3}, (AgentInfo("a", "busy", "c5.large", "spot", 0.25),
                                                  AgentInfo("b", "booting", "c5.large", "spot", 0.25)), 1.0,
                       {"budget": 2}))
    text = requests.get(server.url + "/metrics", timeout=5).text
    for line in ('provisioner_queue_waiting_items{label="ec2&&vcpu=2"} 3.0',
                 'provisioner_agents{instance_type="c5.large",market="spot",state="busy"} 1.0',
                 'provisioner_launches_total{instance_type="c5.large",market="spot"} 1.0',
                 'provisioner_failures_total{action="launch",code="InsufficientInstanceCapacity"} 1.0',
                 'provisioner_queue_wait_to_agent_online_seconds_bucket{le="5.0"} 1.0',
                 "provisioner_agents_cost_usd_per_hour 0.5", "provisioner_budget_headroom_usd_per_hour 0.5",
                 'provisioner_queue_held_items{reason="budget"} 2.0', "provisioner_reconcile_duration_seconds_count",
                 "provisioner_interruptions_total"):
        assert line in text, line


def test_healthz_200_then_503_when_the_loop_is_stuck(server):
    clock = server.test["clock"]
    server.health.beat()
    r = requests.get(server.url + "/healthz", timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok", "state": "running", "last_tick_age_s": 0.0}
    clock.t += 31
    r = requests.get(server.url + "/healthz", timeout=5)
    assert r.status_code == 503 and r.json()["status"] == "stuck"
    assert requests.get(server.url + "/nope", timeout=5).status_code == 404


def test_tokens_survive_a_restart_and_the_secret_file_is_private(tmp_path):
    secret = load_secret(tmp_path)
    assert (tmp_path / "daemon-secret").stat().st_mode & 0o777 == 0o600
    assert load_secret(tmp_path) == secret                          # a restarted daemon: same tokens
    a, b = Tokens(secret), Tokens(load_secret(tmp_path))
    assert b.node_of(a.for_node("prov-t-q1")) == "prov-t-q1"
    assert Tokens(b"other").node_of(a.for_node("prov-t-q1")) is None
    assert load_secret(tmp_path, {"PROVISIONER_DAEMON_SECRET": "s3cret"}) == b"s3cret"
    assert "***" in repr(a)
    assert [p.name for p in tmp_path.iterdir()] == ["daemon-secret"]     # nothing left aside


def test_daemons_starting_together_share_one_secret(tmp_path):
    """Created aside and linked into place: no daemon reads another's half-written file."""
    code = ("import sys; from pathlib import Path; from provisioner.daemon.state import load_secret; "
            "print(load_secret(Path(sys.argv[1]), {}).hex())")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "state")], stdout=subprocess.PIPE,
                              text=True, cwd=ROOT) for _ in range(8)]
    seen = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(seen) == 1 and len(seen.pop()) == 64
    assert [p.name for p in (tmp_path / "state").iterdir()] == ["daemon-secret"]


@pytest.mark.parametrize("text", ["", "abc", "zz" * 32, "ab" * 15])
def test_a_damaged_secret_file_is_an_error_naming_it_not_a_weak_key(tmp_path, text):
    (tmp_path / "daemon-secret").write_text(text)
    with pytest.raises(StoreError, match="daemon-secret: not a daemon secret .* PROVISIONER_DAEMON_SECRET"):
        load_secret(tmp_path)
    assert (tmp_path / "daemon-secret").read_text() == text                # left for the operator to look at


def test_a_secret_an_operator_wrote_is_kept_if_long_enough(tmp_path):
    (tmp_path / "daemon-secret").write_text("ab" * 16 + "\n")
    assert load_secret(tmp_path) == bytes.fromhex("ab" * 16)


def test_a_failed_run_posted_by_an_agent_raises_the_configured_alert(tmp_path, emu):
    """wiring: the agent API hands new records to provisioner.alerts (a Slack-type webhook here)."""
    from http.server import ThreadingHTTPServer

    from provisioner.config import parse_config
    from provisioner.daemon.wiring import build
    from tests.daemon.fakes import small_catalog
    got: list[bytes] = []

    class Hook(QuietHandler):
        def do_POST(self):  # noqa: N802
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.end_headers()
    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Hook)) as hook:
        config = parse_config(f"jenkins:\n  url: {emu.url}\n  user: admin\ndaemon:\n  listen: 127.0.0.1:0\n"
                              f"alerts:\n  sinks:\n    - {{name: chat, type: slack, webhook_url: "
                              f"'http://127.0.0.1:{hook.server_address[1]}/hook'}}\n", "alerts.yaml")
        parts = build(config, str(tmp_path / "h.sqlite3"), "admin-token", owner="t", cloud=object(),
                      catalog=small_catalog())
        try:
            token = parts.http.api.tokens.for_node("prov-t-q3")
            parts.http.api.book.nodes_seen([Node("prov-t-q3", frozenset(), builds=(f"{emu.url}/job/train/3/",))])
            r = post(parts.http, "/v1/usage", {**RECORD, "exit_code": 2}, token)
            assert r.status_code == 201
            emu.wait_for(lambda: got, timeout=10)
            assert b"train" in got[0]
        finally:
            parts.close()
