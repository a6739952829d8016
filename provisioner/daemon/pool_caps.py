"""Warm-pool spares under the daemon's caps (pure; the keeper is provisioner/daemon/pools.py).

A spare is a machine the fleet holds, so it counts against the caps; which caps, by what each models:

| cap                                   | a ready/starting spare | a stopped (parked EC2) spare |
|---------------------------------------|------------------------|------------------------------|
| `max_agents`, `max_per_label` (counts)| 1                      | 1 (it can start at any time) |
| `budget_usd_per_hour`                 | its hourly price       | its volumes' price (EBS gp3) |
| vCPU caps and quotas (`max_vcpus`, per label, per class, the account's Service Quotas) | its vCPUs | 0: AWS counts running instances only |
| `max_per_job`                         | 0: a spare has no job  | 0                            |

A stopped spare that a build takes is started; the build's launch then passes the vCPU caps and the
USD/h budget like any other, but not the count caps a second time (`SpareLoad.serves`: the waiting
item it will serve; reconcile does not count that item's launch again: one machine, counted once). The pool refills only
within the caps: `Headroom` starts from everything the fleet holds after the tick's launches and
admits one spare launch at a time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from provisioner.catalog.model import Offer
from provisioner.clouds.base import Instance
from provisioner.daemon.caps import VcpuLedger, caps_active
from provisioner.selection import EBS_GP3_USD_PER_GIB_MONTH, HOURS_PER_MONTH


@dataclass(frozen=True)
class SpareLoad:
    """What one spare holds of the caps (reconcile adds these to what the instances hold)."""

    instance: Instance
    label: str | None            # the label as the config writes it (the count per label)
    price: float                 # USD/h now: running price, or its volumes' while stopped
    running: bool                # counts against vCPU caps and quotas
    serves: Any = None           # the waiting item (key) this parked spare will be started for


def stopped_price(disk_gib: float) -> float:
    """USD/h of a stopped instance: its root volume (gp3) only."""
    return float(disk_gib) * EBS_GP3_USD_PER_GIB_MONTH / HOURS_PER_MONTH


def any_cap(settings) -> bool:
    return bool(settings.max_agents is not None or settings.max_per_label is not None
                or settings.budget_usd_per_hour is not None or caps_active(settings))


class Headroom:
    """The caps' room for new spares, after what the fleet holds and the tick decided to launch."""

    def __init__(self, settings, vcpus: Mapping[str, float]):
        self.s = settings
        self.total = 0
        self.spend = 0.0
        self.per_label: Counter[str] = Counter()
        self.ledger = VcpuLedger(settings, vcpus) if caps_active(settings) else None

    def hold(self, inst: Instance | None, label: str | None, price: float, running: bool = True,
             offer: Offer | None = None) -> None:
        """Count one machine: an instance (live, or a spare), or a launch decided this tick (`offer`)."""
        self.total += 1
        self.spend += price
        if label is not None:
            self.per_label[label] += 1
        if self.ledger is not None and running:
            if inst is not None:
                self.ledger.add_instance(inst, label)
            elif offer is not None:
                self.ledger.add_offer(offer, label)

    def admit(self, offer: Offer, label: str) -> str | None:
        """None and counted when one more spare of `offer` fits every cap; else the cap it would break."""
        s = self.s
        if s.max_agents is not None and self.total + 1 > s.max_agents:
            return "cap:global"
        if s.max_per_label is not None and self.per_label[label] + 1 > s.max_per_label:
            return "cap:label"
        if s.budget_usd_per_hour is not None and self.spend + offer.price > s.budget_usd_per_hour + 1e-9:
            return "budget"
        if self.ledger is not None:
            refusal = self.ledger.refusal(offer, label)
            if refusal is not None:
                return refusal[0]
        self.hold(None, label, offer.price, True, offer)
        return None


def headroom(settings, vcpus: Mapping[str, float], live: Iterable[tuple[Instance, str | None, float]],
             spares: Iterable[SpareLoad], launches: Iterable[tuple[Offer, str]]) -> Headroom:
    """`live`: (instance, label, USD/h) of every live instance but the spares; `launches`: (offer,
    label) of the builds this tick launches."""
    room = Headroom(settings, vcpus)
    for inst, label, price in live:
        room.hold(inst, label, price)
    for sp in spares:
        room.hold(sp.instance, sp.label, sp.price, sp.running)
    for offer, label in launches:
        room.hold(None, label, offer.price, True, offer)
    return room
