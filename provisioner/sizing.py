"""Sizing from history (pure): the memory floor that replaces or adds a memory requirement, and
the reasons a plan gives for it.

With autotune on (no `exact`, no --no-autotune) and at least `autotune_min_runs` successful runs,
the memory floor from history (peak x (1 + headroom) + 0.5 GiB; an OOM-killed run counts as 1.5x
its peak) replaces a declared `mem=`, lower or higher, and applies just the same where none is
declared. vCPUs are the runtime model's matter: with history the declared `vcpu=` is not a floor.

A job's own peaks say little about their spread when there are three of them; the site's other
jobs say more. The spread the site's jobs typically show (`site_peak_spread`) counts as
SITE_PEAK_DF more degrees of freedom beside the job's own (empirical Bayes, as moderated variances
are pooled): three steady peaks then get a bound near what eight would. A job whose peaks scatter
more than chance allows at the site's spread keeps its own. The site figure is a median over
jobs, so no one job's records (a build is untrusted) move another job's floor.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from typing import Iterable

from provisioner.estimate import GIB, Estimate, finite_number, memory_floor
from provisioner.plan_settings import PeakSpread, PlanSettings
from provisioner.records import succeeded
from provisioner.requirements import Requirements, Sizing
from provisioner.units import format_gib

MIN_MEM_HEADROOM = 0.05
SITE_PEAK_DF = 4             # the weight of the site's spread, in degrees of freedom
SITE_MIN_JOBS = 5            # jobs with 3 or more peaks the site figure needs
SITE_JOB_PEAKS = 8           # a job's newest peaks the site figure reads
# One-sided 99% quantiles of Student's t by degrees of freedom (n - 1 peaks); past 30 the
# quantile is within 2% of the normal's, 2.326.
T99 = {1: 31.821, 2: 6.965, 3: 4.541, 4: 3.747, 5: 3.365, 6: 3.143, 7: 2.998, 8: 2.896, 9: 2.821,
       10: 2.764, 11: 2.718, 12: 2.681, 13: 2.650, 14: 2.624, 15: 2.602, 16: 2.583, 17: 2.567,
       18: 2.552, 19: 2.539, 20: 2.528, 21: 2.518, 22: 2.508, 23: 2.500, 24: 2.492, 25: 2.485,
       26: 2.479, 27: 2.473, 28: 2.467, 29: 2.462, 30: 2.457}


def t99(df: int) -> float:
    """The one-sided 99% quantile of Student's t with `df` degrees of freedom (df >= 1)."""
    return T99.get(df, 2.326 + 4.0 / df if df > 30 else math.inf)


def chi2_quantile(df: int, z: float) -> float:
    """The quantile of chi-square with `df` degrees of freedom at the normal's `z` (Wilson-Hilferty,
    within 1% for df >= 2): z = 0 the median, z = 2.326 the 99% quantile."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2_99(df: int) -> float:
    """The 99% quantile of chi-square with `df` degrees of freedom."""
    return chi2_quantile(df, 2.326)


def peak_headroom(peaks: tuple[float, ...] | list[float], site: PeakSpread | None = None) -> float | None:
    """The headroom above the highest peak that the next run's peak stays under with 99%
    confidence: the upper prediction bound mean + t(df) x sd x sqrt(1 + 1/n) of the peaks seen,
    relative to the highest (None with fewer than 3 peaks). Few or scattered peaks give a wide
    bound, many steady ones a narrow one. With the site's spread (`site_peak_spread`), when the
    job's own spread could be the site's (below the 99% quantile of chi-square), the relative
    variance is pooled: (SITE_PEAK_DF x site + (n - 1) x own) / (SITE_PEAK_DF + n - 1), on that
    many degrees of freedom; a job whose peaks scatter more than the site's keeps its own."""
    n = len(peaks)
    if n < 3:
        return None
    top = max(peaks)
    if top <= 0:
        return None
    mean = statistics.fmean(peaks)
    cv2, df = (statistics.stdev(peaks) / mean) ** 2, n - 1
    if pools_with_site(peaks, site):
        cv2, df = (SITE_PEAK_DF * site.cv2 + df * cv2) / (SITE_PEAK_DF + df), df + SITE_PEAK_DF
    bound = mean * (1 + t99(df) * math.sqrt(cv2) * math.sqrt(1 + 1 / n))
    return max(0.0, bound / top - 1)


def pools_with_site(peaks: tuple[float, ...] | list[float], site: PeakSpread | None) -> bool:
    """Whether `peak_headroom` pools these peaks' spread with the site's: 3 or more peaks, all positive,
    whose spread could be the site's by chance (below chi-square's 99% quantile)."""
    n = len(peaks)
    if site is None or site.cv2 <= 0 or n < 3 or min(peaks) <= 0:
        return False
    cv2 = (statistics.stdev(peaks) / statistics.fmean(peaks)) ** 2
    return cv2 * (n - 1) / site.cv2 <= chi2_99(n - 1)


def site_peak_spread(records: Iterable[dict]) -> PeakSpread | None:
    """The spread of memory peaks the site's jobs typically show, from their successful runs (a
    job's newest SITE_JOB_PEAKS peaks; jobs with fewer than 3 left out), or None with fewer than
    SITE_MIN_JOBS such jobs. Each job's squared coefficient of variation is divided by the median
    of its chi-square distribution over its degrees of freedom (Wilson-Hilferty), so the median
    over jobs estimates the typical variance rather than a small sample's typical underestimate."""
    by_job: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for r in records:
        peak = r.get("mem_max_bytes")
        if finite_number(peak) and peak > 0 and isinstance(r.get("job"), str) and succeeded(r):
            by_job[r["job"]].append((str(r.get("start") or ""), peak / GIB))
    spreads = []
    for runs in by_job.values():
        if len(runs) < 3:
            continue
        peaks = [p for _, p in sorted(runs)[-SITE_JOB_PEAKS:]]
        n = len(peaks)
        mean = sum(peaks) / n        # plain arithmetic: statistics' exact sums cost ~5 us a job
        var = sum((p - mean) ** 2 for p in peaks) / (n - 1)
        spreads.append(var / mean ** 2 / (chi2_quantile(n - 1, 0.0) / (n - 1)))
    if len(spreads) < SITE_MIN_JOBS:
        return None
    return PeakSpread(statistics.median(spreads), len(spreads))


