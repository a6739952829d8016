"""For bench/selection.py: the generated workload and the model of its *true* runtimes (CoreMark
and Geekbench 6 scores, serial fractions, thread counts, memory-bound jobs, noise), the requests
people make for it, its history records, and the two strategies the planner is compared with
(AWS Batch's best fit and the oracle), priced with the planner's own cost function.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import math
import random
import statistics
from dataclasses import dataclass
from pathlib import Path

from provisioner.catalog.load import bundled_dir
from provisioner.catalog.model import ON_DEMAND, SPOT, Offer
from provisioner.config import DEFAULTS
from provisioner.estimate import MEM_OVERHEAD_GIB
from provisioner.selection import expected_cost

Score = tuple[float, float, int]   # a type's true (single-thread, all-thread, cores) speed
GIB = 1024 ** 3
BOOT_S, DISK_GIB = 90.0, 30.0
REGION = "us-east-1"
HISTORY_TYPES = ["m5.2xlarge", "m5.4xlarge", "c5.4xlarge", "r5.2xlarge", "r5.4xlarge", "m6i.4xlarge",
                 "m5.8xlarge", "r5.8xlarge", "c5.9xlarge", "m5.xlarge", "r5.12xlarge", "r5.16xlarge"]
TARGET_SHARE = DEFAULTS["defaults"]["runtime_target"]   # the runtime target: this share of the timeout
HISTORY_FORMS = [("label", 0.45), ("job", 0.2), ("ec2", 0.08), ("ec2-spot", 0.07), ("peak-over", 0.2)]


# ---- the truth: CoreMark (per thread, or on EC2's cores), or Geekbench 6 single-core with CoreMark ----

def coremark_truth(vcpus: dict[str, int]) -> dict[str, Score]:
    """type -> (per-thread CoreMark, all-thread CoreMark, vCPUs), scaled so a median core is ~1500."""
    rows = [r for r in csv.DictReader(open(bundled_dir() / "cpu_scores.csv"))
            if r["source"] == "ec2instances-coremark" and r["multi_core_score"]]
    raw = {r["instance_type"]: (float(r["multi_core_score"]), int(r["threads"] or vcpus.get(r["instance_type"], 1)))
           for r in rows}
    scale = 1500 / statistics.median(m / n for m, n in raw.values())
    return {t: (m / n * scale, m * scale, vcpus.get(t, n)) for t, (m, n) in raw.items()}


SMT_YIELD = 1.25   # a core's work with both of its hyper-threads busy, against one thread alone


def threads_per_core() -> dict[str, int]:
    """type -> hardware threads per core: EC2's DefaultThreadsPerCore (DescribeInstanceTypes), as
    moto bundles it (a test dependency; the planner reads hyper-threading from stress-ng instead)."""
    spec = importlib.util.find_spec("moto")
    if spec is None or spec.origin is None:
        raise SystemExit("--truth coremark-smt needs moto (pip install -e '.[test]')")
    path = Path(spec.origin).parent / "ec2" / "resources" / "instance_types.json.gz"
    with gzip.open(path) as fh:
        types = json.load(fh)
    return {t: int(v["VCpuInfo"].get("DefaultThreadsPerCore") or 1) for t, v in types.items()}


def coremark_smt_truth(vcpus: dict[str, int]) -> dict[str, Score]:
    """`coremark_truth` on EC2's cores: on a type with two threads per core a thread with a core
    to itself runs at CoreMark all-thread / (cores x SMT_YIELD), not at the per-thread average."""
    tpc = threads_per_core()
    out = {}
    for t, (per, multi, n) in coremark_truth(vcpus).items():
        cores = max(1, n // tpc.get(t, 1))
        out[t] = (multi / (cores * SMT_YIELD) if cores < n else per, multi, cores)
    return out


def throughput(score: Score, k: int, n: int) -> float:
    """What k busy threads do together on a type of n vCPUs: a core each at the single-thread
    speed while there are idle cores, then up to the all-thread figure with every vCPU busy."""
    single, multi, cores = score
    k = min(k, n)
    if cores >= n:
        return multi * k / n
    if k <= cores:
        return single * k
    return single * cores + (multi - single * cores) * (k - cores) / (n - cores)


def truth_scores(vcpus: dict[str, int]) -> dict[str, Score]:
    """type -> (single, all-core, vCPUs): Geekbench 6 single-core, CoreMark all-thread throughput.

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
            out[t] = (gb.get(t, m / n * ratio), m * ratio, vcpus.get(t, n))
    return out


