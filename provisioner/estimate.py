"""Estimates from a job's history (pure): autotuned sizing and runtime on any instance type.

The runtime model splits each past run into serial work (ran on one vCPU, scales with the
single-core score) and parallel work (ran on k threads at once, scales with what k busy threads get
out of a type: `Offer.throughput`). With n vCPUs, average CPU use P (in vCPUs) and k threads at
peak, a run of T seconds had p = (P - 1) T / (k - 1) seconds of parallel section; the rest was
serial. On another type the same work takes S / single + W / throughput(k), W = p x throughput of
the past type for k threads. On a hyper-threaded type k threads up to its cores each get a core of
their own (single-core speed), so a 4-thread run on a 16-vCPU Intel type did 4 x single of work per
second, not 4/16 of its all-core score; on fewer vCPUs than its threads the type's whole all-core
score shares the work. A run that kept every vCPU busy shows only a lower bound on the threads:
where another run saw more, it is read with those. Runs on the candidate's own type are used
directly instead; else the runs nearest to it are scaled (`Estimate.evidence`): on its family
(the same CPU), else on its kind of CPU (`cpu_kind`), else all of them. Outliers are runs far
from their peers on a log scale (3 MADs and at least 50% on the same type; 2.5x in work across
types, where benchmarks themselves disagree).

Stalled runs are left out first: a run that took 2.5x the time another run's work needs on its
type, while that other run did at least 1/1.5 of its CPU work (CPU use x duration, in
score-seconds), spent that time waiting (a slow disk, a stuck download, a bad node). Waiting is
no property of an instance type: scaled to another type it would read as serial work a faster
CPU shortens, and on its own type it would stretch the measured runtime. The reference is the
other runs, not their median, because a stall only ever adds time: with two stalled runs in four
the median is one of them. A run that did less CPU work (a warm cache, a smaller input) never
makes the others stalled. Runs on GPU or accelerator types are never compared (their CPUs idle
while the device works).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Callable, Iterable, NamedTuple

from provisioner.catalog.model import Offer
from provisioner.records import succeeded

GIB = 1024 ** 3
MEM_OVERHEAD_GIB = 0.5       # the agent, Docker and the OS beside the job
OUTLIER_MADS = 3.0
OUTLIER_MIN_RATIO = 1.5
CROSS_TYPE_MIN_RATIO = 2.5
STALL_RATIO = 2.5            # a stalled run took this many times longer than a peer's work predicts
STALL_WORK_RATIO = 1.5       # ... a peer that did at least 1/1.5 of its CPU work
# A record can only be believed if its type could have shown it: sampling jitters a little around
# the limits, a forged or corrupted record does not stay near them.
PLAUSIBLE_SLACK = 1.05
BOUND_SLACK = 1e-9           # relative widening of runtime bounds (rounding is ~1e-15)


@dataclass(frozen=True)
class RunWork:
    """One past run reduced to work: serial and parallel score-seconds and its thread count."""

    run_id: str
    instance_type: str
    duration_s: float
    serial: float       # score-seconds at single-core speed
    parallel: float     # score-seconds at the throughput of its threads (`Offer.throughput`)
    threads: int

    busy: float = 0.0   # the CPU work it did: busy vCPU-seconds x single-core score (0: unknown)
    family: str = ""    # its type's family (the same CPU in every size)
    kind: str = ""      # its CPU's kind (`cpu_kind`)

    def runtime_on(self, offer: Offer) -> float:
        t = self.serial / offer.score_single if self.serial else 0.0
        if self.parallel:
            t += self.parallel / offer.throughput(self.threads)
        return t


def cpu_kind(offer: Offer) -> str:
    """A coarse CPU kind: the architecture, and on x86 whether two vCPUs share a core (Intel, AMD
    before Zen 4) or each is a core (AMD Zen 4 and later); "" where the cores are not known.

    Benchmarks disagree most across kinds (Geekbench and CoreMark rank Graviton against Intel
    differently), so a job's runs on its candidate's kind say more about it than runs elsewhere."""
    if offer.arch == "arm64":
        return "arm64"
    if not offer.cores:
        return ""
    return f"{offer.arch}-smt" if offer.cores < offer.vcpu else f"{offer.arch}-cores"


class RuntimeBounds(NamedTuple):
    """Per instance type, bounds of the predicted runtime (`Estimate.runtime_bounds`)."""

    lo: dict[str, float]
    hi: dict[str, float]
    measured: set[str]      # types the job ran on: lo == hi, the exact median of those runs
    kin: set[str]           # other sizes of a family it ran on: lo == hi, scaled from those runs only


@dataclass(frozen=True)
class Estimate:
    """What history says about a job."""

    runs: int = 0                          # successful runs considered
    works: tuple[RunWork, ...] = ()        # inliers, reduced to work
    outliers: tuple[RunWork, ...] = ()
    stalled: tuple[RunWork, ...] = ()      # runs that mostly waited (left out like outliers)
    by_type: dict[str, list[float]] = field(default_factory=dict)   # inlier durations per type
    mem_peak_gib: float | None = None
    mem_peaks: tuple[float, ...] = ()      # GiB, successful runs
    useful_vcpu: int | None = None
    cpu_peak_pct: float | None = None
    parallel: bool = False                 # did the job use more than one vCPU on average?
    ignored: int = 0                       # runs whose type is unknown to the catalog
    implausible: tuple[str, ...] = ()      # "run_id: why" of records not believed (left out entirely)
    oom_peak_gib: float | None = None      # 1.5x the highest peak of an OOM-killed run

    def runtime_on(self, offer: Offer) -> tuple[float, bool] | None:
        """Predicted seconds on this offer's type, and whether runs on that type measured it.

        Scaled from the runs nearest to the type where it has none of its own (`evidence`)."""
        direct = self.by_type.get(offer.instance_type)
        if direct:
            return statistics.median(direct), True
        if not self.works or not offer.score_single or not offer.score_multi:
            return None
        return statistics.median(w.runtime_on(offer) for w in self.evidence(offer)), False

    def nearest(self, offer: Offer) -> tuple[str, str]:
        """Which runs scale to the offer's type: ("family", f) for the runs on other sizes of its
        family (the same CPU: only the thread model stands between them), else ("kind", k) for
        those on its CPU kind (`cpu_kind`), else ("", "") for all of them."""
        if offer.family in self.families and offer.instance_type not in self.by_type:
            return "family", offer.family
        kind = cpu_kind(offer)
        return ("kind", kind) if kind in self.kinds else ("", "")

    @cached_property
    def families(self) -> frozenset[str]:
        """The families of the types the job's runs were on."""
        return frozenset(w.family for w in self.works) - {""}

    @cached_property
    def kinds(self) -> frozenset[str]:
        """The CPU kinds (`cpu_kind`) of the types the job's runs were on."""
        return frozenset(w.kind for w in self.works) - {""}

    def evidence(self, offer: Offer) -> tuple[RunWork, ...]:
        """The runs a scaled runtime on the offer comes from (`nearest`)."""
        return self._runs(self.nearest(offer))

    def kin(self, offer: Offer) -> tuple[RunWork, ...]:
        """The runs on other sizes of the offer's family, if those are what it is scaled from."""
        near = self.nearest(offer)
        return self._runs(near) if near[0] == "family" else ()

    def _runs(self, near: tuple[str, str]) -> tuple[RunWork, ...]:
        by, value = near
        if by == "family":
            return tuple(w for w in self.works if w.family == value)
        if by == "kind":
            return tuple(w for w in self.works if w.kind == value)
        return self.works

    def runtimes(self, offers: Iterable[Offer]) -> dict[str, tuple[float, bool] | None]:
        """`runtime_on` for each instance type among `offers` (its first offer), in one pass.

        The runs each set of types is scaled from (`nearest`) are unpacked once and grouped by
        thread count, and each type's median is taken inline; the arithmetic is `runtime_on`'s, in
        the same order, so the figures are the same to the last bit.
        """
        by_type, median = self.by_type, statistics.median
        grouped: dict[tuple[str, str], list[tuple[int, list[tuple[float, float]]]]] = {}
        out: dict[str, tuple[float, bool] | None] = {}
        for o in offers:
            t = o.instance_type
            if t in out:
                continue
            direct = by_type.get(t)
            if direct:
                out[t] = median(direct), True
                continue
            single, multi = o.score_single, o.score_multi
            if not self.works or not single or not multi:
                out[t] = None
                continue
            near = self.nearest(o)
            if near not in grouped:
                groups: dict[int, list[tuple[float, float]]] = {}
                for w in self._runs(near):
                    groups.setdefault(w.threads, []).append((w.serial, w.parallel))
                grouped[near] = list(groups.items())
            values: list[float] = []
            for k, sp in grouped[near]:
                per = o.throughput(k)
                values += [(s / single if s else 0.0) + (p / per if p else 0.0) for s, p in sp]
            values.sort()
            out[t] = _sorted_median(values), False
        return out

    def runtime_bounds(self, offers: dict[str, Offer]) -> "RuntimeBounds":
        """Bounds lo <= `runtime_on(offer)[0]` <= hi for each instance type -> its offer; types
        where `runtime_on` has nothing are left out.

        Planning decides most types on bounds (meets the deadline? could be among the cheapest?)
        and asks `runtimes` only for the rest. A measured type's bounds are its exact median, and
        so are those of another size of a family the job ran on (a few types). For another, run i
        takes x_i + y_i with x_i = serial_i / single and y_i = parallel_i / b_i, b_i the throughput
        of its threads (between b(fewest threads) and b(most): it grows with the threads), over
        the runs `nearest` gives the type. Order statistics are monotone, so the median of the sums
        lies within med(x) + [min y, max y] and within [min x, max x] + med(y), and med(x) =
        med(serial) / single: a few divisions per type instead of two per run and a sort, computed
        a column at a time. Widened by BOUND_SLACK, far beyond the few ulps of rounding either
        computation can take, so a bound never crosses the exact figure.
        """
        measured = {t for t, d in self.by_type.items() if d and t in offers}
        lo = {t: statistics.median(self.by_type[t]) for t in measured}
        hi = dict(lo)
        kin: set[str] = set()
        if self.works:
            split: dict[tuple[str, str], list[Offer]] = {}
            for t, o in offers.items():
                if o.score_single and o.score_multi and t not in measured:
                    split.setdefault(self.nearest(o), []).append(o)
            for near, group in split.items():
                if near[0] == "family":
                    exact = self.runtimes(group)
                    kin.update(exact)
                    lo.update((t, d[0]) for t, d in exact.items())
                    hi.update((t, d[0]) for t, d in exact.items())
                else:
                    _bounds(list(self._runs(near)), group, lo, hi)
        return RuntimeBounds(lo, hi, measured, kin)

    def mem_spread(self) -> float | None:
        """Coefficient of variation of the peaks (None with fewer than 5 samples)."""
        if len(self.mem_peaks) < 5:
            return None
        mean = statistics.fmean(self.mem_peaks)
        return statistics.pstdev(self.mem_peaks) / mean if mean else None


