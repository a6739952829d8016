"""The warm pool's keeper (daemon/pools.py) against the fleet: what each spare holds of the caps, the
room the caps leave for a refill (the decisions in daemon/pool_caps.py), and which AMI an EC2 spare
should have booted (a parked spare of another AMI than its architecture launches now is retired)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Iterable

from provisioner import pool as P
from provisioner.clouds.base import Instance
from provisioner.daemon import pool_caps
from provisioner.daemon import reconcile as R
from provisioner.daemon.events import emitter
from provisioner.daemon.model import GONE_STATES, Item, Observed, Provision

log = logging.getLogger("provisioner.daemon.pools")


event = emitter("provisioner.daemon.pools")


class FleetMixin:
    """PoolKeeper's caps and images (it provides specs, s, planner, cloud, parks, _parked,
    _parked_spare, is_spare and _cap_logged)."""

    s: Any
    specs: dict
    plan_cache: Any
    cloud: Any
    parks: bool
    _parked: dict
    _cap_logged: dict

    def _room(self, view: Any, actions: Iterable[Any], gone: set) -> pool_caps.Headroom:
        """The caps' room after everything the fleet holds and this tick's launches."""
        obs = view.observed
        labels = {n.name: n.meta.label for n in obs.nodes if n.meta is not None}
        live = [(i, labels.get(i.tag("node") or ""), obs.prices.get(i.id, 0.0))
                for i in obs.instances if i.state not in GONE_STATES]
        spares = [load for k, load in view.loads.items() if k not in gone]
        launches = [(a.plan.chosen.offer, a.item.label or "") for a in actions
                    if isinstance(a, Provision) and not self.is_spare(a.node)]
        return pool_caps.headroom(self.s, obs.vcpus, live, spares, launches)

    def _spare_offer(self, plan: Any) -> Any:
        """The offer a new spare launches on (EC2: the on-demand twin of the plan's choice)."""
        offer = plan.chosen.offer
        catalog = getattr(self.plan_cache, "catalog", None)
        if self.parks and offer.market != "on-demand" and catalog is not None:
            offer = catalog.find(offer.instance_type, offer.region, "on-demand") or offer
        return offer

    def _capped(self, canon: str, why: str) -> None:
        """A refill the caps hold back: logged once until the reason changes."""
        if self._cap_logged.get(canon) != why:
            self._cap_logged[canon] = why
            event("pool.refill-held", label=canon[:200], reason=why)

    def _ami_of(self, spare: P.Spare) -> str | None:
        """EC2: the AMI the next launch of the spare's type boots (its architecture's configured or
        resolved image); None when unknown (then it is not retired for its image)."""
        if spare.offer is None:
            return None
        catalog = getattr(self.plan_cache, "catalog", None)
        identity = getattr(self.cloud, "image_identity", None)
        try:
            offer = catalog.find(*spare.offer) if catalog is not None else None
            return identity(offer) or None if offer is not None and identity is not None else None
        except Exception as exc:                          # noqa: BLE001 - unknown: not retired for it
            log.debug("no image for %s: %s", spare.offer, exc)
            return None

    def _ami_of_instance(self, inst: Instance) -> str | None:
        return self._ami_of(self._parked_spare(inst))

    def _loads(self, spares: dict, unused: dict, instances: dict, observed: Observed, plans: dict) -> dict:
        """What each spare holds of the caps (daemon/pool_caps.py): spare -> SpareLoad."""
        parked = {i.id: i for group in self._parked.values() for i in group}
        out = {}
        for c, group in spares.items():
            plan = plans.get(c)
            for sp in group:
                inst = parked.get(sp.node) or next(iter(instances.get(sp.node, [])), None)
                if inst is None:
                    continue
                node = unused.get(sp.node)
                label = node.meta.label if node is not None and node.meta else \
                    (self.specs[c].label if c in self.specs else None)
                running = inst.state != "stopped"
                price = observed.prices.get(inst.id, 0.0) if running else \
                    pool_caps.stopped_price(getattr(plan, "disk_gib", 30) or 30)
                out[sp.node] = pool_caps.SpareLoad(inst, label, price, running)
        return out

    def _to_be_taken(self, demand: list[Item], observed: Observed) -> dict:
        """EC2: the parked spares this tick's waiting builds will take (spare -> item key): reconcile
        does not count those builds' launches against the count caps again (one machine)."""
        if not self.parks:
            return {}
        every = [replace(self._parked_spare(i), node_labels=frozenset({"*"}))
                 for group in self._parked.values() for i in group]
        taken: dict = {}
        for item in sorted(demand, key=lambda i: (i.since, i.id)):
            plan = observed.plans.get(R.plan_key(item, self.s, observed.interruptions))
            offer = getattr(getattr(getattr(plan, "chosen", None), "offer", None), "key", None)
            if offer is not None:
                spare = P.claim(item.label, (offer[0], offer[1], "on-demand"), every, lambda *_: True, taken)
                if spare is not None:
                    taken[spare.node] = item.key
        return taken
