#!/usr/bin/env python3
"""Benchmark: cost and misses of `provisioner plan` against AWS Batch's best fit and an oracle.

A generated workload of jobs whose *true* runtimes come from a model the planner does not use:
CoreMark scores per thread and for all threads (the planner's default, `composite`, is Geekbench 6
single-core scaled by stress-ng's all-core ratio; `--truth coremark-smt` also gives a thread a core
to itself on a hyper-threaded type while cores are idle, with EC2's own threads per core, where
the default truth runs every thread at its type's fully loaded per-vCPU speed), per-job serial
fractions and thread counts, memory-bound jobs that scale weakly with CPU speed, run-to-run noise
and outlier runs, on the real us-east-1 prices of the bundled catalog. 85% of jobs have 3-8 runs
of history (imported into a real store with `provisioner history import`); they are asked for the
way people ask:
  label        `ec2 && vcpu=V && mem=M && timeout=...` (declared with headroom)
  job          `--job J --timeout T` alone, no label (as `run --remote --job` does)
  ec2          the plain managed atom `ec2` (+ `--timeout`), and `ec2 && spot`
  peak-over    a label whose `mem=` is below what the job really peaks at (some ran out of memory)
  cold-label   no history, a label with vcpu=/mem=/timeout=
  cold-filters no history, `--filter vcpu>=V --filter memory>=M [--filter arch=x86_64]` + `--timeout`
Every plan goes through `plan_entry`, the planner's public entry behind `provisioner plan` (one
place to swap), and a sample is checked against `provisioner plan --json` run as a subprocess.
The catalog universe is the types whose true speed is known: the benchmark writes it as a refreshed
catalog cache, so the in-process entry and the console script read the very same offers.

Strategies, priced with the same cost function on the *true* runtime (per-second billing, boot,
expected spot rework, root volume):
  plan    provisioner's choice (policy deadline, autotune on)
  batch   AWS Batch best fit: the cheapest *spot* offer meeting the job's declaration (its Batch job
          definition's vCPU and memory, also for jobs whose request to us names none; the named market
          when the request names one), among Batch's default types (current generation, not burstable)
  oracle  knows the true runtime and memory: the cheapest offer meeting the target and the memory
A miss (out of memory, or past the timeout) costs what it really does: the wasted run (until the
kill) plus a rerun on Batch's choice for the job's true memory. Targets: total <= 0.50x Batch,
jobs with history <= 1.10x the oracle, jobs without history <= 1.00x Batch, misses <= 1%.

Usage: bench/selection.py [--seed N | --seeds N|LIST] [--jobs N] [--speed-runs N] [--gaps] [--worst N]
                          [--truth coremark|geekbench-coremark|coremark-smt] [--scaled-margin M]
                          [--rounds N]
  --seeds 1-10,20261205   every seed's figures, then a table per seed with the worst and the median
  --scaled-margin 0.10    the site's `defaults.scaled_margin`: what a smaller margin saves and what its
                          deadline misses cost (each miss is charged the wasted run and a rerun)
  --rounds 3              daily use: after each round every job runs on its plan, the run (or the
                          failed run of a miss) joins its history, and the workload is planned again;
                          figures per round (r2 ..., r3 ...) against the same Batch and oracle choices
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from provisioner import paths, planner  # noqa: E402
from provisioner.catalog import load_catalog  # noqa: E402
from provisioner.catalog.load import CACHE_META, bundled_dir  # noqa: E402
from provisioner.catalog.model import ON_DEMAND  # noqa: E402
from provisioner.cli.context import Context  # noqa: E402
from provisioner.config import DEFAULTS  # noqa: E402
from provisioner.errors import ProvisionerError  # noqa: E402

from selection_gaps import breakdown, gap_breakdown, many_seeds, parse_seeds  # noqa: E402  (bench/)
from selection_workload import (REGION, SITE_ARCH, Job, Request, batch_fit, charge,  # noqa: E402  (bench/)
                                coremark_smt_truth, coremark_truth, failed_record, history_records,
                                late, make_jobs, oracle, request, run_record, set_timeouts, truth_scores)

DEFAULT_SEED = 20261205
TRUTHS = {"coremark": coremark_truth, "geekbench-coremark": truth_scores, "coremark-smt": coremark_smt_truth}
TARGETS = {"total/batch": 0.50, "history/oracle": 1.10, "cold/batch": 1.00, "misses": 0.01}


def plan_entry(ctx: Context, request: "Request") -> planner.PlanResult:
    """The planner's public entry, exactly as `provisioner plan` calls it."""
    return planner.plan_job(ctx, label=request.label, filters=list(request.filters), job=request.job,
                            timeout=request.timeout)


