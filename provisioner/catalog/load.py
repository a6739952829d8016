"""Build the Catalog from CSV files: the data bundled in the package, or a refreshed local cache.

Files (same columns in both places, see data/SOURCES.md): aws_instances.csv (specs + on-demand price
per type and region), aws_spot_prices.csv, aws_spot_interruption.csv, cpu_scores.csv. A file in the
cache directory replaces the bundled one of the same name.

CPU scores. The default, `composite`, takes per-core speed from Geekbench 6 single-core (a suite
of real workloads: compression, image processing, ML inference, parsing... closer to data-science
jobs than a micro-benchmark) and how the type's vCPUs scale together from SpareCores' stress-ng
run, which measured one thread and all vCPUs on the same host: all-core = Geekbench single x
(stress-ng all-core / stress-ng single). Neither source alone will do: stress-ng `div16` is integer
division, where AMD Zen 4 scores twice Graviton while Geekbench and CoreMark rate them about equal;
Geekbench's own multi-core score is a shared-task test that grows far slower than vCPUs, so it
under-rates large types for data-parallel jobs. A single source (`sparecores-stressng-div16`,
`sparecores-geekbench6`, `ec2instances-coremark`) can be configured instead (`defaults.score_source`).
A type the chosen source lacks gets the next source scaled into its units by the median ratio over
types measured by both (CoreMark, with no single-core figure, stands in per thread); then its
family's per-vCPU median; then the catalog-wide per-vCPU median. `score_basis` says which.

Cores. Which types run two hyper-threads per core is read from the same stress-ng run (`_cores`):
the runtime model gives a thread a core of its own while a type has idle cores (`Offer.throughput`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import pickle
import statistics
import time
from collections import defaultdict
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import provisioner.catalog.devices as devices
from provisioner.catalog.model import ON_DEMAND, SPOT, Catalog, Offer

COMPOSITE = "composite"
DEFAULT_SCORE_SOURCE = COMPOSITE
FALLBACK_SOURCES = ("sparecores-stressng-div16", "sparecores-geekbench6", "ec2instances-coremark")
FILES = ("aws_instances.csv", "aws_spot_prices.csv", "aws_spot_interruption.csv", "cpu_scores.csv")
# Spot rows whose type/region has no advisor bucket get the worst bucket's rate: be pessimistic.
UNKNOWN_INTERRUPTION_RATE = 0.25
CACHE_META = "meta.json"
# Part of the pickled build's key: bump it when Offer's fields or their meaning change, so that an
# older build is not read back into the new shape.
OFFER_FORMAT = 3

_cache: dict[str, list[Offer]] = {}


def bundled_dir() -> Path:
    return Path(str(resources.files("provisioner.catalog") / "data"))


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        return header, list(reader)


def _float(text: str) -> float | None:
    return float(text) if text else None


def _int(text: str) -> int:
    """A device count; empty (unknown: specs from the price feed alone) counts as none."""
    return int(text) if text else 0


ScoreRow = tuple[float | None, float | None, int | None]   # single, multi, threads measured


def _by_source(path: Path) -> dict[str, dict[str, ScoreRow]]:
    """cpu_scores.csv as source -> type -> its row."""
    header, rows = _rows(path)
    col = {name: i for i, name in enumerate(header)}
    by_source: dict[str, dict[str, ScoreRow]] = defaultdict(dict)
    for r in rows:
        threads = r[col["threads"]]
        by_source[r[col["source"]]][r[col["instance_type"]]] = (
            _float(r[col["single_core_score"]]), _float(r[col["multi_core_score"]]),
            int(threads) if threads else None)
    return by_source


def _scores(by_source: dict[str, dict[str, ScoreRow]], vcpus: dict[str, int], families: dict[str, str],
            source: str) -> dict[str, tuple[float, float, str]]:
    """type -> (single, multi, basis), every score in `source`'s unit."""
    primary = _composite(by_source) if source == COMPOSITE else by_source.get(source, {})
    out: dict[str, tuple[float, float, str]] = {
        t: (s, m, source) for t, (s, m, _) in primary.items() if s and m}

    for other in (s for s in FALLBACK_SOURCES if s != source):
        table = by_source.get(other, {})
        common = [t for t in table if t in out]
        multi_ratio = _median_ratio([(out[t][1], table[t][1]) for t in common])
        # A source without a single-core figure (CoreMark) stands in with its all-core figure per thread.
        single_pairs = [(out[t][0], _single_or_per_thread(table[t], vcpus.get(t))) for t in common]
        single_ratio = _median_ratio(single_pairs)
        for t, row in table.items():
            if t in out or multi_ratio is None or single_ratio is None:
                continue
            single, multi = _single_or_per_thread(row, vcpus.get(t)), row[1]
            if single and multi:
                out[t] = (single * single_ratio, multi * multi_ratio, f"{other} scaled")

    per_vcpu = defaultdict(list)
    singles = defaultdict(list)
    for t, (s, m, _) in out.items():
        if vcpus.get(t):
            per_vcpu[families.get(t, "")].append(m / vcpus[t])
            singles[families.get(t, "")].append(s)
    all_per_vcpu = [x for xs in per_vcpu.values() for x in xs]
    all_single = [x for xs in singles.values() for x in xs]
    for t, n in vcpus.items():
        if t in out:
            continue
        fam = families.get(t, "")
        if per_vcpu.get(fam):
            out[t] = (statistics.median(singles[fam]), statistics.median(per_vcpu[fam]) * n,
                      f"{fam} family median")
        elif all_per_vcpu:
            out[t] = (statistics.median(all_single), statistics.median(all_per_vcpu) * n,
                      "catalog median (no benchmark)")
    return out


