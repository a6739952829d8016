"""Prometheus metrics on a private registry (client_python's collector style).

Counters and histograms are ordinary client objects; the gauges that describe "now" (waiting items,
agents by state, cost, budget headroom, utilisation from samples) come from a collector that reads
the last tick's `Snapshot` and the agents' latest samples at scrape time, so a label value that no
longer exists simply disappears. Tests build a fresh `CollectorRegistry` and read
`registry.get_sample_value(...)`.

Label values that come from users (label expressions, job names) go through `capped`: each at most
LABEL_VALUE_MAX characters (a longer one is cut and ends in a hash of the whole, so two long values
stay apart) and at most LABEL_SERIES_MAX values per metric (the largest kept; the rest summed under
OTHER), so a hostile label cannot blow up /metrics. What /metrics shows (label expressions, node
names, instance types, prices) is listed in docs/security.md.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

GIB = 1024 ** 3
# queue wait to agent online: boot dominates (docker: seconds; EC2: a minute or two)
WAIT_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 90, 120, 180, 300, 600, 1200, 3600)
TICK_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
LABEL_VALUE_MAX = 120
LABEL_SERIES_MAX = 50
OTHER = "(other)"


def short_value(value: str, max_len: int = LABEL_VALUE_MAX) -> str:
    """`value` cut to `max_len` characters; a cut one ends in '~' and 10 hex digits of its hash."""
    if len(value) <= max_len:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:10]
    return value[:max(0, max_len - 11)] + "~" + digest


def capped(values: Mapping[str, float], max_len: int = LABEL_VALUE_MAX,
           max_series: int = LABEL_SERIES_MAX) -> list[tuple[str, float]]:
    """(label value, number) pairs for a gauge keyed by a user's value, capped in length and count."""
    merged: dict[str, float] = {}
    for value, n in values.items():
        key = short_value(str(value), max_len)
        merged[key] = merged.get(key, 0) + n
    if len(merged) <= max_series:
        return sorted(merged.items())
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:max_series - 1])
    kept[OTHER] = kept.get(OTHER, 0) + sum(n for _, n in ranked[max_series - 1:])
    return sorted(kept.items())


@dataclass(frozen=True)
class AgentInfo:
    node: str
    state: str                      # booting | idle | busy | draining | orphan
    instance_type: str
    market: str
    price: float
    vcpu: float | None = None
    memory_gib: float | None = None


@dataclass(frozen=True)
class Snapshot:
    """What the last tick saw, for the gauges."""

    at: float = 0.0
    waiting: Mapping[str, int] = field(default_factory=dict)        # label -> demand items waiting
    agents: tuple[AgentInfo, ...] = ()
    budget_usd_per_hour: float | None = None
    held: Mapping[str, int] = field(default_factory=dict)            # hold reason -> items
    team_ratio: Mapping[str, float] = field(default_factory=dict)    # team -> spend / budget (fullest budget)
    team_remaining: Mapping[str, float] = field(default_factory=dict)  # team -> USD left (fullest budget)
    vcpus: Mapping[tuple[str, str, str], float] = field(default_factory=dict)   # (region, class, market)
    vcpu_limits: Mapping[tuple[str, str, str], tuple[float, str]] = field(default_factory=dict)  # -> (n, source)
    max_vcpus: float | None = None


@dataclass(frozen=True)
class Sample:
    run_id: str
    at: str
    cpu_pct: float | None
    mem_bytes: float | None
    gpu_util_pct: float | None
    received: float


