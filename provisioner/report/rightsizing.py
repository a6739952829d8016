"""Right-sizing: what each job asked for, or paid for, against what it used.

The basis a job is measured against is its newest run's `requested_vcpu` / `requested_mem_gib` where
recorded, else the instance type that run paid for (its vCPUs and memory from the catalog). The
suggestion follows the planner's rules (selection.autotune): memory = the peak of successful runs
(a run killed for memory counts at 1.5x what it reached) x (1 + headroom) + 0.5 GiB, where the
headroom is the configured one or, with 5 or more steady peaks, 3 standard deviations (at least
10%); here rounded up to a whole GiB for a label. vCPUs = the median of the runs' CPU peaks in whole
busy vCPUs (100% = one), with 15 points of slack.

With a catalog, the job's last instance type is compared with the cheapest current-generation,
non-burstable type of the same architecture and GPUs that holds the suggestion, in the same region
and market; the saving per run assumes the same runtime (the job keeps no more vCPUs busy than the
suggestion has). The runs' own price (or cost) is used where recorded, else the catalog's.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Iterable

from provisioner.catalog.model import ON_DEMAND, Catalog, Offer
from provisioner.estimate import Estimate, estimate
from provisioner.plan_settings import PeakSpread
from provisioner.records import succeeded
from provisioner.sizing import history_memory, site_peak_spread

DEFAULT_REGION = "us-east-1"


def planner_memory_gib(est: Estimate, headroom: float, site: PeakSpread | None = None) -> float | None:
    """The planner's memory floor for a job's estimate (sizing.history_memory's rule, the site's
    spread of peaks pooled as the planner pools it), in GiB."""
    return history_memory(est, headroom, site)[0]


class CheapestFit:
    """The cheapest offer that holds a size, among types the planner would choose unasked."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self._pools: dict[tuple, list[Offer]] = {}

    def paid(self, instance_type: str, region: str, market: str) -> Offer | None:
        """The offer a run paid for: its market's, else (for sizes) the type's other market."""
        other = ON_DEMAND if market != ON_DEMAND else "spot"
        return self.catalog.find(instance_type, region, market) or self.catalog.find(instance_type, region, other)

    def __call__(self, like: Offer, market: str, vcpu: int, mem_gib: float) -> Offer | None:
        key = (like.region, market, like.arch, like.gpu_count, like.gpu_model)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = sorted(
                (o for o in self.catalog.offers
                 if (o.region, o.market, o.arch, o.gpu_count, o.gpu_model) == key
                 and o.current_generation and not o.burstable and o.price),
                key=lambda o: (o.price, o.vcpu, o.memory_gib, o.instance_type))
        return next((o for o in pool if o.vcpu >= vcpu and o.memory_gib >= mem_gib), None)


def rightsizing(records: Iterable[dict], mem_headroom: float = 0.2, min_runs: int = 3,
                catalog: Catalog | None = None) -> list[dict]:
    """One row per job that has a basis (a request, or a type the catalog knows) or `min_runs`
    successful runs, by job name; `advice` says what to change where it would save money or
    where runs were killed for memory."""
    by_job: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_job[r["job"]].append(r)
    fit = CheapestFit(catalog) if catalog is not None else None
    site = site_peak_spread(r for runs in by_job.values() for r in runs)
    rows = []
    for job, runs in sorted(by_job.items()):
        row = _job_row(job, runs, mem_headroom, min_runs, fit, site)
        if row is not None:
            rows.append(row)
    return rows


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


def _job_row(job: str, runs: list[dict], headroom: float, min_runs: int,
             fit: CheapestFit | None, site: PeakSpread | None = None) -> dict | None:
    latest = runs[-1]  # oldest first: the newest declaration and type are the ones to change
    req_mem, req_vcpu = latest.get("requested_mem_gib"), latest.get("requested_vcpu")
    itype = latest.get("instance_type")
    region, market = latest.get("region") or DEFAULT_REGION, latest.get("market") or ON_DEMAND
    paid = fit.paid(itype, region, market) if fit is not None and itype else None
    basis = "requested" if req_mem is not None or req_vcpu is not None else "paid" if paid else None
    ok = [r for r in runs if succeeded(r)]
    if basis is None and len(ok) < min_runs:
        return None
    peaks = [r["mem_max_bytes"] / 1024 ** 3 for r in ok if r.get("mem_max_bytes")]
    ooms = [r for r in runs if r.get("oom_killed")]
    cpu_peaks = [r["cpu_max_pct"] for r in ok if r.get("cpu_max_pct") is not None]
    row = {"job": job, "runs": len(ok), "oom_kills": len(ooms), "basis": basis,
           "requested_mem_gib": req_mem, "peak_mem_gib": _r(max(peaks), 2) if peaks else None,
           "suggested_mem_gib": None, "requested_vcpu": req_vcpu,
           "peak_cpu_pct": _r(statistics.median(cpu_peaks), 1) if cpu_peaks else None,
           "suggested_vcpu": None, "instance_type": itype if paid else None,
           "market": market if paid else None, "region": region if paid else None,
           "paid_vcpu": paid.vcpu if paid else None, "paid_mem_gib": paid.memory_gib if paid else None,
           "paid_usd_per_hour": None, "suggested_type": None, "suggested_type_vcpu": None,
           "suggested_type_mem_gib": None, "suggested_usd_per_hour": None, "saving_usd_per_run": None,
           "advice": []}
    if len(ok) < min_runs:
        row["advice"].append(f"job {job} has {len(ok)} successful runs; advice needs {min_runs}")
        return row
    est = estimate(runs, lambda _type, _region: None)  # sizes only: no runtime model needed
    floor = planner_memory_gib(est, headroom, site)
    mem = math.ceil(floor) if floor is not None else None
    vcpu = est.useful_vcpu
    row["suggested_mem_gib"], row["suggested_vcpu"] = mem, vcpu
    if basis == "requested":
        row["advice"] += _request_advice(job, row, peaks, ooms, len(runs))
    if paid is not None and mem is not None and vcpu is not None:
        _type_advice(row, runs, ok, paid, fit(paid, market, vcpu, mem), ooms)
    return row


