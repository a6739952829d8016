"""What EC2 answers, in our terms: AWS errors as CloudErrors that keep the code and say what to do,
DescribeInstances items and CreateFleet answers as Instances, and the adapter's structured log lines.
Pure: no I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from provisioner.catalog.model import SPOT, Offer
from provisioner.clouds import ec2_params as P
from provisioner.clouds.base import BATCH_NODES_TAG, BATCH_TAG, CloudError, Instance

def client_error(operation: str, region: str, code: str, message: str, kind: str) -> CloudError:
    if kind == "auth":
        hint = (" (decode the details with `aws sts decode-authorization-message`; the policy the "
                "daemon needs is provisioner/clouds/iam/daemon-policy.json)"
                if code == "UnauthorizedOperation" else "")
        return CloudError(f"AWS refused {operation} in {region}: check the credentials and the "
                          f"IAM policy{hint}: {message.split('Encoded authorization')[0].strip()}",
                          code=code, kind=kind)
    if kind == "throttle":
        return CloudError(f"EC2 kept throttling {operation} in {region} after retries; the next "
                          f"attempt will try again", code=code, kind=kind)
    return CloudError(f"{operation} failed in {region}: {message}", code=code, kind=kind)


def offer_error(code: str, message: str, offers: Sequence[Offer]) -> CloudError:
    kind = P.error_kind(code)
    keys = tuple(o.key for o in offers)
    if kind == "quota":
        return CloudError(P.quota_message(offers, code), code=code, kind=kind, offers=keys)
    return CloudError(f"no {offers[0].market} capacity in {offers[0].region} for "
                      f"{', '.join(o.instance_type for o in offers)}: {message}",
                      code=code, kind=kind, offers=keys)


def fleet_failure(errors: list[dict], offers: Sequence[Offer]) -> CloudError:
    """The CloudError for an instant fleet that launched nothing, from its per-override Errors."""
    if not errors:
        return offer_error("UnfulfillableCapacity", "the fleet launched nothing and named no error",
                            offers)
    by_kind: dict[str, list[dict]] = {}
    for error in errors:
        by_kind.setdefault(P.error_kind(error.get("ErrorCode", "")), []).append(error)
    # Misconfiguration or a missing permission is fixed by a person, not by another offer: say so.
    for kind in ("auth", "config", "quota", "capacity", "throttle", "other", "not-found"):
        if kind in by_kind:
            first = by_kind[kind][0]
            code, message = first.get("ErrorCode", "Unknown"), first.get("ErrorMessage", "")
            break
    if kind not in ("quota", "capacity"):
        return CloudError(f"CreateFleet launched nothing: {message}", code=code, kind=kind)
    named = {((e.get("LaunchTemplateAndOverrides") or {}).get("Overrides") or {}).get("InstanceType")
             for e in by_kind[kind]}
    hit = [o for o in offers if o.instance_type in named] or list(offers)
    return offer_error(code, message, hit)


def combined(failures: list[CloudError]) -> CloudError:
    """One error for a launch whose every round failed: a quota problem first (a person can act)."""
    worst = next((f for f in failures if f.kind == "quota"), failures[-1])
    offers = tuple(k for f in failures for k in f.offers)
    detail = " | ".join(str(f) for f in failures)
    return CloudError(f"no candidate could be launched (blocked for a while: {len(offers)} offers): "
                      f"{detail}", code=worst.code, kind=worst.kind, offers=offers)


def tags_of(item: dict) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags") or []}


def unassigned(instance: Instance) -> bool:
    """A batched instance whose own tags were never written."""
    return BATCH_NODES_TAG in instance.tags and BATCH_TAG in instance.tags and P.NODE_TAG not in instance.tags


def volume_ids(item: dict) -> list[str]:
    return [m["Ebs"]["VolumeId"] for m in item.get("BlockDeviceMappings") or []
            if (m.get("Ebs") or {}).get("VolumeId")]


def from_fleet(instance_id: str, region: str, fleet: dict) -> Instance:
    """An instance DescribeInstances does not show yet, from the CreateFleet answer."""
    item = next((i for i in fleet.get("Instances") or [] if instance_id in (i.get("InstanceIds") or [])), {})
    return Instance(id=instance_id, instance_type=item.get("InstanceType", ""),
                    market=item.get("Lifecycle", "on-demand"), region=region, state="pending",
                    launched_at=time.time(), az=item.get("AvailabilityZone"))


def instance_of(item: dict, region: str) -> Instance:
    launched = item.get("LaunchTime")
    return Instance(
        id=item["InstanceId"], instance_type=item.get("InstanceType", ""),
        market=SPOT if item.get("InstanceLifecycle") == "spot" else "on-demand", region=region,
        state=(item.get("State") or {}).get("Name", "pending"),
        launched_at=launched.timestamp() if hasattr(launched, "timestamp") else time.time(),
        tags=tags_of(item),
        az=(item.get("Placement") or {}).get("AvailabilityZone"), address=item.get("PrivateIpAddress"),
        image=item.get("ImageId"))


def event(name: str, **fields: Any) -> str:
    """A structured log line (JSON) for launches, terminations and failures; never a secret."""
    return json.dumps({"event": f"ec2.{name}", **fields}, sort_keys=True, default=str)