class Samples:
    """The latest sample per node (thread-safe: the HTTP threads write, the scrape reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_node: dict[str, Sample] = {}

    def put(self, node: str, sample: Sample) -> None:
        with self._lock:
            self._by_node[node] = sample

    def latest(self) -> dict[str, Sample]:
        with self._lock:
            return dict(self._by_node)

    def keep_only(self, nodes: set[str]) -> None:
        with self._lock:
            self._by_node = {n: s for n, s in self._by_node.items() if n in nodes}


class DaemonMetrics:
    """Every metric the daemon exports, registered on `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.time):
        self.registry = registry or CollectorRegistry()
        self.samples = Samples()
        self.snapshot = Snapshot()
        r = self.registry
        self.launches = Counter("provisioner_launches", "Instances launched", ["instance_type", "market"], registry=r)
        self.failures = Counter("provisioner_failures", "Failed actions by action and error code",
                                ["action", "code"], registry=r)
        self.retired = Counter("provisioner_agents_retired", "Agents retired, by reason", ["reason"], registry=r)
        self.interruptions = Counter("provisioner_interruptions", "Agents whose machine vanished mid-build",
                                     ["instance_type", "market"], registry=r)
        self.usage_records = Counter("provisioner_usage_records", "Usage records posted by agents, by result",
                                     ["result"], registry=r)
        self.samples_received = Counter("provisioner_samples", "Utilisation samples posted by agents", registry=r)
        self.queue_wait = Histogram("provisioner_queue_wait_to_agent_online_seconds",
                                    "From a queue item entering the queue to its agent coming online "
                                    "(as seen by the daemon: within drain_poll_s, else the interval)",
                                    buckets=WAIT_BUCKETS, registry=r)
        self.tick_duration = Histogram("provisioner_reconcile_duration_seconds",
                                       "One tick of the loop (observe, reconcile, act)", buckets=TICK_BUCKETS,
                                       registry=r)
        self.reconcile_cpu = Histogram("provisioner_reconcile_step_seconds",
                                       "The pure reconcile step alone", buckets=TICK_BUCKETS, registry=r)
        self.api_refused = Counter("provisioner_agent_api_refused", "Agent API posts refused, by reason "
                                   "(token, expired, other-job, no-build, rate, starting, jenkins)",
                                   ["reason"], registry=r)
        self.items_rejected = Counter("provisioner_items_rejected", "Queue items refused for good (a label "
                                      "that cannot be parsed or planned), once per item, by reason",
                                      ["reason"], registry=r)
        self.jenkins_requests = Counter("provisioner_jenkins_requests", "Requests to Jenkins, by endpoint",
                                        ["endpoint"], registry=r)
        r.register(_SnapshotCollector(self, clock))

    def publish(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.samples.keep_only({a.node for a in snapshot.agents})


class _SnapshotCollector(Collector):
    def __init__(self, metrics: DaemonMetrics, clock: Callable[[], float]):
        self._m = metrics
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self._m.snapshot
        waiting = GaugeMetricFamily("provisioner_queue_waiting_items", "Demand items waiting, by label",
                                    labels=["label"])
        for label, n in capped(snap.waiting):
            waiting.add_metric([label], n)
        yield waiting
        held = GaugeMetricFamily("provisioner_queue_held_items",
                                 "Items the last tick could not launch for, by reason", labels=["reason"])
        for reason, n in capped(snap.held):
            held.add_metric([reason], n)
        yield held
        agents = GaugeMetricFamily("provisioner_agents", "Agents by state, instance type and market",
                                   labels=["state", "instance_type", "market"])
        counts: dict[tuple[str, str, str], int] = {}
        for a in snap.agents:
            k = (a.state, a.instance_type, a.market)
            counts[k] = counts.get(k, 0) + 1
        for k, n in sorted(counts.items()):
            agents.add_metric(list(k), n)
        yield agents
        cost = sum(a.price for a in snap.agents)
        yield GaugeMetricFamily("provisioner_agents_cost_usd_per_hour", "Hourly price of every live agent",
                                value=cost)
        if snap.budget_usd_per_hour is not None:
            yield GaugeMetricFamily("provisioner_budget_headroom_usd_per_hour",
                                    "Budget left for new agents (USD per hour)",
                                    value=snap.budget_usd_per_hour - cost)
        yield GaugeMetricFamily("provisioner_last_tick_timestamp_seconds", "When the last tick ended",
                                value=snap.at)
        yield from _caps_and_budgets(snap)
        yield from self._utilisation(snap)

    def _utilisation(self, snap: Snapshot) -> Iterator[GaugeMetricFamily]:
        by_node = {a.node: a for a in snap.agents}
        cpu = GaugeMetricFamily("provisioner_agent_cpu_ratio", "CPU in use over the agent's vCPUs (latest sample)",
                                labels=["node", "instance_type"])
        mem = GaugeMetricFamily("provisioner_agent_memory_bytes", "Memory in use (latest sample)",
                                labels=["node", "instance_type"])
        mem_ratio = GaugeMetricFamily("provisioner_agent_memory_ratio", "Memory in use over the agent's memory",
                                      labels=["node", "instance_type"])
        gpu = GaugeMetricFamily("provisioner_agent_gpu_utilisation_ratio", "GPU utilisation (latest sample)",
                                labels=["node", "instance_type"])
        for node, s in sorted(self._m.samples.latest().items()):
            a = by_node.get(node)
            if a is None:
                continue
            key = [node, a.instance_type]
            if s.cpu_pct is not None and a.vcpu:
                cpu.add_metric(key, s.cpu_pct / 100.0 / a.vcpu)
            if s.mem_bytes is not None:
                mem.add_metric(key, s.mem_bytes)
                if a.memory_gib:
                    mem_ratio.add_metric(key, s.mem_bytes / (a.memory_gib * GIB))
            if s.gpu_util_pct is not None and not math.isnan(s.gpu_util_pct):
                gpu.add_metric(key, s.gpu_util_pct / 100.0)
        yield from (cpu, mem, mem_ratio, gpu)


def _caps_and_budgets(snap: Snapshot) -> Iterator[GaugeMetricFamily]:
    """vCPUs by quota class against their limits, and team budget use (team names come from the
    config, still capped like any label value)."""
    used = GaugeMetricFamily("provisioner_agent_vcpus", "vCPUs of live agents, by region, EC2 quota class and market",
                             labels=["region", "quota_class", "market"])
    for (region, cls, market), n in sorted(snap.vcpus.items()):
        used.add_metric([region, cls, market], n)
    yield used
    limits = GaugeMetricFamily("provisioner_vcpu_limit", "vCPU limit per region, quota class and market "
                               "(source: cap = daemon.max_vcpus_per_class, quota = the account's Service Quota "
                               "times daemon.quota_share)", labels=["region", "quota_class", "market", "source"])
    for (region, cls, market), (n, source) in sorted(snap.vcpu_limits.items()):
        limits.add_metric([region, cls, market, source], n)
    yield limits
    if snap.max_vcpus is not None:
        yield GaugeMetricFamily("provisioner_max_vcpus", "daemon.max_vcpus: vCPUs of all agents together",
                                value=snap.max_vcpus)
    ratio = GaugeMetricFamily("provisioner_team_budget_used_ratio", "Spend over budget in the current period "
                              "(records plus running agents), the fullest budget naming the team",
                              labels=["team"])
    for team, r in capped(snap.team_ratio):
        ratio.add_metric([team], r)
    yield ratio
    left = GaugeMetricFamily("provisioner_team_budget_remaining_usd", "USD left in the team's fullest budget "
                             "this period", labels=["team"])
    for team, r in capped(snap.team_remaining):
        left.add_metric([team], r)
    yield left