def plan_or_none(ctx: Context, job: Job, request: "Request") -> planner.PlanResult | None:
    """`plan_entry`, or None where it has no plan (the user then falls back to Batch's choice)."""
    try:
        return plan_entry(ctx, request)
    except ProvisionerError as exc:
        print(f"  no plan for {job.name} {request}: {exc}")
        return None


def write_catalog_cache(known: set[str]) -> None:
    """The universe as a refreshed catalog cache: the bundled specs of the types with a true speed."""
    cache = paths.catalog_cache()
    cache.mkdir(parents=True, exist_ok=True)
    with open(bundled_dir() / "aws_instances.csv", newline="") as src, \
            open(cache / "aws_instances.csv", "w", newline="") as dst:
        reader, writer = csv.reader(src), csv.writer(dst)
        header = next(reader)
        writer.writerow(header)
        col = header.index("instance_type")
        writer.writerows(r for r in reader if r[col] in known)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (cache / CACHE_META).write_text(json.dumps({"fetched_at": stamp}))


def run_cli(args: list[str], env: dict) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "provisioner")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env)


@dataclass
class Outcome:
    cost: float
    miss: str | None
    choice: str
    late: bool = False      # past the runtime target, within the timeout (`selection_workload.late`)


@dataclass
class Results:
    by: dict[str, dict[str, Outcome]] = field(default_factory=dict)   # "pass:strategy" -> job -> outcome

    def add(self, key: str, job: str, outcome: Outcome) -> None:
        self.by.setdefault(key, {})[job] = outcome

    def total(self, key: str, names: set[str]) -> tuple[float, int]:
        rows = [self.by[key][n] for n in names]
        return sum(r.cost for r in rows), sum(1 for r in rows if r.miss)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--seeds", type=parse_seeds, default=None, metavar="SPEC",
                    help="run several seeds and print per-seed figures, the worst and the median: "
                         "a count N (seeds 1..N) or a list such as 1-10,20261205")
    ap.add_argument("--jobs", type=int, default=240)
    ap.add_argument("--speed-runs", type=int, default=15)
    ap.add_argument("--sample", type=int, default=12, help="plans checked against `provisioner plan --json`")
    ap.add_argument("--worst", type=int, default=0, help="print the N jobs with history farthest above the oracle")
    ap.add_argument("--gaps", action="store_true",
                    help="break the cost above the oracle of jobs with history down by cause")
    ap.add_argument("--truth", choices=TRUTHS, default="coremark",
                    help="the true runtimes' scores: CoreMark alone, Geekbench 6 single-core with "
                         "CoreMark all-core, or CoreMark on EC2's cores (a thread has a core to itself "
                         "on a hyper-threaded type while cores are idle)")
    ap.add_argument("--rounds", type=int, default=1, metavar="N",
                    help="plan the workload N times: before each later round every job runs where the "
                         "last round's plan put it and the run joins its history (a miss as the failed "
                         "run it was), as in daily use")
    ap.add_argument("--scaled-margin", type=float, default=None, metavar="M",
                    help="the site's defaults.scaled_margin (default: the built-in default): the cost "
                         "against the deadline misses of a smaller or larger margin")
    args = ap.parse_args()
    if args.seeds:
        return many_seeds(args, run_seed, TARGETS)
    got = run_seed(args, args.seed)
    if args.speed_runs:
        speed(args, *got["speed"])
    return 0 if got["ok"] else 1


