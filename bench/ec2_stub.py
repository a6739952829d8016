"""An in-process EC2 (and SSM) client for benchmarks that count API calls through the real adapter.

It answers the operations `provisioner.clouds.ec2.Ec2Cloud` sends, the way EC2 does in shape (an
instant fleet returns its instance ids; tags from the request's TagSpecifications land on the
instances; describe filters by owner tag and state), with no latency and no capacity errors, and
counts every call by operation. moto would do the same over HTTP, but a tick of 800 launches there
measures moto; here the figure is the number of calls, which is what the benchmark reports.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from provisioner.clouds.base import Instance

IMAGES = {"x86_64": "ami-0000000000000a001", "arm64": "ami-0000000000000a002",
          "gpu_x86_64": "ami-0000000000000a003", "gpu_arm64": "ami-0000000000000a004"}


def ec2_section(region: str) -> dict:
    """The config's `ec2` section this stub accepts."""
    return {"subnets": ["subnet-0a", "subnet-0b"], "security_groups": ["sg-0a"], "images": {region: dict(IMAGES)}}


class StubEc2:
    def __init__(self, region: str, existing: list[Instance] = ()):
        self.region = region
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()                 # the adapter sends batches from several threads
        self.launched = 0
        self._ids = (f"i-{n:017x}" for n in itertools.count(0x100000))
        self._vols = (f"vol-{n:017x}" for n in itertools.count(0x100000))
        self._live: dict[str, dict] = {i.id: self._item(i.id, i.instance_type, i.market, i.tags) for i in existing}

    def _item(self, iid: str, itype: str, market: str, tags: dict[str, str]) -> dict:
        item = {"InstanceId": iid, "InstanceType": itype, "State": {"Name": "running"},
                "LaunchTime": datetime.now(timezone.utc), "Placement": {"AvailabilityZone": self.region + "a"},
                "PrivateIpAddress": "10.0.0.1", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": next(self._vols)}}]}
        if market == "spot":
            item["InstanceLifecycle"] = "spot"
        return item

    # -- the operations the adapter sends (each under the lock) ---------------------------------
    def create_launch_template(self, **kw: Any) -> dict:
        with self.lock:
            self.calls["CreateLaunchTemplate"] += 1
            return {"LaunchTemplate": {"LaunchTemplateName": kw["LaunchTemplateName"]}}

    def describe_images(self, ImageIds: list[str]) -> dict:
        with self.lock:
            self.calls["DescribeImages"] += 1
            arch = {ami: ("arm64" if slot.endswith("arm64") else "x86_64") for slot, ami in IMAGES.items()}
            return {"Images": [{"ImageId": i, "Architecture": arch[i], "RootDeviceName": "/dev/xvda",
                                "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}]}
                               for i in ImageIds]}

    def create_fleet(self, **kw: Any) -> dict:
        with self.lock:
            self.calls["CreateFleet"] += 1
            target = kw["TargetCapacitySpecification"]
            market = target["DefaultTargetCapacityType"]
            itype = kw["LaunchTemplateConfigs"][0]["Overrides"][0]["InstanceType"]
            tags = {t["Key"]: t["Value"] for s in kw.get("TagSpecifications", []) if s["ResourceType"] == "instance"
                    for t in s["Tags"]}
            ids = [next(self._ids) for _ in range(int(target["TotalTargetCapacity"]))]
            self.launched += len(ids)
            for iid in ids:
                self._live[iid] = self._item(iid, itype, market, tags)
            return {"FleetId": "fleet-stub", "Errors": [],
                    "Instances": [{"InstanceIds": ids, "InstanceType": itype, "Lifecycle": market}]}

    def describe_instances(self, InstanceIds: list[str] | None = None, Filters: list | None = None,
                           **_: Any) -> dict:
        with self.lock:
            self.calls["DescribeInstances"] += 1
            if InstanceIds is not None:
                found = [self._live[i] for i in InstanceIds if i in self._live]
            else:
                owner = next(f["Values"][0] for f in Filters or [] if f["Name"].startswith("tag:"))
                found = [i for i in self._live.values()
                         if {"Key": "provisioner:owner", "Value": owner} in i["Tags"]]
            return {"Reservations": [{"Instances": found}]}

    def create_tags(self, Resources: list[str], Tags: list[dict]) -> dict:
        with self.lock:
            self.calls["CreateTags"] += 1
            for rid in Resources:
                if rid in self._live:
                    have = {t["Key"]: t["Value"] for t in self._live[rid]["Tags"]}
                    have.update({t["Key"]: t["Value"] for t in Tags})
                    self._live[rid]["Tags"] = [{"Key": k, "Value": v} for k, v in have.items()]
            return {}

    def terminate_instances(self, InstanceIds: list[str]) -> dict:
        with self.lock:
            self.calls["TerminateInstances"] += 1
            for iid in InstanceIds:
                self._live.pop(iid, None)
            return {}


class StubSsm:
    """The secret hand-over's PutParameter, counted."""

    def __init__(self, ec2: StubEc2):
        self.ec2 = ec2

    def put_parameter(self, **_: Any) -> dict:
        with self.ec2.lock:
            self.ec2.calls["ssm:PutParameter"] += 1
        return {}
