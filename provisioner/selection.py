"""Instance selection (pure): candidates -> estimate runtime and cost -> rank by policy -> Plan.

Takes the catalog's offers, the job's requirements, its history estimate, the settings and the
blocked set; does no I/O. Every plan carries its reasons in the words the original tool used.
"""

from __future__ import annotations

import heapq
import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable

from provisioner.catalog.model import SPOT, Offer
from provisioner.errors import NoOfferError
from provisioner.estimate import Estimate
from provisioner.plan_settings import PlanSettings
from provisioner.requirements import Requirements, Sizing, always_true
from provisioner.sizing import autotune, implausible_reason
from provisioner.units import format_duration, format_gib

HOURS_PER_MONTH = 730.0
EBS_GP3_USD_PER_GIB_MONTH = 0.08
MIN_BILLED_S = 60
NEAR_TIE = 0.02              # predictions this close count as equal (costs cold, runtimes in a fallback)
TOP_CANDIDATES = 10          # a plan keeps the chosen offer and its runners-up
MAX_POOLS = 256              # narrowed offer lists a `pools` memo keeps (references, ~12 KB each)
# A runtime scaled from the job's runs on another size of the same family (the same CPU) needs no
# margin for benchmarks disagreeing, only for the split into serial and parallel work: this much,
# never more than the site's margin for runtimes scaled across CPUs.
FAMILY_MARGIN = 0.10


def family_margin(scaled_margin: float) -> float:
    return min(scaled_margin, FAMILY_MARGIN)


@dataclass(frozen=True)
class Candidate:
    offer: Offer
    duration_s: float           # the job's own runtime, boot excluded
    cost_usd: float             # boot and expected spot rework included
    score: float                # the job's effective score on this offer (default source units)
    measured: bool = True       # runtime from runs on this very type (else scaled by score)

    @property
    def perf_per_price(self) -> float:
        return self.score / self.offer.price if self.offer.price else 0.0

    def to_dict(self) -> dict:
        o = self.offer
        return {"instance_type": o.instance_type, "market": o.market, "region": o.region, "az": o.az,
                "vcpu": o.vcpu, "memory_gib": o.memory_gib, "gpu_count": o.gpu_count,
                "accel_model": o.accel_model, "accel_count": o.accel_count,
                "price_usd_per_hour": o.price, "ondemand_usd_per_hour": o.ondemand_price,
                "score": round(self.score, 2), "predicted_duration_s": round(self.duration_s, 1),
                "predicted_cost_usd": round(self.cost_usd, 6)}


@dataclass(frozen=True)
class Plan:
    chosen: Candidate
    candidates: tuple[Candidate, ...]
    autotuned: dict | None
    reasons: tuple[str, ...]
    sizing: Sizing | None = None
    disk_gib: float = 30
    node_labels: tuple[str, ...] = ()
    intent: Any = None          # the job's intent (provisioner/intent.py), set by the planner

    def to_dict(self) -> dict:
        out = self.chosen.to_dict()
        out["autotuned"] = self.autotuned
        out["reasons"] = list(self.reasons)
        out["candidates"] = [c.to_dict() for c in self.candidates]
        return out


def expected_cost(offer: Offer, duration_s: float, boot_s: float, disk_gib: float) -> float:
    """USD for one run: per-second billing with a 60 s minimum, boot, spot rework, root volume."""
    hourly = offer.price
    cost = hourly * max(duration_s, MIN_BILLED_S) / 3600 + hourly * boot_s / 3600
    if offer.market == SPOT and offer.interruption_rate:
        # The advisor's bucket is a share of instances reclaimed per month; read as a constant
        # hazard. An interruption loses on average half the run plus a new boot.
        hazard = -math.log(1 - min(offer.interruption_rate, 0.99)) / HOURS_PER_MONTH
        p = 1 - math.exp(-hazard * (duration_s + boot_s) / 3600)
        cost += p * hourly * (duration_s / 2 + boot_s) / 3600
    cost += disk_gib * EBS_GP3_USD_PER_GIB_MONTH / HOURS_PER_MONTH * (duration_s + boot_s) / 3600
    return cost


