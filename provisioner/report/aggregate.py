"""Pure aggregation of usage records into the sections of `provisioner report`.

Every function takes a list of records (dicts as in docs/contracts.md) and returns plain JSON-ready data;
nothing here reads a store, the clock or the config, so tests feed a handful of inline records.

Cost of a run: its `cost_usd`, else `price_usd_per_hour` x duration, else unknown (counted as 0 in
sums, and the run is counted in `runs_without_cost` so a total that misses runs says so).
"""

from __future__ import annotations

import gc
import statistics
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Iterable

from provisioner.catalog.model import ON_DEMAND, Catalog
from provisioner.records import succeeded
from provisioner.report.rightsizing import rightsizing

GIB = 1024 ** 3


@dataclass(frozen=True)
class ReportOptions:
    """What shapes a report besides the records. Defaults match the config's defaults."""

    top: int = 10                # rows in each ranked section
    mem_headroom: float = 0.2    # config defaults.mem_headroom: the same rule as autotune
    min_runs: int = 3            # config defaults.autotune_min_runs: advice needs this many runs


def run_cost(r: dict) -> float | None:
    """What the run cost in USD: `cost_usd`, else price x duration; None when unknown."""
    if r.get("cost_usd") is not None:
        return float(r["cost_usd"])
    if r.get("price_usd_per_hour") is not None:
        return r["price_usd_per_hour"] * r["duration_s"] / 3600
    return None


def ondemand_cost(r: dict, catalog: Catalog | None = None) -> tuple[float | None, bool]:
    """What the run would have cost on demand: `ondemand_usd_per_hour` x duration, else (with a
    catalog) the catalog's on-demand price of its type and region; and whether the catalog priced it."""
    if r.get("ondemand_usd_per_hour") is not None:
        return r["ondemand_usd_per_hour"] * r["duration_s"] / 3600, False
    if catalog is None or not r.get("instance_type"):
        return None, False
    region = r.get("region") or "us-east-1"
    offer = catalog.find(r["instance_type"], region, ON_DEMAND)
    hourly = offer.price if offer is not None else None
    if hourly is None:
        spot = catalog.find(r["instance_type"], region, "spot")
        hourly = spot.ondemand_price if spot is not None else None
    return (None, False) if hourly is None else (hourly * r["duration_s"] / 3600, True)


def incident_kinds(r: dict) -> list[str]:
    """The named ways a run ended badly: timeout, oom, interrupted, else failed (nonzero exit)."""
    kinds = [k for k, f in (("timeout", "timed_out"), ("oom", "oom_killed"),
                            ("interrupted", "interrupted")) if r.get(f)]
    if not kinds and r.get("exit_code") not in (0, None):
        kinds.append("failed")
    return kinds


_week_cache: dict[str, str] = {}


def week_of(start: str) -> str:
    """The Monday (ISO date) of the UTC week a start time falls in."""
    day = start[:10]
    week = _week_cache.get(day)
    if week is None:  # 100k records share a few hundred days: parse each day once
        d = date.fromisoformat(day)
        week = _week_cache[day] = (d - timedelta(days=d.weekday())).isoformat()
    return week


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(x, digits)


# -- sections --------------------------------------------------------------------------------------

