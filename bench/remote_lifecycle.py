#!/usr/bin/env python3
"""Remote runs you can leave, on the docker cloud (real engine):

1. `run --remote --detach` start to return (it returns after the job's first line; target median
   < 1.5 s), against the baseline of a foreground `run --remote` of the same job from its start to
   that same first line, in an order drawn from --seed each round.
2. `provisioner ps` with 200 runs on the engine, half of them ended (target < 0.5 s), against
   `provisioner --version`
   (the interpreter and CLI start every command pays) measured in the same command.

Builds the test images and the instance image first (not timed). Run from the repository root:

    .venv/bin/python bench/remote_lifecycle.py [--rounds 5] [--runs 200] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EXE = str(Path(sys.executable).parent / "provisioner")
JOB = "python3 -c \"import time; print('first', flush=True); time.sleep(30)\""


def detach(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(_with_detach(argv), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def _with_detach(argv: list[str]) -> list[str]:
    i = argv.index("--")
    return [*argv[:i], "--detach", *argv[i:]]


def foreground_first_line(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        for line in proc.stdout:
            if line.rstrip().endswith(" first"):
                return time.perf_counter() - started
        raise RuntimeError("the foreground run never printed its first line")
    finally:
        proc.terminate()              # SIGTERM: it stops the job and terminates the instance
        proc.wait(60)


def timed(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def cleanup(client, key: str, value: str) -> None:
    for c in client.containers.list(all=True, sparse=True, filters={"label": f"{key}={value}"}):
        c.remove(force=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    print(f"seed {a.seed}")
    import docker
    from provisioner.clouds.docker_image import build_agent_image
    from provisioner.remote.parts import launching_user
    from tests.images import busybox_image, python_image
    client = docker.from_env()
    pyimage = python_image(client)
    agent = build_agent_image(client, base=pyimage, tag="provisioner-agent:bench")
    rng = random.Random(a.seed)
    job = f"bench-lifecycle-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, XDG_STATE_HOME=str(Path(tmp, "state")))
        config = Path(tmp, "config.yaml")
        config.write_text(f"docker:\n  instance_image: {agent}\n")
        common = [EXE, "--config", str(config), "--history", str(Path(tmp, "h.sqlite3"))]
        run = [*common, "run", "--remote", "--cloud", "docker", "--label", "ec2 && vcpu=1 && mem=1",
               "--image", pyimage, "--job", job, "--", "sh", "-c", JOB]
        times: dict[str, list[float]] = {"detach": [], "foreground": []}
        try:
            for _ in range(a.rounds):
                order = ["detach", "foreground"]
                rng.shuffle(order)
                for name in order:
                    times[name].append(detach(run, env) if name == "detach" else foreground_first_line(run, env))
                cleanup(client, "provisioner:job", job)
        finally:
            cleanup(client, "provisioner:job", job)
        d, f = statistics.median(times["detach"]), statistics.median(times["foreground"])
        print(f"run --remote --detach, start to return: median {d:.3f} s over {a.rounds} "
              f"(target < 1.5 s); foreground start to first line {f:.3f} s; ratio {d / f:.2f}")

        # ---- ps with many runs ------------------------------------------------------------------
        base = busybox_image(client)
        tag = f"bench-ps-{uuid.uuid4().hex[:6]}"
        try:
            for n in range(a.runs):
                made = client.containers.create(base, ["true"], labels={
                    "provisioner:kind": "instance", "provisioner:run-id": f"{tag}-{n:04d}",
                    "provisioner:user": launching_user(), "provisioner:owner": "remote:bench-elsewhere",
                    "provisioner:job": tag, "provisioner:instance-type": "m5.large",
                    "provisioner:market": "spot", "provisioner:region": "us-east-1",
                    "provisioner:launched-at": f"{time.time():.3f}", "provisioner:price": "0.05",
                    "bench": tag})
                if n % 2:
                    made.start()            # half of them ended (exited), half still "running" (created)
            ps = [*common, "ps", "--cloud", "docker", "--json"]
            version = [EXE, "--version"]
            pss, versions = [], []
            for _ in range(a.rounds):
                for name in rng.sample(["ps", "version"], 2):
                    (pss if name == "ps" else versions).append(timed(ps if name == "ps" else version, env))
            listed = subprocess.run(ps, env=env, capture_output=True, text=True, check=True).stdout
            count = listed.count(f'"{tag}-')
        finally:
            cleanup(client, "bench", tag)
        s, v = statistics.median(pss), statistics.median(versions)
        print(f"provisioner ps with {count} runs listed: median {s:.3f} s (target < 0.5 s); "
              f"provisioner --version {v:.3f} s; ratio {s / v:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
