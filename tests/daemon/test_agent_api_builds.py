"""Build records (`kind: build`, issue 14): taken only for the build the daemon saw on the agent's
node, their result from Jenkins, stored where the planner reads, and each build counted once."""

from __future__ import annotations

import pytest

from provisioner import records
from tests.daemon.test_agent_api import Daemon, url

BUILD = {"kind": "build", "job": "app", "build": "7", "run_id": "b-1", "start": "2026-01-01T00:00:00Z",
         "duration_s": 30.0, "exit_code": 0, "result": "SUCCESS", "cpu_max_pct": 98.0,
         "mem_max_bytes": 300 * 2 ** 20, "cost_usd": 0.01}


@pytest.fixture
def results():
    return {}


@pytest.fixture
def daemon(tmp_path, results):
    d = Daemon(tmp_path, build_result=lambda job, number: results.get((job, number)))
    yield d
    d.http.stop()


def test_a_build_record_of_another_nodes_build_is_403_and_never_stored(daemon):
    mine, other = daemon.tokens.for_node("prov-t-q1"), daemon.tokens.for_node("prov-t-q2")
    daemon.observe({"prov-t-q1": (url("app", 7),), "prov-t-q2": (url("secret", 3),)})
    r = daemon.post("/v1/usage", {**BUILD, "job": "secret", "build": "3"}, mine)
    assert r.status_code == 403 and daemon.refused("other-job") == 1
    assert daemon.runs("secret") == []
    assert daemon.post("/v1/usage", {**BUILD, "job": "secret", "build": "3", "run_id": "b-2"}, other).status_code == 201


def test_job_and_build_come_from_the_node_and_the_result_from_jenkins(daemon, results):
    token = daemon.tokens.for_node("prov-t-q4")
    daemon.observe({"prov-t-q4": (url("app", 12),)})
    results[("app", "12")] = "ABORTED"                         # Jenkins knows better than the watcher
    assert daemon.post("/v1/usage", {**BUILD, "build": "1"}, token).status_code == 201
    [rec] = daemon.runs("app")
    assert (rec["build"], rec["node"], rec["queue_id"]) == ("12", "prov-t-q4", "4")
    assert (rec["result"], rec["exit_code"], rec["interrupted"], rec["kind"]) == ("ABORTED", 130, True, "build")


def test_while_jenkins_cannot_tell_the_watchers_reading_stands(daemon):
    token = daemon.tokens.for_node("prov-t-q4")
    daemon.observe({"prov-t-q4": (url("app", 12),)})
    body = {**BUILD, "result": "FAILURE", "exit_code": 1}
    assert daemon.post("/v1/usage", body, token).status_code == 201
    assert (daemon.runs("app")[0]["result"], daemon.runs("app")[0]["exit_code"]) == ("FAILURE", 1)


@pytest.mark.parametrize("body,field", [
    ({"kind": "job"}, "kind"), ({"result": "GREEN"}, "result"), ({"result": "FAILURE", "exit_code": 0}, "exit_code"),
    ({"parent_run_id": 5}, "parent_run_id")], ids=["kind", "result", "mapping", "parent"])
def test_bad_build_fields_are_400_naming_the_field(daemon, body, field):
    token = daemon.tokens.for_node("prov-t-q4")
    daemon.observe({"prov-t-q4": (url("app", 12),)})
    r = daemon.post("/v1/usage", {**BUILD, **body}, token)
    assert r.status_code == 400 and r.json()["field"] == field


def test_a_build_is_counted_once_with_its_inner_runs_and_planned_from_its_record(daemon, tmp_path):
    """The build record and a `provisioner run` inside it (parent_run_id) are both stored; history
    readers (planner, reports) count the build once."""
    from provisioner.config import parse_config
    from provisioner.daemon.plan_cache import PlanCache
    from provisioner.history import open_store
    from tests.daemon.fakes import small_catalog
    token = daemon.tokens.for_node("prov-t-q4")
    daemon.observe({"prov-t-q4": (url("app", 12),)})
    inner = {"kind": "run", "job": "app", "run_id": "r-in", "parent_run_id": "b-1", "start": "2026-01-01T00:00:05Z",
             "duration_s": 20.0, "exit_code": 0, "mem_max_bytes": 200 * 2 ** 20, "cost_usd": 0.007}
    assert daemon.post("/v1/usage", inner, token).status_code == 201
    assert daemon.post("/v1/usage", BUILD, token).status_code == 201
    stored = daemon.runs("app")
    assert {r["run_id"] for r in stored} == {"b-1", "r-in"}
    assert [r["run_id"] for r in records.count_once(stored)] == ["b-1"]
    plan_cache = PlanCache(parse_config("", "t.yaml"), small_catalog(), lambda: open_store(daemon.history), frozenset,
                        "ec2")
    assert [r["run_id"] for r in plan_cache.runs(["app"])["app"]] == ["b-1"]


def test_count_once_keeps_runs_of_builds_without_a_build_record():
    runs = [{"job": "a", "build": "1", "run_id": "r1", "exit_code": 0},
            {"job": "a", "build": "2", "run_id": "r2", "exit_code": 0},
            {"job": "a", "build": "2", "run_id": "b2", "kind": "build", "exit_code": 0},
            {"job": "a/sub", "build": "2", "run_id": "r3", "parent_run_id": "b2", "exit_code": 0}]
    assert [r["run_id"] for r in records.count_once(runs)] == ["r1", "b2"]
