"""The daemon's values: what one tick observed, the settings, and the actions reconcile returns.

Everything here is frozen, so `reconcile` can be a pure function over it and a test can build an
observation in a few lines. Names of nodes we own are derived from the owner id and the queue id
(`prov-<owner>-q<id>[-<attempt>]`): a restarted daemon finds them again, and the launch's
idempotency token is derived from the same name.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Mapping, Union

from provisioner.clouds.base import Instance
from provisioner.selection import Plan

ItemKey = tuple[int, int]          # (queue id, inQueueSince ms): ids repeat after a controller crash
OfferKey = tuple[str, str, str]    # (instance type, region, market)
META_MARK = "provisioner-meta:"    # the node description carries our metadata after this mark
GONE_STATES = ("shutting-down", "stopping", "stopped", "terminated")


@lru_cache(maxsize=64)
def owner_slug(owner: str) -> str:
    """The owner id as a Jenkins-safe node-name part (letters, digits, dashes)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", owner.lower()).strip("-")
    return slug or "default"


def node_prefix(owner: str) -> str:
    return f"prov-{owner_slug(owner)}-"


def node_name(owner: str, queue_id: int, attempt: int) -> str:
    """The node for the `attempt`-th agent of a queue item (the first has no suffix)."""
    base = f"{node_prefix(owner)}q{queue_id}"
    return base if attempt <= 1 else f"{base}-{attempt}"


def client_token(owner: str, name: str, since: int, attempt: int) -> str:
    """The launch's idempotency token: the same node, item and attempt never launch twice."""
    digest = hashlib.sha256(f"{owner}\0{name}\0{since}\0{attempt}".encode()).hexdigest()
    return f"prov-{digest[:40]}"


@dataclass(frozen=True)
class Item:
    """A queue item as the adapter read it (both demand paths give the same value)."""

    id: int
    since: int                      # inQueueSince, epoch ms
    label: str | None               # the label expression (None: unknown or runs anywhere)
    job: str                        # the job's full name ("a/b"), the history key
    buildable: bool = True
    pending: bool = False
    blocked: bool = False
    why: str | None = None

    @property
    def key(self) -> ItemKey:
        return self.id, self.since


@dataclass(frozen=True)
class NodeMeta:
    """What the daemon wrote into a node's description when it created it."""

    owner: str
    queue_id: int
    since: int
    job: str
    label: str
    attempt: int
    offer: OfferKey | None = None
    price: float = 0.0
    created: float = 0.0            # epoch seconds

    @property
    def item_key(self) -> ItemKey:
        return self.queue_id, self.since

    def description(self) -> str:
        body = {"owner": self.owner, "queue_id": self.queue_id, "since": self.since, "job": self.job,
                "label": self.label, "attempt": self.attempt,
                "offer": list(self.offer) if self.offer else None, "price": self.price,
                "created": round(self.created, 3)}
        return (f"Ephemeral agent for queue item {self.queue_id} ({self.job}) "
                f"{META_MARK}{json.dumps(body, separators=(',', ':'))}")

    @classmethod
    def parse(cls, description: str | None) -> "NodeMeta | None":
        """The metadata in a node description, or None when it is not ours or not readable."""
        if not description or META_MARK not in description:
            return None
        try:
            d = json.loads(description.split(META_MARK, 1)[1])
            offer = tuple(d["offer"]) if d.get("offer") else None
            return cls(str(d["owner"]), int(d["queue_id"]), int(d["since"]), str(d["job"]),
                       str(d["label"]), int(d["attempt"]), offer, float(d.get("price") or 0),
                       float(d.get("created") or 0))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Node:
    """One of our Jenkins nodes (/computer), with the metadata from its description."""

    name: str
    labels: frozenset[str]
    offline: bool = True
    temporarily_offline: bool = False
    idle: bool = True
    builds: tuple[str, ...] = ()    # URLs of the builds its executors run now
    meta: NodeMeta | None = None
    offline_reason: str = ""        # offlineCauseReason: our drain message says why we drained it

    @property
    def busy(self) -> bool:
        return bool(self.builds) or not self.idle

    @property
    def online(self) -> bool:
        return not self.offline

    @property
    def has_connected(self) -> bool:
        """Its agent connected at some point: online, or running work (a node drained as soon as
        its build started reads `offline` at once, and may never be seen online)."""
        return self.online or self.busy


@dataclass(frozen=True)
class InFlight:
    """A launch this process made that describe may not show yet (EC2 is eventually consistent)."""

    instance: Instance
    price: float
    at: float