@dataclass
class Job:
    name: str
    form: str
    work: float            # single-core seconds on a Geekbench-1000 core
    serial: float          # share of the work that runs on one thread
    threads: int
    mem_gib: float         # true peak
    memory_bound: bool
    declared_vcpu: int     # what the job's Batch job definition (and a label, where it has one) asks
    declared_mem: int
    x86_only: bool
    history_runs: int
    timeout_s: float = 0.0


@dataclass(frozen=True)
class Request:
    label: str | None
    filters: tuple[str, ...] = ()
    job: str | None = None
    timeout: str | None = None
    markets: tuple[str, ...] = (SPOT, ON_DEMAND)

    def argv(self, history: Path) -> list[str]:
        out = ["plan", "--json", "--history", str(history)]
        out += ["--label", self.label] if self.label is not None else []
        for f in self.filters:
            out += ["--filter", f]
        out += ["--job", self.job] if self.job else []
        out += ["--timeout", self.timeout] if self.timeout else []
        return out


def request(job: Job, ondemand: bool = False) -> Request:
    """How the job asks provisioner (ondemand: the same request restricted to on-demand)."""
    t = f"{int(job.timeout_s)}s"
    sized = [f"vcpu={job.declared_vcpu}", f"mem={job.declared_mem}"]
    arch = ["arch=x86_64"] if job.x86_only else []
    market = ["ondemand"] if ondemand else []
    if job.form in ("label", "peak-over", "cold-label"):
        label = " && ".join(["ec2", *sized, f"timeout={t}", *arch, *market])
        return Request(label, job=job.name, markets=_markets(ondemand))
    if job.form == "cold-filters":
        return Request(None, (f"vcpu>={job.declared_vcpu}", f"memory>={job.declared_mem}", *arch, *market),
                       job.name, t, _markets(ondemand))
    if job.form == "job":
        return Request(None, tuple(market), job.name, t, _markets(ondemand))
    if job.form == "ec2-spot" and not ondemand:
        return Request("ec2 && spot", (), job.name, t, (SPOT,))
    return Request(" && ".join(["ec2", *market]), (), job.name, t, _markets(ondemand))


def _markets(ondemand: bool) -> tuple[str, ...]:
    return (ON_DEMAND,) if ondemand else (SPOT, ON_DEMAND)


def make_jobs(rng: random.Random, n: int) -> list[Job]:
    jobs = []
    forms, weights = zip(*HISTORY_FORMS)
    for i in range(n):
        threads = rng.choice([1, 1, 1, 2, 4, 4, 8, 8, 16, 32])
        serial = 1.0 if threads == 1 else rng.uniform(0.02, 0.5)
        mem = min(max(round(rng.lognormvariate(math.log(4), 0.9), 2), 0.3), 300)
        declared_vcpu = min(64, 2 ** math.ceil(math.log2(max(threads, 1) * rng.uniform(1.0, 4.0))))
        declared_mem = min(512, 2 ** math.ceil(math.log2(mem * rng.uniform(1.5, 6.0) + 1)))
        declared_mem = max(declared_mem, declared_vcpu * 2)  # people ask in instance-shaped pairs
        work = rng.lognormvariate(math.log(1.5 * 3600), 1.0) * max(1.0, threads * 0.5)
        cold = rng.random() < 0.15
        form = rng.choice(["cold-label", "cold-filters"]) if cold else rng.choices(forms, weights)[0]
        if form == "peak-over":   # the declaration is below the true peak: half to 90% of it
            mem = max(mem, 3.0)
            declared_mem = max(1, int(mem * rng.uniform(0.5, 0.9)))
        history = 0 if cold else rng.randint(3, 8)
        x86 = rng.random() < 0.3 and form not in ("job", "ec2", "ec2-spot")
        jobs.append(Job(f"job-{i:03d}", form, work, serial, threads, mem, rng.random() < 0.2,
                        declared_vcpu, declared_mem, x86, history))
    return jobs


