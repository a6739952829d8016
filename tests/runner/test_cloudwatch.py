"""CloudWatch Logs sink: the batcher's limits (pure), delivery into a real moto server, retries, and
a hung endpoint that must never hold up write() or close()."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner import aws
from provisioner.runner.cloudwatch import (
    EVENT_OVERHEAD, LIMITS, CloudWatchSink, Event, Limits, batch_size, events_from_lines,
    split_batches, split_message)
from tests.moto_server import DUMMY_CREDENTIALS

T0 = 1_700_000_000.0  # seconds; a fixed epoch keeps the pure tests deterministic
DAY_MS = 24 * 3600 * 1000


# ---- invariants every batch must hold -----------------------------------------------------------

def assert_valid_batches(batches: list[list[Event]], limits: Limits) -> None:
    """Every PutLogEvents limit, recomputed from the messages (not trusting Event.size)."""
    previous = -1
    for batch in batches:
        assert 1 <= len(batch) <= limits.max_batch_events
        sizes = [len(e.message.encode("utf-8")) + EVENT_OVERHEAD for e in batch]
        assert sum(sizes) <= limits.max_batch_bytes
        assert max(sizes) <= limits.max_event_bytes
        assert all(e.message for e in batch)  # CloudWatch rejects empty messages
        stamps = [e.timestamp for e in batch]
        assert stamps == sorted(stamps) and stamps[0] >= previous  # chronological, across batches too
        assert stamps[-1] - stamps[0] <= limits.max_span_ms
        previous = stamps[-1]


def reassemble(events: list[Event]) -> list[str]:
    lines, current = [], ""
    for event in events:
        current += event.message
        if event.last:
            lines.append(current)
            current = ""
    assert current == ""
    return lines


# ---- pure: splitting, events, batches ----------------------------------------------------------

@pytest.mark.parametrize("text", ["a" * 1000, "é" * 700, "😀" * 300, "ab€😀" * 200],
                         ids=["ascii", "2-byte", "4-byte", "mixed"])
def test_split_message_never_cuts_a_character(text: str) -> None:
    pieces = split_message(text, 101)
    assert "".join(p for p, _ in pieces) == text
    for piece, size in pieces:
        assert size == len(piece.encode("utf-8")) <= 101
    # cut as late as possible: no piece but the last is short by a whole character (<= 4 bytes)
    assert all(size > 101 - 4 for _, size in pieces[:-1])


def test_split_message_replaces_lone_surrogates() -> None:
    [(text, size)] = split_message("bad \udcff byte", 100)
    assert text == "bad ? byte" and size == len(text)


def test_events_clamp_time_keep_order_and_skip_empty_lines() -> None:
    lines = [(T0 + 2, "b"), (T0 + 1, "c"), (T0, ""), (float("nan"), "d"), (T0 + 3, "e")]
    events, floor = events_from_lines(lines, 0)
    assert [e.message for e in events] == ["b", "c", "d", "e"]
    assert [e.timestamp for e in events] == [int((T0 + 2) * 1000)] * 3 + [int((T0 + 3) * 1000)]
    assert floor == events[-1].timestamp


def test_a_600_kib_line_splits_into_events_under_the_limit() -> None:
    line = "x" * (600 * 1024)
    events, _ = events_from_lines([(T0, line)], 0)
    assert len(events) == 3 and [e.last for e in events] == [False, False, True]
    assert all(e.size <= LIMITS.max_event_bytes for e in events)
    assert events[0].size == LIMITS.max_event_bytes  # split as late as the limit allows
    assert reassemble(events) == [line]


def _events(sizes: list[int], step_ms: int = 0) -> list[Event]:
    return [Event(i * step_ms, "x" * (s - EVENT_OVERHEAD), s, True) for i, s in enumerate(sizes)]


@pytest.mark.parametrize("sizes, step_ms, expected", [
    ([27] * 25_000, 0, [10_000, 10_000, 5_000]),                 # the event count limit
    ([LIMITS.max_event_bytes] * 5, 0, [4, 1]),                   # 4 x 256 KiB = exactly 1 MiB
    ([LIMITS.max_event_bytes] * 4 + [27], 0, [4, 1]),            # one byte over
    ([100] * 3, DAY_MS - 1, [2, 1]),                             # 24 h: t, t+24h-1ms | t+48h-2ms
    ([100] * 2, DAY_MS, [1, 1]),                                 # exactly 24 h apart: never together
], ids=["count", "bytes-exact", "bytes-over", "span-inside", "span-exact"])
def test_batches_at_the_real_limits(sizes: list[int], step_ms: int, expected: list[int]) -> None:
    batches = split_batches(_events(sizes, step_ms))
    assert [len(b) for b in batches] == expected
    assert_valid_batches(batches, LIMITS)


def test_batch_size_is_zero_past_the_end() -> None:
    assert batch_size([], 0) == 0 and batch_size(_events([30]), 1) == 0


# Lines as (time step in ms, which character, how many): cheap to generate even at 700 KB.
CHARS = ["a", "é", "€", "😀", "\udcff"]
line_specs = st.tuples(st.integers(-5_000_000, 3 * DAY_MS // 4),
                       st.sampled_from(CHARS), st.integers(0, 2_000))


def _lines(specs: list[tuple[int, str, int]], scale: int = 1) -> list[tuple[float, str]]:
    lines, t = [], T0 * 1000
    for step, char, count in specs:
        t += step
        lines.append((t / 1000, char * (count * scale)))
    return lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(line_specs, max_size=60),
       max_events=st.integers(1, 12), max_event=st.integers(30, 400), extra_bytes=st.integers(0, 900),
       span=st.integers(0, 2 * DAY_MS))
def test_every_batch_respects_every_limit_small_limits(specs, max_events, max_event, extra_bytes,
                                                       span) -> None:
    limits = Limits(max_batch_bytes=max_event + extra_bytes, max_batch_events=max_events,
                    max_event_bytes=max_event, max_span_ms=span)
    lines = _lines(specs)
    events, _ = events_from_lines(lines, 0, limits)
    batches = split_batches(events, limits)
    assert_valid_batches(batches, limits)
    assert [e for b in batches for e in b] == events  # nothing lost, nothing reordered
    expected = [line.encode("utf-8", "replace").decode("utf-8") for _, line in lines if line]
    assert reassemble(events) == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(line_specs, max_size=25))
def test_every_batch_respects_every_limit_real_limits(specs) -> None:
    lines = _lines(specs, scale=350)  # up to 700,000 characters (2.8 MB) per line
    events, _ = events_from_lines(lines, 0)
    batches = split_batches(events)
    assert_valid_batches(batches, LIMITS)
    assert reassemble([e for b in batches for e in b]) == [
        line.encode("utf-8", "replace").decode("utf-8") for _, line in lines if line]


# ---- the client factory the sink builds its client with ---------------------------------------

def test_the_factory_uses_standard_retries_timeouts_and_the_endpoint_override(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(aws.ENDPOINT_ENV, "http://127.0.0.1:9")
    monkeypatch.delenv(aws.MAX_ATTEMPTS_ENV, raising=False)
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    client = aws.client("logs", connect_timeout_s=2, read_timeout_s=3)
    config = client.meta.config
    assert client.meta.endpoint_url == "http://127.0.0.1:9" and client.meta.region_name == "us-east-1"
    assert config.retries == {"mode": "standard", "total_max_attempts": aws.DEFAULT_MAX_ATTEMPTS}
    assert (config.connect_timeout, config.read_timeout) == (2, 3)
    monkeypatch.setenv(aws.MAX_ATTEMPTS_ENV, "1")
    other = aws.client("ec2", region="eu-west-1", endpoint_url="http://127.0.0.1:10")
    assert other.meta.endpoint_url == "http://127.0.0.1:10" and other.meta.region_name == "eu-west-1"
    assert other.meta.config.retries["total_max_attempts"] == 1


# ---- the sink against a real moto server -------------------------------------------------------

def read_stream(client: Any, group: str, stream: str) -> list[str]:
    messages, token = [], None
    while True:
        kwargs = {"nextToken": token} if token else {}
        page = client.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True,
                                     **kwargs)
        messages += [e["message"] for e in page["events"]]
        if page["nextForwardToken"] == token:
            return messages
        token = page["nextForwardToken"]


@pytest.fixture
def logs(moto_env: str) -> Any:
    return aws.client("logs", endpoint_url=moto_env, max_attempts=1)


@pytest.mark.moto
def test_lines_land_in_order_with_exact_content(logs: Any, moto_env: str) -> None:
    big = "abé€😀" * 55_855  # 614,405 UTF-8 bytes (600 KiB): three events
    lines = [f"line {i} ✓" for i in range(2_500)] + [big, "", "after the big one", "  spaced  "]
    sink = CloudWatchSink("/provisioner/builds", "run-1", endpoint_url=moto_env)
    for line in lines:
        sink.write(time.time(), line)
    assert sink.close(timeout_s=30) == 0
    messages = read_stream(logs, "/provisioner/builds", "run-1")
    # the empty line is not sent (CloudWatch rejects empty messages) and not counted as dropped
    assert len(messages) == len(lines) - 2 + len(split_message(big, LIMITS.max_message_bytes))
    assert messages[:2_500] == lines[:2_500] and messages[-2:] == lines[-2:]
    assert "".join(messages[2_500:-2]) == big  # the split pieces reassemble exactly


@pytest.mark.moto
def test_an_existing_group_is_reused(logs: Any, moto_env: str) -> None:
    logs.create_log_group(logGroupName="existing")
    sink = CloudWatchSink("existing", "run-2", endpoint_url=moto_env)
    sink.write(time.time(), "hello")
    assert sink.close(timeout_s=30) == 0
    assert read_stream(logs, "existing", "run-2") == ["hello"]


class FlakyClient:
    """A thin fault-injecting wrapper: the first puts fail with `code`, then calls pass through."""

    def __init__(self, inner: Any, code: str, failures: int) -> None:
        self.inner, self.code, self.failures, self.calls = inner, code, failures, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_log_events(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise ClientError({"Error": {"Code": self.code, "Message": "injected"},
                               "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutLogEvents")
        return self.inner.put_log_events(**kwargs)


@pytest.mark.moto
def test_throttling_is_retried_until_the_lines_land(logs: Any) -> None:
    flaky = FlakyClient(logs, "ThrottlingException", failures=3)
    sink = CloudWatchSink("g", "run-3", client=flaky, retry_base_s=0.01)
    for i in range(100):
        sink.write(time.time(), f"l{i}")
    assert sink.close(timeout_s=30) == 0
    assert flaky.calls == 4
    assert read_stream(logs, "g", "run-3") == [f"l{i}" for i in range(100)]


@pytest.mark.moto
def test_a_rejected_batch_is_counted_not_retried(logs: Any) -> None:
    flaky = FlakyClient(logs, "InvalidParameterException", failures=1)
    sink = CloudWatchSink("g", "run-4", client=flaky)
    for i in range(10):
        sink.write(time.time(), f"l{i}")
    assert sink.close(timeout_s=30) == 10
    assert flaky.calls == 1


# ---- a slow or hung endpoint never holds up the job --------------------------------------------

class BlockedClient:
    """put_log_events blocks until released: CloudWatch slower than the job."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def create_log_stream(self, **kwargs: Any) -> None:
        pass

    def put_log_events(self, **kwargs: Any) -> dict:
        self.entered.set()
        self.release.wait(30)
        return {}


