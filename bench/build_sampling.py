#!/usr/bin/env python3
"""CPU cost of the instance-side build sampling (provisioner/agent/buildusage.py) while a build
burns one core. Target (issue 14): under 1 % of one core.

Each round runs two child processes for --seconds while a "build" (a process carrying a build
cookie, one core busy) runs: `sampling` (the watcher's build sampler thread, looking every second
at the process tree, as on an instance) and `baseline` (the same interpreter and imports, idle: what
the watcher costs without sampling), in an order drawn from --seed. Each child's CPU time (user +
system, all threads, from wait4) over its wall time is its cost in % of one core; the sampler's own
cost is the difference. The /proc scan grows with the number of processes: this machine's count is
printed (an instance runs a few dozen). Build containers (docker stats) are not part of this figure.

    python bench/build_sampling.py [--rounds 3] [--seconds 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
COOKIE = f"BENCH_BUILD_COOKIE_{os.getpid()}"
BURN = "import time\nwhile True: pass\n"


def child(mode: str, seconds: float, cookie: str) -> None:
    from provisioner.agent.buildtree import ProcessTree
    from provisioner.agent.buildusage import BuildUsage
    import importlib
    for name in ("provisioner.records", "provisioner.runner.gpu", "provisioner.runner.instance_price",
                 "provisioner.runner.daemon_client"):
        importlib.import_module(name)      # the record's imports: paid by both children alike
    posted: list[dict] = []
    if mode == "sampling":
        usage = BuildUsage(posted.append, agent_pid_file=None, work_dir=None, environ={},
                           tree=ProcessTree(names=(cookie,), own_environ={}), interval_s=1.0,
                           out=lambda line: None).start()
        time.sleep(seconds)
        usage.stop("bench")
        if not posted or posted[0]["cpu_max_pct"] is None:
            sys.exit("the sampler saw no build")
        print(f"{posted[0]['cpu_avg_pct']}", flush=True)
    else:
        time.sleep(seconds)


def measure(mode: str, seconds: float, cookie: str) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", mode, "--seconds", str(seconds),
                             "--cookie", cookie], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{mode} child failed")
    return 100.0 * (usage.ru_utime + usage.ru_stime) / wall, out.strip()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--child", choices=("sampling", "baseline"))
    p.add_argument("--cookie", default=COOKIE)
    a = p.parse_args()
    if a.child:
        child(a.child, a.seconds, a.cookie)
        return 0
    rng = random.Random(a.seed)
    print(f"seed {a.seed}; rounds {a.rounds} x {a.seconds:g} s; "
          f"{sum(1 for d in os.listdir('/proc') if d.isdigit())} processes on this machine")
    burner = subprocess.Popen([sys.executable, "-c", BURN], env={**os.environ, COOKIE: "durable-bench"})
    costs: dict[str, list[float]] = {"sampling": [], "baseline": []}
    try:
        for _ in range(a.rounds):
            for mode in rng.sample(["sampling", "baseline"], 2):
                cost, seen = measure(mode, a.seconds, COOKIE)
                costs[mode].append(cost)
                print(f"  {mode:<9} {cost:6.3f} % of one core" + (f"  (build seen at {seen} % CPU)" if seen else ""))
    finally:
        burner.kill()
        burner.wait()
    sampling, baseline = statistics.median(costs["sampling"]), statistics.median(costs["baseline"])
    print(f"sampling: {sampling:.3f} % of one core (median), baseline {baseline:.3f} %, "
          f"sampler's own cost {sampling - baseline:.3f} % (target < 1 %), ratio to baseline "
          f"{sampling / baseline if baseline else float('inf'):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