def job_summaries(records: Iterable[dict]) -> list[dict]:
    """One row per job, the most expensive first (ties by name)."""
    acc: dict[str, dict] = {}
    durations: dict[str, list[float]] = defaultdict(list)
    for r in records:
        a = acc.get(r["job"])
        if a is None:
            a = acc[r["job"]] = {"job": r["job"], "team": None, "runs": 0, "succeeded": 0, "failed": 0,
                                 "timeouts": 0, "oom_kills": 0, "interruptions": 0, "cost_usd": 0.0,
                                 "runs_without_cost": 0, "hours": 0.0, "mem_peak_bytes": None}
        a["runs"] += 1
        a["team"] = r.get("team") or a["team"]  # records come oldest first: the newest team wins
        if succeeded(r):
            a["succeeded"] += 1
            durations[r["job"]].append(r["duration_s"])
        else:
            a["failed"] += 1
        a["timeouts"] += bool(r.get("timed_out"))
        a["oom_kills"] += bool(r.get("oom_killed"))
        a["interruptions"] += bool(r.get("interrupted"))
        cost = run_cost(r)
        if cost is None:
            a["runs_without_cost"] += 1
        else:
            a["cost_usd"] += cost
        a["hours"] += r["duration_s"] / 3600
        mem = r.get("mem_max_bytes")
        if mem is not None and (a["mem_peak_bytes"] is None or mem > a["mem_peak_bytes"]):
            a["mem_peak_bytes"] = mem
    rows = []
    for job, a in acc.items():
        d = durations.get(job)
        a["median_duration_s"] = statistics.median(d) if d else None
        a["cost_per_run_usd"] = _r(a["cost_usd"] / a["runs"])
        a["cost_usd"], a["hours"] = _r(a["cost_usd"]), _r(a["hours"], 3)
        rows.append(a)
    rows.sort(key=lambda a: (-a["cost_usd"], a["job"]))
    return rows


def top_builds(records: Iterable[dict], top: int) -> list[dict]:
    """The most expensive builds: runs of one (job, build) summed (a retried build is one build)."""
    acc: dict[tuple[str, str], dict] = {}
    for r in records:
        # A record without a build is its own build: group it by run id so it is not merged.
        k = (r["job"], r.get("build") or "#" + r["run_id"])
        a = acc.get(k)
        if a is None:
            a = acc[k] = {"job": r["job"], "build": r.get("build"), "runs": 0, "cost_usd": 0.0,
                          "hours": 0.0, "start": r["start"], "instance_types": []}
        a["runs"] += 1
        a["cost_usd"] += run_cost(r) or 0.0
        a["hours"] += r["duration_s"] / 3600
        t = r.get("instance_type")
        if t and t not in a["instance_types"]:
            a["instance_types"].append(t)
    rows = sorted(acc.values(), key=lambda a: (-a["cost_usd"], a["job"], a["start"]))[:top]
    for a in rows:
        a["cost_usd"], a["hours"] = _r(a["cost_usd"]), _r(a["hours"], 3)
    return rows


def top_memory(records: Iterable[dict], top: int) -> list[dict]:
    """Jobs by their highest memory peak, with the run that reached it."""
    best: dict[str, dict] = {}
    for r in records:
        mem = r.get("mem_max_bytes")
        if mem is None:
            continue
        b = best.get(r["job"])
        if b is None or mem > b["mem_peak_bytes"]:
            best[r["job"]] = {"job": r["job"], "mem_peak_bytes": mem, "mem_peak_gib": _r(mem / GIB, 2),
                              "build": r.get("build"), "run_id": r["run_id"],
                              "instance_type": r.get("instance_type")}
    return sorted(best.values(), key=lambda b: (-b["mem_peak_bytes"], b["job"]))[:top]


def weekly_costs(records: Iterable[dict]) -> list[dict]:
    """Cost per job per UTC week (weeks start on Monday), by week then job."""
    acc: dict[tuple[str, str], list[float]] = {}
    for r in records:
        k = (week_of(r["start"]), r["job"])
        a = acc.get(k)
        if a is None:
            a = acc[k] = [0, 0.0]
        a[0] += 1
        a[1] += run_cost(r) or 0.0
    return [{"week": w, "job": j, "runs": n, "cost_usd": _r(c)} for (w, j), (n, c) in sorted(acc.items())]