def run_seed(args, seed: int) -> dict:
    """One workload: plan it, charge it on true runtimes, print the figures; returns them."""
    margin = DEFAULTS["defaults"]["scaled_margin"] if args.scaled_margin is None else args.scaled_margin
    print(f"seed {seed}, {args.jobs} jobs, planner scores {DEFAULTS['defaults']['score_source']}, "
          f"truth {args.truth}, scaled_margin {margin:g}")
    rng = random.Random(seed)

    tmp = Path(tempfile.mkdtemp(prefix="bench-selection-"))
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp / "cache"), XDG_STATE_HOME=str(tmp / "state"),
               XDG_CONFIG_HOME=str(tmp / "config"))
    os.environ.update({k: env[k] for k in ("XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME")})
    # The site the workload runs at: EC2 with images for both architectures and `defaults.arch: any`
    # (Batch and the oracle may pick Graviton too: the planner must be allowed the same offers).
    (tmp / "config" / "provisioner").mkdir(parents=True)
    (tmp / "config" / "provisioner" / "config.yaml").write_text(
        f"cloud: ec2\nregions: [{REGION}]\ndefaults: {{arch: {SITE_ARCH}, scaled_margin: {margin!r}}}\n"
        f"ec2:\n  images: {{{REGION}: {{x86_64: ami-00000000000000001, arm64: ami-00000000000000002}}}}\n")
    full = load_catalog()
    vcpus = {o.instance_type: o.vcpu for o in full.offers}
    scores = TRUTHS[args.truth](vcpus)
    # The universe is the types whose true speed the benchmark knows; every strategy chooses in it.
    write_catalog_cache(set(scores))
    catalog = load_catalog()
    print(f"types with a true speed: {len({o.instance_type for o in catalog.offers})} of "
          f"{len({o.instance_type for o in full.offers})} ({catalog.source})")
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
        raise SystemExit(f"history import failed: {imp.stderr}")
    print("request forms: " + ", ".join(f"{f} {n}" for f, n in sorted(Counter(j.form for j in jobs).items())))

    ctx = Context(SimpleNamespace(config=None, history=str(hist)))
    results, failed, chosen, planned = Results(), Counter(), {}, {}
    for tag in ("any", "od"):
        for job in jobs:
            req = request(job, ondemand=tag == "od")
            result = plan_or_none(ctx, job, req)
            p = result.plan.chosen.offer if result else None
            if p is None:
                failed[tag] += 1
            batch = batch_fit(job, offers, req.markets)
            picks = {"batch": batch, "oracle": oracle(job, offers, scores, req.markets), "plan": p or batch}
            for name, o in picks.items():
                cost, miss = charge(job, o, req.markets, offers, scores)
                results.add(f"{tag}:{name}", job.name, Outcome(cost, miss, f"{o.instance_type} {o.market}",
                                                               not miss and late(job, o, scores)))
            if tag == "any" and p is not None:
                chosen[job.name] = (req, p)
                planned[job.name] = result

    def line(title: str, names: set[str], tag: str = "any") -> tuple[float, float]:
        plan_c, plan_m = results.total(f"{tag}:plan", names)
        b_c, b_m = results.total(f"{tag}:batch", names)
        o_c, o_m = results.total(f"{tag}:oracle", names)
        print(f"{title:<30} {len(names):>4}  ${plan_c:9.2f} {plan_m:>3}  ${b_c:9.2f} {b_m:>3}  ${o_c:9.2f} {o_m:>3}"
              f"  {plan_c / b_c:6.3f}  {plan_c / o_c:6.3f}")
        return plan_c / b_c, plan_c / o_c

    everyone = {j.name for j in jobs}
    with_h = {j.name for j in jobs if j.history_runs}
    cold = everyone - with_h
    print("\nTotal cost of the workload on true runtimes (misses charged the wasted run + a rerun on Batch's choice):")
    print(f"{'':<30} {'jobs':>4}  {'plan':>10} {'miss':>3}  {'batch':>10} {'miss':>3}  {'oracle':>10} {'miss':>3}"
          f"  {'plan/b':>6}  {'plan/o':>6}")
    total_b, _ = line("all jobs", everyone)
    _, hist_o = line("jobs with history", with_h)
    cold_b, _ = line("jobs without history", cold)
    for form in ("label", "job", "ec2", "ec2-spot", "peak-over", "cold-label", "cold-filters"):
        names = {j.name for j in jobs if j.form == form}
        if names:
            line(f"  {form}", names)
    line("on-demand only, all jobs", everyone, "od")
    by_plan, by_batch = results.by["any:plan"], results.by["any:batch"]
    worse = sorted(n for n in cold if by_plan[n].cost > by_batch[n].cost * 1.0001)
    worst_ratio = max((by_plan[n].cost / by_batch[n].cost for n in worse), default=1.0)
    saved = sum(by_batch[n].cost - by_plan[n].cost for n in cold)
    over = sum(by_plan[n].cost - by_batch[n].cost for n in worse)
    print(f"jobs without history where plan cost more than Batch: {len(worse)} of {len(cold)} "
          f"(at most {worst_ratio:.3f}x, ${over:.2f} over in all; ${saved:.2f} saved on the cold jobs in all)")
    misses = Counter(r.miss for r in by_plan.values() if r.miss)
    n_miss = sum(misses.values())
    print(f"plan misses: {n_miss} of {len(jobs)} ({n_miss / len(jobs):.1%}) {dict(misses)}; "
          f"no plan: {failed['any']} (any market), {failed['od']} (on-demand)")
    n_late = sum(by_plan[n].late for n in with_h)
    print(f"plans of jobs with history past the runtime target (within the timeout: not a miss, but "
          f"cheaper than the oracle, which keeps to the target, may be): {n_late} of {len(with_h)}")
    got = {"total/batch": total_b, "history/oracle": hist_o, "cold/batch": cold_b, "misses": n_miss / len(jobs),
           "late": n_late / len(with_h), "cold>batch": len(worse) / len(cold), "cold over $": over}
    print("targets: " + "; ".join(f"{k} {got[k]:.3f} <= {v:.2f} {'PASS' if got[k] <= v else 'FAIL'}"
                                  for k, v in TARGETS.items()))

    by_job = {j.name: j for j in jobs}
    gaps = sorted(with_h, key=lambda n: results.by["any:oracle"][n].cost - results.by["any:plan"][n].cost)
    for n in gaps[:args.worst]:
        j, pl, orc = by_job[n], results.by["any:plan"][n], results.by["any:oracle"][n]
        print(f"  {n} {j.form:<9} threads {j.threads:>2} serial {j.serial:.2f} mem {j.mem_gib:6.2f} "
              f"{'membound ' if j.memory_bound else ''}timeout {j.timeout_s:.0f}s: plan {pl.choice} ${pl.cost:.3f}"
              f"{' ' + pl.miss if pl.miss else ''}, oracle {orc.choice} ${orc.cost:.3f}")
    gap_rows = gap_breakdown(with_h, results.by, planned, catalog, ctx, args.gaps, REGION)
    # the console script gives the same answers as the in-process entry
    sample = rng.sample(sorted(chosen), min(args.sample, len(chosen)))
    same = 0
    for name in sample:
        req, p = chosen[name]
        out = run_cli(req.argv(hist), env)
        got_cli = json.loads(out.stdout) if out.stdout.strip() else {}
        if (got_cli.get("instance_type"), got_cli.get("market")) == (p.instance_type, p.market):
            same += 1
        else:
            print(f"  disagreement on {name}: in-process {p.instance_type} {p.market}, console {out.stdout[:200]}"
                  f"{out.stderr[-300:]}")
    print(f"console script agrees with the in-process entry on {same} of {len(sample)} sampled jobs "
          f"(forms: {', '.join(sorted({request(j).label and 'label' or 'no-label' for j in jobs if j.name in sample}))})")
    for r in range(2, args.rounds + 1):
        got.update(later_round(r, seed, jobs, offers, scores, hist, env, ctx, results))
    return {"figures": got, "ok": all(got[k] <= v for k, v in TARGETS.items()),
            "gaps": breakdown(gap_rows), "speed": (jobs, hist, env, ctx)}


