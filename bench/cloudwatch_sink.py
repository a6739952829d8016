"""Benchmark: log lines through the CloudWatch sink into a moto server, against raw PutLogEvents.

    .venv/bin/python bench/cloudwatch_sink.py [--lines 1000000] [--rounds 3] [--seed N] [--endpoint URL]
                                              [--variants sink,raw-body,moto-ceiling]

The same lines go into moto five ways each round, each into a fresh log group deleted afterwards (so
that no run pays for the events of another), in an order that rotates across rounds:

- `sink`: `write(time.time(), line)` for every line as fast as Python can, the clock stopped when
  `close()` returns; the stream is then read back and must hold every line, in order, exactly.
- `raw`: pre-built batches pushed with boto3 `put_log_events`, one call at a time (a stream's calls
  must not overlap to keep its order), the fastest of three ways: `raw-default` (a plain client,
  parameter validation on), `raw-novalidate` (validation off) and `raw-body` (validation off and the
  bodies prepared before the clock, exactly as the sink prepares them).
- `moto-ceiling`: the same prepared bodies over one keep-alive `http.client` connection, no boto3:
  the most this moto server takes on one ordered stream.

The batches are the sink's own (`BatchBuilder`, so the same calls and bytes). With a server it
started, it also reports moto's CPU time per request and how busy moto was (its CPU time over the
run's wall time), and the client's CPU time per request. Prints the seed, the load average, per-round
figures, the medians, the sink's ratio to the best raw (of the medians, and per round) and to moto's
ceiling; exits 1 if anything was lost or reordered. On a machine shared with other work, compare
rounds, not single runs: moto's CPU time for the same request varies with the machine's load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the checkout

from provisioner import aws  # noqa: E402
from provisioner.runner.cloudwatch import CloudWatchSink  # noqa: E402
from provisioner.runner.cloudwatch_batch import Batch, BatchBuilder, BodyHook, batch_events  # noqa: E402
from tests.moto_server import DUMMY_CREDENTIALS, MotoServer  # noqa: E402

WORDS = ["build", "step", "compile", "test", "ok", "warning:", "error", "µs", "→", "✓", "😀", "[INFO]",
         "src/main.py:42", "0x7f3a", "PASSED", "Downloading", "100%"]
RAW = ("raw-default", "raw-novalidate", "raw-body")
VARIANTS = ("sink", *RAW, "moto-ceiling")


def make_lines(n: int, rng: random.Random) -> list[str]:
    """Log-like lines of 1-16 words (~10-120 bytes, ~65 on average), some with multi-byte characters."""
    return [f"{i:07d} " + " ".join(rng.choices(WORDS, k=rng.randint(1, 16))) for i in range(n)]


def prebuilt(group: str, stream: str, lines: list[str]) -> list[Batch]:
    """The batches the sink would send for `lines` (one timestamp: built before any clock starts)."""
    builder = BatchBuilder(group, stream)
    now = time.time()
    batches = builder.add((now, line) for line in lines)
    last = builder.flush()
    return batches + ([last] if last else [])


def raw_boto3(client: Any, group: str, batches: list[Batch], prepared: bool) -> Callable[[], None]:
    """A run of raw put_log_events: batches as event lists, or as prepared bodies."""
    if prepared:
        hook = BodyHook(client)
        bodies = [batch.body for batch in batches]

        def run() -> None:
            for body in bodies:
                hook.put(client, group, "raw", body)
            hook.remove()
        return run
    event_lists = [batch_events(batch) for batch in batches]

    def run_events() -> None:
        for events in event_lists:
            client.put_log_events(logGroupName=group, logStreamName="raw", logEvents=events)
    return run_events


def raw_http(endpoint: str, batches: list[Batch]) -> Callable[[], None]:
    """Prepared bodies over one keep-alive connection: moto's own ceiling, no boto3 at all."""
    url = urlsplit(endpoint)
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": "Logs_20140328.PutLogEvents",
               # moto reads the account and region from the credential scope; it checks no signature
               "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/logs/aws4_request, "
                                "SignedHeaders=host, Signature=0"}
    bodies = [batch.body for batch in batches]

    def run() -> None:
        conn = http.client.HTTPConnection(url.hostname, url.port)
        for body in bodies:
            conn.request("POST", "/", body, headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"moto answered {response.status}")
        conn.close()
    return run


def sink_run(endpoint: str, group: str, lines: list[str]) -> int:
    """write() every line, then close(); return close()'s dropped count."""
    # The producer here outruns any endpoint, so the buffer holds the whole burst: with a healthy
    # endpoint nothing may be dropped (a real job's output arrives far slower than this loop).
    buffer = sum(len(line) + 26 for line in lines) + 1
    sink = CloudWatchSink(group, "sink", endpoint_url=endpoint, max_buffer_bytes=buffer)
    write, now = sink.write, time.time
    for line in lines:
        write(now(), line)
    return sink.close(timeout_s=600)


