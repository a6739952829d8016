"""The config's `alerts` section as values: what provisioner.config.parse_alerts builds (once, at load,
into `config.alerts.settings`) from the section alerts/validate.py checked.

```yaml
alerts:
  rate_limit_s: 900              # per (kind, job): at most one message in this window; the rest counted
  sinks:
    - {name: chat, type: slack, webhook_url_env: SLACK_WEBHOOK}        # or webhook_url: https://...
    - {name: oncall, type: smtp, host: smtp.internal, port: 587, starttls: true,
       from: ci@acme.com, to: [oncall@acme.com], user: ci, password_env: SMTP_PASSWORD}
    - {name: pager, type: sns, topic_arn: "arn:aws:sns:us-east-1:123456789012:ci", region: us-east-1}
  rules:
    - {on: [failure, timeout, oom, interruption], jobs: ["release/*"], sinks: [chat, oncall]}
    - {on: [oom], teams: [ml], rate_limit_s: 3600}
    - {on: [budget], budget_usd: 500, period: month, thresholds: [0.8, 1.0], teams: [ml], sinks: [pager]}
    - {on: [budget], budget_usd: 200, period: week, teams: [data], enforce: true}   # holds launches at 100%
```

`enforce: true` (budget rules with `teams` only) makes the budget hold: provisioner/budgets.py.

A rule without `sinks` goes to every sink; without `jobs`/`teams` it matches every job. With sinks
and no rules at all, failures, timeouts, OOM kills and interruptions of every job go to every sink.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SinkConfig:
    name: str
    type: str
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    on: tuple[str, ...]
    jobs: tuple[str, ...] = ()          # fnmatch patterns; empty = every job
    teams: tuple[str, ...] = ()
    sinks: tuple[str, ...] = ()         # empty = every sink
    rate_limit_s: float | None = None   # None = the section's
    budget_usd: float | None = None
    period: str = "month"
    thresholds: tuple[float, ...] = (1.0,)
    enforce: bool = False               # budget rules: at 100% new launches for its teams wait


@dataclass(frozen=True)
class AlertSettings:
    sinks: tuple[SinkConfig, ...] = ()
    rules: tuple[Rule, ...] = ()
    rate_limit_s: float = 900
