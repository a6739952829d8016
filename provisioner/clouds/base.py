"""The Cloud interface shared by the `ec2` and `docker` adapters, and the blocked-offer set.

A launch takes a spec with several ranked candidate offers (one request may choose among them);
describe lists the instances an owner launched, from tags (EC2) or labels (docker); terminate
removes them. Errors from the provider become a CloudError that keeps the provider's code.

A cloud that can start several instances in one request also has `launch_many(specs)`: specs that
differ only in their per-instance tags (`INSTANCE_TAG_KEYS`: which node, queue item and job) and
their client token share one request. Such an instance carries `provisioner:batch` (the request) and
`provisioner:batch-nodes` (its nodes, in assignment order) until its own tags are written, so a
crash between the request and the tagging loses nothing: `describe` finishes the assignment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from provisioner.catalog.model import Offer
from provisioner.errors import ProvisionerError

TAG_PREFIX = "provisioner:"
OWNER_TAG = "provisioner:owner"
# docs/contracts.md 'Where things live': the tags (EC2) / labels (docker) on everything launched.
TAG_KEYS = ("owner", "node", "queue-id", "job", "build", "run-id", "team", "expires-at")
# The tags that name one instance's own work: a batched launch writes them per instance afterwards.
INSTANCE_TAG_KEYS = ("provisioner:node", "provisioner:queue-id", "provisioner:job")
BATCH_TAG = "provisioner:batch"              # the batched request (its idempotency token)
BATCH_NODES_TAG = "provisioner:batch-nodes"  # that request's nodes, in assignment order


@dataclass(frozen=True)
class LaunchSpec:
    """What to launch: ranked candidates (best first), the bootstrap, and how to find it again."""

    candidates: tuple[Offer, ...]
    user_data: str                      # rendered agent_bootstrap (holds no secret on EC2)
    tags: dict[str, str]                # provisioner:* tags plus configured extra tags
    client_token: str                   # idempotency: the same token never launches twice
    disk_gib: int = 30
    spot_only: bool = False             # a `spot` request fails over only to other spot offers
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)  # docker cloud only

    def __post_init__(self) -> None:
        if not self.candidates:
            raise ValueError("a launch needs at least one candidate offer")


@dataclass(frozen=True)
class Instance:
    id: str
    instance_type: str
    market: str
    region: str
    state: str                          # pending | running | stopping | terminated
    launched_at: float                  # epoch seconds
    tags: dict[str, str] = field(default_factory=dict)
    az: str | None = None
    address: str | None = None          # private IP (EC2) or container name (docker)
    image: str | None = None            # the image it booted (EC2: its AMI; a warm spare of another retires)

    def tag(self, key: str) -> str | None:
        return self.tags.get(TAG_PREFIX + key)


class CloudError(ProvisionerError):
    """A provider error. `kind`: capacity | quota | throttle | config | auth | not-found | other."""

    def __init__(self, message: str, *, code: str, kind: str = "other",
                 offers: tuple[tuple[str, str, str], ...] = ()):
        self.code = code
        self.kind = kind
        self.offers = offers            # offer keys the error is about (to block them)
        super().__init__(f"{message} [{code}]")


class Cloud(Protocol):
    name: str

    def launch(self, spec: LaunchSpec) -> Instance:
        """Launch one instance from the best candidate that has capacity; raise CloudError."""

    def describe(self, owner: str) -> list[Instance]:
        """Every instance (not yet terminated) carrying this owner tag."""

    def terminate(self, ids: list[str]) -> None:
        """Terminate these instances (already gone is fine)."""


class BatchingCloud(Cloud, Protocol):
    def launch_many(self, specs: Sequence[LaunchSpec]) -> list[Instance | CloudError]:
        """Launch one instance per spec, sharing requests between specs of equal `batch_key`;
        the result per spec, in order: its instance, or the CloudError that kept it from starting."""


def batch_key(spec: LaunchSpec) -> tuple:
    """Specs with equal keys can share one request: everything but the per-instance tags and the
    client token is the same (a spec carrying secrets in its environment never batches)."""
    shared = tuple(sorted((k, v) for k, v in spec.tags.items() if k not in INSTANCE_TAG_KEYS))
    if spec.secret_env:
        return ("alone", spec.client_token)
    return (spec.candidates, spec.user_data, shared, spec.disk_gib, spec.spot_only)


class BlockedOffers:
    """Offers that failed to launch, each blocked until its TTL passes (the clock is injected)."""

    def __init__(self, ttl_s: float = 600, clock=time.monotonic):
        self.ttl_s = ttl_s
        self._clock = clock
        self._until: dict[tuple[str, str, str], float] = {}

    def block(self, key: tuple[str, str, str], ttl_s: float | None = None) -> None:
        self._until[key] = self._clock() + (self.ttl_s if ttl_s is None else ttl_s)

    def current(self) -> frozenset[tuple[str, str, str]]:
        now = self._clock()
        self._until = {k: t for k, t in self._until.items() if t > now}
        return frozenset(self._until)
