"""The AWS Pricing API (GetProducts) read for on-demand prices: Linux, shared tenancy, per region.

Used by `catalog refresh` (refresh.py). Every PriceList entry is a JSON string; only a positive USD
price per 'Hrs' of a plain RunInstances product counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PRICING_REGION = "us-east-1"
PRICING_FILTERS = (("operatingSystem", "Linux"), ("tenancy", "Shared"), ("preInstalledSw", "NA"),
                   ("capacitystatus", "Used"), ("licenseModel", "No License required"))
PRICING_PAGE_SIZE = 100          # GetProducts' maximum

ClientFactory = Callable[[str, str], Any]   # (service, region) -> boto3 client


@dataclass(frozen=True)
class OnDemand:
    """An on-demand price (USD per hour) and the pricing feed's instance family ('General purpose')."""

    usd_per_hour: float
    category: str = ""



def pricing_filters(region: str) -> list[dict[str, str]]:
    return [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}] + [
        {"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in PRICING_FILTERS]


def fetch_ondemand_prices(pricing: Any, region: str) -> dict[str, OnDemand]:
    """type -> Linux shared-tenancy on-demand price in `region`, following NextToken to the end."""
    prices: dict[str, OnDemand] = {}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"ServiceCode": "AmazonEC2", "Filters": pricing_filters(region),
                                  "FormatVersion": "aws_v1", "MaxResults": PRICING_PAGE_SIZE}
        if token:
            kwargs["NextToken"] = token
        page = pricing.get_products(**kwargs)
        for item in page.get("PriceList", []):
            parsed = parse_price_item(item)
            if parsed is None:
                continue
            itype, offer = parsed
            # The filters should leave one product per type; if AWS ever lists two, take the lower.
            if itype not in prices or offer.usd_per_hour < prices[itype].usd_per_hour:
                prices[itype] = offer
        token = page.get("NextToken")
        if not token:
            return prices


def parse_price_item(item: str | dict[str, Any]) -> tuple[str, OnDemand] | None:
    """(type, price) from one PriceList entry (a JSON string), or None when it is not an hourly price.

    Skipped: entries without an instance type, other operations (the Linux AMI is 'RunInstances';
    'RunInstances:xxxx' are licensed images), capacity blocks, and prices that are not a positive
    USD amount per 'Hrs' (zero-priced placeholder SKUs, upfront or per-quantity fees).
    """
    try:
        doc = json.loads(item) if isinstance(item, (str, bytes)) else item
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    attrs = doc.get("product", {}).get("attributes", {})
    itype = attrs.get("instanceType")
    if not itype or attrs.get("operation", "RunInstances") != "RunInstances":
        return None
    if attrs.get("marketoption", "OnDemand") != "OnDemand":
        return None
    price = _hourly_usd(doc.get("terms", {}).get("OnDemand", {}))
    return (itype, OnDemand(price, attrs.get("instanceFamily", ""))) if price is not None else None


def _hourly_usd(terms: dict[str, Any]) -> float | None:
    prices = []
    for term in terms.values():
        for dim in term.get("priceDimensions", {}).values():
            if dim.get("unit") != "Hrs":
                continue
            try:
                usd = float(dim["pricePerUnit"]["USD"])
            except (KeyError, TypeError, ValueError):
                continue
            if usd > 0:
                prices.append(usd)
    return min(prices) if prices else None


class PricingSource:
    """On-demand prices per region from the Pricing API; after one failure, no more calls.

    The failures seen in practice (no Pricing API at the endpoint, access denied, no network) hold
    for every region, and each failed call costs botocore's retries with back-off.
    """

    def __init__(self, make: ClientFactory):
        self._make = make
        self._client: Any = None
        self._failure: str | None = None

    def prices(self, region: str) -> tuple[dict[str, OnDemand], str | None]:
        """(prices, None), or ({}, why the API failed)."""
        if self._failure is None:
            try:
                if self._client is None:
                    self._client = self._make("pricing", PRICING_REGION)
                return fetch_ondemand_prices(self._client, region), None
            except Exception as exc:  # noqa: BLE001 - any Pricing failure degrades to earlier prices
                self._failure = f"{type(exc).__name__}: {short_error(exc)}"
        return {}, self._failure




def short_error(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error, bounded (moto answers a missing API with a whole HTML page)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if "<" in text:   # an HTML error page as the message: its tags say nothing
        text = text[:text.index("<")].rstrip(": ") or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "..."
