"""Pure EC2 knowledge: settings, the launch requests, and what an error code means. No I/O here.

One launch is one `CreateFleet` of type `instant`: a base launch template holds what only the
configuration decides (security groups, instance profile, IMDSv2, shutdown = terminate), and the
fleet request carries everything a launch decides itself (user data, tags on instance and volume,
per-override image and root volume). Instant fleets take those per request since 2025, so a steady
launch is one API call and no template is created or deleted per launch. The template is named
after a hash of its content, so the same configuration finds the same template after a restart.

Launches that differ only in their per-instance tags share one `CreateFleet` per batch (not per
launch): `batch_groups` forms the batches, `batch_params` asks for one instance per spec with the
shared tags plus `provisioner:batch` and `provisioner:batch-nodes` (`encode_nodes`), and the adapter
writes each instance's own tags (`instance_tags`) afterwards; `recovered_nodes` redoes that
assignment from the tags alone after a crash.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.catalog import devices
from provisioner.clouds import ec2_selectors as selectors
from provisioner.catalog.model import ON_DEMAND, SPOT, Offer
from provisioner.clouds.base import (BATCH_NODES_TAG, BATCH_TAG, INSTANCE_TAG_KEYS, OWNER_TAG, CloudError,
                                     LaunchSpec, batch_key)

USER_DATA_MAX_BYTES = 16 * 1024   # EC2's limit on raw user data (before base64)
MAX_OVERRIDES = 300               # EC2 Fleet quota: launch template overrides per fleet
MAX_TAGS = 50                     # EC2 tags per resource
CLIENT_TOKEN_MAX = 64             # EC2 ClientToken length limit
TEMPLATE_VERSION = "1"            # the content hash names the template, so version 1 is its content
ANY_REGION = selectors.ANY_REGION     # a flat list of subnets/security groups applies to every region
IMAGE_SLOTS = devices.IMAGE_SLOTS   # x86_64, arm64, then gpu_, amdgpu_, neuron_, gaudi_ + arch
TAG_VALUE_MAX = 256               # EC2's limit on a tag value
MAX_BATCH = 50                    # instances per batched CreateFleet (our cap, well under EC2's)
NODE_TAG = "provisioner:node"


@dataclass(frozen=True)
class Ec2Settings:
    """The `ec2` config section, normalised. Region-keyed maps use '*' for 'every region'."""

    regions: tuple[str, ...] = ("us-east-1",)
    subnets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    security_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    instance_profile: str | None = None         # a name, or an ARN ('arn:...')
    images: Mapping[str, Mapping[str, str]] = field(default_factory=dict)   # region -> slot -> AMI
    # (subnets, security groups and images may hold ec2_selectors.Selector until Ec2Cloud resolves them)
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    key_name: str | None = None
    spot_allocation_strategy: str = "price-capacity-optimized"
    ondemand_allocation_strategy: str = "lowest-price"   # 'prioritized' would follow our ranking
    encrypt_root_volume: bool = True

    @classmethod
    def from_config(cls, section: Any, regions: Iterable[str] = ("us-east-1",)) -> Ec2Settings:
        """From `config.ec2` (config_tree.Ec2Section; subnets/security_groups: a list, or {region: list}).
        A plain mapping of some of its keys (tests, benches) is first typed by the config loader."""
        if isinstance(section, Mapping):
            from provisioner.config import typed_section
            section = typed_section("ec2", section)
        known = {f for f in cls.__dataclass_fields__ if f != "regions"}
        images = section.images or {}
        bad = [f"{r}.{slot}" for r, slots in images.items() for slot in (slots or {})
               if slot not in IMAGE_SLOTS]
        if bad:
            raise CloudError(f"ec2.images: unknown slot {', '.join(bad)} (known: {', '.join(IMAGE_SLOTS)})",
                             code="Config", kind="config")
        return cls(regions=tuple(regions) or ("us-east-1",),
                   subnets=_by_region(section.subnets, "subnets"),
                   security_groups=_by_region(section.security_groups, "security_groups"),
                   images={r: {slot: selectors.parse(v) for slot, v in (m or {}).items()}
                           for r, m in images.items()},
                   extra_tags={str(k): str(v) for k, v in (section.extra_tags or {}).items()},
                   **{k: v for k in known - {"subnets", "security_groups", "images", "extra_tags"}
                      if (v := getattr(section, k)) is not None})

    def subnets_in(self, region: str) -> tuple[str, ...]:
        return tuple(self.subnets.get(region) or self.subnets.get(ANY_REGION) or ())

    def security_groups_in(self, region: str) -> tuple[str, ...]:
        return tuple(self.security_groups.get(region) or self.security_groups.get(ANY_REGION) or ())


def _by_region(value: Any, key: str) -> dict[str, tuple[str, ...]]:
    if not value:
        return {}
    if isinstance(value, (list, tuple)):
        return {ANY_REGION: tuple(selectors.parse(v) for v in value)}
    if isinstance(value, Mapping):
        return {str(r): tuple(selectors.parse(x) for x in v) for r, v in value.items()}
    raise CloudError(f"ec2.{key} must be a list of ids or a mapping of region to ids", code="Config",
                     kind="config")


# ---- candidates, images, rounds --------------------------------------------------------------

def image_slot(offer: Offer) -> str:
    """Which image an offer boots: the plain one of its architecture, or the one with its devices'
    drivers (`gpu_` NVIDIA, `amdgpu_` AMD, `neuron_` Inferentia/Trainium, `gaudi_` Habana Gaudi)."""
    cls = devices.image_class(offer.gpu_count, offer.gpu_manufacturer, offer.accel_model, offer.accel_count)
    return f"{cls}_{offer.arch}" if cls else offer.arch


def image_for(settings: Ec2Settings, offer: Offer) -> str | None:
    return (settings.images.get(offer.region) or {}).get(image_slot(offer))


def config_problems(settings: Ec2Settings, offer: Offer) -> list[str]:
    """What the configuration lacks to launch this offer (empty: launchable)."""
    problems = []
    if not settings.subnets_in(offer.region):
        problems.append(f"no subnet configured for {offer.region} (ec2.subnets)")
    if not settings.security_groups_in(offer.region):
        problems.append(f"no security group configured for {offer.region} (ec2.security_groups)")
    if not image_for(settings, offer):
        problems.append(f"no image for {offer.region} {image_slot(offer)} "
                        f"(ec2.images.{offer.region}.{image_slot(offer)})")
    return problems


def with_ondemand_twins(spec: LaunchSpec) -> list[Offer]:
    """The candidates, plus an on-demand twin of each spot one (the fallback), unless spot-only."""
    offers = [o for o in spec.candidates if not (spec.spot_only and o.market != SPOT)]
    if spec.spot_only:
        return offers
    have = {o.key for o in offers}
    twins = [o._replace(market=ON_DEMAND, price=o.ondemand_price, interruption_rate=None)
             for o in offers if o.market == SPOT and o.ondemand_price is not None
             and (o.instance_type, o.region, ON_DEMAND) not in have]
    return offers + list({t.key: t for t in twins}.values())


def launch_rounds(offers: Sequence[Offer], blocked: frozenset = frozenset()) -> list[tuple[Offer, ...]]:
    """Group offers into one request per (region, market), in the order the ranking first names each.

    When the best candidate is spot, the spot round comes first and the on-demand twins (appended
    by `with_ondemand_twins`) form the fallback round. Blocked offers (failed recently) are left out.
    """
    groups: dict[tuple[str, str], list[Offer]] = {}
    for offer in offers:                         # dicts keep first-appearance (ranking) order
        if offer.key not in blocked:
            groups.setdefault((offer.region, offer.market), []).append(offer)
    return [tuple(group) for group in groups.values()]


def client_token(base: str, region: str, market: str, first: bool) -> str:
    """The idempotency token for one round: the spec's own for the first, a stable derivative after.

    EC2 answers a repeated token with the first result, so every round needs its own; deriving it
    from (region, market) keeps it stable across a restart even if the blocked set changed.
    """
    if first and len(base) <= CLIENT_TOKEN_MAX and base.isascii():
        return base
    digest = hashlib.sha256(f"{base}|{region}|{market}".encode()).hexdigest()
    return f"prov-{digest[:CLIENT_TOKEN_MAX - 5]}"


# ---- tags and user data ----------------------------------------------------------------------

def launch_tags(spec: LaunchSpec, settings: Ec2Settings) -> list[dict[str, str]]:
    """Configured extra tags under the spec's own (the spec wins), plus a Name from the node tag."""
    tags = {**settings.extra_tags, **spec.tags}
    if not spec.tags.get(OWNER_TAG):
        raise CloudError(f"the launch has no {OWNER_TAG} tag: describe and cleanup could never find it",
                         code="Config", kind="config")
    if "Name" not in tags and spec.tags.get("provisioner:node"):
        tags["Name"] = spec.tags["provisioner:node"]       # what the EC2 console shows
    problems = [f"{k!r}: reserved prefix" for k in tags if k.lower().startswith("aws:")]
    problems += [f"{k!r}: key over 128 characters" for k in tags if len(k) > 128]
    problems += [f"{k!r}: value over 256 characters" for k, v in tags.items() if len(v) > 256]
    if len(tags) > MAX_TAGS:
        problems.append(f"{len(tags)} tags, EC2 allows {MAX_TAGS}")
    if problems:
        raise CloudError("invalid tags: " + "; ".join(problems), code="Config", kind="config")
    return [{"Key": k, "Value": tags[k]} for k in sorted(tags)]


