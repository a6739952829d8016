"""Pure: which alerts a usage record, or a period's spend, raises under the configured rules.

An Alert carries two keys: `key` identifies the event (the same run reported by the daemon and by
`run`, or by two `alerts check` passes, is announced once) and `group` is what the rate limit counts
(one message per kind and job per window; the ones held back are counted into the next message).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from provisioner.alerts.config import AlertSettings, Rule
from provisioner.report.aggregate import run_cost
from provisioner.units import format_duration

GIB = 1024 ** 3
_WHAT = {"failure": "failed", "timeout": "timed out", "oom": "was OOM-killed", "interruption": "was interrupted"}


@dataclass(frozen=True)
class Alert:
    kind: str
    key: str
    group: str
    subject: str
    text: str
    sinks: tuple[str, ...]        # names; empty = every sink
    rate_limit_s: float
    job: str | None = None


def run_kinds(record: dict) -> list[str]:
    """The alert kinds a run raises: timeout, oom, interruption, else failure for a nonzero exit."""
    kinds = [k for k, f in (("timeout", "timed_out"), ("oom", "oom_killed"), ("interruption", "interrupted"))
             if record.get(f)]
    if not kinds and record.get("exit_code") not in (0, None):
        kinds.append("failure")
    return kinds


def matches(rule: Rule, job: str | None, team: str | None) -> bool:
    if rule.jobs and not (job and any(fnmatch.fnmatchcase(job, p) for p in rule.jobs)):
        return False
    return not rule.teams or team in rule.teams


def _merge(rules: list[Rule], default_limit: float) -> tuple[tuple[str, ...], float]:
    """Sinks of every matching rule (any rule without sinks means all), the smallest rate limit."""
    sinks: tuple[str, ...] = ()
    if all(r.sinks for r in rules):
        sinks = tuple(dict.fromkeys(n for r in rules for n in r.sinks))
    limit = min(r.rate_limit_s if r.rate_limit_s is not None else default_limit for r in rules)
    return sinks, limit


def _describe_run(record: dict, kind: str) -> tuple[str, str]:
    job, build = record["job"], record.get("build")
    name = f"{job} #{build}" if build else job
    what = _WHAT[kind]
    if kind == "oom" and record.get("mem_max_bytes"):
        what += f" at {record['mem_max_bytes'] / GIB:.1f} GiB"
    where = record.get("instance_type") or "local docker"
    if record.get("market"):
        where += f" ({record['market']})"
    cost = run_cost(record)
    text = (f"{name} {what} on {where} after {format_duration(record['duration_s'])}: "
            f"exit {record['exit_code']}" + (f", cost ${cost:.2f}" if cost is not None else "")
            + f". Run {record['run_id']}" + (f", node {record['node']}" if record.get("node") else "")
            + (f", team {record['team']}" if record.get("team") else "") + ".")
    return f"[provisioner] {name} {what}", text


def record_alerts(record: dict, settings: AlertSettings) -> list[Alert]:
    """One alert per kind the run raises and some rule wants."""
    out = []
    for kind in run_kinds(record):
        rules = [r for r in settings.rules if kind in r.on and matches(r, record["job"], record.get("team"))]
        if not rules:
            continue
        sinks, limit = _merge(rules, settings.rate_limit_s)
        subject, text = _describe_run(record, kind)
        out.append(Alert(kind=kind, key=f"{kind}:{record['job']}:{record.get('build') or ''}:{record['run_id']}",
                         group=f"{kind}:{record['job']}", subject=subject, text=text, sinks=sinks,
                         rate_limit_s=limit, job=record["job"]))
    return out


def period_start(period: str, now: datetime) -> datetime:
    """The UTC start of the day, week (Monday) or month that `now` is in."""
    day = now.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def _scope(rule: Rule) -> str:
    parts = ([f"team {', '.join(rule.teams)}"] if rule.teams else []) + \
        ([f"jobs {', '.join(rule.jobs)}"] if rule.jobs else [])
    return " / ".join(parts) or "all jobs"


def budget_alerts(records: Iterable[dict], settings: AlertSettings, now: datetime) -> list[Alert]:
    """For each budget rule, the highest threshold its period's spend has crossed (once per period).

    `records` must cover the longest budget period (from its start); older ones are ignored.
    """
    rules = [(i, r) for i, r in enumerate(settings.rules) if "budget" in r.on and r.budget_usd]
    if not rules:
        return []
    starts = {i: period_start(r.period, now).strftime("%Y-%m-%dT%H:%M:%SZ") for i, r in rules}
    spend = {i: 0.0 for i, _ in rules}
    for rec in records:
        for i, r in rules:
            if rec["start"] >= starts[i] and matches(r, rec["job"], rec.get("team")):
                spend[i] += run_cost(rec) or 0.0
    out = []
    for i, r in rules:
        crossed = [t for t in r.thresholds if spend[i] >= t * r.budget_usd]
        if not crossed:
            continue
        t = crossed[-1]
        scope, since = _scope(r), starts[i][:10]
        subject = f"[provisioner] budget: {scope} at {spend[i] / r.budget_usd:.0%} of ${r.budget_usd:g} this {r.period}"
        text = (f"{scope} spent ${spend[i]:.2f} of its ${r.budget_usd:g} {r.period} budget since {since} "
                f"({spend[i] / r.budget_usd:.0%}; threshold {t:.0%}).")
        # The key names the rule by what it says, not its position: reordering rules resends nothing.
        key = f"budget:{scope}:{r.period}:{r.budget_usd:g}:{since}:{t:g}"
        out.append(Alert(kind="budget", key=key, group=key,
                         subject=subject, text=text, sinks=r.sinks, rate_limit_s=0))
    return out
