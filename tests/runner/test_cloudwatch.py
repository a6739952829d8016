"""CloudWatch Logs sink: the batch builder's limits (pure, checked on the exact request bodies),
delivery into a real moto server, retries, rejected events, and a hung endpoint that must never hold
up write() or close()."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner import aws
from provisioner.runner.cloudwatch import CloudWatchSink
from provisioner.runner.cloudwatch_batch import (
    EVENT_OVERHEAD, LIMITS, Batch, BatchBuilder, BodyHook, Limits, batch_events, split_message)
from tests.moto_server import DUMMY_CREDENTIALS

T0 = 1_700_000_000.0  # seconds; a fixed epoch keeps the pure tests deterministic
DAY_MS = 24 * 3600 * 1000


def build(lines: list[tuple[float, str]], limits: Limits = LIMITS, chunks: int = 1) -> list[Batch]:
    """Every batch for `lines`, fed to one builder in `chunks` add() calls, then flushed."""
    builder = BatchBuilder("/g", "s", limits)
    batches: list[Batch] = []
    step = max(1, -(-len(lines) // chunks))
    for i in range(0, len(lines), step):
        batches += builder.add(lines[i:i + step])
    last = builder.flush()
    assert builder.pending == 0 and builder.flush() is None
    return batches + ([last] if last else [])


# ---- invariants every batch must hold -----------------------------------------------------------

def assert_valid_batches(batches: list[Batch], limits: Limits) -> None:
    """Every PutLogEvents limit, recomputed from the request bodies as sent."""
    previous = -1
    for batch in batches:
        assert batch.body.isascii()  # JSON with non-ASCII escaped, as botocore itself sends it
        body = json.loads(batch.body)
        assert (body["logGroupName"], body["logStreamName"]) == ("/g", "s")
        events = body["logEvents"]
        assert len(events) == batch.events and 1 <= len(events) <= limits.max_batch_events
        sizes = [len(e["message"].encode("utf-8")) + EVENT_OVERHEAD for e in events]
        assert sum(sizes) <= limits.max_batch_bytes
        assert max(sizes) <= limits.max_event_bytes
        assert all(e["message"] for e in events)  # CloudWatch rejects empty messages
        stamps = [e["timestamp"] for e in events]
        assert stamps == sorted(stamps) and stamps[0] >= previous  # chronological, across batches too
        assert stamps[-1] - stamps[0] <= limits.max_span_ms
        assert all(0 <= i < len(events) for i in batch.pieces)
        assert batch.lines == len(events) - len(batch.pieces) == batch.lines_in(0, len(events))
        previous = stamps[-1]


def reassemble(batches: list[Batch]) -> list[str]:
    lines, current = [], ""
    for batch in batches:
        pieces = set(batch.pieces)
        for i, event in enumerate(batch_events(batch)):
            current += event["message"]
            if i not in pieces:
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


def test_the_body_is_the_put_log_events_request() -> None:
    [batch] = build([(T0, 'say "hi" \\ ✓ 😀\ttab'), (T0 + 0.0015, "next")])
    assert json.loads(batch.body) == {
        "logGroupName": "/g", "logStreamName": "s",
        "logEvents": [{"timestamp": int(T0 * 1000), "message": 'say "hi" \\ ✓ 😀\ttab'},
                      {"timestamp": int(T0 * 1000) + 1, "message": "next"}]}
    assert (batch.events, batch.lines, batch.pieces) == (2, 2, ())


def test_time_is_clamped_order_kept_empty_lines_and_surrogates_handled() -> None:
    lines = [(T0 + 2, "b"), (T0 + 1, "c"), (T0, ""), (float("nan"), "d"), (float("inf"), "e\udcff"),
             (T0 + 3, "f")]
    [batch] = build(lines)
    events = batch_events(batch)
    assert [e["message"] for e in events] == ["b", "c", "d", "e?", "f"]
    assert [e["timestamp"] for e in events] == [int((T0 + 2) * 1000)] * 4 + [int((T0 + 3) * 1000)]


def test_a_600_kib_line_splits_into_events_under_the_limit() -> None:
    line = "x" * (600 * 1024)
    [batch] = build([(T0, "before"), (T0, line), (T0, "after")])
    sizes = [len(e["message"]) + EVENT_OVERHEAD for e in batch_events(batch)]
    assert len(sizes) == 5 and batch.pieces == (1, 2) and batch.lines == 3
    assert sizes[1] == LIMITS.max_event_bytes  # split as late as the limit allows
    assert reassemble([batch]) == ["before", line, "after"]
    assert batch.lines_in(0, 2) == 1 and batch.lines_in(2, 5) == 2  # a line ends with its last piece


def _sized(sizes: list[int], step_ms: int = 0) -> list[tuple[float, str]]:
    """Lines whose events weigh `sizes` bytes each (26 included), `step_ms` apart."""
    # half a millisecond in: float seconds -> int milliseconds must land on the intended one
    return [((T0 * 1000 + i * step_ms + 0.5) / 1000, "x" * (s - EVENT_OVERHEAD))
            for i, s in enumerate(sizes)]


@pytest.mark.parametrize("sizes, step_ms, expected", [
    ([27] * 25_000, 0, [10_000, 10_000, 5_000]),                 # the event count limit
    ([LIMITS.max_event_bytes] * 5, 0, [4, 1]),                   # 4 x 256 KiB = exactly 1 MiB
    ([LIMITS.max_event_bytes] * 4 + [27], 0, [4, 1]),            # one byte over
    ([100] * 3, DAY_MS - 1, [2, 1]),                             # 24 h: t, t+24h-1ms | t+48h-2ms
    ([100] * 2, DAY_MS, [1, 1]),                                 # exactly 24 h apart: never together
], ids=["count", "bytes-exact", "bytes-over", "span-inside", "span-exact"])
def test_batches_at_the_real_limits(sizes: list[int], step_ms: int, expected: list[int]) -> None:
    batches = build(_sized(sizes, step_ms))
    assert [b.events for b in batches] == expected
    assert_valid_batches(batches, LIMITS)


def test_a_split_line_across_batches_counts_where_it_ends() -> None:
    limits = Limits(max_batch_bytes=100, max_batch_events=3, max_event_bytes=30)
    batches = build([(T0, "a"), (T0, "y" * 10), (T0, "b")], limits)  # "y" * 10 = 3 events of 4 bytes
    assert [(b.events, b.lines, b.pieces) for b in batches] == [(3, 1, (1, 2)), (2, 2, ())]
    assert reassemble(batches) == ["a", "y" * 10, "b"]


# Lines as (time step in ms, which character, how many): cheap to generate even at 700 KB.
CHARS = ["a", "é", "€", "😀", "\udcff", '"', "\\", "\n"]
line_specs = st.tuples(st.integers(-5_000_000, 3 * DAY_MS // 4),
                       st.sampled_from(CHARS), st.integers(0, 2_000))


def _lines(specs: list[tuple[int, str, int]], scale: int = 1) -> list[tuple[float, str]]:
    lines, t = [], T0 * 1000
    for step, char, count in specs:
        t += step
        lines.append((t / 1000, char * (count * scale)))
    return lines


def _expected(lines: list[tuple[float, str]]) -> list[str]:
    return [line.encode("utf-8", "replace").decode("utf-8") for _, line in lines if line]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(line_specs, max_size=60), chunks=st.integers(1, 8),
       max_events=st.integers(1, 12), max_event=st.integers(30, 400), extra_bytes=st.integers(0, 900),
       span=st.integers(0, 2 * DAY_MS))
def test_every_batch_respects_every_limit_small_limits(specs, chunks, max_events, max_event,
                                                       extra_bytes, span) -> None:
    limits = Limits(max_batch_bytes=max_event + extra_bytes, max_batch_events=max_events,
                    max_event_bytes=max_event, max_span_ms=span)
    lines = _lines(specs)
    batches = build(lines, limits, chunks)
    assert_valid_batches(batches, limits)
    assert reassemble(batches) == _expected(lines)  # nothing lost, nothing reordered
    assert batches == build(lines, limits)  # how lines arrive in add() calls changes nothing


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs=st.lists(line_specs, max_size=25))
def test_every_batch_respects_every_limit_real_limits(specs) -> None:
    lines = _lines(specs, scale=350)  # up to 700,000 characters (2.8 MB) per line
    batches = build(lines)
    assert_valid_batches(batches, LIMITS)
    assert reassemble(batches) == _expected(lines)


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


# ---- the prepared body on the wire -------------------------------------------------------------

class _Answer:
    def stream(self, **_: Any) -> Iterator[bytes]:
        yield b"{}"


def _offline_client(monkeypatch: pytest.MonkeyPatch, sent: list) -> Any:
    """A logs client whose requests are recorded and answered here instead of sent."""
    for key, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    client = aws.client("logs", endpoint_url="http://127.0.0.1:9", max_attempts=1)

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(request)
        return AWSResponse(request.url, 200, {}, _Answer())
    client.meta.events.register("before-send", answer)
    return client


def test_the_prepared_body_is_what_is_signed_and_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list = []
    client = _offline_client(monkeypatch, sent)
    on_send: list = []
    hook = BodyHook(client, on_send=lambda: on_send.append(len(sent)))
    [batch] = build([(T0, "hello ✓")])
    assert "ResponseMetadata" in hook.put(client, "/g", "s", batch.body)
    request = sent[-1]
    assert request.body == batch.body and int(request.headers["Content-Length"]) == len(batch.body)
    assert request.headers["X-Amz-Target"] == b"Logs_20140328.PutLogEvents"
    assert b"Signature=" in request.headers["Authorization"] and on_send == [0]
    # the same client's own calls, and calls after remove(), are serialized as usual
    client.put_log_events(logGroupName="/g", logStreamName="s",
                          logEvents=[{"timestamp": 1, "message": "own"}])
    assert json.loads(sent[-1].body)["logEvents"] == [{"timestamp": 1, "message": "own"}]
    hook.remove()
    with pytest.raises(RuntimeError):  # a put that bypassed the hook is never taken for a success
        hook.put(client, "/g", "s", batch.body)
    # what went out instead: the placeholder, stamped 0, which CloudWatch rejects as too old
    assert json.loads(sent[-1].body)["logEvents"] == BodyHook.PLACEHOLDER


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


@pytest.mark.moto
def test_many_batches_keep_order_and_chronological_time(logs: Any, moto_env: str) -> None:
    limits = Limits(max_batch_bytes=4_096, max_batch_events=50, max_event_bytes=1_024)
    lines = [f"{i:05d} " + "é✓" * (i % 120) for i in range(1_500)]  # ~130 calls, no line split
    sink = CloudWatchSink("g", "many", endpoint_url=moto_env, limits=limits)
    for i, line in enumerate(lines):
        sink.write(T0 + (i % 7) - 3 + time.time() - T0, line)  # time jumps back and forth
    assert sink.close(timeout_s=60) == 0
    page = logs.get_log_events(logGroupName="g", logStreamName="many", startFromHead=True)
    assert read_stream(logs, "g", "many") == lines
    stamps = [e["timestamp"] for e in page["events"]]
    assert stamps == sorted(stamps)


@pytest.mark.moto
def test_a_partial_batch_goes_out_on_the_flush_interval(logs: Any, moto_env: str) -> None:
    sink = CloudWatchSink("g", "interval", endpoint_url=moto_env, flush_interval_s=0.1)
    for i in range(3):
        sink.write(time.time(), f"l{i}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # before close(): the interval alone sends them
        try:
            if read_stream(logs, "g", "interval") == ["l0", "l1", "l2"]:
                break
        except ClientError:  # the stream does not exist yet
            pass
        time.sleep(0.05)
    else:
        pytest.fail("the lines did not go out on the flush interval")
    assert sink.close(timeout_s=30) == 0


@pytest.mark.moto
def test_a_shared_client_sends_other_calls_untouched(logs: Any) -> None:
    logs.create_log_group(logGroupName="g")
    logs.create_log_stream(logGroupName="g", logStreamName="other")
    sink = CloudWatchSink("g", "shared", client=logs)
    for i in range(20_000):
        sink.write(time.time(), f"sink {i}")
        if i % 5_000 == 0:  # this thread's own calls on the same client, while the sink sends
            logs.put_log_events(logGroupName="g", logStreamName="other",
                                logEvents=[{"timestamp": int(time.time() * 1000), "message": f"own {i}"}])
    assert sink.close(timeout_s=30) == 0
    logs.put_log_events(logGroupName="g", logStreamName="other",  # after close: no hook left behind
                        logEvents=[{"timestamp": int(time.time() * 1000), "message": "after"}])
    assert read_stream(logs, "g", "other") == ["own 0", "own 5000", "own 10000", "own 15000", "after"]
    assert read_stream(logs, "g", "shared") == [f"sink {i}" for i in range(20_000)]


class RejectingClient:
    """Accepts every call but reports some events outside CloudWatch's time window (no botocore)."""

    def __init__(self, info: dict) -> None:
        self.info = info
        self.sent: list[list[dict]] = []

    def create_log_stream(self, **kwargs: Any) -> None:
        pass

    def put_log_events(self, **kwargs: Any) -> dict:
        self.sent.append(kwargs["logEvents"])
        return {"rejectedLogEventsInfo": self.info}


@pytest.mark.parametrize("info, lost", [
    ({"tooOldLogEventEndIndex": 2, "tooNewLogEventStartIndex": 8}, 4),  # [0, 2) and [8, 10)
    ({"expiredLogEventEndIndex": 3}, 3),
    ({"tooOldLogEventEndIndex": 6, "tooNewLogEventStartIndex": 4}, 10),  # overlapping: once each
    ({}, 0),
], ids=["old-and-new", "expired", "overlap", "none"])
def test_events_rejected_in_an_accepted_call_are_counted(info: dict, lost: int) -> None:
    client = RejectingClient(info)
    sink = CloudWatchSink("g", "s", client=client)
    for i in range(10):
        sink.write(T0, f"l{i}")
    assert sink.close(timeout_s=10) == lost
    assert client.sent == [[{"timestamp": int(T0 * 1000), "message": f"l{i}"} for i in range(10)]]


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
