"""Delivery to a local HTTP sink (Slack webhook), a local SMTP server and moto SNS; dedup and rate
limits kept in a SQLite history store; `provisioner alerts test|check` end to end."""

from __future__ import annotations

import json

import pytest
import yaml

from provisioner import aws
from provisioner.config import parse_alerts
from provisioner.alerts.dispatch import Alerter
from provisioner.alerts.sinks import SinkError, SlackSink, SmtpSink, SnsSink, build_sink
from provisioner.alerts.config import SinkConfig
from provisioner.alerts.state import open_alert_state
from provisioner.history import open_store
from tests.factories import run

OOM = {"exit_code": 137, "oom_killed": True}


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_slack_sink_posts_text_and_reports_http_errors(http_sink):
    SlackSink("chat", http_sink.url).send("[provisioner] subject", "body")
    assert http_sink.bodies == [{"text": "*[provisioner] subject*\nbody"}]
    http_sink.status = 403
    with pytest.raises(SinkError, match="chat: webhook answered HTTP 403 invalid_token"):
        SlackSink("chat", http_sink.url).send("s", "t")
    with pytest.raises(SinkError, match="webhook unreachable") as caught:
        SlackSink("chat", "http://127.0.0.1:9/services/SECRET", timeout_s=2).send("s", "t")
    assert "SECRET" not in str(caught.value)


def test_smtp_sink_delivers_to_a_local_server(smtp_server):
    SmtpSink("mail", "127.0.0.1", "ci@example.com", ["a@example.com", "b@example.com"],
             port=smtp_server.port).send("[provisioner] job x failed", "details")
    ((sender, rcpt, msg),) = smtp_server.inbox.messages
    assert sender == "ci@example.com" and rcpt == ["a@example.com", "b@example.com"]
    assert msg["Subject"] == "[provisioner] job x failed" and msg.get_payload().strip() == "details"
    with pytest.raises(SinkError, match="mail: SMTP 127.0.0.1:9"):
        SmtpSink("mail", "127.0.0.1", "ci@example.com", ["a@example.com"], port=9, timeout_s=2).send("s", "t")