def later_round(r: int, seed: int, jobs: list[Job], offers, scores, hist: Path, env: dict, ctx: Context,
                results: Results) -> dict[str, float]:
    """Round r: each job ran where round r-1's plan put it (that run is now in its history, a miss as
    the failed run), and the workload is planned again. Batch's and the oracle's choices do not
    change; the figures compare round r's plans with them."""
    rng = random.Random(f"{seed}-round-{r}")
    by_key = {(o.instance_type, o.market): o for o in offers}
    last = results.by[f"r{r - 1}:plan" if r > 2 else "any:plan"]
    jsonl = hist.parent / f"round-{r}.jsonl"
    start = f"2026-11-{r:02d}T00:00:00Z"
    with open(jsonl, "w") as fh:
        for job in jobs:
            out = last[job.name]
            o = by_key[tuple(out.choice.split())]
            build = f"round-{r - 1}"
            rec = (failed_record(job, o, out.miss, build, start) if out.miss
                   else run_record(job, o, scores, rng, build, start))
            if rec["duration_s"] > job.timeout_s:    # a stuck run: the runner stopped it at the timeout
                rec = failed_record(job, o, "deadline", build, start)
            fh.write(json.dumps(rec) + "\n")
    imp = run_cli(["history", "import", str(jsonl), "--history", str(hist)], env)
    if imp.returncode != 0:
        raise SystemExit(f"history import failed: {imp.stderr}")
    for job in jobs:
        req = request(job)
        result = plan_or_none(ctx, job, req)
        o = result.plan.chosen.offer if result else batch_fit(job, offers, req.markets)
        cost, miss = charge(job, o, req.markets, offers, scores)
        results.add(f"r{r}:plan", job.name, Outcome(cost, miss, f"{o.instance_type} {o.market}",
                                                    not miss and late(job, o, scores)))
    everyone = {j.name for j in jobs}
    with_h = {j.name for j in jobs if j.history_runs}
    cold = everyone - with_h

    def against(names: set[str], strategy: str) -> float:
        return results.total(f"r{r}:plan", names)[0] / results.total(f"any:{strategy}", names)[0]

    got = {f"r{r} total/batch": against(everyone, "batch"), f"r{r} history/oracle": against(with_h, "oracle"),
           f"r{r} cold/batch": against(cold, "batch"), f"r{r} cold/oracle": against(cold, "oracle"),
           f"r{r} misses": results.total(f"r{r}:plan", everyone)[1] / len(jobs),
           f"r{r} late": sum(results.by[f"r{r}:plan"][n].late for n in with_h) / len(with_h)}
    print(f"round {r} (the jobs' round-{r - 1} runs recorded, then planned again): " +
          "; ".join(f"{k.split(' ', 1)[1]} {v:.3f}" for k, v in got.items()) +
          " (cold: the jobs that had no history in round 1)")
    return got


