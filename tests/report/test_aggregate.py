"""Pure report aggregation over small inline records."""

from __future__ import annotations

import math

import pytest

from provisioner.catalog.model import Catalog, Offer
from provisioner.estimate import estimate
from provisioner.requirements import Requirements
from provisioner.selection import PlanSettings, autotune

from provisioner.report.aggregate import (ReportOptions, build_report, incident_kinds, job_summaries,
                                          rightsizing, run_cost, spot_savings, top_builds, top_memory,
                                          week_of, weekly_costs)
from tests.factories import GIB, run, steady_site


def rec(job="train", n=0, *, start=None, **kw) -> dict:
    r = run(job, n, **kw)
    if start:
        r["start"] = start
    return r


def test_run_cost_prefers_cost_then_price_times_duration():
    assert run_cost(rec(cost_usd=1.5, price_usd_per_hour=9)) == 1.5
    assert run_cost(rec(duration=1800, price_usd_per_hour=2)) == 1.0
    assert run_cost(rec()) is None


@pytest.mark.parametrize("fields, kinds", [
    ({}, []), ({"exit_code": 1}, ["failed"]), ({"exit_code": 124, "timed_out": True}, ["timeout"]),
    ({"exit_code": 137, "oom_killed": True}, ["oom"]), ({"exit_code": 143, "interrupted": True}, ["interrupted"]),
], ids=["ok", "failed", "timeout", "oom", "interrupted"])
def test_incident_kinds(fields, kinds):
    assert incident_kinds(rec(**fields)) == kinds


def test_job_summaries_rank_by_cost_and_count_incidents():
    rows = job_summaries([
        rec("a", 1, cost_usd=1.0, duration=600), rec("a", 2, cost_usd=2.0, exit_code=137, oom_killed=True,
                                                      mem_gib=7),
        rec("b", 1, cost_usd=5.0, team="ml"), rec("c", 1),
    ])
    assert [r["job"] for r in rows] == ["b", "a", "c"]
    a = rows[1]
    assert (a["runs"], a["succeeded"], a["failed"], a["oom_kills"], a["cost_usd"]) == (2, 1, 1, 1, 3.0)
    assert a["median_duration_s"] == 600 and a["mem_peak_bytes"] == 7 * GIB and a["cost_per_run_usd"] == 1.5
    assert rows[0]["team"] == "ml" and rows[2]["runs_without_cost"] == 1


def test_top_builds_sum_retries_of_one_build_and_keep_buildless_runs_apart():
    rows = top_builds([rec("a", 1, cost_usd=1.0), rec("a", 1, cost_usd=2.0) | {"run_id": "retry"},
                       rec("a", 2, cost_usd=2.5), rec("x", cost_usd=0.1) | {"build": None, "run_id": "u1"},
                       rec("x", cost_usd=0.2) | {"build": None, "run_id": "u2"}], top=3)
    assert [(r["job"], r["build"], r["runs"], r["cost_usd"]) for r in rows] == \
        [("a", "1", 2, 3.0), ("a", "2", 1, 2.5), ("x", None, 1, 0.2)]


def test_top_memory_names_the_run_that_peaked():
    rows = top_memory([rec("a", 1, mem_gib=2), rec("a", 2, mem_gib=9), rec("b", 1, mem_gib=4),
                       rec("c", 1, mem_gib=None)], top=5)
    assert [(r["job"], r["build"], r["mem_peak_gib"]) for r in rows] == [("a", "2", 9.0), ("b", "1", 4.0)]


def test_weekly_costs_start_on_monday():
    assert week_of("2026-01-04T23:59:59Z") == "2025-12-29"  # a Sunday
    assert week_of("2026-01-05T00:00:00Z") == "2026-01-05"  # a Monday
    rows = weekly_costs([rec("a", 1, start="2026-01-04T10:00:00Z", cost_usd=1),
                         rec("a", 2, start="2026-01-05T10:00:00Z", cost_usd=2),
                         rec("a", 3, start="2026-01-06T10:00:00Z", cost_usd=3)])
    assert rows == [{"week": "2025-12-29", "job": "a", "runs": 1, "cost_usd": 1.0},
                    {"week": "2026-01-05", "job": "a", "runs": 2, "cost_usd": 5.0}]


