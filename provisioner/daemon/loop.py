"""The daemon loop (aws-parallelcluster-node's clustermgtd shape): observe, reconcile, act, heartbeat,
sleep the rest of the interval.

Observe reads the queue, then /computer (in that order: a build that left the queue is already busy on
its node), then the cloud by owner tag. If any read fails the tick acts on nothing: a Jenkins outage
never terminates anything. Each action family runs under a guard that logs a structured event,
counts the failure by error code and carries on (tick_actions.py). SIGTERM finishes the tick in
progress, then exits.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable

from provisioner.clouds.base import BlockedOffers, Cloud, Instance
from provisioner.daemon import bootfail as B
from provisioner.budgets import exhausted_teams
from provisioner.daemon import reconcile as R
from provisioner.daemon import tick_rules as T
from provisioner.daemon.caps import caps_active, class_key
from provisioner.daemon.drains import Drains
from provisioner.daemon.events import emitter
from provisioner.daemon.http import Health
from provisioner.daemon.jenkins import JenkinsClient
from provisioner.daemon.provision_executor import ProvisionExecutor
from provisioner.daemon.lease import Lease
from provisioner.daemon.metrics import AgentInfo, DaemonMetrics, Snapshot
from provisioner.daemon.model import Hold, Memory, Node, Observed, Settings
from provisioner.daemon.plan_cache import PlanCache
from provisioner.daemon.queue import QueueReader
from provisioner.daemon.state import Attempts
from provisioner.daemon.tick_actions import TickActions, TickReport, error_code

log = logging.getLogger(__name__)


event = emitter(__name__)


class Daemon(TickActions):
    def __init__(self, *, settings: Settings, client: JenkinsClient, reader: QueueReader, cloud: Cloud,
                 plan_cache: PlanCache, executor: ProvisionExecutor, attempts: Attempts, metrics: DaemonMetrics,
                 health: Health, blocked: BlockedOffers, lease: Lease | None = None,
                 sentinel: str | None = None, prices: Callable[[Instance], tuple[float, Any]] | None = None,
                 launch_workers: int = 8, drain_poll_s: float = 1.0, drains: Drains | None = None,
                 agents: Any = None, clock: Callable[[], float] = time.time, boot: Any = None,
                 spend: Any = None):
        self.s, self.client, self.reader, self.cloud = settings, client, reader, cloud
        self.plan_cache, self.executor, self.attempts = plan_cache, executor, attempts
        self.metrics, self.health, self.blocked, self.lease = metrics, health, blocked, lease
        self.sentinel, self._prices, self.clock = sentinel, prices, clock
        self.memory = Memory()
        self.interrupted_jobs: Counter[str] = Counter()
        self._pool = ThreadPoolExecutor(max_workers=max(1, launch_workers), thread_name_prefix="launch")
        self._ticks = 0
        self._held: dict = {}
        self._handed: set[str] = set()                      # instances whose bundle this process put
        self._rejected: dict = {}                           # item key -> reason (logged once)
        self.drain_poll_s = drain_poll_s if drain_poll_s < settings.interval_s else 0.0
        self.drains = drains or Drains(client)              # shared with the agent API
        self.agents = agents                                # agents.AgentBook of the agent API
        self.boot = boot                                    # bootwatch.BootWatch: agents dying before connecting
        self._boot_keys: dict = {}                          # plan key -> boot key, this tick
        self.spend = spend                                  # daemon.spend.TeamSpend (team budgets)
        self._caps_seen: dict = {}                          # for metrics: vCPUs and budgets last tick
        self.pools: Any = None                              # pools.PoolKeeper when labels have a pool
        self._restarted = threading.Event()                 # Jenkins restarted: drain used agents at once
        self._waiting: set = set()                          # keys of the items in the last queue read
        if hasattr(client, "on_restart"):
            client.on_restart(lambda old, new: self._restarted.set())

    # -- observe ---------------------------------------------------------------------------------
    def observe(self) -> tuple[list, list[Node], list[Instance]]:
        fetched = self.reader.fetch()                       # queue first, then nodes (see above)
        read_at = time.monotonic()
        nodes, names = self.client.computers(self.s.prefix)
        self.drains.observed(nodes, read_at)
        if self.reader.path == "rest" and self.sentinel:
            self.client.ensure_sentinel(self.sentinel, names)
        items = self.reader.items(fetched, nodes)
        self._waiting = {i.key for i in items}
        if self._restarted.is_set():                        # before the (maybe slow) describe
            self._drain_after_restart(nodes)
        instances = self.cloud.describe(self.s.owner)
        if self.agents is not None:
            self.agents.instances_seen(instances)          # the agent API: which tokens live
        return items, nodes, instances

    # -- one tick --------------------------------------------------------------------------------
    def tick(self) -> TickReport:
        report, started = TickReport(), time.perf_counter()
        try:
            items, nodes, instances = self.observe()
        except Exception as exc:                            # Jenkins or the cloud away: act on nothing
            code = error_code(exc)
            self.metrics.failures.labels("observe", code).inc()
            event("tick.observe-failed", logging.WARNING, code=code, error=str(exc)[:300])
            report.ok, report.error = False, code
            self._finish(report, started)
            return report
        items = self._screen(items)
        now = self.clock()
        nodes, instances = self._boot_failures(nodes, instances, report)
        self._online_events(nodes, now)
        self.memory = R.remember(self.memory, nodes, instances, now)
        demand_items = [i for i in items if R.is_demand_item(i, self.s)]
        t0 = time.perf_counter()
        runs = self.plan_cache.runs({i.job for i in demand_items})
        interruptions = Counter(self.plan_cache.interruptions(runs))
        for job, n in self.interrupted_jobs.items():
            interruptions[job] = max(interruptions[job], n)
        plans = self.plan_cache.plans(R.plan_keys(demand_items, self.s, interruptions), runs)
        report.plan_s = time.perf_counter() - t0
        prices = {i.id: self._price(i)[0] for i in instances}
        paused = self._paused(plans, report)
        observed = Observed(tuple(items), tuple(nodes), tuple(instances), prices, plans,
                            self.attempts.load(), dict(interruptions), self.memory, paused,
                            **self._limits(demand_items, instances, prices, now, report))
        view = self._pool_split(observed, now, report)      # the warm pool's spares, if any
        seen = view.observed if view is not None else observed
        c0 = time.process_time()
        actions = R.reconcile(seen, self.s, now)
        report.reconcile_s = time.process_time() - c0
        self.metrics.reconcile_cpu.observe(report.reconcile_s)
        report.items, report.demand = len(items), len(demand_items)
        self._execute(actions, seen, report)
        if view is not None:
            self._guard("pool", report, lambda: self.pools.act(view, actions, now))
        self.attempts.prune({i.key for i in items})
        self._publish(observed, demand_items, actions, now)
        self._finish(report, started)
        return report

    def _boot_failures(self, nodes: list[Node], instances: list[Instance], report: TickReport
                       ) -> tuple[list[Node], list[Instance]]:
        """Agents that died before connecting (bootfail.py decides which): one line, one count, the
        node deleted and the instance terminated now; reconcile then sees the item without a node."""
        if self.boot is None:
            return nodes, instances
        m = self.memory
        by_name = {n.name: n for n in nodes}
        try:
            ended = self.boot.collect(self.s.owner, instances, by_name, m.in_flight)
        except Exception as exc:
            self._failed("boot-watch", report, exc)
            ended = []
        ran = {n for n in by_name if self.agents is not None and self.agents.builds(n)}   # posted from a build
        fails = B.failures(ended, {n: x.has_connected for n, x in by_name.items()},
                           m.seen_online | m.seen_busy | ran, m.retired)
        gone: set[str] = set()
        for f in fails:
            self.boot.failed(f, f.key)
            gone.add(f.node)
            ids = {f.ended.instance} | {i.id for i in instances if i.tag("node") == f.node}
            if f.node in m.in_flight:
                ids.add(m.in_flight[f.node].instance.id)
            ids.discard("?")
            if self._guard("delete-node", report, lambda f=f: self.client.delete_node(f.node) or True,
                           node=f.node, reason="boot-failed") is not None:
                self.metrics.retired.labels("boot-failed").inc()
            if ids:
                self._guard("terminate", report, lambda ids=sorted(ids): self.cloud.terminate(ids) or True,
                            instances=sorted(ids))
            report.actions["BootFailed"] += 1
        self.boot.settle([f.key for f in fails], [n.name for n in nodes if n.has_connected])
        if not gone:
            return nodes, instances
        self.memory = replace(m, in_flight={k: v for k, v in m.in_flight.items() if k not in gone},
                              retired=m.retired | gone)
        return ([n for n in nodes if n.name not in gone],
                [i for i in instances if i.tag("node") not in gone])

    def _paused(self, plans: dict, report: TickReport) -> frozenset:
        """The plan keys held for a paused image/config; each plan's boot key is kept for the launch."""
        if self.boot is None:
            return frozenset()
        keys = self._guard("boot-keys", report, lambda: self.boot.plan_keys(plans))
        self._boot_keys = keys or {}
        return B.paused_plans(self._boot_keys, self.boot.ledger)

    def _limits(self, demand_items: list, instances: list[Instance], prices: dict, now: float,
                report: TickReport) -> dict:
        """What the vCPU caps and team budgets need from outside reconcile: the vCPUs of the instance
        types in play, each waiting job's team and the teams at 100% of an enforced budget."""
        out: dict = {}
        flying = [f.instance for f in self.memory.in_flight.values()]
        if caps_active(self.s):
            out["vcpus"] = {i.instance_type: float(getattr(self._price(i)[1], "vcpu", 0) or 0)
                            for i in [*instances, *flying]}
        if self.spend is not None and self.spend.rules:
            out["teams"] = {j: t for j in {i.job for i in demand_items} if (t := self.spend.team_of(j))}
            live = {i.id: i for i in [*instances, *flying]}
            priced = {**{f.instance.id: f.price for f in self.memory.in_flight.values()}, **prices}
            uses = self._guard("budgets", report, lambda: self.spend.evaluate(now, live.values(), priced))
            if uses is None:                                # the store unreadable: the last known state holds
                uses = self.spend.uses
            out["over_budget"] = frozenset(exhausted_teams(uses))
            self._caps_seen["budgets"] = uses
        return out

    def _pool_split(self, observed: Observed, now: float, report: TickReport) -> Any:
        """provisioner/daemon/pools.py: the observation without unused spares (None: no pool)."""
        if self.pools is None:
            return None
        return self._guard("pool", report, lambda: self.pools.split(observed, now))

    def _screen(self, items: list) -> list:
        """The items a tick can serve. One whose label cannot be parsed or planned (too deep, a bad
        number, anything the parser raises) is left out, logged and counted once per queue item:
        every other item is served in the same tick."""
        kept, rejected = [], {}
        for item in items:
            reason = R.label_problem(item.label, self.s.managed_atom)
            if reason is None:
                kept.append(item)
                continue
            rejected[item.key] = reason
            if self._rejected.get(item.key) != reason:
                self.metrics.items_rejected.labels(reason).inc()
                event("item.rejected", logging.WARNING, queue_id=item.id, job=item.job, reason=reason,
                      label=(item.label or "")[:200])
        self._rejected = rejected
        return kept

    def _finish(self, report: TickReport, started: float) -> None:
        report.duration_s = time.perf_counter() - started
        self.metrics.tick_duration.observe(report.duration_s)
        for endpoint, n in self.client.calls.items():
            self.metrics.jenkins_requests.labels(endpoint).inc(n)
        self.client.calls.clear()
        self._ticks += 1
        self.health.beat("running")

    def _online_events(self, nodes: list[Node], now: float) -> None:
        """Queue wait to agent online, for nodes coming online since the last tick."""
        if self._ticks == 0:
            return                                          # after a restart "new" would be a guess
        for n in nodes:
            if n.has_connected and n.name not in self.memory.seen_online and n.meta is not None and n.meta.since:
                wait = max(0.0, now - n.meta.since / 1000.0)
                self.metrics.queue_wait.observe(wait)
                event("agent.online", node=n.name, queue_id=n.meta.queue_id, wait_s=round(wait, 3))

    # -- metrics snapshot ------------------------------------------------------------------------
    def _price(self, inst: Instance) -> tuple[float, Any]:
        if self._prices is not None:
            return self._prices(inst)
        return 0.0, None

    def _publish(self, observed: Observed, demand_items: list, actions: list, now: float) -> None:
        waiting = Counter(i.label or "" for i in demand_items)
        held = Counter(a.reason for a in actions if isinstance(a, Hold))
        nodes = {n.name: n for n in observed.nodes}
        agents = []
        vcpus: dict = {}
        described = {i.id for i in observed.instances}
        flying = [f.instance for f in self.memory.in_flight.values() if f.instance.id not in described]
        for inst in [*observed.instances, *flying]:
            if inst.state in ("shutting-down", "stopping", "stopped", "terminated"):
                continue
            node = nodes.get(inst.tag("node") or "")
            price, offer = self._price(inst)
            if node is None:
                state = "booting" if inst.tag("node") in self.memory.in_flight else "orphan"
            elif node.busy:
                state = "draining" if node.temporarily_offline else "busy"
            else:
                state = "idle" if node.online else "booting"
            agents.append(AgentInfo(inst.tag("node") or inst.id, state, inst.instance_type, inst.market, price,
                                    getattr(offer, "vcpu", None), getattr(offer, "memory_gib", None)))
            key = class_key(inst.instance_type, inst.market, inst.region)
            if key is not None and getattr(offer, "vcpu", None):
                vcpus[key] = vcpus.get(key, 0.0) + float(offer.vcpu)
        self.metrics.publish(Snapshot(now, dict(waiting), tuple(agents), self.s.budget_usd_per_hour, dict(held),
                                      **self._caps_snapshot(vcpus)))

    def _caps_snapshot(self, vcpus: dict) -> dict:
        uses = self._caps_seen.get("budgets") or []
        fullest: dict = {}
        for use in uses:
            for team in use.teams:
                if team not in fullest or use.ratio > fullest[team].ratio:
                    fullest[team] = use
        limits = {k: (float(n), "cap") for k, n in self.s.class_caps.items()}
        for k, n in self.s.class_quotas.items():
            if k not in limits or n < limits[k][0]:
                limits[k] = (float(n), "quota")
        return {"team_ratio": {t: u.ratio for t, u in fullest.items()},
                "team_remaining": {t: u.remaining_usd for t, u in fullest.items()},
                "vcpus": vcpus, "vcpu_limits": limits, "max_vcpus": self.s.max_vcpus}

    # -- run -------------------------------------------------------------------------------------
    def run(self, stop: threading.Event, once: bool = False) -> int:
        """Tick every interval until `stop` is set (SIGTERM); 0 on a clean stop. With `once`, one
        tick: 0 when it could observe Jenkins and the cloud, else 1."""
        try:
            while not stop.is_set():
                if self.lease is not None and not self.lease.held:
                    self.health.beat("waiting-for-lease")
                    if not self.lease.wait(stop.is_set, interval_s=min(1.0, self.s.interval_s),
                                           sleep=lambda s: stop.wait(s)):
                        break
                started = time.monotonic()
                try:
                    ok = self.tick().ok
                except Exception as exc:                # a bug must not end the loop: log, count, go on
                    ok = False
                    self.metrics.failures.labels("tick", error_code(exc)).inc()
                    log.exception("%s", json.dumps({"event": "tick.failed", "code": error_code(exc)}))
                if once:
                    return 0 if ok else 1
                if self.lease is not None and not self._renew():
                    continue
                self._rest(stop, started + self.s.interval_s)
        finally:
            self.health.beat("stopping")
            self._pool.shutdown(wait=True)
            if self.lease is not None and self.lease.held:
                self.lease.release()
        return 0

    def _rest(self, stop: threading.Event, until: float) -> None:
        """Sleep the rest of the interval. Every `drain_poll_s` meanwhile, one read of /computer
        drains agents that just started their build: Jenkins hands an idle agent the next matching
        item at once, so a build shorter than the interval would otherwise get a second one."""
        while not stop.is_set():
            remaining = until - time.monotonic()
            if remaining <= 0:
                return
            step = min(remaining, self.drain_poll_s) if self.drain_poll_s else remaining
            if stop.wait(step) or not self.drain_poll_s or until - time.monotonic() < self.drain_poll_s / 2:
                continue
            self._guard("drain-poll", TickReport(), self._drain_started)

    def _drain_started(self) -> None:
        read_at = time.monotonic()
        nodes, _ = self.client.computers(self.s.prefix)
        self.drains.observed(nodes, read_at)
        if self._restarted.is_set():
            self._drain_after_restart(nodes)
        self._online_events(nodes, self.clock())          # the same read times queue-wait more finely
        started = T.started_nodes(nodes)
        for n in started:
            self._guard("drain", TickReport(), lambda n=n: self.drains.drain(n.name), node=n.name)
        self.memory = T.after_drain_poll(self.memory, nodes, started)

    def _drain_after_restart(self, nodes: list[Node]) -> None:
        """Jenkins restarted: a restart aborts running builds, and the agents reconnect idle. Jenkins
        would hand each the next matching item at once, so every agent of ours that has connected and
        whose own item is not waiting (it ran, or lost, its build; or it is a spare) is drained now,
        from the first read after the restart, before its agent is back."""
        self._restarted.clear()
        for name, reason in T.drains_after_restart(nodes, self.memory, self._waiting):
            if self._guard("drain", TickReport(), lambda n=name, r=reason: self.drains.drain(n, r),
                           node=name, reason=reason):
                event("agent.drained-after-restart", node=name, reason=reason)

    def _renew(self) -> bool:
        try:
            return self.lease.try_acquire()
        except Exception as exc:
            event("lease.renew-failed", logging.WARNING, error=str(exc)[:200])
            return True                                     # keep acting until it has expired for others
