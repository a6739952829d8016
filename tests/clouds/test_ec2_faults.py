"""The EC2 adapter under faults moto never produces, injected per operation by a wrapper around
the real (moto-backed) boto3 client: capacity, quotas, throttling, auth, eventual consistency."""

from __future__ import annotations

import boto3
import pytest

from provisioner import aws
from provisioner.catalog.model import ON_DEMAND, SPOT
from provisioner.clouds.base import CloudError
from provisioner.clouds.ec2 import Ec2Cloud
from provisioner.clouds.pacing import Backoff, grouper
from tests.clouds.conftest import aws_error, fleet_errors, only_for
from tests.clouds.test_ec2_moto import make_spec, spot_candidates
from tests.factories import offer

SPOT_KEYS = {(t, "us-east-1", SPOT) for t in ("m5.large", "c5.xlarge", "r5.large")}


@pytest.mark.parametrize("fault", [
    fleet_errors("InsufficientInstanceCapacity"), fleet_errors("UnfulfillableCapacity"),
    fleet_errors("SpotMaxPriceTooLow"), aws_error("InsufficientInstanceCapacity"),
    fleet_errors("MaxSpotInstanceCountExceeded"),
], ids=["fleet-insufficient", "fleet-unfulfillable", "fleet-price", "exception-insufficient",
        "spot-count-quota"])
def test_spot_failure_falls_back_to_on_demand_and_blocks_the_spot_offers(harness, owner, fault):
    h = harness({"create_fleet": [only_for(SPOT, fault)]})
    inst = h.cloud.launch(make_spec(owner))
    assert inst.market == ON_DEMAND and inst.instance_type in {"m5.large", "c5.xlarge", "r5.large"}
    fleets = h.client.sent("create_fleet")
    assert [f["TargetCapacitySpecification"]["DefaultTargetCapacityType"] for f in fleets] == [SPOT, ON_DEMAND]
    assert fleets[0]["ClientToken"] != fleets[1]["ClientToken"]
    assert h.cloud.blocked.current() == SPOT_KEYS
    assert h.cloud.last_launch_calls["create_fleet"] == 2


def test_spot_only_never_falls_back(harness, owner):
    h = harness({"create_fleet": [fleet_errors("InsufficientInstanceCapacity")]})
    with pytest.raises(CloudError) as err:
        h.cloud.launch(make_spec(owner, spot_only=True))
    assert err.value.kind == "capacity" and err.value.code == "InsufficientInstanceCapacity"
    assert set(err.value.offers) == SPOT_KEYS == h.cloud.blocked.current()
    assert len(h.client.sent("create_fleet")) == 1
    assert h.cloud.describe(owner) == []                       # nothing left running
    assert h.cloud.errors["InsufficientInstanceCapacity"] == 6  # 3 types x 2 subnets, counted by code


def test_only_the_named_types_are_blocked(harness, owner):
    def one_type(request):
        response = fleet_errors("InsufficientInstanceCapacity")(request)
        response["Errors"] = [e for e in response["Errors"]
                              if e["LaunchTemplateAndOverrides"]["Overrides"]["InstanceType"] == "c5.xlarge"]
        return response
    h = harness({"create_fleet": [one_type]})
    with pytest.raises(CloudError):
        h.cloud.launch(make_spec(owner, spot_only=True))
    assert h.cloud.blocked.current() == {("c5.xlarge", "us-east-1", SPOT)}


def test_blocked_offers_expire_and_all_blocked_fails_without_calls(harness, owner):
    h = harness({"create_fleet": [fleet_errors("InsufficientInstanceCapacity")]})
    with pytest.raises(CloudError):
        h.cloud.launch(make_spec(owner, spot_only=True, token="1"))
    h.cloud.calls.clear()
    with pytest.raises(CloudError, match="every candidate offer is blocked") as err:
        h.cloud.launch(make_spec(owner, spot_only=True, token="2"))
    assert err.value.kind == "capacity" and sum(h.cloud.calls.values()) == 0
    h.now += 601                                                # the TTL passed: tried again
    assert h.cloud.launch(make_spec(owner, spot_only=True, token="3")).market == SPOT


def test_partial_errors_with_an_instance_are_a_success_and_block_nothing(harness, owner):
    h = harness()

    def noisy(request):                     # moto launches; EC2 would also report the pools it skipped
        response = h.raw.create_fleet(**request)
        response["Errors"] = [{"ErrorCode": "InsufficientInstanceCapacity", "Lifecycle": "spot",
                               "LaunchTemplateAndOverrides": {"Overrides": {"InstanceType": "r5.large"}}}]
        return response
    h.faults["create_fleet"] = [noisy]
    inst = h.cloud.launch(make_spec(owner))
    assert inst.market == SPOT and h.cloud.blocked.current() == frozenset()
    assert h.cloud.errors["InsufficientInstanceCapacity"] == 1


@pytest.mark.parametrize("candidates,needle", [
    ((offer("m5.large"), offer("c5.large")),
     "'Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances (L-1216C47A)'"),
    ((offer("g5.xlarge", gpus=1), offer("g6.xlarge", gpus=1)),
     "'Running On-Demand G and VT instances (L-DB2E81BA)'"),
], ids=["standard", "gpu"])
def test_vcpu_quota_names_the_service_quota_to_raise(harness, owner, candidates, needle):
    h = harness({"create_fleet": [fleet_errors("VcpuLimitExceeded", "You have requested more vCPU "
                                               "capacity than your current vCPU limit of 32 allows")]})
    with pytest.raises(CloudError) as err:
        h.cloud.launch(make_spec(owner, *candidates))
    assert err.value.kind == "quota" and err.value.code == "VcpuLimitExceeded"
    assert needle in str(err.value) and "Service Quotas" in str(err.value)


