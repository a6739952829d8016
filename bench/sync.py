"""Benchmark: `run --remote --sync` / `--output` transfers (provisioner/sync.py) on a moto server,
against the raw boto3 loop `aws s3 sync` amounts to, measured in the same command.

    .venv/bin/python bench/sync.py [--files 10000] [--mib 100] [--rounds 3] [--seed N] [--endpoint URL]

A tree of `--files` files totalling about `--mib` MiB (sizes drawn log-uniformly from the seed, a
few large ones among many small, like a code base with some data) is written once. Each round,
in an order that alternates:

- `sync-up`: scan (with a .provisionerignore that matches nothing) + `upload_tree`;
- `raw-up`: the same files with a plain `put_object` each from a pool of 10 threads (the
  default concurrency of `aws s3 sync`), no scan, no metadata;
- `sync-down`: `download_prefix` of what sync-up put into an empty folder;
- `raw-down`: list + `get_object` each from 10 threads into an empty folder.

Every round checks that the downloaded trees match the source byte for byte. Prints the seed, the
load average, each round's seconds and MiB/s, the medians and the ratios sync/raw (target: >= 0.8
upload). moto is the bottleneck on a small machine: compare ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the checkout

from provisioner import aws, sync  # noqa: E402
from tests.moto_server import DUMMY_CREDENTIALS, MotoServer  # noqa: E402

RAW_WORKERS = 10
BUCKET = "bench-sync"


def make_tree(root: Path, files: int, mib: float, rng: random.Random) -> int:
    """`files` files, log-uniform sizes scaled to about `mib` MiB in all; returns the bytes."""
    raw = [math.exp(rng.uniform(math.log(64), math.log(4 * 1024 * 1024))) for _ in range(files)]
    scale = mib * 1024 * 1024 / sum(raw)
    total = 0
    for i, size in enumerate(raw):
        path = root / f"d{i % 50:02d}" / f"s{i % 7}" / f"f{i:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        n = max(1, int(size * scale))
        path.write_bytes(rng.randbytes(n))
        total += n
    (root / sync.IGNORE_FILE).write_text("*.never\nnothing-here/\n")
    return total + (root / sync.IGNORE_FILE).stat().st_size


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def raw_up(s3, root: Path, prefix: str) -> None:
    paths = [p for p in root.rglob("*") if p.is_file()]

    def put(p: Path) -> None:
        s3.put_object(Bucket=BUCKET, Key=prefix + p.relative_to(root).as_posix(), Body=p.read_bytes())
    with ThreadPoolExecutor(RAW_WORKERS) as pool:
        list(pool.map(put, paths))


def raw_down(s3, prefix: str, dest: Path) -> None:
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
            for o in page.get("Contents", [])]

    def get(key: str) -> None:
        path = dest / key[len(prefix):]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    with ThreadPoolExecutor(RAW_WORKERS) as pool:
        list(pool.map(get, keys))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=10000)
    p.add_argument("--mib", type=float, default=100.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--endpoint", help="a running moto server (default: start one)")
    a = p.parse_args(argv)
    seed = a.seed if a.seed is not None else random.randrange(2 ** 32)
    print(f"seed {seed}; files {a.files}; ~{a.mib:g} MiB; load average {os.getloadavg()[0]:.2f}")
    server = None
    if a.endpoint is None:
        server = MotoServer()
        a.endpoint = server.start()
    os.environ.update(DUMMY_CREDENTIALS)
    os.environ[aws.ENDPOINT_ENV] = a.endpoint
    s3 = aws.client("s3", region="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    work = Path(tempfile.mkdtemp(prefix="bench-sync-"))
    try:
        src = work / "src"
        total = make_tree(src, a.files, a.mib, random.Random(seed))
        want = digest(src)
        mib = total / 1024 / 1024
        print(f"tree: {a.files + 1} files, {mib:.1f} MiB")
        results: dict[str, list[float]] = {k: [] for k in ("sync-up", "raw-up", "sync-down", "raw-down")}
        for r in range(a.rounds):
            url = f"s3://{BUCKET}/sync/r{r}/"
            raw_prefix = f"raw/r{r}/"
            ups = [("sync-up", lambda: sync.upload_tree(s3, sync.scan_for_sync(src), url)),
                   ("raw-up", lambda: raw_up(s3, src, raw_prefix))]
            downs = [("sync-down", lambda: sync.download_prefix(s3, url, work / f"sd{r}")),
                     ("raw-down", lambda: raw_down(s3, raw_prefix, work / f"rd{r}"))]
            if r % 2:
                ups.reverse()
                downs.reverse()
            line = []
            for name, fn in ups + downs:
                seconds = timed(fn)
                results[name].append(seconds)
                line.append(f"{name} {seconds:.2f} s ({mib / seconds:.1f} MiB/s)")
            for folder in (work / f"sd{r}", work / f"rd{r}"):
                if digest(folder) != want:
                    print(f"round {r + 1}: {folder.name} differs from the source", file=sys.stderr)
                    return 1
                shutil.rmtree(folder)
            print(f"round {r + 1}: " + "; ".join(line))
        med = {k: statistics.median(v) for k, v in results.items()}
        print("medians: " + "; ".join(f"{k} {v:.2f} s ({mib / v:.1f} MiB/s)" for k, v in med.items()))
        print(f"upload: sync/raw throughput {med['raw-up'] / med['sync-up']:.2f}x (target >= 0.8x); "
              f"download: {med['raw-down'] / med['sync-down']:.2f}x")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