def _narrow(offers: list[Offer], req: Requirements, sizing: Sizing | None, settings: PlanSettings,
            blocked: frozenset) -> list[Offer]:
    """Apply every filter in order; NoOfferError names the step that left nothing."""
    pool = offers
    if not req.mentions_region:
        regions = set(settings.regions)
        pool = [o for o in pool if o.region in regions]
        if not pool:
            raise NoOfferError(f"no offers in region(s) {', '.join(settings.regions)}",
                               f"region in {','.join(settings.regions)}")
    for desc, pred in req.narrowing_steps(sizing):
        if pred is always_true and pool:
            continue
        kept = [o for o in pool if pred(o)]
        if not kept:
            raise NoOfferError(f"no offer satisfies {desc!r} ({len(pool)} offers before it)", desc)
        pool = kept
    pool = _memory_floor(pool, sizing)
    if not req.conjunctive:  # free plain atoms: each conjunct alone may have used another truth value
        whole = req.matcher(sizing)
        pool = [o for o in pool if whole(o)]
        if not pool:
            raise NoOfferError(f"no offer satisfies the whole expression {req.text!r}", req.text)
    # A type or family the user named is always allowed: per offer, where the branch it
    # satisfies names it (`arch=arm64 || type=c7i.*` does not name t4g.nano).
    named = req.type_named(sizing)
    usual = [o for o in pool if ((settings.allow_burstable or not o.burstable)
             and (settings.allow_previous_generation or o.current_generation)) or named(o)]
    pool = usual or pool
    if blocked:
        pool = [o for o in pool if o.key not in blocked]
        if not pool:
            raise NoOfferError("every offer that fits is blocked after failed launches", "blocked offers")
    if settings.max_price is not None:
        kept = [o for o in pool if o.price <= settings.max_price]
        if not kept:
            cheapest = min(o.price for o in pool)
            raise NoOfferError(f"no offer costs at most ${settings.max_price:g}/h (cheapest that fits: "
                               f"${cheapest:.4f}/h)", f"max-price {settings.max_price:g}")
        pool = kept
    return pool


def _memory_floor(pool: list[Offer], sizing: Sizing | None) -> list[Offer]:
    """The memory floor from history holds for every offer, whatever the label says about memory."""
    floor = sizing.mem_gib if sizing is not None else None
    if floor is None:
        return pool
    kept = [o for o in pool if o.memory_gib >= floor]
    if not kept:
        raise NoOfferError(f"no offer has the memory floor from history, {format_gib(floor)} "
                           f"({len(pool)} offers before it)", f"mem>={floor:g} (history)")
    return kept


def _narrowed(offers: list[Offer], req: Requirements, sizing: Sizing | None, settings: PlanSettings,
              blocked: frozenset, pools: dict | None) -> list[Offer]:
    """`_narrow`, memoized in `pools` by everything it reads (failures are not kept)."""
    if pools is None:
        return _narrow(offers, req, sizing, settings, blocked)
    key = (req.key, req.sizing_used(sizing), sizing.mem_gib if sizing else None,
           None if req.mentions_region else settings.regions,
           (settings.allow_burstable, settings.allow_previous_generation),
           blocked, settings.max_price)
    pool = pools.get(key)
    if pool is None:
        if len(pools) >= MAX_POOLS:
            pools.clear()
        pool = pools[key] = _narrow(offers, req, sizing, settings, blocked)
    return pool


