"""`catalog refresh`: EC2 against a real moto server, Pricing against hand-written GetProducts fixtures.

moto's DescribeInstanceTypes takes ~5 s (1,395 types), so moto is asked once per module, through the
console script (`refresh_cli`); the other refresh tests use a small fake EC2 client.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber

from provisioner.catalog import ON_DEMAND, SPOT, load_catalog
from provisioner.catalog.load import bundled_dir
from provisioner.catalog.pricing import fetch_ondemand_prices, parse_price_item, pricing_filters
from provisioner.catalog.refresh import RefreshError, lowest_latest_spot, refresh
from tests.conftest import provisioner_exe
from tests.moto_server import DUMMY_CREDENTIALS

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 9, 1, 12, 0, tzinfo=timezone.utc)
MOTO_SPOT_PRICE = 0.00001   # moto's one fake spot price: seeing it proves the cache was read


# ---------------------------------------------------------------------------------------------------
# Fakes


def page(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def stubbed_pricing() -> tuple[object, Stubber]:
    """A real botocore pricing client whose GetProducts answers come from the two fixture pages.

    Stubber checks our request parameters against the expected ones and the service model.
    """
    client = boto3.session.Session(region_name="us-east-1", **_credential_kwargs()).client("pricing")
    stubber = Stubber(client)
    base = {"ServiceCode": "AmazonEC2", "Filters": pricing_filters("us-east-1"),
            "FormatVersion": "aws_v1", "MaxResults": 100}
    first = page("get_products_us-east-1_page1.json")
    stubber.add_response("get_products", first, base)
    stubber.add_response("get_products", page("get_products_us-east-1_page2.json"),
                         {**base, "NextToken": first["NextToken"]})
    stubber.activate()
    return client, stubber


def _credential_kwargs() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class FailingPricing:
    """What a Pricing endpoint that cannot answer looks like to the caller."""

    def __init__(self) -> None:
        self.calls = 0

    def get_products(self, **_: object) -> dict:
        self.calls += 1
        raise EndpointConnectionError(endpoint_url="https://api.pricing.us-east-1.amazonaws.com/")


class FakePaginator:
    def __init__(self, pages: list[dict]):
        self.pages = pages

    def paginate(self, **_: object):
        yield from self.pages


class FakeEC2:
    """DescribeInstanceTypes (two pages) and DescribeSpotPriceHistory in DescribeX response shapes."""

    def __init__(self, types: list[dict], spot: list[dict], error: Exception | None = None):
        half = len(types) // 2
        self.pages = {"describe_instance_types": [{"InstanceTypes": types[:half], "NextToken": "t"},
                                                  {"InstanceTypes": types[half:]}],
                      "describe_spot_price_history": [{"SpotPriceHistory": spot}]}
        self.error = error

    def get_paginator(self, name: str) -> FakePaginator:
        if self.error:
            raise self.error
        return FakePaginator(self.pages[name])


def itype(name: str, vcpu: int, mib: int, archs: tuple[str, ...] = ("x86_64",), **extra: object) -> dict:
    return {"InstanceType": name, "VCpuInfo": {"DefaultVCpus": vcpu}, "MemoryInfo": {"SizeInMiB": mib},
            "ProcessorInfo": {"SupportedArchitectures": list(archs)}, "CurrentGeneration": True,
            "BurstablePerformanceSupported": False, **extra}


FAKE_TYPES = [
    itype("m5.large", 2, 8192),
    itype("c7i.large", 2, 4096),
    itype("g5.xlarge", 4, 16384, GpuInfo={"Gpus": [{"Name": "A10G", "Manufacturer": "NVIDIA", "Count": 1,
                                                      "MemoryInfo": {"SizeInMiB": 22888}}]}),
    itype("zz9.large", 2, 8192, archs=("arm64",)),   # in no bundled file: no on-demand price anywhere
]


def spot(t: str, az: str, price: str, hours_ago: float = 0) -> dict:
    return {"InstanceType": t, "AvailabilityZone": az, "ProductDescription": "Linux/UNIX",
            "SpotPrice": price, "Timestamp": NOW - timedelta(hours=hours_ago)}


FAKE_SPOT = [spot("m5.large", "us-east-1a", "0.0400"), spot("m5.large", "us-east-1b", "0.0350"),
             spot("c7i.large", "us-east-1a", "0.0300"), spot("zz9.large", "us-east-1a", "0.0200"),
             spot("g5.xlarge", "us-east-1a", "0.4000")]


def factory(ec2: object, pricing: object):
    def make(service: str, region: str) -> object:
        assert region == "us-east-1"   # Pricing is asked in us-east-1 whatever region is refreshed
        return {"ec2": ec2, "pricing": pricing}[service]
    return make


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------------------------------
# Pricing parsing


def test_get_products_follows_next_token_and_keeps_hourly_positive_prices():
    client, stubber = stubbed_pricing()
    prices = fetch_ondemand_prices(client, "us-east-1")
    stubber.assert_no_pending_responses()   # both pages were asked for, the second with NextToken
    assert {t: p.usd_per_hour for t, p in prices.items()} == {
        "m5.large": 0.096,           # the OnDemand term, not the Reserved one (0.06/h)
        "t3.micro": 0.0104, "g5.xlarge": 1.006, "trn1.2xlarge": 1.34375}
    # c7i.large (price 0) and m6g.medium (unit 'Quantity') are ignored.
    assert prices["g5.xlarge"].category == "GPU instance"


def test_parse_price_item_rejects_what_is_not_an_hourly_linux_price():
    doc = json.loads(page("get_products_us-east-1_page1.json")["PriceList"][0])
    assert parse_price_item(json.dumps(doc))[0] == "m5.large"
    assert parse_price_item("not json") is None
    assert parse_price_item("[1, 2]") is None
    doc["product"]["attributes"]["operation"] = "RunInstances:0010"   # a licensed image (RHEL)
    assert parse_price_item(json.dumps(doc)) is None


def test_spot_takes_each_zones_latest_price_then_the_lowest_zone():
    entries = [spot("m5.large", "us-east-1a", "0.0500", hours_ago=2),
               spot("m5.large", "us-east-1a", "0.0450"),
               spot("m5.large", "us-east-1b", "0.0400", hours_ago=1),
               spot("m5.large", "us-east-1c", "0.0100", hours_ago=3),
               spot("m5.large", "us-east-1c", "0.0600", hours_ago=1),
               {**spot("c5.large", "us-east-1a", "0.0100"), "ProductDescription": "Windows"},
               spot("t3.nano", "us-east-1a", "0")]
    assert lowest_latest_spot(entries) == {"m5.large": 0.04}


# ---------------------------------------------------------------------------------------------------
# refresh() with fake clients


def test_refresh_writes_pricing_api_prices_and_keeps_other_regions(tmp_path):
    client, stubber = stubbed_pricing()
    cache = tmp_path / "catalog"
    lines = refresh(["us-east-1"], cache_dir=cache, clients=factory(FakeEC2(FAKE_TYPES, FAKE_SPOT), client),
                    now=NOW)
    stubber.assert_no_pending_responses()
    assert lines[0] == "us-east-1: 4 instance types, 4 spot prices, 2 on-demand prices (Pricing API)"
    assert not [line for line in lines if line.startswith("warning:")]

    rows = {(r["instance_type"], r["region"]): r for r in read_rows(cache / "aws_instances.csv")}
    assert rows[("m5.large", "us-east-1")]["ondemand_usd_per_hour"] == "0.096"
    assert rows[("m5.large", "us-east-1")]["category"] == "General purpose"
    g5 = rows[("g5.xlarge", "us-east-1")]
    assert (g5["gpu_count"], g5["gpu_model"], g5["gpu_memory_gib"], g5["ondemand_usd_per_hour"]) == \
        ("1", "A10G", "22.352", "1.006")
    assert rows[("c7i.large", "us-east-1")]["ondemand_usd_per_hour"] == ""   # the API gave 0: no price
    assert rows[("zz9.large", "us-east-1")]["arch"] == "arm64"
    # Regions not refreshed keep their bundled rows, so the catalog does not shrink to us-east-1.
    assert rows[("m5.large", "eu-west-1")]["spec_source"] == "moto-5.2.5"
    spot_rows = {(r["instance_type"], r["region"]): r for r in read_rows(cache / "aws_spot_prices.csv")}
    assert spot_rows[("m5.large", "us-east-1")] == {"instance_type": "m5.large", "region": "us-east-1",
                                                    "az": "", "spot_usd_per_hour": "0.035"}
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["fetched_at"] == "2026-09-01T12:00:00Z"
    assert meta["regions"] == ["us-east-1"]
    assert meta["counts"]["us-east-1"] == {"instance_types": 4, "spot_prices": 4, "ondemand_prices": 2}
    assert "eu-west-1" in meta["carried_over_regions"] and meta["warnings"] == []

    catalog = load_catalog(cache=cache, now=NOW.timestamp())
    assert catalog.warnings == [] and str(cache) in catalog.source
    assert catalog.find("m5.large", "us-east-1", ON_DEMAND).price == 0.096
    assert catalog.find("m5.large", "us-east-1", SPOT).price == 0.035
    c7i = catalog.find("c7i.large", "us-east-1", SPOT)   # spot offer without an on-demand price
    assert c7i is not None and c7i.ondemand_price is None
    assert catalog.find("c7i.large", "us-east-1", ON_DEMAND) is None
    assert catalog.find("m5.large", "eu-west-1", ON_DEMAND) is not None


def test_pricing_failure_keeps_previous_cache_then_bundled_prices(tmp_path):
    cache = tmp_path / "catalog"
    # A previous cache that knew an on-demand price for zz9.large, which the bundled data lacks.
    client, _ = stubbed_pricing()
    refresh(["us-east-1"], cache_dir=cache, clients=factory(FakeEC2(FAKE_TYPES, FAKE_SPOT), client), now=NOW)
    rows = read_rows(cache / "aws_instances.csv")
    for r in rows:
        if r["instance_type"] == "zz9.large":
            r["ondemand_usd_per_hour"] = "0.077"
    with open(cache / "aws_instances.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    pricing = FailingPricing()
    types = FAKE_TYPES + [itype("yy1.large", 2, 4096)]
    lines = refresh(["us-east-1", "us-west-2"], cache_dir=cache, clients=factory_any_region(
        FakeEC2(types, FAKE_SPOT), pricing), now=NOW)
    assert pricing.calls == 1   # not asked again for the second region
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 2 and "us-east-1: the Pricing API failed (EndpointConnectionError" in warnings[0]
    rows = {(r["instance_type"], r["region"]): r for r in read_rows(cache / "aws_instances.csv")}
    assert rows[("zz9.large", "us-east-1")]["ondemand_usd_per_hour"] == "0.077"   # previous cache
    assert rows[("c7i.large", "us-east-1")]["ondemand_usd_per_hour"] == "0.08925"  # bundled
    assert rows[("m5.large", "us-west-2")]["ondemand_usd_per_hour"] == "0.096"      # bundled
    assert rows[("yy1.large", "us-east-1")]["ondemand_usd_per_hour"] == ""          # known nowhere
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["regions"] == ["us-east-1", "us-west-2"] and len(meta["warnings"]) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["catalog"]   # no temp or old dirs left behind


def factory_any_region(ec2: object, pricing: object):
    return lambda service, region: {"ec2": ec2, "pricing": pricing}[service]


def test_ec2_failure_fails_the_refresh_and_leaves_the_cache(tmp_path):
    cache = tmp_path / "catalog"
    client, _ = stubbed_pricing()
    refresh(["us-east-1"], cache_dir=cache, clients=factory(FakeEC2(FAKE_TYPES, FAKE_SPOT), client), now=NOW)
    before = {p.name: p.read_bytes() for p in cache.iterdir()}
    denied = ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}},
                         "DescribeInstanceTypes")
    with pytest.raises(RefreshError, match="us-east-1: DescribeInstanceTypes failed") as failed:
        refresh(["us-east-1"], cache_dir=cache,
                clients=factory(FakeEC2([], [], error=denied), FailingPricing()))
    assert failed.value.code == "UnauthorizedOperation" and failed.value.exit_code == 1
    assert {p.name: p.read_bytes() for p in cache.iterdir()} == before
    with pytest.raises(RefreshError, match="no region"):
        refresh([], cache_dir=cache)


# ---------------------------------------------------------------------------------------------------
# Against moto, through the console script


@pytest.fixture(scope="module")
def moto_url_for_refresh(moto_url: str) -> str:
    """The session's moto server (tests/conftest_moto.py)."""
    return moto_url


