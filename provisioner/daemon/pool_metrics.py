"""The warm pool's metrics (docs/operations.md, "Warm pool"): spares by label and state, hits and
misses, retirements. On the daemon's registry; label values are the config's own label expressions,
still capped in length and count as every user-given value is (provisioner/daemon/metrics.py)."""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from provisioner.daemon.metrics import LABEL_SERIES_MAX, short_value


class PoolMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.hits = Counter("provisioner_pool_hits", "Builds that started on a warm spare, by label",
                            ["label"], registry=registry)
        self.misses = Counter("provisioner_pool_misses", "Builds of a pooled label that had no spare and "
                              "were launched for, by label", ["label"], registry=registry)
        self.retired = Counter("provisioner_pool_spares_retired", "Spares retired unused, by reason "
                               "(image, offer, boot-timeout, max-idle, shrink, lost, no-node)",
                               ["reason"], registry=registry)
        self.reuses = Counter("provisioner_agent_reuses", "Builds that started on a reused agent (an agent "
                              "that had finished a build of the same job)", registry=registry)
        self.keeper: Any = None
        registry.register(_SparesCollector(self))


class _SparesCollector(Collector):
    def __init__(self, metrics: PoolMetrics):
        self._m = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily("provisioner_pool_spares", "Warm spares by label and state "
                              "(ready, starting, stopped)", labels=["label", "state"])
        states = dict(getattr(self._m.keeper, "states", None) or {})
        labels = sorted({c for c, _ in states})[:LABEL_SERIES_MAX]
        for c in labels:
            for (label, state), n in sorted(states.items()):
                if label == c:
                    g.add_metric([short_value(c), state], n)
        yield g
