"""Wiring for a plan: settings from config and flags, the catalog, the job's history, then select.

`plan_for` takes everything as values (the daemon calls it per queue item); `plan_job` loads them
for the command line.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.catalog import Catalog, load_catalog
from provisioner.catalog.model import ON_DEMAND, SPOT, Offer
from provisioner.config import Config
from provisioner.estimate import estimate
from provisioner.requirements import Requirements
from provisioner.selection import Plan, PlanSettings, select
from provisioner.units import parse_duration_s

HISTORY_RUNS = 50   # newest runs that inform a plan


@dataclass(frozen=True)
class PlanResult:
    plan: Plan
    settings: PlanSettings
    requirements: Requirements
    warnings: tuple[str, ...] = ()


def settings_from(config: Config, req: Requirements, *, timeout: str | None = None,
                  policy: str | None = None, regions: list[str] | None = None,
                  max_price: float | None = None, no_autotune: bool = False) -> PlanSettings:
    """Flags > label (timeout=) > config > built-in defaults."""
    d = config.defaults
    if timeout is not None:
        timeout_s = parse_duration_s(timeout)
    elif req.timeout_s is not None:
        timeout_s = req.timeout_s
    else:
        timeout_s = parse_duration_s(d["timeout"])
    return PlanSettings(
        timeout_s=timeout_s, runtime_target=float(d["runtime_target"]),
        policy=policy or d["policy"],
        max_price=max_price if max_price is not None else d["max_price"],
        default_runtime_s=parse_duration_s(d["default_runtime"]), boot_s=float(d["boot_s"]),
        disk_gib=float(d["disk_gib"]), mem_headroom=float(d["mem_headroom"]),
        autotune=not no_autotune, autotune_min_runs=int(d["autotune_min_runs"]),
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


def plan_job(ctx, *, label: str | None, filters: list[str], job: str | None, timeout: str | None = None,
             policy: str | None = None, regions: list[str] | None = None, max_price: float | None = None,
             no_autotune: bool = False) -> PlanResult:
    """Everything `provisioner plan` does before printing."""
    config = ctx.config
    req = Requirements.parse(label, filters, no_autotune=no_autotune)
    settings = settings_from(config, req, timeout=timeout, policy=policy, regions=regions,
                             max_price=max_price, no_autotune=no_autotune)
    d = config.defaults
    catalog = load_catalog(score_source=d["score_source"], max_age_days=d["catalog_max_age_days"])
    runs: list[dict] = []
    if job:
        with ctx.open_history() as store:
            runs = store.runs(job, limit=HISTORY_RUNS)
    plan = plan_for(catalog, req, runs, settings, managed_atom=config.section("jenkins")["managed_atom"])
    return PlanResult(plan, settings, req, tuple(catalog.warnings))
