"""The agent API's trust rules (issue 13, item 2), over real sockets on 127.0.0.1: a token lives with
its node; a build writes history only for its own job (or one under it); sizes and rates are capped."""

from __future__ import annotations

import json
import logging

import pytest
import requests

from provisioner.clouds.base import Instance
from provisioner.config import parse_config
from provisioner.daemon.agents import AgentBook, Build, build_of_url
from provisioner.daemon.http import AgentApi, ApiLimits, DaemonHttpServer, Health
from provisioner.daemon.metrics import DaemonMetrics
from provisioner.daemon.model import Node
from provisioner.daemon.state import Tokens
from provisioner.errors import ConfigError
from provisioner.history import open_store

RECORD = {"job": "app", "build": "7", "run_id": "r-1", "start": "2026-01-01T00:00:00Z",
          "duration_s": 12.5, "exit_code": 0, "mem_max_bytes": 2 * 1024 ** 4}


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class Daemon:
    """An agent API on a real port, the loop's observations played by hand."""

    def __init__(self, tmp_path, limits: ApiLimits = ApiLimits(), node_builds=None, build_result=None):
        self.clock = Clock()
        self.history = str(tmp_path / "h.sqlite3")
        self.book = AgentBook(grace_s=limits.token_grace_s, clock=self.clock)
        self.tokens = Tokens(b"k" * 32, self.book)
        self.metrics = DaemonMetrics()
        self.api = AgentApi(self.tokens, self.metrics, lambda: open_store(self.history), limits=limits,
                            node_builds=node_builds, build_result=build_result)
        self.http = DaemonHttpServer(("127.0.0.1", 0), self.metrics, Health(stuck_after_s=30), self.api).start()
        self.nodes: dict[str, tuple[str, ...]] = {}

    def observe(self, nodes: dict[str, tuple[str, ...]] | None = None, instances: tuple[str, ...] = ()) -> None:
        if nodes is not None:
            self.nodes = nodes
        self.book.nodes_seen([Node(n, frozenset(), builds=b) for n, b in self.nodes.items()])
        self.book.instances_seen([Instance(f"i-{n}", "c5.large", "on-demand", "us-east-1", "running", 0.0,
                                           {"provisioner:node": n}) for n in instances])

    def post(self, path: str, body, token: str | None, **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(self.http.url + path, data=json.dumps(body), headers=headers, timeout=10, **kw)

    def runs(self, job: str) -> list[dict]:
        with open_store(self.history) as store:
            return store.runs(job)

    def refused(self, reason: str) -> float:
        return self.metrics.registry.get_sample_value("provisioner_agent_api_refused_total", {"reason": reason}) or 0


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    yield d
    d.http.stop()


def url(job: str, number: int) -> str:
    return "http://ci.example/jenkins/job/" + "/job/".join(job.split("/")) + f"/{number}/"


def test_build_urls_name_the_job_and_number():
    assert build_of_url(url("team/app", 12)) == Build("team/app", "12")
    assert build_of_url("http://ci/job/a%20b/3/") == Build("a b", "3")
    assert build_of_url("http://ci/job/a/job/b/other/3/") is None
    assert build_of_url("?") is None and build_of_url("http://ci/job/a/") is None


def test_a_forged_record_for_another_job_is_403_logged_counted_and_never_stored(daemon, caplog):
    """The red team's attack: a build of `app` posts 2 TiB peaks for `victim-train`."""
    token = daemon.tokens.for_node("prov-t-q5")
    daemon.observe({"prov-t-q5": (url("app", 7),)})
    caplog.set_level(logging.WARNING, "provisioner.daemon.http")
    for i in range(3):
        r = daemon.post("/v1/usage", {**RECORD, "job": "victim-train", "run_id": f"x{i}"}, token)
        assert r.status_code == 403 and r.json()["field"] == "job" and "victim-train" in r.json()["error"]
    assert daemon.runs("victim-train") == []
    assert daemon.refused("other-job") == 3                        # each counted; logged once a minute
    refusals = [json.loads(rec.getMessage()) for rec in caplog.records if "usage.refused" in rec.getMessage()]
    assert len(refusals) == 1 and refusals[0]["node"] == "prov-t-q5" and refusals[0]["job"] == "victim-train"
    assert token not in caplog.text
    # a job that merely starts with the same letters is another job; a build record cannot name one either
    assert daemon.post("/v1/usage", {**RECORD, "job": "application"}, token).status_code == 403
    assert daemon.post("/v1/usage", {**RECORD, "job": "victim", "kind": "build"}, token).status_code == 403


def test_the_builds_own_job_and_jobs_under_it_are_stored_with_the_build_the_daemon_saw(daemon):
    token = daemon.tokens.for_node("prov-t-q5")
    daemon.observe({"prov-t-q5": (url("app", 7),)})
    assert daemon.post("/v1/usage", {**RECORD, "build": "999"}, token).status_code == 201
    assert daemon.post("/v1/usage", {**RECORD, "job": "app/train", "run_id": "r-2", "build": None},
                       token).status_code == 201
    [own], [sub] = daemon.runs("app"), daemon.runs("app/train")
    assert own["build"] == "7" and sub["build"] == "7"              # the body's 999 is not believed
    assert own["node"] == "prov-t-q5" and own["queue_id"] == "5"


def test_a_build_record_takes_job_and_build_from_the_node(daemon):
    token = daemon.tokens.for_node("prov-t-q9")
    daemon.observe({"prov-t-q9": (url("team/app", 41),)})
    r = daemon.post("/v1/usage", {**RECORD, "job": "team/app", "build": "1", "kind": "build"}, token)
    assert r.status_code == 201
    assert daemon.runs("team/app")[0]["build"] == "41"


def test_a_record_before_the_loop_saw_the_build_asks_jenkins_for_the_node(tmp_path):
    asked = []

    def node_builds(node):
        asked.append(node)
        return [url("app", 8)]
    d = Daemon(tmp_path, node_builds=node_builds)
    try:
        token = d.tokens.for_node("prov-t-q6")
        d.observe({"prov-t-q6": ()})
        assert d.post("/v1/usage", RECORD, token).status_code == 201
        assert d.post("/v1/usage", {**RECORD, "job": "victim", "run_id": "r-2"}, token).status_code == 403
        # each claim of a build not seen on the node (build 7 here) reads the node again: twice
        assert asked == ["prov-t-q6"] * 2 and d.runs("app")[0]["build"] == "8"
    finally:
        d.http.stop()


def test_a_reused_agents_next_build_is_read_from_jenkins_when_its_record_comes_first(tmp_path):
    """A reused agent: the loop saw build 7 on the node; build 8's record arrives before its next read.
    Jenkins is asked again, so the record is not filed under build 7; a claim Jenkins does not
    confirm is still corrected to a build the node ran."""
    on_node = [url("app", 7)]
    d = Daemon(tmp_path, node_builds=lambda node: list(on_node))
    try:
        token = d.tokens.for_node("prov-t-q6")
        d.observe({"prov-t-q6": (url("app", 7),)})
        on_node.append(url("app", 8))
        assert d.post("/v1/usage", {**RECORD, "build": "8"}, token).status_code == 201
        assert d.post("/v1/usage", {**RECORD, "run_id": "r-2", "build": "999"}, token).status_code == 201
        assert sorted(r["build"] for r in d.runs("app")) == ["7", "8"]
    finally:
        d.http.stop()


def test_the_first_sample_of_a_build_notes_the_build_for_its_records(tmp_path):
    """A build shorter than the loop's reads: its start (a sample) asks Jenkins once, while it runs."""
    running = [[url("app", 3)]]
    d = Daemon(tmp_path, node_builds=lambda node: running[0])
    try:
        token = d.tokens.for_node("prov-t-q6")
        d.observe({"prov-t-q6": ()})
        assert d.post("/v1/samples", {"run_id": "r", "at": "2026-01-01T00:00:00Z"}, token).status_code == 204
        running[0] = []                                          # the build has ended
        assert d.post("/v1/usage", RECORD, token).status_code == 201
        assert d.runs("app")[0]["build"] == "3"
    finally:
        d.http.stop()


def test_no_build_seen_on_the_node_is_403(daemon):
    token = daemon.tokens.for_node("prov-t-q5")
    daemon.observe({"prov-t-q5": ()})
    r = daemon.post("/v1/usage", RECORD, token)
    assert r.status_code == 403 and daemon.refused("no-build") == 1 and daemon.runs("app") == []


def test_a_token_of_a_node_that_never_existed_is_401(daemon):
    forged = Tokens(b"k" * 32).for_node("prov-t-q77")      # the same secret, but this daemon never made it
    assert daemon.post("/v1/usage", RECORD, forged).status_code == 503      # before the first look: retry
    daemon.observe({"prov-t-q5": (url("app", 7),)})
    for path in ("/v1/usage", "/v1/samples"):
        r = daemon.post(path, RECORD, forged)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert daemon.refused("expired") == 2 and daemon.runs("app") == []


def test_a_token_lives_with_its_instance_and_a_grace_period_after(daemon):
    token = daemon.tokens.for_node("prov-t-q5")
    daemon.observe({"prov-t-q5": (url("app", 7),)}, instances=("prov-t-q5",))
    daemon.observe({}, instances=("prov-t-q5",))               # node deleted, the instance still up
    daemon.clock.t += 10_000
    assert daemon.post("/v1/samples", {"run_id": "r", "at": "2026-01-01T00:00:00Z"}, token).status_code == 204
    daemon.observe({}, instances=())                            # terminated
    daemon.clock.t += daemon.book.grace_s                       # a spooled record sent late still lands
    assert daemon.post("/v1/usage", RECORD, token).status_code == 201
    daemon.clock.t += 1
    daemon.observe()
    assert daemon.post("/v1/usage", {**RECORD, "run_id": "r-2"}, token).status_code == 401
    assert len(daemon.runs("app")) == 1


def test_records_past_the_rate_are_429_and_bodies_over_the_cap_413(tmp_path):
    d = Daemon(tmp_path, ApiLimits(max_body_bytes=4096, records_per_min=3, samples_per_min=2))
    try:
        token = d.tokens.for_node("prov-t-q5")
        d.observe({"prov-t-q5": (url("app", 7),)})
        codes = [d.post("/v1/usage", {**RECORD, "run_id": f"r{i}"}, token).status_code for i in range(5)]
        assert codes == [201, 201, 201, 429, 429]
        sample = {"run_id": "r", "at": "2026-01-01T00:00:00Z"}
        assert [d.post("/v1/samples", sample, token).status_code for _ in range(3)] == [204, 204, 429]
        assert d.refused("rate") == 3 and len(d.runs("app")) == 3
        d.clock.t += 20                                         # a token back every 20 s
        assert d.post("/v1/usage", {**RECORD, "run_id": "r9"}, token).status_code == 201
        d.clock.t += 20
        big = d.post("/v1/usage", {**RECORD, "run_id": "r10", "image": "x" * 5000}, token)
        assert big.status_code == 413 and big.json()["field"] == "body"
    finally:
        d.http.stop()


def test_values_the_store_cannot_take_are_400_not_503(daemon):
    token = daemon.tokens.for_node("prov-t-q5")
    daemon.observe({"prov-t-q5": (url("app", 7),)})
    for change, field in (({"exit_code": 2 ** 63}, "exit_code"), ({"duration_s": 10 ** 400}, "duration_s"),
                          ({"run_id": "\ud800"}, "run_id")):
        r = daemon.post("/v1/usage", {**RECORD, **change}, token)
        assert r.status_code == 400 and r.json()["field"] == field, (change, r.text)
    deep = requests.post(daemon.http.url + "/v1/usage", data="[" * 20000, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})
    assert deep.status_code == 400 and deep.json()["field"] == "body"


def test_the_api_keys_of_the_config_are_checked():
    c = parse_config("daemon:\n  api: {records_per_min: 5}\n  metrics_listen: 127.0.0.1:9109\n"
                     "  metrics_token_env: METRICS_TOKEN\n")
    d = c.daemon
    assert ApiLimits.from_config(d.api) == ApiLimits(records_per_min=5)
    assert (d.metrics_listen, d.metrics_token_env) == ("127.0.0.1:9109", "METRICS_TOKEN")
    for bad in ("api: {max_body_bytes: 10}", "api: {records_per_min: -1}", "metrics_listen: abc",
                "api: {burst: 3}"):
        with pytest.raises(ConfigError):
            parse_config(f"daemon:\n  {bad}\n")