SITE_ARCH = "any"         # the bench site's defaults.arch (its config below has images for both)


def arch_ok(job: Job, o: Offer) -> bool:
    """The architecture rule the planner applies: the job's, else the config's default (if any)."""
    wanted = "x86_64" if job.x86_only else SITE_ARCH
    return wanted in (None, "any") or o.arch == wanted


def batch_fit(job: Job, offers: list[Offer], markets: tuple[str, ...], mem: float | None = None) -> Offer:
    """AWS Batch's best fit: the cheapest spot offer (else the named market) meeting the declaration."""
    market = SPOT if SPOT in markets else ON_DEMAND
    need = job.declared_mem if mem is None else mem
    return min((o for o in offers if o.market == market and o.vcpu >= job.declared_vcpu and o.memory_gib >= need
                and o.gpu_count == 0 and not o.burstable and o.current_generation and arch_ok(job, o)),
               key=lambda o: (o.price, o.instance_type))


def set_timeouts(jobs: list[Job], offers: list[Offer], scores, rng: random.Random) -> None:
    """People set the timeout from what they saw on the kind of machine they declared."""
    for job in jobs:
        fits = [o for o in offers if o.market == ON_DEMAND and o.vcpu >= job.declared_vcpu
                and o.memory_gib >= max(job.declared_mem, job.mem_gib + 1) and o.gpu_count == 0
                and o.instance_type in scores]
        usual = min((o for o in fits if o.family in ("m5", "m6i", "r5", "c5", "r6i")), key=lambda o: o.price,
                    default=None) or min(fits, key=lambda o: o.price)
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
    text = requested(job)
    for i in range(job.history_runs):
        o = offers_by_type[rng.choice(favourites)]
        records.append(run_record(job, o, scores, rng, str(i + 1), f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"))
    if job.form == "peak-over" and rng.random() < 0.5:
        # the run on what was declared: killed for memory at the type's limit
        small = min((o for o in offers_by_type.values() if o.memory_gib >= job.declared_mem and o.gpu_count == 0
                     and o.instance_type in scores and o.memory_gib < job.mem_gib), key=lambda o: o.price, default=None)
        if small is not None:
            records.append({"job": job.name, "build": "0", "run_id": f"{job.name}-oom", "start": "2026-09-30T00:00:00Z",
                            "duration_s": 600.0, "exit_code": 137, "oom_killed": True, "instance_type": small.instance_type,
                            "region": REGION, "market": ON_DEMAND, "vcpu": small.vcpu,
                            "mem_max_bytes": int(small.memory_gib * 0.99 * GIB), "requested": text})
    return records


def requested(job: Job) -> str:
    """What a record says the job asked for (its label, else its filters)."""
    return request(job).label or " ".join(request(job).filters)


def run_record(job: Job, o: Offer, scores, rng: random.Random, build: str, start: str) -> dict:
    """The usage record of one successful run of the job on offer `o`: its true runtime with
    run-to-run noise (now and then a stuck run), CPU use and memory peak as the runner samples them."""
    clean = true_runtime(job, o, scores)
    avg, peak = cpu_profile(job, o, clean, scores)   # noise stretches both sections alike
    t = clean * rng.lognormvariate(0, 0.05)
    if rng.random() < 0.05:     # a stuck run, a bad node: longer, the same CPU work spread thinner
        stuck = rng.uniform(3, 6)
        t, avg = t * stuck, avg / stuck
    return {
        "job": job.name, "build": build, "run_id": f"{job.name}-{build}", "start": start,
        "duration_s": round(t, 1), "exit_code": 0, "instance_type": o.instance_type, "region": REGION,
        "market": o.market, "vcpu": o.vcpu,
        "cpu_avg_pct": round(min(avg * rng.uniform(0.95, 1.02), o.vcpu * 100), 1), "cpu_max_pct": round(peak, 1),
        "mem_max_bytes": int(job.mem_gib * rng.uniform(0.92, 1.0) * GIB), "requested": requested(job)}


def failed_record(job: Job, o: Offer, miss: str, build: str, start: str) -> dict:
    """The record of a run that missed: killed at the type's memory limit, or at the timeout."""
    base = {"job": job.name, "build": build, "run_id": f"{job.name}-{build}", "start": start,
            "instance_type": o.instance_type, "region": REGION, "market": o.market, "vcpu": o.vcpu,
            "requested": requested(job)}
    if miss == "oom":
        return {**base, "duration_s": 600.0, "exit_code": 137, "oom_killed": True,
                "mem_max_bytes": int(o.memory_gib * 0.99 * GIB)}
    return {**base, "duration_s": round(job.timeout_s, 1), "exit_code": 124, "timed_out": True,
            "mem_max_bytes": int(job.mem_gib * 0.95 * GIB)}


def charge(job: Job, o: Offer, markets: tuple[str, ...], offers: list[Offer], scores) -> tuple[float, str | None]:
    """(USD, miss kind): a miss costs the wasted run plus a rerun on Batch's choice for the true memory."""
    t = true_runtime(job, o, scores)
    need = job.mem_gib + MEM_OVERHEAD_GIB
    if o.memory_gib >= need and t <= job.timeout_s:
        return expected_cost(o, t, BOOT_S, DISK_GIB), None
    miss = "oom" if o.memory_gib < need else "deadline"
    wasted = expected_cost(o, min(t, job.timeout_s), BOOT_S, DISK_GIB)
    rerun = batch_fit(job, offers, markets, mem=max(job.declared_mem, need))
    return wasted + expected_cost(rerun, min(true_runtime(job, rerun, scores), job.timeout_s), BOOT_S, DISK_GIB), miss


def late(job: Job, o: Offer, scores) -> bool:
    """Whether the job's true runtime on `o` is past its runtime target (but maybe not its timeout):
    no miss, but a plan the oracle, which keeps to the target, would not have made."""
    return true_runtime(job, o, scores) > job.timeout_s * TARGET_SHARE


def oracle(job: Job, offers: list[Offer], scores, markets: tuple[str, ...]) -> Offer:
    best = None
    for o in offers:
        if o.market not in markets or o.gpu_count or o.burstable or not arch_ok(job, o):
            continue
        if o.memory_gib < job.mem_gib + MEM_OVERHEAD_GIB:
            continue
        t = true_runtime(job, o, scores)
        if t > job.timeout_s * TARGET_SHARE:
            continue
        c = expected_cost(o, t, BOOT_S, DISK_GIB)
        if best is None or c < best[0]:
            best = (c, o)
    return best[1]


def true_runtime(job: Job, offer: Offer, scores: dict[str, Score]) -> float:
    score = scores.get(offer.instance_type)
    single = score[0] if score else 0.0
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
    parallel_t = job.work * (1 - job.serial) * 1000 / throughput(score, k, n) if job.serial < 1 else 0.0
    return serial_t + parallel_t


def cpu_profile(job: Job, offer: Offer, t: float, scores) -> tuple[float, float]:
    """(avg %, max %) a run would show: 100 per busy vCPU."""
    single = scores[offer.instance_type][0]
    k = min(job.threads, offer.vcpu, 4 if job.memory_bound else 10 ** 6)
    if job.memory_bound:   # the serial section's share of the wall time (`true_runtime`'s split)
        serial_t = t * job.serial / (job.serial + (1 - job.serial) / k)
    else:
        serial_t = job.work * job.serial * 1000 / single
    serial_t = min(serial_t, t)
    busy = (serial_t * 1 + (t - serial_t) * k) / t
    return busy * 100, k * 100
