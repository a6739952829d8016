"""Team budgets: spend in the period, ratio, which teams wait, alerts keyed like the alerts' own."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from provisioner.alerts.config import Rule
from provisioner.config import parse_alerts
from provisioner.alerts.events import budget_alerts
from provisioner.alerts.validate import validate_rules
from provisioner.budgets import (BudgetUse, Running, budget_use, earliest_start, exhausted_teams, team_ratios,
                                 team_uses, use_alerts)

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=timezone.utc).timestamp()
TEAMS = {"ml/*": "ml", "data": ["etl/*", "reports"]}
ML = Rule(on=("budget",), teams=("ml",), budget_usd=10.0, period="month", thresholds=(0.8, 1.0), enforce=True)
DATA = Rule(on=("budget",), teams=("data",), budget_usd=10.0, period="day", enforce=True)


def rec(job, cost, start="2026-03-10T08:00:00Z", team=None, node=None):
    return {"job": job, "run_id": f"r-{job}-{cost}-{node}", "start": start, "duration_s": 60, "exit_code": 0,
            "cost_usd": cost, "team": team, "node": node}


def test_spend_is_recorded_costs_in_the_period_plus_running_agents_accrued_cost():
    records = [rec("ml/train", 4.0), rec("ml/train", 2.0, start="2026-02-27T00:00:00Z"),     # last month
               rec("etl/load", 1.0), rec("etl/load", 3.0, start="2026-03-18T01:00:00Z")]
    running = [Running("ml/train", "n1", 2.0, NOW - 1800),            # half an hour at $2/h
               Running("etl/load", "n2", 1.0, NOW - 36 * 3600)]        # started yesterday: from midnight on
    ml, data = budget_use([ML, DATA], TEAMS, records, running, NOW)
    assert (ml.recorded_usd, ml.running_usd) == (4.0, pytest.approx(1.0))
    assert (data.recorded_usd, data.running_usd) == (3.0, pytest.approx(12.0))
    assert ml.ratio == pytest.approx(0.5) and ml.remaining_usd == pytest.approx(5.0)
    assert data.exhausted and not ml.exhausted
    assert set(exhausted_teams([ml, data])) == {"data"}
    assert team_ratios([ml, data]) == {"ml": pytest.approx(0.5), "data": pytest.approx(1.5)}


def test_a_running_agent_whose_build_is_recorded_counts_once():
    records = [rec("ml/train", 4.0, node="n1")]
    [ml] = budget_use([ML], TEAMS, records, [Running("ml/train", "n1", 100.0, NOW - 3600)], NOW)
    assert ml.spent_usd == 4.0


def test_the_teams_mapping_decides_a_job_cannot_name_its_way_out_or_into_another_team():
    # an ml job whose record claims team "data", and an unmapped job claiming "ml"
    records = [rec("ml/train", 6.0, team="data"), rec("sneaky", 50.0, team="ml")]
    ml, data = budget_use([ML, DATA], TEAMS, records, [Running("sneaky", "n9", 99.0, NOW - 3600)], NOW)
    assert ml.spent_usd == 6.0
    assert data.spent_usd == 0.0


def test_an_alert_only_rule_counts_as_the_alerts_do_and_never_holds():
    alert_only = Rule(on=("budget",), teams=("ml",), budget_usd=1.0)
    [use] = budget_use([alert_only], TEAMS, [rec("x", 5.0, team="ml")], [], NOW)
    assert use.ratio == 5.0 and not use.exhausted and exhausted_teams([use]) == {}
    assert "alert only" in use.describe("ml")


def test_at_exactly_100_percent_the_team_waits():
    [use] = budget_use([ML], TEAMS, [rec("ml/a", 10.0)], [], NOW)
    assert use.exhausted and use.remaining_usd == 0


def test_uses_for_one_team_fullest_first_and_the_oldest_period_start():
    weekly = Rule(on=("budget",), teams=("ml",), budget_usd=2.0, period="week", enforce=True)
    uses = budget_use([ML, weekly, DATA], TEAMS, [rec("ml/a", 1.0, start="2026-03-17T00:00:00Z")], [], NOW)
    assert [u.rule.period for u in team_uses("ml", uses)] == ["week", "month"]
    assert team_uses(None, uses) == []
    assert earliest_start([ML, weekly, DATA], NOW) == "2026-03-01T00:00:00Z"
    assert earliest_start([], NOW) is None


def test_daemon_alerts_share_keys_with_the_record_check_so_a_crossing_is_announced_once():
    records = [rec("ml/a", 9.0, team="ml")]
    [use] = budget_use([ML], TEAMS, records, [Running("ml/a", "n1", 2.0, NOW - 3600)], NOW)
    [alert] = use_alerts([use])
    assert "wait" in alert.text and alert.key.endswith(":1")
    settings = parse_alerts({"sinks": [{"name": "s", "type": "slack", "webhook_url": "https://x"}],
                             "rules": [{"on": ["budget"], "teams": ["ml"], "budget_usd": 10, "thresholds": [0.8, 1.0],
                                        "enforce": True}]})
    [from_records] = budget_alerts(records, settings, datetime.fromtimestamp(NOW, timezone.utc))
    assert from_records.key.rsplit(":", 1)[0] == alert.key.rsplit(":", 1)[0]        # same rule, same period
    assert use_alerts([BudgetUse(ML, "2026-03-01T00:00:00Z", 1.0, 0.0)]) == []


@pytest.mark.parametrize("rule, word", [
    ({"on": ["budget"], "budget_usd": 5, "enforce": True}, "needs teams"),
    ({"on": ["budget"], "budget_usd": 5, "teams": ["ml"], "enforce": "yes"}, "true or false"),
    ({"on": ["failure"], "enforce": True}, "belong to rules on budget"),
])
def test_bad_enforce_is_named(rule, word):
    assert word in validate_rules([rule])


def test_enforce_parses():
    s = parse_alerts({"rules": [{"on": ["budget"], "budget_usd": 5, "teams": ["ml"], "enforce": True}]})
    assert s.rules[0].enforce is True
