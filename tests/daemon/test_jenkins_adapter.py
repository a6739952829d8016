"""The Jenkins adapter against the emulator: both demand paths, why parsing, nodes, errors, restarts."""

from __future__ import annotations

import pytest

from provisioner.daemon.jenkins import (JenkinsAuthError, JenkinsClient, JenkinsForbidden, JenkinsNotFound,
                                        JenkinsUnavailable)
from provisioner.daemon.model import NodeMeta
from provisioner.daemon.queue import QueueReader, job_from_display, job_from_url, why_label
from tests.daemon.conftest import ADMIN, BOB

EXPR = "ec2 && vcpu=2"


def client(emu, user=ADMIN) -> JenkinsClient:
    return JenkinsClient(emu.url, user[0], user[1], timeout=5)


def read(reader: QueueReader, c: JenkinsClient, prefix: str = "prov-t-"):
    fetched = reader.fetch()
    nodes, names = c.computers(prefix)
    return reader.items(fetched, nodes), names


@pytest.mark.parametrize("why,label", [
    ("There are no nodes with the label \u2018ec2&&vcpu=2\u2019", "ec2&&vcpu=2"),
    ("All nodes of label \u2018ec2&&\"a:b\"\u2019 are offline", 'ec2&&"a:b"'),
    ("Waiting for next available executor on \u2018prov-t-q1\u2019", "prov-t-q1"),
    ("\u2018prov-t-q1\u2019 is offline", "prov-t-q1"),
    ("\u2018Built-In Node\u2019 doesn\u2019t have label \u2018ec2&&gpu=1\u2019; \u2018x\u2019 is offline", "ec2&&gpu=1"),
    ("Waiting for next available executor", None), ("In the quiet period. Expires in 4 sec", None), (None, None),
], ids=["no-nodes", "all-offline", "executor-on", "node-offline", "composite", "no-label", "quiet", "none"])
def test_why_patterns(why, label):
    assert why_label(why) == label


def test_job_names_from_urls_and_display_names():
    assert job_from_url("http://j:8080/job/a/job/b%20c/") == "a/b c"
    assert job_from_url("job/p/7/") == "p"
    assert job_from_display("a \u00bb b") == "a/b"
    assert job_from_display("part of a \u00bb p #7") == "a/p"
    assert job_from_display("p #7 (build)") == "p"


def test_admin_reads_exact_labels_with_one_scripttext_call(emu):
    emu.create_job("train", label=EXPR)
    emu.create_job("pipe", kind="pipeline", script=[("sh", "true")], label="ec2 && mem=4")
    emu.schedule("train")
    emu.schedule("pipe")
    c = client(emu)
    reader = QueueReader(c)
    items = emu.wait_for(lambda: len(read(reader, c)[0]) == 2 and read(reader, c)[0], timeout=5)
    assert reader.path == "script"
    by_job = {i.job: i for i in items}
    assert by_job["train"].label == "ec2&&vcpu=2" and by_job["train"].buildable
    assert by_job["pipe"].label == "ec2&&mem=4"                  # pipeline node() items: exact too
    c.calls.clear()
    read(reader, c)
    assert c.calls == {"POST scriptText": 1, "GET computer": 1}    # one read each per poll


def test_non_admin_falls_back_for_good_and_keeps_labels_once_a_node_exists(emu, caplog):
    emu.create_job("train", label=EXPR)
    emu.create_job("free", label="ec2 && gpu=1")
    c = client(emu, BOB)
    reader = QueueReader(c)
    c.ensure_sentinel("autoscaler-sentinel", c.computers("prov-")[1])
    emu.create_job("pipe", kind="pipeline", script=[("sh", "true")], label="ec2 && mem=4")
    qid = emu.schedule("pipe")
    emu.schedule("train")
    emu.wait_for(lambda: len(read(reader, c)[0]) == 2, timeout=5)
    items, names = read(reader, c)
    assert reader.path == "rest" and "autoscaler-sentinel" in names
    by_job = {i.job: i for i in items}
    assert by_job["train"].label == EXPR                          # task.labelExpression (freestyle)
    assert by_job["pipe"].label == "ec2&&mem=4"                   # from why, with the sentinel present
    assert sum("jenkins.demand-path" in r.message for r in caplog.records) == 1
    # one node for the pipeline label: why now names the node; the cached label stays
    meta = NodeMeta("t", qid, by_job["pipe"].since, "pipe", "ec2&&mem=4", 1)
    c.create_node("prov-t-q9", "ec2 mem=4", meta.description(), "/tmp")
    emu.maintain()
    assert "prov-t-q9" in (emu.queue_items()[0]["why"] + emu.queue_items()[1]["why"])
    items, _ = read(reader, c)
    assert {i.job: i.label for i in items}["pipe"] == "ec2&&mem=4"
    # a fresh reader (a restarted daemon) resolves the node name through the node's metadata
    fresh = QueueReader(c)
    fresh.use_script = False
    assert {i.job: i.label for i in read(fresh, c)[0]}["pipe"] == "ec2&&mem=4"
    assert c.calls["POST scriptText"] == 1                        # 403 once, never again


