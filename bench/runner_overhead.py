#!/usr/bin/env python3
"""Wall-time overhead of `provisioner run` against `docker run --rm --init` of the same container.

Rounds of `provisioner run`, `docker run --rm --init` and a bare docker-SDK script that only
creates, attaches, starts, waits and removes (what a runner built on the SDK pays at least:
interpreter, SDK import and calls; `provisioner run` speaks the Engine API itself, see
provisioner/runner/engine.py), in an order drawn from --seed each round; median of each, and the
ratios. Targets (issue 3): `true` <= 1.8x (pure overhead: interpreter start, imports, engine calls),
`sleep 10` <= 1.03x. Uses the local busybox test image (built once, no registry). Run from the
repository root:

    .venv/bin/python bench/runner_overhead.py [--rounds 10] [--sleep-rounds 10] [--seed 1]

provisioner's modules are byte-compiled first, as `pip install` leaves them: with
PYTHONDONTWRITEBYTECODE set (as in some CI shells) every run would otherwise compile the modules
changed since their last .pyc from source, a cost no installed copy pays.

--runner-only measures the runner's own cost: the same `main()`, with a parser that registers
only the `run` command (so other commands' module imports are not counted).
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


FLOOR = """\
import sys, docker
client = docker.from_env()
c = client.containers.create(sys.argv[1], sys.argv[2:], init=True, network_mode="none")
out = client.api.attach(c.id, stream=True, logs=True, demux=True)
c.start()
for chunk in out:
    pass
c.wait()
c.remove(force=True)
"""


def compare(variants: dict[str, list[str]], pairs: int, rng: random.Random) -> dict[str, float]:
    """Median wall time of each variant over `pairs` rounds, in a fresh random order each round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for argv in variants.values():
        timed(argv)  # warm caches once, not counted
    for _ in range(pairs):
        order = list(variants)
        rng.shuffle(order)
        for name in order:
            times[name].append(timed(variants[name]))
    return {name: statistics.median(xs) for name, xs in times.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10, help="rounds for `true`")
    ap.add_argument("--sleep-rounds", type=int, default=10, help="rounds for `sleep 10` (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exe", default=str(ROOT / ".venv" / "bin" / "provisioner"))
    ap.add_argument("--runner-only", action="store_true",
                    help="a parser with only the run command (excludes other commands' imports)")
    args = ap.parse_args()

    import docker
    from tests.images import busybox_image
    image = busybox_image(docker.from_env())
    compileall.compile_dir(str(ROOT / "provisioner"), quiet=1)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        history = str(Path(tmp) / "history.sqlite3")
        if args.runner_only:
            wrapper = Path(tmp) / "provisioner-run-only"
            wrapper.write_text(f"#!{sys.executable}\nimport sys\nimport provisioner.cli.main as m\n"
                               "m.COMMANDS = {'run': m.COMMANDS['run']}\nsys.exit(m.main())\n")
            wrapper.chmod(0o755)
            args.exe = str(wrapper)
        print(f"image {image}, seed {args.seed}, {'runner only' if args.runner_only else args.exe}, "
              f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        floor = Path(tmp) / "sdk_floor.py"
        floor.write_text(FLOOR)
        for command, pairs, target in ((["true"], args.rounds, 1.8),
                                       (["sleep", "10"], args.sleep_rounds, 1.03)):
            if pairs <= 0:
                continue
            med = compare({
                "provisioner": [args.exe, "--history", history, "run", "--job", "bench",
                                "--image", image, "--", *command],
                "docker": ["docker", "run", "--rm", "--init", "--network", "none", image, *command],
                "sdk_floor": [sys.executable, str(floor), image, *command],
            }, pairs, rng)
            ratio = med["provisioner"] / med["docker"]
            print(f"{' '.join(command):10s} rounds {pairs:3d}: provisioner run {med['provisioner']:.3f} s, "
                  f"docker run {med['docker']:.3f} s, bare SDK script {med['sdk_floor']:.3f} s "
                  f"(medians); overhead {med['provisioner'] - med['docker']:+.3f} s, "
                  f"ratio {ratio:.3f}x (target <= {target}x: {'met' if ratio <= target else 'NOT met'}); "
                  f"bare SDK script alone {med['sdk_floor'] / med['docker']:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
