"""Wiring for a plan: the job's intent (provisioner/intent.py), settings from config and flags, the
catalog, the job's history, then select.

`plan_intent` takes everything as values (the daemon calls it per queue item); `plan_job` loads them
for the command line. Both return plans that carry their intent, so that launch, the bootstrap and
the remote `provisioner run` read the timeout, market and team from it, never from the label.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, replace
from typing import Callable

from provisioner import records
from provisioner.catalog import Catalog, load_catalog
from provisioner.catalog.model import ON_DEMAND, SPOT, Offer
from provisioner.config import Config
from provisioner.errors import NoOfferError, StoreError
from provisioner.estimate import estimate
from provisioner.intent import ArchRule, Intent, config_arch_rule, image_arches, resolve, timeout_rule
from provisioner.plan_settings import PeakSpread
from provisioner.requirements import Requirements
from provisioner.selection import Plan, PlanSettings, select
from provisioner.sizing import site_peak_spread
from provisioner.units import format_duration

HISTORY_RUNS = 50   # newest runs that inform a plan
SITE_RUNS = 2000    # the site's newest runs, every job's: the spread of memory peaks (sizing.site_peak_spread)


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    settings: PlanSettings
    requirements: Requirements          # as declared (the intent's `declared`)
    warnings: tuple[str, ...] = ()
    intent: Intent | None = None
    budget: dict | None = None          # the job's team's fullest budget (provisioner/budgets.py), or None


def host_arch() -> str:
    """This machine's architecture in the catalog's words."""
    return {"aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower(), "x86_64")


def resolve_for_config(config: Config, label: str | None, filters: list[str] | tuple[str, ...] = (), *,
                       timeout: float | str | None = None, no_autotune: bool = False, lax: bool = False,
                       arch: ArchRule | Callable[[Requirements], ArchRule] | None = None, interruptions: int = 0, team: str | None = None,
                       host: str | None = None) -> Intent:
    """The intent with the config's rules: its architecture rule unless `arch` brings another,
    and (for the daemon, which passes `interruptions`) its on-demand-after-interruptions rule."""
    rule = arch
    if rule is None:
        images, where = image_arches(config, host or host_arch())
        default = config.defaults.arch
        rule = lambda req: config_arch_rule(req, default, images, where)  # noqa: E731
    limit = int(config.daemon.ondemand_after_interruptions or 0) if interruptions else 0
    return resolve(label, filters, defaults=config.defaults, timeout=timeout, no_autotune=no_autotune,
                   lax=lax, arch=rule, interruptions=interruptions, ondemand_after=limit, team=team)


def settings_for(config: Config, intent: Intent, *, policy: str | None = None,
                 regions: list[str] | None = None, max_price: float | None = None) -> PlanSettings:
    """PlanSettings from the intent (timeout, target, disk, autotune) and the config and flags."""
    base = settings_from(config, intent.declared, policy=policy, regions=regions, max_price=max_price,
                         no_autotune=intent.no_autotune)
    return replace(base, timeout_s=intent.timeout_s, runtime_target=intent.runtime_target,
                   disk_gib=intent.disk_gib)


def settings_from(config: Config, req: Requirements, *, timeout: str | None = None,
                  policy: str | None = None, regions: list[str] | None = None,
                  max_price: float | None = None, no_autotune: bool = False) -> PlanSettings:
    """Flags > label (timeout=) > config > built-in defaults."""
    d = config.defaults
    timeout_s, _why = timeout_rule(timeout, req, d)   # the one place the job timeout is decided
    return PlanSettings(
        timeout_s=timeout_s, runtime_target=float(d.runtime_target), scaled_margin=float(d.scaled_margin),
        policy=policy or d.policy,
        max_price=max_price if max_price is not None else d.max_price,
        default_runtime_s=float(d.default_runtime_s),
        boot_s=float(d.boot_s), disk_gib=float(d.disk_gib), mem_headroom=float(d.mem_headroom),
        autotune=not no_autotune, autotune_min_runs=int(d.autotune_min_runs),
        regions=tuple(regions or config.regions or ["us-east-1"]))


def plan_for(catalog: Catalog, req: Requirements, runs: list[dict], settings: PlanSettings,
             blocked: frozenset = frozenset(), managed_atom: str = "ec2", pools: dict | None = None) -> Plan:
    """Estimate from the job's runs and select among the catalog's offers (`pools`: see `select`)."""
    def lookup(instance_type: str, region: str | None) -> Offer | None:
        for r in (region, *settings.regions, "us-east-1"):
            for market in (ON_DEMAND, SPOT):
                offer = catalog.find(instance_type, r or "us-east-1", market)
                if offer is not None:
                    return offer
        return None

    est = estimate(runs, lookup, req.vcpu)
    return select(catalog.offers, req, est, settings, blocked, managed_atom, pools)


def plan_intent(catalog: Catalog, intent: Intent, runs: list[dict], settings: PlanSettings,
                blocked: frozenset = frozenset(), managed_atom: str = "ec2", pools: dict | None = None) -> Plan:
    """`plan_for` over the intent's requirements: the plan carries the intent, and its reasons
    start with the intent's (timeout, market, architecture)."""
    try:
        plan = plan_for(catalog, intent.requirements, runs, settings, blocked, managed_atom, pools)
    except NoOfferError as exc:
        if intent.arch and exc.constraint == f"arch={intent.arch}":
            rule = next((r for r in intent.reasons if r.startswith("Architecture: ")), "")
            raise NoOfferError(f"{exc}: only {intent.arch} can be planned here ({rule[14:].rstrip('.')}; "
                               "defaults.arch, and ec2.images on EC2, set what can)", exc.constraint) from None
        raise
    return replace(plan, reasons=(*intent.reasons, *plan.reasons), intent=intent)


