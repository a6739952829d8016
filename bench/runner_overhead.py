#!/usr/bin/env python3
"""Wall-time overhead of `provisioner run` against `docker run --rm --init` of the same container.

Alternating pairs (which of the two goes first is drawn from --seed), median of each side, ratio.
Targets (issue 3): `true` <= 1.8x (pure overhead: interpreter and SDK start), `sleep 10` <= 1.03x.
Uses the local busybox test image (built once, no registry). Run from the repository root:

    .venv/bin/python bench/runner_overhead.py [--pairs 10] [--sleep-pairs 10] [--seed 1]

--runner-only measures the runner's own cost: the same `main()`, with a parser that registers
only the `run` command (so other commands' module imports are not counted).
"""

from __future__ import annotations

import argparse
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


def compare(image: str, command: list[str], pairs: int, rng: random.Random, history: str,
            exe: str) -> tuple[float, float]:
    ours = [exe, "--history", history, "run", "--job", "bench", "--image", image, "--", *command]
    theirs = ["docker", "run", "--rm", "--init", "--network", "none", image, *command]
    a: list[float] = []
    b: list[float] = []
    timed(ours), timed(theirs)  # warm caches once, not counted
    for _ in range(pairs):
        if rng.random() < 0.5:
            a.append(timed(ours))
            b.append(timed(theirs))
        else:
            b.append(timed(theirs))
            a.append(timed(ours))
    return statistics.median(a), statistics.median(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=10, help="pairs for `true`")
    ap.add_argument("--sleep-pairs", type=int, default=10, help="pairs for `sleep 10` (0: skip)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exe", default=str(ROOT / ".venv" / "bin" / "provisioner"))
    ap.add_argument("--runner-only", action="store_true",
                    help="a parser with only the run command (excludes other commands' imports)")
    args = ap.parse_args()

    import docker
    from tests.images import busybox_image
    image = busybox_image(docker.from_env())
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        history = str(Path(tmp) / "history.sqlite3")
        if args.runner_only:
            wrapper = Path(tmp) / "provisioner-run-only"
            wrapper.write_text(f"#!{sys.executable}\nimport sys\nimport provisioner.cli.main as m\n"
                               "m.COMMANDS = ('run',)\nsys.exit(m.main())\n")
            wrapper.chmod(0o755)
            args.exe = str(wrapper)
        print(f"image {image}, seed {args.seed}, {'runner only' if args.runner_only else args.exe}")
        for command, pairs, target in ((["true"], args.pairs, 1.8),
                                       (["sleep", "10"], args.sleep_pairs, 1.03)):
            if pairs <= 0:
                continue
            ours, theirs = compare(image, command, pairs, rng, history, args.exe)
            ratio = ours / theirs
            print(f"{' '.join(command):10s} pairs {pairs:3d}: provisioner run {ours:.3f} s, "
                  f"docker run {theirs:.3f} s (medians), ratio {ratio:.3f}x "
                  f"(target <= {target}x: {'met' if ratio <= target else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