@pytest.fixture(scope="module")
def moto_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("refresh-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVISIONER_", "XDG_", "AWS_"))}
    env.update(DUMMY_CREDENTIALS)
    env.update({"XDG_CACHE_HOME": str(home / "cache"), "XDG_CONFIG_HOME": str(home / "config"),
                "XDG_STATE_HOME": str(home / "state"), "AWS_DEFAULT_REGION": "us-east-1",
                # moto answers GetProducts with HTTP 500: do not spend botocore's back-off on it.
                "PROVISIONER_AWS_MAX_ATTEMPTS": "1"})
    return env


@pytest.fixture(scope="module")
def refresh_cli(moto_url_for_refresh: str,
                moto_home: dict[str, str]) -> tuple[subprocess.CompletedProcess, Path]:
    result = subprocess.run([provisioner_exe(), "catalog", "refresh", "--region", "us-east-1",
                             "--endpoint-url", moto_url_for_refresh], capture_output=True, text=True,
                            env=moto_home, timeout=120)
    return result, Path(moto_home["XDG_CACHE_HOME"]) / "provisioner" / "catalog"


def test_cli_refresh_against_moto_exits_0_and_warns_about_pricing(refresh_cli):
    result, cache = refresh_cli
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("us-east-1: 1395 instance types, ")   # moto's whole type list
    assert any(line.startswith("warning: us-east-1: the Pricing API failed") for line in result.stderr.splitlines())
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["regions"] == ["us-east-1"] and meta["counts"]["us-east-1"]["instance_types"] == 1395
    assert meta["counts"]["us-east-1"]["spot_prices"] > 500