@dataclass(frozen=True)
class Memory:
    """Facts the loop remembers between ticks. Lost on restart: every default is the safe one."""

    first_seen: Mapping[str, float] = field(default_factory=dict)   # node -> when first observed
    seen_busy: frozenset[str] = frozenset()                         # nodes seen running a build
    seen_online: frozenset[str] = frozenset()                       # nodes seen connected
    retired: frozenset[str] = frozenset()                           # nodes we deleted (their instances go at once)
    in_flight: Mapping[str, InFlight] = field(default_factory=dict)  # node -> launch not yet described
    had_instance: frozenset[str] = frozenset()                      # nodes that had a live instance
    settling: frozenset[ItemKey] = frozenset()                      # items held last tick to confirm a theft
    lost_seen: Mapping[str, int] = field(default_factory=dict)      # busy node -> observations in a row
    #                                                                 with its agent offline and no instance


@dataclass(frozen=True)
class PlanKey:
    """Plans are made once per (label, job, interrupted) per tick, outside reconcile."""

    label: str
    job: str
    ondemand: bool = False      # the job was interrupted repeatedly: on demand, unless the label
    #                             restricts the market itself (provisioner/intent.py decides)


@dataclass(frozen=True)
class NoPlan:
    """Planning failed for a key: no offer satisfies it (or the label is not understood)."""

    reason: str


PlanOrError = Union[Plan, NoPlan]


@dataclass(frozen=True)
class Observed:
    """Everything one tick knows, as values."""

    items: tuple[Item, ...]
    nodes: tuple[Node, ...]                     # our nodes only
    instances: tuple[Instance, ...]             # cloud.describe(owner)
    prices: Mapping[str, float] = field(default_factory=dict)      # instance id -> USD/h
    plans: Mapping[PlanKey, PlanOrError] = field(default_factory=dict)
    attempts: Mapping[ItemKey, int] = field(default_factory=dict)  # persisted attempt counters
    interruptions: Mapping[str, int] = field(default_factory=dict)  # job -> recent interruptions
    memory: Memory = Memory()
    paused: frozenset = frozenset()             # plan keys whose image/config is paused (bootfail.py)
    vcpus: Mapping[str, float] = field(default_factory=dict)       # instance type -> vCPUs (vCPU caps)
    teams: Mapping[str, str] = field(default_factory=dict)         # job -> team (the config's `teams`)
    over_budget: frozenset[str] = frozenset()                       # teams at 100% of an enforced budget
    spares: tuple = ()                          # warm-pool spares' pool_caps.SpareLoad: they count against caps


@dataclass(frozen=True)
class Settings:
    """The daemon's behaviour, from the config's `jenkins` and `daemon` sections."""

    owner: str = "default"
    managed_atom: str = "ec2"
    max_agents: int | None = 20
    max_per_label: int | None = None
    max_per_job: int | None = None
    budget_usd_per_hour: float | None = None
    boot_timeout_s: float = 600
    orphan_grace_s: float = 300
    ondemand_after_interruptions: int = 2
    interval_s: float = 5
    pause_after_boot_failures: int = 3  # consecutive boot failures of one image/config, then held (0: never)
    max_vcpus: float | None = None              # all agents together (provisioner/daemon/caps.py)
    max_vcpus_per_label: float | None = None
    class_caps: Mapping[tuple[str, str, str], float] = field(default_factory=dict)    # (region, class, market)
    class_quotas: Mapping[tuple[str, str, str], float] = field(default_factory=dict)  # the account's, x share

    @property
    def prefix(self) -> str:
        return node_prefix(self.owner)


# ---- actions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Provision:
    """Create the node (unless it exists), read its secret, launch an instance for it."""

    node: str
    item: Item
    plan: Plan
    attempt: int
    create_node: bool = True
    token: str = ""


@dataclass(frozen=True)
class Drain:
    """Mark a node temporarily offline: once it runs its build (it takes no second one), or before
    retiring an idle node nobody waits for (Jenkins may be handing it a build at this very moment;
    it is retired once seen idle while drained)."""

    node: str
    reason: str = "started"         # started | no-demand (a key of DRAIN_MESSAGES)


DRAIN_MESSAGES = {"started": "provisioner: one build per agent", "no-demand": "provisioner: no demand"}


@dataclass(frozen=True)
class DeleteNode:
    node: str
    reason: str                     # finished | item-gone | boot-timeout | interrupted | lost | relabel | orphan
    #                                 (boot-failed: retired by the loop, see bootfail.py)


@dataclass(frozen=True)
class Terminate:
    instance_ids: tuple[str, ...]
    reason: str
    node: str | None = None


@dataclass(frozen=True)
class Block:
    """Block an offer (it did not boot in time): the next plan picks another."""

    offer: OfferKey
    reason: str


@dataclass(frozen=True)
class Hold:
    """An item left waiting this tick, and why (cap, budget, no-offer, replan, paused): for logs and
    metrics. `paused`: its plan's image/config failed to boot too often in a row (bootfail.py)."""

    item: ItemKey
    label: str
    reason: str
    detail: str = ""                # e.g. the team of a budget hold, the class of a quota hold


Action = Union[Provision, Drain, DeleteNode, Terminate, Block, Hold]
