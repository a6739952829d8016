"""The pure boot-failure decisions (provisioner/daemon/bootfail.py) and reconcile's `paused` hold."""

from __future__ import annotations

import pytest

from provisioner.daemon import bootfail as B
from provisioner.daemon.model import Hold, PlanKey, Provision
from provisioner.daemon.reconcile import reconcile
from tests.daemon.helpers import LABEL, NOW, SETTINGS, item, observed

IMG, CFG = "sha256:aaa", "cfg1"


def ended(node="prov-o-q1", instance="i-1", source="cloud", image=IMG, config=CFG, **kw) -> B.Ended:
    return B.Ended(instance=instance, node=node, image=image, config=config, code=kw.pop("code", "agent-exited"),
                   source=source, **kw)


@pytest.mark.parametrize("nodes, connected, retired, expect", [
    ({"prov-o-q1": False}, (), (), ["prov-o-q1"]),                  # never connected: a boot failure
    ({"prov-o-q1": True}, (), (), []),                              # online now: it ran its build
    ({"prov-o-q1": False}, ("prov-o-q1",), (), []),                 # connected before: a finished agent
    ({}, (), (), []),                                               # its node is gone: not ours to judge
    ({"prov-o-q1": False}, (), ("prov-o-q1",), []),                 # we retired it ourselves
], ids=["never-connected", "online", "connected-before", "node-gone", "retired"])
def test_what_is_a_boot_failure(nodes, connected, retired, expect):
    assert [f.node for f in B.failures([ended()], nodes, connected, retired)] == expect


def test_one_failure_per_node_when_cloud_and_report_both_tell():
    report = ended(source="report", image="", config="", code="agent-exited", detail="java: not found",
                   exit_code=127)
    [f] = B.failures([report, ended(exit_code=127, log_tail=("starting", "sh: java: not found"))],
                     {"prov-o-q1": False}, ())
    assert f.ended.source == "cloud" and f.key == B.boot_key(IMG, CFG)    # the cloud's view has the image
    assert f.cause() == "agent-exited: exit 127: java: not found: sh: java: not found"   # both words


def test_cause_names_code_exit_and_the_telling_log_line():
    f = B.BootFailure("n", ended(exit_code=127, log_tail=("boot", "sh: java: not found", "bye", "")))
    assert f.cause() == "agent-exited: exit 127: sh: java: not found"
    assert B.telling_line(["a", "b"]) == "b" and B.telling_line([]) == ""


@pytest.mark.parametrize("count, threshold, paused", [(2, 3, False), (3, 3, True), (9, 0, False), (1, 1, True)])
def test_when_to_pause(count, threshold, paused):
    assert B.should_pause(count, threshold) is paused


def test_ledger_pauses_once_after_n_in_a_row_and_a_success_resets():
    ledger, new = B.Ledger(), []
    for _ in range(2):
        ledger, new = B.record(ledger, ["k"], [], 3)
        assert new == [] and "k" not in ledger.paused
    ledger, new = B.record(ledger, ["k"], [], 3)
    assert new == ["k"] and ledger.paused == {"k"} and ledger.failures["k"] == 3
    ledger, new = B.record(ledger, ["k"], [], 3)
    assert new == [] and "k" in ledger.paused                 # alerted once, not on every failure
    ledger, _ = B.record(ledger, [], ["k"], 3)
    assert ledger.paused == frozenset() and "k" not in ledger.failures
    ledger, _ = B.record(ledger, ["k", "k2"], [], 3)
    ledger, _ = B.record(ledger, ["k"], ["k"], 3)             # failures and a success in one tick
    assert ledger.failures == {"k": 1, "k2": 1}


def test_paused_plans_and_a_changed_image_resumes():
    ledger = B.Ledger({B.boot_key(IMG, CFG): 3}, frozenset({B.boot_key(IMG, CFG)}))
    k1, k2, k3 = PlanKey("ec2", "a"), PlanKey("ec2", "b"), PlanKey("ec2", "c")
    keys = {k1: B.boot_key(IMG, CFG), k2: B.boot_key("sha256:new", CFG), k3: None}
    assert B.paused_plans(keys, ledger) == {k1}


def test_config_hash_changes_with_any_part():
    assert B.config_hash("1.0", "docker", "") != B.config_hash("1.0", "docker", "apt-get install x")
    assert len(B.config_hash("x")) == 16


def test_reconcile_holds_paused_demand_and_provisions_the_rest():
    items = [item(1), item(2, job="other")]
    from tests.daemon.helpers import plan
    plans = {PlanKey(LABEL, "train"): plan(), PlanKey(LABEL, "other"): plan()}
    obs = observed(items=items, plans=plans)
    from dataclasses import replace
    actions = reconcile(replace(obs, paused=frozenset({PlanKey(LABEL, "train")})), SETTINGS, NOW)
    assert [a for a in actions if isinstance(a, Hold)] == [Hold(items[0].key, LABEL, "paused")]
    assert [a.item.id for a in actions if isinstance(a, Provision)] == [2]