def spot_savings(records: Iterable[dict], catalog: Catalog | None = None) -> dict:
    """Spot runs priced both ways: paid (spot price x duration) against on-demand x duration.

    The on-demand price is the record's, else the catalog's for the run's type and region (counted in
    `ondemand_from_catalog`). Only spot runs with both prices count; interrupted runs are included,
    since their cost is part of what spot really cost.
    """
    paid = ondemand = 0.0
    runs = interrupted = from_catalog = 0
    by_job: dict[str, list[float]] = {}
    for r in records:
        if r.get("market") != "spot":
            continue
        od, priced = ondemand_cost(r, catalog)
        cost = r["price_usd_per_hour"] * r["duration_s"] / 3600 if r.get("price_usd_per_hour") is not None \
            else run_cost(r)
        if od is None or cost is None:
            continue
        runs += 1
        from_catalog += priced
        interrupted += bool(r.get("interrupted"))
        paid += cost
        ondemand += od
        j = by_job.setdefault(r["job"], [0, 0.0, 0.0])
        j[0] += 1
        j[1] += cost
        j[2] += od
    jobs = [{"job": job, "runs": n, "spot_cost_usd": _r(p), "ondemand_cost_usd": _r(o),
             "savings_usd": _r(o - p), "savings_pct": _r(100 * (o - p) / o, 1) if o else None}
            for job, (n, p, o) in by_job.items()]
    jobs.sort(key=lambda j: (-j["savings_usd"], j["job"]))
    return {"runs": runs, "interrupted": interrupted, "ondemand_from_catalog": from_catalog,
            "spot_cost_usd": _r(paid),
            "ondemand_cost_usd": _r(ondemand), "savings_usd": _r(ondemand - paid),
            "savings_pct": _r(100 * (ondemand - paid) / ondemand, 1) if ondemand else None, "jobs": jobs}


def incidents(records: Iterable[dict], top: int) -> dict:
    """Counts of timeouts, OOM kills, interruptions and other failures, and the newest of them."""
    totals = {"failed": 0, "timeout": 0, "oom": 0, "interrupted": 0}
    recent: list[dict] = []
    for r in records:
        kinds = incident_kinds(r)
        for k in kinds:
            totals[k] += 1
        if kinds:
            recent.append({"start": r["start"], "job": r["job"], "build": r.get("build"),
                           "run_id": r["run_id"], "exit_code": r["exit_code"], "kinds": kinds,
                           "instance_type": r.get("instance_type"), "market": r.get("market")})
    recent.sort(key=lambda i: (i["start"], i["run_id"]), reverse=True)
    return {"totals": totals, "recent": recent[:top]}


def totals(records: list[dict]) -> dict:
    """The period and the sums over it."""
    costs = [run_cost(r) for r in records]
    return {"runs": len(records), "jobs": len({r["job"] for r in records}),
            "first_start": records[0]["start"] if records else None,
            "last_start": records[-1]["start"] if records else None,
            "cost_usd": _r(sum(c for c in costs if c is not None)),
            "runs_without_cost": sum(c is None for c in costs),
            "hours": _r(sum(r["duration_s"] for r in records) / 3600, 3)}


@contextmanager
def gc_paused():
    """Pause the cyclic GC: aggregation makes ~1 container per record and no cycles, and with 100k
    records in memory every generation-2 pass walks them all (3x slower in the benchmark)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def build_report(records: list[dict], options: ReportOptions = ReportOptions(),
                 catalog: Catalog | None = None) -> dict:
    """Every section of the report over `records` (oldest first, as the store returns them).

    The catalog (optional) sizes and prices the instance types the runs paid for: right-sizing
    against the type where nothing was requested, and on-demand prices the records lack."""
    with gc_paused():
        return _build_report(records, options, catalog)


def _build_report(records: list[dict], options: ReportOptions, catalog: Catalog | None) -> dict:
    jobs = job_summaries(records)[:options.top]
    # Weekly rows for the ranked jobs only: jobs x weeks grows past reading quickly.
    shown = {j["job"] for j in jobs}
    weekly = [w for w in weekly_costs(records) if w["job"] in shown]
    return {"totals": totals(records), "jobs": jobs,
            "builds": top_builds(records, options.top), "memory": top_memory(records, options.top),
            "weekly": weekly, "spot": spot_savings(records, catalog),
            "incidents": incidents(records, options.top),
            "rightsizing": rightsizing(records, options.mem_headroom, options.min_runs, catalog)}
