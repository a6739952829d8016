#!/usr/bin/env python3
"""Benchmark: EC2 API calls for one tick's launches, `Ec2Cloud.launch_many` against one `launch` each.

Starts a moto server on 127.0.0.1. A seeded tick brings N queue items from a few (label, job) pairs:
each label has its own ranked candidates (3-5 types, spot or on-demand) and user data, each job its
own name, so items of one label share a batch whatever their job. The same specs are launched twice,
by two adapters with their own owner (each creates its own base template):
  many   Ec2Cloud.launch_many(specs): one CreateFleet per batch, then one CreateTags per instance
  each   Ec2Cloud.launch(spec) for every spec: one CreateFleet per launch, tags in the request
It prints, for both, CreateFleet calls, mutating calls (create/terminate/tag), all calls and the wall
time against moto, and the ratios each/many. moto answers at once and never throttles: the wall times
show the client side, while on EC2 each mutating call also spends a token of the account's bucket.

Usage: bench/ec2_batch_calls.py [--seed N] [--launches N] [--labels N] [--jobs N]
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import boto3  # noqa: E402

from ec2_launch_calls import TYPES, offer, world  # noqa: E402
from provisioner import aws  # noqa: E402
from provisioner.catalog.model import ON_DEMAND, SPOT  # noqa: E402
from provisioner.clouds.base import Instance, LaunchSpec  # noqa: E402
from provisioner.clouds.ec2 import Ec2Cloud  # noqa: E402
from provisioner.clouds.ec2_params import Ec2Settings, batch_groups  # noqa: E402
from tests.moto_server import DUMMY_CREDENTIALS, MotoServer  # noqa: E402

REGION = "us-east-1"
MUTATING = {"create_fleet", "create_tags", "create_launch_template", "terminate_instances", "run_instances"}


def tick(seed: int, n: int, labels: int, jobs: int, owner: str) -> list[LaunchSpec]:
    """N specs from a few (label, job) pairs; the same seed gives the same specs for any owner."""
    rng = random.Random(seed)
    kinds = [(tuple(rng.sample(TYPES, rng.randint(3, 5))), SPOT if rng.random() < 0.7 else ON_DEMAND)
             for _ in range(labels)]
    pairs = sorted({(rng.randrange(labels), rng.randrange(jobs)) for _ in range(labels * 2)})
    specs = []
    for i in range(n):
        label, job = rng.choice(pairs)
        types, market = kinds[label]
        queue_id = 20000 + rng.randrange(80000)
        node = f"prov-{owner}-q{queue_id}-{i}"
        tags = {"provisioner:owner": owner, "provisioner:node": node, "provisioner:queue-id": str(queue_id),
                "provisioner:job": f"team/job-{job}", "provisioner:expires-at": "2030-01-01T00:00:00Z"}
        specs.append(LaunchSpec(candidates=tuple(offer(t, market) for t in types),
                                user_data=f"#!/bin/bash\necho label-{label}\n", tags=tags,
                                client_token=f"{owner}-{node}-{time.time_ns()}"))
    return specs


def measure(cloud: Ec2Cloud, launch) -> tuple[Counter, float, int]:
    """(calls by operation, seconds, instances started) for one way of launching the tick."""
    cloud.calls.clear()
    t0 = time.perf_counter()
    results = launch(cloud)
    seconds = time.perf_counter() - t0
    return Counter(cloud.calls), seconds, sum(isinstance(r, Instance) for r in results)


def figures(calls: Counter, seconds: float) -> dict[str, float]:
    return {"create_fleet": calls["create_fleet"], "mutating": sum(calls[op] for op in MUTATING),
            "total": sum(calls.values()), "seconds": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "0")) or random.randrange(1, 10**6))
    ap.add_argument("--launches", type=int, default=40)
    ap.add_argument("--labels", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=4)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    os.environ.update(DUMMY_CREDENTIALS)
    server = MotoServer()
    url = server.start()
    try:
        session = boto3.session.Session()
        client = aws.client("ec2", region=REGION, endpoint_url=url, max_attempts=1, session=session)
        subnets, group, image = world(client)
        settings = Ec2Settings.from_config({"subnets": subnets, "security_groups": [group],
                                            "images": {REGION: {"x86_64": image}}}, regions=[REGION])
        runs = {"many": lambda c, specs: c.launch_many(specs),
                "each": lambda c, specs: [c.launch(s) for s in specs]}
        out: dict[str, dict[str, float]] = {}
        print(f"seed {args.seed}: {args.launches} launches in one tick from {args.labels} labels x "
              f"{args.jobs} jobs, {len(subnets)} subnets, moto at {url}")
        for name, run in runs.items():
            owner = f"bench{args.seed}-{name}"
            specs = tick(args.seed, args.launches, args.labels, args.jobs, owner)
            cloud = Ec2Cloud(lambda service, region: client, settings)
            if name == "many":
                print(f"batches: {sorted((len(g) for g in batch_groups(specs, settings)), reverse=True)}")
            calls, seconds, started = measure(cloud, lambda c: run(c, specs))
            out[name] = figures(calls, seconds)
            print(f"{name:5s} started {started}/{len(specs)} | create_fleet {calls['create_fleet']} | mutating "
                  f"{out[name]['mutating']} | total {out[name]['total']} | {seconds * 1000:.0f} ms | "
                  + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())))
        print("each/many: " + ", ".join(f"{k} {out['each'][k] / out['many'][k]:.1f}x"
                                        for k in ("create_fleet", "mutating", "total", "seconds")))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
