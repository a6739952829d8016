"""The daemon's side of team budgets: reads the period's records every `refresh_s` (a record an agent
posts meanwhile is added to the sums as it is stored), adds the running agents' accrued cost each
tick, and announces crossed thresholds.

The arithmetic is provisioner/budgets.py's; this adapter owns only the store reads, the cache and
the alert hand-off (off the loop's thread: a slow sink must not stretch a tick).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterable, Mapping

from provisioner.alerts.config import AlertSettings
from provisioner.budgets import (BudgetUse, Recorded, Running, budget_rules, earliest_start, recorded_spend, use_alerts,
                                 with_running)
from provisioner.clouds.base import Instance
from provisioner.daemon.model import GONE_STATES
from provisioner.runner.summary import team_for

log = logging.getLogger(__name__)
_KEEP = ("job", "start", "cost_usd", "price_usd_per_hour", "duration_s", "node", "team")


class TeamSpend:
    """Per tick: `evaluate(now, instances, prices)` -> every budget's use in its period."""

    def __init__(self, alerts: AlertSettings, teams_map: Mapping[str, Any], store: Callable[[], Any], *,
                 dispatch: Callable[[list], Any] | None = None, refresh_s: float = 60,
                 clock: Callable[[], float] = time.monotonic):
        self.rules = budget_rules(alerts.rules)
        self.alert_settings = alerts
        self.teams_map = dict(teams_map or {})
        self._store, self._dispatch, self.refresh_s, self._clock = store, dispatch, refresh_s, clock
        self._recorded: Recorded | None = None
        self._read_at: float | None = None
        self._since: str | None = None
        self._announced: set[str] = set()
        self._team_of: dict[str, str | None] = {}
        self._lock = threading.Lock()
        self._wall = time.time
        self.uses: list[BudgetUse] = []

    @property
    def enforcing(self) -> bool:
        return any(r.enforce for r in self.rules)

    def team_of(self, job: str) -> str | None:
        """The job's team by the config's mapping (memoised: job names repeat every tick)."""
        if job not in self._team_of:
            if len(self._team_of) > 10000:
                self._team_of.clear()
            self._team_of[job] = team_for(job, self.teams_map)
        return self._team_of[job]

    def invalidate(self, record: dict | None = None) -> None:
        """A record was stored (the agent API's thread): its cost is added to the sums at once, without
        reading the store again; without a record (or across a period's start), read on the next tick."""
        with self._lock:
            if record is None or self._recorded is None:
                self._read_at = None
                return
            add = recorded_spend(self.rules, self.teams_map, [{k: record.get(k) for k in _KEEP}], self._wall())
            old = self._recorded
            if add.since != old.since:
                self._read_at = None
                return
            self._recorded = Recorded(old.rules, old.since, tuple(a + b for a, b in zip(old.usd, add.usd)),
                                      old.nodes | add.nodes)

    def _refresh(self, now: float) -> None:
        since = earliest_start(self.rules, now)
        stale = self._read_at is None or self._clock() - self._read_at >= self.refresh_s or since != self._since
        if not stale:
            return
        with self._store() as store:
            records = [{k: r.get(k) for k in _KEEP} for r in store.records(since=since)]
        self._recorded = recorded_spend(self.rules, self.teams_map, records, now)
        self._read_at, self._since = self._clock(), since

    def evaluate(self, now: float, instances: Iterable[Instance], prices: Mapping[str, float]) -> list[BudgetUse]:
        if not self.rules:
            return []
        with self._lock:
            self._refresh(now)
            recorded = self._recorded
        running = [Running(i.tag("job"), i.tag("node"), prices.get(i.id, 0.0), i.launched_at)
                   for i in instances if i.state not in GONE_STATES]
        if recorded is None:
            return []
        self.uses = with_running(recorded, self.teams_map, running, now)
        self._announce()
        return self.uses

    def _announce(self) -> None:
        if self._dispatch is None:
            return
        fresh = [a for a in use_alerts(self.uses) if a.key not in self._announced]
        if not fresh:
            return
        self._announced.update(a.key for a in fresh)
        threading.Thread(target=self._send, args=(fresh,), name="budget-alerts", daemon=True).start()

    def _send(self, alerts: list) -> None:
        try:
            self._dispatch(alerts)
        except Exception as exc:        # noqa: BLE001 - an alert problem never stops the daemon
            log.warning("budget alerts not sent: %s", exc)


def alert_dispatcher(settings: AlertSettings, history_location: str) -> Callable[[list], Any] | None:
    """Sends alerts through the configured sinks (`config.alerts.settings`) with the shared dedup
    state (None: no sinks)."""
    if not settings.sinks:
        return None

    def dispatch(alerts: list) -> Any:
        from provisioner.alerts.dispatch import Alerter
        from provisioner.alerts.state import open_alert_state
        with open_alert_state(history_location) as state:
            return Alerter(settings, state).dispatch(alerts)
    return dispatch
