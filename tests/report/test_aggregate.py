"""Pure report aggregation over small inline records."""

from __future__ import annotations

import pytest

from provisioner.report.aggregate import (ReportOptions, build_report, incident_kinds, job_summaries,
                                          rightsizing, run_cost, spot_savings, top_builds, top_memory,
                                          week_of, weekly_costs)
from tests.factories import GIB, run


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
    # 9 x 1.2 + 0.5 = 11.3 -> 12 GiB; median CPU peak 280% -> ceil(2.8 - 0.15) = 3 vCPUs
    assert row["suggested_mem_gib"] == 12 and row["suggested_vcpu"] == 3
    assert row["advice"] == ["job x asked for 64 GiB and peaked at 9 GiB over 20 runs: use mem=12",
                             "job x asked for 16 vCPUs and kept 2.8 busy at its median peak over 20 runs: "
                             "use vcpu=3"]


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
    assert row["advice"] == ["job x asked for 32 GiB and peaked at 5 GiB over 5 runs "
                             "(1 OOM kill counted at 1.5x their peak): use mem=12"]