def encoded_user_data(user_data: str) -> str:
    raw = user_data.encode()
    if len(raw) > USER_DATA_MAX_BYTES:
        raise CloudError(f"user data is {len(raw)} bytes, EC2 allows {USER_DATA_MAX_BYTES}",
                         code="Config", kind="config")
    return base64.b64encode(raw).decode("ascii")


def user_data_fingerprint(user_data: str) -> str:
    """What logs may say about user data: its length and a hash, never its content."""
    raw = user_data.encode()
    return f"{len(raw)} bytes sha256:{hashlib.sha256(raw).hexdigest()[:12]}"


# ---- the requests ----------------------------------------------------------------------------

def template_data(settings: Ec2Settings, region: str) -> dict[str, Any]:
    """LaunchTemplateData for the base template: only what the configuration decides."""
    data: dict[str, Any] = {
        "InstanceInitiatedShutdownBehavior": "terminate",   # `shutdown -h` on the agent ends billing
        # IMDSv2 only; hop limit 1 keeps the credentials out of reach of containers on a bridge.
        "MetadataOptions": {"HttpTokens": "required", "HttpPutResponseHopLimit": 1,
                            "HttpEndpoint": "enabled"},
        "SecurityGroupIds": list(settings.security_groups_in(region)),
    }
    if settings.instance_profile:
        key = "Arn" if settings.instance_profile.startswith("arn:") else "Name"
        data["IamInstanceProfile"] = {key: settings.instance_profile}
    if settings.key_name:
        data["KeyName"] = settings.key_name
    return data


