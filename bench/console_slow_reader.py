#!/usr/bin/env python3
"""Console output under a slow reader: `provisioner run` of a job printing --lines lines (busybox
`seq`), its stdout read by a subprocess throttled to --rate bytes/s. Prints the lines delivered
(target: all, in order), the record's `log_lines` and `console_lines_dropped`, the exit code, and
the wall time against the same run read at full speed (the baseline, same command). Needs the
Docker engine; uses the local busybox test image (built once, no registry). From the repo root:

    .venv/bin/python bench/console_slow_reader.py [--lines 500000] [--rate 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

READER = """
import sys, time
rate, chunk, got = float(sys.argv[1]), 65536, 0
started = time.monotonic()
with open(sys.argv[2], "wb") as out:
    while True:
        data = sys.stdin.buffer.read1(chunk)
        if not data:
            break
        out.write(data)
        got += len(data)
        if rate > 0:
            time.sleep(max(0.0, started + got / rate - time.monotonic()))
"""
STAMPED = re.compile(rb"^\d{4}-\d\d-\d\dT[\d:.]+Z (\d+)$")


def one(image: str, lines: int, rate: float, work: Path) -> dict:
    summary, shown = work / f"summary-{rate:g}.json", work / f"shown-{rate:g}.txt"
    argv = [sys.executable, "-m", "provisioner", "--history", str(work / "h.sqlite3"), "run",
            "--job", "bench-console", "--summary-json", str(summary), "--image", image,
            "--", "seq", "1", str(lines)]
    started = time.monotonic()
    job = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=dict(os.environ, PYTHONPATH=str(ROOT), NO_COLOR="1"))
    reader = subprocess.Popen([sys.executable, "-c", READER, str(rate), str(shown)], stdin=job.stdout)
    job.stdout.close()
    reader.wait()
    err = job.communicate()[1].decode(errors="replace")
    wall = time.monotonic() - started
    numbers = [int(m.group(1)) for m in map(STAMPED.match, shown.read_bytes().splitlines()) if m]
    record = json.loads(summary.read_text()) if summary.exists() else {}
    return {"wall_s": wall, "exit": job.returncode, "delivered": len(numbers),
            "in_order": numbers == list(range(1, len(numbers) + 1)),
            "log_lines": record.get("log_lines"), "dropped": record.get("console_lines_dropped"),
            "warnings": [line for line in err.splitlines() if "warning" in line]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--rate", type=float, default=1_000_000, help="reader's bytes/s (default 1 MB/s)")
    args = parser.parse_args()
    import docker

    from tests.images import busybox_image
    image = busybox_image(docker.from_env())
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    print(f"seed: none (deterministic); {args.lines} lines; reader at {args.rate:g} B/s")
    fast = one(image, args.lines, 0, work)
    slow = one(image, args.lines, args.rate, work)
    for name, r in (("full-speed reader (baseline)", fast), ("slow reader", slow)):
        print(f"{name}: delivered {r['delivered']}/{args.lines} (in order: {r['in_order']}), "
              f"record log_lines {r['log_lines']}, console_lines_dropped {r['dropped']}, "
              f"exit {r['exit']}, wall {r['wall_s']:.1f} s, warnings {r['warnings']}")
    print(f"slow/baseline wall ratio {slow['wall_s'] / fast['wall_s']:.2f}")
    ok = all(r["delivered"] == args.lines == r["log_lines"] and r["in_order"] for r in (fast, slow))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