def speed(args, jobs: list[Job], hist: Path, env: dict, ctx: Context) -> None:
    busy = max(jobs, key=lambda j: j.history_runs)
    argv = request(busy).argv(hist)
    # an installed package has its bytecode compiled; PYTHONDONTWRITEBYTECODE (set on some CI
    # machines) would make every run compile ~100 modules again (~130 ms here)
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    run_cli(argv, env)  # warm the catalog cache and the bytecode, as any second run finds them

    def median_wall(cmd: list[str]) -> float:
        times = []
        for _ in range(args.speed_runs):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, env=env)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    base = median_wall([sys.executable, "-c", "pass"])
    wall = median_wall([str(Path(sys.executable).parent / "provisioner"), *argv])
    print(f"\nspeed: `provisioner plan --json` with {busy.history_runs} runs of history over the full catalog: "
          f"median {wall * 1000:.0f} ms; `python3 -c pass` {base * 1000:.0f} ms; ratio {wall / base:.1f}x "
          f"(target < 500 ms)")
    timings = []
    for _ in range(30):
        t = time.perf_counter()
        plan_entry(ctx, request(busy))
        timings.append(time.perf_counter() - t)
    print(f"speed: the in-process entry (history read, estimate, select): median "
          f"{statistics.median(timings) * 1000:.1f} ms (target < 50 ms)")


if __name__ == "__main__":
    raise SystemExit(main())
