"""The act step of the daemon's tick (provisioner/daemon/loop.py): the actions reconcile returned,
each family under a guard that logs a structured event, counts the failure by error code and
carries on. Drains, node deletions, terminations, blocks and holds first; then the secret hand-overs
a booting agent still misses; then the launches (nodes and specs in parallel, one request per batch
where the cloud batches, each instance's hand-over).

`TickActions` is a part of `Daemon` (loop.py builds every attribute it declares below); its events
go to the daemon loop's logger, like those of bootwatch.py.
"""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from provisioner import killpoints
from provisioner.clouds.base import BlockedOffers, Cloud, Instance
from provisioner.daemon import reconcile as R
from provisioner.daemon import tick_rules as T
from provisioner.daemon.drains import Drains
from provisioner.daemon.events import emitter
from provisioner.daemon.jenkins import JenkinsClient
from provisioner.daemon.metrics import DaemonMetrics
from provisioner.daemon.model import (Block, DeleteNode, Drain, Hold, InFlight, Memory, Node, Observed,
                                      Provision, Settings, Terminate)
from provisioner.daemon.provision_executor import Prepared, ProvisionExecutor

event = emitter("provisioner.daemon.loop")


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "code", None) or type(exc).__name__)


def _context(p: Provision) -> dict[str, Any]:
    return {"node": p.node, "queue_id": p.item.id, "job": p.item.job}


@dataclass
class TickReport:
    """What one tick did (for --once, tests and the benchmark)."""

    ok: bool = True
    error: str | None = None
    actions: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    reconcile_s: float = 0.0
    plan_s: float = 0.0
    duration_s: float = 0.0
    items: int = 0
    demand: int = 0