def test_spot_savings_against_on_demand():
    s = spot_savings([
        rec("a", 1, duration=3600, market="spot", price_usd_per_hour=0.3, ondemand_usd_per_hour=1.0),
        rec("a", 2, duration=1800, market="spot", price_usd_per_hour=0.4, ondemand_usd_per_hour=1.0,
            interrupted=True),
        rec("b", 1, duration=3600, market="on-demand", price_usd_per_hour=1.0, ondemand_usd_per_hour=1.0),
        rec("c", 1, duration=3600, market="spot", price_usd_per_hour=0.3),  # no on-demand price: left out
    ])
    assert (s["runs"], s["interrupted"]) == (2, 1)
    assert s["spot_cost_usd"] == 0.5 and s["ondemand_cost_usd"] == 1.5 and s["savings_usd"] == 1.0
    assert s["savings_pct"] == 66.7 and [j["job"] for j in s["jobs"]] == ["a"]


def test_rightsizing_the_issue_example_64_gib_peaking_at_9():
    runs = [rec("x", i, mem_gib=9 if i == 7 else 8, requested_mem_gib=64, requested_vcpu=16, cpu_max=280)
            for i in range(20)]
    (row,) = rightsizing(runs, mem_headroom=0.2, min_runs=3)
    # Steady peaks (the planner's rule): the 99% bound of the next peak (8.63 GiB) is under the
    # highest, so the 5% minimum: 9 x 1.05 + 0.5 = 9.95 -> 10 GiB; median CPU peak 280% -> 3 vCPUs
    assert row["suggested_mem_gib"] == 10 and row["suggested_vcpu"] == 3
    assert row["advice"] == ["job x asked for 64 GiB and peaked at 9 GiB over 20 runs: use mem=10",
                             "job x asked for 16 vCPUs and kept 2.8 busy at its median peak over 20 runs: "
                             "use vcpu=3"]


def test_rightsizing_pools_the_sites_spread_of_peaks_as_the_planner_does():
    """Three steady peaks (7.0, 6.75, 6.9 GiB): 13% headroom alone (8.5 GiB -> mem=9), 5% beside
    the site's other jobs in the same records (8 GiB), the planner's floor either way."""
    mine = [rec("mine", i, mem_gib=m, requested_mem_gib=64) for i, m in enumerate((7.0, 6.75, 6.9))]
    (alone,) = rightsizing(mine)
    pooled = next(r for r in rightsizing(steady_site() + mine) if r["job"] == "mine")
    assert (alone["suggested_mem_gib"], pooled["suggested_mem_gib"]) == (9, 8)


def test_rightsizing_raises_memory_after_oom_and_needs_enough_runs():
    runs = [rec("x", i, mem_gib=6, requested_mem_gib=8) for i in range(4)]
    runs.append(rec("x", 9, mem_gib=7.9, requested_mem_gib=8, exit_code=137, oom_killed=True))
    (row,) = rightsizing(runs)
    assert row["suggested_mem_gib"] == 15  # 7.9 x 1.5 x 1.2 + 0.5 = 14.72 -> 15
    assert row["advice"] == ["job x asked for 8 GiB and was OOM-killed in 1 of 5 runs: use mem=15"]
    few = rightsizing([rec("y", 1, requested_mem_gib=8)])
    assert few[0]["suggested_mem_gib"] is None and "advice needs 3" in few[0]["advice"][0]
    assert rightsizing([rec("z", 1)]) == []  # nothing requested: nothing to compare


def test_build_report_limits_weekly_rows_to_the_ranked_jobs():
    records = [rec(f"j{i}", 1, cost_usd=float(i)) for i in range(5)]
    report = build_report(records, ReportOptions(top=2))
    assert [j["job"] for j in report["jobs"]] == ["j4", "j3"]
    assert {w["job"] for w in report["weekly"]} == {"j4", "j3"}
    assert report["totals"] == {"runs": 5, "jobs": 5, "first_start": records[0]["start"],
                                "last_start": records[-1]["start"], "cost_usd": 10.0,
                                "runs_without_cost": 0, "hours": 5.0}


