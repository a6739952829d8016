"""Fuzz of the agent API's bodies over a real socket: never a 500, never a traceback in the log,
every refusal a JSON error object (bench/api_attack.py runs >= 10,000 cases)."""

from __future__ import annotations

import logging

import requests
from hypothesis import HealthCheck, given, settings

from provisioner.daemon.agents import AgentBook
from provisioner.daemon.http import AgentApi, ApiLimits, DaemonHttpServer, Health
from provisioner.daemon.metrics import DaemonMetrics
from provisioner.daemon.model import Node
from provisioner.daemon.state import Tokens
from provisioner.history import open_store
from tests.daemon.api_bodies import ALLOWED, bodies, paths


def test_no_body_makes_the_agent_api_fail(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    book = AgentBook()
    tokens = Tokens(b"k" * 32, book)
    metrics = DaemonMetrics()
    api = AgentApi(tokens, metrics, lambda: open_store(str(tmp_path / "h.sqlite3")),
                   limits=ApiLimits(records_per_min=0, samples_per_min=0))
    token = tokens.for_node("prov-t-q1")
    book.nodes_seen([Node("prov-t-q1", frozenset(), builds=("http://ci/job/app/1/",))])
    book.instances_seen([])
    srv = DaemonHttpServer(("127.0.0.1", 0), metrics, Health(stuck_after_s=30), api).start()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    seen: set[int] = set()

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(paths, bodies)
    def one(path: str, body: bytes) -> None:
        r = session.post(srv.url + path, data=body, timeout=10)
        assert r.status_code in ALLOWED, (path, body[:200], r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert isinstance(r.json()["error"], str)
        seen.add(r.status_code)
    try:
        one()
    finally:
        session.close()
        srv.stop()
    assert {201, 204, 400} <= seen                              # valid and invalid bodies were both tried
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert bad == [], bad[0].getMessage()
