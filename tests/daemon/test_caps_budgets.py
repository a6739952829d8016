"""reconcile() under vCPU caps, quotas and enforced team budgets: small frozen inputs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner.catalog.model import ON_DEMAND, SPOT
from provisioner.daemon.model import Hold, Memory, PlanKey, Provision
from provisioner.daemon.reconcile import reconcile
from provisioner.selection import Candidate, Plan
from tests.daemon.helpers import LABEL, NOW, SETTINGS, flying, instance, item, meta, node, observed
from tests.factories import offer

VCPUS = {"m5.large": 2, "m5.xlarge": 4, "g5.xlarge": 4, "c5.xlarge": 4}


def kinds(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def plan_of(*offers) -> Plan:
    cands = tuple(Candidate(o, 600.0, o.price / 6, 1000.0) for o in offers)
    return Plan(chosen=cands[0], candidates=cands, autotuned=None, reasons=(), node_labels=("ec2", "vcpu=2"))


def obs(items, plans=None, instances=(), nodes=(), memory=Memory(), **kw):
    o = observed(items, nodes, instances, plans=plans, memory=memory)
    return replace(o, vcpus=VCPUS, **kw)


def test_a_global_vcpu_cap_lets_exactly_the_builds_that_fit_start():
    four = plan_of(offer("m5.xlarge", vcpu=4))
    plans = {PlanKey(LABEL, "train"): four}
    running = instance("i-1", "prov-o-q1", instance_type="m5.xlarge")
    mem = Memory(in_flight={"prov-o-q2": flying(instance("i-2", "prov-o-q2", instance_type="m5.xlarge"))})
    nodes = [node("prov-o-q1", meta(1)), node("prov-o-q2", meta(2))]
    items = [item(i) for i in range(1, 7)]
    acts = reconcile(obs(items, plans, [running], nodes, mem), replace(SETTINGS, max_vcpus=18), NOW)
    assert [p.item.id for p in kinds(acts, Provision)] == [3, 4]         # 4 + 4 running, + 4 + 4 <= 18
    holds = kinds(acts, Hold)
    assert [(h.item[0], h.reason) for h in holds] == [(5, "cap:vcpu"), (6, "cap:vcpu")]
    assert holds[0].detail == "16+4>18 vCPUs"


def test_vcpus_per_label():
    plans = {PlanKey(LABEL, "train"): plan_of(offer("m5.xlarge", vcpu=4)),
             PlanKey("ec2 && mem=4", "train"): plan_of(offer("m5.large", vcpu=2))}
    items = [item(1), item(2), item(3, label="ec2 && mem=4"), item(4, label="ec2 && mem=4")]
    acts = reconcile(obs(items, plans), replace(SETTINGS, max_vcpus_per_label=4), NOW)
    assert [p.item.id for p in kinds(acts, Provision)] == [1, 3, 4]
    [hold] = kinds(acts, Hold)
    assert (hold.item[0], hold.reason, hold.detail) == (2, "cap:label", "vcpu 4+4>4")


def test_a_full_class_moves_the_plan_to_a_runner_up_with_room_else_holds_with_quota():
    g_spot = offer("g5.xlarge", vcpu=4, market=SPOT, price=0.5)
    g_od = offer("g5.xlarge", vcpu=4, market=ON_DEMAND, price=1.0)
    plans = {PlanKey(LABEL, "train"): plan_of(g_spot, g_od)}
    quotas = {("us-east-1", "g", "spot"): 4.0, ("us-east-1", "g", "on-demand"): 8.0}
    s = replace(SETTINGS, class_quotas=quotas)
    acts = reconcile(obs([item(i) for i in range(1, 6)], plans), s, NOW)
    provs = kinds(acts, Provision)
    assert [(p.item.id, p.plan.chosen.offer.market) for p in provs] == [(1, SPOT), (2, ON_DEMAND), (3, ON_DEMAND)]
    assert [c.offer.market for c in provs[1].plan.candidates] == [ON_DEMAND]   # no way back into the full class
    assert "runner-up" in provs[1].plan.reasons[-1]
    holds = kinds(acts, Hold)
    assert [(h.item[0], h.reason) for h in holds] == [(4, "quota"), (5, "quota")]
    assert holds[0].detail == "us-east-1 g/spot 4+4>4"


def test_the_configured_class_cap_binds_when_it_is_below_the_quota():
    plans = {PlanKey(LABEL, "train"): plan_of(offer("c5.xlarge", vcpu=4))}
    s = replace(SETTINGS, class_caps={("us-east-1", "standard", "on-demand"): 8.0},
                class_quotas={("us-east-1", "standard", "on-demand"): 64.0})
    running = instance("i-1", "prov-o-q1", instance_type="c5.xlarge")
    acts = reconcile(obs([item(i) for i in range(1, 5)], plans, [running], [node("prov-o-q1", meta(1))]), s, NOW)
    assert [p.item.id for p in kinds(acts, Provision)] == [2]
    assert {h.reason for h in kinds(acts, Hold)} == {"cap:class"}


def test_other_classes_and_regions_are_not_counted_against_a_full_one():
    plans = {PlanKey(LABEL, "train"): plan_of(offer("m5.large", vcpu=2))}
    s = replace(SETTINGS, class_quotas={("us-east-1", "g", "on-demand"): 0.0,
                                        ("us-west-2", "standard", "on-demand"): 0.0})
    acts = reconcile(obs([item(1), item(2)], plans, [instance("i-9", None, instance_type="g5.xlarge")]), s, NOW)
    assert len(kinds(acts, Provision)) == 2


def test_a_team_at_100_percent_launches_nothing_while_another_team_still_does():
    plans = {PlanKey(LABEL, "ml/train"): plan_of(offer("m5.large")), PlanKey(LABEL, "etl/load"): plan_of(offer("m5.large"))}
    items = [item(1, job="ml/train"), item(2, job="etl/load"), item(3, job="ml/train"), item(4, job="adhoc")]
    plans[PlanKey(LABEL, "adhoc")] = plan_of(offer("m5.large"))
    o = obs(items, plans, teams={"ml/train": "ml", "etl/load": "data"}, over_budget=frozenset({"ml"}))
    acts = reconcile(o, SETTINGS, NOW)
    assert [p.item.id for p in kinds(acts, Provision)] == [2, 4]
    assert [(h.item[0], h.reason, h.detail) for h in kinds(acts, Hold)] == [(1, "budget", "team:ml"),
                                                                             (3, "budget", "team:ml")]


def test_without_caps_the_ledger_is_not_built_and_nothing_changes():
    plans = {PlanKey(LABEL, "train"): plan_of(offer("m5.xlarge", vcpu=4))}
    acts = reconcile(obs([item(i) for i in range(1, 4)], plans), SETTINGS, NOW)
    assert len(kinds(acts, Provision)) == 3


def test_config_caps_become_settings_per_region_and_log_as_text():
    import json
    from provisioner.config import parse_config
    from provisioner.daemon.wiring import _loggable, account_quotas, settings_from_config
    config = parse_config("regions: [us-east-1, eu-west-1]\ndaemon:\n  max_vcpus: 64\n  max_vcpus_per_label: 16\n"
                          "  max_vcpus_per_class: {spot: {standard: 32}, on-demand: {g: 8}}\n")
    s = settings_from_config(config, "o")
    assert (s.max_vcpus, s.max_vcpus_per_label) == (64, 16)
    assert s.class_caps == {("us-east-1", "standard", "spot"): 32, ("eu-west-1", "standard", "spot"): 32,
                            ("us-east-1", "g", "on-demand"): 8, ("eu-west-1", "g", "on-demand"): 8}
    assert json.loads(json.dumps(_loggable(s)))["class_caps"]["eu-west-1 g on-demand"] == 8
    assert account_quotas(config, "docker") == {}                   # quotas are EC2's
    off = parse_config("daemon:\n  service_quotas: false\n")
    assert account_quotas(off, "ec2", lambda region: pytest.fail("asked")) == {}


def test_metrics_show_vcpus_limits_and_team_budgets():
    from provisioner.daemon.metrics import DaemonMetrics, Snapshot
    m = DaemonMetrics()
    m.publish(Snapshot(1.0, team_ratio={"ml": 1.25, "data": 0.5}, team_remaining={"ml": 0.0, "data": 50.0},
                       vcpus={("us-east-1", "g", "spot"): 8.0},
                       vcpu_limits={("us-east-1", "g", "spot"): (8.0, "quota")}, max_vcpus=64.0))
    get = m.registry.get_sample_value
    assert get("provisioner_team_budget_used_ratio", {"team": "ml"}) == 1.25
    assert get("provisioner_team_budget_remaining_usd", {"team": "data"}) == 50.0
    assert get("provisioner_agent_vcpus", {"region": "us-east-1", "quota_class": "g", "market": "spot"}) == 8
    assert get("provisioner_vcpu_limit", {"region": "us-east-1", "quota_class": "g", "market": "spot",
                                          "source": "quota"}) == 8
    assert get("provisioner_max_vcpus") == 64