def template_request(settings: Ec2Settings, region: str, owner: str) -> dict[str, Any]:
    """CreateLaunchTemplate kwargs; the name is a hash of owner and content (same config, same name)."""
    data = template_data(settings, region)
    digest = hashlib.sha256(json.dumps([owner, data], sort_keys=True).encode()).hexdigest()[:16]
    name = f"provisioner-{digest}"
    return {"LaunchTemplateName": name, "ClientToken": name, "LaunchTemplateData": data,
            "VersionDescription": "provisioner base template (content-addressed)",
            "TagSpecifications": [{"ResourceType": "launch-template",
                                   "Tags": [{"Key": OWNER_TAG, "Value": owner}]}]}


def root_volume(device: str, disk_gib: int, settings: Ec2Settings) -> list[dict[str, Any]]:
    ebs: dict[str, Any] = {"VolumeSize": int(disk_gib), "VolumeType": "gp3", "DeleteOnTermination": True}
    if settings.encrypt_root_volume:
        ebs["Encrypted"] = True
    return [{"DeviceName": device, "Ebs": ebs}]


def launch_params(spec: LaunchSpec, settings: Ec2Settings, *, root_devices: Mapping[str, str],
                  offers: Sequence[Offer] | None = None, template_name: str | None = None,
                  token: str | None = None, min_disk_gib: Mapping[str, int] | None = None,
                  count: int = 1) -> dict[str, Any]:
    """The CreateFleet request for one round (default: the first), as a plain dict: `count` instances.

    `root_devices` maps each AMI to its root device name (the adapter reads it from DescribeImages);
    `min_disk_gib` to its snapshot size, so a small `disk_gib` never fails the launch.
    """
    offers = list(offers if offers is not None else launch_rounds(with_ondemand_twins(spec))[0])
    region, market = offers[0].region, offers[0].market
    if any((o.region, o.market) != (region, market) for o in offers):
        raise ValueError("one fleet request covers one region and one market")
    owner = spec.tags.get(OWNER_TAG, "")
    template_name = template_name or template_request(settings, region, owner)["LaunchTemplateName"]
    rank = {o.instance_type: i for i, o in reversed(list(enumerate(spec.candidates)))}
    overrides = []
    for offer in offers:
        image = image_for(settings, offer)
        if image is None:
            raise CloudError("; ".join(config_problems(settings, offer)), code="Config", kind="config")
        disk = max(spec.disk_gib, (min_disk_gib or {}).get(image, 0))
        for subnet in settings.subnets_in(region):
            overrides.append({
                "InstanceType": offer.instance_type, "SubnetId": subnet, "ImageId": image,
                # Lower is preferred; used by 'prioritized' on-demand, a hint for spot.
                "Priority": float(rank.get(offer.instance_type, len(spec.candidates))),
                "BlockDeviceMappings": root_volume(root_devices[image], disk, settings)})
    tags = launch_tags(spec, settings)
    params: dict[str, Any] = {
        "ClientToken": token or client_token(spec.client_token, region, market, first=True),
        "Type": "instant",
        "TargetCapacitySpecification": {"TotalTargetCapacity": count, "DefaultTargetCapacityType": market},
        "LaunchTemplateConfigs": [{
            "LaunchTemplateSpecification": {
                "LaunchTemplateName": template_name, "Version": TEMPLATE_VERSION,
                "LaunchTemplateSpecificationUserData": encoded_user_data(spec.user_data)},
            "Overrides": overrides[:MAX_OVERRIDES]}],
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": tags}],
    }
    if market == SPOT:
        params["TargetCapacitySpecification"]["SpotTargetCapacity"] = count
        params["SpotOptions"] = {"AllocationStrategy": settings.spot_allocation_strategy,
                                 "InstanceInterruptionBehavior": "terminate"}
    else:
        params["TargetCapacitySpecification"]["OnDemandTargetCapacity"] = count
        params["OnDemandOptions"] = {"AllocationStrategy": settings.ondemand_allocation_strategy}
    return params