def test_sns_sink_publishes_to_moto(moto_env):
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name="ci-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    SnsSink("pager", topic).send("[provisioner] über-job\nfailed " + "x" * 200, "the text")
    (m,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(m["Body"])
    assert envelope["Message"] == "the text"
    assert envelope["Subject"].startswith("[provisioner] ?ber-job failed x") and len(envelope["Subject"]) == 100
    with pytest.raises(SinkError, match="pager: SNS publish to .*NotFound"):
        SnsSink("pager", topic + "-missing").send("s", "t")


def test_missing_secret_is_a_sink_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_HOOK", raising=False)
    with pytest.raises(SinkError, match=r"chat: \$NO_SUCH_HOOK is not set"):
        build_sink(SinkConfig("chat", "slack", {"webhook_url_env": "NO_SUCH_HOOK"}))


@pytest.fixture
def alerter(tmp_path, http_sink):
    hist = str(tmp_path / "h.sqlite3")
    settings = parse_alerts({"sinks": [{"name": "chat", "type": "slack", "webhook_url": http_sink.url}],
                             "rate_limit_s": 600})
    state = open_alert_state(hist)
    clock = Clock()
    yield Alerter(settings, state, clock=clock), clock, hist
    state.close()


def test_dedup_then_rate_limit_counts_what_was_held_back(alerter, http_sink):
    a, clock, _ = alerter
    assert [o.status for o in a.on_record(run(n=1, **OOM))] == ["sent"]
    assert [o.status for o in a.on_record(run(n=1, **OOM))] == ["duplicate"]      # the same run again
    assert [o.status for o in a.on_record(run(n=2, **OOM))] == ["rate-limited"]   # same job and kind, 0 s later
    assert [o.status for o in a.on_record(run(n=3, **OOM))] == ["rate-limited"]
    assert [o.status for o in a.on_record(run("other", 1, **OOM))] == ["sent"]    # another job: its own limit
    clock.t += 601
    (o,) = a.on_record(run(n=4, **OOM))
    assert o.status == "sent" and o.delivered == ["chat"]
    assert "2 more oom alerts for train were held back" in http_sink.bodies[-1]["text"]
    assert len(http_sink.bodies) == 3


def test_failed_delivery_releases_the_claim(alerter, http_sink):
    a, clock, _ = alerter
    http_sink.status = 500
    (o,) = a.on_record(run(n=1, exit_code=1))
    assert o.status == "failed" and "HTTP 500" in o.errors[0]
    http_sink.status = 200
    clock.t += 601
    assert [o.status for o in a.on_record(run(n=1, exit_code=1))] == ["sent"]  # tried again, not a duplicate


def test_budget_alert_once_per_threshold_and_period(tmp_path, http_sink):
    hist = str(tmp_path / "h.sqlite3")
    settings = parse_alerts({"sinks": [{"name": "chat", "type": "slack", "webhook_url": http_sink.url}],
                             "rules": [{"on": ["budget"], "budget_usd": 1, "period": "day"}]})
    clock = Clock(1767225600 + 3600)  # 2026-01-01T01:00:00Z
    with open_store(hist) as store, open_alert_state(hist) as state:
        a = Alerter(settings, state, clock=clock)
        store.add(run(n=1, cost_usd=0.6))
        assert a.on_record(run(n=1, cost_usd=0.6), store) == []
        store.add(run(n=2, cost_usd=0.6))
        assert [o.status for o in a.on_record(run(n=2, cost_usd=0.6), store)] == ["sent"]
        store.add(run(n=3, cost_usd=0.6))
        assert [o.status for o in a.on_record(run(n=3, cost_usd=0.6), store)] == ["duplicate"]
    assert "all jobs spent $1.20 of its $1 day budget" in http_sink.bodies[0]["text"]


def test_cli_alerts_check_and_test(cli, tmp_path, http_sink, smtp_server):
    hist = str(tmp_path / "h.sqlite3")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"alerts": {
        "sinks": [{"name": "chat", "type": "slack", "webhook_url_env": "TEST_HOOK"},
                  {"name": "mail", "type": "smtp", "host": "127.0.0.1", "port": smtp_server.port,
                   "from": "ci@example.com", "to": ["oncall@example.com"]}],
        "rules": [{"on": ["timeout", "oom"], "sinks": ["chat", "mail"]}]}}))
    records = [run(n=1) | {"start": "2026-01-01T00:00:00Z"},
               run(n=2, exit_code=124, timed_out=True) | {"start": "2026-01-01T00:01:00Z"},
               run("other", 3, **OOM) | {"start": "2026-01-01T00:02:00Z"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    cli("history", "import", str(tmp_path / "in.jsonl"), "--history", hist)
    env = {"TEST_HOOK": http_sink.url}
    first = cli("alerts", "check", "--since", "2026-01-01", "--config", str(config), "--history", hist, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "2 sent"
    assert len(http_sink.bodies) == 2 and len(smtp_server.inbox.messages) == 2
    again = cli("alerts", "check", "--since", "2026-01-01", "--config", str(config), "--history", hist, "--json",
                env=env)
    assert [json.loads(line)["status"] for line in again.stdout.splitlines()] == ["duplicate", "duplicate"]
    tested = cli("alerts", "test", "--sink", "mail", "--config", str(config), env=env)
    assert tested.returncode == 0 and "mail (smtp): sent" in tested.stdout
    broken = cli("alerts", "test", "--config", str(config), env={"TEST_HOOK": ""})
    assert broken.returncode == 1 and "chat (slack): FAILED: chat: $TEST_HOOK is not set" in broken.stderr
    assert "Traceback" not in broken.stderr
    none = cli("alerts", "check", "--history", hist)
    assert none.returncode == 2 and "no alert sinks configured" in none.stderr


def test_alert_on_record_is_one_safe_call(tmp_path, http_sink):
    from provisioner.alerts.dispatch import alert_on_record
    hist = str(tmp_path / "h.sqlite3")
    section = parse_alerts({"sinks": [{"name": "chat", "type": "slack", "webhook_url": http_sink.url}]})
    assert [o.status for o in alert_on_record(section, hist, run(n=1, **OOM))] == ["sent"]
    assert [o.status for o in alert_on_record(section, hist, run(n=1, **OOM))] == ["duplicate"]
    assert alert_on_record(None, hist, run(n=2, **OOM)) == []                       # alerts not configured
    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"x" * 4096)
    assert alert_on_record(section, str(corrupt), run(n=3, **OOM)) == []            # logged, not raised
