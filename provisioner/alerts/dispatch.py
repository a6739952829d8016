"""The Alerter: claims an alert (dedup), asks the rate limit, sends to the rule's sinks.

Callers:
- the daemon, for each usage record an agent posts (`alerter.on_record(record, store)`);
- `provisioner run`, for a standalone run's record;
- `provisioner alerts check [--since 1h]`, over the history (cron, or a safety net for both: dedup
  makes a second pass over the same runs send nothing).
None of them can fail because of an alert: `on_record` and `check` never raise for a sink; they
return the outcomes and log failures.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable

from provisioner.alerts.config import AlertSettings
from provisioner.alerts.events import Alert, budget_alerts, period_start, record_alerts
from provisioner.alerts.sinks import Sink, SinkError, build_sink
from provisioner.alerts.state import AlertState
from provisioner.records import count_once

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    alert: Alert
    status: str                       # sent | duplicate | rate-limited | failed | no-sink
    delivered: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Alerter:
    """Holds the settings, the state and the sinks (built lazily: a missing secret is one failure)."""

    def __init__(self, settings: AlertSettings, state: AlertState, *, sinks: dict[str, Sink] | None = None,
                 clock: Callable[[], float] = time.time):
        self.settings, self.state, self.clock = settings, state, clock
        self._sinks: dict[str, Sink | SinkError] = dict(sinks or {})

    @property
    def enabled(self) -> bool:
        return bool(self.settings.sinks and self.settings.rules)

    def _sink(self, name: str) -> Sink | SinkError:
        if name not in self._sinks:
            config = next(s for s in self.settings.sinks if s.name == name)
            try:
                self._sinks[name] = build_sink(config)
            except SinkError as exc:
                self._sinks[name] = exc
        return self._sinks[name]

    def dispatch(self, alerts: Iterable[Alert]) -> list[Outcome]:
        outcomes = []
        for alert in alerts:
            now = self.clock()
            if not self.state.claim(alert.key, now):
                outcomes.append(Outcome(alert, "duplicate"))
                continue
            admitted, held = self.state.admit(alert.group, alert.rate_limit_s, now)
            if not admitted:
                outcomes.append(Outcome(alert, "rate-limited"))
                continue
            text = alert.text
            if held:
                text += (f"\n({held} more {alert.kind} alert{'s' if held > 1 else ''} for {alert.job} were held "
                         f"back by the rate limit since the last message.)")
            outcomes.append(self._send(alert, text))
        return outcomes

    def _send(self, alert: Alert, text: str) -> Outcome:
        names = alert.sinks or tuple(s.name for s in self.settings.sinks)
        out = Outcome(alert, "sent")
        for name in names:
            sink = self._sink(name)
            try:
                if isinstance(sink, SinkError):
                    raise sink
                sink.send(alert.subject, text)
                out.delivered.append(name)
            except SinkError as exc:
                out.errors.append(str(exc))
                log.warning("alert %s not delivered: %s", alert.key, exc)
        if names and not out.delivered:
            out.status = "failed"
            self.state.release(alert.key)  # nobody heard it: a later pass may try again
        elif not names:
            out.status = "no-sink"
        return out

    def on_record(self, record: dict, store=None) -> list[Outcome]:
        """Alerts for one stored run, and (with the store) the budgets its cost may have crossed."""
        if not self.enabled:
            return []
        outcomes = self.dispatch(record_alerts(record, self.settings))
        if store is not None:
            outcomes += self.check_budgets(store)
        return outcomes

    def check_budgets(self, store) -> list[Outcome]:
        now = datetime.fromtimestamp(self.clock(), timezone.utc)
        budget_rules = [r for r in self.settings.rules if "budget" in r.on]
        if not budget_rules:
            return []
        since = min(period_start(r.period, now) for r in budget_rules).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.dispatch(budget_alerts(count_once(list(store.records(since=since))), self.settings, now))

    def check(self, store, since: str | None) -> list[Outcome]:
        """Every run since `since` and every budget: what `alerts check` does."""
        if not self.enabled:
            return []
        outcomes = []
        for record in store.records(since=since):
            outcomes += self.dispatch(record_alerts(record, self.settings))
        outcomes += self.check_budgets(store)
        self.state.prune(self.clock())
        return outcomes


def alert_on_record(settings: AlertSettings | None, history_location: str, record: dict) -> list[Outcome]:
    """The one call `provisioner run` (after storing a standalone run's record) or the daemon (per
    record an agent posts) makes, with `config.alerts.settings` (None: no alerts). Never raises: an
    alert problem is logged, the caller carries on."""
    try:
        if settings is None or not (settings.sinks and settings.rules):
            return []
        from provisioner.alerts.state import open_alert_state
        from provisioner.history import open_store
        with open_alert_state(history_location) as state, open_store(history_location) as store:
            return Alerter(settings, state).on_record(record, store)
    except Exception as exc:  # noqa: BLE001 - alerts must never fail a build or the daemon
        log.warning("alerts for run %s not raised: %s", record.get("run_id"), exc)
        return []
