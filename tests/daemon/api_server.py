"""`python -m tests.daemon.api_server HISTORY`: the daemon's HTTP port alone (agent API, /metrics,
/healthz) in its own process, so attack tests and bench/api_attack.py can measure its memory.

It prints one JSON line {url, token, pid}: `token` is a live agent token of node `prov-t-q1`, whose
build is `app` #1. It serves until stdin closes."""

from __future__ import annotations

import argparse
import json
import os
import sys

from provisioner.daemon.agents import AgentBook
from provisioner.daemon.http import AgentApi, ApiLimits, DaemonHttpServer, Health
from provisioner.daemon.httpio import Limits
from provisioner.daemon.metrics import DaemonMetrics
from provisioner.daemon.model import Node
from provisioner.daemon.state import Tokens
from provisioner.history import open_store

NODE, BUILD_URL = "prov-t-q1", "http://jenkins.example/job/app/1/"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("history")
    p.add_argument("--head-timeout", type=float, default=Limits.head_timeout_s)
    p.add_argument("--records-per-min", type=int, default=ApiLimits.records_per_min)
    args = p.parse_args()
    limits = ApiLimits(records_per_min=args.records_per_min, samples_per_min=args.records_per_min)
    book = AgentBook(grace_s=limits.token_grace_s)
    tokens = Tokens(os.urandom(32), book)
    metrics = DaemonMetrics()
    health = Health(stuck_after_s=3600)
    health.beat()
    api = AgentApi(tokens, metrics, lambda: open_store(args.history), limits=limits)
    token = tokens.for_node(NODE)
    book.nodes_seen([Node(NODE, frozenset(), builds=(BUILD_URL,))])
    book.instances_seen([])
    http = DaemonHttpServer(("127.0.0.1", 0), metrics, health, api,
                            limits=Limits(max_body_bytes=limits.max_body_bytes, head_timeout_s=args.head_timeout)).start()
    print(json.dumps({"url": http.url, "token": token, "pid": os.getpid()}), flush=True)
    try:
        sys.stdin.read()
    finally:
        http.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
