"""PutLogEvents request bodies, built here (pure), and sending one whole through botocore.

`BatchBuilder` turns lines into request bodies within the PutLogEvents limits (<= 1,048,576 bytes
counting 26 bytes per event, <= 10,000 events, < 24 h span, chronological order, events over 256 KiB
split); moto does not enforce them, so they are tested here on the bodies themselves. `BodyHook`
makes a botocore client send such a body instead of serializing `logEvents`: botocore's serializer
walks every event in Python, about 5 us each, and its parameter validation as much again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]  # C, like json.dumps
from typing import Any, NamedTuple

EVENT_OVERHEAD = 26  # bytes PutLogEvents adds to each event's UTF-8 message size


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


# ---- pure: lines -> PutLogEvents bodies --------------------------------------------------------

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


class Batch(NamedTuple):
    """One PutLogEvents call, ready to send."""

    body: bytes                # the request body: {"logGroupName", "logStreamName", "logEvents"} JSON
    events: int
    lines: int                 # lines whose last piece is here (finished once this batch is sent)
    pieces: tuple[int, ...]    # indexes of events that are a split line's non-last piece (rarely any)

    def lines_in(self, start: int, end: int) -> int:
        """Lines that end in events[start:end]."""
        return max(0, end - start) - sum(1 for i in self.pieces if start <= i < end)


class BatchBuilder:
    """Lines in write order -> PutLogEvents bodies within every limit. Pure: no I/O, no clock.

    Timestamps are clamped to be non-decreasing (PutLogEvents wants chronological batches) instead of
    sorted, which would reorder the job's lines. Empty lines are skipped (CloudWatch rejects empty
    messages); lines over the event size limit are split without cutting a character; lone
    surrogates (undecodable output) become '?'. A batch is cut before the event that would break its
    count, byte or 24 h limit.
    """

    def __init__(self, log_group: str, stream: str, limits: Limits = LIMITS) -> None:
        self.limits = limits
        self._head = '{"logGroupName":%s,"logStreamName":%s,"logEvents":[' % (
            encode_basestring_ascii(log_group), encode_basestring_ascii(stream))
        self._floor_ms = 0
        self._start_batch()

    def _start_batch(self) -> None:
        self._events: list[str] = []   # each event's JSON text without its closing brace
        self._bytes = 0                # sum of (message bytes + 26)
        self._latest = -1              # the last timestamp this batch may take (first + span); -1: empty
        self._pieces: list[int] = []   # indexes of split lines' non-last pieces

    @property
    def pending(self) -> int:
        """Events in the open batch."""
        return len(self._events)

    def add(self, lines: Iterable[tuple[float, str]]) -> list[Batch]:
        """Take `(ts_seconds, line)` pairs in order; return the batches they filled (the rest stays open)."""
        done: list[Batch] = []
        limits = self.limits
        max_events, max_bytes = limits.max_batch_events, limits.max_batch_bytes
        max_message, span, overhead = limits.max_message_bytes, limits.max_span_ms, EVENT_OVERHEAD
        escape = encode_basestring_ascii
        floor, prefix_ms, prefix = self._floor_ms, -1, ""
        events, size_sum, latest = self._events, self._bytes, self._latest
        # The common case inlined (a short, encodable line: one event), a line at a time: this loop
        # is most of the sink's own CPU time.
        for ts, line in lines:
            try:
                ms = int(ts * 1000)
            except (OverflowError, ValueError):  # inf / nan: keep the previous timestamp
                ms = floor
            if ms > floor:  # floor >= 0 always, so the empty batch's latest (-1) is always exceeded
                floor = ms
            if line.isascii():
                size = len(line)
            else:
                try:
                    size = len(line.encode("utf-8"))
                except UnicodeEncodeError:
                    size = 0  # the slow path replaces the surrogates
            if not 0 < size <= max_message:
                if line:
                    self._floor_ms, self._bytes, self._latest = floor, size_sum, latest
                    self._add_slowly(line, floor, done)
                    events, size_sum, latest = self._events, self._bytes, self._latest
                continue
            size += overhead
            if size_sum + size > max_bytes or floor > latest or len(events) >= max_events:
                if events:
                    self._bytes = size_sum
                    done.append(self._cut())
                    events, size_sum = self._events, 0
                latest = floor + span
            if floor != prefix_ms:
                prefix_ms, prefix = floor, '{"timestamp":%d,"message":' % floor
            events.append(prefix + escape(line))
            size_sum += size
        self._floor_ms, self._bytes, self._latest = floor, size_sum, latest
        return done

    def flush(self) -> Batch | None:
        """Close the open batch: None when it is empty."""
        return self._cut() if self._events else None

    def _add_slowly(self, line: str, ms: int, done: list[Batch]) -> None:
        """A line that needs more than one event, or whose surrogates need replacing."""
        limits = self.limits
        pieces = split_message(line, limits.max_message_bytes)
        for i, (text, size) in enumerate(pieces):
            size += EVENT_OVERHEAD
            if (self._bytes + size > limits.max_batch_bytes or ms > self._latest
                    or len(self._events) >= limits.max_batch_events):
                if self._events:
                    done.append(self._cut())
                self._latest = ms + limits.max_span_ms
            if i < len(pieces) - 1:
                self._pieces.append(len(self._events))
            self._events.append('{"timestamp":%d,"message":%s' % (ms, encode_basestring_ascii(text)))
            self._bytes += size

    def _cut(self) -> Batch:
        body = (self._head + "},".join(self._events) + "}]}").encode("ascii")
        count = len(self._events)
        batch = Batch(body, count, count - len(self._pieces), tuple(self._pieces))
        self._start_batch()
        return batch


def batch_events(batch: Batch) -> list[dict]:
    """The batch's `logEvents` ({"timestamp", "message"} dicts), decoded from its body."""
    return json.loads(batch.body)["logEvents"]