SMT_SCALING = 0.8   # stress-ng all vCPUs / (vCPUs x one thread) below this: two threads per core


def _cores(stress_ng: dict[str, ScoreRow], vcpus: dict[str, int], families: dict[str, str]) -> dict[str, int]:
    """type -> physical cores, from how SpareCores' stress-ng run on it scaled from one thread to
    every vCPU (whatever the configured score source).

    Where a vCPU is a core (Graviton, AMD's 7th generation and later) all vCPUs busy do 0.95-1.0 x
    vCPUs x one thread's work; where two hyper-threads share a core (Intel, older AMD) 0.5-0.7.
    A type stress-ng did not measure takes its family's majority; a type of a family it never
    measured is left out (`Offer.cores` 0: a core per vCPU)."""
    hyper: dict[str, bool] = {}
    for t, (single, multi, _) in stress_ng.items():
        n = vcpus.get(t)
        if n and n > 1 and single and multi:
            hyper[t] = multi / (n * single) < SMT_SCALING
    by_family: dict[str, list[bool]] = defaultdict(list)
    for t, smt in hyper.items():
        by_family[families.get(t, "")].append(smt)
    out = {}
    for t, n in vcpus.items():
        votes = by_family.get(families.get(t, ""))
        smt = hyper.get(t, sum(votes) * 2 >= len(votes) if votes else None)
        if smt is not None:
            out[t] = n // 2 if smt and n > 1 else n
    return out


def _composite(by_source: dict) -> dict[str, tuple[float, float, None]]:
    """Geekbench 6 single-core (a suite of real workloads) for per-core speed, times stress-ng's
    all-core/single-core ratio measured in one run on the type (how its vCPUs scale together)."""
    gb, sng = by_source.get("sparecores-geekbench6", {}), by_source.get("sparecores-stressng-div16", {})
    out = {}
    for t, (single, _, _) in gb.items():
        s_single, s_multi, _ = sng.get(t, (None, None, None))
        if single and s_single and s_multi:
            out[t] = (single, single * s_multi / s_single, None)
    return out


def _single_or_per_thread(row: tuple[float | None, float | None, int | None], vcpu: int | None) -> float | None:
    single, multi, threads = row
    if single:
        return single
    n = threads or vcpu
    return multi / n if multi and n else None


def _median_ratio(pairs: list[tuple[float | None, float | None]]) -> float | None:
    ratios = [a / b for a, b in pairs if a and b]
    return statistics.median(ratios) if ratios else None