# ---- batches: one CreateFleet for several launches ---------------------------------------------

def encode_nodes(nodes: Sequence[str]) -> str:
    """The `provisioner:batch-nodes` value: the names' longest common prefix, '|', then each name's
    rest, comma separated: prov-a-q123 and prov-a-q124-2 give 'prov-a-q12|3,4-2'."""
    if not nodes or any("|" in n or "," in n for n in nodes):
        raise ValueError(f"cannot encode node names {list(nodes)!r}")
    prefix = os.path.commonprefix(list(nodes))
    return prefix + "|" + ",".join(n[len(prefix):] for n in nodes)


def decode_nodes(value: str) -> list[str]:
    """The node names `encode_nodes` wrote, in order; ValueError for a value it cannot have written."""
    prefix, sep, rest = value.partition("|")
    if not sep:
        raise ValueError(f"not a batch-nodes value: {value!r}")
    return [prefix + suffix for suffix in rest.split(",")]


def batch_groups(specs: Sequence[LaunchSpec], settings: Ec2Settings) -> list[list[int]]:
    """The specs' positions in batches: equal `batch_key`, ordered by node name, at most MAX_BATCH
    long, with a batch-nodes value within EC2's tag value limit (a subset of a batch encodes no
    longer, so every later round fits too). A spec that cannot share (no node tag, a name the
    encoding cannot carry, tags EC2 would refuse) is a batch of its own."""
    groups: dict[tuple, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(batch_key(spec) if _batchable(spec, settings) else ("unbatchable", i), []).append(i)
    batches: list[list[int]] = []
    for members in groups.values():
        batches += _split(sorted(members, key=lambda i: specs[i].tags.get(NODE_TAG, "")), specs)
    return batches


def _batchable(spec: LaunchSpec, settings: Ec2Settings) -> bool:
    node = spec.tags.get(NODE_TAG)
    if not node or "|" in node or "," in node:
        return False
    try:
        launch_tags(spec, settings)
    except CloudError:
        return False                      # launched alone, it gets its own config error
    return True


def _split(members: list[int], specs: Sequence[LaunchSpec]) -> list[list[int]]:
    """Consecutive runs of `members` that fit one batch (greedy, order kept)."""
    batches: list[list[int]] = []
    for i in members:
        run = batches[-1] + [i] if batches else []
        nodes = [specs[j].tags.get(NODE_TAG, "") for j in run]
        if run and len(run) <= MAX_BATCH and _nodes_fit(nodes):
            batches[-1] = run
        else:
            batches.append([i])
    return batches


def _nodes_fit(nodes: list[str]) -> bool:
    try:
        return len(encode_nodes(nodes)) <= TAG_VALUE_MAX
    except ValueError:
        return False


def batch_token(tokens: Iterable[str], region: str, market: str) -> str:
    """A batch round's idempotency token: the same member tokens, region and market give the same one
    (order does not matter), so a retried batch never launches twice."""
    digest = hashlib.sha256("\0".join([*sorted(tokens), region, market]).encode()).hexdigest()
    return f"batch-{digest[:CLIENT_TOKEN_MAX - 6]}"


def shared_tags(spec: LaunchSpec) -> dict[str, str]:
    """The spec's tags that every instance of its batch carries from the start."""
    return {k: v for k, v in spec.tags.items() if k not in INSTANCE_TAG_KEYS}


def batch_params(specs: Sequence[LaunchSpec], settings: Ec2Settings, *, token: str,
                 **round_inputs: Any) -> dict[str, Any]:
    """The CreateFleet request for one batch round: one instance per spec, tagged with the shared
    tags, `provisioner:batch` = the token and `provisioner:batch-nodes` = the specs' nodes in order.
    `round_inputs` as for `launch_params` (offers, root_devices, template_name, min_disk_gib)."""
    nodes = encode_nodes([s.tags[NODE_TAG] for s in specs])
    shared = replace(specs[0], tags={**shared_tags(specs[0]), BATCH_TAG: token, BATCH_NODES_TAG: nodes})
    return launch_params(shared, settings, token=token, count=len(specs), **round_inputs)


def instance_tags(spec: LaunchSpec, settings: Ec2Settings) -> dict[str, str]:
    """What a batched instance gets written once it is assigned: its own INSTANCE_TAG_KEYS tags, and
    Name = node unless the shared tags name it already (as `launch_tags` does for one launch)."""
    own = {k: spec.tags[k] for k in INSTANCE_TAG_KEYS if k in spec.tags}
    return _named(own, {**settings.extra_tags, **spec.tags})


def node_tags(node: str, current: Mapping[str, str]) -> dict[str, str]:
    """What crash recovery writes on an instance with these tags: its node, and Name unless it has one."""
    return _named({NODE_TAG: node}, current)


def _named(own: dict[str, str], tags: Mapping[str, str]) -> dict[str, str]:
    return own if "Name" in tags else {**own, "Name": own[NODE_TAG]}


def recovered_nodes(members: Iterable[tuple[str, Mapping[str, str]]]) -> dict[str, str]:
    """{instance id: node} for batched instances left without a node tag (a crash between CreateFleet
    and CreateTags), by the launch's own rule: per batch, the nodes no member claims yet, in
    batch-nodes order, go to the untagged members in ascending id order. `members`: (id, tags) of
    every instance of those batches, terminated ones included, so each keeps its place."""
    batches: dict[str, list[tuple[str, Mapping[str, str]]]] = {}
    for iid, tags in members:
        if BATCH_TAG in tags and BATCH_NODES_TAG in tags:
            batches.setdefault(tags[BATCH_TAG], []).append((iid, tags))
    out: dict[str, str] = {}
    for batch in batches.values():
        try:
            nodes = decode_nodes(batch[0][1][BATCH_NODES_TAG])
        except ValueError:
            continue                      # not written by us: leave it alone
        claimed = {tags[NODE_TAG] for _, tags in batch if NODE_TAG in tags}
        untagged = sorted(iid for iid, tags in batch if NODE_TAG not in tags)
        out.update(zip(untagged, [n for n in nodes if n not in claimed]))
    return out


# ---- what an error code means ----------------------------------------------------------------

CAPACITY_CODES = frozenset({
    "InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity", "UnfulfillableCapacity", "SpotMaxPriceTooLow",
    "InsufficientFreeAddressesInSubnet", "InsufficientCapacityOnHost", "Unsupported",
    "capacity-not-available", "price-too-low", "capacity-oversubscribed"})
QUOTA_CODES = frozenset({"VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "InstanceLimitExceeded",
                         "MaxSpotFleetRequestCountExceeded", "MaxFleetCountExceeded"})
THROTTLE_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException",
                            "TooManyRequestsException", "RequestThrottled", "RequestThrottledException"})