def _bounds(works: list[RunWork], scored: list[Offer], lo: dict[str, float], hi: dict[str, float]) -> None:
    """`Estimate.runtime_bounds` of the offers `scored`, from `works`, into lo and hi."""
    serial = sorted(w.serial for w in works)
    parallel = sorted(w.parallel for w in works)
    s_min, s_med, s_max = serial[0], _sorted_median(serial), serial[-1]
    p_min, p_med, p_max = parallel[0], _sorted_median(parallel), parallel[-1]
    few, most = min(w.threads for w in works), max(w.threads for w in works)
    single = [o.score_single for o in scored]
    slow = [o.throughput(few) for o in scored]
    fast = slow if most == few else [o.throughput(most) for o in scored]
    low = [(x if x > y else y) * (1 - BOUND_SLACK) for x, y in zip(
        [s_med / a + p_min / b for a, b in zip(single, fast)],
        [s_min / a + p_med / b for a, b in zip(single, fast)])]
    high = [(x if x < y else y) * (1 + BOUND_SLACK) for x, y in zip(
        [s_med / a + p_max / b for a, b in zip(single, slow)],
        [s_max / a + p_med / b for a, b in zip(single, slow)])]
    types = [o.instance_type for o in scored]
    lo.update(zip(types, low))
    hi.update(zip(types, high))


