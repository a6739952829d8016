"""Fixtures for the cloud adapters: a moto server, EC2 settings that moto can launch, and a
fault-injecting wrapper around boto3 clients (moto never produces capacity, quota or throttling
errors, so tests script them per operation)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from provisioner import aws
from provisioner.clouds.ec2 import Ec2Cloud
from provisioner.clouds.ec2_params import Ec2Settings
from tests.moto_server import DUMMY_CREDENTIALS

REGION = "us-east-1"
Fault = Callable[[dict], "dict | None"]   # gets the request kwargs; raises, returns a response, or None


@pytest.fixture(scope="session")
def ec2_moto_url(moto_url: str) -> str:
    """The session's moto server (tests/conftest_moto.py)."""
    return moto_url


@functools.lru_cache(maxsize=None)
def moto_client_factory(url: str) -> Callable[[str, str], Any]:
    """Clients through provisioner.aws (the one factory), pointed at moto with dummy credentials.

    One session and one client per (service, region): loading EC2's service model costs ~0.3 s."""
    session = boto3.session.Session(aws_access_key_id=DUMMY_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                    aws_secret_access_key=DUMMY_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                    aws_session_token=DUMMY_CREDENTIALS["AWS_SESSION_TOKEN"])

    @functools.lru_cache(maxsize=None)
    def make(service: str, region: str) -> Any:
        return aws.client(service, region=region, endpoint_url=url, max_attempts=1, session=session)
    return make


def _image(ec2: Any, pattern: str, arch: str, root: str) -> str:
    images = ec2.describe_images(Filters=[{"Name": "name", "Values": [pattern]},
                                          {"Name": "architecture", "Values": [arch]}])["Images"]
    found = sorted(i["ImageId"] for i in images if i.get("RootDeviceName") == root)
    assert found, f"moto knows no {arch} image named {pattern} with root {root}"
    return found[0]


@pytest.fixture(scope="session")
def moto_images(ec2_moto_url: str) -> dict[str, str]:
    """AMIs that moto knows, looked up by name (so a moto upgrade cannot break the tests). The GPU
    slot gets an image whose root device is /dev/sda1, so the root-device lookup is exercised."""
    ec2 = moto_client_factory(ec2_moto_url)("ec2", REGION)
    return {"x86_64": _image(ec2, "al2023-ami-2023*", "x86_64", "/dev/xvda"),
            "arm64": _image(ec2, "al2023-ami-2023*", "arm64", "/dev/xvda"),
            "gpu_x86_64": _image(ec2, "Deep Learning AMI Ubuntu*", "x86_64", "/dev/sda1")}


@pytest.fixture
def moto_world(ec2_moto_url: str, moto_images: dict[str, str]) -> dict[str, Any]:
    """Two default subnets (two AZs) and the default security group: asked per test, because another
    suite's moto reset recreates the default VPC with new ids."""
    ec2 = moto_client_factory(ec2_moto_url)("ec2", REGION)
    subnets = sorted(ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"],
                     key=lambda s: s["AvailabilityZone"])[:2]
    group = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    return {"subnets": [s["SubnetId"] for s in subnets], "azs": [s["AvailabilityZone"] for s in subnets],
            "security_group": group, "images": moto_images}


@pytest.fixture
def ec2_settings(moto_world: dict[str, Any]) -> Ec2Settings:
    return Ec2Settings.from_config({
        "subnets": moto_world["subnets"], "security_groups": [moto_world["security_group"]],
        "instance_profile": "provisioner-instance", "images": {REGION: moto_world["images"]},
        "extra_tags": {"cost-center": "ds-team"}}, regions=[REGION])


class FaultyClient:
    """A boto3 client whose operations run scripted faults first. `faults[op]` is a list consumed one
    per call; a fault raises (a ClientError, as AWS would), returns a response (moto not called), or
    returns None (moto answers). Every request is recorded in `requests`."""

    def __init__(self, real: Any, faults: dict[str, list[Fault]] | None = None):
        self._real = real
        self.faults = faults if faults is not None else {}
        self.requests: list[tuple[str, dict]] = []

    def __getattr__(self, operation: str) -> Callable[..., dict]:
        real = getattr(self._real, operation)

        def call(**kwargs: Any) -> dict:
            self.requests.append((operation, kwargs))
            queue = self.faults.get(operation)
            if queue:
                response = queue.pop(0)(kwargs)
                if response is not None:
                    return response
            return real(**kwargs)
        return call

    def sent(self, operation: str) -> list[dict]:
        return [kw for op, kw in self.requests if op == operation]


def aws_error(code: str, message: str = "injected", operation: str = "CreateFleet") -> Fault:
    def fault(_: dict) -> dict:
        raise ClientError({"Error": {"Code": code, "Message": message}}, operation)
    return fault


def fleet_errors(code: str, message: str = "injected") -> Fault:
    """An instant fleet that launched nothing: one error per override, as EC2 reports them."""
    def fault(request: dict) -> dict:
        market = request["TargetCapacitySpecification"]["DefaultTargetCapacityType"]
        config = request["LaunchTemplateConfigs"][0]
        return {"FleetId": "fleet-injected", "Instances": [], "Errors": [
            {"LaunchTemplateAndOverrides": {"LaunchTemplateSpecification": config["LaunchTemplateSpecification"],
                                            "Overrides": override},
             "Lifecycle": market, "ErrorCode": code, "ErrorMessage": message}
            for override in config["Overrides"]]}
    return fault


def only_for(market: str, fault: Fault) -> Fault:
    """Apply `fault` to a CreateFleet of this market; let moto answer the others."""
    def conditional(request: dict) -> dict | None:
        if request["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == market:
            return fault(request)
        return None
    return conditional


class Harness:
    """An Ec2Cloud on moto through FaultyClients, with recorded sleeps and a controllable clock."""

    def __init__(self, url: str, settings: Ec2Settings, faults: dict[str, list[Fault]] | None = None):
        make = moto_client_factory(url)
        self.faults = faults if faults is not None else {}
        self.clients: dict[str, FaultyClient] = {}
        self.sleeps: list[float] = []
        self.now = 0.0

        def clients(service: str, region: str) -> FaultyClient:
            self.clients[region] = FaultyClient(make(service, region), self.faults)
            return self.clients[region]
        from provisioner.clouds.base import BlockedOffers
        import random
        self.cloud = Ec2Cloud(clients, settings, blocked=BlockedOffers(ttl_s=600, clock=lambda: self.now),
                              sleep=self.sleeps.append, rng=random.Random(7))
        self.raw = make("ec2", REGION)

    @property
    def client(self) -> FaultyClient:
        return self.clients[REGION]


@pytest.fixture
def harness(ec2_moto_url: str, ec2_settings: Ec2Settings) -> Callable[..., Harness]:
    return lambda faults=None, settings=None: Harness(ec2_moto_url, settings or ec2_settings, faults)


@pytest.fixture
def owner() -> str:
    """A fresh owner id per test: describe-by-owner sees only this test's instances (no moto reset)."""
    return f"test-{uuid.uuid4().hex[:10]}"
