#!/usr/bin/env python3
"""Time `run --remote --cloud docker` adds over a local `provisioner run` of the same job, and the
seconds from the job's end to its instance being gone.

Rounds of both commands (`-- python3 -c pass` in the local python test image), in an order drawn
from --seed each round; medians, the added time (target < 2 s) and the ratio remote / local. The
job-end-to-gone time comes from the remote record: `terminated_at` minus the job container's end
(`start` + `duration_s`, engine times). Builds the test images and the instance image first (not
timed). Run from the repository root:

    .venv/bin/python bench/remote_overhead.py [--rounds 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXE = str(Path(sys.executable).parent / "provisioner")


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    import docker
    from provisioner.clouds.docker_image import build_agent_image
    from tests.images import python_image
    client = docker.from_env()
    pyimage = python_image(client)
    agent = build_agent_image(client, base=pyimage, tag="provisioner-agent:bench")
    rng = random.Random(a.seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp, "config.yaml")
        config.write_text(f"docker:\n  instance_image: {agent}\n")
        common = [EXE, "--config", str(config), "--history", str(Path(tmp, "h.sqlite3")), "run",
                  "--image", pyimage, "--job", "bench-remote"]
        summary = Path(tmp, "summary.json")
        variants = {"local": [*common, "--", "python3", "-c", "pass"],
                    "remote": [*common, "--remote", "--cloud", "docker", "--label", "ec2 && vcpu=1 && mem=1",
                               "--summary-json", str(summary), "--", "python3", "-c", "pass"]}
        for argv in variants.values():
            timed(argv)                                   # warm caches, not counted
        times: dict[str, list[float]] = {name: [] for name in variants}
        gone: list[float] = []
        for _ in range(a.rounds):
            order = list(variants)
            rng.shuffle(order)
            for name in order:
                times[name].append(timed(variants[name]))
                if name == "remote":
                    r = json.loads(summary.read_text())
                    gone.append(epoch(r["terminated_at"]) - (epoch(r["start"]) + r["duration_s"]))
    local, remote = (statistics.median(times[n]) for n in ("local", "remote"))
    print(f"seed {a.seed}, {a.rounds} rounds, job `python3 -c pass`")
    print(f"local run median {local:.2f} s (baseline); run --remote --cloud docker median {remote:.2f} s")
    print(f"added by --remote: {remote - local:.2f} s (target < 2 s); ratio remote/local {remote / local:.2f}x")
    print(f"job end -> instance gone: median {statistics.median(gone):.2f} s, max {max(gone):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