def _sorted_median(values: list[float]) -> float:
    """statistics.median of values already sorted."""
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def reduce_run(record: dict, offer: Offer, declared_vcpu: float | None) -> RunWork:
    """Turn a usage record on a known type into serial and parallel work."""
    t = float(record["duration_s"])
    n = int(record.get("vcpu") or offer.vcpu)
    avg, peak = record.get("cpu_avg_pct"), record.get("cpu_max_pct")
    if avg is None:  # no CPU samples: assume it used what was declared (or the whole machine)
        k = max(1, min(n, int(declared_vcpu or n)))
        p_wall = t if k > 1 else 0.0
    else:
        busy = max(avg / 100.0, 0.0)
        k = max(1, min(n, round((peak if peak is not None else avg) / 100.0)))
        p_wall = min(t, max(0.0, (busy - 1.0) * t / (k - 1))) if k > 1 else 0.0
    s_wall = t - p_wall
    device = offer.gpu_count or offer.accel_count
    busy = max(avg, 0.0) / 100.0 * t * offer.score_single if avg is not None and not device else 0.0
    return RunWork(record["run_id"], offer.instance_type, t, s_wall * offer.score_single,
                   p_wall * offer.throughput(k), k, busy, offer.family, cpu_kind(offer))


def estimate(records: list[dict], lookup: Callable[[str, str | None], Offer | None],
             declared_vcpu: float | None = None) -> Estimate:
    """Summarise a job's history. `lookup(type, region)` gives the catalog offer of a past run.

    Records no machine of their type could have produced (a memory peak above the type's memory,
    CPU use above its vCPUs) are left out and named in `implausible`."""
    believed, implausible = [], []
    for r in records:
        why = implausibility(r, lookup(r.get("instance_type") or "", r.get("region"))
                             if r.get("instance_type") else None)
        if why:
            implausible.append(f"{r.get('run_id')}: {why}")
        else:
            believed.append(r)
    records = believed
    ok = [r for r in records if succeeded(r)]
    works, offers, ignored = [], [], 0
    for r in ok:
        offer = lookup(r.get("instance_type") or "", r.get("region"))
        if offer is None or not offer.score_single or not r.get("duration_s"):
            ignored += 1
            continue
        works.append(reduce_run(r, offer, declared_vcpu))
        offers.append(offer)
    works = _share_threads(works, offers)
    works, stalled = _split_stalled(works, offers)
    inliers, outliers = _split_outliers(works)
    by_type: dict[str, list[float]] = {}
    for w in inliers:
        by_type.setdefault(w.instance_type, []).append(w.duration_s)

    peaks = [r["mem_max_bytes"] / GIB for r in ok if r.get("mem_max_bytes")]
    # A run killed for memory needed more than it had: half again on top of what it reached,
    # unless a successful run peaked above that already (the kill is then explained: its machine
    # had less memory than the job is known to use, and the measured peak says how much it needs).
    seen = max(peaks, default=0.0)
    oom = [r["mem_max_bytes"] * 1.5 / GIB for r in records if r.get("oom_killed") and r.get("mem_max_bytes")
           and r["mem_max_bytes"] / GIB >= seen]
    peaks += oom
    cpu_peaks = [r["cpu_max_pct"] for r in ok if r.get("cpu_max_pct") is not None]
    avgs = [r["cpu_avg_pct"] for r in ok if r.get("cpu_avg_pct") is not None]
    useful = None
    if cpu_peaks:
        useful = max(1, math.ceil(max(statistics.median(cpu_peaks), 0) / 100 - 0.15))
    return Estimate(
        runs=len(ok), works=tuple(inliers), outliers=tuple(outliers), stalled=tuple(stalled),
        by_type=by_type,
        mem_peak_gib=max(peaks) if peaks else None, useful_vcpu=useful,
        mem_peaks=tuple(r["mem_max_bytes"] / GIB for r in ok if r.get("mem_max_bytes")),
        cpu_peak_pct=max(cpu_peaks) if cpu_peaks else None,
        parallel=bool(avgs) and statistics.median(avgs) > 150, ignored=ignored,
        implausible=tuple(implausible), oom_peak_gib=max(oom) if oom else None)


