"""Plans for the loop, made once per distinct (label, job, interrupted) and cached across ticks.

Each label's intent (provisioner/intent.py: requirements, timeout, market, architecture, team) is
resolved once per (label, interrupted) and carried by its plans to the launch; nothing after this
reads the label again. A cached plan stays valid while its inputs do: the blocked-offer set and the
job's history (its newest run). History is read once per job per `history_ttl_s`, and again as soon
as the agent API stores a new record for the job.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Callable, Iterable

from provisioner.catalog import Catalog
from provisioner.config import Config
from provisioner.daemon.model import NoPlan, PlanKey, PlanOrError
from provisioner.selection import Plan
from provisioner.errors import NoOfferError, ProvisionerError
from provisioner.intent import RECENT_RUNS, Intent, recent_interruptions
from provisioner.plan_settings import PeakSpread
from provisioner.planner import HISTORY_RUNS, plan_intent, resolve_for_config, settings_for, site_spread
from provisioner.records import count_once

__all__ = ["PlanCache", "RECENT_RUNS"]


class PlanCache:
    def __init__(self, config: Config, catalog: Catalog, open_store: Callable[[], Any] | None,
                 blocked: Callable[[], frozenset], managed_atom: str = "ec2", *,
                 history_ttl_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.config, self.catalog = config, catalog
        # Plans for labels that name no region only look at the configured regions: a catalog cut to
        # them once (us-east-1 kept: history lookups fall back to it) makes each plan ~3x faster.
        wanted = set(config.regions or ["us-east-1"]) | {"us-east-1"}
        self.regional = Catalog([o for o in catalog.offers if o.region in wanted], catalog.source,
                                catalog.score_source, list(catalog.warnings))
        self._open_store, self._blocked = open_store, blocked
        self.managed_atom = managed_atom
        self.history_ttl_s = history_ttl_s
        self._clock = clock
        self._runs: dict[str, tuple[float, list[dict]]] = {}
        self._site: tuple[float, PeakSpread | None] | None = None    # (read at, the site's spread of peaks)
        self._plans: dict[tuple, PlanOrError] = {}
        self._intents: dict[tuple[str, bool], Intent] = {}
        # offers that fit, by label and sizing, per catalog (`select`'s memo): many jobs share a label
        self._pools: dict[int, dict] = {id(self.catalog): {}, id(self.regional): {}}
        self._lock = threading.Lock()           # invalidate() comes from HTTP threads
        self.planned = 0                        # plans made (cache misses), for the benchmark

    def invalidate(self, job: str) -> None:
        """A new usage record for `job`: read its history again before the next plan."""
        with self._lock:
            self._runs.pop(job, None)

    def runs(self, jobs: Iterable[str]) -> dict[str, list[dict]]:
        now = self._clock()
        with self._lock:
            stale = [j for j in set(jobs) if j not in self._runs or now - self._runs[j][0] > self.history_ttl_s]
        fresh: dict[str, list[dict]] = {}
        site_stale = bool(stale) and (self._site is None or now - self._site[0] > self.history_ttl_s)
        if stale and self._open_store is not None:
            with self._open_store() as store:
                fresh = {j: count_once(store.runs(j, limit=HISTORY_RUNS)) for j in stale}
                if site_stale:
                    self._site = (now, site_spread(store))
        with self._lock:
            for j in stale:
                self._runs[j] = (now, fresh.get(j, []))
            return {j: self._runs[j][1] for j in set(jobs) if j in self._runs}

    def interruptions(self, runs: dict[str, list[dict]]) -> dict[str, int]:
        return {job: recent_interruptions(rs) for job, rs in runs.items()}

    def plans(self, keys: Iterable[PlanKey], runs: dict[str, list[dict]]) -> dict[PlanKey, PlanOrError]:
        blocked = self._blocked()
        out: dict[PlanKey, PlanOrError] = {}
        if len(self._plans) > 20000:
            self._plans.clear()
            self._intents.clear()
            for pools in self._pools.values():
                pools.clear()
        for key in keys:
            rs = runs.get(key.job, [])
            sig = (key, blocked, len(rs), rs[-1].get("run_id") if rs else None)
            if sig not in self._plans:
                self._plans[sig] = self._plan(key, rs, blocked)
                self.planned += 1
            out[key] = self._plans[sig]
        return out

    def intent(self, label: str, interrupted: bool = False) -> Intent:
        """The intent of a queue item's label (read as Jenkins does); `interrupted`: its job was
        interrupted at least `daemon.ondemand_after_interruptions` times recently."""
        key = (label, interrupted)
        found = self._intents.get(key)
        if found is None:
            limit = int(self.config.daemon.ondemand_after_interruptions or 0)
            found = self._intents[key] = resolve_for_config(self.config, label, lax=True,
                                                            interruptions=limit if interrupted else 0)
        return found

    def _plan(self, key: PlanKey, runs: list[dict], blocked: frozenset) -> PlanOrError:
        try:
            intent = self.intent(key.label, key.ondemand)
            try:
                return self._plan_intent(intent, runs, blocked)
            except NoOfferError:
                if not intent.market_forced:
                    raise
                # on demand is only the interruption rule's preference: the request allows spot
                return self._plan_intent(self.intent(key.label), runs, blocked)
        except ProvisionerError as exc:     # no offer, or a label we cannot read: the item waits
            return NoPlan(str(exc))
        except Exception as exc:            # noqa: BLE001 - one item's plan must never stop a tick
            return NoPlan(f"cannot plan: {type(exc).__name__}: {str(exc)[:200]}")

    def _plan_intent(self, intent: Intent, runs: list[dict], blocked: frozenset) -> Plan:
        settings = settings_for(self.config, intent)
        if runs and self._site is not None:
            settings = replace(settings, peak_spread=self._site[1])
        catalog = self.catalog if intent.requirements.mentions_region else self.regional
        return plan_intent(catalog, intent, runs, settings, blocked, self.managed_atom, self._pools[id(catalog)])