def test_moto_cache_is_preferred_with_moto_specs_and_bundled_ondemand_prices(refresh_cli):
    _, cache = refresh_cli
    catalog = load_catalog(cache=cache)
    assert catalog.warnings == [] and str(cache) in catalog.source
    m5 = catalog.find("m5.large", "us-east-1", SPOT)
    assert (m5.vcpu, m5.memory_gib, m5.arch, m5.price) == (2, 8.0, "x86_64", MOTO_SPOT_PRICE)
    assert catalog.find("m5.large", "us-east-1", ON_DEMAND).price == 0.096   # kept from bundled data
    assert catalog.find("m5.large", "eu-west-1", ON_DEMAND).price > 0        # region kept from bundled


def test_moto_specs_equal_the_bundled_rows_derived_from_the_same_moto_data(refresh_cli):
    # The bundled specs were built from moto 5.2.5's DescribeInstanceTypes data by the same rules
    # (data/SOURCES.md), so every column derived here must agree for those rows.
    _, cache = refresh_cli
    cols = ("family", "arch", "vcpu", "memory_gib", "gpu_count", "gpu_model", "gpu_manufacturer",
            "gpu_memory_gib", "accelerator_model", "accelerator_count", "burstable")
    fresh = {r["instance_type"]: r for r in read_rows(cache / "aws_instances.csv")
             if r["region"] == "us-east-1"}
    bundled = [r for r in read_rows(bundled_dir() / "aws_instances.csv")
               if r["region"] == "us-east-1" and r["spec_source"] == "moto-5.2.5"]
    assert len(bundled) > 600
    mismatches = [(r["instance_type"], c, r[c], fresh[r["instance_type"]][c])
                  for r in bundled if r["instance_type"] in fresh for c in cols
                  if r[c] != fresh[r["instance_type"]][c]]
    assert mismatches == []
    assert fresh["inf2.xlarge"]["accelerator_model"] == "Inferentia2"
    assert fresh["m5.large"]["spec_source"] == "aws-describe-instance-types"