def _no_history_runtimes(pool: list[Offer], req: Requirements, settings: PlanSettings) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """The cold-start prior: min(default runtime, runtime target) on the cheapest offer that meets
    the declaration, scaled to every other offer by CPU score (not capped: a faster type finishes
    sooner, a slower one later).

    A job that asks for more than one vCPU may use all of them or one: nothing says which before
    it has run. An offer is credited only the speed-up it shows both ways, on as many busy threads
    as vCPUs asked for and on one thread, so a dearer type wins only if it wins however parallel
    the job turns out to be (and a slower one is charged the larger of its two slow-downs).
    """
    ref = min(pool, key=lambda o: (o.price, o.instance_type))
    threads = int(req.vcpu or 1)

    def median(scores) -> float:
        return statistics.median([s for s in scores if s] or [1.0])

    # an offer without a score runs at the reference's speed; an unscored reference at the median's
    ref_single = ref.score_single or median(o.score_single for o in pool)
    ref_busy = (ref.throughput(threads) or median(o.throughput(threads) for o in pool)) if threads > 1 else ref_single
    prior = min(settings.default_runtime_s, settings.target_s)
    runtime, scores = {}, {}
    for o in pool:
        single = o.score_single or ref_single
        busy = (o.throughput(threads) or ref_busy) if threads > 1 else single
        scores[o.instance_type] = busy
        runtime[o.instance_type] = prior * max(ref_busy / busy, ref_single / single)
    kind = (f"the CPU score of {threads} busy threads (the vCPUs asked for) or of one thread, whichever "
            "gives the smaller speed-up" if threads > 1 else "single-core score")
    reasons = [f"No history: assuming min({format_duration(settings.default_runtime_s)}, runtime target "
               f"{settings.target_s:.0f}s) = {prior:.0f}s on the cheapest offer that meets the declaration "
               f"({ref.instance_type} {ref.market} at ${ref.price:.4f}/h), scaled to other offers by {kind}; "
               "no offer is dropped for the deadline on this assumption."]
    return runtime, scores, reasons


def select(offers: list[Offer], req: Requirements, est: Estimate, settings: PlanSettings,
           blocked: frozenset = frozenset(), managed_atom: str = "ec2", pools: dict | None = None) -> Plan:
    """Choose an offer for the job; raise NoOfferError naming the constraint that emptied the set.

    `pools`, where the caller keeps one per `offers` list, memoizes the offers that fit across
    calls: the daemon plans the same few labels for many jobs.
    """
    sizing, auto, reasons = autotune(req, est, settings)
    if est.implausible:
        reasons.insert(0, implausible_reason(est.implausible))
    pool = _narrowed(offers, req, sizing, settings, blocked, pools)
    disk = req.disk_gib or settings.disk_gib
    if est.works:
        work = statistics_work(est)
        runtimes = _Runtimes.from_history(est, pool, settings.scaled_margin)
        score = lambda t: work / runtimes.lo[t] if runtimes.lo[t] else 0.0  # noqa: E731
        reasons.insert(0, _history_reason(est))
        kind = "all-core" if est.parallel else "single-core"
        reasons.append(f"Minimum score needed for runtime target of {settings.target_s:.0f}s is "
                       f"{work / settings.target_s:.0f} ({kind} weighted).")
    else:
        runtime, scores, more = _no_history_runtimes(pool, req, settings)
        runtimes = _Runtimes.exact(runtime)   # a prior, not a measurement: never checked against the deadline
        score = scores.__getitem__
        reasons.extend(more)

    rows = pool if len(runtimes.lo) == len(runtimes.types) else \
        [o for o in pool if o.instance_type in runtimes.lo]
    if not rows:
        raise NoOfferError("no offer that fits has a CPU score to predict the runtime", "cpu score")
    if est.works:
        top, more = _rank(rows, runtimes, settings, disk)
    else:
        top, more = _rank_cold(rows, runtimes, settings, disk)
    reasons.extend(more)
    ranked = [Candidate(o, d, cost, score(o.instance_type), m) for o, d, m, cost in top]
    chosen = ranked[0]
    o = chosen.offer
    reasons.append(f"Chosen: {o.instance_type} {o.market} in {o.region} at ${o.price:.4f}/h "
                   f"(perf/price {chosen.perf_per_price:,.0f}), predicted {chosen.duration_s:.0f}s "
                   f"and ${chosen.cost_usd:.4f} with boot and spot risk.")
    return Plan(chosen=chosen, candidates=tuple(ranked), autotuned=auto, reasons=tuple(reasons),
                sizing=sizing, disk_gib=disk, node_labels=tuple(req.node_labels(o, sizing, managed_atom)))