def history_memory(est: Estimate, headroom: float, site: PeakSpread | None = None) -> tuple[float | None, float]:
    """(the memory floor from history in GiB, or None without memory samples; the headroom used).

    The headroom is the spread of the successful runs' peaks (`peak_headroom`: a 99% upper
    prediction bound of the next peak), at least 5% (peaks are sampled: a short spike between two
    samples shows in none) and never above the setting; the setting where fewer than 3 runs have
    peaks, and where an OOM kill sizes the floor (the successful runs' spread says nothing about
    a need none of them showed). `site`: the site's spread of peaks, pooled with the job's own. The
    planner and the report's right-sizing both size memory by this rule."""
    spread = peak_headroom(est.mem_peaks, site)
    oom_sized = est.oom_peak_gib is not None and est.oom_peak_gib >= (est.mem_peak_gib or 0.0)
    if spread is not None and not oom_sized:
        headroom = min(headroom, max(MIN_MEM_HEADROOM, spread))
    return (memory_floor(est.mem_peak_gib, headroom) if est.mem_peak_gib else None), headroom


def autotune(req: Requirements, est: Estimate, settings: PlanSettings) -> tuple[Sizing | None, dict | None, list[str]]:
    """Sizing from history, when allowed (>= N successful runs, not exact, not disabled).

    The memory floor from history replaces a declared `mem=` (lower or higher) and applies as much
    when none is declared. vCPUs are no floor: the runtime model slows a type down to the vCPUs it
    has and the deadline drops what would be too slow (Sizing.vcpu = 1 lifts a declared `vcpu=`).
    """
    if req.exact or not settings.autotune:
        return None, None, ["Autotune off: the declared vCPU and memory are kept as hard limits; "
                            "no memory floor from history."]
    if est.runs < settings.autotune_min_runs:
        reasons = []
        if est.runs:
            reasons.append(f"Autotune needs {settings.autotune_min_runs} successful runs; the job has "
                           f"{est.runs}: the declared requirements are kept, no memory floor from history.")
        return None, None, reasons
    vcpu = est.useful_vcpu
    mem, headroom = history_memory(est, settings.mem_headroom, settings.peak_spread)
    reasons = [_vcpu_reason(req, est), _memory_reason(req, est, mem, headroom, settings.peak_spread)]
    auto = {"vcpu": vcpu, "memory_gib": mem, "from_runs": est.runs}
    return Sizing(vcpu=1, mem_gib=mem), auto, reasons


def _vcpu_reason(req: Requirements, est: Estimate) -> str:
    if est.useful_vcpu is None:
        return (f"vCPUs: no CPU samples in history; the runtime model assumes the job uses "
                f"{f'{req.vcpu:g} vCPUs' if req.vcpu else 'every vCPU'} (the declared vcpu= is not a floor "
                "with history).")
    peak = f"peak {est.cpu_peak_pct:.0f}%" if est.cpu_peak_pct is not None else "no samples"
    return (f"Autotuned vCPU: {est.useful_vcpu} (declared {_fmt(req.vcpu)}; useful vCPUs from CPU use, {peak}); "
            "not a floor: fewer are considered where the runtime model says they meet the target.")


def _memory_reason(req: Requirements, est: Estimate, mem: float | None, headroom: float,
                   site: PeakSpread | None = None) -> str:
    declared = req.mem_gib
    if mem is None:
        kept = f"the declared mem={declared:g} is kept" if declared is not None else "no memory floor"
        return f"History has no memory samples: {kept}."
    peak = est.mem_peak_gib or 0.0
    if est.oom_peak_gib is not None and est.oom_peak_gib >= peak:
        basis = f"1.5x the {est.oom_peak_gib / 1.5:.2f} GiB an OOM-killed run reached = {est.oom_peak_gib:.2f} GiB"
    else:
        basis = f"peak {peak:.2f} GiB over {est.runs} successful runs"
        if site is not None and pools_with_site(est.mem_peaks, site):
            basis += f"; the spread of its {len(est.mem_peaks)} peaks pooled with that of the site's {site.jobs} jobs"
    if declared is None:
        rule = "applies although no memory was declared"
    elif declared < mem:
        rule = f"raises the declared mem={declared:g}"
    elif declared > mem:
        rule = f"lowers the declared mem={declared:g}"
    else:
        rule = f"equals the declared mem={declared:g}"
    return (f"Autotuned memory: {format_gib(mem)}, the memory floor from history ({basis} + {headroom:.0%} "
            f"headroom + 0.5 GiB), {rule}.")


def _fmt(v: float | None, unit: str = "") -> str:
    return "nothing" if v is None else f"{v:g}{unit}"


def implausible_reason(implausible: tuple[str, ...], shown: int = 5) -> str:
    more = f"; and {len(implausible) - shown} more" if len(implausible) > shown else ""
    n = len(implausible)
    return (f"Ignored {n} implausible record{'s' if n != 1 else ''} (no machine of their type could have shown "
            f"them): {'; '.join(implausible[:shown])}{more}.")
