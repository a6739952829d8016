#!/usr/bin/env python3
"""Benchmark: EC2 API calls per launch, the `ec2` adapter against a naive RunInstances loop.

Starts a moto server on 127.0.0.1, then launches N instances twice, from the same seeded stream of
launch requests (3-6 ranked candidate types, spot or on-demand, two subnets in two AZs):
  adapter   provisioner.clouds.ec2.Ec2Cloud: one CreateFleet over every candidate x subnet, a spot
            -> on-demand fallback round on capacity errors, one DescribeInstances for the address
  baseline  RunInstances called directly, one candidate x subnet at a time in rank order, spot then
            on-demand, until one launches (what a script without CreateFleet does)
moto has no capacity errors, so with probability --fault-rate a launch meets "no spot capacity":
the adapter's spot CreateFleet answers with per-override InsufficientInstanceCapacity errors, and
every spot RunInstances of the baseline raises it. Both see the same seeded sequence of faults.
Target (issue 4): one launch call and at most two describes per launch.

Usage: bench/ec2_launch_calls.py [--seed N] [--launches N] [--fault-rate P]
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from provisioner import aws  # noqa: E402
from provisioner.catalog.model import ON_DEMAND, SPOT, Offer  # noqa: E402
from provisioner.clouds.base import BlockedOffers, LaunchSpec  # noqa: E402
from provisioner.clouds.ec2 import Ec2Cloud  # noqa: E402
from provisioner.clouds.ec2_params import Ec2Settings, launch_tags  # noqa: E402
from tests.moto_server import DUMMY_CREDENTIALS, MotoServer  # noqa: E402

REGION = "us-east-1"
TYPES = ["m5.large", "m5.xlarge", "c5.large", "c5.xlarge", "r5.large", "m6i.large", "c6i.large", "t3.large"]
USER_DATA = "#!/bin/bash\necho bench\n"
LAUNCH_OPS = {"create_fleet", "run_instances"}


def offer(instance_type: str, market: str) -> Offer:
    return Offer(instance_type=instance_type, family=instance_type.split(".")[0], region=REGION,
                 market=market, vcpu=2, memory_gib=8, arch="x86_64", price=0.05, ondemand_price=0.1)


class Faulty:
    """A boto3 client that answers 'no spot capacity' while `spot_down` is set, and counts calls."""

    def __init__(self, real: Any):
        self.real, self.spot_down, self.calls = real, False, Counter()

    def __getattr__(self, op: str):
        real = getattr(self.real, op)

        def call(**kw: Any) -> dict:
            self.calls[op] += 1
            if self.spot_down and op == "create_fleet" and \
                    kw["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == SPOT:
                overrides = kw["LaunchTemplateConfigs"][0]["Overrides"]
                return {"FleetId": "fleet-bench", "Instances": [], "Errors": [
                    {"LaunchTemplateAndOverrides": {"Overrides": o}, "Lifecycle": SPOT,
                     "ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "bench"} for o in overrides]}
            if self.spot_down and op == "run_instances" and "InstanceMarketOptions" in kw:
                raise ClientError({"Error": {"Code": "InsufficientInstanceCapacity", "Message": "bench"}}, "RunInstances")
            return real(**kw)
        return call


def world(client: Any) -> tuple[list[str], str, str]:
    subnets = sorted(client.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"],
                     key=lambda s: s["AvailabilityZone"])[:2]
    group = client.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    image = sorted(i["ImageId"] for i in client.describe_images(
        Filters=[{"Name": "name", "Values": ["al2023-ami-2023*"]},
                 {"Name": "architecture", "Values": ["x86_64"]}])["Images"])[0]
    return [s["SubnetId"] for s in subnets], group, image


def requests(seed: int, n: int, fault_rate: float) -> list[tuple[LaunchSpec, bool]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        types = rng.sample(TYPES, rng.randint(3, 6))
        market = SPOT if rng.random() < 0.7 else ON_DEMAND
        spec = LaunchSpec(candidates=tuple(offer(t, market) for t in types), user_data=USER_DATA,
                          tags={"provisioner:owner": f"bench-{seed}", "provisioner:run-id": f"r{i}"},
                          client_token=f"bench-{seed}-{i}-{time.time_ns()}")
        out.append((spec, market == SPOT and rng.random() < fault_rate))
    return out


def run_adapter(make, settings: Ec2Settings, work) -> tuple[list[Counter], list[float]]:
    clients: dict[str, Faulty] = {}

    def factory(service: str, region: str) -> Faulty:
        clients[region] = Faulty(make(service, region))
        return clients[region]
    cloud = Ec2Cloud(factory, settings, blocked=BlockedOffers(ttl_s=0))   # no carry-over between launches
    per, times = [], []
    for spec, spot_down in work:
        cloud._client(REGION).spot_down = spot_down
        t0 = time.perf_counter()
        cloud.launch(spec)
        times.append(time.perf_counter() - t0)
        per.append(Counter(cloud.last_launch_calls))
    return per, times


def run_baseline(client: Faulty, settings: Ec2Settings, image: str, work) -> tuple[list[Counter], list[float]]:
    """RunInstances per (candidate, subnet) in rank order, spot first, then on demand."""
    per, times = [], []
    for spec, spot_down in work:
        client.spot_down, before = spot_down, Counter(client.calls)
        tags = launch_tags(spec, settings)
        t0 = time.perf_counter()
        tries = [(o, m) for m in ([SPOT, ON_DEMAND] if spec.candidates[0].market == SPOT else [ON_DEMAND])
                 for o in spec.candidates]
        for o, market in tries:
            done = False
            for subnet in settings.subnets_in(REGION):
                kw: dict[str, Any] = dict(
                    ImageId=image, InstanceType=o.instance_type, MinCount=1, MaxCount=1, SubnetId=subnet,
                    UserData=base64.b64encode(USER_DATA.encode()).decode(),
                    SecurityGroupIds=list(settings.security_groups_in(REGION)),
                    MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 1},
                    InstanceInitiatedShutdownBehavior="terminate",
                    TagSpecifications=[{"ResourceType": r, "Tags": tags} for r in ("instance", "volume")])
                if market == SPOT:
                    kw["InstanceMarketOptions"] = {"MarketType": "spot"}
                try:
                    client.run_instances(**kw)
                    done = True
                    break
                except ClientError:
                    continue
            if done:
                break
        times.append(time.perf_counter() - t0)
        per.append(client.calls - before)
    return per, times


def summary(name: str, per: list[Counter], times: list[float]) -> str:
    total = [sum(c.values()) for c in per]
    launch = [sum(v for k, v in c.items() if k in LAUNCH_OPS) for c in per]
    describe = [sum(v for k, v in c.items() if k.startswith("describe_")) for c in per]
    ops = sum(per, Counter())
    return (f"{name:9s} calls/launch mean {statistics.mean(total):.2f} max {max(total)} | launch calls mean "
            f"{statistics.mean(launch):.2f} max {max(launch)} | describes mean {statistics.mean(describe):.2f} "
            f"max {max(describe)} | moto ms/launch median {statistics.median(times) * 1000:.1f}\n"
            f"{'':9s} by operation: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "0")) or random.randrange(1, 10**6))
    ap.add_argument("--launches", type=int, default=40)
    ap.add_argument("--fault-rate", type=float, default=0.25)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)     # the adapter's launch-failed warnings are expected here
    os.environ.update(DUMMY_CREDENTIALS)
    server = MotoServer()
    url = server.start()
    try:
        session = boto3.session.Session()
        cache: dict[tuple[str, str], Any] = {}

        def make(service: str, region: str) -> Any:
            if (service, region) not in cache:
                cache[(service, region)] = aws.client(service, region=region, endpoint_url=url,
                                                      max_attempts=1, session=session)
            return cache[(service, region)]
        subnets, group, image = world(make("ec2", REGION))
        settings = Ec2Settings.from_config({"subnets": subnets, "security_groups": [group],
                                            "images": {REGION: {"x86_64": image}}}, regions=[REGION])
        work = requests(args.seed, args.launches, args.fault_rate)
        faults = sum(f for _, f in work)
        print(f"seed {args.seed}: {args.launches} launches, 3-6 candidates x {len(subnets)} subnets, "
              f"{faults} with no spot capacity (rate {args.fault_rate}), moto at {url}")
        a_per, a_times = run_adapter(make, settings, work)
        b_per, b_times = run_baseline(Faulty(make("ec2", REGION)), settings, image, work)
        print(summary("adapter", a_per, a_times))
        print(summary("baseline", b_per, b_times))
        steady = [c for c, (_, f) in zip(a_per[1:], work[1:]) if not f]
        if steady:
            print(f"adapter steady state without faults: {dict(sorted(steady[0].items()))} "
                  f"(first launch: {dict(sorted(a_per[0].items()))})")
        faulted = [c for c, (_, f) in zip(a_per, work) if f]
        if faulted:
            print(f"adapter with a spot capacity fault: {dict(sorted(faulted[-1].items()))}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
