"""docs/grafana-dashboard.json against a live scrape of the daemon's /metrics.

The daemon's real HTTP server is started on 127.0.0.1 with its real DaemonMetrics; agents post a
usage record and samples through the agent API (so the utilisation gauges are filled the way they
are in production), the counters get one event each, and /metrics is scraped over HTTP. Every
metric name a dashboard query uses must be in the scrape, and every label it groups by or names in
a legend must be on that metric.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from provisioner.daemon.http import AgentApi, DaemonHttpServer, Health
from provisioner.daemon.model import Node
from provisioner.daemon.metrics import AgentInfo, DaemonMetrics, Snapshot
from provisioner.daemon.state import Tokens
from provisioner.history import open_store
from provisioner.daemon.pool_metrics import PoolMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
SCRAPE_LABELS = {"instance", "job"}  # added by Prometheus at scrape time
METRIC = re.compile(r"\b(provisioner_[a-zA-Z0-9_]+)\b")
BY = re.compile(r"\bby\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# What the issue asks the dashboard to show, by the metric that carries it.
REQUIRED = {"provisioner_queue_wait_to_agent_online_seconds_bucket", "provisioner_agents",
            "provisioner_agent_cpu_ratio", "provisioner_agent_memory_ratio",
            "provisioner_agent_gpu_utilisation_ratio", "provisioner_agents_cost_usd_per_hour",
            "provisioner_budget_headroom_usd_per_hour", "provisioner_launches_total",
            "provisioner_failures_total", "provisioner_interruptions_total"}


def _post(url: str, path: str, token: str, body: dict) -> int:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


@pytest.fixture(scope="module")
def scrape(tmp_path_factory) -> dict[str, set[str]]:
    """{sample name: label names} from a live /metrics of a daemon with two agents at work."""
    history = str(tmp_path_factory.mktemp("daemon") / "h.sqlite3")
    tokens, metrics = Tokens(b"s" * 32), DaemonMetrics()
    api = AgentApi(tokens, metrics, lambda: open_store(history))
    server = DaemonHttpServer(("127.0.0.1", 0), metrics, Health(stuck_after_s=30), api).start()
    try:
        nodes = ("prov-t-q1", "prov-t-q2")
        tokens.book.nodes_seen([Node(nodes[0], frozenset(), builds=("http://ci/job/j/1/",))])   # its build
        metrics.publish(Snapshot(1.0, {"ec2&&gpu=1": 1}, (
            AgentInfo(nodes[0], "busy", "g5.xlarge", "spot", 0.4, 4, 16),
            AgentInfo(nodes[1], "booting", "c5.large", "on-demand", 0.085, 2, 4)), 5.0, {"budget": 1},
            team_ratio={"ml": 0.5}, team_remaining={"ml": 50.0},
            vcpus={("us-east-1", "g", "spot"): 4.0, ("us-east-1", "standard", "on-demand"): 2.0},
            vcpu_limits={("us-east-1", "g", "spot"): (64.0, "quota")}, max_vcpus=100.0))
        for node, gpu in zip(nodes, (55.0, None)):
            token = tokens.for_node(node)
            assert _post(server.url, "/v1/samples", token, {"run_id": node, "at": "2026-01-01T00:00:00Z",
                                                           "cpu_pct": 150.0, "mem_bytes": 2 ** 31,
                                                           "gpu_util_pct": gpu}) == 204
        assert _post(server.url, "/v1/usage", tokens.for_node(nodes[0]),
                     {"job": "j", "run_id": "r", "start": "2026-01-01T00:00:00Z", "duration_s": 1,
                      "exit_code": 0}) == 201
        pool = PoolMetrics(metrics.registry)                 # as wiring adds it when a label has a pool
        pool.keeper = SimpleNamespace(states={("ec2&&vcpu=2", "ready"): 1, ("ec2&&vcpu=2", "starting"): 1})
        pool.hits.labels("ec2&&vcpu=2").inc()
        pool.misses.labels("ec2&&vcpu=2").inc()
        pool.retired.labels("image").inc()
        pool.reuses.inc()
        metrics.launches.labels("g5.xlarge", "spot").inc()
        metrics.failures.labels("launch", "InsufficientInstanceCapacity").inc()
        metrics.interruptions.labels("g5.xlarge", "spot").inc()
        metrics.retired.labels("idle").inc()
        metrics.jenkins_requests.labels("queue").inc()
        metrics.queue_wait.observe(42)
        metrics.tick_duration.observe(0.01)
        metrics.reconcile_cpu.observe(0.001)
        with urllib.request.urlopen(server.url + "/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        server.stop()
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def targets() -> list[tuple[str, dict]]:
    return [(p["title"], t) for p in dashboard()["panels"] if p["type"] != "row" for t in p["targets"]]


def test_every_query_uses_only_scraped_metrics_and_their_labels(scrape):
    assert targets()
    for title, target in targets():
        expr = target["expr"]
        used = METRIC.findall(expr)
        assert used, f"{title}: {expr} names no provisioner metric"
        missing = [m for m in used if m not in scrape]
        assert not missing, f"{title}: {missing} not in the daemon's /metrics"
        labels = set().union(*(scrape[m] for m in used)) | SCRAPE_LABELS
        for group in BY.findall(expr):
            for label in filter(None, (x.strip() for x in group.split(","))):
                assert label in labels, f"{title}: groups by {label!r}, not a label of {used}"
        for label in LEGEND.findall(target.get("legendFormat", "")):
            assert label in labels, f"{title}: legend names {label!r}, not a label of {used}"


def test_the_dashboard_shows_what_the_issue_asks_for():
    used = {m for _, t in targets() for m in METRIC.findall(t["expr"])}
    assert REQUIRED <= used, REQUIRED - used


def test_dashboard_structure_imports_cleanly():
    d = dashboard()
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) and d["uid"] and d["title"]
    variables = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    for p in d["panels"]:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])