def plan_job(ctx, *, label: str | None, filters: list[str], job: str | None, timeout: str | float | None = None,
             policy: str | None = None, regions: list[str] | None = None, max_price: float | None = None,
             no_autotune: bool = False, arch: ArchRule | Callable[[Requirements], ArchRule] | None = None, team: str | None = None) -> PlanResult:
    """Everything `provisioner plan` (and `run --remote`, with its own `arch` rule) does before printing."""
    config = ctx.config
    intent = resolve_for_config(config, label, filters, timeout=timeout, no_autotune=no_autotune, arch=arch,
                                team=team)
    settings = settings_for(config, intent, policy=policy, regions=regions, max_price=max_price)
    d = config.defaults
    catalog = load_catalog(score_source=d.score_source, max_age_days=d.catalog_max_age_days)
    runs: list[dict] = []
    if job:
        with ctx.open_history() as store:
            runs = records.count_once(store.runs(job, limit=HISTORY_RUNS))   # each build once
            # the site's spread only moderates the memory floor autotune sets: read it only then
            if settings.autotune and not intent.requirements.exact and len(runs) >= settings.autotune_min_runs:
                settings = replace(settings, peak_spread=site_spread(store))
    budget = team_budget(ctx, job)
    plan = plan_intent(catalog, intent, runs, settings, managed_atom=config.jenkins.managed_atom)
    return PlanResult(plan, settings, intent.declared, tuple(catalog.warnings), intent, budget)


def site_spread(store) -> PeakSpread | None:
    """The site's spread of memory peaks from the store's newest SITE_RUNS runs (each build once);
    None where another job's record cannot be read: that is no reason to refuse this job a plan."""
    try:
        return site_peak_spread(records.count_once(store.recent(SITE_RUNS)))
    except StoreError:
        return None


def team_budget(ctx, job: str | None, now: float | None = None) -> dict | None:
    """The fullest budget of the job's team (the config's `teams` mapping decides the team) from the
    recorded costs of its period; NoOfferError (exit 3, constraint `budget:<team>`) when it is an
    enforced budget at 100%. None when the job has no team or the team no budget."""
    import time
    from provisioner.budgets import budget_rules, budget_use, earliest_start, team_uses
    from provisioner.runner.summary import team_for
    teams_map = ctx.config.teams
    team = team_for(job, teams_map) if job else None
    rules = [r for r in budget_rules(ctx.config.alerts.settings.rules) if team in r.teams]
    if not team or not rules:
        return None
    now = time.time() if now is None else now
    with ctx.open_history() as store:
        records = list(store.records(since=earliest_start(rules, now)))
    uses = team_uses(team, budget_use(rules, teams_map, records, [], now))
    full = next((u for u in uses if u.exhausted), None)
    if full is not None:
        raise NoOfferError(f"team {team} is at {full.ratio:.0%} of its enforced {full.rule.period} budget "
                           f"(${full.spent_usd:.2f} of ${full.rule.budget_usd:g} since {full.since[:10]}): "
                           "new launches wait until the next period or a larger budget", f"budget:{team}")
    use = uses[0]
    return {"team": team, "budget_usd": use.rule.budget_usd, "period": use.rule.period, "since": use.since,
            "spent_usd": round(use.spent_usd, 4), "remaining_usd": round(use.remaining_usd, 4),
            "ratio": round(use.ratio, 4), "enforced": use.enforced, "text": use.describe(team)}


def reason_lines(result) -> list[str]:
    """The request, the settings and the plan's reasons: what `plan` prints first, and what
    `run --remote` prints before `Starting ...`."""
    s = result.settings
    lines = [f"Requirements: {result.requirements.text or '(none)'}",
             f"Timeout {format_duration(s.timeout_s)}, runtime target {s.target_s:.0f}s, policy {s.policy}, "
             f"regions {', '.join(s.regions)}"]
    lines += [f"  - {r}" for r in result.plan.reasons]
    budget = getattr(result, "budget", None)
    if budget:
        lines.append(f"Budget: {budget['text']} (recorded runs; the daemon adds running agents)")
    return lines
