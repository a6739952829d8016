"""CloudWatch Logs sink for `provisioner run --log-group` (stream = the run's UUID).

`write()` only appends to a bounded in-memory queue: it never waits for CloudWatch, so a slow, down or
hung endpoint cannot delay the job's console output. A background thread turns queued lines into
events and sends them in PutLogEvents batches that respect every service limit (the pure functions
`line_events` / `events_from_lines` / `batch_size` / `split_batches` below, tested on their own because
moto does not enforce the limits). `close(timeout_s)` flushes within that bound and returns how many
lines did not reach CloudWatch: dropped because the queue was full, rejected, or still unsent when the
bound elapsed.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from botocore.exceptions import BotoCoreError, ClientError

from provisioner import aws

LOG = logging.getLogger(__name__)

EVENT_OVERHEAD = 26  # bytes PutLogEvents adds to each event's UTF-8 message size
RETRYABLE_CODES = frozenset({"ThrottlingException", "ServiceUnavailableException", "ServiceUnavailable",
                             "InternalFailure", "RequestTimeout", "RequestTimeoutException",
                             "LimitExceededException"})


@dataclass(frozen=True)
class Limits:
    """PutLogEvents limits (AWS documentation). Tests shrink them to reach every edge quickly."""

    max_batch_bytes: int = 1_048_576   # sum of (UTF-8 message bytes + 26) over the batch
    max_batch_events: int = 10_000
    max_event_bytes: int = 262_144     # one event, the 26 included; longer lines are split
    max_span_ms: int = 24 * 3600 * 1000 - 1  # "cannot span more than 24 hours": stay strictly inside

    def __post_init__(self) -> None:
        # 4 message bytes hold any UTF-8 character, so a split always makes progress.
        if self.max_event_bytes - EVENT_OVERHEAD < 4 or self.max_event_bytes > self.max_batch_bytes:
            raise ValueError(f"inconsistent limits: {self}")
        if self.max_batch_events < 1 or self.max_span_ms < 0:
            raise ValueError(f"inconsistent limits: {self}")

    @property
    def max_message_bytes(self) -> int:
        return self.max_event_bytes - EVENT_OVERHEAD


LIMITS = Limits()


class Event(NamedTuple):
    """One log event as sent. `size` counts UTF-8 message bytes + 26; `last` marks a line's last piece."""

    timestamp: int  # milliseconds since the epoch, non-decreasing along the stream
    message: str
    size: int
    last: bool


# ---- pure functions: lines -> events -> batches ------------------------------------------------

