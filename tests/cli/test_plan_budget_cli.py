"""`plan` and `run --remote` against an enforced team budget: exit 3 with constraint budget:<team>,
and `plan` shows what is left. The team is the config's mapping, whatever the job calls itself."""

from __future__ import annotations

import json
import time

import pytest

CONFIG = """\
teams:
  ml: ["ml/*"]
  data: ["etl/*"]
alerts:
  rules:
    - {"on": [budget], budget_usd: 10, period: month, teams: [ml], enforce: true}
    - {"on": [budget], budget_usd: 100, period: month, teams: [data], enforce: true}
"""


@pytest.fixture
def site(cli, tmp_path):
    conf = tmp_path / "config.yaml"
    conf.write_text(CONFIG)
    hist = str(tmp_path / "h.sqlite3")
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records = [{"job": "ml/train", "run_id": "r1", "start": now, "duration_s": 600, "exit_code": 0, "cost_usd": 7.5,
                "team": "data"},                                    # claims another team: the mapping decides
               {"job": "ml/train", "run_id": "r2", "start": now, "duration_s": 600, "exit_code": 0, "cost_usd": 2.5},
               {"job": "etl/load", "run_id": "r3", "start": now, "duration_s": 600, "exit_code": 0, "cost_usd": 40.0}]
    (tmp_path / "h.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    assert cli("history", "import", str(tmp_path / "h.jsonl"), "--history", hist).returncode == 0
    return ["--config", str(conf), "--history", hist]


def test_plan_for_a_team_at_100_percent_exits_3_naming_the_budget(cli, site):
    out = cli("plan", "--label", "ec2 && vcpu=2", "--job", "ml/train", "--json", *site)
    assert out.returncode == 3, out.stderr
    error = json.loads(out.stdout)
    assert error["constraint"] == "budget:ml" and "100%" in error["error"]
    human = cli("plan", "--label", "ec2 && vcpu=2", "--job", "ml/train", *site)
    assert human.returncode == 3 and "team ml is at 100% of its enforced month budget" in human.stderr


def test_plan_for_a_team_with_room_shows_the_remaining_budget(cli, site):
    out = cli("plan", "--label", "ec2 && vcpu=2", "--job", "etl/load", *site)
    assert out.returncode == 0, out.stderr
    assert "Budget: team data: $40.00 of $100 this month (40%; $60.00 left)" in out.stdout
    plan = json.loads(cli("plan", "--label", "ec2 && vcpu=2", "--job", "etl/load", "--json", *site).stdout)
    assert plan["budget"]["team"] == "data" and plan["budget"]["remaining_usd"] == 60.0
    assert plan["budget"]["enforced"] is True
    unmapped = json.loads(cli("plan", "--label", "ec2 && vcpu=2", "--job", "other", "--json", *site).stdout)
    assert unmapped["budget"] is None


def test_run_remote_for_a_team_at_100_percent_exits_3_before_launching(cli, site):
    out = cli("run", "--remote", "--cloud", "docker", "--label", "ec2 && vcpu=2", "--job", "ml/train", *site,
              "busybox:latest", "true")
    assert out.returncode == 3, out.stderr
    assert "budget" in out.stderr and "team ml" in out.stderr
