"""The daemon's PlanCache: one plan per (label, job), the same as planning each alone, through the
same intent resolver as `plan` and `run --remote`."""

from __future__ import annotations

import pytest

from provisioner.config import parse_config
from provisioner.daemon.model import NoPlan, PlanKey
from provisioner.daemon.plan_cache import PlanCache
from provisioner.planner import plan_intent, resolve_for_config, settings_for
from tests.daemon.fakes import small_catalog
from tests.factories import offer, run, steady_site

EC2_BOTH = "cloud: ec2\nregions: [us-east-1]\nec2:\n  images:\n    us-east-1: {x86_64: ami-1, arm64: ami-2}\n"


def test_plans_for_many_jobs_equal_planning_each_alone_and_share_the_offers_that_fit():
    config = parse_config("regions: [us-east-1]\n")
    catalog = small_catalog()
    plan_cache = PlanCache(config, catalog, None, lambda: frozenset())
    runs = {f"job{i}": [run(f"job{i}", n, instance_type="m5.large", cpu_avg=150, cpu_max=200, mem_gib=1 + i)
                        for n in range(4)] for i in range(4)}
    labels = ["ec2 && vcpu=2", "ec2 && mem=8", "ec2 && gpu=1"]
    keys = [PlanKey(label, job) for label in labels for job in runs] + [PlanKey("ec2 && vcpu=2", "job0", True)]
    plans = plan_cache.plans(keys, runs)
    limit = config.daemon.ondemand_after_interruptions
    for key in keys:
        intent = resolve_for_config(config, key.label, lax=True, interruptions=limit if key.ondemand else 0)
        try:
            alone = plan_intent(plan_cache.regional, intent, runs[key.job], settings_for(config, intent))
        except Exception as exc:     # noqa: BLE001 - the planner keeps the reason
            assert isinstance(plans[key], NoPlan) and str(exc) in plans[key].reason
            continue
        assert plans[key] == alone and plans[key].intent == intent
    pools = plan_cache._pools[id(plan_cache.regional)]
    # the memory floor from history applies with or without mem= in the label: each label narrows
    # once per job's floor (2, 3, 4.5, 5.5 GiB), and a failure is not kept
    by_label = [sum(1 for k in pools if k[0] == plan_cache.intent(label).requirements.key) for label in labels]
    assert by_label == [4, 4, 0]


def test_the_daemon_plans_only_defaults_arch_where_the_config_has_images():
    """Observation 7: the daemon launched arm64 c8g.large for `ec2 && vcpu=2 && mem=2`."""
    from provisioner.catalog import load_catalog
    catalog = load_catalog()
    plan = PlanCache(parse_config(EC2_BOTH), catalog, None, lambda: frozenset()).plans(
        [PlanKey("ec2 && vcpu=2 && mem=2", "j")], {})[PlanKey("ec2 && vcpu=2 && mem=2", "j")]
    assert {c.offer.arch for c in plan.candidates} == {"x86_64"}, plan.chosen.offer
    assert any(r.startswith("Architecture: x86_64 (defaults.arch x86_64;") for r in plan.reasons)
    # the default config (the docker cloud) plans the host's architecture
    from provisioner.planner import host_arch
    default = PlanCache(parse_config(""), catalog, None, lambda: frozenset()).plans(
        [PlanKey("ec2 && vcpu=2 && mem=2", "j")], {})[PlanKey("ec2 && vcpu=2 && mem=2", "j")]
    assert {c.offer.arch for c in default.candidates} == {host_arch()}
    named = PlanCache(parse_config(EC2_BOTH), catalog, None, lambda: frozenset()).plans(
        [PlanKey("ec2 && vcpu=2 && mem=2 && arch=arm64", "j")], {})
    assert next(iter(named.values())).chosen.offer.arch == "arm64"


SPOT_AND_OD = [offer("c5.large", vcpu=2, mem=4, price=0.085),
               offer("c5.large", vcpu=2, mem=4, price=0.03, market="spot", ondemand=0.085)]


@pytest.mark.parametrize("label, interrupted, market, spot_only", [
    ("ec2 && vcpu=2", False, "spot", False),
    ("ec2 && vcpu=2", True, "on-demand", False),          # interrupted repeatedly: on demand
    ("ec2 && spot", True, "spot", True),                   # the label's own market wins
    ("ec2 && (spot || ondemand)", False, "spot", False),   # restricts nothing: fails over to on demand
    ("ec2 && (spot || ondemand)", True, "on-demand", False),
    ("ec2 && !ondemand", True, "spot", True),
], ids=lambda v: str(v))
def test_market_rule_and_interruptions_in_the_daemons_plans(label, interrupted, market, spot_only):
    from provisioner.catalog.model import Catalog
    plan_cache = PlanCache(parse_config(""), Catalog(SPOT_AND_OD, "t", "t"), None, lambda: frozenset())
    key = PlanKey(label, "j", interrupted)
    plan = plan_cache.plans([key], {})[key]
    assert plan.chosen.offer.market == market
    assert plan.intent.spot_only is spot_only


def test_forced_on_demand_falls_back_to_spot_when_no_on_demand_offer_fits():
    from provisioner.catalog.model import Catalog
    plan_cache = PlanCache(parse_config(""), Catalog(SPOT_AND_OD[1:], "t", "t"), None, lambda: frozenset())
    key = PlanKey("ec2 && vcpu=2", "j", True)
    assert plan_cache.plans([key], {})[key].chosen.offer.market == "spot"


def test_the_daemons_plans_pool_the_sites_spread_of_memory_peaks(tmp_path):
    """Three steady peaks on their own earn a wide bound (t with 2 degrees of freedom); the daemon
    reads the site's spread from the store as `provisioner plan` does, and its floor is the same."""
    from provisioner.history import open_store
    from provisioner.planner import site_spread
    config = parse_config("regions: [us-east-1]\n")
    mine = [run("mine", n, instance_type="m5.large", mem_gib=m) for n, m in enumerate((7.0, 6.75, 6.9))]
    path = str(tmp_path / "h.sqlite3")
    with open_store(path) as store:
        store.add_many(steady_site() + mine)
        site = site_spread(store)
    assert site is not None and site.jobs == 9           # its own peaks among them
    plan_cache = PlanCache(config, small_catalog(), lambda: open_store(path), lambda: frozenset())
    key = PlanKey("ec2", "mine")
    plan = plan_cache.plans([key], plan_cache.runs(["mine"]))[key]
    intent = resolve_for_config(config, "ec2", lax=True)
    alone = plan_intent(plan_cache.regional, intent, mine, settings_for(config, intent))
    assert (alone.autotuned["memory_gib"], plan.autotuned["memory_gib"]) == (8.5, 8.0)
    assert any("pooled with that of the site's 9 jobs" in r for r in plan.reasons)