class TickActions:
    """Carries out one tick's actions (the methods `Daemon.tick` calls after reconcile)."""

    s: Settings
    client: JenkinsClient
    cloud: Cloud
    executor: ProvisionExecutor
    metrics: DaemonMetrics
    blocked: BlockedOffers
    drains: Drains
    memory: Memory
    interrupted_jobs: Counter
    boot: Any
    pools: Any
    _pool: ThreadPoolExecutor
    _held: dict
    _handed: set
    _boot_keys: dict

    def _guard(self, action: str, report: TickReport, fn: Callable[[], Any], **context: Any) -> Any:
        try:
            return fn()
        except Exception as exc:
            self._failed(action, report, exc, **context)
            return None

    def _failed(self, action: str, report: TickReport, exc: BaseException, **context: Any) -> None:
        code = error_code(exc)
        self.metrics.failures.labels(action, code).inc()
        report.failures[f"{action}:{code}"] += 1
        event(f"{action}.failed", logging.WARNING, code=code, error=str(exc)[:300], **context)

    def _execute(self, actions: list, observed: Observed, report: TickReport) -> None:
        nodes = {n.name: n for n in observed.nodes}
        deleted: list[str] = []
        for a in actions:
            report.actions[type(a).__name__] += 1
        for a in (a for a in actions if isinstance(a, Drain)):
            self._guard("drain", report, lambda a=a: self.drains.drain(a.node, a.reason),
                        node=a.node, reason=a.reason)
        for a in (a for a in actions if isinstance(a, DeleteNode)):
            meta = nodes[a.node].meta if a.node in nodes else None
            if self._guard("delete-node", report, lambda a=a: self.client.delete_node(a.node) or True,
                           node=a.node, reason=a.reason) is not None:
                deleted.append(a.node)
                self.metrics.retired.labels(a.reason).inc()
                event("agent.retired", node=a.node, reason=a.reason, job=meta.job if meta else None)
                if a.reason == "interrupted":
                    self._interrupted(a.node, meta)
        if deleted:
            killpoints.reached("retire.node-deleted")
        terms = [a for a in actions if isinstance(a, Terminate)]
        ids = list(dict.fromkeys(i for a in terms for i in a.instance_ids))
        if ids and self._guard("terminate", report, lambda: self.cloud.terminate(ids) or True,
                               instances=ids) is not None:
            for a in terms:
                event("instance.terminated", node=a.node, reason=a.reason, instances=list(a.instance_ids))
            self._forget_unread(terms, nodes, observed, report)
        for a in (a for a in actions if isinstance(a, Block)):
            self.blocked.block(a.offer)
            event("offer.blocked", offer="/".join(a.offer), reason=a.reason)
        held = {a.item: a for a in actions if isinstance(a, Hold)}
        for key, a in held.items():                         # once per item and reason, not every tick
            if self._held.get(key) != a.reason:
                event("item.held", queue_id=key[0], label=a.label, reason=a.reason,
                      **({"detail": a.detail} if a.detail else {}))
        self._held = {k: a.reason for k, a in held.items()}
        self._hand_over_missing(observed, nodes, actions, report)     # before this tick's launches
        provisions = [a for a in actions if isinstance(a, Provision)]
        launched = self._provision(provisions, report)
        if self.boot is not None:
            for p in provisions:
                if p.node in launched:
                    self.boot.launched(p.node, self._boot_keys.get(R.plan_key(p.item, self.s, observed.interruptions)))
        self.memory = R.after_actions(self.memory, actions, deleted, launched)

    def _provision(self, provisions: list[Provision], report: TickReport) -> dict[str, InFlight]:
        """Nodes and specs in parallel; then the launches (one request per batch where the cloud
        batches, else one each, in parallel); then each instance's secret hand-over."""
        def prepare(p: Provision) -> Prepared | None:
            return self._guard("launch", report, lambda: self.executor.prepare(p), **_context(p))
        ready = [r for r in self._pool.map(prepare, provisions) if r is not None]
        if not ready:
            return {}
        killpoints.reached("launch.node-created")
        outcomes = self._launch(ready)
        killpoints.reached("launch.launched")

        def finish(pair: tuple[Prepared, Any]) -> tuple[str, InFlight | None]:
            r, outcome = pair
            if isinstance(outcome, BaseException):
                self._failed("launch", report, outcome, **_context(r.provision))
                return r.provision.node, None
            return r.provision.node, self._guard("launch", report, lambda: self.executor.launched(r, outcome),
                                                 **_context(r.provision))
        launched = {}
        for name, flight in self._pool.map(finish, zip(ready, outcomes)):
            if flight is not None:
                launched[name] = flight
                self._handed.add(flight.instance.id)
                self.metrics.launches.labels(flight.instance.instance_type, flight.instance.market).inc()
        return launched

    def _forget_unread(self, terms: list[Terminate], nodes: dict[str, Node], observed: Observed,
                       report: TickReport) -> None:
        """Delete the bundles of terminated instances that may never have read theirs (tick_rules)."""
        if not self.executor.hands_over:
            return
        unread = T.unread_bundles(terms, nodes, [*observed.instances,
                                                 *(f.instance for f in self.memory.in_flight.values())])
        if unread:
            self._guard("forget-bundles", report, lambda: self.executor.forget(unread) or True,
                        instances=[i.id for i in unread])

    def _hand_over_missing(self, observed: Observed, nodes: dict[str, Node], actions: list,
                           report: TickReport) -> None:
        """EC2: a booting agent whose bundle this process never put (it restarted between a launch and
        the hand-over, or the hand-over failed) gets it now; one still waiting to be read is kept."""
        if not self.executor.hands_over:
            return
        self._handed = T.handed_still_live(self._handed, [*(i.id for i in observed.instances),
                                                          *(f.instance.id for f in self.memory.in_flight.values())])
        missing = T.missing_handovers(observed.instances, nodes, actions, self._handed)

        def hand_over(pair: tuple[Node, Instance]) -> str | None:
            node, inst = pair
            killpoints.reached("handover")
            done = self._guard("handover", report, lambda: self.executor.hand_over(node.name, inst) or True,
                               node=node.name, instance=inst.id)
            return inst.id if done else None
        self._handed.update(i for i in self._pool.map(hand_over, missing) if i)   # many after a restart

    def _launch(self, ready: list[Prepared]) -> list[Any]:
        """An Instance or the exception, per prepared launch; a parked warm spare (EC2) serves those
        of its plan (daemon/pools.py), the others launch."""
        taken = self._guard("pool", TickReport(), lambda: self.pools.take(ready)) if self.pools else None
        if not taken:
            return self._launch_new(ready)
        rest = iter(self._launch_new([r for k, r in enumerate(ready) if k not in taken]))
        return [taken[k] if k in taken else next(rest) for k in range(len(ready))]

    def _launch_new(self, ready: list[Prepared]) -> list[Any]:
        if not ready:
            return []
        batch = getattr(self.cloud, "launch_many", None)
        if batch is not None:
            try:
                return list(batch([r.spec for r in ready]))
            except Exception as exc:                        # not a per-spec CloudError: all failed
                return [exc] * len(ready)

        def one(r: Prepared) -> Any:
            try:
                return self.cloud.launch(r.spec)
            except Exception as exc:
                return exc
        return list(self._pool.map(one, ready))

    def _interrupted(self, node: str, meta: Any) -> None:
        # the instance is gone: its type and market are in the node's metadata (the planned offer)
        offer = meta.offer if meta is not None and meta.offer else ("unknown", "", "unknown")
        self.metrics.interruptions.labels(offer[0], offer[2]).inc()
        if meta is not None:
            self.interrupted_jobs[meta.job] += 1
