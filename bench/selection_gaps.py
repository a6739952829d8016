"""For bench/selection.py: several seeds in one command, and where the planner's cost above the
oracle comes from, job by job.

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

import argparse
import statistics
from collections import defaultdict

from provisioner import planner
from provisioner.errors import NoOfferError
from provisioner.estimate import estimate
from provisioner.selection import _narrow, family_margin

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
    margin = deadline_margin(settings, measured, bool(est.kin(oracle_offer)))
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


def deadline_margin(settings, measured: bool, kin: bool) -> float:
    """The margin the planner's deadline check applies to an offer's prediction
    (`selection._Runtimes`): none on a type the job ran on, the family margin on another size of a
    family it ran on."""
    if measured:
        return 0.0
    return family_margin(settings.scaled_margin) if kin else settings.scaled_margin


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


def gap_breakdown(with_h: set[str], by: dict, planned: dict, catalog, ctx, show: bool,
                  region: str) -> list[tuple[str, str, str, float]]:
    """(job, cause, detail, USD above the oracle) of every job with history that cost more than the
    oracle's choice (bench/selection_gaps.py says what each cause means); printed with --gaps."""
    rows = []
    offers = {(o.instance_type, o.market): o for o in catalog.offers if o.region == region}
    for n in sorted(with_h):
        pl, orc = by["any:plan"][n], by["any:oracle"][n]
        gap = pl.cost - orc.cost
        if gap <= 1e-9 or n not in planned:
            continue
        cause, detail = classify(planned[n], catalog, planner_runs(ctx, n),
                                 offers[tuple(orc.choice.split())], pl.miss)
        rows.append((n, cause, detail, gap))
    if show:
        total = sum(by["any:oracle"][n].cost for n in with_h)
        print(f"\nJobs with history above the oracle (oracle total ${total:.2f}), by cause:")
        for cause, (count, usd) in breakdown(rows).items():
            print(f"  {cause:<8} {count:>3} jobs  ${usd:8.2f}  (+{usd / total:.3f}x the oracle)")
        for n, cause, detail, gap in sorted(rows, key=lambda r: -r[3]):
            print(f"  {n} {cause:<8} +${gap:.3f}  plan {by['any:plan'][n].choice}, oracle "
                  f"{by['any:oracle'][n].choice}: {detail}")
    return rows


def parse_seeds(text: str) -> list[int]:
    """`N` (seeds 1..N) or a comma list of seeds and ranges `a-b`."""
    try:
        if text.isdigit():
            return list(range(1, int(text) + 1))
        out: list[int] = []
        for part in text.split(","):
            a, _, b = part.strip().partition("-")
            out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds: expected N or a list like 1-10,20261205, got {text!r}")
    if not out:
        raise argparse.ArgumentTypeError("--seeds: no seed given")
    return out


def many_seeds(args, run_seed, targets: dict[str, float]) -> int:
    """Each seed's run, then one line per seed with the target figures, the worst and the median."""
    rows = []
    for seed in args.seeds:
        got = run_seed(args, seed)
        rows.append((seed, got["figures"], got["gaps"]))
        print()
    keys = list(rows[0][1])     # the targets' figures, then those of later rounds (--rounds)
    w = {k: max(14, len(k)) for k in keys}
    print(f"{'seed':>10}  " + "  ".join(f"{k:>{w[k]}}" for k in keys) + "  above oracle by cause (jobs, USD)")
    for seed, fig, gaps in rows:
        cause = ", ".join(f"{c} {n} ${usd:.2f}" for c, (n, usd) in gaps.items()) if gaps else ""
        print(f"{seed:>10}  " + "  ".join(f"{fig[k]:>{w[k]}.3f}" for k in keys) + f"  {cause}")
    worst = {k: max(f[k] for _, f, _ in rows) for k in keys}
    median = {k: statistics.median(f[k] for _, f, _ in rows) for k in keys}
    print(f"{'worst':>10}  " + "  ".join(f"{worst[k]:>{w[k]}.3f}" for k in keys))
    print(f"{'median':>10}  " + "  ".join(f"{median[k]:>{w[k]}.3f}" for k in keys))
    print(f"{'target':>10}  " + "  ".join(f"{'<= ' + format(targets[k], '.2f') if k in targets else '':>{w[k]}}"
                                          for k in keys))
    failing = [k for k in targets if worst[k] > targets[k]]
    print(f"{len(rows)} seeds: every target met on every seed" if not failing else
          f"{len(rows)} seeds: the worst seed misses {', '.join(failing)}")
    return 0 if not failing else 1
