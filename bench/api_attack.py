"""The daemon's HTTP port under attack, against an idle baseline in the same command.

    PYTHONPATH=$PWD python bench/api_attack.py [--seed N] [--fuzz 10000] [--probes 400]

1. Idle: /healthz p50/p99 over `--probes` requests; the server process' RSS.
2. Attack, for as long as the same number of probes takes (at least `--min-attack-s`): 40
   slowloris connections (a header byte a second), a 300 MiB body with no token (Content-Length),
   a 300 MiB chunked body with no token, a 300 MiB chunked body with a valid token, a request with
   `Content-Length: -1`. Meanwhile /healthz is probed and the server's RSS sampled every 20 ms.
   Figures: peak RSS growth over idle (target < 20 MB), /healthz p99 (target < 100 ms) and its
   ratio to the idle p99.
3. Fuzz: `--fuzz` agent API bodies (tests/daemon/api_bodies.py) against the same server; counts the
   answers by status, 500s, and tracebacks in the server's log (target: 0 and 0).
The server is tests/daemon/api_server.py (the daemon's HTTP port alone, in its own process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
MIB = 1 << 20


def start_server(tmp: Path, log: Path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tests.daemon.api_server", str(tmp / "h.sqlite3"),
                             "--records-per-min", "0"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    info = json.loads(proc.stdout.readline())
    host, port = info["url"].rsplit("/", 1)[-1].split(":")
    return proc, info, host, int(port)


def probe(url: str, n: int, session: requests.Session) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        r = session.get(url, timeout=30)
        out.append(time.perf_counter() - t)
        assert r.status_code == 200, r.status_code
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


class Attack:
    """The attackers' threads, run in a process of their own (`attack_process`), so that their
    work never delays this process' /healthz probes: the figures are the daemon's."""

    def __init__(self, host: str, port: int, token: str, rng: random.Random, stop, sent):
        self.host, self.port, self.token, self.rng = host, port, token, rng
        self.stop = stop
        self.threads: list[threading.Thread] = []
        self._sent = sent
        self.block = bytes(rng.getrandbits(8) for _ in range(4096)) * 256          # 1 MiB
        self.chunk = b"%x\r\n%s\r\n" % (len(self.block), self.block)

    @property
    def sent(self) -> int:
        return self._sent.value

    def _sock(self) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout=30)

    def slowloris(self, n: int = 40) -> None:
        def run() -> None:
            socks = []
            for _ in range(n):
                s = self._sock()
                s.sendall(b"POST /v1/usage HTTP/1.1\r\nHost: daemon\r\n")
                socks.append(s)
            while not self.stop.wait(1.0):
                for i, s in enumerate(socks):
                    try:
                        s.sendall(b"X")
                    except OSError:                      # closed by the server: open another one
                        s.close()
                        socks[i] = self._sock()
                        socks[i].sendall(b"POST /v1/usage HTTP/1.1\r\nHost: daemon\r\n")
            for s in socks:
                s.close()
        self._spawn(run)

    def big_body(self, head: bytes, total: int = 300 * MIB, chunked: bool = False) -> None:
        def run() -> None:
            data = self.chunk if chunked else self.block
            while not self.stop.is_set():
                try:
                    with self._sock() as s:
                        s.sendall(head)
                        sent = 0
                        while sent < total and not self.stop.is_set():
                            s.sendall(data)
                            sent += len(self.block)
                            with self._sent.get_lock():
                                self._sent.value += len(self.block)
                except OSError:
                    pass                                 # refused and closed: try again
        self._spawn(run)

    def _spawn(self, fn) -> None:
        t = threading.Thread(target=fn, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=30)


def attack_process(host: str, port: int, token: str, seed: int, stop, sent) -> None:
    attack = Attack(host, port, token, random.Random(seed), stop, sent)
    attack.slowloris(40)
    attack.big_body(head(None, Content_Length=str(300 * MIB)))
    attack.big_body(head(None, Transfer_Encoding="chunked"), chunked=True)
    attack.big_body(head(token, Transfer_Encoding="chunked"), chunked=True)
    attack.big_body(head(token, Content_Length="-1"))
    attack.join()


def head(token: str | None, **headers: str) -> bytes:
    lines = ["POST /v1/usage HTTP/1.1", "Host: daemon"] + ([f"Authorization: Bearer {token}"] if token else [])
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def fuzz(url: str, token: str, n: int, seed: int) -> dict[int, int]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    from tests.daemon.api_bodies import bodies, paths
    counts: dict[int, int] = {}
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"

    @hseed(seed)
    @settings(max_examples=n, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(paths, bodies)
    def one(path: str, body: bytes) -> None:
        r = session.post(url + path, data=body, timeout=30)
        counts[r.status_code] = counts.get(r.status_code, 0) + 1
    one()
    return counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--probes", type=int, default=400)
    p.add_argument("--min-attack-s", type=float, default=8.0)
    p.add_argument("--fuzz", type=int, default=10_000)
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2 ** 31)
    print(f"seed {seed}")
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        proc, info, host, port = start_server(Path(tmp), log)
        server = psutil.Process(info["pid"])
        url = f"http://{host}:{port}"
        session = requests.Session()
        try:
            probe(url + "/healthz", 50, session)                          # warm up
            idle_rss = server.memory_info().rss
            idle = probe(url + "/healthz", args.probes, session)
            stop, sent = multiprocessing.Event(), multiprocessing.Value("q", 0)
            attacker = multiprocessing.Process(target=attack_process, daemon=True,
                                               args=(host, port, info["token"], rng.randrange(2 ** 31), stop, sent))
            peak = [idle_rss]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.wait(0.02):
                    peak[0] = max(peak[0], server.memory_info().rss)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            attacker.start()
            time.sleep(1.5)                                                # the attack is under way
            started = time.monotonic()
            busy: list[float] = []
            while len(busy) < args.probes or time.monotonic() - started < args.min_attack_s:
                busy += probe(url + "/healthz", 20, session)
            attack_s = time.monotonic() - started
            stop.set()
            attacker.join(timeout=60)
            sampling.set()
            sampler.join()
            growth = (peak[0] - idle_rss) / 1e6
            print(f"idle:   RSS {idle_rss / 1e6:.1f} MB, /healthz p50 {pct(idle, 50) * 1e3:.2f} ms "
                  f"p99 {pct(idle, 99) * 1e3:.2f} ms ({len(idle)} probes)")
            print(f"attack: 40 slowloris + 300 MiB bodies (no token: Content-Length and chunked; token: "
                  f"chunked and Content-Length -1), {sent.value / MIB:.0f} MiB offered in "
                  f"{attack_s:.1f} s")
            print(f"attack: RSS peak {peak[0] / 1e6:.1f} MB, growth {growth:.1f} MB (target < 20 MB); "
                  f"/healthz p50 {pct(busy, 50) * 1e3:.2f} ms p99 {pct(busy, 99) * 1e3:.2f} ms "
                  f"(target < 100 ms), {pct(busy, 99) / pct(idle, 99):.2f}x idle p99 ({len(busy)} probes)")
            if args.fuzz:
                t0 = time.monotonic()
                counts = fuzz(url, info["token"], args.fuzz, seed)
                traces = log.read_text().count("Traceback")
                total = sum(counts.values())
                print(f"fuzz:   {total} bodies in {time.monotonic() - t0:.1f} s, answers "
                      f"{dict(sorted(counts.items()))}, 500s {counts.get(500, 0)}, tracebacks {traces}")
        finally:
            session.close()
            proc.stdin.close()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
