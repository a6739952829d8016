"""Agent reuse in the daemon (labels.<expr>.reuse; off by default; decisions in provisioner/pool.py).

An agent whose build ended is normally retired (one build per agent). With `reuse` on for its label
it waits up to `idle` for the next build **of the same job**: when that build is the oldest waiting
item the node's labels fit (the one Jenkins would hand it), the daemon writes the agent a new secret
bundle (the same node and secret, a new report token: the last build's token stops working) and
its agent process stops (daemon/handover.py: on the docker cloud the bundle is copied in and the
agent stopped at once; on EC2 the bundle goes into an SSM parameter of the instance, which its
watcher picks up while idle, then stops the agent itself); the instance's bootstrap kills every
process and container the last build left, wipes the workspace and starts the agent again
(provisioner/agent/recycle.py). Once the old agent is gone (EC2: the instance deleted the
parameter), its node is put online again and Jenkins
starts the waiting build on it; from then on it is a used node like any other (drained at once,
then waiting or retired). Each build posts its own usage record with its own token.

Phases, per node: waiting (idle, drained) -> recycling (bundle written, agent restarting) ->
offered (put online again; Jenkins starts the build once the new agent connects; a
node drained by us reads offline in Jenkins whether or not its agent is connected) -> reconcile again. While in a phase the node, its instance and the
item it serves are kept from `reconcile`. Every timeout (idle, the recycle, the offer) ends in the default:
the node is handed back to reconcile, which retires it. A restart forgets the phases: the default.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from provisioner import pool as P
from provisioner.clouds.base import Cloud
from provisioner.daemon import reconcile as R
from provisioner.daemon.events import emitter
from provisioner.daemon.handover import CloudHandover
from provisioner.daemon.model import DRAIN_MESSAGES, Observed
from provisioner.labels import canonical_expression as canonical

log = logging.getLogger(__name__)
RESTART_S = 1.0           # after the recycle, the old agent has exited: the node is put online again
LEFT_GRACE_S = 5.0        # an offered item that left the queue without the node seen busy: how long to look


event = emitter(__name__)


class ReuseKeeper:
    def __init__(self, specs: dict[str, P.ReuseSpec], *, settings: Any, executor: Any, cloud: Cloud,
                 client: Any, drains: Any, metrics: Any = None, clock: Callable[[], float] | None = None,
                 handover: Any = None):
        self.specs, self.s, self.executor, self.cloud = specs, settings, executor, cloud
        self.client, self.drains, self.metrics = client, drains, metrics
        self.handover = handover if handover is not None else CloudHandover(cloud)   # daemon/handover.py
        self._agents: dict[str, dict] = {}          # node -> {phase, since, builds, item}

    def _spec(self, label: str | None) -> P.ReuseSpec | None:
        try:
            return self.specs.get(canonical(label)) if label else None
        except Exception:                           # noqa: BLE001
            return None

    def split(self, observed: Observed, now: float) -> tuple[set[str], set]:
        """(nodes, item keys) kept from reconcile this tick; acts on the phases as it goes."""
        instances = {i.tag("node"): i for i in observed.instances if i.tag("node") and i.state == "running"}
        demand = sorted((i for i in observed.items if R.is_demand_item(i, self.s)), key=lambda i: (i.since, i.id))
        waiting = [(i.key, i.job, i.label) for i in demand]
        keys = {i.key for i in demand}
        held, claimed = set(), set()
        seen = {n.name for n in observed.nodes}
        self._agents = {k: v for k, v in self._agents.items() if k in seen}
        for node in observed.nodes:
            spec = self._spec(node.meta.label if node.meta else None)
            st = self._agents.get(node.name)
            if spec is None or node.name not in instances:
                self._agents.pop(node.name, None)
                continue
            if st is None:
                ran = node.name in observed.memory.seen_busy or node.offline_reason == DRAIN_MESSAGES["started"]
                if ran and not node.busy and node.temporarily_offline:     # (a short build: never seen busy)
                    st = self._agents[node.name] = {"phase": "waiting", "since": now, "builds": 1}
                else:
                    continue
            if self._step(node, st, spec, instances[node.name], waiting, keys, claimed, now):
                held.add(node.name)
                if st.get("item") is not None:
                    claimed.add(st["item"])
        return held, claimed

    def _step(self, node: Any, st: dict, spec: P.ReuseSpec, inst: Any, waiting: list, keys: set,
              claimed: set, now: float) -> bool:
        """Advance one node's phase; True while it stays out of reconcile."""
        phase = st["phase"]
        if phase == "waiting":
            if node.busy:                              # its next build runs: idle counts from its end
                st["since"] = now
                return False
            if st["builds"] >= spec.max_builds:
                return self._release(node.name, "max-builds")
            key = P.next_build(node.meta.job, node.labels, st["builds"], spec, waiting, R.satisfies, claimed)
            if key is not None:
                return self._recycle(node, st, inst, key, now)
            return now - st["since"] <= spec.idle_s or self._release(node.name, "idle")
        if phase == "recycling":
            if st["item"] not in keys:                 # the build left the queue meanwhile
                st.update(phase="waiting", since=now, item=None)
                return True
            if now - st["since"] >= RESTART_S and self._recycled(node.name, inst):
                self.drains.undrain(node.name)         # the old agent is gone: Jenkins hands the node
                st.update(phase="offered", since=now)  # its build as soon as the new one connects
            elif now - st["since"] > self.s.boot_timeout_s:
                self.drains.drain(node.name, "no-demand")
                return self._release(node.name, "recycle-timeout")
            return True
        # offered (the node was put online before this observation)
        started = node.temporarily_offline and node.offline_reason == DRAIN_MESSAGES["started"]
        if node.busy or started:                       # started: drained by its build-start signal
            if self.metrics is not None:
                self.metrics.reuses.inc()
            event("reuse.build-started", node=node.name, builds=st["builds"])
            st.update(phase="waiting", since=now, item=None)
            st.pop("left", None)
            return not node.busy                       # busy: reconcile keeps it; else held till seen busy
        if st["item"] not in keys:                     # left the queue: the node's build, seen shortly
            st.setdefault("left", now)
        if now - st["since"] > self.s.boot_timeout_s or now - st.get("left", now) > LEFT_GRACE_S:
            self.drains.drain(node.name, "no-demand")
            return self._release(node.name, "not-taken")
        return True

    def _recycle(self, node: Any, st: dict, inst: Any, key: Any, now: float) -> bool:
        from provisioner import secret_bundle
        builds = st["builds"] + 1
        try:
            bundle = secret_bundle.make_bundle(agent_secret=self.client.node_secret(node.name),
                                         report_url=self.executor.s.report_url,
                                         report_token=self.executor.tokens.for_node(node.name, builds),
                                         node_name=node.name, run_id=f"{node.name}-{builds}",
                                         reuse=getattr(self.handover, "bundle_reuse", False))
            self.handover.recycle(inst, secret_bundle.encode(bundle))
        except Exception as exc:                       # noqa: BLE001 - then the default: retire it
            event("reuse.failed", node=node.name, error=str(exc)[:200])
            return self._release(node.name, "recycle-failed")
        st.update(phase="recycling", since=now, item=key, builds=builds)
        event("reuse.recycled", node=node.name, queue_id=key[0], builds=builds)
        return True

    def _recycled(self, name: str, inst: Any) -> bool:
        """Has the agent taken its next bundle (the old agent gone)? A failed look: not yet."""
        try:
            return bool(self.handover.recycled(inst))
        except Exception as exc:                       # noqa: BLE001 - asked again next tick
            log.debug("recycle of %s not confirmed: %s", name, exc)
            return False

    def _release(self, name: str, why: str = "") -> bool:
        """Back to reconcile (which retires the node); False, for the caller's return."""
        st = self._agents.pop(name, None)
        if why and st is not None:
            event("reuse.released", node=name, reason=why, builds=st["builds"])
        return False
