"""Team budgets (pure): spend in a budget's period, its ratio, and whether a team's launches wait.

A budget is an alert rule on `budget` (config `alerts.rules`: budget_usd, period, thresholds, teams).
With `enforce: true` it also holds: once a team's spend reaches 100% of the budget, new launches for
that team wait until the next period (or a larger budget). Spend is

    recorded costs of the team's runs that started in the period
  + the accrued cost of the team's running agents (price x time since launch, from the period's start),
    except those whose build already has a record (its cost is counted once).

Which team a job belongs to, for an enforced budget, is the config's `teams` mapping alone: a job
cannot dodge its team's budget (or spend another team's) by naming a team in its label or environment.
A job the mapping does not name belongs to no team and is held by no team budget. Rules without
`enforce` keep counting as the alerts always did (the record's own `team`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from provisioner.alerts.config import Rule
from provisioner.alerts.events import Alert, matches, period_start
from provisioner.report.aggregate import run_cost
from provisioner.runner.summary import team_for


@dataclass(frozen=True)
class Running:
    """A live agent's cost so far: who it serves, since when, at what price."""

    job: str | None
    node: str | None
    price_usd_per_hour: float
    launched_at: float              # epoch seconds


@dataclass(frozen=True)
class BudgetUse:
    """One budget rule's state in its current period."""

    rule: Rule
    since: str                      # the period's start, ISO 8601 UTC
    recorded_usd: float
    running_usd: float

    @property
    def teams(self) -> tuple[str, ...]:
        return self.rule.teams

    @property
    def spent_usd(self) -> float:
        return self.recorded_usd + self.running_usd

    @property
    def ratio(self) -> float:
        return self.spent_usd / self.rule.budget_usd if self.rule.budget_usd else 0.0

    @property
    def remaining_usd(self) -> float:
        return max(0.0, (self.rule.budget_usd or 0.0) - self.spent_usd)

    @property
    def enforced(self) -> bool:
        return self.rule.enforce

    @property
    def exhausted(self) -> bool:
        return self.rule.enforce and self.spent_usd >= (self.rule.budget_usd or 0.0) - 1e-9

    def describe(self, team: str | None = None) -> str:
        who = f"team {team}" if team else _scope(self.rule)
        return (f"{who}: ${self.spent_usd:.2f} of ${self.rule.budget_usd:g} this {self.rule.period} "
                f"({self.ratio:.0%}; ${self.remaining_usd:.2f} left"
                + ("" if self.rule.enforce else "; alert only") + ")")


def _scope(rule: Rule) -> str:
    parts = ([f"team {', '.join(rule.teams)}"] if rule.teams else []) + \
        ([f"jobs {', '.join(rule.jobs)}"] if rule.jobs else [])
    return " / ".join(parts) or "all jobs"


def budget_rules(rules: Iterable[Rule]) -> list[Rule]:
    return [r for r in rules if "budget" in r.on and r.budget_usd]


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def earliest_start(rules: Iterable[Rule], now: float) -> str | None:
    """The oldest period start among `rules` (what to read records since); None without rules."""
    at = datetime.fromtimestamp(now, timezone.utc)
    starts = [period_start(r.period, at) for r in budget_rules(rules)]
    return _iso(min(starts)) if starts else None


@dataclass(frozen=True)
class Recorded:
    """The recorded part of every budget's spend (changes only when records arrive)."""

    rules: tuple[Rule, ...]
    since: tuple[str, ...]
    usd: tuple[float, ...]
    nodes: frozenset[str]           # nodes whose build has a record (their agents are not accrued)


def _team_of(teams_map: Mapping[str, Any], memo: dict[str, str | None], job: str | None) -> str | None:
    key = job or ""
    if key not in memo:
        memo[key] = team_for(key, teams_map)
    return memo[key]


