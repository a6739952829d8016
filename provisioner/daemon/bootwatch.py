"""The loop's side of boot failures (decisions in bootfail.py): what ended, said once, cleaned up.

Each tick the loop asks `collect` for the instances that ended: the cloud's view (`cloud.ended`,
where the cloud has it: the docker cloud's exited containers with their exit code and log tail) and
the failure reports instances posted to `POST /v1/events` since the last tick. For each boot
failure `act` logs ONE line (`agent.boot-failed`, naming node, instance, offer and cause), counts
it in `provisioner_failures_total{action="boot",code=...}`, deletes the node and terminates the
instance; a key that reaches `daemon.pause_after_boot_failures` failures in a row is paused once
(`boot.paused` line and an alert to every configured sink).
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterable, Mapping

from provisioner.clouds.base import Cloud, Instance
from provisioner.daemon import bootfail as B
from provisioner.daemon.events import emitter
from provisioner.daemon.model import Node, NoPlan

REPORT_CODES = ("bootstrap-failed", "agent-exited")
MAX_REPORTS = 1000


_event = emitter("provisioner.daemon.loop")


class BootWatch:
    def __init__(self, cloud: Cloud, executor: Any, metrics: Any, threshold: int,
                 alert: Callable[[str, str], None] | None = None):
        self.cloud, self.executor, self.metrics = cloud, executor, metrics
        self.threshold, self.alert = threshold, alert
        self.ledger = B.Ledger()
        self.keys: dict[str, str] = {}                # node -> boot key of the agent launched for it
        self._reports: list[tuple[str, dict]] = []
        self._lock = threading.Lock()

    # -- from the agent API's threads -------------------------------------------------------------
    def report(self, node: str, body: dict) -> None:
        """An instance's own failure report (already validated by the API)."""
        with self._lock:
            if len(self._reports) < MAX_REPORTS:
                self._reports.append((node, body))

    # -- observe ---------------------------------------------------------------------------------
    def collect(self, owner: str, instances: Iterable[Instance], nodes: Mapping[str, Node],
                in_flight: Mapping[str, Any]) -> list[B.Ended]:
        ended = list(self.cloud.ended(owner)) if hasattr(self.cloud, "ended") else []
        with self._lock:
            reports, self._reports = self._reports, []
        by_node = {i.tag("node"): i for i in instances if i.tag("node")}
        for name, f in in_flight.items():
            by_node.setdefault(name, f.instance)
        for node, body in reports:
            inst = by_node.get(node)
            meta = nodes[node].meta if node in nodes else None
            offer = meta.offer if meta is not None else None
            image, config = self.keys.get(node, "|").split("|", 1) if node in self.keys else ("", "")
            ended.append(B.Ended(instance=inst.id if inst else str(body.get("instance") or "?"), node=node,
                                 image=image, config=config or (inst.tags.get(B.BOOT_CONFIG_TAG, "") if inst else ""),
                                 code=body["code"], exit_code=body.get("exit_code"),
                                 detail=str(body.get("message") or "")[:200],
                                 log_tail=tuple(str(x)[:300] for x in (body.get("log_tail") or ())[-B.LOG_TAIL_LINES:]),
                                 offer=tuple(offer) if offer else None, source="report"))
        return ended

    def plan_keys(self, plans: Mapping[Any, Any]) -> dict[Any, str | None]:
        """The boot key each plan would launch with (None: unknown, never held)."""
        identity = getattr(self.cloud, "image_identity", None)
        out: dict[Any, str | None] = {}
        images: dict[Any, str] = {}
        for key, plan in plans.items():
            if isinstance(plan, NoPlan) or identity is None:
                out[key] = None
                continue
            offer = plan.chosen.offer
            if offer.key not in images:
                images[offer.key] = identity(offer)
            out[key] = B.boot_key(images[offer.key], self.executor.boot_config(key.label))
        return out

    def launched(self, node: str, key: str | None) -> None:
        if key is not None:
            self.keys[node] = key
            if len(self.keys) > 20_000:                 # bounded: the oldest matter least
                for k in list(self.keys)[:10_000]:
                    del self.keys[k]

    # -- act -------------------------------------------------------------------------------------
    def failed(self, f: B.BootFailure, key: str) -> None:
        e = f.ended
        self.metrics.failures.labels("boot", e.code).inc()
        _event("agent.boot-failed", logging.WARNING, node=f.node, instance=e.instance,
               offer="/".join(e.offer) if e.offer else None, code=e.code, exit_code=e.exit_code,
               cause=f.cause(), image=e.image[:80] or None, source=e.source)

    def settle(self, failed_keys: list[str], connected_nodes: Iterable[str]) -> list[str]:
        """Fold this tick into the ledger; alert once per newly paused key. Returns those keys."""
        succeeded = [self.keys[n] for n in connected_nodes if n in self.keys]
        self.ledger, newly = B.record(self.ledger, failed_keys, succeeded, self.threshold)
        for key in newly:
            image, _, config = key.partition("|")
            text = (f"Agents booted from image {image} (config {config}) died before connecting "
                    f"{self.ledger.failures.get(key)} times in a row; demand that needs them is held "
                    "until the image or the configuration changes.")
            _event("boot.paused", logging.ERROR, image=image, config=config,
                   failures=self.ledger.failures.get(key))
            if self.alert is not None:
                try:
                    self.alert(key, text)
                except Exception as exc:                # an alert never stops the loop
                    _event("boot.alert-failed", logging.WARNING, error=str(exc)[:200])
        return newly


def alert_sender(settings: Any, history_location: str) -> Callable[[str, str], None] | None:
    """A function sending a boot-pause alert to every configured sink (`config.alerts.settings`,
    an alerts.config.AlertSettings; None: no sinks)."""
    if not settings.sinks:
        return None

    def send(key: str, text: str) -> None:
        from provisioner.alerts.dispatch import Alerter
        from provisioner.alerts.events import Alert
        from provisioner.alerts.state import open_alert_state
        alert = Alert(kind="boot-paused", key=f"boot-paused:{key}", group=f"boot-paused:{key}",
                      subject="provisioner: agents fail to boot; demand paused", text=text, sinks=(),
                      rate_limit_s=settings.rate_limit_s)
        with open_alert_state(history_location) as state:
            Alerter(settings, state).dispatch([alert])
    return send
