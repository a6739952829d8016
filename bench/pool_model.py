#!/usr/bin/env python3
"""Benchmark (a model): a day of builds on EC2 with no pool, a warm pool of stopped spares, and agent
reuse; queue -> build start and cost per build, printed as a table.

The day: 500 builds, Poisson arrivals over 10 hours, durations log-uniform between 1 and 30 minutes,
spread over 20 jobs (a few busy, most rare: Zipf weights), all planned on one on-demand type. Seeded.
The daemon ticks every 5 s: a build waits a uniform part of a tick before anything happens for it.

Timings (each draw uniform in its range):
* launch-and-boot of a new instance until its agent is online: 45-60 s. The issue's figure (AWS boot
  40-60 s; Jenkins EC2-plugin users report 1-2 min queue -> agent). Measured cold launches to SSH are
  about 25 s on current AMIs (github.com/brevdev/ec2-coldboot-research, "Result: 25.8s avg", and
  www.martysweet.co.uk/ec2-launch-times/, Oct 2023); the agent's JVM start and connection and the
  EBS lazy-load of a fresh volume from its snapshot come on top.
* start of a stopped, already-booted spare until its agent is online: 10-20 s (its volume is warm;
  EC2 Auto Scaling's warm pools rest on the same stop/start, docs.aws.amazon.com/autoscaling/ec2/
  userguide/ec2-auto-scaling-warm-pools.html: a stopped instance costs only its EBS volumes).
* reuse: the agent kills the last build's processes and wipes its workspace: 2-5 s.

Cost: per-second billing with a 60 s minimum per start (launch or start from stopped); the root
volume (30 GiB gp3 at 0.08 USD per GB-month) is billed the whole time an instance exists, running or
stopped; a spare is booted once (launch-and-boot + 30 s) then stopped; the pool keeps `min_spare`
spares for the 10 hours and refills each used one at once; spares are terminated at the end.
Reuse keeps an agent whose build ended for `idle` (5 min) waiting for the next build of the same
job, at most `max_builds` (10) builds, billed while it waits.

Usage: bench/pool_model.py [--seed N] [--builds 500] [--spares 1 2 4] [--price 0.085]
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import math
import random
import statistics
from dataclasses import dataclass

HOURS = 10.0
TICK_S = 5.0
LAUNCH = (45.0, 60.0)
START = (10.0, 20.0)
CLEAN = (2.0, 5.0)
WARM_EXTRA_S = 30.0
EBS_GIB, EBS_USD_GB_MONTH = 30, 0.08
JOBS = 20


@dataclass(frozen=True)
class Build:
    at: float
    duration: float
    job: int


@dataclass
class Result:
    name: str
    waits: list
    cost: float
    served: int                # builds started without a fresh launch (spare or reused agent)


def day(rng: random.Random, n: int) -> list[Build]:
    """n Poisson arrivals over HOURS (n uniform points, sorted), log-uniform 1-30 min, Zipf jobs."""
    weights = [1.0 / (k + 1) for k in range(JOBS)]
    times = sorted(rng.uniform(0, HOURS * 3600) for _ in range(n))
    return [Build(t, math.exp(rng.uniform(math.log(60), math.log(1800))), rng.choices(range(JOBS), weights)[0])
            for t in times]


def ebs_usd_per_s() -> float:
    return EBS_GIB * EBS_USD_GB_MONTH / (730 * 3600)


def billed(run_s: float, price: float) -> float:
    return max(60.0, run_s) * price / 3600


def tick_wait(rng: random.Random) -> float:
    return rng.uniform(0, TICK_S)


def no_pool(builds: list[Build], price: float, rng: random.Random) -> Result:
    waits, cost = [], 0.0
    for b in builds:
        boot = rng.uniform(*LAUNCH)
        waits.append(tick_wait(rng) + boot)
        cost += billed(boot + b.duration, price) + (boot + b.duration) * ebs_usd_per_s()
    return Result("no pool", waits, cost, 0)


def pool(builds: list[Build], price: float, rng: random.Random, spares: int) -> Result:
    """Stopped spares: a build takes one when one is ready, and a refill launches at once."""
    ready: list[float] = []                    # times at which a spare is booted and stopped
    created: list[float] = []                  # when each spare's volume began to bill
    waits, cost, served = [], 0.0, 0

    def new_spare(at: float) -> None:
        nonlocal cost
        boot = rng.uniform(*LAUNCH)
        cost += billed(boot + WARM_EXTRA_S, price)
        heapq.heappush(ready, at + boot + WARM_EXTRA_S)
        created.append(at)
    for _ in range(spares):
        new_spare(-600.0)                      # made before the day starts
    for b in builds:
        decide = b.at + tick_wait(rng)
        if ready and ready[0] <= decide:
            heapq.heappop(ready)
            start = rng.uniform(*START)
            waits.append(decide - b.at + start)
            cost += billed(start + b.duration, price)
            served += 1
            new_spare(decide)
            # the claimed spare's volume: billed from its creation to the build's end
            made = created.pop(0)
            cost += (decide + start + b.duration - made) * ebs_usd_per_s()
        else:
            boot = rng.uniform(*LAUNCH)
            waits.append(decide - b.at + boot)
            cost += billed(boot + b.duration, price) + (boot + b.duration) * ebs_usd_per_s()
    end = HOURS * 3600
    cost += sum(end - made for made in created) * ebs_usd_per_s()      # spares left, then terminated
    return Result(f"pool of {spares} (stopped)", waits, cost, served)


def reuse(builds: list[Build], price: float, rng: random.Random, idle_s: float = 300.0,
          max_builds: int = 10) -> Result:
    """An agent whose build ended waits `idle_s` for the next build of its job."""
    free: dict[int, list[tuple[float, float, int]]] = {}   # job -> [(free since, launched, builds run)]
    waits, cost, served = [], 0.0, 0
    busy: list[tuple[float, int, float, int]] = []          # (ends, job, launched, builds) heap

    def release(until: float) -> None:
        while busy and busy[0][0] <= until:
            ends, job, launched, n = heapq.heappop(busy)
            if n < max_builds:
                bisect.insort(free.setdefault(job, []), (ends, launched, n))
            else:
                close(ends, launched)

    def close(at: float, launched: float) -> None:
        nonlocal cost
        cost += billed(at - launched, price) + (at - launched) * ebs_usd_per_s()

    for b in builds:
        decide = b.at + tick_wait(rng)
        release(decide)
        pool_ = free.get(b.job, [])
        for since, launched, _ in [x for x in pool_ if decide - x[0] > idle_s]:   # idled out
            close(since + idle_s, launched)
        pool_[:] = [x for x in pool_ if decide - x[0] <= idle_s]
        if pool_:
            since, launched, n = pool_.pop(0)
            clean = rng.uniform(*CLEAN)
            waits.append(decide - b.at + clean)
            heapq.heappush(busy, (decide + clean + b.duration, b.job, launched, n + 1))
            served += 1
        else:
            boot = rng.uniform(*LAUNCH)
            waits.append(decide - b.at + boot)
            heapq.heappush(busy, (decide + boot + b.duration, b.job, decide, 1))
    release(float("inf"))
    for group in free.values():
        for since, launched, _ in group:
            close(since + idle_s, launched)
    return Result("reuse (idle 5 min)", waits, cost, served)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--builds", type=int, default=500)
    ap.add_argument("--spares", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--price", type=float, default=0.085, help="on-demand USD/h (default: c5.large us-east-1)")
    args = ap.parse_args()
    print(f"seed {args.seed}: {args.builds} builds over {HOURS:g} h, durations log-uniform 1-30 min, "
          f"{JOBS} jobs, {args.price} USD/h on demand, tick {TICK_S:g} s")
    builds = day(random.Random(args.seed), args.builds)
    results = [no_pool(builds, args.price, random.Random(args.seed + 1))]
    results += [pool(builds, args.price, random.Random(args.seed + 1), n) for n in args.spares]
    results.append(reuse(builds, args.price, random.Random(args.seed + 1)))
    base = results[0]
    b_med, b_cost = statistics.median(base.waits), base.cost / len(builds)
    print(f"{'policy':<22} {'median s':>9} {'p90 s':>7} {'mean s':>7} {'warm':>6} {'USD/build':>10} "
          f"{'USD/day':>8} {'wait ratio':>10} {'cost ratio':>10}")
    for r in results:
        w = sorted(r.waits)
        med = statistics.median(w)
        per = r.cost / len(builds)
        print(f"{r.name:<22} {med:>9.1f} {w[int(0.9 * (len(w) - 1))]:>7.1f} {statistics.fmean(w):>7.1f} "
              f"{r.served / len(builds):>6.0%} {per:>10.5f} {r.cost:>8.2f} {med / b_med:>10.2f} {per / b_cost:>10.3f}")
    print("(warm: builds that started on a spare or a reused agent; ratios against no pool in this run)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