def recorded_spend(rules: Iterable[Rule], teams_map: Mapping[str, Any], records: Iterable[Mapping[str, Any]],
                   now: float) -> Recorded:
    """Sum the recorded costs of each budget's current period (enforced rules: the mapping's team)."""
    rules = tuple(budget_rules(rules))
    at = datetime.fromtimestamp(now, timezone.utc)
    since = tuple(_iso(period_start(r.period, at)) for r in rules)
    usd = [0.0] * len(rules)
    nodes: set[str] = set()
    memo: dict[str, str | None] = {}
    oldest = min(since) if since else ""
    for rec in records:
        start = str(rec.get("start") or "")
        if rec.get("node"):
            nodes.add(str(rec["node"]))
        if not rules or start < oldest:
            continue
        job, cost = rec.get("job"), None
        for i, r in enumerate(rules):
            team = _team_of(teams_map, memo, job) if r.enforce else rec.get("team")
            if start >= since[i] and matches(r, job, team):
                if cost is None:
                    cost = run_cost(rec if isinstance(rec, dict) else dict(rec)) or 0.0
                usd[i] += cost
    return Recorded(rules, since, tuple(usd), frozenset(nodes))


def with_running(recorded: Recorded, teams_map: Mapping[str, Any], running: Iterable[Running],
                 now: float) -> list[BudgetUse]:
    """Add the running agents' accrued cost (from each period's start) to the recorded spend."""
    rules = recorded.rules
    starts = [datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
              for s in recorded.since]
    accrued = [0.0] * len(rules)
    memo: dict[str, str | None] = {}
    for agent in running:
        if not agent.job or (agent.node and agent.node in recorded.nodes):
            continue
        for i, r in enumerate(rules):
            team = _team_of(teams_map, memo, agent.job) if r.enforce else None
            if matches(r, agent.job, team):
                begin = max(agent.launched_at, starts[i])
                accrued[i] += max(0.0, now - begin) / 3600.0 * max(0.0, agent.price_usd_per_hour)
    return [BudgetUse(r, recorded.since[i], recorded.usd[i], accrued[i]) for i, r in enumerate(rules)]


def budget_use(rules: Iterable[Rule], teams_map: Mapping[str, Any], records: Iterable[Mapping[str, Any]],
               running: Iterable[Running], now: float) -> list[BudgetUse]:
    """Each budget rule's spend in its current period (see the module's doc)."""
    return with_running(recorded_spend(rules, teams_map, records, now), teams_map, running, now)


def exhausted_teams(uses: Iterable[BudgetUse]) -> dict[str, BudgetUse]:
    """Teams whose launches wait: every team of an enforced budget at 100% (the fullest one)."""
    out: dict[str, BudgetUse] = {}
    for use in uses:
        if not use.exhausted:
            continue
        for team in use.teams:
            if team not in out or use.ratio > out[team].ratio:
                out[team] = use
    return out


def team_ratios(uses: Iterable[BudgetUse]) -> dict[str, float]:
    """The highest used ratio per team over every budget naming it (for the gauge)."""
    out: dict[str, float] = {}
    for use in uses:
        for team in use.teams:
            out[team] = max(out.get(team, 0.0), use.ratio)
    return out


def team_uses(team: str | None, uses: Iterable[BudgetUse]) -> list[BudgetUse]:
    """The budgets that name `team`, fullest first (what `plan` shows)."""
    if not team:
        return []
    return sorted((u for u in uses if team in u.teams), key=lambda u: -u.ratio)


def use_alerts(uses: Iterable[BudgetUse], rate_limit_s: float = 0) -> list[Alert]:
    """The highest threshold each budget crossed, keyed exactly as the alerts' own budget check
    (provisioner.alerts.events.budget_alerts) keys it, so the daemon and a record's check announce
    a crossing once between them."""
    out = []
    for use in uses:
        r = use.rule
        crossed = [t for t in r.thresholds if use.spent_usd >= t * r.budget_usd]
        if not crossed:
            continue
        t = crossed[-1]
        scope, day = _scope(r), use.since[:10]
        held = " New launches for it wait." if use.exhausted else ""
        subject = f"[provisioner] budget: {scope} at {use.ratio:.0%} of ${r.budget_usd:g} this {r.period}"
        text = (f"{scope} spent ${use.spent_usd:.2f} of its ${r.budget_usd:g} {r.period} budget since {day} "
                f"({use.ratio:.0%}; threshold {t:.0%}; ${use.running_usd:.2f} of it by running agents).{held}")
        key = f"budget:{scope}:{r.period}:{r.budget_usd:g}:{day}:{t:g}"
        out.append(Alert(kind="budget", key=key, group=key, subject=subject, text=text, sinks=r.sinks,
                         rate_limit_s=rate_limit_s))
    return out