def read_back(client: Any, group: str, stream: str) -> list[str]:
    messages: list[str] = []
    token = None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = client.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                                     **kwargs)
        messages += [e["message"] for e in page["events"]]
        if page["nextForwardToken"] == token:
            return messages
        token = page["nextForwardToken"]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process `pid` (Linux /proc), or 0.0 when unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(variant: str, client: Any, endpoint: str, group: str, lines: list[str],
            server_pid: int | None) -> dict:
    """Time one variant into a fresh group; verify the sink's stream; delete the group."""
    client.create_log_group(logGroupName=group)
    stream = "sink" if variant == "sink" else "raw"
    result: dict[str, Any] = {"lost": 0}
    batches = prebuilt(group, stream, lines)
    calls = len(batches)  # the sink makes the same calls: its producer outruns moto, batches are full
    if variant != "sink":
        client.create_log_stream(logGroupName=group, logStreamName=stream)
        if variant == "moto-ceiling":
            run = raw_http(endpoint, batches)
        else:
            pusher = aws.client("logs", endpoint_url=endpoint, max_attempts=1,
                                parameter_validation=variant == "raw-default")
            run = raw_boto3(pusher, group, batches, prepared=variant == "raw-body")
    del batches
    server0, client0, started = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
    if variant == "sink":
        result["lost"] = sink_run(endpoint, group, lines)
    else:
        run()
    elapsed = time.perf_counter() - started
    server_cpu, client_cpu = cpu_seconds(server_pid) - server0, time.process_time() - client0
    if variant == "sink":
        back = read_back(client, group, stream)
        if back != lines:
            result["lost"] += max(1, abs(len(lines) - len(back)))
        result["read_back"] = "identical" if back == lines else f"DIFFERENT ({len(back):,} lines)"
    client.delete_log_group(logGroupName=group)
    result.update(rate=len(lines) / elapsed, server_ms=server_cpu / calls * 1000 if server_pid else None,
                  busy=server_cpu / elapsed, client_ms=client_cpu / calls * 1000)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--endpoint", help="a running moto server (default: start one on 127.0.0.1)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of: %(default)s (sink and one raw at least)")
    args = parser.parse_args()
    variants = tuple(v for v in VARIANTS if v in args.variants.split(","))
    raws = [v for v in RAW if v in variants]
    if "sink" not in variants or not raws:
        parser.error("--variants needs sink and at least one raw-* variant")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed {seed}")
    lines = make_lines(args.lines, random.Random(seed))
    size = sum(len(line.encode()) for line in lines)
    print(f"{len(lines):,} lines, {size / 2**20:.1f} MiB of messages, {args.rounds} round(s)")

    os.environ.update({k: os.environ.get(k, v) for k, v in DUMMY_CREDENTIALS.items()})
    server = None
    endpoint = args.endpoint
    if not endpoint:
        server = MotoServer()  # as the tests run it: tests/moto_server.py
        endpoint = server.start()
    server_pid = server._proc.pid if server and server._proc else None
    rates: dict[str, list[float]] = {v: [] for v in variants}
    paired: list[float] = []  # per round: sink / the best raw of that round (runs minutes apart at most)
    lost = 0
    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    try:
        client = aws.client("logs", endpoint_url=endpoint, max_attempts=1)
        for r in range(args.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for variant in order:
                res = one_run(variant, client, endpoint, f"/bench/{seed}/{r}/{variant}", lines, server_pid)
                rates[variant].append(res["rate"])
                lost += res["lost"]
                cpu = (f", moto CPU {res['server_ms']:.0f} ms/call (busy {res['busy']:.0%})"
                       if res["server_ms"] is not None else "")
                extra = (f", dropped {res['lost']}, read back {res['read_back']}"
                         if variant == "sink" else "")
                print(f"round {r + 1} {variant:15s} {res['rate']:9,.0f} lines/s{cpu}, "
                      f"client CPU {res['client_ms']:.0f} ms/call{extra}", flush=True)
            paired.append(rates["sink"][-1] / max(rates[v][-1] for v in raws))
    finally:
        if server:
            server.stop()
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    medians = {v: statistics.median(rates[v]) for v in variants}
    raw_best = max(raws, key=lambda v: medians[v])
    sink, raw = medians["sink"], medians[raw_best]
    ceiling = medians.get("moto-ceiling")
    print("medians: " + ", ".join(f"{v} {medians[v]:,.0f}" for v in variants) + " lines/s")
    print(f"per-round sink / best raw: {', '.join(f'{p:.2f}' for p in paired)} "
          f"(median {statistics.median(paired):.2f})")
    print(f"sink {sink:,.0f} lines/s; raw ({raw_best}) {raw:,.0f} lines/s, ratio {sink / raw:.2f}; "
          + (f"moto ceiling {ceiling:,.0f} lines/s, ratio {sink / ceiling:.2f}; " if ceiling else "")
          + f"lost or reordered: {lost}")
    print(json.dumps({"seed": seed, "lines": len(lines), "rounds": args.rounds,
                      "sink_lines_per_s": round(sink), "raw_lines_per_s": round(raw), "raw_variant": raw_best,
                      "ratio": round(sink / raw, 3), "paired_ratio": round(statistics.median(paired), 3),
                      "moto_ceiling_lines_per_s": round(ceiling) if ceiling else None,
                      "ratio_to_ceiling": round(sink / ceiling, 3) if ceiling else None, "lost": lost,
                      "medians": {v: round(medians[v]) for v in variants}}))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
