"""Quota classes against real catalog types, and the Service Quotas reader against a stub serving
recorded GetServiceQuota answers (moto implements Service Quotas only for VPC)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from provisioner import aws
from provisioner.clouds.service_quotas import read_quotas
from provisioner.quotas import (CLASSES, QUOTA_CODES, class_limits, config_problem, quota_class, quota_key,
                                usage_by_class)
from tests.clouds.quota_stub import QuotaStub as _QuotaStub, quota_stub

CATALOG = Path(__file__).resolve().parents[2] / "provisioner" / "catalog" / "data" / "aws_instances.csv"


@pytest.mark.parametrize("itype, cls", [
    ("m5.large", "standard"), ("t3.micro", "standard"), ("c7gn.16xlarge", "standard"), ("r7iz.large", "standard"),
    ("i3en.large", "standard"), ("im4gn.large", "standard"), ("is4gen.medium", "standard"), ("z1d.large", "standard"),
    ("a1.large", "standard"), ("d3en.xlarge", "standard"), ("h1.2xlarge", "standard"), ("cr1.8xlarge", "standard"),
    ("inf1.xlarge", "inf"), ("inf2.xlarge", "inf"), ("trn1.2xlarge", "trn"), ("trn1n.32xlarge", "trn"),
    ("dl1.24xlarge", "dl"), ("dl2q.24xlarge", "dl"), ("f1.2xlarge", "f"), ("g5.xlarge", "g"),
    ("g4dn.xlarge", "g"), ("gr6.4xlarge", "g"), ("vt1.3xlarge", "g"), ("p4d.24xlarge", "p"), ("p3.2xlarge", "p"),
    ("x2iedn.xlarge", "x"), ("x1e.xlarge", "x"), ("u-6tb1.metal", "high-memory"),
    ("u7i-12tb.224xlarge", "high-memory"), ("hpc6a.48xlarge", "hpc"),
    ("mac1.metal", None), ("nonsense", None), ("", None),
], ids=lambda v: str(v))
def test_quota_class_of_real_types(itype, cls):
    assert quota_class(itype) == cls


def test_every_type_of_the_bundled_catalog_has_a_class_and_the_named_ones_are_in_it():
    with open(CATALOG, newline="") as f:
        types = {row["instance_type"] for row in csv.DictReader(f)}
    assert {t for t in types if quota_class(t) is None} == set()
    for t in ("inf2.xlarge", "trn1.2xlarge", "dl1.24xlarge", "f1.2xlarge", "g5.xlarge", "vt1.3xlarge",
              "p4d.24xlarge", "x2iedn.xlarge", "u-6tb1.112xlarge"):
        assert t in types, t
    assert {quota_class(t) for t in types} == set(CLASSES)


def test_spot_and_on_demand_are_counted_apart_per_region():
    used = usage_by_class([("m5.large", "spot", "us-east-1", 2), ("c5.xlarge", "on-demand", "us-east-1", 4),
                           ("m5.large", "spot", "us-east-1", 2), ("g5.xlarge", None, "us-west-2", 4),
                           ("mac1.metal", "on-demand", "us-east-1", 12)])
    assert used == {("us-east-1", "standard", "spot"): 4, ("us-east-1", "standard", "on-demand"): 4,
                    ("us-west-2", "g", "on-demand"): 4}
    assert quota_key("u-6tb1.metal", "spot") == ("high-memory", "spot")


def test_limits_are_the_smaller_of_the_cap_and_the_account_share():
    limits = class_limits({"spot": {"standard": 16}, "on-demand": {"g": 100}},
                          {("us-east-1", "standard", "spot"): 32, ("us-east-1", "g", "on-demand"): 8,
                           ("us-east-1", "p", "on-demand"): 0}, ["us-east-1"], share=0.5)
    assert limits == {("us-east-1", "standard", "spot"): 16, ("us-east-1", "g", "on-demand"): 4,
                      ("us-east-1", "p", "on-demand"): 0}


@pytest.mark.parametrize("bad, word", [
    ([1], "market"), ({"ondemand": {}}, "market must be"), ({"spot": {"q": 1}}, "unknown quota class"),
    ({"spot": {"standard": -1}}, ">= 0"), ({"spot": 5}, "must map a quota class"),
])
def test_bad_class_caps_are_named(bad, word):
    assert word in config_problem(bad)


def test_reader_reads_every_class_falls_back_to_defaults_and_reports_what_it_could_not_read(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with quota_stub() as url:
        quotas = read_quotas(lambda region: aws.client("service-quotas", region=region, endpoint_url=url,
                                                       max_attempts=1), ["us-east-1"])
    assert quotas.limits[("us-east-1", "standard", "on-demand")] == 64
    assert quotas.limits[("us-east-1", "standard", "spot")] == 32
    assert quotas.limits[("us-east-1", "g", "spot")] == 8
    assert quotas.limits[("us-east-1", "inf", "on-demand")] == 0
    assert quotas.limits[("us-east-1", "x", "on-demand")] == 5              # the AWS default
    assert ("us-east-1", "hpc", "on-demand") not in quotas.limits
    assert quotas.problems == ("us-east-1 L-F7808C92: AccessDeniedException",)
    asked = {code for op, code in _QuotaStub.calls if op == "GetServiceQuota"}
    assert asked == set(QUOTA_CODES.values())
    assert ("GetAWSDefaultServiceQuota", "L-7295265B") in _QuotaStub.calls


def test_reader_without_an_endpoint_reports_and_plans_without_quotas(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    quotas = read_quotas(lambda region: aws.client("service-quotas", region=region, max_attempts=1,
                                                   endpoint_url="http://127.0.0.1:9", connect_timeout_s=0.5),
                         ["us-east-1"])
    assert quotas.limits == {}
    [problem] = quotas.problems                   # one failed call, not eighteen
    assert problem.startswith("us-east-1 L-1216C47A: ") and problem.endswith("the other classes were not asked")