class _Runtimes:
    """The job's predicted runtime per instance type: bounds for every type, exact where needed.

    An exact runtime sorts the job's runs scaled to the type, and a plan looks at ~500 types; its
    decisions (does the type meet the deadline? could an offer be among the cheapest?) are mostly
    settled by `Estimate.runtime_bounds`, so only a few dozen types get `Estimate.runtimes`.
    `lo` and `hi` hold the bounds, both the exact figure once `resolve`d; types without a runtime
    (no CPU score) are absent.
    """

    def __init__(self, types: dict[str, Offer], lo: dict[str, float], hi: dict[str, float],
                 measured: set[str], exact: set[str], est: Estimate | None = None, margin: float = 0.0,
                 kin: set[str] | frozenset[str] = frozenset()):
        self.types, self.lo, self.hi, self.measured, self.kin = types, lo, hi, measured, kin
        self._exact, self._est, self.margin = exact, est, margin
        # bounds of the runtime the deadline checks: a scaled one x (1 + margin), one scaled from
        # runs on the same family x (1 + the family margin), a measured one as it is
        m = 1 + margin
        self.deadline_lo = {t: d * m for t, d in lo.items()}
        self.deadline_hi = {t: d * m for t, d in hi.items()}
        for t in measured:
            self.deadline_lo[t], self.deadline_hi[t] = lo[t], hi[t]
        k = 1 + family_margin(margin)
        for t in kin:
            self.deadline_lo[t] = self.deadline_hi[t] = lo[t] * k

    @classmethod
    def from_history(cls, est: Estimate, pool: list[Offer], margin: float) -> "_Runtimes":
        """`margin`: what a runtime scaled from other types must leave to spare (`PlanSettings.scaled_margin`)."""
        first = {o.instance_type: o for o in reversed(pool)}   # a type's runtime is its first offer's
        b = est.runtime_bounds(first)
        return cls(first, b.lo, b.hi, b.measured, b.measured | b.kin, est, margin, b.kin)

    @classmethod
    def exact(cls, runtime: dict[str, float]) -> "_Runtimes":
        known = {t: d for t, d in runtime.items() if d < math.inf}
        return cls(dict.fromkeys(runtime), known, dict(known), set(known), set(known))

    def resolve(self, types: Iterable[str]) -> None:
        """Make the bounds of these types their exact runtime."""
        todo = [self.types[t] for t in types if t not in self._exact]
        if todo:
            assert self._est is not None
            m = 1 + self.margin
            for t, (d, _) in self._est.runtimes(todo).items():
                self.lo[t] = self.hi[t] = d
                self.deadline_lo[t] = self.deadline_hi[t] = d if t in self.measured else d * m
                self._exact.add(t)

    def within(self, limit: float) -> set[str]:
        """The types whose deadline runtime (`deadline_hi`, once resolved) is at most `limit`."""
        hi = self.deadline_hi
        self.resolve([t for t, d in self.deadline_lo.items() if d <= limit < hi[t]])
        return {t for t, d in hi.items() if d <= limit}


Row = tuple[Offer, float, bool, float]     # a ranked offer: offer, runtime s, measured, cost USD


