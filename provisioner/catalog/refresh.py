"""`provisioner catalog refresh`: fetch specs, spot prices and on-demand prices from AWS into the cache.

Per region: EC2 DescribeInstanceTypes (specs), EC2 DescribeSpotPriceHistory (Linux spot prices) and
the Pricing API's GetProducts (Linux, shared tenancy, on-demand). The result is written, in the
bundled CSV format (data/SOURCES.md), to the cache directory that `load_catalog` prefers to the
bundled data.

Choices worth knowing:
- Spot prices are written one row per (type, region) with an empty `az`, like the bundled file: the
  latest price of each Availability Zone, then the lowest over the zones. A spot fleet (or our own
  launch) can be steered to the cheapest zone, and the planner's spot offers are region-level.
- The Pricing API is an enrichment, never a reason to fail: when it errors (moto has no Pricing API;
  an account may lack pricing:GetProducts), each type keeps the on-demand price it had in the
  previous cache, else in the bundled data, and a warning says so. Types with no known on-demand
  price are still written with an empty price, so that their spot offers exist.
- EC2 failures do fail the refresh (RefreshError), and leave the existing cache as it was.
- Regions not refreshed this time keep their rows from the previous cache (else the bundled data),
  because the loader takes each CSV whole from the first directory holding it: refreshing one
  region must not make the others vanish from the catalog.
- aws_spot_interruption.csv and cpu_scores.csv have no AWS API; the loader takes them from the
  bundled data.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from provisioner.catalog.load import CACHE_META, bundled_dir
from provisioner.catalog.pricing import OnDemand, PricingSource, short_error
from provisioner.errors import ProvisionerError

INSTANCES_CSV = "aws_instances.csv"
SPOT_CSV = "aws_spot_prices.csv"
INSTANCE_COLUMNS = ("instance_type", "family", "arch", "vcpu", "memory_gib", "gpu_count", "gpu_model",
                    "gpu_manufacturer", "gpu_memory_gib", "region", "ondemand_usd_per_hour",
                    "accelerator_model", "accelerator_count", "category", "current_generation",
                    "burstable", "spec_source")
SPOT_COLUMNS = ("instance_type", "region", "az", "spot_usd_per_hour")
SPEC_SOURCE = "aws-describe-instance-types"
# The Pricing API is served from a few regions only; us-east-1 answers for every EC2 region.
INSTANCE_TYPES_PAGE_SIZE = 100   # DescribeInstanceTypes' maximum
SPOT_PAGE_SIZE = 1000            # DescribeSpotPriceHistory's maximum
# Accelerators that are not GPUs, in the order that names a type's accelerator (Neuron before the
# generic inference entry, which repeats Inferentia devices).
ACCELERATOR_INFO = (("NeuronInfo", "NeuronDevices"), ("InferenceAcceleratorInfo", "Accelerators"),
                    ("FpgaInfo", "Fpgas"), ("MediaAcceleratorInfo", "Accelerators"))

ClientFactory = Callable[[str, str], Any]   # (service, region) -> boto3 client


class RefreshError(ProvisionerError):
    """EC2 could not be read; the cache was left as it was. `code` is AWS's error code, if any."""

    def __init__(self, message: str, code: str | None = None):
        self.code = code
        super().__init__(message)


# ---------------------------------------------------------------------------------------------------
# Entry point


