#!/usr/bin/env python3
"""Benchmark: what vCPU caps and team budgets cost one daemon tick, against the same tick without them.

On bench/reconcile.py's generated queue (N waiting items, M agents, seeded), with plans made of real
offers of the bundled catalog (two to four candidates each, spot and on-demand, several quota classes):

  off   CPU time of `reconcile(observed, settings, now)` with only the count caps (today's default);
  on    the same step with max_vcpus, max_vcpus_per_label, per-class caps and account quotas, and
        an enforced budget per team (job -> team mapping, two of seven teams at 100%), plus the
        tick's budget arithmetic (the M running agents' accrued cost added to the recorded spend);
  refresh  summing the period's R records per budget, which the loop does only every
        budget_refresh_s, not every tick (a record stored meanwhile is added to the sums);
  ratio on / off, medians of --repeat ticks; and how many items each rule held.

Usage: bench/caps.py [--seed N] [--items 1000] [--agents 500] [--records 5000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reconcile import OWNER, workload  # noqa: E402  (bench/reconcile.py: the same queue)

from provisioner.alerts.config import Rule  # noqa: E402
from provisioner.budgets import Running, exhausted_teams, recorded_spend, with_running  # noqa: E402
from provisioner.catalog import load_catalog  # noqa: E402
from provisioner.daemon import reconcile as R  # noqa: E402
from provisioner.daemon.model import Hold, Memory, Observed, PlanKey, Settings  # noqa: E402
from provisioner.selection import Candidate, Plan  # noqa: E402

TEAMS = {f"team{k}": [f"team{k}/*"] for k in range(7)}


def plans_for(rng: random.Random, pairs, catalog) -> dict:
    offers = [o for o in catalog.offers if o.region == "us-east-1" and o.vcpu <= 32]
    plans = {}
    for label, job in pairs:
        picked = rng.sample(offers, rng.randint(2, 4))
        cands = tuple(Candidate(o, 1200.0, o.price / 3, 1000.0) for o in picked)
        plans[PlanKey(label, job)] = Plan(chosen=cands[0], candidates=cands, autotuned=None, reasons=(),
                                          node_labels=("ec2",))
    return plans


def records(rng: random.Random, n: int, now: float) -> list[dict]:
    start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600))
    return [{"job": f"team{rng.randrange(7)}/job{rng.randrange(60)}", "start": start, "cost_usd": rng.uniform(0.01, 2),
             "node": f"old-{i}", "team": None} for i in range(n)]


def tick_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--agents", type=int, default=500)
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    now = time.time()
    catalog = load_catalog()
    pairs, items, nodes, instances = workload(rng, args.items, args.agents, args.pairs, now)
    plans = plans_for(rng, pairs, catalog)
    vcpus = {o.instance_type: float(o.vcpu) for o in catalog.offers}
    base = Settings(owner=OWNER, max_agents=args.agents + args.items, max_per_label=None)
    off_obs = Observed(tuple(items), tuple(nodes), tuple(instances), {i.id: 0.192 for i in instances}, plans,
                       {}, {}, Memory())
    recs = records(rng, args.records, now)
    running = [Running(i.tag("job"), i.tag("node"), 0.192, now - 1800) for i in instances]
    rules = [Rule(on=("budget",), teams=(t,), budget_usd=(300.0 if k < 2 else 1e6), period="month", enforce=True)
             for k, t in enumerate(TEAMS)]
    classes = ("standard", "g", "p", "inf", "x", "f", "trn", "dl", "high-memory", "hpc")
    on_settings = replace(base, max_vcpus=args.agents * 4 + 400, max_vcpus_per_label=600,
                          class_caps={("us-east-1", c, m): 4000.0 for c in classes for m in ("spot", "on-demand")},
                          class_quotas={("us-east-1", "standard", "spot"): 2400.0, ("us-east-1", "g", "on-demand"): 64.0,
                                        ("us-east-1", "p", "on-demand"): 0.0})
    teams = {job: f"team{job[4]}" for _, job in pairs}

    def off() -> list:
        return R.reconcile(off_obs, base, now)

    recorded = recorded_spend(rules, TEAMS, recs, now)      # the loop redoes this every budget_refresh_s

    def on() -> list:
        uses = with_running(recorded, TEAMS, running, now)
        obs = replace(off_obs, vcpus=vcpus, teams=teams, over_budget=frozenset(exhausted_teams(uses)))
        return R.reconcile(obs, on_settings, now)

    off(), on()                                          # warm the label caches, as a running daemon has
    t_off, t_on = tick_s(off, args.repeat), tick_s(on, args.repeat)
    t_budget = tick_s(lambda: with_running(recorded, TEAMS, running, now), args.repeat)
    t_refresh = tick_s(lambda: recorded_spend(rules, TEAMS, recs, now), args.repeat)
    held = Counter(a.reason for a in on() if isinstance(a, Hold))
    launched_off = sum(1 for a in off() if type(a).__name__ == "Provision")
    launched_on = sum(1 for a in on() if type(a).__name__ == "Provision")
    print(f"seed {args.seed}: {args.items} waiting items, {args.agents} agents, {len(plans)} plans, "
          f"{args.records} records in the period, {len(rules)} enforced team budgets, repeat {args.repeat}")
    print(f"off  reconcile step                    {t_off * 1000:8.2f} ms CPU   ({launched_off} launches)")
    print(f"on   reconcile step + budget arithmetic {t_on * 1000:8.2f} ms CPU   ({launched_on} launches)")
    print(f"     of which running agents' accrual {t_budget * 1000:8.2f} ms CPU")
    print(f"refresh: summing the period's records  {t_refresh * 1000:8.2f} ms CPU   (every budget_refresh_s)")
    print(f"ratio on/off                            {t_on / t_off:8.2f}x")
    print("held with caps and budgets on: " + ", ".join(f"{r} {n}" for r, n in sorted(held.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