def test_rightsizing_says_when_an_oom_kill_drove_the_suggestion():
    runs = [rec("x", i, mem_gib=5, requested_mem_gib=32) for i in range(5)]
    runs.append(rec("x", 9, mem_gib=6, requested_mem_gib=32, exit_code=137, oom_killed=True))
    (row,) = rightsizing(runs)
    # 6 x 1.5 = 9 GiB needed; the kill sizes it: the full 20% headroom, 9 x 1.2 + 0.5 = 11.3 -> 12
    assert row["advice"] == ["job x asked for 32 GiB and peaked at 5 GiB over 5 runs "
                             "(1 OOM kill counted at 1.5x their peak): use mem=12"]


# -- right-sizing against what was paid for, with the catalog (issue 11, build item 8) -------------

def offer(itype, vcpu, mem, price, *, market="spot", arch="x86_64", burstable=False, current=True,
          ondemand=None, region="us-east-1", gpu=0) -> Offer:
    return Offer(itype, itype.split(".")[0], region, market, vcpu, mem, arch, price,
                 ondemand if ondemand is not None else price * 3, gpu_count=gpu,
                 gpu_model="T4" if gpu else None, burstable=burstable, current_generation=current)


@pytest.fixture
def catalog() -> Catalog:
    spot = [offer("r5.8xlarge", 32, 256, 0.5825, ondemand=2.016),
            offer("r7a.medium", 1, 8, 0.02),              # too little memory
            offer("r7a.large", 2, 16, 0.05),              # the cheapest fit
            offer("m7a.xlarge", 4, 16, 0.09),
            offer("t3.xlarge", 4, 16, 0.04, burstable=True),       # burstable: not suggested
            offer("r4.large", 2, 15.25, 0.03, current=False),     # previous generation: not suggested
            offer("r7g.large", 2, 16, 0.03, arch="arm64"),         # another architecture
            offer("r7a.large", 2, 16, 0.04, region="eu-west-1"),   # another region
            offer("g4dn.xlarge", 4, 16, 0.01, gpu=1)]              # a GPU the job does not use
    ondemand = [offer(o.instance_type, o.vcpu, o.memory_gib, o.ondemand_price, market="on-demand",
                      arch=o.arch, burstable=o.burstable, current=o.current_generation, region=o.region,
                      gpu=o.gpu_count) for o in spot]
    return Catalog(spot + ondemand, source="test", score_source="test")


def test_rightsizing_against_the_type_paid_for_when_nothing_was_requested(catalog):
    runs = [rec("team/costly", i, instance_type="r5.8xlarge", market="spot", mem_gib=9, cpu_max=110,
                duration=1800) for i in range(10)]
    (bare,) = rightsizing(runs)  # without the catalog the type's size is unknown: the suggestion alone
    assert (bare["basis"], bare["suggested_mem_gib"], bare["suggested_type"], bare["advice"]) == (None, 10, None, [])
    (row,) = rightsizing(runs, catalog=catalog)
    assert (row["basis"], row["paid_vcpu"], row["paid_mem_gib"]) == ("paid", 32, 256)
    # 10 equal peaks: the planner's 5% minimum headroom, 9 x 1.05 + 0.5 = 9.95 -> mem=10
    assert (row["suggested_mem_gib"], row["suggested_vcpu"], row["suggested_type"]) == (10, 1, "r7a.large")
    # the record has no price: the catalog's spot price of r5.8xlarge, half an hour per run
    assert row["saving_usd_per_run"] == pytest.approx((0.5825 - 0.05) / 2)
    assert row["advice"] == ["job team/costly ran on r5.8xlarge (32 vCPU, 256 GiB) and peaked at 1.1 vCPU "
                             "and 9 GiB over 10 runs: mem=10 would fit r7a.large (2 vCPU, 16 GiB, "
                             "$0.0500/h spot), saving $0.2662/run"]


def test_rightsizing_prices_the_saving_at_what_the_runs_paid(catalog):
    runs = [rec("j", i, instance_type="r5.8xlarge", market="on-demand", mem_gib=20, cpu_max=350,
                price_usd_per_hour=1.9, duration=3600) for i in range(3)]
    (row,) = rightsizing(runs, catalog=catalog)
    # 3 equal peaks: the 5% minimum headroom, 20 x 1.05 + 0.5 = 21.5 -> 22 GiB; 4 vCPUs busy -> vcpu=4
    assert (row["suggested_mem_gib"], row["suggested_vcpu"]) == (22, 4)
    assert row["suggested_type"] == "r5.8xlarge" and row["saving_usd_per_run"] is None
    assert row["advice"] == []  # the cheapest fit in this catalog is what it ran on