def _request_advice(job: str, row: dict, peaks: list[float], ooms: list[dict], n_runs: int) -> list[str]:
    out = []
    mem, req_mem, n = row["suggested_mem_gib"], row["requested_mem_gib"], row["runs"]
    if mem is not None and req_mem is not None and mem < req_mem and peaks:
        counted = f" ({len(ooms)} OOM kill{'s' if len(ooms) > 1 else ''} counted at 1.5x their peak)" \
            if ooms else ""
        out.append(f"job {job} asked for {req_mem:g} GiB and peaked at {max(peaks):.3g} GiB over {n} runs"
                   f"{counted}: use mem={mem}")
    elif mem is not None and req_mem is not None and mem > req_mem and ooms:
        out.append(f"job {job} asked for {req_mem:g} GiB and was OOM-killed in {len(ooms)} of {n_runs} runs: "
                   f"use mem={mem}")
    vcpu, req_vcpu = row["suggested_vcpu"], row["requested_vcpu"]
    if vcpu is not None and req_vcpu is not None and vcpu < req_vcpu:
        out.append(f"job {job} asked for {req_vcpu:g} vCPUs and kept {row['peak_cpu_pct'] / 100:.2g} busy "
                   f"at its median peak over {n} runs: use vcpu={vcpu}")
    return out


def _paid_price(runs: list[dict], paid: Offer, market: str) -> float:
    """The median hourly price the job's runs on that type and market recorded (their price, else
    their cost over their duration), else the catalog's."""
    prices = [r["price_usd_per_hour"] if r.get("price_usd_per_hour") is not None
              else r["cost_usd"] * 3600 / r["duration_s"]
              for r in runs if r.get("instance_type") == paid.instance_type
              and (r.get("market") or ON_DEMAND) == market
              and (r.get("price_usd_per_hour") is not None or (r.get("cost_usd") and r.get("duration_s")))]
    if prices:
        return statistics.median(prices)
    return paid.price if paid.market == market else (paid.ondemand_price if market == ON_DEMAND else paid.price)


def _type_advice(row: dict, runs: list[dict], ok: list[dict], paid: Offer, best: Offer | None,
                 ooms: list[dict]) -> None:
    """Fill the type columns and, where it saves money or OOM kills call for more, say which type."""
    if best is None:
        return
    on_type = [r["duration_s"] for r in ok if r.get("instance_type") == paid.instance_type]
    hours = statistics.median(on_type or [r["duration_s"] for r in ok]) / 3600
    price = _paid_price(runs, paid, row["market"])
    saving = (price - best.price) * hours if best.instance_type != paid.instance_type else None
    row.update(paid_usd_per_hour=_r(price), suggested_type=best.instance_type,
               suggested_type_vcpu=best.vcpu, suggested_type_mem_gib=best.memory_gib,
               suggested_usd_per_hour=_r(best.price), saving_usd_per_run=_r(saving))
    mem, vcpu, job = row["suggested_mem_gib"], row["suggested_vcpu"], row["job"]
    short = mem > paid.memory_gib
    if saving is None or (saving <= 0 and not short):
        return
    label = f"vcpu={vcpu} && mem={mem}" if vcpu > 1 else f"mem={mem}"
    what = f"{best.instance_type} ({best.vcpu} vCPU, {best.memory_gib:g} GiB, ${best.price:.4f}/h {row['market']})"
    money = f"saving ${saving:.4f}/run" if saving > 0 else f"costing ${-saving:.4f}/run more"
    ran = f"job {job} ran on {paid.instance_type} ({paid.vcpu} vCPU, {paid.memory_gib:g} GiB)"
    if short and ooms:
        how = f" and was OOM-killed in {len(ooms)} of {len(runs)} runs"
    elif row["basis"] == "paid":
        peak_mem = "no memory" if row["peak_mem_gib"] is None else f"{row['peak_mem_gib']:.3g} GiB"
        how = f" and peaked at {row['peak_cpu_pct'] / 100:.2g} vCPU and {peak_mem} over {row['runs']} runs"
    else:
        how = ""  # the request lines above already give the peaks
    row["advice"].append(f"{ran}{how}: {label} would fit {what}, {money}")
