"""The daemon's Planner: one plan per (label, job), the same as planning each alone."""

from __future__ import annotations

from provisioner.config import parse_config
from provisioner.daemon.model import NoPlan, PlanKey
from provisioner.daemon.plans import Planner
from provisioner.planner import plan_for, settings_from
from provisioner.requirements import Requirements
from tests.daemon.fakes import small_catalog
from tests.factories import run


def test_plans_for_many_jobs_equal_planning_each_alone_and_share_the_offers_that_fit():
    config = parse_config("regions: [us-east-1]\n")
    catalog = small_catalog()
    planner = Planner(config, catalog, None, lambda: frozenset())
    runs = {f"job{i}": [run(f"job{i}", n, instance_type="m5.large", cpu_avg=150, cpu_max=200, mem_gib=1 + i)
                        for n in range(4)] for i in range(4)}
    labels = ["ec2 && vcpu=2", "ec2 && mem=8", "ec2 && gpu=1"]
    keys = [PlanKey(label, job) for label in labels for job in runs] + [PlanKey("ec2 && vcpu=2", "job0", True)]
    plans = planner.plans(keys, runs)
    for key in keys:
        req = Requirements.parse(key.label, ["ondemand"] if key.ondemand else [], lax=True)
        try:
            alone = plan_for(planner.regional, req, runs[key.job], settings_from(config, req))
        except Exception as exc:     # noqa: BLE001 - the planner keeps the reason
            assert isinstance(plans[key], NoPlan) and str(exc) in plans[key].reason
            continue
        assert plans[key] == alone
    pools = planner._pools[id(planner.regional)]
    # the memory floor from history applies with or without mem= in the label: each label narrows
    # once per job's floor (2, 3, 4.5, 5.5 GiB), and a failure is not kept
    by_label = [sum(1 for k in pools if k[0] == Requirements.parse(label, lax=True).key) for label in labels]
    assert by_label == [4, 4, 0]