def split_message(line: str, max_bytes: int) -> list[tuple[str, int]]:
    """`line` as pieces of at most `max_bytes` UTF-8 bytes, never cutting a character: (text, bytes)."""
    try:
        data = line.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (undecodable container output): CloudWatch wants UTF-8
        data = line.encode("utf-8", "replace")
        line = data.decode("utf-8")
    if len(data) <= max_bytes:
        return [(line, len(data))]
    pieces: list[tuple[str, int]] = []
    start = 0
    while start < len(data):
        end = min(start + max_bytes, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # a continuation byte: back up
            end -= 1
        pieces.append((data[start:end].decode("utf-8"), end - start))
        start = end
    return pieces


def line_events(timestamp_ms: int, line: str, limits: Limits = LIMITS) -> list[Event]:
    """The events for one line: one, or several when it is over the event size limit."""
    pieces = split_message(line, limits.max_message_bytes)
    last = len(pieces) - 1
    return [Event(timestamp_ms, text, size + EVENT_OVERHEAD, i == last)
            for i, (text, size) in enumerate(pieces)]


def events_from_lines(lines: Iterable[tuple[float, str]], floor_ms: int,
                      limits: Limits = LIMITS) -> tuple[list[Event], int]:
    """Events for `(ts_seconds, line)` pairs in write order, and the new timestamp floor.

    Timestamps are clamped to be non-decreasing (PutLogEvents wants chronological batches) instead of
    sorting, which would reorder the job's lines. Empty lines are skipped: CloudWatch rejects empty
    messages.
    """
    events: list[Event] = []
    append = events.append
    new_event = tuple.__new__  # Event(...) without NamedTuple's Python-level __new__: 1M lines/s matter
    one_event = limits.max_message_bytes // 4  # at most this many characters always fit one event
    for ts, line in lines:
        if not line:
            continue
        try:
            ms = int(ts * 1000)
        except (OverflowError, ValueError):  # inf / nan: keep the previous timestamp
            ms = floor_ms
        if ms > floor_ms:
            floor_ms = ms
        if len(line) <= one_event:
            try:
                append(new_event(Event, (floor_ms, line, len(line.encode("utf-8")) + EVENT_OVERHEAD, True)))
                continue
            except UnicodeEncodeError:
                pass
        events.extend(line_events(floor_ms, line, limits))
    return events, floor_ms


def batch_size(events: Sequence[Event], start: int = 0, limits: Limits = LIMITS) -> int:
    """How many events from `events[start]` on fit in one PutLogEvents call (>= 1 if any remain).

    Expects chronological events of at most `max_event_bytes` each (what `events_from_lines` makes).
    """
    end = min(len(events), start + limits.max_batch_events)
    if start >= end:
        return 0
    latest = events[start].timestamp + limits.max_span_ms
    total = events[start].size
    i = start + 1  # the first event always goes: an impossible one must fail loudly, not loop forever
    while i < end:
        event = events[i]
        total += event.size
        if total > limits.max_batch_bytes or event.timestamp > latest:
            break
        i += 1
    return i - start


def split_batches(events: Sequence[Event], limits: Limits = LIMITS) -> list[list[Event]]:
    """`events` cut into consecutive batches that each respect every limit."""
    batches = []
    start = 0
    while start < len(events):
        n = batch_size(events, start, limits)
        batches.append(list(events[start:start + n]))
        start += n
    return batches


# ---- the sink ----------------------------------------------------------------------------------

class _Abandoned(Exception):
    """close() gave up waiting; the sink's threads stop without sending more."""


class CloudWatchSink:
    """A log sink for one stream: `write(ts, line)` never blocks, `close(timeout_s)` -> dropped count."""

    def __init__(self, log_group: str, stream: str, *, client: Any = None, region: str | None = None,
                 endpoint_url: str | None = None, max_buffer_bytes: int = 64 * 1024 * 1024,
                 flush_interval_s: float = 1.0, retry_base_s: float = 0.2, retry_cap_s: float = 5.0,
                 connect_timeout_s: float = 5.0, read_timeout_s: float = 15.0,
                 limits: Limits = LIMITS, rng: random.Random | None = None) -> None:
        self.log_group = log_group
        self.stream = stream
        self.limits = limits
        # Our own retry loop (below) honours close()'s bound; botocore's would not, hence 1 attempt.
        # The timeouts keep a hung endpoint from holding the worker thread forever.
        self._client = client or aws.client(
            "logs", region=region, endpoint_url=endpoint_url, max_attempts=1,
            connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s,
            parameter_validation=False)  # our batches are checked by construction; validation is slow
        self._max_buffer = max_buffer_bytes
        self._flush_interval = flush_interval_s
        self._retry_base, self._retry_cap = retry_base_s, retry_cap_s
        self._rng = rng or random.Random()
        # A batch's worth of lines: the event limit, or the byte limit for lines of ~100 bytes.
        self._wake_lines = min(limits.max_batch_events, max(1, limits.max_batch_bytes // 128))

        # Shared with writers (guarded by _lock, except the deque, whose append/popleft are atomic).
        self._lock = threading.Lock()
        self._queue: deque[tuple[float, str]] = deque()
        self._queued_cost = 0   # approximate bytes waiting in _queue (characters + overhead)
        self._accepted = 0      # lines write() took (queued, or empty and so already finished)
        self._finished = 0      # accepted lines whose fate is known: sent, skipped (empty) or lost
        self._dropped = 0       # lines lost: queue full, written after close, rejected, failed
        self._closed = False
        self._warned: set[str] = set()

        # The batcher thread's own state, then the sender's.
        self._pending: list[Event] = []
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._floor_ms = 0
        self._stream_ready = False

        self._wakeup = threading.Event()
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self._result: int | None = None
        # Two threads so that turning lines into the next batch overlaps the wait for the current
        # PutLogEvents answer; one sender keeps the stream's order. Daemon threads: a hung call must
        # not keep the process alive after close() gave up on it.
        self._ready: queue.Queue[tuple[list[Event], list[dict]] | None] = queue.Queue(maxsize=1)
        self._threads = [threading.Thread(target=loop, name=f"cloudwatch-{name}-{stream}", daemon=True)
                         for name, loop in (("batch", self._batch_loop), ("send", self._send_loop))]
        for thread in self._threads:
            thread.start()

    # -- writer side (any thread) --

    def write(self, ts: float, line: str) -> None:
        """Queue one line; drop it (counted) when the queue is full or the sink is closed."""
        cost = len(line) + EVENT_OVERHEAD
        warn = False
        with self._lock:
            if self._closed or self._queued_cost + cost > self._max_buffer:
                self._dropped += 1
                warn = "full" not in self._warned
                self._warned.add("full")
            elif line:
                self._accepted += 1
                self._queued_cost += cost
                self._queue.append((ts, line))
            else:  # CloudWatch rejects empty messages: nothing to send, nothing lost
                self._accepted += 1
                self._finished += 1
        if warn:  # logged outside the lock: a slow log handler must not stall other writers
            LOG.warning("CloudWatch log buffer full or closed; dropping lines for %s/%s",
                        self.log_group, self.stream)
        # Wake the batcher only when a full batch waits; otherwise it flushes on its interval.
        elif len(self._queue) >= self._wake_lines and not self._wakeup.is_set():
            self._wakeup.set()

    @property
    def dropped(self) -> int:
        """Lines known lost so far (queue full, rejected); close() adds those still unsent."""
        with self._lock:
            return self._dropped

    def close(self, timeout_s: float = 10.0) -> int:
        """Flush within `timeout_s`, then return the count of lines that did not reach CloudWatch."""
        with self._lock:
            self._closed = True
        self._closing.set()
        self._wakeup.set()
        deadline = time.monotonic() + max(0.0, timeout_s)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._threads):
            self._abandon.set()  # the sender may still be inside a hung call; it exits afterwards
        with self._lock:
            if self._result is None:
                self._result = self._dropped + (self._accepted - self._finished)
                if self._result:
                    LOG.warning("CloudWatch sink: %d line(s) not delivered to %s/%s",
                                self._result, self.log_group, self.stream)
            return self._result

    # -- batcher thread: queue -> pending events -> batches --

    def _batch_loop(self) -> None:
        try:
            while not self._abandon.is_set():
                self._refill()
                if self._pending and self._due():
                    self._hand_over(self._cut_batch())
                    continue
                if self._closing.is_set() and not self._pending and not self._queue:
                    break
                self._wakeup.wait(self._wait_time())
                self._wakeup.clear()
        except _Abandoned:
            return
        except Exception:  # a bug must not kill the job; close() counts what was left as dropped
            LOG.exception("CloudWatch sink failed; remaining lines are dropped")
        try:
            self._hand_over(None)  # tells the sender that nothing more comes
        except _Abandoned:
            pass

    def _refill(self) -> None:
        """Move queued lines into pending events, keeping at most about two batches pending."""
        limits = self.limits
        if len(self._pending) >= limits.max_batch_events or self._pending_bytes >= limits.max_batch_bytes:
            return
        popleft = self._queue.popleft  # only this thread takes from the queue: len() is a floor
        chunk = [popleft() for _ in range(min(len(self._queue), limits.max_batch_events))]
        if not chunk:
            return
        events, self._floor_ms = events_from_lines(chunk, self._floor_ms, limits)
        cost = sum(len(line) for _, line in chunk) + EVENT_OVERHEAD * len(chunk)
        with self._lock:
            self._queued_cost -= cost
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.extend(events)
        self._pending_bytes += sum(e.size for e in events)

    def _due(self) -> bool:
        """Send now: a full batch is pending, the flush interval passed, or we are closing."""
        if self._closing.is_set() or time.monotonic() - self._pending_since >= self._flush_interval:
            return True
        limits = self.limits
        if len(self._pending) >= limits.max_batch_events or self._pending_bytes >= limits.max_batch_bytes:
            return True
        return batch_size(self._pending, 0, limits) < len(self._pending)  # the 24 h span cut it

    def _wait_time(self) -> float:
        if self._pending:
            return max(0.0, self._flush_interval - (time.monotonic() - self._pending_since))
        return self._flush_interval

    def _cut_batch(self) -> tuple[list[Event], list[dict]]:
        n = batch_size(self._pending, 0, self.limits)
        batch = self._pending[:n]
        del self._pending[:n]
        self._pending_bytes -= sum(e.size for e in batch)
        self._pending_since = time.monotonic()
        return batch, [{"timestamp": ts, "message": message} for ts, message, _, _ in batch]

    def _hand_over(self, item: tuple[list[Event], list[dict]] | None) -> None:
        """Give the sender the next batch, waiting while it sends the previous one."""
        while True:
            try:
                self._ready.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._abandon.is_set():
                    raise _Abandoned from None

    # -- sender thread: batches -> PutLogEvents --

    def _send_loop(self) -> None:
        try:
            while True:
                try:
                    item = self._ready.get(timeout=0.1)
                except queue.Empty:
                    if self._abandon.is_set():
                        return
                    continue
                if item is None:
                    return
                batch, payload = item
                lost = self._deliver(batch, payload)
                with self._lock:
                    self._finished += sum(1 for e in batch if e.last)
                    self._dropped += lost
        except _Abandoned:
            return
        except Exception:
            LOG.exception("CloudWatch sink failed; remaining lines are dropped")

    def _deliver(self, batch: list[Event], payload: list[dict]) -> int:
        """Send one batch, retrying what may pass later; return the count of lines lost."""
        attempt = 0
        while True:
            if self._abandon.is_set():
                raise _Abandoned
            try:
                if not self._stream_ready:
                    self._ensure_stream()
                response = self._client.put_log_events(
                    logGroupName=self.log_group, logStreamName=self.stream, logEvents=payload)
                return self._rejected_lines(batch, response)
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code == "ResourceNotFoundException":
                    self._stream_ready = False  # deleted under us: create it again
                elif code not in RETRYABLE_CODES and status < 500:
                    self._warn_once(code, "CloudWatch rejected a batch of %d events (%s); dropped",
                                    len(batch), code)
                    return sum(1 for e in batch if e.last)
            except BotoCoreError as err:  # connection refused, timeouts, closed connections
                self._warn_once(type(err).__name__, "CloudWatch unreachable (%s); retrying", err)
            attempt += 1
            self._backoff(attempt)

    def _backoff(self, attempt: int) -> None:
        # Full jitter: many agents throttled at once must not retry in step.
        delay = self._rng.uniform(0, min(self._retry_cap, self._retry_base * 2 ** min(attempt, 20)))
        if self._abandon.wait(delay):
            raise _Abandoned

    def _ensure_stream(self) -> None:
        """Create the stream (and the group when missing); 'already exists' is fine."""
        try:
            self._create("create_log_stream", logGroupName=self.log_group, logStreamName=self.stream)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            self._create("create_log_group", logGroupName=self.log_group)
            self._create("create_log_stream", logGroupName=self.log_group, logStreamName=self.stream)
        self._stream_ready = True

    def _create(self, operation: str, **params: str) -> None:
        try:
            getattr(self._client, operation)(**params)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceAlreadyExistsException":
                raise

    def _rejected_lines(self, batch: list[Event], response: dict) -> int:
        """Lines CloudWatch refused inside an accepted call (too old, too new, expired)."""
        info = response.get("rejectedLogEventsInfo") or {}
        if not info:
            return 0
        old_end = max(info.get("tooOldLogEventEndIndex", 0), info.get("expiredLogEventEndIndex", 0))
        new_start = info.get("tooNewLogEventStartIndex", len(batch))
        rejected = batch[:old_end] + batch[max(new_start, old_end):]
        self._warn_once("rejected", "CloudWatch rejected %d event(s) outside its time window: %s",
                        len(rejected), info)
        return sum(1 for e in rejected if e.last)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        (LOG.warning if first else LOG.debug)(message, *args)