# ---- sending a prepared body through botocore ---------------------------------------------------

class BodyHook:
    """Makes a botocore client send a prepared PutLogEvents body instead of serializing `logEvents`.

    botocore's `before-call` event runs after validation and serialization (of a one-event
    placeholder here) and before compression, checksums and signing, so the prepared body is the one
    signed and sent. The body is per thread: a client shared with other threads sends their calls
    untouched. `on_send` runs when such a request is about to go on the wire.
    """

    # Valid for a client that validates parameters; stamped 1970, so that CloudWatch would reject it
    # (too old) even if it ever went out without the prepared body.
    PLACEHOLDER = [{"timestamp": 0, "message": "-"}]

    def __init__(self, client: Any, on_send: Callable[[], None] | None = None) -> None:
        self._local = threading.local()
        self._on_send = on_send
        self._events = client.meta.events
        service = client.meta.service_model.service_id.hyphenize()
        self._handlers = [(f"before-call.{service}.PutLogEvents", self._swap),
                          (f"before-send.{service}.PutLogEvents", self._sending)]
        self._id = f"provisioner-cloudwatch-sink-{id(self)}"
        for event, handler in self._handlers:
            self._events.register(event, handler, unique_id=f"{self._id}-{event}")

    def put(self, client: Any, group: str, stream: str, body: bytes) -> dict:
        """PutLogEvents with `body`; `client` is the one hooked, or a wrapper that calls it."""
        self._local.body, self._local.swapped = body, False
        try:
            response = client.put_log_events(logGroupName=group, logStreamName=stream,
                                             logEvents=self.PLACEHOLDER)
        finally:
            self._local.body = None
        if not self._local.swapped:  # a wrapper that called another client: never silently
            raise RuntimeError("PutLogEvents went out without its prepared body")
        return response

    def _swap(self, params: dict, **_: Any) -> None:
        body = getattr(self._local, "body", None)
        if body is not None:
            params["body"] = body
            self._local.swapped = True

    def _sending(self, **_: Any) -> None:  # returns None: botocore sends the request itself
        if self._on_send is not None and getattr(self._local, "body", None) is not None:
            self._on_send()

    def remove(self) -> None:
        for event, _ in self._handlers:
            self._events.unregister(event, unique_id=f"{self._id}-{event}")
