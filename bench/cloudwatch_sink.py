"""Benchmark: log lines through the CloudWatch sink into a moto server, against raw PutLogEvents.

    .venv/bin/python bench/cloudwatch_sink.py [--lines 100000] [--rounds 3] [--seed N] [--endpoint URL]

Each round, alternating: the baseline sends the lines as pre-built 10,000-event batches with raw
`put_log_events` (same client settings as the sink); the sink run writes every line with `write()` as
fast as Python can and stops the clock when `close()` returns. The sink's stream is then read back and
must hold every line, in order, with exact content. Prints the seed, per-round figures, the medians and
their ratio; exits 1 if anything was lost or reordered.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the checkout

from provisioner import aws  # noqa: E402
from provisioner.runner.cloudwatch import LIMITS, CloudWatchSink  # noqa: E402
from tests.moto_server import DUMMY_CREDENTIALS, MotoServer  # noqa: E402

WORDS = ["build", "step", "compile", "test", "ok", "warning:", "error", "µs", "→", "✓", "😀", "[INFO]",
         "src/main.py:42", "0x7f3a", "PASSED", "Downloading", "100%"]


def make_lines(n: int, rng: random.Random) -> list[str]:
    """Log-like lines of 1-16 words (~10-120 bytes, ~65 on average), some with multi-byte characters.

    Short enough on average that the baseline's 10,000-event batches stay within PutLogEvents' 1 MiB,
    so both sides make the same number of calls.
    """
    return [f"{i:07d} " + " ".join(rng.choices(WORDS, k=rng.randint(1, 16))) for i in range(n)]


def baseline(client: Any, group: str, lines: list[str]) -> float:
    """Lines/s of raw put_log_events with batches built before the clock starts."""
    client.create_log_stream(logGroupName=group, logStreamName="baseline")
    now = int(time.time() * 1000)
    step = LIMITS.max_batch_events
    batches = [[{"timestamp": now, "message": m} for m in lines[i:i + step]]
               for i in range(0, len(lines), step)]
    biggest = max(sum(len(e["message"].encode()) + 26 for e in batch) for batch in batches)
    if biggest > LIMITS.max_batch_bytes:
        print(f"note: a baseline batch has {biggest:,} bytes, over the 1 MiB limit the sink keeps")
    started = time.perf_counter()
    for batch in batches:
        client.put_log_events(logGroupName=group, logStreamName="baseline", logEvents=batch)
    return len(lines) / (time.perf_counter() - started)


def sink_run(client: Any, group: str, lines: list[str]) -> tuple[float, int]:
    """Lines/s through write() .. close(), and close()'s dropped count."""
    # The producer here outruns any endpoint, so the buffer holds the whole burst: with a healthy
    # endpoint nothing may be dropped (a real job's output arrives far slower than this loop).
    buffer = sum(len(line) + 26 for line in lines) + 1
    sink = CloudWatchSink(group, "sink", client=client, max_buffer_bytes=buffer)
    write = sink.write
    started = time.perf_counter()
    for line in lines:
        write(time.time(), line)
    dropped = sink.close(timeout_s=600)
    return len(lines) / (time.perf_counter() - started), dropped


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--endpoint", help="a running moto server (default: start one on 127.0.0.1)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"seed {seed}")
    lines = make_lines(args.lines, random.Random(seed))
    size = sum(len(line.encode()) for line in lines)
    print(f"{len(lines):,} lines, {size / 2**20:.1f} MiB of messages, {args.rounds} round(s)")

    os.environ.update({k: os.environ.get(k, v) for k, v in DUMMY_CREDENTIALS.items()})
    server = None
    endpoint = args.endpoint
    if not endpoint:
        server = MotoServer()
        endpoint = server.start()
    try:
        # The sink's own client settings (no botocore retries, no parameter validation) for both.
        client = aws.client("logs", endpoint_url=endpoint, max_attempts=1, parameter_validation=False)
        raw_rates, sink_rates, lost = [], [], 0
        for r in range(args.rounds):
            group = f"/bench/{seed}/{r}"
            client.create_log_group(logGroupName=group)
            raw_rates.append(baseline(client, group, lines))
            rate, dropped = sink_run(client, group, lines)
            sink_rates.append(rate)
            back = read_back(client, group, "sink")
            bad = dropped + (0 if back == lines else max(1, abs(len(lines) - len(back))))
            lost += bad
            client.delete_log_group(logGroupName=group)  # moto slows down as it holds more events
            print(f"round {r + 1}: raw put_log_events {raw_rates[-1]:,.0f} lines/s, "
                  f"sink {rate:,.0f} lines/s, dropped {dropped}, read back "
                  f"{'identical' if back == lines else f'DIFFERENT ({len(back):,} lines)'}")
    finally:
        if server:
            server.stop()
    raw, sink = statistics.median(raw_rates), statistics.median(sink_rates)
    print(f"median: sink {sink:,.0f} lines/s, raw {raw:,.0f} lines/s, ratio {sink / raw:.2f}; "
          f"lost or reordered: {lost}")
    print(json.dumps({"seed": seed, "lines": len(lines), "rounds": args.rounds,
                      "sink_lines_per_s": round(sink), "raw_lines_per_s": round(raw),
                      "ratio": round(sink / raw, 3), "lost": lost}))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
