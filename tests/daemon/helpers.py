"""Small frozen inputs for the daemon's unit tests."""

from __future__ import annotations

from provisioner.catalog.model import ON_DEMAND, SPOT
from provisioner.clouds.base import Instance
from provisioner.daemon.model import InFlight, Item, Memory, Node, NodeMeta, Observed, PlanKey, Settings
from provisioner.selection import Candidate, Plan
from tests.factories import offer

OWNER = "o"
SETTINGS = Settings(owner=OWNER, max_agents=10, boot_timeout_s=600, orphan_grace_s=300)
NOW = 1_000_000.0
LABEL = "ec2 && vcpu=2"


def plan(instance_type: str = "m5.large", price: float = 0.1, market: str = ON_DEMAND,
         node_labels: tuple[str, ...] = ("ec2", "vcpu=2")) -> Plan:
    o = offer(instance_type, price=price, market=market)
    c = Candidate(o, 600.0, price / 6, 1000.0)
    return Plan(chosen=c, candidates=(c,), autotuned=None, reasons=(), node_labels=node_labels)


def item(qid: int = 1, label: str | None = LABEL, job: str = "train", since: int | None = None,
         **kw) -> Item:
    return Item(qid, since if since is not None else 1_000 + qid, label, job, **kw)


def meta(qid: int = 1, attempt: int = 1, label: str = LABEL, job: str = "train", since: int | None = None,
         created: float = NOW - 10, offer_key=("m5.large", "us-east-1", ON_DEMAND)) -> NodeMeta:
    return NodeMeta(OWNER, qid, since if since is not None else 1_000 + qid, job, label, attempt,
                    offer_key, 0.1, created)


def node(name: str, m: NodeMeta | None = None, labels=("ec2", "vcpu=2"), **kw) -> Node:
    return Node(name, frozenset((*labels, name)), meta=m, **kw)


def instance(iid: str, node_name: str | None, launched: float = NOW - 10, state: str = "running",
             instance_type: str = "m5.large", market: str = ON_DEMAND, job: str = "train") -> Instance:
    tags = {"provisioner:owner": OWNER, "provisioner:job": job}
    if node_name:
        tags["provisioner:node"] = node_name
    return Instance(iid, instance_type, market, "us-east-1", state, launched, tags)


def observed(items=(), nodes=(), instances=(), plans=None, memory=Memory(), prices=None,
             attempts=None, interruptions=None) -> Observed:
    plans = plans if plans is not None else {PlanKey(LABEL, "train"): plan()}
    insts = tuple(instances)
    return Observed(tuple(items), tuple(nodes), insts,
                    prices if prices is not None else {i.id: 0.1 for i in insts},
                    plans, attempts or {}, interruptions or {}, memory)


def flying(inst: Instance, price: float = 0.1, at: float = NOW - 1) -> InFlight:
    return InFlight(inst, price, at)


__all__ = ["SPOT", "ON_DEMAND"]