def implausibility(record: dict, offer: Offer | None) -> str | None:
    """Why a record cannot be true on its instance type (its catalog offer), or None.

    Without a known type, only the CPU use against the record's own vCPU count can be checked."""
    vcpu = offer.vcpu if offer is not None else record.get("vcpu")
    where = f"{offer.instance_type}'s" if offer is not None else "its"
    peak = record.get("mem_max_bytes")
    if offer is not None and finite_number(peak) and peak / GIB > offer.memory_gib * PLAUSIBLE_SLACK:
        return f"peak {peak / GIB:.0f} GiB above {where} {offer.memory_gib:g} GiB"
    cpu = max((v for v in (record.get("cpu_max_pct"), record.get("cpu_avg_pct")) if finite_number(v)), default=None)
    if finite_number(vcpu) and vcpu > 0 and cpu is not None and cpu > vcpu * 100 * PLAUSIBLE_SLACK:
        return f"CPU {cpu:.0f}% above {where} {vcpu:g} vCPUs"
    return None


def finite_number(v) -> bool:
    """A real, finite number (not a bool, not NaN): what a record's measured field must be."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _share_threads(works: list[RunWork], offers: list[Offer]) -> list[RunWork]:
    """A run that kept every vCPU of its machine busy shows only that the job has at least that
    many threads. Where another run saw more, it had as many: read with those (its work is the
    same, since threads past the vCPUs get the machine's all-core throughput either way), so that
    scaled to a larger type it is not held to the vCPUs of its own."""
    most = max((w.threads for w in works), default=1)
    return [replace(w, threads=most) if w.threads < most and w.threads >= o.vcpu
            and not (o.gpu_count or o.accel_count) else w for w, o in zip(works, offers)]


def _split_stalled(works: list[RunWork], offers: list[Offer]) -> tuple[list[RunWork], list[RunWork]]:
    """Runs that mostly waited (the module's text): another run with CPU samples did at least
    1/STALL_WORK_RATIO of its CPU work, and that run's work on this run's type (`offers`, in the
    same order) takes at most 1/STALL_RATIO of its duration."""
    sampled = [(w, o) for w, o in zip(works, offers) if w.busy > 0]
    if len(sampled) < 2:
        return works, []
    stalled = {id(w) for w, o in sampled
               if any(p is not w and p.busy >= w.busy / STALL_WORK_RATIO
                      and p.runtime_on(o) <= w.duration_s / STALL_RATIO for p, _ in sampled)}
    return [w for w in works if id(w) not in stalled], [w for w in works if id(w) in stalled]


def _split_outliers(works: list[RunWork]) -> tuple[list[RunWork], list[RunWork]]:
    """Drop runs far from their peers.

    On one instance type (>= 3 runs) durations are compared directly. Across types the work a run
    represents (serial + parallel score-seconds) is compared, but only a wide deviation counts:
    benchmark scores disagree by up to ~2x across CPU vendors, which must not read as outliers.
    """
    if len(works) < 3:
        return works, []
    bad: set[int] = set()
    by_type: dict[str, list[int]] = {}
    for i, w in enumerate(works):
        by_type.setdefault(w.instance_type, []).append(i)
    for idx in by_type.values():
        bad |= _far([math.log(max(works[i].duration_s, 1e-9)) for i in idx], idx, OUTLIER_MIN_RATIO)
    rest = [i for i in range(len(works)) if i not in bad]
    bad |= _far([math.log(max(works[i].serial + works[i].parallel, 1e-9)) for i in rest], rest,
                CROSS_TYPE_MIN_RATIO)
    return ([w for i, w in enumerate(works) if i not in bad], [w for i, w in enumerate(works) if i in bad])


def _far(logs: list[float], idx: list[int], min_ratio: float) -> set[int]:
    """Indexes whose value lies over 3 MADs and over `min_ratio` from the median (log scale)."""
    if len(logs) < 3:
        return set()
    med = statistics.median(logs)
    mad = statistics.median(abs(x - med) for x in logs) * 1.4826
    limit = max(OUTLIER_MADS * mad, math.log(min_ratio))
    return {i for i, x in zip(idx, logs) if abs(x - med) > limit}


def memory_floor(peak_gib: float, headroom: float) -> float:
    """Autotuned memory: the peak plus headroom plus what runs beside the job, to 0.5 GiB."""
    return math.ceil((peak_gib * (1 + headroom) + MEM_OVERHEAD_GIB) * 2) / 2
