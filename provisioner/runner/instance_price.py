"""Which instance this run is on and what it costs per hour.

Order: `--instance-type`; else the plan the bootstrap put in the agent's environment
(PROVISIONER_INSTANCE_TYPE / _MARKET / _REGION / _PRICE_USD_PER_HOUR, docs/contracts.md); else EC2
instance metadata (IMDSv2, 0.3 s timeouts), asked only on EC2 hardware or when PROVISIONER_IMDS_URL
names an address (tests serve a stub there); else unknown, and the run has no cost.
Prices missing from the environment come from the catalog (imported lazily).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from provisioner.agent.imds import DEFAULT_URL
from provisioner.runner import LazyLogger

log = LazyLogger(__name__)

IMDS_DEFAULT = DEFAULT_URL
EC2_MARKERS = (("/sys/devices/virtual/dmi/id/sys_vendor", "Amazon EC2"), ("/sys/hypervisor/uuid", "ec2"))


@dataclass(frozen=True)
class Pricing:
    instance_type: str | None = None
    region: str | None = None
    market: str | None = None
    price_usd_per_hour: float | None = None
    ondemand_usd_per_hour: float | None = None
    vcpu: int | None = None
    source: str = ""

    def cost(self, duration_s: float) -> float | None:
        if self.price_usd_per_hour is None:
            return None
        return round(self.price_usd_per_hour * duration_s / 3600.0, 6)


def _market(text: str | None) -> str | None:
    if not text:
        return None
    value = text.strip().lower()
    return {"spot": "spot", "on-demand": "on-demand", "ondemand": "on-demand",
            "on_demand": "on-demand"}.get(value)


def _float(text: str | None) -> float | None:
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        log.warning("ignoring PROVISIONER_PRICE_USD_PER_HOUR=%r: not a number", text)
        return None
    return value if value is None or value >= 0 else None


def on_ec2(markers=EC2_MARKERS) -> bool:
    for path, prefix in markers:
        try:
            if Path(path).read_text().strip().startswith(prefix):
                return True
        except OSError:
            continue
    return False


def imds_identity(base_url: str, timeout_s: float = 0.3) -> dict[str, str]:
    """instance-type, region and lifecycle from IMDSv2 (the one client, agent/imds.py); {} when it
    does not answer in time."""
    from provisioner.agent.imds import Imds, ImdsError
    client = Imds(base_url, timeout_s=timeout_s)
    try:
        client.token()
    except ImdsError as exc:
        log.debug("IMDS at %s did not answer: %s", base_url, exc)
        return {}
    out = {}
    for key, path in (("instance_type", "instance-type"), ("region", "placement/region"),
                      ("market", "instance-life-cycle")):
        try:
            text = client.get(path)
        except ImdsError:
            continue
        if text is not None:
            out[key] = text.strip()
    return out


def catalog_offer(instance_type: str, region: str, market: str | None) -> Any | None:
    """The catalog's offer, or None (unknown type, or the catalog module is not there)."""
    try:
        from provisioner.catalog import load_catalog
        return load_catalog().find(instance_type, region, market or "on-demand")
    except (ImportError, AttributeError) as exc:
        log.debug("no catalog for pricing: %s", exc)
    except Exception as exc:  # a broken cache must not fail the run
        log.warning("catalog lookup for %s failed: %s", instance_type, exc)
    return None


def _offer_price(offer: Any, *names: str) -> float | None:
    for name in names:
        value = getattr(offer, name, None)
        if isinstance(value, (int, float)):
            return float(value)
    return None


def resolve_pricing(instance_type: str | None, environ: Mapping[str, str],
                    default_region: str = "us-east-1",
                    find_offer: Callable[[str, str, str | None], Any] = catalog_offer,
                    imds: Callable[[str], dict[str, str]] = imds_identity,
                    is_ec2: Callable[[], bool] = on_ec2) -> Pricing:
    source = "--instance-type" if instance_type else ""
    market = _market(environ.get("PROVISIONER_MARKET"))
    region = environ.get("PROVISIONER_REGION") or None
    price = _float(environ.get("PROVISIONER_PRICE_USD_PER_HOUR"))
    if not instance_type and environ.get("PROVISIONER_INSTANCE_TYPE"):
        instance_type, source = environ["PROVISIONER_INSTANCE_TYPE"], "environment"
    if not instance_type:
        url = environ.get("PROVISIONER_IMDS_URL") or (IMDS_DEFAULT if is_ec2() else None)
        found = imds(url.rstrip("/")) if url else {}
        if found.get("instance_type"):
            instance_type, source = found["instance_type"], "instance metadata"
            region = region or found.get("region")
            market = market or _market(found.get("market"))
    if not instance_type:
        return Pricing()
    region = region or default_region
    offer = find_offer(instance_type, region, market)
    ondemand = _offer_price(offer, "ondemand_usd_per_hour", "ondemand_price") if offer else None
    if price is None and offer is not None:
        price = _offer_price(offer, "price_usd_per_hour", "price")
    vcpu = getattr(offer, "vcpu", None) if offer is not None else None
    return Pricing(instance_type, region, market, price, ondemand, vcpu, source)
