"""CloudWatch Logs sink for `provisioner run --log-group` (stream = the run's UUID).

`write()` only appends to a bounded in-memory queue: it never waits for CloudWatch, so a slow, down or
hung endpoint cannot delay the job's console output. A batcher thread turns queued lines into
PutLogEvents request bodies (`BatchBuilder`, cloudwatch_batch.py) while a sender thread has the
previous batch in flight; one sender keeps the stream's
order. `close(timeout_s)` flushes within that bound and returns how many lines did not reach
CloudWatch: dropped because the queue was full, rejected, or still unsent when the bound elapsed.

Bodies are JSON built here, a line at a time, and handed to botocore whole (`BodyHook`): botocore's
own serializer walks every event in Python, about 5 µs each (half of what moto takes to store one),
and its parameter validation as much again (bench/cloudwatch_sink.py).
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import deque
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from provisioner import aws
from provisioner.backoff import Backoff
from provisioner.runner.cloudwatch_batch import (EVENT_OVERHEAD, LIMITS, Batch, BatchBuilder, BodyHook, Limits,
                                                  batch_events)

LOG = logging.getLogger(__name__)

RETRYABLE_CODES = frozenset({"ThrottlingException", "ServiceUnavailableException", "ServiceUnavailable",
                             "InternalFailure", "RequestTimeout", "RequestTimeoutException",
                             "LimitExceededException"})


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
        # The timeouts keep a hung endpoint from holding the sender thread forever.
        self._client = client or aws.client(
            "logs", region=region, endpoint_url=endpoint_url, max_attempts=1,
            connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s,
            parameter_validation=False)  # our batches are checked by construction; validation is slow
        # Set while the sender waits (for a batch, an answer, a retry): the batcher builds only then,
        # so that it never holds the GIL while the sender has a request to prepare and send.
        self._sender_waiting = threading.Event()
        self._sender_waiting.set()
        # A client without botocore's event system (a test double) gets `logEvents` decoded instead.
        self._hook = (BodyHook(self._client, on_send=self._sender_waiting.set)
                      if hasattr(getattr(self._client, "meta", None), "events") else None)
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
        self._builder = BatchBuilder(log_group, stream, limits)
        self._open_since = 0.0  # when the builder's open batch got its first line
        self._stream_ready = False

        self._wakeup = threading.Event()
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self._result: int | None = None
        # Two threads so that building the next batch overlaps the wait for the current PutLogEvents
        # answer. Daemon threads: a hung call must not keep the process alive after close() gave up.
        self._ready: queue.Queue[Batch | None] = queue.Queue(maxsize=1)
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

    # -- batcher thread: queue -> builder -> batches --

    def _batch_loop(self) -> None:
        builder = self._builder
        try:
            while not self._abandon.is_set():
                chunk = self._take()
                if chunk:
                    if not builder.pending:
                        self._open_since = time.monotonic()
                    self._sender_waiting.wait(0.05)  # bounded: a late signal costs 50 ms at most
                    full = builder.add(chunk)
                    for batch in full:
                        self._hand_over(batch)
                    if full:
                        self._open_since = time.monotonic()
                    continue
                if builder.pending and (self._closing.is_set()
                                        or time.monotonic() - self._open_since >= self._flush_interval):
                    self._hand_over(builder.flush())
                    continue
                if self._closing.is_set():
                    if self._queue:  # written just before close(): nothing can follow them now
                        continue
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

    def _take(self) -> list[tuple[float, str]]:
        """Up to a batch's worth of queued lines (only this thread takes: len() is a floor)."""
        popleft = self._queue.popleft
        chunk = [popleft() for _ in range(min(len(self._queue), self.limits.max_batch_events))]
        if chunk:
            cost = sum([len(line) for _, line in chunk]) + EVENT_OVERHEAD * len(chunk)
            with self._lock:
                self._queued_cost -= cost
        return chunk

    def _wait_time(self) -> float:
        if self._builder.pending:
            return max(0.0, self._flush_interval - (time.monotonic() - self._open_since))
        return self._flush_interval

    def _hand_over(self, batch: Batch | None) -> None:
        """Give the sender the next batch, waiting while it sends the previous one."""
        while True:
            try:
                self._ready.put(batch, timeout=0.1)
                return
            except queue.Full:
                if self._abandon.is_set():
                    raise _Abandoned from None

    # -- sender thread: batches -> PutLogEvents --

    def _send_loop(self) -> None:
        try:
            while True:
                try:
                    batch = self._ready.get(timeout=0.1)
                except queue.Empty:
                    if self._abandon.is_set():
                        return
                    continue
                if batch is None:
                    return
                self._sender_waiting.clear()  # set again once the request is on its way
                lost = self._deliver(batch)
                with self._lock:
                    self._finished += batch.lines
                    self._dropped += lost
                self._sender_waiting.set()
        except _Abandoned:
            return
        except Exception:
            LOG.exception("CloudWatch sink failed; remaining lines are dropped")
        finally:
            self._sender_waiting.set()
            if self._hook is not None:
                self._hook.remove()

    def _deliver(self, batch: Batch) -> int:
        """Send one batch, retrying what may pass later; return the count of lines lost."""
        attempt = 0
        while True:
            if self._abandon.is_set():
                raise _Abandoned
            try:
                if not self._stream_ready:
                    self._ensure_stream()
                return self._rejected_lines(batch, self._put(batch))
            except ClientError as err:
                code = err.response.get("Error", {}).get("Code", "")
                status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code == "ResourceNotFoundException":
                    self._stream_ready = False  # deleted under us: create it again
                elif code not in RETRYABLE_CODES and status < 500:
                    self._warn_once(code, "CloudWatch rejected a batch of %d events (%s); dropped",
                                    batch.events, code)
                    return batch.lines
            except BotoCoreError as err:  # connection refused, timeouts, closed connections
                self._warn_once(type(err).__name__, "CloudWatch unreachable (%s); retrying", err)
            attempt += 1
            self._backoff(attempt)

    def _put(self, batch: Batch) -> dict:
        if self._hook is not None:
            return self._hook.put(self._client, self.log_group, self.stream, batch.body)
        events = batch_events(batch)
        self._sender_waiting.set()
        return self._client.put_log_events(logGroupName=self.log_group, logStreamName=self.stream,
                                           logEvents=events)

    def _backoff(self, attempt: int) -> None:
        # Full jitter: many agents throttled at once must not retry in step.
        delay = Backoff(self._retry_base, self._retry_cap).delay(min(attempt, 20), self._rng)
        self._sender_waiting.set()
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

    def _rejected_lines(self, batch: Batch, response: dict) -> int:
        """Lines CloudWatch refused inside an accepted call (too old, too new, expired)."""
        info = response.get("rejectedLogEventsInfo") or {}
        if not info:
            return 0
        # AWS documents the old end as exclusive and the new start as inclusive.
        old_end = max(info.get("tooOldLogEventEndIndex", 0), info.get("expiredLogEventEndIndex", 0))
        new_start = max(info.get("tooNewLogEventStartIndex", batch.events), old_end)
        rejected = batch.lines_in(0, old_end) + batch.lines_in(new_start, batch.events)
        self._warn_once("rejected", "CloudWatch rejected %d event(s) outside its time window: %s",
                        old_end + batch.events - new_start, info)
        return rejected

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        (LOG.warning if first else LOG.debug)(message, *args)