def _rank(rows: list[Offer], rt: _Runtimes, settings: PlanSettings, disk_gib: float,
          keep: int = TOP_CANDIDATES) -> tuple[list[Row], list[str]]:
    """The first `keep` offers in the policy's order, costed, and the reasons for what was dropped.

    `rows` are the offers with a runtime, in pool order (ties keep it, as a stable sort would)."""
    reasons = []
    boot_s = settings.boot_s
    if settings.policy == "deadline":   # within the timeout and the target
        meet = _of_types(rows, rt.within(min(settings.timeout_s, settings.target_s)))
        dropped = len(rows) - len(meet)
        if dropped:
            kin = (f"; from runs on another size of the same family, {family_margin(settings.scaled_margin):.0%}"
                   if rt.kin else "")
            reasons.append(f"{dropped} offers dropped: predicted to miss the runtime target of "
                           f"{settings.target_s:.0f}s (runtimes scaled from other types by CPU score "
                           f"need a {settings.scaled_margin:.0%} margin{kin}).")
        if meet:
            return _cheapest(meet, rt, boot_s, disk_gib, keep), reasons
        reasons.append("No offer is predicted to meet the runtime target: choosing the fastest "
                       f"(the cheapest of those within {NEAR_TIE:.0%} of it).")
        return _fastest_fallback(rows, rt, boot_s, disk_gib, keep), reasons
    feasible = rt.within(settings.timeout_s)
    if not feasible:
        reasons.append(f"No offer is predicted to finish within the timeout of {settings.timeout_s:.0f}s: "
                       f"choosing the fastest (the cheapest of those within {NEAR_TIE:.0%} of it).")
        return _fastest_fallback(rows, rt, boot_s, disk_gib, keep), reasons
    feasible_rows = _of_types(rows, feasible)
    if len(feasible_rows) < len(rows):
        reasons.append(f"{len(rows) - len(feasible_rows)} offers dropped: predicted to exceed the timeout.")
    if settings.policy == "cheapest":
        return _cheapest(feasible_rows, rt, boot_s, disk_gib, keep), reasons
    return _fastest(feasible_rows, rt, boot_s, disk_gib, keep), reasons


def _rank_cold(rows: list[Offer], rt: _Runtimes, settings: PlanSettings, disk_gib: float,
               keep: int = TOP_CANDIDATES) -> tuple[list[Row], list[str]]:
    """Ranking on the cold-start prior: nothing is dropped for a deadline on an invented runtime.

    `fastest` sorts by the prior. Otherwise the cheapest predicted cost wins, except that among
    the offers within NEAR_TIE of it the cheapest per hour is chosen: scores disagree by
    more than that, so a small predicted saving on a dearer type is noise, and the cheaper hour
    is the one a job of unknown shape cannot lose on.
    """
    if settings.policy == "fastest":
        return _fastest(rows, rt, settings.boot_s, disk_gib, keep), []
    lo = rt.lo
    costed = [(o, lo[o.instance_type], True, expected_cost(o, lo[o.instance_type], settings.boot_s, disk_gib))
              for o in rows]
    best = min(r[3] for r in costed)
    near = [r for r in costed if r[3] <= best * (1 + NEAR_TIE) + 1e-12]
    chosen = min(near, key=lambda r: (r[0].price, *_by_cost(r)))
    rest = heapq.nsmallest(keep - 1, [r for r in costed if r is not chosen], key=_by_cost)
    reasons = []
    if round(chosen[3], 9) > round(best, 9):
        reasons.append(f"{len(near)} offers within {NEAR_TIE:.0%} of the lowest predicted cost "
                       f"(${best:.4f}): the cheapest per hour is chosen.")
    return [chosen, *rest], reasons


def _of_types(rows: list[Offer], types: set[str]) -> list[Offer]:
    return [o for o in rows if o.instance_type in types]


def _fastest(rows: list[Offer], rt: _Runtimes, boot_s: float, disk_gib: float, keep: int) -> list[Row]:
    """`sorted(rows, key=_by_speed)[:keep]` (heapq.nsmallest is exactly that, ties included), costed."""
    rt.resolve({o.instance_type for o in rows})
    d, measured = rt.lo, rt.measured
    best = heapq.nsmallest(keep, [(o, d[o.instance_type]) for o in rows], key=_by_speed)
    return [(o, t, o.instance_type in measured, expected_cost(o, t, boot_s, disk_gib)) for o, t in best]


def _fastest_fallback(rows: list[Offer], rt: _Runtimes, boot_s: float, disk_gib: float, keep: int) -> list[Row]:
    """`_fastest`, except that the offer chosen is the cheapest of those within NEAR_TIE of the
    fastest runtime: when nothing meets the deadline, 0.2% of predicted speed must not buy a
    type ten times the price."""
    top = _fastest(rows, rt, boot_s, disk_gib, keep)
    limit = top[0][1] * (1 + NEAR_TIE) + 1e-9
    d = rt.lo
    near = [(o, d[o.instance_type], o.instance_type in rt.measured) for o in rows if d[o.instance_type] <= limit]
    chosen = min(((o, t, m, expected_cost(o, t, boot_s, disk_gib)) for o, t, m in near), key=_by_cost)
    rest = [r for r in top if r[0] != chosen[0]]
    return [chosen, *rest[:keep - 1]]


