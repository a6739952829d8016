#!/usr/bin/env python3
"""Benchmark: cost and misses of `provisioner plan` against Batch-like, fixed-template and oracle choices.

A generated workload of jobs whose *true* runtimes come from a model the planner does not use:
CoreMark scores per thread and for all threads (the planner's default, `composite`, is Geekbench 6
single-core scaled by stress-ng's all-core ratio), per-job serial fractions and thread counts,
memory-bound jobs that scale weakly with CPU speed, run-to-run noise and outlier runs. People
declare requirements with headroom, as they do; 15% of jobs have no history. Histories go into a
real store through `provisioner history import`; every plan is `provisioner.planner.plan_job`, the
code behind `provisioner plan` (a sample is checked against the console script itself).

Strategies, all priced with the same cost function on the *true* runtime (per-second billing,
boot, expected spot rework, root volume):
  plan     provisioner's choice (policy deadline, autotune on)
  batch    AWS Batch-like best fit: the cheapest offer (spot or on-demand) meeting the declaration
  template one fixed instance template for every job (m5.4xlarge on demand)
  oracle   knows the true runtime and memory: the cheapest offer meeting the timeout and memory
A miss: the chosen type has less memory than the job needs, or the true runtime exceeds the timeout.

Also times `provisioner plan --json` (median wall time, interpreter start included) against
`python3 -c pass`, and the pure selection call.

Usage: bench/selection.py [--seed N] [--jobs N] [--speed-runs N]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provisioner.catalog import Catalog, load_catalog  # noqa: E402
from provisioner.catalog.load import bundled_dir  # noqa: E402
from provisioner.catalog.model import ON_DEMAND, SPOT, Offer  # noqa: E402
from provisioner.config import DEFAULTS, Config  # noqa: E402
from provisioner.estimate import estimate  # noqa: E402
from provisioner.planner import plan_for, settings_from  # noqa: E402
from provisioner.requirements import Requirements  # noqa: E402
from provisioner.selection import expected_cost  # noqa: E402

GIB = 1024 ** 3
BOOT_S, DISK_GIB = 90.0, 30.0
REGION = "us-east-1"
TEMPLATE = "m5.4xlarge"
HISTORY_TYPES = ["m5.2xlarge", "m5.4xlarge", "c5.4xlarge", "r5.2xlarge", "r5.4xlarge", "m6i.4xlarge",
                 "m5.8xlarge", "r5.8xlarge", "c5.9xlarge", "m5.xlarge"]


# ---- the truth: Geekbench 6, with fallbacks brought into Geekbench units ------------------------

def coremark_truth(vcpus: dict[str, int]) -> dict[str, tuple[float, float]]:
    """type -> (per-thread CoreMark, all-thread CoreMark), scaled so a median core is ~1500."""
    rows = [r for r in csv.DictReader(open(bundled_dir() / "cpu_scores.csv"))
            if r["source"] == "ec2instances-coremark" and r["multi_core_score"]]
    raw = {r["instance_type"]: (float(r["multi_core_score"]), int(r["threads"] or vcpus.get(r["instance_type"], 1)))
           for r in rows}
    scale = 1500 / statistics.median(m / n for m, n in raw.values())
    return {t: (m / n * scale, m * scale) for t, (m, n) in raw.items()}


def truth_scores(vcpus: dict[str, int]) -> dict[str, tuple[float, float]]:
    """type -> (single, all-core): Geekbench 6 single-core, CoreMark all-thread throughput.

    Neither is the planner's source (stress-ng). CoreMark scales with threads the way a
    data-parallel job does; it is brought into Geekbench units by the median ratio of Geekbench
    single-core to CoreMark per thread, so 'all-core' = n x single for perfect scaling.
    """
    rows = list(csv.DictReader(open(bundled_dir() / "cpu_scores.csv")))
    by: dict[str, dict[str, dict]] = {}
    for r in rows:
        by.setdefault(r["source"], {})[r["instance_type"]] = r
    gb = {t: float(r["single_core_score"]) for t, r in by["sparecores-geekbench6"].items() if r["single_core_score"]}
    cm = {t: (float(r["multi_core_score"]), int(r["threads"] or vcpus.get(t, 1)))
          for t, r in by["ec2instances-coremark"].items() if r["multi_core_score"]}
    ratio = statistics.median(gb[t] / (m / n) for t, (m, n) in cm.items() if t in gb)
    out = {}
    for t in set(gb) | set(cm):
        if t in cm:
            m, n = cm[t]
            out[t] = (gb.get(t, m / n * ratio), m * ratio)
    return out


@dataclass
class Job:
    name: str
    work: float            # single-core seconds on a Geekbench-1000 core
    serial: float          # share of the work that runs on one thread
    threads: int
    mem_gib: float         # true peak
    memory_bound: bool
    declared_vcpu: int
    declared_mem: int
    timeout_s: float
    x86_only: bool
    history_runs: int

    @property
    def label(self) -> str:
        parts = ["ec2", f"vcpu={self.declared_vcpu}", f"mem={self.declared_mem}",
                 f"timeout={int(self.timeout_s)}s"]
        if self.x86_only:
            parts.append("arch=x86_64")
        return " && ".join(parts)


def true_runtime(job: Job, offer: Offer, scores: dict[str, tuple[float, float]]) -> float:
    single, multi = scores.get(offer.instance_type, (0.0, 0.0))
    if not single:
        return math.inf
    n = offer.vcpu
    if job.memory_bound:
        # bandwidth-bound: weak gain from a faster core, no gain past 4 threads
        k = min(job.threads, n, 4)
        speed = (single / 1000) ** 0.35
        return job.work * (job.serial + (1 - job.serial) / k) / speed
    k = min(job.threads, n)
    serial_t = job.work * job.serial * 1000 / single
    parallel_t = job.work * (1 - job.serial) * 1000 / (multi * k / n) if job.serial < 1 else 0.0
    return serial_t + parallel_t


def cpu_profile(job: Job, offer: Offer, t: float, scores) -> tuple[float, float]:
    """(avg %, max %) a run would show: 100 per busy vCPU."""
    single, _ = scores[offer.instance_type]
    k = min(job.threads, offer.vcpu, 4 if job.memory_bound else 10 ** 6)
    serial_t = job.work * job.serial * 1000 / single if not job.memory_bound else t * job.serial
    serial_t = min(serial_t, t)
    busy = (serial_t * 1 + (t - serial_t) * k) / t
    return busy * 100, k * 100


def make_jobs(rng: random.Random, n: int) -> list[Job]:
    jobs = []
    for i in range(n):
        threads = rng.choice([1, 1, 1, 2, 4, 4, 8, 8, 16, 32])
        serial = 1.0 if threads == 1 else rng.uniform(0.02, 0.5)
        mem = round(rng.lognormvariate(math.log(4), 0.9), 2)
        mem = min(max(mem, 0.3), 300)
        declared_vcpu = min(64, 2 ** math.ceil(math.log2(max(threads, 1) * rng.uniform(1.0, 4.0))))
        declared_mem = min(512, 2 ** math.ceil(math.log2(mem * rng.uniform(1.5, 6.0) + 1)))
        declared_mem = max(declared_mem, declared_vcpu * 2)  # people ask in instance-shaped pairs
        work = rng.lognormvariate(math.log(1.5 * 3600), 1.0) * max(1.0, threads * 0.5)
        history = 0 if rng.random() < 0.15 else rng.randint(3, 12)
        jobs.append(Job(f"job-{i:03d}", work, serial, threads, mem, rng.random() < 0.2,
                        declared_vcpu, declared_mem, 0.0, rng.random() < 0.3, history))
    return jobs


def fits_declared(job: Job, o: Offer) -> bool:
    return (o.vcpu >= job.declared_vcpu and o.memory_gib >= job.declared_mem and o.gpu_count == 0
            and (not job.x86_only or o.arch == "x86_64"))


def set_timeouts(jobs: list[Job], offers: list[Offer], scores, rng: random.Random) -> None:
    """People set the timeout from what they saw on the kind of machine they declared."""
    for job in jobs:
        usual = min((o for o in offers if o.market == ON_DEMAND and fits_declared(job, o)
                     and o.instance_type in scores and o.family in ("m5", "m6i", "r5", "c5", "r6i")),
                    key=lambda o: o.price, default=None)
        if usual is None:
            usual = min((o for o in offers if o.market == ON_DEMAND and fits_declared(job, o)
                         and o.instance_type in scores), key=lambda o: o.price)
        t = true_runtime(job, usual, scores)
        job.timeout_s = max(1800.0, math.ceil(t * rng.uniform(1.6, 3.0) / 1800) * 1800)


def history_records(job: Job, offers_by_type: dict[str, Offer], scores, rng: random.Random) -> list[dict]:
    records = []
    usable = [t for t in HISTORY_TYPES if t in offers_by_type and offers_by_type[t].memory_gib >= job.mem_gib * 1.05
              and (offers_by_type[t].vcpu >= job.declared_vcpu or rng.random() < 0.5)]
    if not usable:
        usable = [min((o for o in offers_by_type.values() if o.memory_gib >= job.mem_gib * 1.2
                       and o.instance_type in scores and o.gpu_count == 0), key=lambda o: o.price).instance_type]
    favourites = rng.sample(usable, k=min(len(usable), rng.choice([1, 1, 2, 3])))
    for i in range(job.history_runs):
        t_name = rng.choice(favourites)
        o = offers_by_type[t_name]
        t = true_runtime(job, o, scores) * rng.lognormvariate(0, 0.05)
        if rng.random() < 0.05:
            t *= rng.uniform(3, 6)  # a stuck run, a bad node
        avg, peak = cpu_profile(job, o, t, scores)
        records.append({
            "job": job.name, "build": str(i + 1), "run_id": f"{job.name}-{i + 1}",
            "start": f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:00:00Z", "duration_s": round(t, 1),
            "exit_code": 0, "instance_type": t_name, "region": REGION, "market": ON_DEMAND, "vcpu": o.vcpu,
            "cpu_avg_pct": round(avg * rng.uniform(0.95, 1.02), 1), "cpu_max_pct": round(peak, 1),
            "mem_max_bytes": int(job.mem_gib * rng.uniform(0.92, 1.0) * GIB),
            "requested_vcpu": job.declared_vcpu, "requested_mem_gib": job.declared_mem,
            "requested": job.label})
    return records


def outcome(job: Job, o: Offer, scores) -> tuple[float, bool]:
    t = true_runtime(job, o, scores)
    miss = o.memory_gib < job.mem_gib + 0.5 or t > job.timeout_s
    return expected_cost(o, min(t, job.timeout_s), BOOT_S, DISK_GIB), miss


def oracle(job: Job, offers: list[Offer], scores, markets) -> Offer:
    best = None
    for o in offers:
        if o.market not in markets or o.gpu_count or o.burstable or (job.x86_only and o.arch != "x86_64"):
            continue
        if o.memory_gib < job.mem_gib + 0.5:
            continue
        t = true_runtime(job, o, scores)
        if t > job.timeout_s * 0.8:
            continue
        c = expected_cost(o, t, BOOT_S, DISK_GIB)
        if best is None or c < best[0]:
            best = (c, o)
    return best[1]


def batch(job: Job, offers: list[Offer], markets) -> Offer:
    return min((o for o in offers if o.market in markets and fits_declared(job, o)),
               key=lambda o: (o.price, o.instance_type))


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "provisioner")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--jobs", type=int, default=240)
    ap.add_argument("--speed-runs", type=int, default=15)
    ap.add_argument("--score-source", default=DEFAULTS["defaults"]["score_source"],
                    help="the planner's CPU score source (the config's defaults.score_source)")
    ap.add_argument("--truth", choices=("geekbench-coremark", "coremark"), default="coremark",
                    help="the true runtimes' scores: Geekbench 6 single-core with CoreMark all-core, "
                         "or CoreMark alone")
    args = ap.parse_args()
    print(f"seed {args.seed}, {args.jobs} jobs, planner scores {args.score_source}, truth {args.truth}")
    rng = random.Random(args.seed)

    tmp = Path(tempfile.mkdtemp(prefix="bench-selection-"))
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"), XDG_STATE_HOME=str(tmp / "state"),
               XDG_CONFIG_HOME=str(tmp / "config"))
    os.environ.update({k: env[k] for k in ("XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME")})
    catalog = load_catalog(score_source=args.score_source)
    vcpus = {o.instance_type: o.vcpu for o in catalog.offers}
    scores = coremark_truth(vcpus) if args.truth == "coremark" else truth_scores(vcpus)
    # The universe is the types whose true speed the benchmark knows; every strategy chooses in it.
    known = len({o.instance_type for o in catalog.offers})
    catalog = Catalog(offers=[o for o in catalog.offers if o.instance_type in scores],
                      source=catalog.source, score_source=catalog.score_source)
    print(f"types with a true speed: {len({o.instance_type for o in catalog.offers})} of {known}")
    offers = [o for o in catalog.offers if o.region == REGION]
    offers_by_type = {o.instance_type: o for o in offers if o.market == ON_DEMAND}
    jobs = make_jobs(rng, args.jobs)
    set_timeouts(jobs, offers, scores, rng)

    hist = tmp / "history.sqlite3"
    jsonl = tmp / "history.jsonl"
    with open(jsonl, "w") as fh:
        for job in jobs:
            for r in history_records(job, offers_by_type, scores, rng):
                fh.write(json.dumps(r) + "\n")
    t0 = time.perf_counter()
    imp = run_cli(["history", "import", str(jsonl), "--history", str(hist)], env)
    print(f"history import: {imp.stdout.strip()} ({time.perf_counter() - t0:.2f}s)")
    if imp.returncode != 0:
        print(imp.stderr)
        return 1

    from provisioner.history import open_store
    store = open_store(str(hist))
    config = Config(json.loads(json.dumps(DEFAULTS)), None)
    # Diagnostic: the same planner given the truth's CPU scores, to tell how much of the gap to the
    # oracle is benchmark disagreement (stress-ng vs Geekbench/CoreMark) rather than method.
    informed = Catalog(offers=[o._replace(score_single=scores[o.instance_type][0],
                                          score_multi=scores[o.instance_type][1])
                               for o in catalog.offers if o.instance_type in scores],
                       source="truth scores", score_source="truth")
    results: dict[str, dict[str, list]] = {}
    for market_set, tag in (((SPOT, ON_DEMAND), "any"), ((ON_DEMAND,), "od")):
        for job in jobs:
            label = job.label + (" && ondemand" if tag == "od" else "")
            req = Requirements.parse(label)
            settings = settings_from(config, req)
            runs = store.runs(job.name, limit=50)
            p = plan_for(catalog, req, runs, settings).chosen.offer
            picks = {"plan": p, "batch": batch(job, offers, market_set),
                     "template": offers_by_type[TEMPLATE], "oracle": oracle(job, offers, scores, market_set),
                     "informed": plan_for(informed, req, runs, settings).chosen.offer}
            for name, o in picks.items():
                cost, miss = outcome(job, o, scores)
                results.setdefault(f"{tag}:{name}", {})[job.name] = (cost, miss, o.instance_type, o.market)

    def report(title: str, names: set[str], tag: str) -> None:
        def total(strategy):
            rows = [results[f"{tag}:{strategy}"][n] for n in names]
            return sum(r[0] for r in rows), sum(r[1] for r in rows)
        plan_c, plan_m = total("plan")
        line = f"{title:<28} jobs {len(names):>4}  plan ${plan_c:9.2f} ({plan_m} misses)"
        for other in ("batch", "template", "oracle"):
            c, m = total(other)
            line += f"  | {other} ${c:9.2f} ({m} misses) plan/{other} {plan_c / c:5.3f}"
        print(line)

    everyone = {j.name for j in jobs}
    with_h = {j.name for j in jobs if j.history_runs}
    without = everyone - with_h
    print("\nTotal cost of the workload (true runtimes), and the ratio of plan to each baseline:")
    report("all jobs", everyone, "any")
    report("jobs with history", with_h, "any")
    report("jobs without history", without, "any")
    report("on-demand only, all jobs", everyone, "od")
    informed_c = sum(results["any:informed"][n][0] for n in with_h)
    oracle_c = sum(results["any:oracle"][n][0] for n in with_h)
    print(f"diagnostic: the planner given the truth's CPU scores, jobs with history: ${informed_c:.2f}, "
          f"{informed_c / oracle_c:.3f}x the oracle "
          f"({sum(results['any:informed'][n][1] for n in with_h)} misses)")
    worse = [n for n in without if results["any:plan"][n][0] > results["any:batch"][n][0] * 1.0001]
    print(f"jobs without history where plan cost more than batch: {len(worse)} of {len(without)}")
    misses = sum(r[1] for r in results["any:plan"].values())
    print(f"plan misses: {misses} of {len(jobs)} ({misses / len(jobs):.1%})")

    # the console script gives the same answers as the in-process call
    sample = rng.sample(jobs, 5)
    same = 0
    for job in sample:
        out = run_cli(["plan", "--label", job.label, "--job", job.name, "--history", str(hist), "--json"], env)
        if json.loads(out.stdout)["instance_type"] == results["any:plan"][job.name][2]:
            same += 1
    print(f"console script agrees with the in-process plan on {same} of {len(sample)} sampled jobs")

    # ---- speed ---------------------------------------------------------------------------------
    busy = max(jobs, key=lambda j: j.history_runs)
    cmd_plan = ["plan", "--label", busy.label, "--job", busy.name, "--history", str(hist), "--json"]
    run_cli(cmd_plan, env)  # warm the catalog cache, as any second run finds it

    def median_wall(argv: list[str]) -> float:
        times = []
        for _ in range(args.speed_runs):
            t = time.perf_counter()
            subprocess.run(argv, capture_output=True, env=env)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    base = median_wall([sys.executable, "-c", "pass"])
    exe = str(Path(sys.executable).parent / "provisioner")
    wall = median_wall([exe, *cmd_plan])
    print(f"\nspeed: `provisioner plan --json` with {busy.history_runs} runs of history over the full catalog: "
          f"median {wall * 1000:.0f} ms; `python3 -c pass` {base * 1000:.0f} ms; ratio {wall / base:.1f}x "
          f"(target < 500 ms)")
    req = Requirements.parse(busy.label)
    settings = settings_from(config, req)
    runs = store.runs(busy.name, limit=50)
    timings = []
    for _ in range(30):
        t = time.perf_counter()
        plan_for(catalog, req, runs, settings)
        timings.append(time.perf_counter() - t)
    est_t = []
    for _ in range(30):
        t = time.perf_counter()
        estimate(runs, lambda ty, rg: offers_by_type.get(ty), req.vcpu)
        est_t.append(time.perf_counter() - t)
    print(f"speed: pure selection (estimate + select over {len(catalog.offers)} offers): median "
          f"{statistics.median(timings) * 1000:.1f} ms (estimate alone {statistics.median(est_t) * 1000:.2f} ms; "
          f"target < 50 ms)")
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