def refresh(regions: Iterable[str], endpoint_url: str | None = None, cache_dir: Path | str | None = None,
            clients: ClientFactory | None = None, now: datetime | None = None) -> list[str]:
    """Fetch `regions` from AWS into the catalog cache; return summary and warning lines to print.

    `clients(service, region)` makes the boto3 clients (tests inject fakes); by default they come
    from provisioner.aws (standard retries) pointed at `endpoint_url`.
    """
    from provisioner import paths

    wanted = list(dict.fromkeys(r for r in regions if r))
    if not wanted:
        raise RefreshError("catalog refresh: no region given (use --region or the config's regions)")
    cache = Path(cache_dir) if cache_dir is not None else paths.catalog_cache()
    make = clients or default_clients(endpoint_url)
    now = now or datetime.now(timezone.utc)
    earlier = EarlierData.read(cache)
    pricing = PricingSource(make)
    results = [_refresh_region(region, make, pricing, earlier, now) for region in wanted]

    carried = earlier.other_regions(set(wanted))
    warnings = [r.warning for r in results if r.warning]
    meta = {"fetched_at": now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "regions": wanted, "counts": {r.region: r.counts for r in results}, "warnings": warnings,
            "carried_over_regions": carried.regions, "carried_over_from": carried.origin,
            "endpoint_url": endpoint_url}
    write_cache(cache, {
        INSTANCES_CSV: (INSTANCE_COLUMNS, [row for r in results for row in r.instances] + carried.instances),
        SPOT_CSV: (SPOT_COLUMNS, [row for r in results for row in r.spot] + carried.spot),
    }, meta)
    lines = [r.summary for r in results] + [f"wrote {cache}"]
    if carried.regions:
        lines.append(f"not refreshed, kept from {carried.origin}: {', '.join(carried.regions)}")
    return lines + [f"warning: {w}" for w in warnings]


@dataclass
class RegionResult:
    region: str
    instances: list[dict[str, str]]
    spot: list[dict[str, str]]
    counts: dict[str, int]
    summary: str
    warning: str | None


def _refresh_region(region: str, make: ClientFactory, pricing: PricingSource, earlier: EarlierData,
                    now: datetime) -> RegionResult:
    """One region's rows: EC2 specs and spot prices, on-demand prices from Pricing or earlier data."""
    ec2 = make("ec2", region)
    types = _ec2_call(region, "DescribeInstanceTypes", lambda: fetch_instance_types(ec2))
    spot = _ec2_call(region, "DescribeSpotPriceHistory", lambda: fetch_spot_prices(ec2, now))
    ondemand, failure = pricing.prices(region)
    if failure is not None:
        ondemand = earlier.ondemand(region)
    rows = [spec_row(it, region, ondemand.get(it["InstanceType"]), earlier.category(it["InstanceType"]))
            for it in types]
    spot_rows = [{"instance_type": t, "region": region, "az": "", "spot_usd_per_hour": _num(p, 6)}
                 for t, p in sorted(spot.items())]
    priced = sum(1 for r in rows if r["ondemand_usd_per_hour"])
    origin = "Pricing API" if failure is None else "kept from earlier data"
    summary = (f"{region}: {len(rows)} instance types, {len(spot)} spot prices, "
               f"{priced} on-demand prices ({origin})")
    warning = None if failure is None else (
        f"{region}: the Pricing API failed ({failure}); kept {priced} on-demand prices "
        f"from {earlier.price_origin}")
    counts = {"instance_types": len(rows), "spot_prices": len(spot), "ondemand_prices": priced}
    return RegionResult(region, rows, spot_rows, counts, summary, warning)


def default_clients(endpoint_url: str | None) -> ClientFactory:
    """Clients from provisioner.aws: one retry (standard mode) and timeout policy for every AWS call."""
    from provisioner import aws   # imports boto3: only when a refresh really runs

    return lambda service, region: aws.client(service, region=region, endpoint_url=endpoint_url)


def _ec2_call(region: str, operation: str, fetch: Callable[[], Any]) -> Any:
    """Run an EC2 fetch; botocore errors (no credentials, denied, endpoint down) become RefreshError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fetch()
    except (BotoCoreError, ClientError) as exc:
        code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
        raise RefreshError(f"catalog refresh: {region}: {operation} failed: {short_error(exc)}; "
                           "the cache was left unchanged", code=code) from exc


# ---------------------------------------------------------------------------------------------------
# EC2


def fetch_instance_types(ec2: Any) -> list[dict[str, Any]]:
    """Every instance type EC2 describes in the client's region."""
    pages = ec2.get_paginator("describe_instance_types").paginate(
        PaginationConfig={"PageSize": INSTANCE_TYPES_PAGE_SIZE})
    return [it for page in pages for it in page.get("InstanceTypes", [])]


def fetch_spot_prices(ec2: Any, now: datetime) -> dict[str, float]:
    """type -> current Linux spot price: each zone's latest price, then the lowest over zones.

    StartTime=now makes EC2 return the price in effect now for each (type, zone), not the history.
    """
    pages = ec2.get_paginator("describe_spot_price_history").paginate(
        ProductDescriptions=["Linux/UNIX"], StartTime=now, PaginationConfig={"PageSize": SPOT_PAGE_SIZE})
    return lowest_latest_spot(entry for page in pages for entry in page.get("SpotPriceHistory", []))