def _cheapest(rows: list[Offer], rt: _Runtimes, boot_s: float, disk_gib: float, keep: int) -> list[Row]:
    """`sorted(rows, key=_by_cost)[:keep]`, costing exactly only the offers that could be among them.

    Hundreds of offers usually meet the deadline and ten are kept. The billed hours at the offer's
    price, `price x (max(runtime, 60 s) + boot) / 3600`, are a lower bound of `expected_cost` (spot
    rework and the volume only add, with boot and disk >= 0), and so is that of a lower bound of the
    runtime. The `keep` offers with the lowest bounds give an upper bound `limit` of the `keep`-th
    cost, and an offer whose bound exceeds it (beyond rounding; costs compare at 1e-9) sorts after
    every offer kept: it needs neither its exact runtime nor its cost.
    """
    lo = rt.lo
    if len(rows) > keep and boot_s >= 0 and disk_gib >= 0:
        hours = {t: ((d if d > MIN_BILLED_S else MIN_BILLED_S) + boot_s) / 3600 for t, d in lo.items()}
        bounds = [o.price * hours[o.instance_type] for o in rows]
        kth = heapq.nsmallest(keep, bounds)[-1]
        lowest = [o for o, b in zip(rows, bounds) if b <= kth]
        rt.resolve({o.instance_type for o in lowest})
        limit = max(expected_cost(o, lo[o.instance_type], boot_s, disk_gib) for o in lowest)
        limit = (limit + 1e-9) / (1 - 1e-9)
        rows = [o for o, b in zip(rows, bounds) if b <= limit]
    rt.resolve({o.instance_type for o in rows})
    measured = rt.measured
    costed = [(o, lo[o.instance_type], o.instance_type in measured,
               expected_cost(o, lo[o.instance_type], boot_s, disk_gib)) for o in rows]
    return heapq.nsmallest(keep, costed, key=_by_cost)


def _by_cost(r: Row) -> tuple:
    """Cheapest first (costed rows); ties by price, then name, region and market."""
    o = r[0]
    return (round(r[3], 9), o.price, o.instance_type, o.region, o.market)


def _by_speed(r: tuple[Offer, float]) -> tuple:
    """Fastest first (offer, runtime); ties by price, then name, region and market."""
    o = r[0]
    return (round(r[1], 6), o.price, o.instance_type, o.region, o.market)


def statistics_work(est: Estimate) -> float:
    """The job's median total work in score-seconds (what a type's effective score divides)."""
    values = sorted(w.serial + w.parallel for w in est.works)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def _named(works) -> str:
    return ", ".join(f"{w.run_id} ({w.duration_s:.0f}s on {w.instance_type})" for w in works)


def _history_reason(est: Estimate) -> str:
    per_type = ", ".join(f"{t} {sorted(d)[len(d) // 2]:.0f}s ({len(d)} runs)"
                         for t, d in sorted(est.by_type.items()))
    text = f"History: {est.runs} successful runs; past runtimes: {per_type}."
    if est.families:
        text += (f" Other sizes of {', '.join(sorted(est.families))} are scaled from the runs on that family "
                 "alone (the same CPU).")
    if len(est.kinds) > 1:
        text += (f" Other types of a CPU kind it ran on ({', '.join(sorted(est.kinds))}) are scaled from its "
                 "runs on that kind (benchmarks disagree most across kinds).")
    if est.outliers:
        text += f" Outliers removed: {_named(est.outliers)}."
    if est.stalled:
        text += (" Stalled runs left out (their CPUs were idle most of the time, waiting on what no "
                 f"instance type changes): {_named(est.stalled)}.")
    if est.ignored:
        text += f" {est.ignored} runs on types unknown to the catalog ignored."
    return text
