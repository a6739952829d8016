"""`reconcile(observed, settings, now) -> actions`: the daemon's decisions, pure.

One tick's rules, over frozen values (no I/O, no clock, no globals; the label caches below are
memoisation of pure functions):

* Our nodes that ran a build are *used*: drain them while busy (no second build), retire them
  (delete node, terminate instance) once idle and drained (one found idle, online and not drained,
  as after a Jenkins restart that aborted its build, is drained first); a busy node whose agent is offline and whose
  instance is gone on two observations in a row was interrupted (one describe that misses a
  machine must not cost a running build).
* Unused nodes form a pool matched to queue items: first each item's own node (named after its queue
  id), then not-yet-connected nodes whose own item is gone but whose labels satisfy a waiting item
  (Jenkins lets a subset-label item take another's node, so we rebind instead of launching again).
  Pending items keep the online node they are about to run on; blocked and quiet-period items keep
  their own node but never launch one. An online node whose item left is never given a second item.
* A matched node that does not come online within the boot timeout is retired and its offer blocked;
  the item is planned again next tick. A matched node without an instance gets one (a crash between
  node creation and launch); if its instance existed and vanished, a fresh attempt replaces it.
* Unmatched nodes are retired: at once if never connected (the item left before its agent did);
  an online one is drained first and retired once seen idle while drained, since Jenkins may hand
  it a build between our read of /computer and a delete (which would kill that build).
* Items still without a node are provisioned oldest first while the caps (global, per label, per job)
  and the USD/hour budget allow; running, booting and in-flight instances all count. A team at 100%
  of an enforced budget launches nothing; vCPU caps and quotas (provisioner/daemon/caps.py) may move
  a plan to a runner-up in a class with room, else hold it.
* Instances whose node is gone are terminated: at once when we retired the node, else after a grace.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from functools import lru_cache
from typing import Iterable

from provisioner import labels
from provisioner.clouds.base import Instance
from provisioner.daemon.caps import caps_active, ledger_for
from provisioner.daemon.model import (DRAIN_MESSAGES, GONE_STATES, Action, Block, DeleteNode, Drain, Hold,
                                      InFlight, Item, ItemKey, Memory, Node, NoPlan, Observed, PlanKey,
                                      Provision, Settings, Terminate, client_token, node_name)
from provisioner.errors import ProvisionerError
from provisioner.requirements import Requirements, is_demand
from provisioner.daemon.drain_rule import build_started

LOST_CONFIRMATIONS = 2      # observations in a row of a busy node without its machine, then it was interrupted

# ---- memoised pure helpers (labels repeat across thousands of items) ------------------------

# Why a queued item is refused for good (provisioner_items_rejected_total{reason}).
REJECT_REASONS = ("unparseable", "label-too-complex", "invalid-value", "internal-error")


def rejection_reason(exc: BaseException, default: str) -> str:
    """The reason a label failed to parse or plan: the error's own when it names one, a recursion or
    memory limit as too complex, a bad number as an invalid value, else `default`."""
    for attr in ("reason", "code"):
        named = getattr(exc, attr, None)
        if isinstance(named, str) and named in REJECT_REASONS:
            return named
    if isinstance(exc, (RecursionError, MemoryError)):
        return "label-too-complex"
    if isinstance(exc, ProvisionerError):
        return default
    if isinstance(exc, (ValueError, ArithmeticError)):
        return "invalid-value"
    return "internal-error"


@lru_cache(maxsize=4096)
def label_problem(label: str | None, managed_atom: str) -> str | None:
    """Why an item with this label can never be served (None: it can, or it is not ours). Any error
    from parsing one label is caught here: one hostile or careless label must not stop a tick."""
    if not label:
        return None
    try:
        if not is_demand(label, managed_atom):
            return None
    except Exception as exc:          # noqa: BLE001 - whatever the parser raises, the item is refused
        return rejection_reason(exc, "unparseable")
    try:
        Requirements.parse(label, lax=True)
    except Exception as exc:          # noqa: BLE001
        return rejection_reason(exc, "invalid-value")
    return None


@lru_cache(maxsize=4096)
def demand(label: str | None, managed_atom: str) -> bool:
    try:
        return is_demand(label, managed_atom)
    except Exception:                 # noqa: BLE001 - unreadable: not ours (label_problem says why)
        return False


@lru_cache(maxsize=4096)
def _ast(label: str) -> labels.Node | None:
    try:
        return labels.parse_jenkins(label)
    except Exception:                 # noqa: BLE001
        return None


@lru_cache(maxsize=65536)
def satisfies(label: str | None, node_labels: frozenset[str]) -> bool:
    """Would Jenkins run an item with this label on a node with these labels?"""
    if not label:
        return True
    ast = _ast(label)
    return ast is not None and labels.evaluate(ast, lambda atom: atom.name in node_labels)


def plan_key(item: Item, settings: Settings, interruptions: dict | None = None) -> PlanKey | None:
    """The plan an item needs: marked once its job was interrupted repeatedly (the planner's intent
    then plans on demand, unless the label itself restricts the market)."""
    if not item.label:
        return None
    limit = settings.ondemand_after_interruptions
    interrupted = limit > 0 and (interruptions or {}).get(item.job, 0) >= limit
    return PlanKey(item.label, item.job, interrupted)


def is_demand_item(item: Item, settings: Settings) -> bool:
    """Buildable, not yet pending, and ours (docs/contracts.md 'Demand')."""
    return item.buildable and not item.pending and not item.blocked and demand(item.label, settings.managed_atom)


def plan_keys(items: Iterable[Item], settings: Settings, interruptions: dict | None = None) -> set[PlanKey]:
    """The distinct plans a tick may need (the loop makes each once)."""
    keys = (plan_key(i, settings, interruptions) for i in items if is_demand_item(i, settings))
    return {k for k in keys if k is not None}


# ---- the step ---------------------------------------------------------------------------------

def reconcile(observed: Observed, settings: Settings, now: float) -> list[Action]:
    """The actions that bring Jenkins nodes and cloud instances in line with the queue."""
    return _Tick(observed, settings, now).run()


class _Tick:
    def __init__(self, obs: Observed, settings: Settings, now: float):
        self.obs, self.s, self.now = obs, settings, now
        self.actions: list[Action] = []
        self.memory = obs.memory
        self.nodes = {n.name: n for n in obs.nodes if n.name.startswith(settings.prefix)}
        self.instances = self._live_instances()
        self.retiring: set[str] = set()
        self._seen: dict[ItemKey, int] | None = None

    def run(self) -> list[Action]:
        pool = self._used_nodes()
        self.pool = {n.name for n in pool}
        matched = self._match(pool)
        need = self._pool_outcomes(pool, matched)
        self._provision(need)
        self._orphan_instances()
        return self.actions

    # -- instances ------------------------------------------------------------------------------
    def _live_instances(self) -> dict[str, list[Instance]]:
        """Live instances by node tag, oldest first; extra ones for a node are duplicates."""
        by_node: dict[str, list[Instance]] = defaultdict(list)
        self.untagged: list[Instance] = []
        described = {i.id for i in self.obs.instances}
        flying = [f.instance for f in self.memory.in_flight.values() if f.instance.id not in described]
        for inst in [*self.obs.instances, *flying]:
            if inst.state in GONE_STATES:
                continue
            node = inst.tag("node")
            (by_node[node].append(inst) if node else self.untagged.append(inst))
        for node, insts in by_node.items():
            insts.sort(key=lambda i: (i.launched_at, i.id))
            if len(insts) > 1:
                self.actions.append(Terminate(tuple(i.id for i in insts[1:]), "duplicate", node))
                del insts[1:]
        return dict(by_node)

    def _price(self, inst: Instance) -> float:
        if inst.id in self.obs.prices:
            return self.obs.prices[inst.id]
        flying = self.memory.in_flight.get(inst.tag("node") or "")
        return flying.price if flying and flying.instance.id == inst.id else 0.0

    def _retire(self, node: Node, reason: str) -> None:
        self.retiring.add(node.name)
        self.actions.append(DeleteNode(node.name, reason))
        insts = self.instances.get(node.name)
        if insts:
            self.actions.append(Terminate(tuple(i.id for i in insts), reason, node.name))

    # -- nodes that ran their build --------------------------------------------------------------
    def _used_nodes(self) -> list[Node]:
        """Drain or retire used nodes; return the unused ones (the pool)."""
        pool = []
        for node in self.nodes.values():
            used = node.busy or node.temporarily_offline or node.name in self.memory.seen_busy
            if not used:
                pool.append(node)
            elif node.busy and node.offline and node.name not in self.instances:
                if self.memory.lost_seen.get(node.name, 0) >= LOST_CONFIRMATIONS:
                    self._retire(node, "interrupted")  # its machine is gone mid-build: Jenkins' retry takes over
            elif node.busy:
                if build_started(node.builds, node.temporarily_offline):   # not while only assigned
                    self.actions.append(Drain(node.name))
            elif node.online and not node.temporarily_offline:
                # idle, online and not drained after its build (a Jenkins restart aborted it before
                # the drain): Jenkins may hand it an item between our read and a delete, which would
                # kill that build. Drain it first; it is retired once seen idle while drained.
                self.actions.append(Drain(node.name))
            else:   # drained and idle: after its build, or a spare drained before retiring it
                spare = node.offline_reason == DRAIN_MESSAGES["no-demand"] and node.name not in self.memory.seen_busy
                self._retire(node, "no-demand" if spare else "finished")
        return pool

    # -- matching the pool to items ----------------------------------------------------------------
    def _match(self, pool: list[Node]) -> dict[str, Item]:
        s = self.s
        items = sorted(self.obs.items, key=lambda i: (i.since, i.id))
        ours = [i for i in items if demand(i.label, s.managed_atom)]
        self.demand = [i for i in ours if is_demand_item(i, s)]
        pending = [i for i in ours if i.pending]
        reserving = [i for i in ours if not i.pending and not is_demand_item(i, s)]  # blocked, quiet period
        own: dict[ItemKey, list[Node]] = defaultdict(list)
        for node in pool:
            if node.meta is not None:
                own[node.meta.item_key].append(node)
        for nodes in own.values():
            nodes.sort(key=lambda n: -n.meta.attempt)  # the newest attempt first
        matched: dict[str, Item] = {}
        self.node_of: dict[ItemKey, str] = {}

        def bind(node: Node, item: Item) -> None:
            matched[node.name] = item
            self.node_of[item.key] = node.name

        for item in [*self.demand, *reserving, *pending]:
            for node in own.get(item.key, ()):
                if node.name not in matched and (not item.pending or node.online):
                    bind(node, item)
                    break
        # Spare nodes: their own item left. A pending item keeps the online node it is about to run
        # on. A waiting item may take a spare node that has not connected yet; an online spare may
        # already have run a build between two polls (its item gone, nothing tells which node ran
        # it), so it is never handed to a second item: one build per agent.
        spare = sorted((n for n in pool if n.name not in matched), key=self._started)  # the oldest first
        by_label: dict[tuple[str | None, bool], list[Node]] = {}    # candidates per label, built once
        for item in [*pending, *self.demand]:
            if item.key in self.node_of:
                continue
            key = (item.label, item.pending)
            if key not in by_label:
                by_label[key] = [n for n in spare if n.online == item.pending and satisfies(item.label, n.labels)]
            candidates = by_label[key]
            while candidates and candidates[0].name in matched:
                candidates.pop(0)
            if candidates:
                bind(candidates.pop(0), item)
        return matched

    def _started(self, node: Node) -> float:
        insts = self.instances.get(node.name)
        if insts:
            return insts[0].launched_at
        if node.meta is not None and node.meta.created:
            return node.meta.created
        return self.memory.first_seen.get(node.name, self.now)

    def _pool_outcomes(self, pool: list[Node], matched: dict[str, Item]) -> list[tuple[Item, Node | None]]:
        """Retire what is not needed; return (item, existing node or None) still to provision."""
        need: list[tuple[Item, Node | None]] = []
        held: set[ItemKey] = set()
        for node in pool:
            item = matched.get(node.name)
            if item is None:
                if node.offline:
                    self._retire(node, "item-gone")     # never connected: nothing can run on it
                else:   # Jenkins may assign it a build between our read and a delete: drain first
                    self.actions.append(Drain(node.name, "no-demand"))
                continue
            if node.online or not (item.buildable and not item.pending):
                continue                                   # Jenkins will schedule it (or it waits)
            insts = self.instances.get(node.name)
            if insts:
                if self.now - insts[0].launched_at > self.s.boot_timeout_s:
                    self._retire(node, "boot-timeout")
                    inst = insts[0]
                    self.actions.append(Block((inst.instance_type, inst.region, inst.market), "boot-timeout"))
                    self.actions.append(Hold(item.key, item.label or "", "replan"))
                    held.add(item.key)
                continue
            if node.name in self.memory.had_instance or node.meta is None:
                self._retire(node, "lost" if node.meta else "orphan")  # its instance vanished
                continue
            need.append((item, node))                       # node without instance: launch for it
        skip = held | {item.key for item, _ in need}
        used_own = {n.meta.item_key for n in self.nodes.values() if n.meta is not None and n.name not in self.pool}
        for item in self.demand:
            name = self.node_of.get(item.key)
            # no node yet, or its node was retired above (boot timeouts wait for a new plan)
            if (name is None or name in self.retiring) and item.key not in skip:
                if name is None and item.key in used_own and item.key not in self.memory.settling:
                    # Its own node is busy while it still waits: another item took the node, or the
                    # two reads straddled Jenkins assigning it. Confirm on the next tick.
                    self.actions.append(Hold(item.key, item.label or "", "settling"))
                    continue
                need.append((item, None))
        need.sort(key=lambda pair: (pair[0].since, pair[0].id))
        return need

    # -- provisioning under caps and budget ------------------------------------------------------
    def _provision(self, need: list[tuple[Item, Node | None]]) -> None:
        s = self.s
        total, spend = 0, 0.0
        per_label: Counter[str] = Counter()
        per_job: Counter[str] = Counter()
        for name, insts in self.instances.items():
            total += 1
            spend += self._price(insts[0])
            meta = self.nodes[name].meta if name in self.nodes else None
            if meta is not None:
                per_label[meta.label] += 1
            job = meta.job if meta is not None else insts[0].tag("job")
            if job:
                per_job[job] += 1
        for inst in self.untagged:
            total += 1
            spend += self._price(inst)
        for spare in self.obs.spares:                      # warm-pool spares (daemon/pool_caps.py)
            total, spend = total + 1, spend + spare.price
            if spare.label is not None:
                per_label[spare.label] += 1
        ledger = None
        if caps_active(s):
            ledger = ledger_for(s, self.obs.vcpus, [
                *((insts[0], self.nodes[n].meta.label if n in self.nodes and self.nodes[n].meta else None)
                  for n, insts in self.instances.items()), *((i, None) for i in self.untagged),
                *((sp.instance, sp.label) for sp in self.obs.spares if sp.running)])
        taken = set(self.nodes) | set(self.instances) | set(self.memory.in_flight)
        served = {sp.serves for sp in self.obs.spares if sp.serves is not None}   # counted as spares
        interruptions = dict(self.obs.interruptions)
        for item, node in need:
            key = plan_key(item, s, interruptions)
            plan = self.obs.plans.get(key) if key else None
            label = item.label or ""
            if plan is None or isinstance(plan, NoPlan):
                self.actions.append(Hold(item.key, label, "no-offer"))
                continue
            if key in self.obs.paused:                     # its image/config keeps failing to boot
                self.actions.append(Hold(item.key, label, "paused"))
                continue
            team = self.obs.teams.get(item.job)
            if team is not None and team in self.obs.over_budget:
                self.actions.append(Hold(item.key, label, "budget", f"team:{team}"))
                continue
            price = plan.chosen.offer.price
            more = 0 if item.key in served else 1           # a parked spare it starts: counted already
            if s.max_agents is not None and total + more > s.max_agents:
                reason = "cap:global"
            elif s.max_per_label is not None and per_label[label] + more > s.max_per_label:
                reason = "cap:label"
            elif s.max_per_job is not None and per_job[item.job] + 1 > s.max_per_job:
                reason = "cap:job"
            elif s.budget_usd_per_hour is not None and spend + price > s.budget_usd_per_hour + 1e-9:
                reason = "budget"
            else:
                reason = ""
            if reason:
                self.actions.append(Hold(item.key, label, reason))
                continue
            if ledger is not None:
                plan, reason, detail = ledger.admit(plan, label)
                if plan is None:
                    self.actions.append(Hold(item.key, label, reason, detail))
                    continue
                ledger.add_plan(plan, label)
                price = plan.chosen.offer.price
            if node is not None and node.meta is not None and \
                    set(plan.node_labels) | {node.name} != set(node.labels):
                self._retire(node, "relabel")               # the new plan's node carries other labels
                node = None
            if node is not None and node.meta is not None:
                # the node's own identity: a launch before a crash had this very token
                name, attempt, create = node.name, node.meta.attempt, False
                token = client_token(s.owner, name, node.meta.since, attempt)
            else:
                attempt = max(self.obs.attempts.get(item.key, 0), self._attempts_seen(item)) + 1
                name = node_name(s.owner, item.id, attempt)
                while name in taken:
                    attempt += 1
                    name = node_name(s.owner, item.id, attempt)
                create = True
                token = client_token(s.owner, name, item.since, attempt)
            taken.add(name)
            total, spend = total + more, spend + price
            per_label[label] += more
            per_job[item.job] += 1
            self.actions.append(Provision(name, item, plan, attempt, create, token))

    def _attempts_seen(self, item: Item) -> int:
        if self._seen is None:
            self._seen = {}
            for n in self.nodes.values():
                if n.meta is not None:
                    k = n.meta.item_key
                    self._seen[k] = max(self._seen.get(k, 0), n.meta.attempt)
        return self._seen.get(item.key, 0)

    # -- instances without a node ------------------------------------------------------------------
    def _orphan_instances(self) -> None:
        for name, insts in self.instances.items():
            if name in self.nodes:
                continue
            if name in self.memory.retired:
                self.actions.append(Terminate(tuple(i.id for i in insts), "retired", name))
            elif self.now - insts[0].launched_at > self.s.orphan_grace_s:
                self.actions.append(Terminate(tuple(i.id for i in insts), "orphan", name))
        old = tuple(i.id for i in self.untagged if self.now - i.launched_at > self.s.orphan_grace_s)
        if old:
            self.actions.append(Terminate(old, "orphan"))


# ---- memory between ticks ----------------------------------------------------------------------

def remember(memory: Memory, nodes: Iterable[Node], instances: Iterable[Instance], now: float,
             in_flight_ttl_s: float = 300) -> Memory:
    """Fold one observation into the memory (before reconcile); forget nodes that are gone."""
    nodes = list(nodes)
    names = {n.name for n in nodes}
    live = {i.tag("node") for i in instances if i.state not in GONE_STATES and i.tag("node")}
    described = {i.id for i in instances}
    in_flight = {k: f for k, f in memory.in_flight.items()
                 if f.instance.id not in described and now - f.at < in_flight_ttl_s}
    first_seen = {n: memory.first_seen.get(n, now) for n in names}
    lost = {n.name: memory.lost_seen.get(n.name, 0) + 1 for n in nodes
            if n.busy and n.offline and n.name not in live and n.name not in in_flight}
    return Memory(
        first_seen=first_seen,
        seen_busy=frozenset(n for n in memory.seen_busy if n in names) | {n.name for n in nodes if n.busy},
        seen_online=frozenset(n for n in memory.seen_online if n in names)
        | {n.name for n in nodes if n.has_connected},
        retired=frozenset(memory.retired),
        in_flight=in_flight,
        settling=memory.settling,
        had_instance=frozenset(n for n in memory.had_instance if n in names) | (live & names)
        | {k for k in in_flight if k in names},
        lost_seen=lost)


def after_actions(memory: Memory, actions: Iterable[Action], deleted: Iterable[str],
                  launched: dict[str, InFlight], retired_limit: int = 10000) -> Memory:
    """The memory after executing a tick: nodes deleted, launches in flight, items settling."""
    retired = set(memory.retired) | set(deleted)
    if len(retired) > retired_limit:   # bounded: the oldest names matter least
        retired = set(list(retired)[-retired_limit:])
    settling = frozenset(a.item for a in actions if isinstance(a, Hold) and a.reason == "settling")
    return replace(memory, retired=frozenset(retired), in_flight={**memory.in_flight, **launched},
                   settling=settling)