def test_spot_count_quota_on_a_spot_only_request(harness, owner):
    h = harness({"create_fleet": [aws_error("MaxSpotInstanceCountExceeded")]})
    with pytest.raises(CloudError) as err:
        h.cloud.launch(make_spec(owner, spot_only=True))
    assert err.value.kind == "quota"
    assert "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests (L-34B43A08)" in str(err.value)


def test_quota_outranks_capacity_when_every_round_failed(harness, owner):
    h = harness({"create_fleet": [fleet_errors("InsufficientInstanceCapacity"), fleet_errors("VcpuLimitExceeded")]})
    with pytest.raises(CloudError) as err:
        h.cloud.launch(make_spec(owner))
    assert err.value.kind == "quota" and len(err.value.offers) == 6


def test_throttling_is_retried_with_bounded_full_jitter_then_succeeds(harness, owner):
    h = harness({"create_fleet": [aws_error("RequestLimitExceeded"), aws_error("RequestLimitExceeded")]})
    assert h.cloud.launch(make_spec(owner)).market == SPOT
    assert h.cloud.last_launch_calls["create_fleet"] == 3
    assert len(h.sleeps) == 2 and 0 <= h.sleeps[0] <= 0.5 and 0 <= h.sleeps[1] <= 1.0
    fleets = h.client.sent("create_fleet")
    assert len({f["ClientToken"] for f in fleets}) == 1           # a retry is the same request


def test_throttling_exhausted_is_a_throttle_error(harness, owner):
    h = harness({"create_fleet": [aws_error("RequestLimitExceeded")] * 6})
    with pytest.raises(CloudError, match="kept throttling") as err:
        h.cloud.launch(make_spec(owner))
    assert err.value.kind == "throttle" and err.value.code == "RequestLimitExceeded"
    assert h.cloud.calls["create_fleet"] == 6 and len(h.sleeps) == 5
    assert h.cloud.blocked.current() == frozenset()              # not the offers' fault


def test_backoff_numbers():
    import random
    b, rng = Backoff(), random.Random(1)
    caps = [min(b.cap_s, b.base_s * 2 ** n) for n in range(b.attempts - 1)]
    assert caps == [0.5, 1.0, 2.0, 4.0, 8.0] and sum(caps) == 15.5
    assert all(0 <= b.delay(n, rng) <= cap for n, cap in enumerate(caps))
    assert list(grouper(range(5), 2)) == [[0, 1], [2, 3], [4]] and list(grouper([], 3)) == []


@pytest.mark.parametrize("code,message,needle", [
    ("AuthFailure", "AWS was not able to validate the provided access credentials", "check the credentials"),
    ("UnauthorizedOperation", "You are not authorized to perform this operation. Encoded authorization "
     "failure message: AbCdEf123", "decode-authorization-message"),
], ids=["auth-failure", "unauthorized"])
def test_auth_errors_are_clear_and_not_retried(harness, owner, code, message, needle):
    h = harness({"create_launch_template": [aws_error(code, message, "CreateLaunchTemplate")]})
    with pytest.raises(CloudError) as err:
        h.cloud.launch(make_spec(owner))
    assert err.value.kind == "auth" and needle in str(err.value)
    assert "AbCdEf123" not in str(err.value) and h.sleeps == []


def test_unauthorized_inside_the_fleet_errors_is_auth_not_capacity(harness, owner):
    h = harness({"create_fleet": [fleet_errors("UnauthorizedOperation", "not authorized to iam:PassRole")]})
    with pytest.raises(CloudError) as err:
        h.cloud.launch(make_spec(owner))
    assert err.value.kind == "auth" and h.cloud.blocked.current() == frozenset()
    assert len(h.client.sent("create_fleet")) == 1


def test_no_credentials_is_an_auth_error(ec2_settings, owner, monkeypatch, tmp_path, ec2_moto_url):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")    # never ask 169.254.169.254 from a test
    cloud = Ec2Cloud(lambda service, region: aws.client(service, region=region, endpoint_url=ec2_moto_url,
                                                        max_attempts=1, session=boto3.session.Session()),
                     ec2_settings)
    with pytest.raises(CloudError, match="no AWS credentials found") as err:
        cloud.launch(make_spec(owner))
    assert err.value.kind == "auth" and err.value.code == "NoCredentials"


def test_a_new_instance_invisible_at_first_is_described_again(harness, owner):
    h = harness({"describe_instances": [aws_error("InvalidInstanceID.NotFound",
                                                  "The instance ID 'i-1' does not exist", "DescribeInstances")]})
    inst = h.cloud.launch(make_spec(owner))
    assert inst.address and h.cloud.last_launch_calls["describe_instances"] == 2 and h.sleeps == [1.0]


def test_a_new_instance_never_visible_is_returned_from_the_fleet_answer(harness, owner):
    not_found = aws_error("InvalidInstanceID.NotFound", "The instance ID 'i-1' does not exist", "DescribeInstances")
    h = harness({"describe_instances": [not_found, not_found]})
    inst = h.cloud.launch(make_spec(owner))
    assert inst.state == "pending" and inst.market == SPOT and inst.instance_type in {o.instance_type
                                                                                      for o in spot_candidates()}
    assert h.cloud.last_launch_calls["describe_instances"] == 2


def test_terminate_throttled_then_done(harness, owner):
    h = harness()
    inst = h.cloud.launch(make_spec(owner))
    h.faults["terminate_instances"] = [aws_error("RequestLimitExceeded", operation="TerminateInstances")]
    h.cloud.terminate([inst.id])
    assert h.cloud.describe(owner) == [] and len(h.sleeps) == 1
