"""POST /v1/events (issue 14 item 4): an instance's own failure report, same auth and caps as
/v1/usage, handed to the loop (it judges it on its next tick) without draining the node."""

from __future__ import annotations

import pytest

from provisioner.daemon.http import ApiLimits
from tests.daemon.test_agent_api import Daemon


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path, limits=ApiLimits(records_per_min=2))
    d.reports = []
    d.api._on_event = lambda node, body: d.reports.append((node, body))
    drained = d.drained = []
    d.api._on_report = drained.append
    yield d
    d.http.stop()


def test_a_failure_report_is_accepted_for_the_tokens_node_only(daemon):
    token = daemon.tokens.for_node("prov-t-q5")
    daemon.observe({"prov-t-q5": ()})
    r = daemon.post("/v1/events", {"code": "agent-exited", "exit_code": 127, "message": "java: not found",
                                   "log_tail": ["a", "sh: java: not found"], "node": "prov-t-q9"}, token)
    assert r.status_code == 202, r.text
    assert daemon.reports == [("prov-t-q5", {"code": "agent-exited", "exit_code": 127, "message": "java: not found",
                                             "log_tail": ["a", "sh: java: not found"]})]   # the body names no node
    assert daemon.drained == []                         # a failure report is no build start


@pytest.mark.parametrize("body, field", [
    ({"code": "rebooted"}, "code"), ({"code": "agent-exited", "exit_code": "x"}, "exit_code"),
    ({"code": "agent-exited", "log_tail": "x"}, "log_tail"), ([1], "body"),
], ids=["code", "exit-code", "log-tail", "not-an-object"])
def test_bad_reports_are_400_naming_the_field(daemon, body, field):
    token = daemon.tokens.for_node("prov-t-q5")
    daemon.observe({"prov-t-q5": ()})
    r = daemon.post("/v1/events", body, token)
    assert r.status_code == 400 and r.json()["field"] == field
    assert daemon.reports == []


def test_wrong_token_is_401_and_the_rate_cap_is_429(daemon):
    daemon.observe({"prov-t-q5": ()})
    assert daemon.post("/v1/events", {"code": "agent-exited"}, "nope").status_code == 401
    token = daemon.tokens.for_node("prov-t-q5")
    codes = [daemon.post("/v1/events", {"code": "bootstrap-failed"}, token).status_code for _ in range(3)]
    assert codes == [202, 202, 429]
