"""reconcile() and the pool's refill under every kind of cap with warm-pool spares present (pure,
small frozen inputs; the same on moto: tests/daemon/test_pool_ec2_fleet.py). A ready or starting
spare counts everywhere; a stopped one against the count caps and with its volumes' price, not
against vCPU caps (AWS counts running instances only); a spare a waiting build starts is that
build's machine, counted once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioner.daemon import pool_caps
from provisioner.daemon.model import Hold, PlanKey, Provision
from provisioner.daemon.reconcile import reconcile
from provisioner.selection import EBS_GP3_USD_PER_GIB_MONTH, HOURS_PER_MONTH
from tests.daemon.helpers import LABEL, NOW, SETTINGS, instance, item
from tests.daemon.test_caps_budgets import VCPUS, kinds, obs, plan_of
from tests.factories import offer

XL = offer("m5.xlarge", vcpu=4, price=0.192)
PLANS = {PlanKey(LABEL, "train"): plan_of(XL)}


def spares(state: str, n: int = 2, price: float = 0.192, serves=None) -> tuple:
    running = state != "stopped"
    return tuple(pool_caps.SpareLoad(instance(f"i-s{k}", None, state=state, instance_type="m5.xlarge"), LABEL,
                                     price if running else pool_caps.stopped_price(30), running,
                                     serves if k == 0 else None) for k in range(n))


def provisioned(settings, spare_loads, n_items: int = 3):
    acts = reconcile(replace(obs([item(i) for i in range(1, n_items + 1)], PLANS), spares=spare_loads),
                     settings, NOW)
    return [p.item.id for p in kinds(acts, Provision)], [(h.item[0], h.reason) for h in kinds(acts, Hold)]


@pytest.mark.parametrize("state", ["ready", "starting", "stopped"])
def test_every_spare_counts_against_max_agents_and_max_per_label(state):
    assert provisioned(replace(SETTINGS, max_agents=3), spares(state)) == ([1], [(2, "cap:global"), (3, "cap:global")])
    assert provisioned(replace(SETTINGS, max_per_label=3), spares(state)) == ([1], [(2, "cap:label"), (3, "cap:label")])
    assert provisioned(replace(SETTINGS, max_agents=3), ()) == ([1, 2, 3], [])


def test_a_stopped_spare_a_build_starts_is_not_counted_twice_against_counts():
    ids, holds = provisioned(replace(SETTINGS, max_agents=3), spares("stopped", serves=(1, 1001)))
    assert ids == [1, 2] and holds == [(3, "cap:global")]    # item 1 starts spare 0: 2 spares + item 2


def test_running_spares_count_against_vcpu_caps_stopped_ones_do_not():
    s = replace(SETTINGS, max_vcpus=12)                       # 3 x 4 vCPUs
    assert provisioned(s, spares("ready")) == ([1], [(2, "cap:vcpu"), (3, "cap:vcpu")])
    assert provisioned(s, spares("starting")) == ([1], [(2, "cap:vcpu"), (3, "cap:vcpu")])
    assert provisioned(s, spares("stopped")) == ([1, 2, 3], [])
    per_label = replace(SETTINGS, max_vcpus_per_label=8)
    assert provisioned(per_label, spares("ready")) == ([], [(1, "cap:label"), (2, "cap:label"), (3, "cap:label")])
    assert provisioned(per_label, spares("stopped")) == ([1, 2], [(3, "cap:label")])


def test_running_spares_count_against_class_caps_and_the_accounts_quota():
    key = ("us-east-1", "standard", "on-demand")
    for settings, reason in ((replace(SETTINGS, class_caps={key: 12.0}), "cap:class"),
                             (replace(SETTINGS, class_quotas={key: 12.0}), "quota")):
        assert provisioned(settings, spares("ready")) == ([1], [(2, reason), (3, reason)])
        assert provisioned(settings, spares("stopped")) == ([1, 2, 3], [])


def test_spares_count_against_the_usd_per_hour_budget_stopped_ones_at_their_volumes_price():
    s = replace(SETTINGS, budget_usd_per_hour=0.192 * 3 + 0.001)
    assert provisioned(s, spares("ready")) == ([1], [(2, "budget"), (3, "budget")])
    ebs = 30 * EBS_GP3_USD_PER_GIB_MONTH / HOURS_PER_MONTH
    assert pool_caps.stopped_price(30) == pytest.approx(ebs) and ebs < 0.004
    roomy = replace(SETTINGS, budget_usd_per_hour=0.192 * 3 + 2 * ebs + 0.0001)
    assert provisioned(roomy, spares("stopped")) == ([1, 2, 3], [])
    tight = replace(SETTINGS, budget_usd_per_hour=0.192 * 3 + 2 * ebs - 0.0001)
    assert provisioned(tight, spares("stopped")) == ([1, 2], [(3, "budget")])


def test_the_refill_is_admitted_only_within_every_cap():
    live = [(instance("i-1", "prov-o-q1", instance_type="m5.xlarge"), LABEL, 0.192)]
    launches = [(XL, LABEL)]
    cases = [(replace(SETTINGS, max_agents=4), "cap:global"), (replace(SETTINGS, max_per_label=4), "cap:label"),
             (replace(SETTINGS, budget_usd_per_hour=0.192 * 4 + 0.001), "budget"),
             (replace(SETTINGS, max_vcpus=16), "cap:vcpu"), (replace(SETTINGS, max_vcpus_per_label=16), "cap:label"),
             (replace(SETTINGS, class_quotas={("us-east-1", "standard", "on-demand"): 16.0}), "quota")]
    for settings, reason in cases:               # held: 1 live + 1 launching + 1 spare; one more fits
        room = pool_caps.headroom(settings, VCPUS, live, spares("ready", n=1), launches)
        assert room.admit(XL, LABEL) is None
        assert room.admit(XL, LABEL) == reason, settings
    # a stopped spare leaves the vCPU room to the refill, never the count room
    room = pool_caps.headroom(replace(SETTINGS, max_vcpus=12), VCPUS, live, spares("stopped", n=3), launches)
    assert room.admit(XL, LABEL) is None
    room = pool_caps.headroom(replace(SETTINGS, max_agents=5), VCPUS, live, spares("stopped", n=3), launches)
    assert room.admit(XL, LABEL) == "cap:global"
    assert not pool_caps.any_cap(replace(SETTINGS, max_agents=None))
