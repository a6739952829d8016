"""Pure alert decisions and the `alerts`/`teams` config validation."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from provisioner.alerts.config import Rule
from provisioner.config import parse_alerts
from provisioner.alerts.events import budget_alerts, period_start, record_alerts, run_kinds
from provisioner.config import parse_config
from provisioner.errors import ConfigError, UsageError
from tests.factories import run

SLACK = {"name": "chat", "type": "slack", "webhook_url": "http://127.0.0.1:9/hook"}
PAGER = {"name": "pager", "type": "sns", "topic_arn": "arn:aws:sns:us-east-1:123456789012:ci"}


def settings(*rules, rate_limit_s=900):
    return parse_alerts({"sinks": [SLACK, PAGER], "rules": list(rules), "rate_limit_s": rate_limit_s})


@pytest.mark.parametrize("fields, kinds", [
    ({}, []), ({"exit_code": 2}, ["failure"]), ({"exit_code": 124, "timed_out": True}, ["timeout"]),
    ({"exit_code": 137, "oom_killed": True}, ["oom"]), ({"exit_code": 143, "interrupted": True}, ["interruption"]),
], ids=["ok", "failure", "timeout", "oom", "interruption"])
def test_run_kinds(fields, kinds):
    assert run_kinds(run(**fields)) == kinds


def test_default_rule_sends_run_incidents_everywhere():
    s = parse_alerts({"sinks": [SLACK]})
    assert s.rules == (Rule(on=("failure", "timeout", "oom", "interruption")),)
    (a,) = record_alerts(run(n=4, exit_code=137, oom_killed=True, mem_gib=7.5, market="spot",
                             cost_usd=0.25, team="ml"), s)
    assert (a.kind, a.key, a.group, a.sinks, a.rate_limit_s) == ("oom", "oom:train:4:train-4", "oom:train", (), 900)
    assert a.subject == "[provisioner] train #4 was OOM-killed at 7.5 GiB"
    assert a.text == ("train #4 was OOM-killed at 7.5 GiB on m5.large (spot) after 1h: exit 137, cost $0.25. "
                      "Run train-4, team ml.")


def test_rules_filter_by_kind_job_and_team_and_merge_sinks():
    s = settings({"on": ["timeout"], "jobs": ["release/*"], "sinks": ["chat"]},
                 {"on": ["timeout", "oom"], "teams": ["ml"], "sinks": ["pager"], "rate_limit_s": 60})
    timeout = {"exit_code": 124, "timed_out": True}
    assert record_alerts(run("build", **timeout), s) == []
    (a,) = record_alerts(run("release/app", **timeout), s)
    assert a.sinks == ("chat",) and a.rate_limit_s == 900
    (b,) = record_alerts(run("release/app", team="ml", **timeout), s)
    assert b.sinks == ("chat", "pager") and b.rate_limit_s == 60


def test_period_start():
    now = datetime(2026, 3, 5, 13, 7, tzinfo=timezone.utc)  # a Thursday
    assert period_start("day", now) == datetime(2026, 3, 5, tzinfo=timezone.utc)
    assert period_start("week", now) == datetime(2026, 3, 2, tzinfo=timezone.utc)
    assert period_start("month", now) == datetime(2026, 3, 1, tzinfo=timezone.utc)


def test_budget_alert_names_the_highest_threshold_crossed_in_the_period():
    s = settings({"on": ["budget"], "budget_usd": 10, "period": "month", "thresholds": [1.0, 0.5],
                  "teams": ["ml"], "sinks": ["pager"]})
    now = datetime(2026, 3, 20, tzinfo=timezone.utc)
    records = [run("a", 1, cost_usd=100, team="ml") | {"start": "2026-02-28T23:00:00Z"},  # last month
               run("a", 2, cost_usd=4, team="ml") | {"start": "2026-03-02T00:00:00Z"},
               run("b", 3, cost_usd=50, team="web") | {"start": "2026-03-03T00:00:00Z"}]
    assert budget_alerts(records, s, now) == []
    records.append(run("a", 4, cost_usd=2, team="ml") | {"start": "2026-03-04T00:00:00Z"})
    (a,) = budget_alerts(records, s, now)
    assert a.key == "budget:team ml:month:10:2026-03-01:0.5" and a.sinks == ("pager",)
    assert a.text == "team ml spent $6.00 of its $10 month budget since 2026-03-01 (60%; threshold 50%)."
    records.append(run("a", 5, cost_usd=5, team="ml") | {"start": "2026-03-05T00:00:00Z"})
    assert budget_alerts(records, s, now)[0].key.endswith(":1")


@pytest.mark.parametrize("section, message", [
    ({"sinks": [{"name": "x", "type": "pager"}]}, "type must be one of slack, smtp, sns"),
    ({"sinks": [{"name": "x", "type": "slack"}]}, "webhook_url (http[s]://...) or webhook_url_env is required"),
    ({"sinks": [{"name": "x", "type": "smtp", "host": "h", "from": "a@b", "to": "c@d"}]}, "to must be a list"),
    ({"sinks": [{"name": "x", "type": "sns", "topic_arn": "ci"}]}, "topic_arn (arn:aws:sns:...) is required"),
    ({"sinks": [SLACK, SLACK]}, "sink names must be unique (chat repeated)"),
    ({"sinks": [SLACK | {"colour": "red"}]}, "unknown keys colour"),
    ({"rules": [{"on": ["explosion"]}]}, "on must list some of failure, timeout, oom, interruption, budget"),
    ({"rules": [{"on": ["budget"]}]}, "a budget rule needs budget_usd > 0"),
    ({"rules": [{"on": ["budget"], "budget_usd": 5, "period": "year"}]}, "period must be one of day, week, month"),
    ({"rules": [{"on": ["oom"], "budget_usd": 5}]}, "belong to rules on budget"),
], ids=["sink-type", "slack-url", "smtp-to", "sns-arn", "dup", "unknown-key", "kind", "budget", "period",
        "budget-key"])
def test_bad_alerts_config_names_key_and_line(tmp_path, section, message):
    import yaml
    text = yaml.safe_dump({"alerts": section})
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.yaml")
    assert message in str(caught.value) and "c.yaml:" in str(caught.value) and "alerts." in str(caught.value)


def test_rules_naming_unknown_sinks_and_bad_teams_are_errors():
    with pytest.raises(UsageError, match="unknown sink nope"):
        parse_alerts({"sinks": [SLACK], "rules": [{"on": ["oom"], "sinks": ["nope"]}]})
    with pytest.raises(ConfigError, match="teams: must map"):
        parse_config("teams: [a, b]\n")
    with pytest.raises(ConfigError, match="web: must be a team name, or a list"):
        parse_config("teams:\n  web: {a: 1}\n")
    ok = parse_config("teams:\n  'ml/*': ml\n  web: ['frontend-*']\n")
    assert ok.data["teams"] == {"ml/*": "ml", "web": ["frontend-*"]}
