#!/usr/bin/env python3
"""CPU cost of the runner's usage sampler while a container burns one CPU.

Starts a busybox container spinning one vCPU, follows it with StatsSampler for --seconds, and
reports the CPU time this process spent (the sampler thread: the main thread only sleeps) as a
share of one core, plus the engine's (dockerd) extra CPU while the stats stream is open compared
with the same period without it. Target (issue 3): sampler < 2% of one core.

    .venv/bin/python bench/runner_sampler_cost.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def dockerd_cpu() -> float | None:
    import psutil
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "dockerd":
            t = proc.cpu_times()
            return t.user + t.system
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()

    import docker
    from provisioner.runner.sampler import StatsSampler
    from tests.images import busybox_image
    client = docker.from_env()
    image = busybox_image(client)
    container = client.containers.run(image, ["sh", "-c", "while :; do :; done"], detach=True,
                                      init=True, network_mode="none",
                                      labels={"provisioner:bench": "sampler"})
    try:
        d0 = dockerd_cpu()
        time.sleep(args.seconds)  # the engine without a stats stream
        d1 = dockerd_cpu()
        c0, w0 = own_cpu(), time.monotonic()
        sampler = StatsSampler(client.api, container.id).start()
        time.sleep(args.seconds)
        summary = sampler.stop()
        c1, w1 = own_cpu(), time.monotonic()
        d2 = dockerd_cpu()
    finally:
        container.remove(force=True)
    share = (c1 - c0) / (w1 - w0) * 100
    print(f"container cpu avg {summary['cpu_avg_pct']}%, max {summary['cpu_max_pct']}% over "
          f"{args.seconds:g} s")
    print(f"sampler (this process): {share:.2f}% of one core "
          f"(target < 2%: {'met' if share < 2 else 'NOT met'})")
    if None not in (d0, d1, d2):
        extra = ((d2 - d1) - (d1 - d0)) / args.seconds * 100
        print(f"dockerd: {(d1 - d0) / args.seconds * 100:.2f}% of one core without the stream, "
              f"{(d2 - d1) / args.seconds * 100:.2f}% with it (difference {extra:+.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