TRANSIENT_CODES = frozenset({"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable",
                             "RequestTimeout", "RequestTimeoutException"})
AUTH_CODES = frozenset({"AuthFailure", "UnauthorizedOperation", "InvalidClientTokenId",
                        "SignatureDoesNotMatch", "ExpiredToken", "RequestExpired", "OptInRequired",
                        "Blocked", "AccessDenied", "AccessDeniedException", "UnrecognizedClientException"})
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})


def error_kind(code: str) -> str:
    """CloudError kind for an AWS error code (CreateFleet's per-override codes included)."""
    if code in CAPACITY_CODES:
        return "capacity"
    if code in QUOTA_CODES:
        return "quota"
    if code in THROTTLE_CODES:
        return "throttle"
    if code in AUTH_CODES:
        return "auth"
    if code in NOT_FOUND_CODES:
        return "not-found"
    if code.startswith(("Invalid", "Missing")) or code in ("IdempotentParameterMismatch", "Config"):
        return "config"
    return "other"


# vCPU quotas group instance families; (on-demand quota, spot quota), with codes where known.
_QUOTAS: dict[str, tuple[str, str]] = {
    "standard": ("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances (L-1216C47A)",
                 "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests (L-34B43A08)"),
    "g": ("Running On-Demand G and VT instances (L-DB2E81BA)",
          "All G and VT Spot Instance Requests (L-3819A6DF)"),
    "p": ("Running On-Demand P instances (L-417A185B)", "All P Spot Instance Requests (L-7212CCBC)"),
    "f": ("Running On-Demand F instances", "All F Spot Instance Requests"),
    "x": ("Running On-Demand X instances", "All X Spot Instance Requests"),
    "inf": ("Running On-Demand Inf instances", "All Inf Spot Instance Requests"),
    "trn": ("Running On-Demand Trn instances", "All Trn Spot Instance Requests"),
    "dl": ("Running On-Demand DL instances", "All DL Spot Instance Requests"),
    "hpc": ("Running On-Demand HPC instances", "All HPC Spot Instance Requests"),
    "u": ("Running On-Demand High Memory instances", "All High Memory Spot Instance Requests"),
}
_MULTI_LETTER = ("inf", "trn", "dl", "hpc", "vt", "u-")