def test_every_request_asks_for_english(emu):
    emu.create_job("train", label=EXPR)
    emu.schedule("train")
    emu.maintain()
    c = client(emu, BOB)
    reader = QueueReader(c, mode="rest")
    items, _ = read(reader, c)
    assert items[0].why.startswith("Waiting for next available executor")   # the emulator defaults to German


def test_node_create_secret_running_build_and_delete(emu, tmp_path):
    c = client(emu)
    meta = NodeMeta("t", 5, 1234, "train", EXPR, 1, ("c5.large", "us-east-1", "on-demand"), 0.085, 10.0)
    c.create_node("prov-t-q5", "ec2 vcpu=2", meta.description(), str(tmp_path))
    info = emu.node("prov-t-q5")
    assert info.mode == "EXCLUSIVE" and info.num_executors == 1
    assert c.node_secret("prov-t-q5") == emu.secret("prov-t-q5")
    [node], names = c.computers("prov-t-")
    assert node.meta == meta and node.labels == {"ec2", "vcpu=2", "prov-t-q5"}
    assert node.offline and not node.temporarily_offline and not node.busy
    emu.create_job("train", label=EXPR, script="sleep 2")
    emu.schedule("train")
    emu.run_agent("prov-t-q5", tmp_path)
    emu.wait_for(lambda: c.computers("prov-t-")[0][0].builds, timeout=20)
    [node], _ = c.computers("prov-t-")
    assert node.online and node.builds and node.builds[0].endswith("/job/train/1/")
    c.drain("prov-t-q5")
    [node], _ = c.computers("prov-t-")
    assert node.temporarily_offline and node.busy
    assert c.delete_node("prov-t-q5") is True
    assert c.delete_node("prov-t-q5") is False                    # already gone is fine
    with pytest.raises(JenkinsNotFound):
        c.node_secret("prov-t-q5")


def test_errors_map_to_a_few_exceptions(emu):
    with pytest.raises(JenkinsAuthError) as wrong:
        JenkinsClient(emu.url, "admin", "nope").computers("x")
    assert wrong.value.code == "401" and "nope" not in str(wrong.value)
    with pytest.raises(JenkinsForbidden):
        client(emu, BOB).request("POST", "scriptText", data={"script": "println 1"})
    with pytest.raises(JenkinsNotFound):
        client(emu).get_json("computer/missing/api/json")
    emu.set_down(True)
    try:
        with pytest.raises(JenkinsUnavailable) as down:
            client(emu).computers("x")
        assert down.value.code == "connection"
    finally:
        emu.set_down(False)
    emu.set_down(True, mode="503")
    try:
        with pytest.raises(JenkinsUnavailable):
            client(emu).computers("x")
    finally:
        emu.set_down(False)


def test_a_controller_restart_drops_id_keyed_caches_and_the_crumb(emu):
    emu.create_job("free", kind="pipeline", script=[("sh", "true")], label="ec2 && gpu=1")
    c = client(emu, BOB)
    c.ensure_sentinel("autoscaler-sentinel", set())
    emu.schedule("free")
    reader = QueueReader(c, mode="rest")
    emu.wait_for(lambda: read(reader, c)[0] and reader._labels, timeout=5)
    assert c.jenkins_session
    seen = []
    c.on_restart(lambda old, new: seen.append((old, new)))
    before = c.jenkins_session
    c.create_node("prov-t-q1", "ec2", "x", "/tmp")                # a POST: a crumb is fetched and kept
    emu.restart()
    items, _ = read(reader, c)
    assert seen == [(before, c.jenkins_session)] and before != c.jenkins_session
    assert reader._labels == {items[0].key: items[0].label}       # dropped, then learnt again
    assert c.delete_node("prov-t-q1")                             # works with a new crumb


def test_a_node_label_with_a_quote_reaches_jenkins_intact_and_the_build_runs_there(emu, tmp_path):
    from provisioner.labels import node_label_string
    from provisioner.requirements import Requirements
    from tests.factories import offer
    expr = 'ec2 && "it\'s" && "tab\\there"'
    names = Requirements.parse(expr).node_labels(offer("c5.large"))
    c = client(emu)
    meta = NodeMeta("t", 6, 1234, "odd", expr, 1, ("c5.large", "us-east-1", "on-demand"), 0.085, 10.0)
    c.create_node("prov-t-q6", node_label_string(names), meta.description(), str(tmp_path))
    [node], _ = c.computers("prov-t-")
    assert node.labels == {"ec2", "it's", "tab\there", "prov-t-q6"}
    emu.create_job("odd", label=expr, script="true")
    emu.schedule("odd")
    emu.run_agent("prov-t-q6", tmp_path)
    emu.wait_for(lambda: any(b["result"] == "SUCCESS" for b in emu.builds("odd")), timeout=20)
    assert emu.builds("odd")[0]["builtOn"] == "prov-t-q6"