def test_cli_catalog_show_reads_the_refreshed_cache(refresh_cli, moto_home):
    result, _ = refresh_cli
    assert result.returncode == 0, result.stderr
    show = subprocess.run([provisioner_exe(), "catalog", "show", "--filter", "vcpu>=2", "--json"],
                          capture_output=True, text=True, env=moto_home, timeout=60)
    assert show.returncode == 0, show.stderr
    offers = json.loads(show.stdout)
    assert offers and all(o["vcpu"] >= 2 for o in offers)
    assert any(o["market"] == SPOT and o["price"] == MOTO_SPOT_PRICE for o in offers)
    assert "no refreshed cache" not in show.stderr


# ---------------------------------------------------------------------------------------------------
# Cache states seen by load_catalog


def copy_cache(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def test_stale_cache_warns_but_still_loads(refresh_cli, tmp_path):
    cache = copy_cache(refresh_cli[1], tmp_path / "catalog")
    meta = json.loads((cache / "meta.json").read_text())
    meta["fetched_at"] = (datetime.now(timezone.utc) - timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    (cache / "meta.json").write_text(json.dumps(meta))
    catalog = load_catalog(cache=cache)
    assert len(catalog.warnings) == 1 and "stale" in catalog.warnings[0]
    assert catalog.find("m5.large", "us-east-1", SPOT).price == MOTO_SPOT_PRICE


def test_missing_cache_warns_and_uses_bundled_data(tmp_path):
    catalog = load_catalog(cache=tmp_path / "absent")
    assert len(catalog.warnings) == 1 and "no refreshed cache" in catalog.warnings[0]
    assert catalog.source.startswith("bundled")
    assert catalog.find("m5.large", "us-east-1", ON_DEMAND).price == 0.096


def test_corrupt_meta_is_treated_as_a_missing_cache(refresh_cli, tmp_path):
    cache = copy_cache(refresh_cli[1], tmp_path / "catalog")
    (cache / "meta.json").write_text('{"fetched_at": "2026-')
    catalog = load_catalog(cache=cache)
    assert len(catalog.warnings) == 1 and "no refreshed cache" in catalog.warnings[0]
    assert catalog.source.startswith("bundled")
    assert catalog.find("m5.large", "us-east-1", SPOT).price != MOTO_SPOT_PRICE
