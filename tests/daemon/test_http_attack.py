"""The daemon's port under attack (issue 13, item 3), a real server process on 127.0.0.1: half-sent
requests, bodies without a token, lying Content-Lengths, endless chunked bodies; and a fuzz of the
agent API's bodies. Timings are the benchmark's business (bench/api_attack.py); these tests check
that the daemon keeps answering, refuses before reading, and never answers 500."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from contextlib import ExitStack

import psutil
import pytest
import requests

from tests.conftest import ROOT

MIB = 1 << 20


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    history = tmp_path_factory.mktemp("api") / "h.sqlite3"
    proc = subprocess.Popen([sys.executable, "-m", "tests.daemon.api_server", str(history), "--head-timeout", "3",
                             "--records-per-min", "0"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        host, p = info["url"].rsplit("/", 1)[-1].split(":")
        info.update(host=host, port=int(p), proc=proc)
        yield info
    finally:
        proc.stdin.close()
        proc.wait(timeout=20)


def rss(info) -> int:
    return psutil.Process(info["pid"]).memory_info().rss


def connect(info, timeout: float = 10.0) -> socket.socket:
    s = socket.create_connection((info["host"], info["port"]), timeout=timeout)
    return s


def answer(s: socket.socket) -> bytes:
    """What the server sends until it closes or stops for 10 s (enough for one small answer)."""
    out = b""
    try:
        while b"\r\n\r\n" not in out or len(out) < out.index(b"\r\n\r\n") + 4 + _length(out):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ConnectionError):
        pass
    return out


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def head(path: str = "/v1/usage", token: str | None = None, **headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: daemon"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def healthz(info) -> int:
    return requests.get(f"http://{info['host']}:{info['port']}/healthz", timeout=5).status_code


@pytest.mark.parametrize("length", ["-1", "abc", "1e9", " 12x"])
def test_a_negative_or_non_numeric_content_length_is_400_without_reading(port, length):
    """The red team's hole: `Content-Length: -1` made the server read to the end of the stream."""
    with connect(port) as s:
        s.sendall(head(token=port["token"], Content_Length=length))       # and nothing more: no EOF
        assert status(answer(s)) == 400


def test_a_post_without_length_is_411_and_chunked_bodies_are_bounded(port):
    with connect(port) as s:
        s.sendall(head(token=port["token"]))
        assert status(answer(s)) == 411
    with connect(port) as s:                                  # a small chunked body is a body
        body = json.dumps({"run_id": "r", "at": "2026-01-01T00:00:00Z"}).encode()
        s.sendall(head("/v1/samples", port["token"], Transfer_Encoding="chunked")
                  + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        assert status(answer(s)) == 204
    before = rss(port)
    with connect(port) as s:                                  # an endless one is cut at the cap
        s.sendall(head(token=port["token"], Transfer_Encoding="chunked"))
        chunk = b"100000\r\n" + b"x" * MIB + b"\r\n"
        try:
            for _ in range(300):
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = answer(s)
        assert status(got) in (413, 0)                          # 0: reset before the client read it
    assert rss(port) - before < 50 * MIB
    assert healthz(port) == 200


def test_a_300_mib_body_without_a_token_is_401_before_a_byte_of_it_is_read(port):
    before = rss(port)
    for extra in ({"Content_Length": str(300 * MIB)}, {"Transfer_Encoding": "chunked"}):
        with connect(port) as s:
            s.sendall(head(**extra))                              # the head alone: the answer comes
            assert status(answer(s)) == 401
    with connect(port) as s:                                      # and sending it anyway changes nothing
        s.sendall(head(Content_Length=str(300 * MIB)))
        try:
            block = b"x" * MIB
            for _ in range(300):
                s.sendall(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
    assert rss(port) - before < 50 * MIB
    assert healthz(port) == 200


def test_40_slowloris_connections_do_not_stop_healthz_or_agents_and_are_closed(port):
    with ExitStack() as stack:
        slow = [stack.enter_context(connect(port, timeout=15)) for _ in range(40)]
        for s in slow:
            s.sendall(b"POST /v1/usage HTTP/1.1\r\nHost: daemon\r\n")
        for _ in range(20):
            assert healthz(port) == 200
        r = requests.post(f"http://{port['host']}:{port['port']}/v1/samples", timeout=5,
                          json={"run_id": "r", "at": "2026-01-01T00:00:00Z"},
                          headers={"Authorization": f"Bearer {port['token']}"})
        assert r.status_code == 204
        for s in slow:                                            # a byte a second does not keep them open
            try:
                s.sendall(b"X")
            except OSError:
                pass
        deadline = time.monotonic() + 15
        closed = 0
        for s in slow:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                if s.recv(100) == b"":
                    closed += 1
            except (socket.timeout, ConnectionError):
                closed += isinstance(sys.exc_info()[1], ConnectionError)
        assert closed == 40


def test_expect_100_continue_is_answered_after_the_head_passed(port):
    body = json.dumps({"run_id": "r", "at": "2026-01-01T00:00:00Z"}).encode()
    with connect(port) as s:
        s.sendall(head("/v1/samples", port["token"], Content_Length=str(len(body)), Expect="100-continue"))
        assert s.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(body)
        assert status(answer(s)) == 204
    with connect(port) as s:                                          # no token: 401 and no body wanted
        s.sendall(head("/v1/samples", Content_Length=str(300 * MIB), Expect="100-continue"))
        assert status(answer(s)) == 401
