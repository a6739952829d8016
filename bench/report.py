#!/usr/bin/env python3
"""Benchmark: `provisioner report` over a large generated history, against baselines in the same run.

Generates N usage records (seeded; the seed is printed) for J jobs over D days: spot and on-demand
runs with prices, requested against used resources, timeouts, OOM kills and interruptions. They go
into a fresh SQLite store, then:

  report e2e     `provisioner report --format json` (the console script: start, read, aggregate, render)
  export e2e     `provisioner history export` of the same store (baseline: start + read + JSON out)
  aggregate      `build_report(records)` in-process (the pure functions alone)
  json.loads     a plain json.loads pass over the records' JSON texts (baseline: the cheapest full pass)
  plot           `write_plot` in-process (matplotlib, SVG)

and prints each with its ratio to its baseline. Medians of --repeat runs.

Usage: bench/report.py [--records 100000] [--jobs 60] [--days 90] [--seed N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provisioner.history import open_store  # noqa: E402
from provisioner.report.aggregate import build_report  # noqa: E402
from provisioner.report.plot import write_plot  # noqa: E402

GIB = 1024 ** 3
TYPES = [("m5.large", 2, 8, 0.096), ("m5.2xlarge", 8, 32, 0.384), ("c5.4xlarge", 16, 32, 0.68),
         ("r5.4xlarge", 16, 128, 1.008), ("g5.xlarge", 4, 16, 1.006)]


def generate(n: int, jobs: int, days: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    profiles = []
    for j in range(jobs):
        itype, vcpu, mem, price = rng.choice(TYPES)
        profiles.append({"job": f"team{j % 7}/job-{j:03d}", "team": f"team{j % 7}", "type": itype, "vcpu": vcpu,
                         "mem": mem, "price": price, "spot": rng.random() < 0.6,
                         "use_mem": mem * rng.uniform(0.05, 0.9), "use_cpu": vcpu * rng.uniform(0.1, 1.0) * 100,
                         "dur": rng.lognormvariate(7.5, 0.8), "weight": rng.paretovariate(1.2)})
    weights = [p["weight"] for p in profiles]
    out = []
    starts = sorted(rng.uniform(0, days * 86400) for _ in range(n))
    for i, offset in enumerate(starts):
        p = rng.choices(profiles, weights)[0]
        spot = p["spot"]
        dur = p["dur"] * rng.uniform(0.7, 1.4)
        paid = p["price"] * (rng.uniform(0.3, 0.45) if spot else 1)
        roll = rng.random()
        flags = {"timed_out": roll < 0.01, "oom_killed": 0.01 <= roll < 0.015,
                 "interrupted": spot and 0.015 <= roll < 0.035}
        exit_code = 124 if flags["timed_out"] else 137 if flags["oom_killed"] else \
            143 if flags["interrupted"] else (1 if roll > 0.97 else 0)
        out.append({
            "job": p["job"], "build": str(i), "run_id": f"{i:08x}-bench",
            "start": (t0 + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_s": round(dur, 1), "exit_code": exit_code, "instance_type": p["type"],
            "region": "us-east-1", "market": "spot" if spot else "on-demand", "vcpu": p["vcpu"],
            "cpu_avg_pct": round(p["use_cpu"] * 0.7, 1), "cpu_max_pct": round(p["use_cpu"] * rng.uniform(0.9, 1.1), 1),
            "mem_max_bytes": int(p["use_mem"] * rng.uniform(0.9, 1.1) * GIB),
            "price_usd_per_hour": round(paid, 5), "ondemand_usd_per_hour": p["price"],
            "cost_usd": round(paid * dur / 3600, 6), "team": p["team"],
            "requested_vcpu": p["vcpu"], "requested_mem_gib": p["mem"], **flags})
    return out


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cli(*args: str) -> None:
    exe = Path(sys.executable).parent / "provisioner"
    done = subprocess.run([str(exe), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"provisioner {' '.join(args)} failed: {done.stderr}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=60)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(2 ** 31)
    print(f"seed {seed}: {a.records} records, {a.jobs} jobs, {a.days} days, median of {a.repeat}")
    records = generate(a.records, a.jobs, a.days, seed)
    with tempfile.TemporaryDirectory() as tmp:
        hist = str(Path(tmp) / "h.sqlite3")
        t = time.perf_counter()
        with open_store(hist) as store:
            store.add_many(records)
            stored = list(store.records())
        print(f"store: {len(stored)} records written and read back in {time.perf_counter() - t:.2f} s")
        os.environ["MPLCONFIGDIR"] = str(Path(tmp) / "mpl")
        texts = [json.dumps(r) for r in stored]

        report_s = timed(lambda: cli("report", "--history", hist, "--format", "json"), a.repeat)
        export_s = timed(lambda: cli("history", "export", "--history", hist), a.repeat)
        agg_s = timed(lambda: build_report(stored), a.repeat)
        loads_s = timed(lambda: [json.loads(x) for x in texts], a.repeat)
        plot_s = timed(lambda: write_plot(stored, str(Path(tmp) / "cost.svg")), a.repeat)
        table_s = timed(lambda: cli("report", "--history", hist), a.repeat)
    print(f"{'report --format json (e2e)':<30} {report_s:8.3f} s   {report_s / export_s:5.2f}x history export "
          f"({export_s:.3f} s)")
    print(f"{'report table (e2e)':<30} {table_s:8.3f} s   {table_s / export_s:5.2f}x history export")
    print(f"{'build_report (aggregation)':<30} {agg_s:8.3f} s   {agg_s / loads_s:5.2f}x a json.loads pass "
          f"({loads_s:.3f} s)   {a.records / agg_s:,.0f} records/s")
    print(f"{'plot (SVG, in-process)':<30} {plot_s:8.3f} s")


if __name__ == "__main__":
    main()
