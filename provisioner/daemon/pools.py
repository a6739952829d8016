"""The warm pool in the daemon (labels.<expr>.pool; decisions in provisioner/pool.py).

Docker cloud: a spare is a *started agent*: its own node (`prov-<owner>-pool-<hash>-<n>`, labelled
as the label's plan would label a build's node) and a running instance container whose agent is
connected and idle. Jenkins hands a matching build to it the moment the build enters the queue, so
queue -> build start costs no reconcile interval and no boot. (A created-but-stopped container would
save only the create, ~0.1 s: the container's environment, where the docker cloud carries the
agent secret, is fixed at creation, and its boot and agent connection would still follow a tick.)

Each tick, before `reconcile`:
* spares not yet used are taken out of the observation (reconcile neither matches nor retires them;
  their instances are not orphans); a spare that started a build is a used node like any other:
  reconcile drains it at once and retires it after its build (one build per agent);
* a waiting item that a ready spare will serve (its plan's offer is the spare's, its label is true
  on the spare's node) is left out of reconcile for a short while, so no second agent is launched;
After the tick's actions: spares of an old image, of a plan that moved, past max_idle or the boot
timeout, or beyond the target are retired (a connected one drained first: reconcile retires it once
idle); spares without an instance are deleted; then new spares are launched to the target.
A restart loses nothing: spares are found again by node name, their offer in the node description,
their image in the instance's `provisioner:image` tag.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

from provisioner import killpoints
from provisioner import pool as P
from provisioner.clouds.base import Cloud, Instance
from provisioner.daemon import pool_caps
from provisioner.daemon.pool_fleet import FleetMixin, event
from provisioner.daemon import reconcile as R
from provisioner.daemon.model import (GONE_STATES, Item, Node, Observed, PlanKey, Provision, Settings,
                                      client_token)
from provisioner.labels import canonical_expression as canonical

log = logging.getLogger(__name__)
POOL_TAG, IMAGE_TAG = "provisioner:pool", "provisioner:image"
CLAIM_FOR_S = 15.0          # an item a spare should serve is kept from reconcile at most this long
IN_FLIGHT_S = 120.0         # a spare node whose launch describe does not show yet
TAG_MAX = 255
WARM_S = 90.0               # EC2: a spare runs this long on its first boot (volume warmed), then parks
SPARE_MAX_S = 86400.0       # a spare without max_idle retires after a day (its lifetime is made for it)


@dataclass(frozen=True)
class PoolView:
    """What the keeper decided before reconcile, for `act` after it."""

    observed: Observed                         # for reconcile: without unused spares or claimed items
    spares: dict                               # canonical label -> [pool.Spare]
    nodes: dict                                # spare node name -> Node
    instances: dict                            # spare node name -> [Instance]
    plans: dict                                # canonical label -> Plan or None
    claimed: frozenset                         # item keys a spare serves
    loads: dict = field(default_factory=dict)  # spare node (EC2: instance id) -> pool_caps.SpareLoad


def _h(canon: str) -> str:
    return hashlib.sha256(canon.encode()).hexdigest()[:8]


class PoolKeeper(FleetMixin):
    def __init__(self, specs: dict[str, P.PoolSpec], *, settings: Settings, plan_cache: Any, executor: Any,
                 cloud: Cloud, client: Any, drains: Any, metrics: Any = None, clock: Callable[[], float] = time.time):
        self.specs, self.s = specs, settings
        self.plan_cache, self.executor, self.cloud, self.client = plan_cache, executor, cloud, client
        self.drains = drains
        self.metrics, self.clock = metrics, clock
        self.reuse: Any = None                              # reuse.ReuseKeeper when a label reuses agents
        self.prefix = f"{settings.prefix}pool-"
        self._jobs: dict[str, Counter] = {c: Counter() for c in specs}    # recent jobs per label
        self._starts: dict[str, deque] = {c: deque(maxlen=200) for c in specs}
        self._ready_since: dict[str, float] = {}
        self._hits: set[str] = set()
        self._missed: set = set()
        self._claims: dict = {}                 # item key -> first claimed
        self._in_flight: dict[str, float] = {}
        self._next = 1
        self._image: tuple[float, str | None] = (0.0, None)
        self.states: dict[tuple[str, str], int] = {}          # (label, state) -> spares, for the gauge
        # EC2: spares are parked (stopped) instances without a node, claimed by the launch path
        self.parks = callable(getattr(cloud, "park", None)) and callable(getattr(cloud, "claim", None))
        self.warm_s = WARM_S
        self._parked: dict[str, list[Instance]] = {}          # canonical label -> spare instances
        self._taken: dict = {}                                # item key -> claimed spare id (this tick)
        self._cap_logged: dict[str, str] = {}                 # label -> the cap holding its refill

    def is_spare(self, name: str) -> bool:
        return name.startswith(self.prefix)

    # -- before reconcile ---------------------------------------------------------------------
    def split(self, observed: Observed, now: float) -> PoolView:
        if self.reuse is not None:                        # reused agents between builds (daemon/reuse.py)
            held, keep_items = self.reuse.split(observed, now)
            observed = replace(observed, nodes=tuple(n for n in observed.nodes if n.name not in held),
                               instances=tuple(i for i in observed.instances if i.tag("node") not in held),
                               items=tuple(i for i in observed.items if i.key not in keep_items))
        used = observed.memory.seen_busy
        spare_nodes = {n.name: n for n in observed.nodes if self.is_spare(n.name)}
        unused = {k: n for k, n in spare_nodes.items()
                  if not n.busy and not n.temporarily_offline and k not in used}
        for name, n in spare_nodes.items():
            if name not in unused and name not in self._hits and (n.busy or name in used):
                self._hit(n, now)                         # a spare started a build
        instances: dict[str, list[Instance]] = {}
        rest = []
        self._parked = {}
        for inst in observed.instances:
            node = inst.tag("node") or ""
            pooled = inst.tags.get(POOL_TAG)
            if pooled is not None and not node:             # EC2: a spare has no node until claimed
                if inst.state not in ("shutting-down", "terminated"):
                    self._parked.setdefault(pooled, []).append(inst)
                continue
            if pooled is not None and (node in unused or node not in spare_nodes):
                if inst.state not in GONE_STATES or inst.state == "stopped":
                    instances.setdefault(node, []).append(inst)
                continue
            rest.append(inst)
        demand = [i for i in observed.items if R.is_demand_item(i, self.s)]
        for item in demand:
            c = self._canon(item.label)
            if c in self._jobs:
                self._jobs[c][item.job] += 1
                if sum(self._jobs[c].values()) > 1000:     # recent, not all time
                    self._jobs[c] = Counter({j: n // 2 for j, n in self._jobs[c].items() if n > 1})
        plans = {c: self._plan(c, observed) for c in self.specs}
        image = self._fingerprint(now)
        spares: dict[str, list[P.Spare]] = {c: [] for c in self.specs}
        for name, n in unused.items():
            c = self._canon(n.meta.label if n.meta else None)
            insts = instances.get(name, [])
            spare = self._spare(n, insts, now, image)
            spares.setdefault(c or "", []).append(spare)
        for c, insts in self._parked.items():
            spares.setdefault(c, []).extend(self._parked_spare(i) for i in insts)
        claimed = self._claims_for(demand, observed, spares, now) if not self.parks else set()
        items = tuple(i for i in observed.items if i.key not in claimed)
        kept_nodes = tuple(n for n in observed.nodes if n.name not in unused)
        loads = self._loads(spares, unused, instances, observed, plans)
        serves = self._to_be_taken(demand, observed)
        counted = tuple(replace(v, serves=serves.get(k)) for k, v in loads.items())
        view = PoolView(replace(observed, items=items, nodes=kept_nodes, instances=tuple(rest), spares=counted),
                        spares, unused, instances, plans, frozenset(claimed), loads)
        self._publish(spares)
        return view

    def _spare(self, n: Node, insts: list[Instance], now: float, image: str | None) -> P.Spare:
        inst = insts[0] if insts else None
        if inst is not None and inst.state == "stopped":
            state = "stopped"
        elif n.online and inst is not None:
            state = "ready"
            self._ready_since.setdefault(n.name, now)
        else:
            state = "starting"
        launched = inst.launched_at if inst is not None else (n.meta.created if n.meta else now)
        return P.Spare(n.name, tuple(n.meta.offer) if n.meta and n.meta.offer else None,
                       (inst.tags.get(IMAGE_TAG) or "") if inst is not None else (image or ""),
                       state, launched, self._ready_since.get(n.name) if state == "ready" else None, n.labels)

    @staticmethod
    def _parked_spare(inst: Instance) -> P.Spare:
        state = "stopped" if inst.state == "stopped" else "starting"
        return P.Spare(inst.id, (inst.instance_type, inst.region, inst.market),
                       inst.image or inst.tags.get(IMAGE_TAG) or "", state, inst.launched_at)

    def take(self, ready: list[Any]) -> dict[int, Instance]:
        """EC2: the prepared launches a parked spare serves (index -> the started spare); a build
        takes a spare of its plan's type and region (spares are on demand: not for `spot`-only)."""
        if not self.parks:
            return {}
        out: dict[int, Instance] = {}
        for k, r in enumerate(ready):
            p = r.provision
            offer = p.plan.chosen.offer
            if r.spec.spot_only:
                continue
            every = [self._parked_spare(i) for group in self._parked.values() for i in group]
            spare = P.claim(p.item.label, (offer.instance_type, offer.region, "on-demand"),
                            [replace(s, node_labels=frozenset({"*"})) for s in every],
                            lambda _label, _labels: True, set(self._taken.values()))
            if spare is None:
                continue
            tags = {k2: v for k2, v in r.spec.tags.items() if k2 not in (POOL_TAG, IMAGE_TAG)}
            try:
                out[k] = self.cloud.claim(spare.node, tags)
            except Exception as exc:                        # noqa: BLE001 - then the usual launch
                event("pool.claim-failed", instance=spare.node, node=p.node, error=str(exc)[:200])
                continue
            self._taken[p.item.key] = spare.node
            c = self._canon(p.item.label)
            self._hit_label(c, now=self.clock())
            event("pool.hit", node=p.node, instance=spare.node, label=(c or "")[:200])
        return out

    def _claims_for(self, demand: list[Item], observed: Observed, spares: dict, now: float) -> set:
        """Items a ready spare serves (oldest first, one spare each), for at most CLAIM_FOR_S."""
        every = [s for group in spares.values() for s in group]
        taken: set[str] = set()
        claimed = set()
        for item in sorted(demand, key=lambda i: (i.since, i.id)):
            plan = observed.plans.get(R.plan_key(item, self.s, observed.interruptions))
            offer = getattr(getattr(getattr(plan, "chosen", None), "offer", None), "key", None)
            spare = P.claim(item.label, offer, every, R.satisfies, taken)
            if spare is None:
                continue
            first = self._claims.setdefault(item.key, now)
            if now - first <= CLAIM_FOR_S:
                taken.add(spare.node)
                claimed.add(item.key)
        self._claims = {k: t for k, t in self._claims.items() if k in {i.key for i in demand}}
        return claimed

    # -- after reconcile ----------------------------------------------------------------------
    def act(self, view: PoolView, actions: Iterable[Any], now: float) -> None:
        """Count misses, retire spares, then launch spares up to each label's target."""
        for a in actions:
            if isinstance(a, Provision) and not self.is_spare(a.node):
                c = self._canon(a.item.label)
                if c in self.specs and a.item.key not in self._missed and a.item.key not in self._taken:
                    self._missed.add(a.item.key)
                    self._starts[c].append(now)
                    if self.metrics is not None:
                        self.metrics.misses.labels(self._short(c)).inc()
        if len(self._missed) > 10000:
            self._missed.clear()
        taken, self._taken = set(self._taken.values()), {}     # spares claimed in this tick's launches
        if self.parks:
            self._park(now, taken)
        for name, insts in view.instances.items():        # a spare instance whose node is gone
            if name not in view.nodes and not (name in self._in_flight and now - self._in_flight[name] < IN_FLIGHT_S):
                self._terminate(insts, name, "no-node")
        image = self._ami_of if self.parks else self._fingerprint(now)
        gone: set[str] = set(taken)
        launches: list[tuple[str, P.PoolSpec, Any, int]] = []
        for c, spec in self.specs.items():
            plan = view.plans.get(c)
            offer = plan.chosen.offer.key if plan is not None else None
            if offer is not None and self.parks:
                offer = (offer[0], offer[1], "on-demand")
            spec = spec if spec.max_idle_s else replace(spec, max_idle_s=SPARE_MAX_S)
            group = [s for s in view.spares.get(c, []) if s.node not in taken]
            lost = [s for s in group if not self.parks and s.node not in view.instances
                    and now - self._in_flight.get(s.node, 0) > IN_FLIGHT_S]
            want = P.target(spec, now, sum(1 for t in self._starts[c] if now - t <= P.DEMAND_WINDOW_S))
            retire = P.retirements([s for s in group if s not in lost], spec, now=now, want=want, image=image,
                                   offer=offer, boot_timeout_s=self.s.boot_timeout_s)
            retire += [(s.node, "lost") for s in lost]
            for name, reason in retire:
                if self._retire(view, name, reason):
                    gone.add(name)
            n = P.to_launch(group, [r[0] for r in retire], want) if plan is not None else 0
            launches.append((c, spec, plan, n))
        unknown = [s for c, group in view.spares.items() if c not in self.specs for s in group]
        for s in unknown:                                 # the label's pool was removed from the config
            if self._retire(view, s.node, "shrink"):
                gone.add(s.node)
        room = self._room(view, actions, gone) if pool_caps.any_cap(self.s) else None
        for c, spec, plan, n in launches:
            for _ in range(n):
                if room is not None:
                    why = room.admit(self._spare_offer(plan), spec.label)
                    if why:
                        self._capped(c, why)
                        break
                self._launch(c, spec, plan, view, now, self._fingerprint(now) if not self.parks else None)

    def _retire(self, view: PoolView, name: str, reason: str) -> bool:
        """Retire one spare; True when its machine is gone now (False: drained, reconcile retires it)."""
        node = view.nodes.get(name)
        parked = [i for group in self._parked.values() for i in group if i.id == name]
        extra = {"image": parked[0].image, "current": self._ami_of_instance(parked[0])} \
            if parked and reason == "image" else {}
        event("pool.spare-retired", node=name, reason=reason, **extra)
        if self.metrics is not None:
            self.metrics.retired.labels(reason).inc()
        if parked:                                        # EC2: no node, the instance is the spare
            self._terminate(parked, "", reason)
            return True
        if node is not None and node.online:
            self.drains.drain(name, "no-demand")          # reconcile retires it once seen idle drained
            return False
        if node is not None:
            self.client.delete_node(name)
        self._terminate(view.instances.get(name, []), name, reason)
        self._ready_since.pop(name, None)
        return True

    def _terminate(self, insts: list[Instance], name: str, reason: str) -> None:
        if insts:
            self.cloud.terminate([i.id for i in insts])
            self.executor.forget(insts)
            event("instance.terminated", node=name, reason=f"pool:{reason}", instances=[i.id for i in insts])

    def _park(self, now: float, taken: set) -> None:
        """EC2: spares that ran their first boot long enough are stopped."""
        due = [i.id for group in self._parked.values() for i in group
               if i.state == "running" and now - i.launched_at >= self.warm_s and i.id not in taken]
        if due:
            self.cloud.park(due)
            event("pool.spares-parked", instances=due)

    def _launch_parked(self, canon: str, spec: P.PoolSpec, plan: Any, name: str, index: int, job: str,
                       now: float, image: str | None) -> None:
        """EC2: an on-demand instance without a node, its user-data run on every boot."""
        from provisioner import bootstrap
        from provisioner.clouds.base import INSTANCE_TAG_KEYS
        p = Provision(name, Item(0, 0, spec.label, job), plan, index, False,
                      client_token(self.s.owner, name, int(now * 1000), index))
        lspec, _ = self.executor.spec(p, "", now, spec.max_idle_s or SPARE_MAX_S)
        catalog = getattr(self.plan_cache, "catalog", None)
        ondemand = [o if o.market == "on-demand" or catalog is None else catalog.find(o.instance_type, o.region,
                                                                                       "on-demand")
                    for o in lspec.candidates]
        candidates = tuple(dict.fromkeys(o for o in ondemand if o is not None and o.market == "on-demand"))
        if not candidates:
            event("pool.no-on-demand-offer", label=canon[:200])
            return
        tags = {k: v for k, v in lspec.tags.items() if k not in INSTANCE_TAG_KEYS}
        tags.update({POOL_TAG: canon[:TAG_MAX], IMAGE_TAG: (image or "")[:TAG_MAX]})
        lspec = replace(lspec, candidates=candidates, tags=tags, secret_env={}, spot_only=False,
                        user_data=bootstrap.every_boot(lspec.user_data))
        instance = self.cloud.launch(lspec)
        event("pool.spare-launched", node="", label=canon[:200], instance=instance.id,
              instance_type=instance.instance_type)

    def _launch(self, canon: str, spec: P.PoolSpec, plan: Any, view: PoolView, now: float,
                image: str | None) -> None:
        seen = [int(x) for x in (n.rsplit("-", 1)[-1] for n in [*view.nodes, *view.instances]
                                 if n.startswith(f"{self.prefix}{_h(canon)}-")) if x.isdigit()]
        index = max([self._next - 1, *seen]) + 1
        self._next = index + 1
        name = f"{self.prefix}{_h(canon)}-{index}"
        job = (self._jobs[canon].most_common(1) or [("", 0)])[0][0]
        if self.parks:
            return self._launch_parked(canon, spec, plan, name, index, job, now, image)
        item = Item(0, 0, spec.label, job)
        p = Provision(name, item, plan, index, True, client_token(self.s.owner, name, int(now * 1000), index))
        prepared = self.executor.prepare(p, spec.max_idle_s or SPARE_MAX_S)
        killpoints.reached("pool.node-created")          # tests: a spare node without its instance
        tags = {**prepared.spec.tags, POOL_TAG: canon[:TAG_MAX], IMAGE_TAG: (image or "")[:TAG_MAX]}
        prepared = replace(prepared, spec=replace(prepared.spec, tags=tags))
        self._in_flight[name] = now
        instance = self.cloud.launch(prepared.spec)
        self.executor.launched(prepared, instance)
        event("pool.spare-launched", node=name, label=canon[:200], instance=instance.id,
              instance_type=instance.instance_type)

    # -- helpers --------------------------------------------------------------------------------
    def _hit(self, node: Node, now: float) -> None:
        self._hits.add(node.name)
        c = self._canon(node.meta.label if node.meta else None)
        self._hit_label(c, now)
        event("pool.hit", node=node.name, label=(c or "")[:200])
        if len(self._hits) > 10000:
            self._hits.clear()

    def _hit_label(self, c: str | None, now: float) -> None:
        if c in self.specs:
            self._starts[c].append(now)
        if self.metrics is not None:
            self.metrics.hits.labels(self._short(c or "")).inc()

    def _plan(self, canon: str, observed: Observed) -> Any:
        """The label's most likely plan: the offer most of its recent jobs are planned on."""
        spec = self.specs[canon]
        jobs = dict(self._jobs[canon].most_common(5)) or {"": 1}
        runs = self.plan_cache.runs(set(jobs))
        keys = {job: PlanKey(spec.label, job) for job in jobs}
        plans = self.plan_cache.plans(set(keys.values()), runs)
        good = {job: plans[k] for job, k in keys.items() if hasattr(plans[k], "chosen")}
        best = P.likely_offer({j: p.chosen.offer.key for j, p in good.items()}, jobs)
        return next((p for p in good.values() if p.chosen.offer.key == best), None)

    def _fingerprint(self, now: float) -> str | None:
        at, value = self._image
        if now - at > 30 or value is None:
            fn = getattr(self.cloud, "image_fingerprint", None)
            try:
                value = fn() if fn else None
            except Exception as exc:                  # noqa: BLE001 - unknown: no image retirement
                log.warning("cannot read the instance image: %s", exc)
                value = None
            self._image = (now, value)
        return value

    def _canon(self, label: str | None) -> str | None:
        if not label:
            return None
        try:
            return canonical(label)
        except Exception:                             # noqa: BLE001 - not a label we pool
            return None

    def _short(self, value: str) -> str:
        from provisioner.daemon.metrics import short_value
        return short_value(value)

    def _publish(self, spares: dict) -> None:
        states: Counter = Counter()
        for c, group in spares.items():
            for s in group:
                states[(c, s.state)] += 1
        for c in self.specs:
            for st in ("ready", "starting", "stopped"):
                states.setdefault((c, st), 0)
        self.states = dict(states)