def test_rightsizing_against_a_request_also_names_the_cheaper_type(catalog):
    runs = [rec("x", i, instance_type="m7a.xlarge", market="spot", mem_gib=5, cpu_max=90,
                requested_mem_gib=16, requested_vcpu=4, price_usd_per_hour=0.09) for i in range(5)]
    (row,) = rightsizing(runs, catalog=catalog)
    # 5 equal peaks: no spread, 10% headroom: 5 x 1.1 + 0.5 = 6 GiB
    assert row["basis"] == "requested" and row["suggested_mem_gib"] == 6
    assert row["advice"] == [
        "job x asked for 16 GiB and peaked at 5 GiB over 5 runs: use mem=6",
        "job x asked for 4 vCPUs and kept 0.9 busy at its median peak over 5 runs: use vcpu=1",
        "job x ran on m7a.xlarge (4 vCPU, 16 GiB): mem=6 would fit r7a.medium (1 vCPU, 8 GiB, "
        "$0.0200/h spot), saving $0.0700/run"]


def test_rightsizing_after_oom_kills_on_the_type_paid_for(catalog):
    runs = [rec("big", i, instance_type="r7a.medium", market="spot", mem_gib=6, cpu_max=100,
                price_usd_per_hour=0.02) for i in range(3)]
    runs.append(rec("big", 9, instance_type="r7a.medium", market="spot", mem_gib=7.9, exit_code=137,
                    oom_killed=True, price_usd_per_hour=0.02))
    (row,) = rightsizing(runs, catalog=catalog)
    assert row["suggested_mem_gib"] == 15 and row["suggested_type"] == "r7a.large"  # 7.9 x 1.5 x 1.2 + 0.5
    assert row["advice"] == ["job big ran on r7a.medium (1 vCPU, 8 GiB) and was OOM-killed in 1 of 4 runs: "
                             "mem=15 would fit r7a.large (2 vCPU, 16 GiB, $0.0500/h spot), "
                             "costing $0.0300/run more"]


def test_rightsizing_memory_is_the_planners_floor(catalog):
    """The suggestion is selection.autotune's memory floor for the same runs, rounded up to a GiB."""
    for peaks in ([9] * 10, [9, 8, 9], [4, 6, 5, 9, 7, 5], [30.2, 31, 29.5, 30, 30.4, 31.1]):
        runs = [rec("m", i, instance_type="r5.8xlarge", market="spot", mem_gib=p) for i, p in enumerate(peaks)]
        sizing, _, _ = autotune(Requirements.parse("ec2"), estimate(runs, lambda t, r: None), PlanSettings())
        (row,) = rightsizing(runs, catalog=catalog)
        assert row["suggested_mem_gib"] == math.ceil(sizing.mem_gib), peaks


def test_rightsizing_with_fewer_runs_says_so(catalog):
    runs = [rec("new", i, instance_type="r5.8xlarge", market="spot") for i in range(2)]
    (row,) = rightsizing(runs, catalog=catalog)
    assert row["basis"] == "paid" and row["suggested_type"] is None
    assert row["advice"] == ["job new has 2 successful runs; advice needs 3"]
    local = [rec("local", i, instance_type=None, market=None, mem_gib=3, cpu_max=100) for i in range(3)]
    (row,) = rightsizing(local, catalog=catalog)  # nothing asked or paid: the suggestion alone
    assert (row["basis"], row["suggested_mem_gib"], row["advice"]) == (None, 4, [])  # 3 x 1.05 + 0.5 -> 4


def test_spot_savings_take_the_catalogs_on_demand_price_when_the_record_has_none(catalog):
    s = spot_savings([rec("c", 1, instance_type="r5.8xlarge", duration=3600, market="spot",
                          price_usd_per_hour=0.5),
                      rec("d", 1, instance_type="unknown.type", duration=3600, market="spot",
                          price_usd_per_hour=0.5)], catalog=catalog)
    assert (s["runs"], s["ondemand_from_catalog"]) == (1, 1)
    assert s["ondemand_cost_usd"] == 2.016 and s["savings_usd"] == pytest.approx(1.516)
