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
from typing import Any, Callable, Protocol, Sequence

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


def work_tags(owner: str, *, job: str, expires_at: str, node: str | None = None, queue_id: object = None,
              build: str | None = None, run_id: str | None = None, team: str | None = None) -> dict[str, str]:
    """The provisioner:* tags (TAG_KEYS) of one launch, the same for the daemon's agents and for
    `run --remote`; a value not given is left out. The cloud adds its own (Cloud.launch_tags)."""
    values = {"owner": owner, "node": node, "queue-id": queue_id, "job": job, "build": build, "run-id": run_id,
              "team": team, "expires-at": expires_at}
    return {TAG_PREFIX + key: str(value) for key, value in values.items() if value not in (None, "")}


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


# What differs by cloud besides launch/describe/terminate (clouds/registry.py builds a cloud; the
# callers ask it, never its name). SecretHandover: after a launch, the bundle goes to the instance
# (put), and after a terminate, the bundles no instance will read are deleted (forget).
Handover = Callable[[Instance, dict], None]
Forget = Callable[[list[Instance]], None]


class Cloud(Protocol):
    name: str
    blocked: BlockedOffers

    def launch(self, spec: LaunchSpec) -> Instance:
        """Launch one instance from the best candidate that has capacity; raise CloudError."""

    def describe(self, owner: str) -> list[Instance]:
        """Every instance (not yet terminated) carrying this owner tag."""

    def terminate(self, ids: list[str]) -> None:
        """Terminate these instances (already gone is fine)."""

    def secret_env(self, bundle: dict) -> dict[str, str]:
        """The LaunchSpec.secret_env that carries the bundle ({}: it is handed over after launch)."""

    def secret_handover(self) -> tuple[Handover, Forget] | None:
        """The daemon's (put, forget) of secret bundles, or None when secret_env carries them."""

    def launch_tags(self) -> dict[str, str]:
        """Tags every launch carries besides provisioner:* (the admin's extra tags)."""

    def vcpu_quotas(self, regions: list[str], client_for: Callable[[str], Any] | None = None) -> Any:
        """The account's vCPU quotas (clouds/service_quotas.Quotas), or None where there are none."""

    signals_jobs: bool

    def put_run_secrets(self, instance: Instance, parameter: str, bundle: dict) -> None:
        """`run --remote`: hand the bundle to a launched instance (nothing where secret_env carries it)."""

    def forget_run_secrets(self, parameter: str, region: str) -> None:
        """`run --remote`: delete a run's bundle if its instance never read it."""

    def follower(self, instance: Instance, events: Any, tag: object, log_group: str) -> Any:
        """`run --remote`: a started follower of the instance's output (agent/follow.py)."""


class CloudDefaults:
    """What a cloud has unless it says otherwise: the bundle in the instance's environment, no
    hand-over, no extra tags, no account quotas. Adapters inherit it and override what differs."""

    name = ""
    user_data_limit: int | None = None  # bytes of user-data the cloud takes (None: no limit)
    on_this_host = False                # its instances run on this machine (its folders, its architecture)
    signals_jobs = False                # `run --remote` stops a job by a signal to the instance (else
    #                                     by terminating it); its follower reports the instance's exit
    notional_prices = False             # its prices are the catalog's, not charged (the docker cloud)
    bundle_source = "env"               # where the bootstrap reads the secret bundle: env | ssm
    ships_logs = False                  # the instance ships a job's log to the log group (EC2: CloudWatch)

    @classmethod
    def pinned_arches(cls, config: Any) -> frozenset[str]:
        """Architectures the configured images allow (empty: any; `run --remote` keeps to a single one)."""
        return frozenset()

    @classmethod
    def image_arches(cls, config: Any) -> tuple[frozenset[str] | None, str] | None:
        """The architectures this cloud has an image for, and where that comes from; None: the
        host's (its instances run here; intent.image_arches decides, with `defaults.arch`)."""
        return None

    def put_run_secrets(self, instance: Instance, parameter: str, bundle: dict) -> None:
        """`run --remote`: hand the bundle to a launched instance (nothing where secret_env carries it)."""

    def forget_run_secrets(self, parameter: str, region: str) -> None:
        """`run --remote`: delete a run's bundle if its instance never read it."""

    def follower(self, instance: Instance, events: Any, tag: object, log_group: str) -> Any:
        """`run --remote`: a started follower of the instance's log (agent/follow.py)."""
        raise CloudError(f"the {self.name} cloud cannot follow a remote run's log", code="Unsupported",
                         kind="config")

    @classmethod
    def secret_env(cls, bundle: dict) -> dict[str, str]:
        """A class-level rule (clouds/registry.adapter(name) answers it without building a cloud)."""
        from provisioner import secret_bundle
        return {secret_bundle.BUNDLE_ENV: secret_bundle.encode(bundle)}

    def secret_handover(self) -> tuple[Handover, Forget] | None:
        return None

    def next_build_handover(self) -> Any:
        """A reused agent's next bundle, handed over out of band (daemon/reuse.py); None: this cloud
        cannot, and its agents serve one build each (a cloud with `recycle` copies it in itself)."""
        return None

    def launch_tags(self) -> dict[str, str]:
        return {}

    @classmethod
    def vcpu_quotas(cls, regions: list[str], client_for: Callable[[str], Any] | None = None) -> Any:
        return None

    @classmethod
    def runs(cls, config: Any) -> Any:
        """Where `ps`, `stop` and `logs` find this cloud's remote runs (remote/runs.py; None: none)."""
        return None

    @classmethod
    def selector_problems(cls, config: Any, note: Callable[[str], None]) -> tuple[list, list[tuple[str, str]]]:
        """`daemon --check`: what the config's look-ups (selectors) resolve to, and (config path,
        problem) for each that cannot; `note` says what could not be checked here."""
        return [], []

    @classmethod
    def existence_problems(cls, config: Any, note: Callable[[str], None]) -> list[tuple[str, str]]:
        """`daemon --check`: (config path, problem) for each thing the config names that does not exist."""
        return []


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