def lowest_latest_spot(entries: Iterable[dict[str, Any]]) -> dict[str, float]:
    latest: dict[tuple[str, str], tuple[datetime | None, float]] = {}
    for e in entries:
        # 'Linux/UNIX' and 'Linux/UNIX (Amazon VPC)' (what moto, and EC2-Classic-era accounts, return).
        if not str(e.get("ProductDescription", "Linux/UNIX")).startswith("Linux/UNIX"):
            continue
        try:
            price = float(e["SpotPrice"])
        except (KeyError, TypeError, ValueError):
            continue
        key = (e.get("InstanceType", ""), e.get("AvailabilityZone", ""))
        when = e.get("Timestamp")
        seen = latest.get(key)
        if seen is None or (when is not None and (seen[0] is None or when > seen[0])):
            latest[key] = (when, price)
    out: dict[str, float] = {}
    for (itype, _az), (_when, price) in latest.items():
        if itype and price > 0:
            out[itype] = min(price, out.get(itype, price))
    return out


def spec_row(it: dict[str, Any], region: str, ondemand: OnDemand | None,
             earlier_category: str = "") -> dict[str, str]:
    """One aws_instances.csv row from a DescribeInstanceTypes entry (transform of data/SOURCES.md)."""
    itype = it["InstanceType"]
    archs = it.get("ProcessorInfo", {}).get("SupportedArchitectures", [])
    gpus = it.get("GpuInfo", {}).get("Gpus", [])
    first_gpu = gpus[0] if gpus else {}
    gpu_count = sum(int(g.get("Count", 0)) for g in gpus)
    gpu_mib = first_gpu.get("MemoryInfo", {}).get("SizeInMiB")
    acc_model, acc_count = _accelerator(it)
    return {
        "instance_type": itype,
        "family": itype.split(".", 1)[0],
        "arch": "arm64" if {"arm64", "arm64_mac"} & set(archs) else "x86_64",
        "vcpu": str(it.get("VCpuInfo", {}).get("DefaultVCpus", "")),
        "memory_gib": _num(it.get("MemoryInfo", {}).get("SizeInMiB", 0) / 1024, 4),
        "gpu_count": str(gpu_count),
        "gpu_model": first_gpu.get("Name", "") if gpu_count else "",
        "gpu_manufacturer": first_gpu.get("Manufacturer", "") if gpu_count else "",
        "gpu_memory_gib": _num(gpu_mib / 1024, 3) if gpu_count and gpu_mib else "",
        "region": region,
        "ondemand_usd_per_hour": _num(ondemand.usd_per_hour, 10) if ondemand else "",
        "accelerator_model": acc_model,
        "accelerator_count": str(acc_count),
        "category": (ondemand.category if ondemand and ondemand.category else earlier_category),
        "current_generation": "1" if it.get("CurrentGeneration") else "0",
        "burstable": "1" if it.get("BurstablePerformanceSupported") else "0",
        "spec_source": SPEC_SOURCE,
    }


def _accelerator(it: dict[str, Any]) -> tuple[str, int]:
    """(model, count) of a type's non-GPU accelerator (Neuron, Qualcomm AI100, FPGA, media), else ('', 0)."""
    for info, devices_key in ACCELERATOR_INFO:
        devices = it.get(info, {}).get(devices_key) or []
        if devices:
            return devices[0].get("Name", ""), sum(int(d.get("Count", 0)) for d in devices)
    return "", 0


# ---------------------------------------------------------------------------------------------------
# Earlier data: the previous cache and the bundled files


@dataclass
class Carried:
    regions: list[str]
    origin: str
    instances: list[dict[str, str]]
    spot: list[dict[str, str]]