def quota_group(instance_type: str) -> str:
    """The vCPU quota bucket of an instance type: 'g5.xlarge' -> 'g', 'inf2.xlarge' -> 'inf'."""
    name = instance_type.lower()
    for prefix in _MULTI_LETTER:
        if name.startswith(prefix):
            return {"vt": "g", "u-": "u"}.get(prefix, prefix)
    first = name[:1]
    return first if first in ("g", "p", "f", "x") else "standard"


def quota_name(instance_type: str, market: str) -> str:
    on_demand, spot = _QUOTAS[quota_group(instance_type)]
    return spot if market == SPOT else on_demand


def quota_message(offers: Sequence[Offer], code: str) -> str:
    """Which Service Quota to raise for the offers a quota error hit, in words a user can act on."""
    if not offers:
        return f"EC2 quota reached ({code}): raise it in Service Quotas (Amazon EC2)"
    names = list(dict.fromkeys(quota_name(o.instance_type, o.market) for o in offers))
    types = ", ".join(dict.fromkeys(o.instance_type for o in offers))
    market, region = offers[0].market, offers[0].region
    what = "spot instance count" if code == "MaxSpotInstanceCountExceeded" else "vCPU quota"
    return (f"{what} reached for {market} {types} in {region}: raise the Service Quota "
            + " and ".join(f"'{n}'" for n in names)
            + f" in Service Quotas > Amazon EC2 ({region}), or allow other instance families")
