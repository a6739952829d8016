#!/usr/bin/env python3
"""Benchmark: queue-to-agent-online latency on the docker cloud at the default 5 s interval.

A real daemon (wiring.build, the docker cloud, the local engine) serves builds queued on the Jenkins
emulator at random moments (seeded, so they fall on every phase of the tick). For each build: from
the moment it is queued to the moment its node is online (its agent connected), polled every 50 ms.
Target: median < 5 s.

Baseline: the same instance container launched directly for a node that already exists (no queue,
no daemon): what boot and connect alone cost. The ratio shows what waiting for the tick adds.

Needs a Docker engine, a JDK (the emulator's stand-in agent.jar) and the local test images
(`python -m tests.images`). Usage: bench/queue_latency.py [--seed N] [--builds 12] [--interval 5]
"""

from __future__ import annotations

import argparse
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


def wait_online(emu, name: str, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emu.is_online(name):
            return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not come online in {timeout} s")


def baseline(emu, image: str, runs: int) -> list[float]:
    """Create the node, launch the instance container directly, wait for the agent."""
    from provisioner.clouds.docker import DockerCloud, DockerSettings
    from provisioner.daemon.jenkins import JenkinsClient
    from provisioner.daemon.provision_executor import AgentSettings, ProvisionExecutor
    from provisioner.daemon.model import Item, Provision
    from provisioner.daemon.state import Tokens
    from tests.daemon.helpers import plan
    cloud = DockerCloud(settings=DockerSettings(instance_image=image, host_cpus=2, host_mem_gib=4))
    client = JenkinsClient(emu.url, "admin", "admin-token")
    executor = ProvisionExecutor(AgentSettings("bench-base", emu.url, "http://127.0.0.1:9"), client, cloud, None,
                                 Tokens(b"k"))
    out = []
    for i in range(runs):
        name = f"base-{uuid.uuid4().hex[:6]}"
        client.create_node(name, "ec2", "baseline", "/tmp/agent")
        p = Provision(name, Item(i, 0, "ec2", "base"), plan("c5.large", 0.085, node_labels=("ec2",)), 1,
                      False, f"tok-{name}")
        spec, _ = executor.spec(p, client.node_secret(name), time.time())
        t0 = time.monotonic()
        inst = cloud.launch(spec)
        out.append(wait_online(emu, name) - t0)
        client.delete_node(name)
        cloud.terminate([inst.id])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--builds", type=int, default=12)
    ap.add_argument("--interval", type=float, default=5.0)
    ap.add_argument("--baseline-runs", type=int, default=5)
    ap.add_argument("--verbose", action="store_true", help="the daemon's log events on stderr")
    args = ap.parse_args()
    import docker
    from provisioner.clouds.docker_image import build_agent_image
    from provisioner.config import parse_config
    from provisioner.daemon.wiring import build
    from tests.daemon.fakes import small_catalog
    from tests.images import python_image
    from tests.jenkins_emulator import JenkinsEmulator, agent_jar
    import logging
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(message)s")
    rng = random.Random(args.seed)
    print(f"seed {args.seed}: {args.builds} builds, interval {args.interval:g} s")
    client = docker.from_env()
    image = build_agent_image(client, base=python_image(client), tag="provisioner-agent:daemon-test", java=True,
                              agent_jar=agent_jar.build_agent_jar())
    emu = JenkinsEmulator(users={"admin": ("admin-token", True)}, maintain_interval=0.5).start()
    owner = f"bench-{uuid.uuid4().hex[:6]}"
    stop = threading.Event()
    parts = None
    try:
        base = baseline(emu, image, args.baseline_runs)
        config = parse_config(
            f"cloud: docker\ndocker:\n  instance_image: {image}\n  host_cpus: 2\n  host_mem_gib: 4\n"
            f"jenkins:\n  url: {emu.url}\n  user: admin\n"
            f"daemon:\n  owner_id: {owner}\n  interval_s: {args.interval}\n  listen: 127.0.0.1:0\n", "bench.yaml")
        with tempfile.TemporaryDirectory() as tmp:
            parts = build(config, str(Path(tmp) / "h.sqlite3"), "admin-token", owner=owner, catalog=small_catalog())
            threading.Thread(target=parts.daemon.run, args=(stop,), daemon=True).start()
            emu.create_job("lat", label="ec2 && vcpu=2 && mem=4", script="sleep 3", concurrent=True)
            latencies = []
            for i in range(args.builds):
                time.sleep(rng.uniform(0, args.interval))           # a random phase of the tick
                t0 = time.monotonic()
                qid = emu.schedule("lat", params={"N": str(i)})
                latencies.append(wait_online(emu, f"prov-{owner}-q{qid}") - t0)
                print(f"  build {i + 1}: queue -> agent online {latencies[-1]:.2f} s", flush=True)
            emu.wait_for(lambda: all(b["result"] for b in emu.builds("lat")) and len(emu.builds("lat")) == args.builds,
                         timeout=120)
    finally:
        stop.set()
        if parts is not None:
            time.sleep(args.interval + 1)
            parts.close()
        for c in client.containers.list(all=True, filters={"label": f"provisioner:owner={owner}"}):
            c.remove(force=True)
        emu.stop()
    med, b = statistics.median(latencies), statistics.median(base)
    print(f"queue -> agent online: median {med:.2f} s, p90 {sorted(latencies)[int(0.9 * (len(latencies) - 1))]:.2f} s,"
          f" max {max(latencies):.2f} s (target: median < 5 s)")
    print(f"baseline, launch -> online without queue or daemon: median {b:.2f} s; ratio {med / b:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