class EarlierData:
    """What the catalog held before this refresh: the previous cache where valid, else bundled data."""

    def __init__(self, cache: Path | None, fetched_at: str):
        self.cache = cache
        self.fetched_at = fetched_at
        self._prices: dict[tuple[str, str], OnDemand] | None = None
        self._categories: dict[str, str] | None = None

    @classmethod
    def read(cls, cache: Path) -> EarlierData:
        meta = _read_meta(cache)
        return cls(cache if meta is not None else None, str(meta.get("fetched_at", "")) if meta else "")

    @property
    def price_origin(self) -> str:
        if self.cache is not None and (self.cache / INSTANCES_CSV).exists():
            return f"the previous cache (fetched {self.fetched_at or 'unknown'}) or the bundled data"
        return "the bundled data"

    def _file(self, name: str) -> tuple[Path, str]:
        """The file the loader would read now (cache first), and a phrase naming it."""
        if self.cache is not None and (self.cache / name).exists():
            return self.cache / name, f"the previous cache (fetched {self.fetched_at or 'unknown'})"
        return bundled_dir() / name, "the bundled data"

    def _load_prices(self) -> None:
        # Bundled first, then the previous cache on top: a cache row without a price (the API had
        # failed then too) does not hide the bundled price.
        self._prices, self._categories = {}, {}
        files = [bundled_dir() / INSTANCES_CSV]
        if self.cache is not None and (self.cache / INSTANCES_CSV).exists():
            files.append(self.cache / INSTANCES_CSV)
        for path in files:
            for r in _read_rows(path):
                t, region = r.get("instance_type", ""), r.get("region", "")
                if r.get("category"):
                    self._categories[t] = r["category"]
                try:
                    price = float(r.get("ondemand_usd_per_hour") or 0)
                except ValueError:
                    continue
                if price > 0:
                    self._prices[(t, region)] = OnDemand(price, r.get("category", ""))

    def ondemand(self, region: str) -> dict[str, OnDemand]:
        if self._prices is None:
            self._load_prices()
        assert self._prices is not None
        return {t: p for (t, r), p in self._prices.items() if r == region}

    def category(self, itype: str) -> str:
        """The type's category ('General purpose') in earlier data: the same in every region."""
        if self._categories is None:
            self._load_prices()
        assert self._categories is not None
        return self._categories.get(itype, "")

    def other_regions(self, refreshed: set[str]) -> Carried:
        """Rows of the regions not refreshed now, so that the new cache stays a whole catalog."""
        ipath, origin = self._file(INSTANCES_CSV)
        spath, _ = self._file(SPOT_CSV)
        instances = [r for r in _read_rows(ipath) if r.get("region") not in refreshed]
        spot = [r for r in _read_rows(spath) if r.get("region") not in refreshed]
        regions = sorted({r["region"] for r in instances + spot if r.get("region")})
        return Carried(regions, origin, instances, spot)


def _read_meta(cache: Path) -> dict[str, Any] | None:
    """The cache's meta.json as the loader recognises a cache; None when missing or corrupt."""
    try:
        meta = json.loads((cache / CACHE_META).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _read_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------------
# Writing the cache


def write_cache(cache: Path, files: dict[str, tuple[Iterable[str], list[dict[str, str]]]],
                meta: dict[str, Any]) -> None:
    """Write every file into a fresh directory next to `cache`, then swap it in.

    A reader sees the old cache or the new one, never a mix. Between the two renames the cache is
    briefly absent; a reader then falls back to the bundled data with a warning, which is harmless.
    """
    parent = cache.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache.name}.new-", dir=parent))
    try:
        for name, (columns, rows) in files.items():
            _write_csv(tmp / name, columns, rows)
        _write_text(tmp / CACHE_META, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        _swap_in(tmp, cache)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(new: Path, cache: Path) -> None:
    # A directory cannot be renamed over a non-empty one: move the old one aside first.
    old = None
    if cache.exists() or cache.is_symlink():
        old = cache.parent / f".{cache.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(cache, old)
    try:
        os.rename(new, cache)
    except OSError:
        if old is not None:
            os.rename(old, cache)
        raise
    if old is not None:
        if old.is_symlink() or old.is_file():
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)


def _write_csv(path: Path, columns: Iterable[str], rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        fh.flush()
        os.fsync(fh.fileno())


def _write_text(path: Path, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _num(value: float, places: int) -> str:
    """A decimal without float noise or trailing zeros: 16.0 -> '16', 22888/1024 -> '22.352' (3 places)."""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return text or "0"
