#!/usr/bin/env python3
"""Benchmark: one daemon tick with 1,000 waiting items and 500 agents.

Reports, on a generated but realistic queue (a seed makes it reproducible):
  step      CPU time of the pure `reconcile(observed, settings, now)` (target < 100 ms), cold (label
            caches empty, as after a start) and warm (the median of later ticks);
  planning  plans made once per distinct (label, job) pair against the bundled catalog with the
            jobs' histories (target < 1 s; wall time, and CPU time, which a loaded machine inflates
            less), and the baseline of planning every item, with the ratio;
  baseline  the naive matcher reconcile avoids (every waiting item against every node's labels),
            with the ratio of the step to it;
  calls     Jenkins requests and AWS calls of one whole tick through the real loop (`Daemon.tick`)
            and the real EC2 adapter over a counting in-process EC2 (bench/ec2_stub.py): reads are
            constant; launches planned alike share one CreateFleet (then one CreateTags and one
            PutParameter per instance), against the same tick launching one request per agent.

Usage: bench/reconcile.py [--seed N] [--items 1000] [--agents 500] [--pairs 60] [--repeat 15]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from provisioner.catalog import load_catalog  # noqa: E402
from provisioner.clouds.base import BlockedOffers, Instance  # noqa: E402
from provisioner.config import parse_config  # noqa: E402
from provisioner.daemon import reconcile as R  # noqa: E402
from provisioner.daemon.model import Item, Memory, Node, NodeMeta, Observed, Settings, node_name  # noqa: E402
from provisioner.daemon.plan_cache import PlanCache  # noqa: E402

OWNER = "bench"
LABELS = ["ec2 && vcpu=2", "ec2 && vcpu=4 && mem=16", "ec2 && mem=32", "ec2 && gpu=1", "ec2 && vcpu=8 && spot",
          "ec2 && linux && vcpu=16", "ec2 && arch=arm64 && vcpu=4", "ec2 && family=r6i && !spot",
          "ec2 && (vcpu=2 || mem=8) && ondemand", "ec2 && mem=8 && exact"]


def history(rng: random.Random, job: str, n: int) -> list[dict]:
    base = rng.uniform(600, 7200)
    return [{"job": job, "build": str(i), "run_id": f"{job}-{i}", "start": f"2026-10-01T{i % 24:02d}:00:00Z",
             "duration_s": base * rng.uniform(0.8, 1.2), "exit_code": 0, "instance_type": "m5.xlarge",
             "region": "us-east-1", "cpu_avg_pct": rng.uniform(50, 380), "cpu_max_pct": 400, "vcpu": 4,
             "mem_max_bytes": int(rng.uniform(1, 12) * 1024 ** 3)} for i in range(n)]


def workload(rng: random.Random, n_items: int, n_agents: int, n_pairs: int, now: float):
    pairs = [(rng.choice(LABELS), f"team{p % 7}/job{p}") for p in range(n_pairs)]
    items = []
    for i in range(n_items):
        label, job = rng.choice(pairs)
        items.append(Item(i + 1, int((now - rng.uniform(1, 600)) * 1000), label, job))
    nodes, instances = [], []
    # agents: 40% busy (drained), 20% booting for a waiting item, 20% online for one, 10% finished, 10% orphans
    for a in range(n_agents):
        kind = rng.choices(["busy", "booting", "online", "finished", "orphan-node"], [4, 2, 2, 1, 1])[0]
        it = items[a] if kind in ("booting", "online") else Item(100000 + a, 1, rng.choice(LABELS), "old/job")
        name = node_name(OWNER, it.id, 1)
        meta = NodeMeta(OWNER, it.id, it.since, it.job, it.label, 1, ("m5.xlarge", "us-east-1", "on-demand"),
                        0.192, now - 60)
        atoms = it.label.replace("(", " ").replace(")", " ").replace("&&", " ").replace("||", " ").split()
        labels = frozenset(t for t in atoms if not t.startswith("!")) | {name}
        nodes.append(Node(name, labels, offline=kind in ("booting", "busy"), temporarily_offline=kind == "busy",
                          idle=kind != "busy", builds=("u",) if kind == "busy" else (), meta=meta))
        if kind != "orphan-node":
            instances.append(Instance(f"i-{a:08x}", "m5.xlarge", "on-demand", "us-east-1", "running", now - 50,
                                      {"provisioner:owner": OWNER, "provisioner:node": name, "provisioner:job": it.job}))
    return pairs, items, nodes, instances


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--agents", type=int, default=500)
    ap.add_argument("--pairs", type=int, default=60, help="distinct (label, job) pairs among the items")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--regions", default="us-east-1", help="comma-separated regions to plan in (config default)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    now = time.time()
    print(f"seed {args.seed}: {args.items} waiting items, {args.agents} agents, {args.pairs} (label, job) pairs")
    pairs, items, nodes, instances = workload(rng, args.items, args.agents, args.pairs, now)
    settings = Settings(owner=OWNER, max_agents=5000, budget_usd_per_hour=None)

    # -- planning, outside reconcile -----------------------------------------------------------
    # an EC2 config with an image for each architecture (the ticks below launch on EC2)
    config = parse_config(f"cloud: ec2\nregions: [{args.regions}]\n"
                          "ec2:\n  images:\n    us-east-1: {x86_64: ami-1, arm64: ami-2}\n")
    catalog = load_catalog()
    runs = {job: history(rng, job, 12) for _, job in pairs}
    plan_cache = PlanCache(config, catalog, None, BlockedOffers().current)
    plan_cache._runs = {j: (time.monotonic(), r) for j, r in runs.items()}     # no store: histories in memory
    keys = R.plan_keys(items, settings)
    t0, c0 = time.perf_counter(), time.process_time()
    plans = plan_cache.plans(keys, runs)
    plan_s, plan_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    per_plan = plan_s / max(1, len(keys))
    naive_plan_s = per_plan * sum(1 for i in items if R.is_demand_item(i, settings))
    failed = sum(1 for p in plans.values() if not hasattr(p, "chosen"))
    print(f"planning: {len(keys)} plans (once per pair) in {plan_s * 1000:.0f} ms, CPU {plan_cpu_s * 1000:.0f} ms "
          f"({per_plan * 1000:.1f} ms each; {failed} with no offer); target < 1000 ms")
    print(f"  baseline, a plan per item: ~{naive_plan_s * 1000:.0f} ms; ratio {plan_s / naive_plan_s:.3f}")
    t0 = time.perf_counter()
    plan_cache.plans(keys, runs)
    print(f"  next tick, same pairs and histories (cached): {(time.perf_counter() - t0) * 1000:.1f} ms; "
          f"regions {args.regions} ({len(plan_cache.regional.offers)} offers)")

    # -- the pure step -------------------------------------------------------------------------
    observed = Observed(tuple(items), tuple(nodes), tuple(instances), {i.id: 0.192 for i in instances},
                        plans, {}, {}, Memory())
    for cache in (R.demand, R._ast, R.satisfies):
        cache.cache_clear()
    c0 = time.process_time()
    actions = R.reconcile(observed, settings, now)
    cold = time.process_time() - c0
    warm = []
    for _ in range(args.repeat):
        c0 = time.process_time()
        R.reconcile(observed, settings, now)
        warm.append(time.process_time() - c0)
    kinds = Counter(type(a).__name__ for a in actions)
    step = statistics.median(warm)
    print(f"step: cold {cold * 1000:.1f} ms, warm median {step * 1000:.1f} ms (CPU time, {args.repeat} runs); "
          f"target < 100 ms; actions {dict(sorted(kinds.items()))}")
    R.satisfies.cache_clear()
    c0 = time.process_time()
    waiting = [i for i in items if R.is_demand_item(i, settings)]
    matches = sum(1 for i in waiting for n in nodes if R.satisfies(i.label, n.labels))
    naive = time.process_time() - c0
    print(f"  baseline, every waiting item against every node ({len(waiting)} x {len(nodes)}, {matches} fit): "
          f"{naive * 1000:.0f} ms; ratio step/baseline {step / naive:.3f}")

    # -- API calls of a whole tick -------------------------------------------------------------
    print_calls(items, nodes, instances, plans, settings, args.regions.split(",")[0])
    return 0


class _Response:
    def __init__(self, text: str):
        self.text = text


class StubJenkins:
    """The JenkinsClient surface the loop uses, counting requests like the real one."""

    def __init__(self, items: list[Item], nodes: list[Node]):
        self.calls: Counter[str] = Counter()
        self._rows = [{"id": i.id, "cls": "hudson.model.Queue$BuildableItem", "buildable": True, "pending": False,
                       "label": i.label, "name": i.job.replace("/", " \u00bb "), "why": "Waiting", "since": i.since}
                      for i in items]
        self._nodes = nodes

    def on_restart(self, cb) -> None:
        pass

    def request(self, method, path, **kw):
        self.calls[kw.get("endpoint") or path] += 1
        return _Response(json.dumps(self._rows))

    def computers(self, prefix):
        self.calls["GET computer"] += 1
        return list(self._nodes), {n.name for n in self._nodes}

    def create_node(self, *a, **kw):
        self.calls["POST createNode"] += 1

    def node_secret(self, name):
        self.calls["GET jnlp"] += 1
        return "0" * 64

    def delete_node(self, name):
        self.calls["POST deleteNode"] += 1
        return True

    def drain(self, name, message=""):
        self.calls["POST toggleOffline"] += 1


class OneByOne:
    """The baseline cloud: the same EC2 adapter without `launch_many` (one request per launch)."""

    def __init__(self, cloud):
        self._cloud, self.name = cloud, cloud.name

    def launch(self, spec):
        return self._cloud.launch(spec)

    def describe(self, owner):
        return self._cloud.describe(owner)

    def terminate(self, ids):
        return self._cloud.terminate(ids)


class StubPlanCache:
    def __init__(self, plans):
        self._plans = plans

    def runs(self, jobs):
        return {}

    def interruptions(self, runs):
        return {}

    def plans(self, keys, runs):
        return {k: self._plans[k] for k in keys if k in self._plans}


def tick_calls(items, nodes, instances, plans, settings, region: str, batched: bool) -> dict:
    """One whole tick through `Daemon.tick` against the real EC2 adapter over a counting stub."""
    from ec2_stub import StubEc2, StubSsm, ec2_section

    from provisioner.clouds.ec2 import Ec2Cloud
    from provisioner.clouds.ec2_params import Ec2Settings
    from provisioner.daemon.http import Health
    from provisioner.daemon.provision_executor import AgentSettings, ProvisionExecutor, ec2_secret_handover
    from provisioner.daemon.loop import Daemon
    from provisioner.daemon.metrics import DaemonMetrics
    from provisioner.daemon.queue import QueueReader
    from provisioner.daemon.state import Attempts, Tokens
    from provisioner.history import open_store
    jenkins, ec2 = StubJenkins(items, nodes), StubEc2(region, instances)
    adapter = Ec2Cloud(lambda service, r: ec2, Ec2Settings.from_config(ec2_section(region), (region,)),
                       sleep=lambda s: None)
    cloud = adapter if batched else OneByOne(adapter)
    handover = ec2_secret_handover(lambda r: StubSsm(ec2), lambda: "123456789012")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "h.sqlite3")
        open_store(path).close()
        attempts = Attempts(path, OWNER)
        executor = ProvisionExecutor(AgentSettings(OWNER, "http://127.0.0.1:8080/", "http://127.0.0.1:9108"),
                                     jenkins, cloud, attempts, Tokens(b"k"), after_launch=handover)
        daemon = Daemon(settings=settings, client=jenkins, reader=QueueReader(jenkins, "script"), cloud=cloud,
                        plan_cache=StubPlanCache(plans), executor=executor, attempts=attempts, metrics=DaemonMetrics(),
                        health=Health(60), blocked=BlockedOffers(), launch_workers=8)
        t0 = time.perf_counter()
        report = daemon.tick()
        wall = time.perf_counter() - t0
        attempts.close()
    counted = {s.labels["endpoint"]: int(s.value) for m in daemon.metrics.registry.collect()
               if m.name == "provisioner_jenkins_requests" for s in m.samples if s.name.endswith("_total")}
    reads = {k: v for k, v in counted.items() if k in ("POST scriptText", "GET computer")}
    writes = {k: v for k, v in counted.items() if k not in reads}
    launched = ec2.launched
    return {"jenkins_reads": reads, "jenkins_writes": writes, "aws": dict(sorted(ec2.calls.items())),
            "actions": dict(report.actions), "failures": dict(report.failures), "launched": launched,
            "tick_wall_s": round(wall, 2)}


def print_calls(items, nodes, instances, plans, settings, region: str) -> None:
    print("calls in one tick (Daemon.tick, the real EC2 adapter over a counting in-process EC2):")
    runs = {}
    for batched in (True, False):
        runs[batched] = calls = tick_calls(items, nodes, instances, plans, settings, region, batched)
        print(f"  {'batched' if batched else 'baseline, one request per launch'}: " + json.dumps(calls, sort_keys=True))
    fleets = {b: r["aws"].get("CreateFleet", 0) for b, r in runs.items()}
    total = {b: sum(r["aws"].values()) for b, r in runs.items()}
    print(f"  CreateFleet per tick: {fleets[True]} for {runs[True]['launched']} launches vs {fleets[False]}; "
          f"ratio {fleets[True] / max(1, fleets[False]):.3f}; all AWS calls {total[True]} vs {total[False]} "
          f"(ratio {total[True] / max(1, total[False]):.3f}); reads per tick stay 1 scriptText + 1 /computer "
          f"+ 1 DescribeInstances page")
    reput = runs[True]["aws"].get("ssm:PutParameter", 0) - runs[True]["launched"]
    print(f"  (this is a started daemon's first tick: it also puts again the bundles of {reput} booting agents "
          "it did not launch itself, one GET jnlp + one PutParameter each, kept if still unread)")


if __name__ == "__main__":
    sys.exit(main())