def build_catalog(data_dirs: list[Path], score_source: str = DEFAULT_SCORE_SOURCE,
                  source: str = "bundled") -> Catalog:
    """Join the CSVs (first directory holding each file wins) into one table of offers."""
    def pick(name: str) -> Path:
        for d in data_dirs:
            if (d / name).exists():
                return d / name
        raise FileNotFoundError(name)

    header, rows = _rows(pick("aws_instances.csv"))
    c = {name: i for i, name in enumerate(header)}
    specs: dict[str, list[str]] = {}
    ondemand: dict[tuple[str, str], float] = {}
    for r in rows:
        t = r[c["instance_type"]]
        specs.setdefault(t, r)
        if r[c["ondemand_usd_per_hour"]]:
            ondemand[(t, r[c["region"]])] = float(r[c["ondemand_usd_per_hour"]])
    vcpus = {t: int(r[c["vcpu"]]) for t, r in specs.items()}
    families = {t: r[c["family"]] for t, r in specs.items()}
    by_source = _by_source(pick("cpu_scores.csv"))
    scores = _scores(by_source, vcpus, families, score_source)
    cores = _cores(by_source.get("sparecores-stressng-div16", {}), vcpus, families)

    _, irows = _rows(pick("aws_spot_interruption.csv"))
    interruption = {(r[0], r[1]): float(r[4]) for r in irows if r[4]}

    # Per-type fields computed once; ~15k offers are then built positionally (this is plan's hot start).
    fixed: dict[str, tuple] = {}
    for t, r in specs.items():
        single, multi, basis = scores.get(t, (0.0, 0.0, "none"))
        gc, gm, gmaker, gmem, am, ac = devices.classify(
            _int(r[c["gpu_count"]]), r[c["gpu_model"]] or None, r[c["gpu_manufacturer"]] or None,
            _float(r[c["gpu_memory_gib"]]), r[c["accelerator_model"]] or None, _int(r[c["accelerator_count"]]))
        fixed[t] = (r[c["family"]], vcpus[t], float(r[c["memory_gib"]]), r[c["arch"]], gc, gm, gmem,
                    r[c["burstable"]] == "1", r[c["current_generation"]] == "1", single, multi, basis,
                    gmaker, am, ac, cores.get(t, 0))

    offers = []
    for (t, region), price in ondemand.items():
        fam, vcpu, mem, arch, gc, gm, gmem, burst, cur, single, multi, basis, gmaker, am, ac, nc = fixed[t]
        offers.append(Offer(t, fam, region, ON_DEMAND, vcpu, mem, arch, price, price, gc, gm, gmem,
                            burst, cur, None, single, multi, basis, None, gmaker, am, ac, nc))
    _, srows = _rows(pick("aws_spot_prices.csv"))
    for t, region, _az, price in srows:
        if t not in fixed or not price or float(price) <= 0:
            continue
        fam, vcpu, mem, arch, gc, gm, gmem, burst, cur, single, multi, basis, gmaker, am, ac, nc = fixed[t]
        offers.append(Offer(t, fam, region, SPOT, vcpu, mem, arch, float(price), ondemand.get((t, region)),
                            gc, gm, gmem, burst, cur,
                            interruption.get((t, region), UNKNOWN_INTERRUPTION_RATE),
                            single, multi, basis, None, gmaker, am, ac, nc))
    return Catalog(offers=offers, source=source, score_source=score_source)


def load_catalog(cache: Path | None = None, score_source: str = DEFAULT_SCORE_SOURCE,
                 max_age_days: float | str | None = 30, now: float | None = None) -> Catalog:
    """The refreshed cache where present (warning when stale), else the bundled data (warning).

    `max_age_days` "never" (or None): whatever the catalog's age, no warning (a site without AWS
    credentials lives on the bundled prices on purpose)."""
    never = max_age_days is None or max_age_days == "never"
    from provisioner import paths
    cache = cache if cache is not None else paths.catalog_cache()
    warnings: list[str] = []
    dirs = [bundled_dir()]
    source = "bundled data (see provisioner/catalog/data/SOURCES.md)"
    meta = _read_meta(cache)
    if meta is None and not never:
        warnings.append("catalog: no refreshed cache; using the bundled prices (on-demand 2025-04, "
                        "spot 2026-08). Run `provisioner catalog refresh` for current prices.")
    elif meta is not None:
        dirs.insert(0, cache)
        fetched = meta.get("fetched_at", "")
        source = f"cache {cache} (fetched {fetched})"
        age_days = _age_days(fetched, now)
        if not never and (age_days is None or age_days > float(max_age_days)):
            warnings.append(f"catalog: the cache at {cache} is stale (fetched {fetched or 'unknown'}); "
                            "run `provisioner catalog refresh`.")
    offers = _built_offers(dirs, score_source, source)
    return Catalog(offers=offers, source=source, score_source=score_source, warnings=warnings)


def _built_offers(dirs: list[Path], score_source: str, source: str) -> list[Offer]:
    """Offers from an in-process or on-disk pickle of an earlier build of the same files.

    Joining the CSVs takes ~0.25 s and a pickle loads in ~0.05 s: `plan` runs once per queue item
    and per user command, so the build is cached under the cache directory, keyed by the files.
    """
    from provisioner import __version__, paths
    stamp = repr((__version__, OFFER_FORMAT, score_source, [(str(d / f), _mtime(d / f)) for d in dirs for f in FILES]))
    digest = hashlib.sha256(stamp.encode()).hexdigest()[:16]
    if digest in _cache:
        return _cache[digest]
    path = paths.cache_dir() / f"catalog-{digest}.pickle"
    offers = None
    try:
        with open(path, "rb") as fh:
            offers = pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        offers = build_catalog(dirs, score_source, source).offers
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                pickle.dump(offers, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only cache only costs speed
    _cache[digest] = offers
    return offers


def _read_meta(cache: Path) -> dict | None:
    try:
        meta = json.loads((cache / CACHE_META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _age_days(fetched: str, now: float | None) -> float | None:
    try:
        when = datetime.fromisoformat(fetched.replace("Z", "+00:00"))
    except ValueError:
        return None
    now_dt = datetime.fromtimestamp(now if now is not None else time.time(), timezone.utc)
    return (now_dt - when).total_seconds() / 86400


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