def test_a_full_buffer_drops_and_counts_lines() -> None:
    client = BlockedClient()
    line_cost = len("line 0000") + EVENT_OVERHEAD
    sink = CloudWatchSink("g", "s", client=client, max_buffer_bytes=50 * line_cost,
                          flush_interval_s=0.01)
    sink.write(T0, "first")
    assert client.entered.wait(10)  # the worker is now stuck sending "first"
    for i in range(1_000):
        sink.write(T0, f"line {i:04d}")
    assert sink.dropped == 950  # the queue holds 50 of these lines
    client.release.set()
    assert sink.close(timeout_s=10) == 950
    sink.write(T0, "after close")
    assert sink.dropped == 951 and sink.close(timeout_s=1) == 950  # close's answer is final


@pytest.fixture
def hung_endpoint() -> Iterator[str]:
    """127.0.0.1 port that accepts TCP connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except (TimeoutError, OSError):
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
        assert held, "the sink never connected"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_a_hung_endpoint_blocks_neither_write_nor_close(hung_endpoint: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    sink = CloudWatchSink("g", "hung", endpoint_url=hung_endpoint, flush_interval_s=0.05,
                          read_timeout_s=60)  # far longer than close's bound: close must not wait
    started = time.monotonic()
    for i in range(1_000):
        sink.write(time.time(), f"line {i}")
    assert time.monotonic() - started < 1.0  # generous: this is ~1 ms of work
    time.sleep(0.3)  # let the worker connect and hang
    started = time.monotonic()
    dropped = sink.close(timeout_s=2)
    assert time.monotonic() - started < 2 + 5
    assert dropped == 1_000
