#!/usr/bin/env python3
"""Benchmark: queue -> build start on the docker cloud, a warm pool against no pool, in one run.

Two real daemons (wiring.build, the docker cloud, the local engine, the Jenkins emulator) at the same
reconcile interval (default 5 s, the daemon's default), one after the other: the first without a
pool, the second with `labels: {LABEL: {pool: {min_spare: 1}}}`. Builds are queued one at a time at
a random phase of the tick (seeded); before each pooled build the bench waits for a ready spare (the
pool refilled after the last one), which is the case the pool is for. For each build: from the moment
it is queued to the moment it started (it appears among the job's builds), polled every 20 ms.
Target: median < 1.5 s with a ready spare.

Needs a Docker engine, a JDK (the emulator's stand-in agent.jar) and the local test images
(`python -m tests.images`). Usage: bench/pool_latency.py [--seed N] [--builds 8] [--interval 5]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
LABEL = "ec2 && vcpu=2 && mem=4"


def started(emu, job: str, n: int) -> bool:
    return any(b["params"].get("N") == str(n) for b in emu.builds(job))


def wait(predicate, timeout: float = 180, step: float = 0.02) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(step)
    raise TimeoutError(f"not within {timeout} s")


def ready_spares(emu, owner: str) -> int:
    prefix = f"prov-{owner}-pool-"
    return sum(1 for n in emu.nodes() if n["displayName"].startswith(prefix) and not n["offline"]
               and n["idle"] and not n["temporarilyOffline"])


def run(emu, image: str, *, pool: bool, builds: int, interval: float, rng: random.Random) -> list[float]:
    from provisioner.config import parse_config
    from provisioner.daemon.wiring import build
    from tests.daemon.fakes import small_catalog
    owner = f"bench-{'pool' if pool else 'none'}-{uuid.uuid4().hex[:4]}"
    job = f"lat-{owner}"
    labels = f"labels:\n  '{LABEL}':\n    pool: {{min_spare: 1, max_spare: 1}}\n" if pool else ""
    config = parse_config(
        f"cloud: docker\ndocker:\n  instance_image: {image}\n  host_cpus: 2\n  host_mem_gib: 4\n"
        f"jenkins:\n  url: {emu.url}\n  user: admin\n"
        f"daemon:\n  owner_id: {owner}\n  interval_s: {interval}\n  listen: 127.0.0.1:0\n{labels}", "bench.yaml")
    stop = threading.Event()
    out: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        parts = build(config, str(Path(tmp) / "h.sqlite3"), "admin-token", owner=owner, catalog=small_catalog())
        thread = threading.Thread(target=parts.daemon.run, args=(stop,), daemon=True)
        thread.start()
        try:
            emu.create_job(job, label=LABEL, script="sleep 1", concurrent=True)
            for i in range(builds):
                if pool:
                    wait(lambda: ready_spares(emu, owner) >= 1)
                time.sleep(rng.uniform(0, interval))                # a random phase of the tick
                t0 = time.monotonic()
                emu.schedule(job, params={"N": str(i)})
                out.append(wait(lambda: started(emu, job, i)) - t0)
                print(f"  {'pool' if pool else 'no pool'} build {i + 1}: queue -> build start {out[-1]:.2f} s",
                      flush=True)
            wait(lambda: len(emu.builds(job)) == builds and all(b["result"] for b in emu.builds(job)))
        finally:
            stop.set()
            thread.join(timeout=interval + 30)
            parts.close()
            import docker
            for c in docker.from_env().containers.list(all=True, filters={"label": f"provisioner:owner={owner}"}):
                c.remove(force=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--builds", type=int, default=8)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--verbose", action="store_true", help="the daemons' log events on stderr")
    args = ap.parse_args()
    import docker
    from provisioner.clouds.docker_image import build_agent_image
    from tests.images import python_image
    from tests.jenkins_emulator import JenkinsEmulator, agent_jar
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    rng = random.Random(args.seed)
    print(f"seed {args.seed}: {args.builds} builds each, interval {args.interval:g} s")
    client = docker.from_env()
    image = build_agent_image(client, base=python_image(client), tag="provisioner-agent:daemon-test", java=True,
                              agent_jar=agent_jar.build_agent_jar())
    emu = JenkinsEmulator(users={"admin": ("admin-token", True)}, maintain_interval=0.1).start()
    try:
        none = run(emu, image, pool=False, builds=args.builds, interval=args.interval, rng=rng)
        pooled = run(emu, image, pool=True, builds=args.builds, interval=args.interval, rng=rng)
    finally:
        emu.stop()

    def p90(xs: list[float]) -> float:
        return sorted(xs)[int(0.9 * (len(xs) - 1))]
    m0, m1 = statistics.median(none), statistics.median(pooled)
    print(f"no pool:             queue -> build start median {m0:.2f} s, p90 {p90(none):.2f} s, max {max(none):.2f} s")
    print(f"pool, ready spare:   queue -> build start median {m1:.2f} s, p90 {p90(pooled):.2f} s, "
          f"max {max(pooled):.2f} s (target: median < 1.5 s)")
    print(f"ratio pool / no pool: {m1 / m0:.2f} ({m0 / m1:.1f}x faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
