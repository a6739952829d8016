"""Where the planner's cost above the oracle comes from, job by job (used by bench/selection.py).

For each job with history whose plan cost more than the oracle's choice, the first cause that
explains why the planner did not take the oracle's offer:
  miss       the plan ran out of memory or past the timeout (charged the waste and a rerun)
  market     the oracle's offer is in another market (spot vs on-demand)
  memory     the oracle's offer has less memory than the planner's floor from history
  pool       the oracle's offer is outside the planner's pool for another reason (type rules, arch)
  margin     the planner predicts the oracle's offer meets the target, but not with the margin
             a runtime scaled from other types carries
  slow       the planner predicts the oracle's offer misses the target even without a margin
  ranking    the oracle's offer passes every rule; the planner's predicted costs ranked it lower
"""

from __future__ import annotations

import statistics
from collections import defaultdict

from provisioner import planner
from provisioner.errors import NoOfferError
from provisioner.estimate import estimate
from provisioner.selection import SCALED_MARGIN, _narrow

CAUSES = ("miss", "market", "memory", "pool", "margin", "slow", "ranking")


def classify(result, catalog, runs: list[dict], oracle_offer, plan_miss: str | None) -> tuple[str, str]:
    """(cause, detail) of the planner not choosing `oracle_offer` (see the module's text)."""
    plan, settings = result.plan, result.settings
    chosen = plan.chosen.offer
    if plan_miss:
        return "miss", plan_miss
    if chosen.market != oracle_offer.market:
        return "market", f"{chosen.market} vs {oracle_offer.market}"
    floor = plan.sizing.mem_gib if plan.sizing is not None else None
    req = result.intent.requirements if result.intent is not None else result.requirements
    est = estimate(runs, _lookup(catalog, settings), req.vcpu)
    if floor is not None and oracle_offer.memory_gib < floor:
        return "memory", (f"floor {floor:g} GiB > {oracle_offer.memory_gib:g} GiB (peak {est.mem_peak_gib:.2f} GiB, "
                          f"{len(est.mem_peaks)} peaks, spread {_spread(est.mem_peaks):.1%})")
    try:
        pool = _narrow(catalog.offers, req, plan.sizing, settings, frozenset())
    except NoOfferError:
        pool = []
    if oracle_offer.key not in {o.key for o in pool}:
        return "pool", "outside the narrowed offers"
    d, measured = est.runtime_on(oracle_offer) or (float("inf"), False)
    margin = deadline_margin(est, oracle_offer, measured)
    target = min(settings.timeout_s, settings.target_s)
    if d * (1 + margin) > target:
        cause = "slow" if d > target else "margin"
        return cause, f"predicted {d:.0f}s x{1 + margin:.2f} > target {target:.0f}s"
    return "ranking", (f"predicted {d:.0f}s on {oracle_offer.instance_type}, chosen "
                       f"{plan.chosen.duration_s:.0f}s on {chosen.instance_type}")


def _spread(peaks) -> float:
    if len(peaks) < 2:
        return 0.0
    return statistics.stdev(peaks) / statistics.fmean(peaks)


def deadline_margin(est, offer, measured: bool) -> float:
    """The margin the planner's deadline check applies to this offer's prediction."""
    if measured:
        return 0.0
    from provisioner import selection
    rule = getattr(selection, "scaled_margin", None)
    return rule(est) if rule is not None else SCALED_MARGIN


def _lookup(catalog, settings):
    def lookup(instance_type, region):
        for r in (region, *settings.regions, "us-east-1"):
            for market in ("ondemand", "spot"):
                o = catalog.find(instance_type, r or "us-east-1", market)
                if o is not None:
                    return o
        return None
    return lookup


def breakdown(rows: list[tuple[str, str, str, float]]) -> dict[str, tuple[int, float]]:
    """cause -> (jobs, USD above the oracle) from (job, cause, detail, gap) rows."""
    out: dict[str, list] = defaultdict(lambda: [0, 0.0])
    for _, cause, _, gap in rows:
        out[cause][0] += 1
        out[cause][1] += gap
    return {c: (out[c][0], out[c][1]) for c in CAUSES if c in out}


def planner_runs(ctx, job: str) -> list[dict]:
    with ctx.open_history() as store:
        return store.runs(job, limit=planner.HISTORY_RUNS)
